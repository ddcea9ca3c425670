"""The structured scene behind every `shapes` sample (contract: shared/specs/SHAPES.md).

This module is the single source of the palette, vocabulary and geometry constants. The renderer
(`studio.data.shapes`) and the alignment checker (`studio.eval.alignment`) both import from here, so the
two can never disagree about what "blue" or "in the top left corner" means.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Literal

# RGB palettes, exactly as in SHAPES.md.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
}
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 90, 220),
    "yellow": (240, 210, 40),
    "purple": (150, 70, 200),
    "orange": (245, 140, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
PLURALS: dict[str, str] = {"circle": "circles", "square": "squares", "triangle": "triangles",
                           "star": "stars", "cross": "crosses"}
ROTATED_SHAPES = frozenset({"square", "triangle", "star", "cross"})
MAX_ROTATION_DEG = 20.0
STAR_INNER_RATIO = 0.45
CROSS_ARM_RATIO = 1.0 / 3.0

# Extent = diameter of the circumscribed circle, as a fraction of the canvas side R.
SIZES: dict[str, float] = {"small": 0.18, "large": 0.36}
SIZE_JITTER = 0.10

# 3x3 position grid: name -> (cell centre x, cell centre y) as fractions of R, y downwards.
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (1 / 6, 1 / 6), "top": (1 / 2, 1 / 6), "top right": (5 / 6, 1 / 6),
    "left": (1 / 6, 1 / 2), "center": (1 / 2, 1 / 2), "right": (5 / 6, 1 / 2),
    "bottom left": (1 / 6, 5 / 6), "bottom": (1 / 2, 5 / 6), "bottom right": (5 / 6, 5 / 6),
}
POSITION_PHRASES: dict[str, str] = {
    "top left": " in the top left corner", "top": " at the top", "top right": " in the top right corner",
    "left": " on the left", "center": " in the center", "right": " on the right",
    "bottom left": " in the bottom left corner", "bottom": " at the bottom",
    "bottom right": " in the bottom right corner",
}
POSITION_JITTER = 0.04
RELATIONS: tuple[str, ...] = ("to the left of", "to the right of", "above", "below")
OPPOSITE_RELATION: dict[str, str] = {"to the left of": "to the right of", "to the right of": "to the left of",
                                     "above": "below", "below": "above"}
RELATION_MIN_ALONG = 0.25  # centres differ by >= this (fraction of R) along the relation's axis
RELATION_MAX_ACROSS = 0.15  # ... and by <= this across it
COUNT_WORDS: dict[int, str] = {2: "two", 3: "three"}

SceneKind = Literal["single", "count", "relation"]


@dataclass(frozen=True)
class SceneObject:
    color: str
    shape: str
    size: str  # "small" | "large"
    x: float  # centre, fraction of R
    y: float  # centre, fraction of R, y downwards
    extent: float  # circumscribed-circle diameter, fraction of R
    rotation: float  # degrees; 0 for circles


@dataclass(frozen=True)
class Scene:
    kind: SceneKind
    background: str
    objects: tuple[SceneObject, ...]
    position: str | None = None  # single-object scenes with a position phrase
    relation: str | None = None  # relation scenes: objects[0] is the subject
    caption: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["objects"] = [asdict(o) for o in self.objects]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        objects = tuple(SceneObject(**o) for o in d["objects"])
        return cls(kind=d["kind"], background=d["background"], objects=objects,
                   position=d.get("position"), relation=d.get("relation"),
                   caption=d.get("caption", ""), extra=dict(d.get("extra") or {}))


def article(word: str) -> str:
    """`a`, or `an` before a vowel (`an orange square`)."""
    return "an" if word[:1] in "aeiou" else "a"


_RELATION_PHRASE = re.compile(r"\b(" + "|".join(RELATIONS) + r")\b")


def opposite_relation(prompt: str) -> str | None:
    """The prompt with its first relation phrase turned around ("X to the left of Y" -> "X to the right of Y",
    above <-> below), or None when it has none. Any text, not only captions of the grammar: the app offers it as
    a negative prompt, and the swap test asks for it."""
    match = _RELATION_PHRASE.search(prompt)
    if match is None:
        return None
    return prompt[:match.start()] + OPPOSITE_RELATION[match.group(1)] + prompt[match.end():]


OPPOSITE_COUNT: dict[str, str] = {"two": "three", "three": "two"}  # the counts of the grammar (COUNT_WORDS)
_COUNT_WORD = re.compile(r"\b(" + "|".join(OPPOSITE_COUNT) + r")\b")


def opposite_count(prompt: str) -> str | None:
    """The prompt with its first count word of the grammar turned into the other one ("two red circles" ->
    "three red circles", and back), or None when it has none: the count contrast's wrong caption."""
    match = _COUNT_WORD.search(prompt)
    if match is None:
        return None
    return prompt[:match.start()] + OPPOSITE_COUNT[match.group(1)] + prompt[match.end():]


_SHAPE_WORD = re.compile(r"\b(" + "|".join(list(PLURALS.values()) + list(SHAPES)) + r")\b")
_SINGULAR = {plural: shape for shape, plural in PLURALS.items()}


def requested_shape(prompt: str) -> str | None:
    """The first shape of the grammar the prompt names, singular ("three orange circles" -> "circle"), None
    when it names none: the outline the noise priors give their patches."""
    match = _SHAPE_WORD.search((prompt or "").lower())
    if match is None:
        return None
    return _SINGULAR.get(match.group(1), match.group(1))


def shape_twins(prompt: str) -> list[str]:
    """The prompt with one shape word of the grammar turned into each other shape, one word at a time ("a red
    circle" -> "a red square", "a red triangle", ...; plurals stay plural): the shape contrast's wrong captions.
    Every shape starts with a consonant, so the article before it stays right. Empty when it names no shape."""
    twins = []
    for match in _SHAPE_WORD.finditer(prompt):
        word = match.group(1)
        shape = _SINGULAR.get(word, word)
        for other in SHAPES:
            if other != shape:
                replacement = PLURALS[other] if word in _SINGULAR else other
                twins.append(prompt[:match.start()] + replacement + prompt[match.end():])
    return twins


MAX_COUNT = 9  # the largest count a prompt can ask the count prior for

_NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                 "pair of": 2, "couple of": 2}
_COUNT_PHRASE = re.compile(r"\b(" + "|".join(list(_NUMBER_WORDS) + [str(n) for n in range(2, MAX_COUNT + 1)])
                           + r")\b", re.IGNORECASE)


def requested_count(prompt: str) -> int | None:
    """How many objects the prompt asks for: its first number word or digit from two to nine ("three orange
    circles" -> 3, "2 apples" -> 2), None when it names none (one object, or a count the prior cannot place)."""
    match = _COUNT_PHRASE.search(prompt or "")
    if match is None:
        return None
    word = match.group(1).lower()
    return _NUMBER_WORDS.get(word) or int(word)


_COLOR_WORD = re.compile(r"\b(" + "|".join(COLORS) + r")\b", re.IGNORECASE)
_BACKGROUND_PHRASE = re.compile(r"\b(" + "|".join(BACKGROUNDS) + r") background\b", re.IGNORECASE)


def _named_background(prompt: str) -> str | None:
    match = _BACKGROUND_PHRASE.search(prompt)
    return match and match.group(1).lower()


def _first_color(text: str) -> str | None:
    match = _COLOR_WORD.search(_BACKGROUND_PHRASE.sub(" ", text))  # "a black background" names no object's colour
    return match and match.group(1).lower()


_SIZE_WORD = re.compile(r"\b(" + "|".join(SIZES) + r")\b", re.IGNORECASE)
_POSITION_PHRASE = re.compile("|".join(re.escape(POSITION_PHRASES[p].strip())  # longest first: "top left" before "top"
                                       for p in sorted(POSITIONS, key=len, reverse=True)), re.IGNORECASE)
_PHRASE_POSITION = {phrase.strip(): position for position, phrase in POSITION_PHRASES.items()}


@dataclass(frozen=True)
class CountRequest:
    """What a prompt asks about its alike objects: how many, the palette colour, shape and size it names (None
    when it names none), the background's and, for one object, the cell of the 3x3 grid its position phrase
    names (None when the prompt names none)."""
    count: int
    color: str | None = None
    shape: str | None = None
    background: str | None = None
    size: str | None = None
    position: str | None = None

    @property
    def laid_out(self) -> bool:
        """Whether the count prior lays it out: two or more objects, or one of a named shape (every request
        `requested_objects` returns is)."""
        return self.count >= 2 or self.shape is not None


def requested_objects(prompt: str) -> CountRequest | None:
    """How many objects the prompt asks for (`requested_count`), with their colour, shape, background and size
    ("three orange circles on a white background" -> 3, orange, circle, white); one object for a prompt that
    names no count but a shape of the grammar, with the cell its position phrase names ("a small red star in the
    top left corner" -> 1, red, star, small, top left). None when it asks for neither, or for one object but names
    a relation (two different objects: `requested_relation`). Any text, not only captions."""
    prompt = prompt or ""
    count = requested_count(prompt)
    shape = requested_shape(prompt)
    if count is None and (shape is None or _RELATION_PHRASE.search(prompt)):
        return None
    size = _SIZE_WORD.search(prompt)
    position = _POSITION_PHRASE.search(prompt) if count is None else None
    return CountRequest(count or 1, _first_color(prompt), shape, _named_background(prompt),
                        size and size.group(1).lower(), position and _PHRASE_POSITION[position.group(0).lower()])


@dataclass(frozen=True)
class RelationRequest:
    """What a prompt asks about two objects' places: the relation, the palette colour named on each side of it
    (None when that side names none), the background's (None when the prompt names none) and the shape named on
    each side (None when that side names none)."""
    relation: str
    subject_color: str | None
    object_color: str | None
    background: str | None
    subject_shape: str | None = None
    object_shape: str | None = None


def requested_relation(prompt: str) -> RelationRequest | None:
    """The prompt's first relation phrase and the colours and shapes named before and after it ("a red circle to
    the left of a blue square on a black background" -> left of, red, blue, black, circle, square), None when it
    names no relation or no palette colour on either side (then nothing tells the two objects apart). Any text,
    not only captions."""
    prompt = prompt or ""
    match = _RELATION_PHRASE.search(prompt)
    if match is None:
        return None
    subject, obj = _first_color(prompt[:match.start()]), _first_color(prompt[match.end():])
    if subject is None and obj is None:
        return None
    return RelationRequest(match.group(1), subject, obj, _named_background(prompt),
                           requested_shape(prompt[:match.start()]), requested_shape(prompt[match.end():]))
