"""`studio bench --quick`: one smoke run with tiny models; checks the tables and the JSON have their fields.
No timing is asserted (the numbers depend on the machine and its load)."""

from __future__ import annotations

import json

import pytest

SECTION_TITLES = ("## Machine", "## Targets", "## Matmul peak", "## Training step", "## Peer", "## Sampling",
                  "## Data path", "## Memory", "## Shipped model", "## Profiles")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One CLI run of every default section (4 sampling steps instead of 25 keep it short)."""
    from studio.cli import main

    out = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUDIO_DATA", str(out / "data"))  # the loader's tiny shapes caches go here
        # One thread: tiny ops gain nothing from two, and on a loaded runner two threads wait for each other.
        code = main(["bench", "--quick", "--steps", "4", "--threads", "1", "--quiet",
                     "--json", str(out / "bench.json"), "--markdown", str(out / "bench.md")])
    assert code == 0
    return json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


def test_markdown_has_every_section(quick_run):
    _, table = quick_run
    for title in SECTION_TITLES:
        assert title in table, title
    assert "studio bench --quick --threads 1" in table  # the exact command is recorded
    assert "load average" in table
    assert "Where one guided step goes" in table and "| stage at 256 px |" in table


def test_json_machine_and_peaks(quick_run):
    result, _ = quick_run
    assert result["schema"] == 1
    machine = result["machine"]
    for key in ("cpu", "cpu_count", "torch", "torch_threads", "load_average_start", "load_average_end"):
        assert key in machine
    for dtype in ("fp32", "bf16"):
        peak = result["matmul_peak"][dtype]
        assert peak["flops_per_s"] > 0 and peak["sizes"]
    assert "fp32_end" in result["matmul_peak"]


def test_json_training_rows(quick_run):
    result, _ = quick_run
    rows = result["train"]
    assert {(r["model"], r["precision"]) for r in rows} == {
        (m, p) for m in ("core", "grown") for p in ("fp32", "bf16")}
    for r in rows:
        for key in ("images_per_s", "step_s", "flops_per_image", "achieved_flops_per_s", "fraction_of_peak",
                    "params", "trainable", "memory"):
            assert r[key] is not None, key
        assert r["images_per_s"] > 0 and r["flops_per_image"] > 0
    grown = next(r for r in rows if r["model"] == "grown")
    assert grown["trainable"] < grown["params"]  # grow phase: the core is frozen
    assert result["flops"]["core"]["by_op_per_image"]  # counted per op (matmuls, convs, attention)


def test_json_peer(quick_run):
    result, _ = quick_run
    peer = result["peer"]
    assert peer["match"]["within_tolerance"]
    assert abs(peer["match"]["ratio"] - 1) <= 0.10
    assert peer["match"]["config"]["cross_attention_dim"] == 384
    assert {r["precision"] for r in peer["rows"]} == {"fp32", "bf16"}
    for r in peer["rows"]:
        assert r["ratio"] > 0 and r["peer_images_per_s"] > 0


def test_json_sampling_previews_loader_memory(quick_run):
    result, _ = quick_run
    cases = {(r["resolution"], r["batch"]) for r in result["sampling"]}
    assert cases == {(16, 1), (16, 2), (32, 1), (32, 2)}
    for r in result["sampling"]:
        assert r["seconds_per_image"] > 0 and r["first_step_s"] > 0 and r["steps"] == 4
    modes = {m["label"]: m for m in result["previews"]["loop"]["modes"]}
    assert set(modes) == {"none", "every 5", "every 1"}
    assert modes["none"]["conversions"] == 0 and modes["every 1"]["conversions"] == 4
    assert [c["resolution"] for c in result["previews"]["conversion"]] == [16, 32]
    for row in result["loader"]:
        assert row["dataloader_images_per_s"] > 0 and row["batch_source_images_per_s"] > 0
        assert row["train_images_per_s"] > 0 and "data_share_of_step" in row
    memory = result["memory"]["rows"]  # fresh processes; --quick probes one training and one sampling step
    assert [(r["model"], r["what"].split(",")[0]) for r in memory] == [
        ("core", "train step fp32"), ("grown", "guided sampling step (2B forward)")]
    for r in memory:
        assert "error" not in r, r
        assert r["peak_mb"] > 0 and r["params_mb"] > 0 and r["peak_mb"] >= r["before_mb"]
    # The probes' own peaks, not the parent's (a child inherits ru_maxrss across fork + exec).
    assert max(r["peak_mb"] for r in memory) < result["machine"]["process_max_rss_mb"]


def test_json_shipped_model_profiles_and_targets(quick_run):
    result, _ = quick_run
    shipped = result["shipped"]  # assets/models/shapes-256, sampled as `studio sample` does (4 steps here)
    assert shipped["resolution"] == 256 and shipped["steps"] == 4 and shipped["trainable"] == 0
    row = shipped["rows"][0]
    assert row["batch"] == 1 and row["repeats"] >= 2 and row["seconds_per_image"] > 0 and row["first_s"] > 0
    assert shipped["target_s"] == 4.0 and shipped["target_met"] == (row["seconds_per_image"] <= 4.0)
    split = shipped["step_split"]  # one guided step, part by part
    parts = {p["part"]: p for p in split["parts"]}
    assert {"core", "low-resolution path (64 px)", "stage at 256 px", "other"} <= set(parts)
    assert len(parts) == 4 + 3  # core, low-res path, stages at 32/64/128/256 px, other
    assert split["total_ms"] > 0 and all(p["ms"] >= 0 for p in parts.values())
    assert abs(sum(p["share"] for p in parts.values()) - 1) < 0.05
    profiles = result["profile"]
    assert {k.split(",")[0] for k in profiles} == {"train core fp32", "train peer-unet fp32", "train core bf16",
                                                   "sample shapes-256 256px"}
    for prof in profiles.values():
        assert prof["ops"] and prof["total_ms"] > 0
        assert all(0 <= o["share"] <= 1 for o in prof["ops"])
        assert any("mm" in o["op"] or "conv" in o["op"] or "linear" in o["op"] for o in prof["ops"])
    ratio = next(t for t in result["targets"] if t["target"].endswith("diffusers UNet (fp32)"))
    fp32_peer = next(r for r in result["peer"]["rows"] if r["precision"] == "fp32")
    assert ratio["measured"] == fp32_peer["ratio"] and ratio["met"] == (fp32_peer["ratio"] >= 3)
    sampling = next(t for t in result["targets"] if t["target"].startswith("256 px sampling"))
    assert sampling["measured"] == row["seconds_per_image"]


def test_machine_names_the_models_its_sections_timed(quick_run):
    """The synthetic bench models are named when a section timed them; a `--only shipped` run names the shipped
    model instead (its table is all that run measured)."""
    from studio.bench.report import format_markdown

    result, table = quick_run
    assert "- models: core `" in table
    shipped_only = dict(result, settings=dict(result["settings"], only=["shipped"]))
    lines = format_markdown(shipped_only).splitlines()
    assert not any(line.startswith("- models:") for line in lines)
    assert "- model: the shipped `shapes-256`" in lines


def test_bad_section_is_a_clean_error(capsys):
    from studio.cli import main

    with pytest.raises(SystemExit) as err:
        main(["bench", "--only", "train,nonsense"])
    assert err.value.code == 2
    assert "choose from" in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["core-64", "core-64-cpu"])
def test_peer_matching_is_within_ten_percent_for_the_shipped_cores(preset):
    """The diffusers peer of each shipped core size (counted on the meta device: no memory, a few seconds).
    core-64-cpu (~3M) needs base widths finer than multiples of 8 to land within 10%."""
    from studio.bench import match_peer
    from studio.models import ShallowUViT, core_preset

    import torch

    arch = core_preset(preset)
    with torch.device("meta"):
        params = sum(p.numel() for p in ShallowUViT(**arch).parameters())
    match = match_peer(params, arch["resolution"], arch["grid"], arch["heads"], arch["depth"])
    assert match["within_tolerance"]
    assert match["transformer_blocks"] == arch["depth"]  # 2 down + 1 mid + 3 up on the 16 x 16 grid


def test_channels_last_tweak_measures_training_and_sampling(tmp_path):
    """`--only tweaks --tweaks channels_last`: the training step and the guided sampling forward, each against
    its baseline (the layout `studio.sampling.stream` uses on a CPU)."""
    from studio.cli import main

    out = tmp_path / "tweaks.json"
    assert main(["bench", "--quick", "--only", "tweaks", "--tweaks", "channels_last", "--threads", "1", "--quiet",
                 "--json", str(out), "--markdown", str(tmp_path / "tweaks.md")]) == 0
    tweaks = json.loads(out.read_text())["tweaks"]
    for name in ("channels_last_grown", "channels_last_sampling_grown"):
        assert [r["variant"] for r in tweaks[name]] == ["baseline", "channels_last"]
        assert all(r["step_s"] > 0 and r["speedup"] > 0 for r in tweaks[name])
    assert "channels_last_sampling_grown" in (tmp_path / "tweaks.md").read_text()


def test_shipped_sampling_tweak_times_int8_and_compile(tmp_path, monkeypatch):
    """`--tweaks shipped_sampling`: the shipped model's guided forward against int8 core linears and against
    torch.compile (replaced here by the eager model: inductor takes minutes), with the compile time row."""
    import torch

    from studio.cli import main

    monkeypatch.setattr(torch, "compile", lambda model: model)
    out = tmp_path / "tweaks.json"
    assert main(["bench", "--quick", "--only", "tweaks", "--tweaks", "shipped_sampling", "--threads", "1",
                 "--quiet", "--json", str(out), "--markdown", str(tmp_path / "tweaks.md")]) == 0
    tweaks = json.loads(out.read_text())["tweaks"]
    assert [r["variant"] for r in tweaks["int8_sampling_shipped"]] == ["baseline", "int8_core_linears"]
    compiled = tweaks["compile_sampling_shipped"]
    assert [r["variant"] for r in compiled["rows"]] == ["baseline", "compiled"] and compiled["first_step_s"] > 0
    table = (tmp_path / "tweaks.md").read_text()
    assert "| int8_sampling_shipped | int8_core_linears |" in table and "compile time (first step" in table
    assert "- model: the shipped `shapes-256`" in table and "- models:" not in table  # no synthetic model ran


def test_the_latency_table_names_each_presets_priors():
    """scripts/measure_latency.py labels a preset as the frontier does, with the noise priors it turns on."""
    import importlib.util
    import sys
    import types
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("measure_latency",
                                                  Path(__file__).resolve().parents[1] / "scripts" / "measure_latency.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    timings = dict(first_preview_s=0.4, finished_s=1.4, displayed_s=1.3, displayed_no_previews_s=1.2, cli_s=1.2,
                   sampler_s=1.0, sampler_default_malloc_s=1.1, precision="fp32")
    rows = [dict(speed="balanced", settings=dict(sampler="dpm++", steps=6, guidance=3.0, guidance_interval=(-6.0, 3.0),
                                                 count_prior=1.0, relation_prior=0.5), **timings),
            dict(speed="best", settings=dict(sampler="dpm++", steps=25, guidance=3.0, guidance_interval=None),
                 **timings)]
    text = module.format_markdown(types.SimpleNamespace(model="m", repeats=5, cli_images=8), rows)
    assert "| balanced | dpm++ 6 steps, guidance 3 in [-6, 3], count prior 1, relation prior 0.5 | fp32 |" in text
    assert "| best | dpm++ 25 steps, guidance 3 | fp32 |" in text
