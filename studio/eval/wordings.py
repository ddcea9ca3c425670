"""Does a model draw a concept it knows when the prompt is worded differently from its training captions?

For K trained concepts of a prepared emoji set (split "train", base emoji, one style, chosen by seed), one image
is generated from the training caption ("blue heart, 3d style") and one from each held-out template ("blue
heart in 3d", ...), concept i at seed + i in every wording. Each image is identified by its nearest real image
among the K concepts' own images (cosine similarity of the InceptionV3 pool features that FID uses): the share
identified as the prompted concept, per wording, with 95% Wilson intervals (chance: 1/K). The caption's row is
the ceiling a wording can reach; a wording far below it is one the text pathway does not map to the concept.

The default templates are outside the wordings `caption_wordings: true` trains under
(`studio.data.emoji.caption_wordings`), so they stay held out for a model trained with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.caption_match import match_prompts, matcher_for
from studio.data.emoji import load_emoji_metadata
from studio.data.folder import ImageFolderDataset
from studio.errors import DataError
from studio.eval.alignment import _model_resolution
from studio.eval.fid import inception_features, resolve_data
from studio.hub import load_model
from studio.images import resized
from studio.sampling import generate
from studio.stats import wilson_interval

HELD_OUT_TEMPLATES = ("{name} in {style}", "{name}, {style} render", "a picture of {name}")
CAPTION = "caption"  # the row of the training caption itself


def pick_concepts(root: Path, k: int, seed: int = 0, style: str = "3d") -> list[dict]:
    """`k` trained concepts of a prepared emoji set (metadata records, base emoji of `style`), chosen by `seed`
    and kept in file order."""
    records = [r for r in load_emoji_metadata(root)
               if r.get("split") == "train" and r.get("skin_tone") is None and r.get("style") == style]
    if len(records) < 2:
        raise DataError(f"{root} has {len(records)} trained {style} emoji; telling concepts apart needs at least 2")
    if k > len(records):
        raise DataError(f"{k} concepts is more than the {len(records)} trained {style} emoji of {root}")
    chosen = np.random.default_rng(seed).choice(len(records), size=k, replace=False)
    return [records[i] for i in sorted(chosen)]


def identify(generated: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Index of each generated image's nearest real image by cosine similarity of features: (N,) int."""
    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return (unit(generated) @ unit(real).T).argmax(axis=1)


@dataclass
class ConceptTest:
    """Which of K trained emoji concepts does an image show? Its nearest real image among the concepts' own
    images (InceptionV3 pool features) answers; `hits` says, for one image per concept in `records` order,
    whether that answer is the concept asked for. The wordings test and the emoji models' sampling frontier
    (`studio.eval.frontier`) ask it."""
    records: list[dict]  # metadata records of the concepts (name, text, file_name, ...)
    real_features: np.ndarray  # (K, D)
    resolution: int  # images are compared at this size: the real ones loaded at it, generated ones resized to it

    @classmethod
    def prepare(cls, data: str | os.PathLike, resolution: int, concepts: int = 60, seed: int = 0,
                style: str = "3d", progress: bool = True) -> ConceptTest:
        kind, root = resolve_data(data)
        if kind != "folder":
            raise DataError("telling emoji concepts apart needs a prepared emoji set (`--data emoji`), not shapes")
        records = pick_concepts(root, concepts, seed, style)
        dataset = ImageFolderDataset(root, resolution)
        row_of = {r["file"]: i for i, r in enumerate(dataset.records)}
        real = [dataset[row_of[r["file_name"]]]["image"] for r in records]
        return cls(records, inception_features(real, progress=progress), resolution)

    @property
    def captions(self) -> list[str]:
        """Each concept's training caption ("blue heart, 3d style")."""
        return [r["text"] for r in self.records]

    def hits(self, images) -> np.ndarray:
        """(K,) bool: image i (PIL) identified as concept i, compared at the test's resolution."""
        features = inception_features(resized(images, self.resolution), progress=False)
        return identify(features, self.real_features) == np.arange(len(self.records))


def wordings_model(model, data: str | os.PathLike = "emoji", concepts: int = 60,
                   templates: tuple[str, ...] = HELD_OUT_TEMPLATES, seed: int = 0, steps: int = 25,
                   guidance: float = 3.0, sampler: str = "dpm++", batch_size: int = 8, style: str = "3d",
                   match_captions: bool = False, progress: bool = True,
                   guidance_interval: tuple[float, float] | None = None, judge_resolution: int | None = None
                   ) -> dict:
    """The wordings test of `model` (a loaded model, name or folder) on `concepts` trained emoji of `data`.
    With `match_captions` every prompt is drawn as its nearest trained caption (`studio.caption_match`), and
    each row also says how often that was the concept's own caption (`matched`). `judge_resolution` compares
    images at another size than the model draws (default its own): a core judged at its grown model's size
    (bicubic upsampling) is the bar for what growing kept, since a smaller picture of both sides is easier to
    tell apart."""
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    for t in templates:
        if "{name}" not in t:
            raise DataError(f"template {t!r} has no {{name}}: write e.g. '{{name}} in {{style}}'")
    resolution = _model_resolution(model)
    test = ConceptTest.prepare(data, judge_resolution or resolution, concepts, seed, style, progress)
    records = test.records
    prompts = {CAPTION: test.captions}
    prompts.update({t: [t.format(name=r["name"], style=style) for r in records] for t in templates})
    rows = {}
    if match_captions and matcher_for(model) is None:
        raise DataError(f"{getattr(model, 'name', 'the model')} ships no trained captions to match "
                        "(captions.json, written by `studio ship`)")
    for wording, texts in prompts.items():
        images = generate(model, texts, seed=seed, steps=steps, guidance=guidance, sampler=sampler,
                          guidance_interval=guidance_interval, batch_size=batch_size, progress=progress,
                          match_captions=match_captions)
        hits = test.hits(images)
        correct = int(hits.sum())
        rows[wording] = dict(accuracy=correct / len(texts), interval=wilson_interval(correct, len(texts)),
                             correct=correct, n=len(texts), example=texts[0],
                             right=[r["name"] for r, h in zip(records, hits) if h])
        if match_captions:
            own = sum(m.drawn == r["text"] for m, r in zip(match_prompts(model, texts), records))
            rows[wording]["matched"] = own / len(texts)
    held = [rows[t] for t in templates]
    held_correct, held_n = sum(r["correct"] for r in held), sum(r["n"] for r in held)
    return {"model": str(getattr(model, "name", type(model).__name__)), "data": str(data), "style": style,
            "resolution": resolution, "judged_at": test.resolution, "concepts": len(records),
            "chance": 1 / len(records), "seed": seed, "steps": steps, "guidance": guidance, "sampler": sampler,
            **({"guidance_interval": list(guidance_interval)} if guidance_interval else {}),
            "match_captions": bool(match_captions),
            "wordings": rows,
            "held_out": dict(accuracy=held_correct / held_n, interval=wilson_interval(held_correct, held_n),
                             correct=held_correct, n=held_n),
            "concept_names": [r["name"] for r in records]}


def format_wordings(result: dict) -> str:
    """The result as a table: one line per wording, then the held-out templates together."""
    matched = result.get("match_captions", False)
    judged = result.get("judged_at", result["resolution"])
    size = f"{result['resolution']} px" + (f", judged at {judged} px" if judged != result["resolution"] else "")
    lines = [f"wordings test of {result['model']} at {size}: {result['concepts']} trained "
             f"concepts, nearest real image by InceptionV3 features (chance {result['chance']:.3f})"
             + (", each prompt drawn as its nearest trained caption" if matched else ""),
             f"{'wording':34s} {'accuracy':>8s} {'95% CI':>16s} {'correct/n':>10s}"
             + (f" {'own caption':>11s}" if matched else "")]

    def line(name, r):
        lo, hi = r["interval"]
        own = f" {r['matched']:11.3f}" if "matched" in r else ""
        return (f"{name[:34]:34s} {r['accuracy']:8.3f} {f'[{lo:.3f}, {hi:.3f}]':>16s} {r['correct']:>5d}/{r['n']}"
                + own)
    for wording, r in result["wordings"].items():
        lines.append(line("the training caption" if wording == CAPTION else wording, r))
    lines.append(line("held-out templates together", result["held_out"]))
    return "\n".join(lines)
