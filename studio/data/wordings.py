"""Training wordings: the captions one example is trained under when a run sets `caption_wordings: true`.

A model trained on one template per image ("blue heart, 3d style") learns that template; other wordings of
the same concept ("a blue heart") reach its text pathway as something it has never seen. With several
wordings per example, every time an example is drawn one of its wordings is drawn with it (caption
augmentation). Where the wordings come from, by what the data record carries:
- a `wordings` list in its metadata (any image folder can list its own): the caption, then those;
- a `shapes` scene: the caption and the three paraphrases of `studio.data.shapes.caption_variants`;
- an emoji (metadata with `name` and `style`): `studio.data.emoji.caption_wordings`;
- anything else: the caption alone.
The caption itself is always the first wording, and evaluation prompts stay the captions.
"""

from __future__ import annotations

from studio.data.emoji.names import caption_wordings as emoji_wordings
from studio.data.emoji.sources import STYLES
from studio.data.scene import Scene
from studio.data.shapes import caption_variants


def training_wordings(record: dict) -> list[str]:
    """The wordings of one cached data record (`studio.data.cache` records: `caption` plus `scene` or
    `metadata`), its caption first, without duplicates."""
    caption = record["caption"]
    metadata = record.get("metadata") or {}
    scene = record.get("scene") or metadata.get("scene")
    if metadata.get("wordings"):
        extra = [str(w) for w in metadata["wordings"]]
    elif scene:
        extra = caption_variants(Scene.from_dict(scene))
    elif metadata.get("name") and metadata.get("style") in STYLES:
        extra = emoji_wordings(metadata["name"], metadata["style"], metadata.get("keywords") or ())
    else:
        extra = []
    return list(dict.fromkeys([caption, *(w for w in extra if w.strip())]))
