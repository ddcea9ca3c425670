"""The benchmark's tables as Markdown (what `studio bench` prints and writes with --markdown): one renderer per
section of the result, each returning its lines (none when the section is absent)."""

from __future__ import annotations

from collections.abc import Sequence

from studio.bench.config import TWEAKS

#################################################################################
#                                  Cells                                        #
#################################################################################


def _fmt(value, spec: str = ".3g", missing: str = "-") -> str:
    if value is None:
        return missing
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _g(flops: float | None) -> str:
    return "-" if flops is None else f"{flops / 1e9:.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _variant_row(name: str, r: dict) -> tuple:
    return (name, r["variant"], f"{r['step_s']:.3g}", f"{r['images_per_s']:.3g}", f"{r['speedup']:.3g}x",
            _fmt(r.get("cpu_s")), f"{r['speedup_cpu']:.3g}x" if r.get("speedup_cpu") else "-")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%" if x >= 0.1 else f"{100 * x:.2g}%"  # never 1e+02%


def _target_value(t: dict) -> str:
    x = t["measured"]
    if x is None:
        return "-"
    return {"x": f"{x:.3g}x", "%": f"{100 * x:.3g}%"}.get(t.get("unit"), f"{x:.3g} s")


def _mem(m: dict | None) -> str:
    if not m or m.get("peak_mb") is None:
        return "-"
    return f"{m['peak_mb']:.0f} (+{m['delta_mb']:.0f})"


def _mem_kind(result: dict) -> str:
    cpu = result["machine"]["device"] == "cpu"
    return "RSS MiB (+ over start)" if cpu else "allocated MiB (+ over start)"


#################################################################################
#                                 Sections                                      #
#################################################################################

def _machine(result: dict) -> list[str]:
    m = result["machine"]
    out = ["## Machine", ""]
    desc = f"{m.get('gpu', m['cpu'])}" + ("" if m["device"] == "cpu" else f" (host CPU: {m['cpu']})")
    out += [f"- device: `{m['device']}`: {desc}",
            f"- CPU: {m['cpu']}, {m['cpu_count']} logical cores, capability {m['cpu_capability']}, "
            f"torch threads {m['torch_threads']}, nice {m.get('nice', '?')}",
            f"- torch {m['torch']}, diffusers {m.get('diffusers', '?')}, Python {m['python']}",
            f"- load average (1, 5, 15 min): start {m.get('load_average_start')}, end {m.get('load_average_end')}",
            f"- wall time of the run: {result.get('wall_s', 0):.0f} s"]
    if result.get("command"):
        out += [f"- command: `{result['command']}`"]
    a, settings = result.get("architecture", {}), result.get("settings") or {}
    if _times_synthetic_models(settings):
        out += [f"- models: core `{a.get('core_preset')}` {a.get('core')}, grown `{a.get('grown_preset')}` to "
                f"{a.get('grown_resolution')} px with stage_channels {a.get('stage_channels')}"]
    else:
        out += [f"- model: the shipped `{settings.get('shipped_model')}`"]
    return out + [""]


def _times_synthetic_models(settings: dict) -> bool:
    """Whether a section of the run timed the bench's own models: all do but `shipped` and the tweak of the
    shipped model's sampling."""
    only = settings.get("only")
    if only is None:
        return True
    tweaks = set(settings.get("tweaks") or TWEAKS) if "tweaks" in only else set()
    return bool(set(only) - {"shipped", "tweaks"} or tweaks - {"shipped_sampling"})


def _targets(result: dict) -> list[str]:
    if not result.get("targets"):
        return []
    def met(t: dict) -> str:
        return {True: "yes", False: "**no**", None: "-"}[t["met"]] + (f" ({t['note']})" if t["note"] else "")

    return ["## Targets (this device)", "",
            *_table(["target", "goal", "measured", "met"],
                    [(t["target"], t["goal"], _target_value(t), met(t)) for t in result["targets"]]),
            ""]


def _matmul_peak(result: dict) -> list[str]:
    peaks = result.get("matmul_peak", {})
    if not peaks:
        return []
    out = ["## Matmul peak (same run)", ""]
    out += _table(["dtype", "best", "GFLOP/s", "GFLOP per CPU-second", "per entry point and size (GFLOP/s)"],
                  [(k, f"{p.get('best_op', 'mm')} n={p['best_n']}", f"{p['flops_per_s'] / 1e9:.3g}",
                    _g(p.get("flops_per_cpu_s")),
                    ", ".join(f"{s.get('op', 'mm')} {s['n']}: {s['flops_per_s'] / 1e9:.3g}" for s in p["sizes"]))
                   for k, p in peaks.items()])
    if "fp32" in peaks and "bf16" in peaks:
        ratio = peaks["bf16"]["flops_per_s"] / peaks["fp32"]["flops_per_s"]
        out += ["", f"Best bf16 matmul / best fp32 matmul: {ratio:.3g}x (measured in this run)."]
    return out + [""]


def _training(result: dict) -> list[str]:
    if not result.get("train"):
        return []
    out = ["## Training step", "",
           "FLOPs per image: one forward + backward of the training loss, counted with FlopCounterMode "
           "(matmul, conv, attention). Peak: the same-dtype matmul peak above.", ""]
    cpu = result["machine"]["device"] == "cpu"
    if cpu:
        out += ["\"CPU share\": the process's CPU seconds over (wall seconds x torch threads); well below 100% "
                "means the machine was shared or the kernels ran on fewer threads. Memory columns in this and "
                "the sampling table are in-process peaks (see the Memory section for clean per-case figures).",
                ""]
    header = ["model", "phase", "params (trainable)", "px", "batch", "precision", "step s (median)", "images/s",
              "GFLOP/image", "achieved GFLOP/s", "% of peak"]
    header += ["CPU share"] if cpu else []
    rows = []
    for r in result["train"]:
        row = [r["model"], r.get("phase", ""), f"{r['params'] / 1e6:.2f}M ({r['trainable'] / 1e6:.2f}M)",
               r["resolution"], r["batch"], r["precision"], f"{r['step_s']:.3g} (n={r['iters']})",
               f"{r['images_per_s']:.3g}", _g(r.get("flops_per_image")), _g(r.get("achieved_flops_per_s")),
               _pct(r.get("fraction_of_peak"))]
        if cpu:
            row += [_pct(r.get("cpu_share"))]
        rows.append(row + [_mem(r.get("memory"))])
    out += _table(header + [f"peak {_mem_kind(result)}"], rows)
    if any((r.get("fraction_of_peak") or 0) > 1 for r in result["train"]):
        out += ["", "A share of the peak above 100% means the square-matmul yardstick of that dtype runs slower "
                    "than some of the step's kernels (bf16 without native bf16 units), not that the step beats "
                    "the hardware: compare such rows with the fp32 peak instead."]
    return out + [""]


def _peer(result: dict) -> list[str]:
    p = result.get("peer")
    if not p:
        return []
    cfg, match = p["match"]["config"], p["match"]
    out = ["## Peer: diffusers UNet2DConditionModel, same parameter count, same loop", "",
           f"- UNet: block_out_channels {list(cfg['block_out_channels'])}, layers_per_block "
           f"{cfg['layers_per_block']}, down {list(cfg['down_block_types'])}, cross_attention_dim "
           f"{cfg['cross_attention_dim']}, heads {cfg['attention_head_dim']}",
           f"- parameters: UNet {match['params'] / 1e6:.2f}M vs ours {p['ours_params'] / 1e6:.2f}M "
           f"(ratio {match['ratio']:.3f}, within 10%: {match['within_tolerance']}); transformer "
           f"blocks {match['transformer_blocks']} (our depth {match['our_depth']})",
           f"- GFLOP/image (forward + backward): UNet {_g(p['flops']['flops_per_image'])}, ours "
           f"{_g(p.get('ours_flops_per_image'))}", f"- {p['note']}", ""]
    out += _table(["precision", "ours images/s", "UNet images/s", "ours / UNet", "ours % of peak",
                   "UNet % of peak", f"UNet peak {_mem_kind(result)}"],
                  [(r["precision"], f"{r['ours_images_per_s']:.3g}", f"{r['peer_images_per_s']:.3g}",
                    f"{r['ratio']:.3g}", _pct(r["ours"].get("fraction_of_peak")),
                    _pct(r["peer"].get("fraction_of_peak")), _mem(r["peer"].get("memory"))) for r in p["rows"]])
    return out + [""]


def _sampling(result: dict) -> list[str]:
    if not result.get("sampling"):
        return []
    cpu = result["machine"]["device"] == "cpu"
    out = ["## Sampling (25 guided steps: conditional + unconditional in one 2B forward)", ""]
    out += _table(["px", "batch", "precision", "s / image", "s / step", "first preview s", "CPU share",
                   f"peak {_mem_kind(result)}"],
                  [(r["resolution"], r["batch"], r["precision"], f"{r['seconds_per_image']:.3g}",
                    f"{r['seconds_per_step']:.3g}", f"{r['first_step_s']:.3g}",
                    _pct(r.get("cpu_share")) if cpu else "-", _mem(r.get("memory")))
                   for r in result["sampling"]])
    if result.get("sampler_overhead"):
        out += ["", "The sampling loop without the network (a model that returns v = 0): scheduler, x0, copies:", ""]
        out += _table(["px", "batch", "ms / step"],
                      [(r["resolution"], r["batch"], f"{1e3 * r['seconds_per_step']:.3g}")
                       for r in result["sampler_overhead"]])
    if result.get("text_encoder"):
        te = result["text_encoder"]
        out += ["", f"Text encoder (MiniLM-L6, CPU): load {te['load_s']:.3g} s once; encoding a new prompt "
                    f"and the empty prompt {1e3 * te['encode_s']:.3g} ms (cached afterwards)."]
    return out + _previews(result.get("previews", {})) + [""]


def _previews(pv: dict) -> list[str]:
    out = []
    if pv.get("loop"):
        lp = pv["loop"]
        out += ["", f"Previews (x_t and x0 -> PIL on the sampling loop, {lp['resolution']} px, batch 1):", ""]
        out += _table(["previews", "conversions", "s / trajectory", "overhead"],
                      [(r["label"], r["conversions"], f"{r['seconds']:.3g}", f"{100 * r['overhead']:+.1f}%")
                       for r in lp["modes"]])
    if pv.get("conversion"):
        out += ["", "One step's conversion alone (batch 1):", ""]
        out += _table(["px", "x_t + x0 -> PIL ms", "+ PNG encode ms"],
                      [(c["resolution"], f"{c['pil_ms']:.3g}", f"{c['pil_png_ms']:.3g}") for c in pv["conversion"]])
    return out


def _loader(result: dict) -> list[str]:
    if not result.get("loader"):
        return []
    out = ["## Data path vs training step (fp32)", ""]
    out += _table(["px", "batch", "cache", "DataLoader images/s", "BatchSource images/s", "train images/s",
                   "BatchSource / train", "data share of step"],
                  [(r["resolution"], r["batch"], r["cache"], f"{r['dataloader_images_per_s']:.4g}",
                    f"{r['batch_source_images_per_s']:.4g}", _fmt(r.get("train_images_per_s")),
                    _fmt(r.get("batch_source_over_train"), ".3g"),
                    _fmt(100 * r["data_share_of_step"] if r.get("data_share_of_step") else None, ".2g") + "%")
                   for r in result["loader"]])
    return out + [""]


def _memory(result: dict) -> list[str]:
    if not result.get("memory"):
        return []
    m = result["machine"]
    out = ["## Memory", "", "Each case in a fresh process: the model is built, then one step runs (the first "
                            "training step also allocates the AdamW state).", ""]
    out += _table(["model", "what", "px", "weights MiB", "before the step MiB", "peak MiB", "step adds MiB"],
                  [(r["model"], r["what"], r.get("resolution", "-"), _fmt(r.get("params_mb")),
                    _fmt(r.get("before_mb")), _fmt(r.get("peak_mb")),
                    _fmt(r.get("delta_mb")) if "error" not in r else f"error: {r['error']}")
                   for r in result["memory"]["rows"]])
    what = "the process RSS" if m["device"] == "cpu" else "the maximum allocated by torch"
    return out + ["", f"Peak memory is {what}. "
                      f"This benchmark's own process peaked at {m.get('process_max_rss_mb')} MiB RSS.", ""]


def _shipped(result: dict) -> list[str]:
    sh = result.get("shipped")
    if not sh:
        return []
    out = [f"## Shipped model `{sh['model']}`, sampled as `studio sample` does", ""]
    if sh.get("skipped"):
        return out + [f"Skipped: {sh['skipped']}", ""]
    out += [f"- {sh['resolution']} px, {sh['params'] / 1e6:.2f}M parameters, {sh['steps']} {sh['sampler']} "
            f"steps, guidance {sh['guidance']:g} (text encoder, `stream`, x0 -> PIL; no PNG write)",
            f"- load: model {sh['load_s']:.3g} s, text encoder {sh['text_encoder_load_s']:.3g} s (once per "
            f"process)", ""]
    out += _table(["batch", "first trajectory s (new prompt)", "s / trajectory (median)", "s / image",
                   "CPU s / image", "CPU share"],
                  [(r["batch"], f"{r['first_s']:.3g}", f"{r['seconds']:.3g} (n={r['repeats']})",
                    f"{r['seconds_per_image']:.3g}", f"{r['cpu_s_per_image']:.3g}", _pct(r.get("cpu_share")))
                   for r in sh["rows"]])
    out += [""]
    split = sh.get("step_split")
    if split:
        out += [f"Where one guided step goes (the batched conditional + unconditional forward, "
                f"{split['total_ms']:.4g} ms; x {split['steps']} steps):", ""]
        out += _table(["part", "ms per step", "share", f"s per {split['steps']} steps"],
                      [(p["part"], f"{p['ms']:.3g}", _pct(p["share"]), f"{p['ms'] * split['steps'] / 1e3:.3g}")
                       for p in split["parts"]])
        out += [""]
    return out


def _profiles(result: dict) -> list[str]:
    if not result.get("profile"):
        return []
    out = ["## Profiles (torch.profiler, top ops by self time)", ""]
    for case, prof in result["profile"].items():
        out += [f"**{case}** ({prof['kind']}, total {prof['total_ms']:.4g} ms):", ""]
        out += _table(["op", "calls", "self ms", "share"],
                      [(f"`{o['op']}`", o["calls"], f"{o['self_ms']:.4g}", _pct(o["share"])) for o in prof["ops"]])
        out += [""]
    return out


def _errors(result: dict) -> list[str]:
    if not result.get("errors"):
        return []
    return ["## Sections that failed (the run went on without them)", "",
            *[f"- `{name}`: {text.splitlines()[0]}" for name, text in result["errors"].items()], ""]


def _tweak_rows(name: str, value) -> list[tuple]:
    """The table rows of one tweaks experiment (a list of variants, or a dict for compile and noise)."""
    blank = ("", "", "", "")
    if name == "optimizer_step_core":
        base, base_cpu = value[0]["step_s"], value[0]["cpu_s"]
        return [(name, f"AdamW {r['variant']} (optimizer.step alone)", f"{r['step_s']:.3g}", "",
                 f"{base / r['step_s']:.3g}x", f"{r['cpu_s']:.3g}", f"{base_cpu / r['cpu_s']:.3g}x") for r in value]
    if isinstance(value, list):
        return [_variant_row(name, r) for r in value]
    if name.startswith("compile") and "rows" in value:
        return [_variant_row(name, r) for r in value["rows"]] + [
            (name, "compile time (first step - baseline step)", f"{value['compile_s']:.3g}", "", "", "", "")]
    if name.startswith("compile"):
        return [(name, value.get("error", "?"), "", *blank)]
    if name.startswith("noise"):
        return [(name, f"randn {value['shape']} CPU generator (+copy)", f"{value['cpu_generator_s']:.3g}", *blank),
                (name, "randn on the device generator", f"{value['device_generator_s']:.3g}", *blank)]
    return []


def _tweaks(result: dict) -> list[str]:
    if not result.get("tweaks"):
        return []
    rows = [row for name, value in result["tweaks"].items() for row in _tweak_rows(name, value)]
    return ["## Candidate speed-ups (interleaved rounds; the fp32 training step, or one guided sampling "
            "forward where the experiment says sampling)", "",
            *_table(["experiment", "variant", "wall s (median)", "images/s", "speed-up (wall)", "CPU s (median)",
                     "speed-up (CPU time)"], rows),
            ""]


def _end_peak(result: dict) -> list[str]:
    peaks = result.get("matmul_peak", {})
    end = peaks.get(f"{next(iter(peaks), '')}_end") if peaks else None
    if not end:
        return []
    return [f"Matmul peak at the end of the run ({end['dtype']} {end['best_op']}, n={end['best_n']}): "
            f"{end['flops_per_s'] / 1e9:.1f} GFLOP/s (start: {peaks[end['dtype']]['flops_per_s'] / 1e9:.1f}).", ""]


# The sections of the report, in print order.
RENDERERS = (_machine, _targets, _matmul_peak, _training, _peer, _sampling, _loader, _memory, _shipped, _profiles,
             _errors, _tweaks, _end_peak)


def format_markdown(result: dict) -> str:
    """The benchmark's tables as Markdown (also what `studio bench` prints)."""
    return "\n".join(line for render in RENDERERS for line in render(result))
