"""Free-form wordings of `shapes` captions: how a person would type the scene a canonical caption names.

The `shapes` models were trained on the SHAPES.md grammar word for word ("a large red circle in the top left
corner on a white background"); people type "big red circle, top-left, white background". `free_wording`
rewrites a held-out scene's caption the way people do: other words for sizes, positions, relations, counts and
backgrounds ("big", "upper left", "under", "2", "grey"), other orders, the subject and object swapped with the
opposite relation, fillers ("draw", "please"). Every wording names exactly what the caption names, so the
alignment checker judges its image against the same scene (`studio eval align --wordings free`).

These phrasings are the evaluation's, written apart from the reader that turns free text back into captions
(`studio.data.scene_text`); the hand-written prompts of `assets/prompts/shapes-wordings.txt` are a second,
independent set.
"""

from __future__ import annotations

import random
import re

from studio.data.scene import OPPOSITE_RELATION, PLURALS, Scene, article

SIZE_WORDS = {"large": ("big", "large", "huge"), "small": ("small", "little", "tiny")}
POSITION_WORDS = {
    "top left": ("top-left", "in the upper left", "at the top left", "upper left corner"),
    "top": ("at the top", "top center", "at the top edge", "up top"),
    "top right": ("top-right", "in the upper right", "at the top right", "upper right corner"),
    "left": ("on the left", "left side", "at the left", "on the left side"),
    "center": ("in the middle", "centered", "in the centre", "center"),
    "right": ("on the right", "right side", "at the right", "on the right side"),
    "bottom left": ("bottom-left", "in the lower left", "at the bottom left", "lower left corner"),
    "bottom": ("at the bottom", "bottom center", "at the bottom edge", "down at the bottom"),
    "bottom right": ("bottom-right", "in the lower right", "at the bottom right", "lower right corner"),
}
RELATION_WORDS = {"to the left of": ("left of", "on the left of", "to the left of"),
                  "to the right of": ("right of", "on the right of", "to the right of"),
                  "above": ("over", "above", "higher than"),
                  "below": ("under", "beneath", "underneath", "lower than")}
BACKGROUND_WORDS = {"white": ("white",), "black": ("black",), "gray": ("gray", "grey")}
NUMBER_WORDS = {2: ("2", "two", "a pair of"), 3: ("3", "three")}


def _background(rng: random.Random, name: str) -> str:
    word = rng.choice(BACKGROUND_WORDS[name])
    return rng.choice((f"{word} background", f"on {word}", f"against a {word} backdrop", f"{word} bg",
                       f"on a plain {word} background"))


def free_wording(scene: Scene, rng: random.Random) -> str:
    """One free-form wording of `scene` (a held-out scene with its caption), drawn with `rng`."""
    bg = _background(rng, scene.background)
    objs = scene.objects
    if scene.kind == "single":
        o = objs[0]
        size = rng.choice(SIZE_WORDS[o.size])
        where = rng.choice(POSITION_WORDS[scene.position]) if scene.position else ""
        templates = ["{size} {color} {shape} {where}, {bg}", "{an} {color} {shape}, {size}, {where}, {bg}",
                     "draw {an_size} {size} {color} {shape} {where}, {bg}", "{bg}: one {size} {color} {shape} {where}"]
        text = rng.choice(templates).format(size=size, color=o.color, shape=o.shape, where=where, bg=bg,
                                            an=article(o.color), an_size=article(size))
    elif scene.kind == "count":
        o = objs[0]
        number = rng.choice(NUMBER_WORDS[len(objs)])
        templates = ["{n} {color} {shapes}, {bg}", "{n} small {color} {shapes} {bg}", "please draw {n} {color} "
                     "{shapes}, {bg}", "{bg} with {n} {color} {shapes}"]
        text = rng.choice(templates).format(n=number, color=o.color, shapes=PLURALS[o.shape], bg=bg)
    else:
        a, b = objs
        relation = scene.relation
        if rng.random() < 0.3:  # the same scene told from the other object's side
            a, b, relation = b, a, OPPOSITE_RELATION[relation]
        words = rng.choice(RELATION_WORDS[relation])
        templates = ["{a} {rel} {b}, {bg}", "{an_a} {rel} {an_b} {bg}", "{bg}, with {an_a} placed {rel} {an_b}",
                     "draw {an_a} {rel} {an_b}, {bg}"]
        text = rng.choice(templates).format(a=f"{a.color} {a.shape}", b=f"{b.color} {b.shape}", rel=words, bg=bg,
                                            an_a=f"{article(a.color)} {a.color} {a.shape}",
                                            an_b=f"{article(b.color)} {b.color} {b.shape}")
    text = re.sub(r"(\s*,)+", ",", " ".join(text.split()))  # an empty place leaves ", ,"
    return text.strip(" ,")


def free_wordings(scenes: list[Scene], seed: int = 0) -> list[str]:
    """One free-form wording per scene, reproducible from `seed`."""
    rng = random.Random(f"free-wordings-{seed}")
    return [free_wording(s, rng) for s in scenes]
