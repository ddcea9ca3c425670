"""The issue's speed targets, as data, and `check_targets`: each target of this run's device set against what
the run measured (judged from the figures, never from constants)."""

from __future__ import annotations

SHIPPED_TARGET_S = 4.0  # the shipped-models issue: a 256 px image in <= 4 s on 2 CPU cores (25 steps, guidance)

# On the CPU: core training images/s over the equal-size diffusers UNet, and the share of the matmul peak.
CPU_PEER_RATIO = 3.0
CPU_BF16_SHARE = 0.60  # where bf16 is used at all (faster than fp32 on this CPU)
CPU_FP32_REFERENCE_SHARE = 0.62  # a reference, not a target
# On a GPU: the share of the bf16 matmul peak per model, and the seconds per 256 px image.
GPU_BF16_SHARE = {"core": 0.45, "grown": 0.30}
GPU_SAMPLING_S = 1.0


def check_targets(result: dict) -> list[dict]:
    """The issue's targets for this device, each with what this run measured and whether it is met (None:
    not measured in this run)."""
    out = []

    def add(target: str, measured, goal: str, met, note: str = "") -> None:
        unit = "x" if goal.endswith("x") else "%" if "%" in goal else "s"
        out.append(dict(target=target, measured=measured, unit=unit, goal=goal, met=met, note=note))

    if result["machine"]["device"] == "cpu":
        _cpu_targets(result, add)
    else:
        _gpu_targets(result, add)
    return out


def _train_rows(result: dict) -> dict:
    return {(r["model"], r["precision"]): r for r in result.get("train", [])}


def _cpu_targets(result: dict, add) -> None:
    train = _train_rows(result)
    for precision, r in {r["precision"]: r for r in (result.get("peer") or {}).get("rows", [])}.items():
        add(f"core training images/s vs the equal-size diffusers UNet ({precision})", r["ratio"],
            f">= {CPU_PEER_RATIO:g}x", r["ratio"] >= CPU_PEER_RATIO)
    fp32, bf16 = train.get(("core", "fp32")), train.get(("core", "bf16"))
    if bf16 is not None and bf16.get("fraction_of_peak") is not None:
        used = fp32 is None or bf16["images_per_s"] >= fp32["images_per_s"]
        note = "" if used else (f"bf16 is not used on this CPU: its step is "
                                f"{fp32['images_per_s'] / bf16['images_per_s']:.3g}x slower than fp32 (no native "
                                "bf16 units), so the target does not apply")
        add("core training step, share of the bf16 matmul peak (where bf16 is used)", bf16["fraction_of_peak"],
            f">= {CPU_BF16_SHARE:.0%}", bf16["fraction_of_peak"] >= CPU_BF16_SHARE if used else None, note)
    if fp32 is not None and fp32.get("fraction_of_peak") is not None:
        add("core training step, share of the fp32 matmul peak", fp32["fraction_of_peak"],
            f"(reference: {CPU_FP32_REFERENCE_SHARE:.0%})", None)
    shipped = result.get("shipped") or {}
    if shipped.get("rows") and shipped.get("target_s"):
        add(f"256 px sampling, {shipped['model']}, {shipped['steps']} guided steps, batch 1 (s / image)",
            shipped["rows"][0]["seconds_per_image"], f"<= {shipped['target_s']:g} s", shipped["target_met"])


def _gpu_targets(result: dict, add) -> None:
    train = _train_rows(result)
    for name, goal in GPU_BF16_SHARE.items():
        r = train.get((name, "bf16"))
        if r is not None and r.get("fraction_of_peak") is not None:
            add(f"{name} training step, share of the bf16 matmul peak", r["fraction_of_peak"], f">= {goal:.0%}",
                r["fraction_of_peak"] >= goal)
    rows = [r for r in result.get("sampling", []) if r["resolution"] == 256 and r["batch"] == 1]
    if rows:
        best = min(rows, key=lambda r: r["seconds_per_image"])
        add(f"256 px sampling, {best['steps']} guided steps, batch 1 (s / image, {best['precision']})",
            best["seconds_per_image"], f"well under {GPU_SAMPLING_S:g} s", best["seconds_per_image"] < GPU_SAMPLING_S)
