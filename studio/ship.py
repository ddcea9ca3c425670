"""Turn a finished training run into a shipped model folder: `assets/models/<name>/`.

The folder holds fp16 EMA weights (safetensors), `config.json`, `training.json` (the run's record plus the
shipping metrics), `log.jsonl` (the training curve, for the app's Model tab), `samples.png` (a sample grid)
and a model card `README.md`. It is written next to its destination and renamed into place, so a crash never
leaves half a model where the app looks for models.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from studio.caption_match import CAPTIONS_FILE, write_captions
from studio.card import format_card, model_card
from studio.data.emoji import emoji_prompt_suite
from studio.data.shapes import heldout_captions
from studio.data.folder import trained_caption_records
from studio.errors import DataError, ModelFormatError
from studio.eval.alignment import align_model, format_question_table
from studio.eval.fid import fid_model
from studio.hub import cast_model, default_device, load_model, trained_data
from studio.images import grid, save_png
from studio.paths import SHIPPED_MODELS_DIR, data_family, data_source_folder
from studio.sampling import PRESETS_FILE, generate

DATA_LICENCES = {
    "shapes": "Procedural `shapes` data rendered by this project (spec: shared/specs/SHAPES.md); no third-party "
              "images.",
    "emoji": "Microsoft Fluent Emoji (MIT) and, where the flat/openmoji styles are used, OpenMoji "
             "(CC BY-SA 4.0, by the OpenMoji project); see the data folder's ATTRIBUTION.md.",
}


def default_prompts(data: str, n: int = 8) -> list[str]:
    """Held-out captions of the run's own data: emoji concepts of its prepared set, or shapes scenes."""
    if data_family(data) == "emoji":
        try:
            return emoji_prompt_suite(data_source_folder(str(data)), limit=n)
        except Exception:  # noqa: BLE001 - data not prepared here: fall back to fixed concepts
            return [f"{c}, 3d style" for c in ("red apple", "grinning face", "rocket", "cat face", "sun",
                                               "green heart", "pizza", "snowman")][:n]
    return [scene.caption for scene in heldout_captions(n, seed=1)]


def ship_model(run_dir: str | Path, name: str, *, out_root: str | Path = SHIPPED_MODELS_DIR,
               prompts: list[str] | None = None, align_n: int = 0, fid_n: int = 0, steps: int = 25,
               guidance: float = 3.0, overwrite: bool = False, progress: bool = True, device: str | None = None
               ) -> Path:
    """Copy a trained run into `out_root/name` with fp16 weights, a sample grid and a model card.

    `align_n` held-out shapes captions score prompt alignment (shapes data only); `fid_n` held-out images of
    the run's data (at most its held-out split) give FID and KID. Sampling (the grid, the metrics) runs on
    `device`, by default the GPU when there is one. `run_dir` may be the shipped folder itself (re-shipping
    with new metrics, or with its speed presets measured since): everything is read before the folder is
    replaced, and the metrics not measured again are kept."""
    run_dir, out_root = Path(run_dir), Path(out_root)
    target = out_root / name
    if target.exists() and not overwrite:
        raise ModelFormatError(f"{target} exists; pass overwrite=True (--overwrite) to replace it")
    device = device or default_device()
    batch_size = 8 if device == "cpu" else 100
    model = load_model(run_dir, device=device)
    training = json.loads((run_dir / "training.json").read_text()) if (run_dir / "training.json").is_file() else {}
    data = trained_data(run_dir) or "shapes"
    prompts = prompts or training.get("sample_prompts") or default_prompts(data)  # a re-ship keeps its grid's
    images = generate(model, prompts, seed=0, steps=steps, guidance=guidance, progress=progress)

    # re-shipping in place keeps what was measured on these weights; what is measured again replaces it
    in_place = run_dir.resolve() == target.resolve()
    metrics: dict = dict(training.get("shipping_metrics") or {}) if in_place else {}
    if align_n and data_family(data) != "emoji":
        result = align_model(run_dir, n=align_n, seed=0, steps=steps, guidance=guidance, progress=progress,
                             device=device, batch_size=batch_size)
        result.pop("details", None)
        metrics["alignment"] = result
    if fid_n:
        metrics["fid"] = fid_model(model, data, n=fid_n, steps=steps, guidance=guidance, batch_size=batch_size,
                                   device=device, progress=progress) | {"model": name}
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_root))
    try:
        cast_model(model, "cpu", torch.float16).save_pretrained(tmp)
        cast_model(model, "cpu", torch.float32)
        training = training | {"shipped_as": name, "shipping_metrics": metrics,
                               "sample_prompts": prompts, "sample_settings": {"steps": steps, "guidance": guidance,
                                                                              "sampler": "dpm++", "seed": 0}}
        (tmp / "training.json").write_text(json.dumps(training, indent=2))
        if (run_dir / "log.jsonl").is_file():
            shutil.copy2(run_dir / "log.jsonl", tmp / "log.jsonl")
        save_png(grid(images, columns=4), tmp / "samples.png", {"prompts": json.dumps(prompts)})
        _ship_captions(run_dir, tmp, data)
        if (run_dir / PRESETS_FILE).is_file():  # a re-ship of a measured folder: the same weights, the same presets
            shutil.copy2(run_dir / PRESETS_FILE, tmp / PRESETS_FILE)
        shipped = load_model(tmp, allow_untrained=True)
        shipped.name = name
        card = model_card(shipped) | {"folder": name}  # the staging folder's name means nothing to a reader
        (tmp / "README.md").write_text(_card_markdown(name, card, prompts, metrics, data, training.get("data")))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _ship_captions(run_dir: Path, folder: Path, data: str) -> None:
    """`captions.json` for caption matching (`studio.caption_match`) of a model trained on an image folder:
    its trained captions, from the data folder's metadata.jsonl, or kept from `run_dir` (a re-ship where the
    data is not prepared). The shapes grammar composes its captions, so shapes models get none; so does a
    folder captioned by sidecar files (caption matching is then off for the model)."""
    if data_family(data) == "shapes":
        return
    try:
        records = trained_caption_records(data_source_folder(data))
    except (DataError, OSError):
        records = []
    if records:
        write_captions(folder, records)
    elif (run_dir / CAPTIONS_FILE).is_file():
        shutil.copy2(run_dir / CAPTIONS_FILE, folder / CAPTIONS_FILE)


def _card_markdown(name: str, card: dict, prompts: list[str], metrics: dict, data: str,
                   data_info: dict | None = None) -> str:
    t = card["training"]
    lines = [f"# {name}", "",
             f"A {card['class']} at {card['config']['resolution']} px from Greedy Growing Studio "
             f"(phase: `{card['config'].get('training_phase')}`).", "",
             "![samples](samples.png)", "",
             "Prompts of the grid (left to right, top to bottom; seed 0, 25 dpm++ steps, guidance 3):", ""]
    lines += [f"{i + 1}. {p}" for i, p in enumerate(prompts)]
    lines += ["", "## Architecture and training", "", "```", format_card(card), "```", ""]
    if t:
        keys = ("phase", "preset", "parent", "parent_hash", "steps", "images_seen", "wall_time_s", "images_per_s")
        lines += [f"- {k}: `{t[k]}`" for k in keys if k in t]
        if "hardware" in t:
            lines.append(f"- hardware: `{json.dumps(t['hardware'])}`")
        if len(t.get("legs") or []) > 1:  # it went on from an earlier model of the phase
            lines += ["", f"Trained in {len(t['legs'])} legs, {t['images_seen_total']:,} images in all:", "",
                      "| leg | preset | images | wall time | images/s | device |", "|---|---|---|---|---|---|"]
            lines += [f"| {i + 1} | `{leg['preset']}` | {leg['images_seen'] or 0:,} | {(leg['wall_time_s'] or 0) / 60:.1f} min "
                      f"| {leg['images_per_s']} | {leg['device']} |" for i, leg in enumerate(t["legs"])]
    if metrics.get("alignment"):
        lines += ["", "## Prompt alignment (held-out canonical captions)", ""]
        a = metrics["alignment"]
        lines += [f"{a['n']} captions, seed {a['seed']}, {a['steps']} {a['sampler']} steps, guidance {a['guidance']}; "
                  "`ceiling` is the same checker on ground-truth renderings at this resolution.", "", "```",
                  format_question_table(a["questions"], a.get("confidence", 0.95),
                                        ceiling=(a.get("ceiling") or {}).get("questions")), "```"]
    if metrics.get("fid"):
        f = metrics["fid"]
        lines += ["", "## FID and KID (held-out images)", "",
                  f"{f['n']} held-out images of `{f['data']}` at {f['resolution']} px, one generated per caption "
                  f"(seed {f['seed']}, {f['steps']} {f['sampler']} steps, guidance {f['guidance']}); InceptionV3 "
                  "features. With a few hundred images or fewer FID is biased upwards: compare models at equal n, "
                  "and read KID (unbiased) first.", "",
                  "| FID | KID |", "|---|---|", f"| {f['fid']:.1f} | {f['kid_mean']:.4f} |"]
    trained_on = f"Trained on `{data}`"
    if isinstance(data_info, dict) and data_info.get("examples"):
        trained_on += f": {data_info['examples']} training images, {data_info.get('unique_captions', '?')} captions"
    licence = DATA_LICENCES.get("emoji" if data_family(data) == "emoji" else data, f"Data: {data}.")
    lines += ["", "## Data and licence", "", trained_on + ".", "", licence, "",
              "Reproduce: see `training.json` (`config`) and the README's training commands.", ""]
    return "\n".join(lines)
