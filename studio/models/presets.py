"""Named architecture configs, in one registry (DiT-style). Every size is a config field; a preset is only
a starting point (`studio train ... --set depth=8` overrides it)."""

from __future__ import annotations

from studio.errors import ConfigError

# `skip=True` in every preset; the constructor's default stays False so folders saved before the skip
# existed (their config.json has no `skip`) still load as they were trained.
CORE_PRESETS: dict[str, dict] = {
    # Tests: seconds on a CPU.
    "tiny-core": dict(resolution=16, grid=8, core_channels=16, width=32, depth=2, heads=2, skip=True),
    # The shipped cores: 64 px images on a 16 x 16 token grid (4 x 4 pixel patches).
    "core-64": dict(resolution=64, grid=16, core_channels=128, width=256, depth=6, heads=4, skip=True),
    # What a 2-core CPU trains in an hour (~16 images/s fp32): the same grid and depth at half the width.
    "core-64-cpu": dict(resolution=64, grid=16, core_channels=64, width=128, depth=6, heads=2, skip=True),
    # The recipe sweep's CPU scale and notebook 02's learner run: 32 px on an 8 x 8 token grid.
    "core-32-cpu": dict(resolution=32, grid=8, core_channels=64, width=128, depth=4, heads=4, skip=True),
}

# Growth recipes: the stages added around a core (listed from the core outwards, see GrownUViT).
GROWN_PRESETS: dict[str, dict] = {
    "tiny-grown": dict(core="tiny-core", resolution=32, stage_channels=(16, 16)),
    "grown-256": dict(core="core-64", resolution=256, stage_channels=(128, 64, 32, 16)),
    # Thin high-resolution stages: 256 px sampling stays within seconds on a CPU.
    "grown-256-cpu": dict(core="core-64-cpu", resolution=256, stage_channels=(64, 32, 16, 16)),
}


def core_preset(name: str) -> dict:
    if name not in CORE_PRESETS:
        raise ConfigError(f"unknown core preset {name!r}; choose one of {sorted(CORE_PRESETS)}")
    return dict(CORE_PRESETS[name])


def grown_preset(name: str) -> dict:
    if name not in GROWN_PRESETS:
        raise ConfigError(f"unknown grown preset {name!r}; choose one of {sorted(GROWN_PRESETS)}")
    return dict(GROWN_PRESETS[name])
