"""Caption matching: draw a prompt as the nearest caption the model was trained on.

A model trained on a closed set of named concepts (the emoji models: "hot beverage, 3d style") draws its own
captions far better than other wordings of them ("a cup of hot coffee"): its text pathway maps few unseen
wordings to the concept (`studio eval wordings`). MiniLM's mean-pooled states, by contrast, are trained for
exactly that (all-MiniLM-L6-v2 is a sentence-similarity model). So for a model folder that ships its trained
captions (`captions.json`, written by `studio ship` for image-folder data), the prompt is replaced by the
caption whose text or concept name is most similar to it, when the cosine similarity reaches `threshold`;
below it the prompt is drawn as written. It is a sampling setting (`stream(match_captions=True)`), reported
with what was drawn, like the noise priors: it does not change what the model itself follows.

A model trained on the `shapes` grammar has no list of captions to snap to (its captions compose); its matcher
reads the prompt as the scene it describes and draws the grammar's caption for it (`SceneMatcher`).

    match = matcher_for(model).match("a cup of hot coffee")  # CaptionMatch(caption='hot beverage, 3d style', ...)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from studio.data.scene_text import read_scene
from studio.errors import ModelFormatError
from studio.files import atomic_write
from studio.hub import trained_data
from studio.paths import data_dir, data_family
from studio.text import captions_key, get_text_encoder

CAPTIONS_FILE = "captions.json"  # in a model folder: {"captions": [{"caption": ..., "name": ...}, ...]}
MATCH_THRESHOLD = 0.6  # cosine similarity of pooled MiniLM states below which a prompt is drawn as written:
# every held-out template of `studio eval wordings` on 60 emoji concepts matched its own concept at >= .61, and
# gibberish stays below ("qwerty zxcv": .44). A prompt about something no caption names can still pass it ("a
# castle on a hill at sunset" -> "castle, 3d style": .67), which is why the caller is told what was drawn.
CACHE_SIZE = 4096  # prompts whose match a matcher remembers (the app's session prompts, an eval's captions)


@dataclass(frozen=True)
class CaptionMatch:
    """What a prompt is drawn as: `caption` (None when no trained caption reached the threshold, then the
    prompt is drawn as written) and the best similarity found."""

    prompt: str
    caption: str | None
    similarity: float | None  # None: nothing to match (a model without trained captions, the empty prompt)
    note: str = ""  # what the matcher says about it, when it is not a similarity (`SceneMatcher`)


    @property
    def drawn(self) -> str:
        return self.caption if self.caption is not None else self.prompt

    @property
    def replaced(self) -> bool:
        """Whether the prompt is drawn as another caption (what the user should be told)."""
        return self.drawn != self.prompt

    def describe(self) -> str:
        """One sentence for the user about what was drawn ("" for a model without trained captions)."""
        if self.note:
            return self.note
        if self.similarity is None:
            return ""
        if self.caption is None:
            return (f"No trained caption is close to {self.prompt!r} (best similarity {self.similarity:.2f}, "
                    f"below {MATCH_THRESHOLD}): drawn as written.")
        if self.caption == self.prompt:
            return f"{self.prompt!r} is a trained caption: drawn as written."
        return f"Drawn as the nearest trained caption {self.caption!r} (similarity {self.similarity:.2f})."


def write_captions(folder: str | Path, records: Sequence[dict]) -> Path:
    """Write `captions.json` into a model folder from training records ({"text": caption, "name": concept
    name or None}), each caption once, in order."""
    seen: dict[str, str | None] = {}
    for r in records:
        seen.setdefault(str(r["text"]), r.get("name"))
    entries = [{"caption": c, "name": n} for c, n in seen.items()]
    path = Path(folder) / CAPTIONS_FILE
    text = '{"captions": [\n' + ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries) + "\n]}\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def read_captions(folder: str | Path | None) -> list[dict] | None:
    """The entries of a model folder's `captions.json`; None when the folder has none."""
    path = Path(folder) / CAPTIONS_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["captions"]
        return [{"caption": str(e["caption"]), "name": e.get("name")} for e in entries]
    except (ValueError, KeyError, TypeError) as err:
        raise ModelFormatError(f"{path} is not a captions file ({err})") from None


class CaptionMatcher:
    """Nearest trained caption by the cosine similarity of pooled MiniLM states, to the caption or to its
    concept name (whichever is closer: "a dog" is nearer "dog" than "dog, 3d style")."""

    def __init__(self, entries: Sequence[dict], threshold: float = MATCH_THRESHOLD, encoder_path=None):
        if not entries:
            raise ModelFormatError("a caption matcher needs at least one caption")
        self.captions = [e["caption"] for e in entries]
        self.threshold = float(threshold)
        self.encoder = get_text_encoder(encoder_path)
        texts = self.captions + [e.get("name") or e["caption"] for e in entries]
        table = self._pooled_table(texts, encoder_path)  # (2N, 384), unit rows
        self.table = table.view(2, len(entries), -1)  # [caption | name, entry, 384]
        self._cache: dict[str, CaptionMatch] = {}

    def _pooled_table(self, texts: list[str], encoder_path) -> torch.Tensor:
        """Unit pooled states of `texts`, kept on disk (a few seconds per thousand texts on a CPU)."""
        path = data_dir() / "embeddings" / f"match-{captions_key(texts, encoder_path)}.safetensors"
        if path.is_file():
            pooled = load_file(path)["pooled"].float()
            if pooled.shape[0] == len(texts):
                return pooled
        pooled = torch.cat([torch.cat([e.pooled for e in self.encoder._encode_uncached(texts[i:i + 256])])
                            for i in range(0, len(texts), 256)])
        pooled = F.normalize(pooled, dim=-1)
        atomic_write(path, lambda tmp: save_file({"pooled": pooled.contiguous()}, tmp))
        return pooled

    def match(self, prompt: str) -> CaptionMatch:
        if prompt not in self._cache:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            if not prompt.strip():  # the empty prompt is the unconditional input: never replaced
                self._cache[prompt] = CaptionMatch(prompt, None, None)
            else:
                query = F.normalize(self.encoder.encode(prompt).pooled.float(), dim=-1)[0]  # (384,)
                similarity = (self.table @ query).amax(0)  # (N,): the closer of caption and name
                best = int(similarity.argmax())
                value = float(similarity[best])
                caption = self.captions[best] if value >= self.threshold else None
                self._cache[prompt] = CaptionMatch(prompt, caption, value)
        return self._cache[prompt]


class SceneMatcher:
    """Caption matching for a model trained on the `shapes` grammar, whose captions compose rather than list: the
    prompt is read as the scene it describes and drawn as the grammar's caption for it
    (`studio.data.scene_text.read_scene`: "big red circle, top-left, on white" -> "a large red circle in the top
    left corner on a white background"); a prompt the grammar cannot say is drawn as written."""

    def match(self, prompt: str) -> CaptionMatch:
        if not prompt.strip():  # the empty prompt is the unconditional input: never replaced
            return CaptionMatch(prompt, None, None)
        reading = read_scene(prompt)
        return CaptionMatch(prompt, reading.caption, None, note=reading.describe())


_matchers: dict[tuple[str, int], CaptionMatcher | SceneMatcher | None] = {}


def matcher_for(model) -> CaptionMatcher | SceneMatcher | None:
    """The matcher of a loaded model (`matcher_for_folder` of its folder)."""
    return matcher_for_folder(getattr(model, "folder", None))


def matcher_kind(folder: str | Path | None) -> str | None:
    """Which matcher a model folder gets, read from its files without building one: "captions" when it ships
    `captions.json`, "scene" when its training.json says it was trained on `shapes`, else None (nothing to match
    to: no folder, or a model trained on a folder of images that ships no captions)."""
    if folder is None:
        return None
    if (Path(folder) / CAPTIONS_FILE).is_file():
        return "captions"
    source = trained_data(Path(folder))
    return "scene" if source and data_family(source) == "shapes" else None


def matcher_for_folder(folder: str | Path | None) -> CaptionMatcher | SceneMatcher | None:
    """The matcher of a model folder (`matcher_kind`), shared per folder: a `CaptionMatcher` over its
    `captions.json`, a `SceneMatcher`, or None."""
    path = Path(folder).resolve() / CAPTIONS_FILE if folder is not None else None
    key = (str(path), path.stat().st_mtime_ns if path is not None and path.is_file() else 0)  # a re-ship reloads
    if key not in _matchers:
        kind = matcher_kind(folder)
        _matchers[key] = (CaptionMatcher(read_captions(folder)) if kind == "captions"
                          else SceneMatcher() if kind == "scene" else None)
    return _matchers[key]


def match_prompts(model, prompts: Sequence[str]) -> list[CaptionMatch]:
    """What each prompt is drawn as with caption matching on; prompts are drawn as written when the model
    has no trained captions."""
    matcher = matcher_for(model)
    return [matcher.match(p) if matcher else CaptionMatch(p, None, None) for p in prompts]
