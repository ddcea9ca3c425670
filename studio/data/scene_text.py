"""Read a free-form prompt as a `shapes` scene: the grammar's caption for what the prompt describes.

The `shapes` models learned the SHAPES.md grammar word for word ("a large red circle in the top left corner on a
white background"); a person types "big red circle, top-left, on white". `read_scene` finds what such a prompt
asks for (the palette colours, shapes, size, count, grid cell, relation and background, by the words people use
for them: "big", "upper left", "under", "2", "grey") and writes it back as the one canonical caption the models
were trained on. A canonical caption reads as itself.

What the grammar cannot say is not guessed at: a colour outside the palette, four or more objects, two objects
without a relation between them leave the prompt as written (`SceneReading.caption` None, with the reason).
What the grammar leaves out of a scene kind is dropped and said (a size or a place in a relation scene, a size
or a place in a count scene, whose objects are small and anywhere), and what it requires but the prompt leaves
open is filled and said (size large, background white).

    read_scene("2 blue stars, grey bg").caption  # 'two blue stars on a gray background'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from studio.data.scene import BACKGROUNDS, COLORS, COUNT_WORDS, OPPOSITE_RELATION, PLURALS, POSITION_PHRASES, \
    SHAPES, SIZES, CountRequest, RelationRequest, article, requested_objects, requested_relation

DEFAULT_SIZE = "large"  # a single object whose size the prompt leaves open
DEFAULT_BACKGROUND = "white"  # a scene whose background the prompt leaves open

COLOR_WORDS = {"red": "red", "crimson": "red", "scarlet": "red", "green": "green", "blue": "blue",
               "yellow": "yellow", "purple": "purple", "violet": "purple", "orange": "orange"}
BACKGROUND_WORDS = {"white": "white", "black": "black", "gray": "gray", "grey": "gray"}
SIZE_WORDS = {"large": "large", "big": "large", "huge": "large", "giant": "large", "small": "small",
              "little": "small", "tiny": "small", "mini": "small"}
SHAPE_WORDS = {"circle": "circle", "dot": "circle", "disc": "circle", "disk": "circle", "square": "square",
               "triangle": "triangle", "star": "star", "cross": "cross", "plus": "cross"}
PLURAL_WORDS = {"circles": "circle", "dots": "circle", "discs": "circle", "disks": "circle", "squares": "square",
                "triangles": "triangle", "stars": "star", "crosses": "cross", "pluses": "cross"}
NUMBERS = {"one": 1, "1": 1, "single": 1, "two": 2, "2": 2, "pair": 2, "couple": 2, "three": 3, "3": 3,
           "trio": 3, "four": 4, "4": 4, "five": 5, "5": 5, "six": 6, "6": 6, "seven": 7, "7": 7, "eight": 8,
           "8": 8, "nine": 9, "9": 9, "several": None, "some": None, "many": None}
# Phrases -> one token each, longest first, matched on the normalized text (lowercase, words split by spaces).
RELATION_PHRASES = {
    "to the left of": (r"(?:to|on|at) the left(?: side)? of", r"left of"),
    "to the right of": (r"(?:to|on|at) the right(?: side)? of", r"right of"),
    "above": (r"on top of", r"higher than", r"above", r"over", r"atop"),
    "below": (r"lower than", r"underneath", r"beneath", r"under", r"below"),
}
POSITION_WORDS = {
    "top left": (r"(?:top|upper) left", r"left top"), "top right": (r"(?:top|upper) right", r"right top"),
    "bottom left": (r"(?:bottom|lower) left", r"left bottom"),
    "bottom right": (r"(?:bottom|lower) right", r"right bottom"),
    "top": (r"(?:top|upper) (?:center|middle)", r"top", r"upper"),
    "bottom": (r"(?:bottom|lower) (?:center|middle)", r"bottom", r"lower"),
    "left": (r"left",), "right": (r"right",), "center": (r"center", r"middle", r"centered", r"central"),
}
# Words that carry no content here: a prompt may use them freely.
FILLER = frozenset("""a an the on in at of with and to is are it its that which one single placed positioned
    located sits sitting drawn draw please show showing picture image photo drawing illustration render canvas
    background backdrop bg plain solid corner side edge against up down there shape shapes object objects
    color colored coloured""".split())


@dataclass(frozen=True)
class SceneReading:
    """What `read_scene` made of a prompt: `caption` (None when the grammar cannot say what it asks), `reason`
    (why not), what it `filled` in, `dropped` and `ignored` (words it did not know)."""

    prompt: str
    caption: str | None
    reason: str = ""
    filled: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()

    def describe(self) -> str:
        """One sentence for the user."""
        if self.caption is None:
            return f"Not a scene the shapes grammar can say ({self.reason}): drawn as written."
        if self.caption == self.prompt:
            return f"{self.prompt!r} is a caption of the shapes grammar: drawn as written."
        notes = [f"filled in {', '.join(self.filled)}"] if self.filled else []
        notes += [f"left out {', '.join(self.dropped)}"] if self.dropped else []
        notes += [f"words it has no place for: {', '.join(self.ignored)}"] if self.ignored else []
        return f"Read as the scene {self.caption!r}" + (f" ({'; '.join(notes)})." if notes else ".")

    @property
    def left_open(self) -> frozenset[str]:
        """What the prompt left open and the caption fills with a default: "size", "background"."""
        return frozenset(entry.split()[0] for entry in self.filled)


def _normalize(prompt: str) -> str:
    text = prompt.lower().replace("centre", "center")
    text = re.sub(r"[^a-z0-9]+", " ", text)  # hyphens, commas, colons: "top-left" reads as "top left"
    text = re.sub(r"\bdark (?=background|backdrop|bg|canvas)", "black ", text)  # not "dark blue"
    text = re.sub(r"\blight (?=background|backdrop|bg|canvas)", "white ", text)
    return f" {' '.join(text.split())} "


def _alternation(table: dict[str, tuple[str, ...]]) -> list[tuple[re.Pattern, str]]:
    return [(re.compile(rf" {pattern} "), name) for name, patterns in table.items() for pattern in patterns]


_RELATIONS = _alternation(RELATION_PHRASES)
_POSITIONS = _alternation(POSITION_WORDS)
_PHRASE_WORDS = frozenset(re.findall(r"[a-z]+", " ".join(p for t in (RELATION_PHRASES, POSITION_WORDS)
                                                         for ps in t.values() for p in ps)))  # their words
_OBJECT_WORD = set(COLOR_WORDS) | set(SHAPE_WORDS) | set(PLURAL_WORDS) | set(SIZE_WORDS) | set(NUMBERS)


def _objects(words: list[str]) -> dict:
    """The content words of one side of a prompt."""
    colors = [COLOR_WORDS[w] for w in words if w in COLOR_WORDS]
    shapes = [SHAPE_WORDS[w] for w in words if w in SHAPE_WORDS]
    plurals = [PLURAL_WORDS[w] for w in words if w in PLURAL_WORDS]
    sizes = [SIZE_WORDS[w] for w in words if w in SIZE_WORDS]
    numbers = [NUMBERS[w] for w in words if w in NUMBERS and w not in ("one", "single")]
    if "one" in words or "single" in words:
        numbers.append(1)
    return dict(colors=list(dict.fromkeys(colors)), shapes=list(dict.fromkeys(shapes + plurals)), plural=bool(plurals),
                sizes=list(dict.fromkeys(sizes)), numbers=numbers, one="one" in words)


def _find(patterns: list[tuple[re.Pattern, str]], text: str) -> tuple[str, re.Match] | None:
    found = [(m.start(), -len(m.group(0)), name, m) for pattern, name in patterns if (m := pattern.search(text))]
    if not found:
        return None
    _, _, name, match = min(found, key=lambda f: (f[0], f[1]))  # the first, and the longest there
    return name, match


_SIDE_RELATION = {("left", "right"): "to the left of", ("right", "left"): "to the right of",
                  ("top", "bottom"): "above", ("bottom", "top"): "below"}


def _placed_pair(text: str) -> tuple[tuple[str, str], str, tuple[str, str]] | None:
    """Two objects joined by "and", each on an opposite side ("... on the left and ... on the right"): the first
    object, the relation between them and the second, or None."""
    parts = text.split(" and ")
    if len(parts) != 2:
        return None
    objects, sides = [], []
    for part in parts:
        found, side = _objects(part.split()), _find(_POSITIONS, f" {part} ")
        if len(found["colors"]) != 1 or len(found["shapes"]) != 1 or found["plural"] or side is None:
            return None
        objects.append((found["colors"][0], found["shapes"][0]))
        sides.append(side[0])
    name = _SIDE_RELATION.get(tuple(sides))
    return (objects[0], name, objects[1]) if name and objects[0] != objects[1] else None


def read_scene(prompt: str) -> SceneReading:
    """The canonical `shapes` caption a free-form prompt describes (see the module docstring)."""
    text = _normalize(prompt or "")
    words = text.split()
    if not words:
        return SceneReading(prompt, None, "an empty prompt")
    backgrounds = {BACKGROUND_WORDS[w] for w in words if w in BACKGROUND_WORDS}
    for i, w in enumerate(words[:-1]):
        if w in BACKGROUND_WORDS and (words[i + 1] in SHAPE_WORDS or words[i + 1] in PLURAL_WORDS):
            return SceneReading(prompt, None, f"{w} is a background colour here, not an object's; objects are "
                                              f"{', '.join(COLORS)}")
    if len(backgrounds) > 1:
        return SceneReading(prompt, None, f"more than one background: {', '.join(sorted(backgrounds))}")
    filled, dropped = [], []
    background = next(iter(backgrounds), None)
    if background is None:
        background = DEFAULT_BACKGROUND
        filled.append(f"background {DEFAULT_BACKGROUND}")
    known = _OBJECT_WORD | set(BACKGROUND_WORDS) | FILLER
    ignored = tuple(dict.fromkeys(w for w in words if w not in known and w not in _PHRASE_WORDS))
    tail = f" on a {background} background"

    relation = _find(_RELATIONS, text)
    if relation is not None:
        name, match = relation
        left, right = _objects(text[:match.start()].split()), _objects(text[match.end():].split())
        sides = []
        for side, other in ((left, right), (right, left)):
            if len(side["colors"]) != 1:
                return SceneReading(prompt, None, f"each side of {name!r} needs one colour of the palette "
                                                  f"({', '.join(COLORS)})", ignored=ignored)
            shapes = side["shapes"] or (other["shapes"] if side["one"] and len(other["shapes"]) == 1 else [])
            if len(shapes) != 1 or side["plural"]:
                return SceneReading(prompt, None, f"each side of {name!r} needs one object of one shape "
                                                  f"({', '.join(SHAPES)})", ignored=ignored)
            sides.append((side["colors"][0], shapes[0]))
        if sides[0] == sides[1]:
            return SceneReading(prompt, None, "the two objects of a relation differ in colour or shape",
                                ignored=ignored)
        if left["sizes"] or right["sizes"]:
            dropped.append("the size (a relation names none)")
        if _find(_POSITIONS, text[:match.start()] + " " + text[match.end():]):
            dropped.append("the place on the canvas (a relation names none)")
        (c0, s0), (c1, s1) = sides
        caption = f"{article(c0)} {c0} {s0} {name} {article(c1)} {c1} {s1}{tail}"
        return SceneReading(prompt, caption, filled=tuple(filled), dropped=tuple(dropped), ignored=ignored)

    pair = _placed_pair(text)
    if pair is not None:  # "a red circle on the left and a blue square on the right"
        (c0, s0), name, (c1, s1) = pair
        caption = f"{article(c0)} {c0} {s0} {name} {article(c1)} {c1} {s1}{tail}"
        return SceneReading(prompt, caption, filled=tuple(filled), ignored=ignored)
    found = _objects(words)
    if len(found["colors"]) != 1:
        reason = ("two colours but no relation between them (left of, right of, above, below)"
                  if found["colors"] else f"no colour of the palette ({', '.join(COLORS)})")
        return SceneReading(prompt, None, reason, ignored=ignored)
    if len(found["shapes"]) != 1:
        reason = ("two shapes but no relation between them (left of, right of, above, below)"
                  if found["shapes"] else f"no shape of the grammar ({', '.join(SHAPES)})")
        return SceneReading(prompt, None, reason, ignored=ignored)
    color, shape = found["colors"][0], found["shapes"][0]
    numbers = set(found["numbers"])
    count = max(numbers) if numbers and None not in numbers else None
    if len(numbers) > 1 or (numbers and count is None) or (found["plural"] and count in (None, 1)):
        return SceneReading(prompt, None, "how many objects it asks for is not one number", ignored=ignored)
    position = _find(_POSITIONS, text)
    if count is not None and count >= 2:
        if count not in COUNT_WORDS:
            return SceneReading(prompt, None, f"{count} objects; the grammar counts "
                                              f"{' or '.join(COUNT_WORDS.values())}", ignored=ignored)
        if "large" in found["sizes"]:
            dropped.append("the size (counted objects are small)")
        if position is not None:
            dropped.append("the place on the canvas (counted objects go anywhere)")
        caption = f"{COUNT_WORDS[count]} {color} {PLURALS[shape]}{tail}"
        return SceneReading(prompt, caption, filled=tuple(filled), dropped=tuple(dropped), ignored=ignored)
    if len(found["sizes"]) > 1:
        return SceneReading(prompt, None, "more than one size", ignored=ignored)
    size = found["sizes"][0] if found["sizes"] else None
    if size is None:
        size = DEFAULT_SIZE
        filled.append(f"size {DEFAULT_SIZE}")
    where = POSITION_PHRASES[position[0]] if position else ""
    caption = f"{article(size)} {size} {color} {shape}{where}{tail}"
    return SceneReading(prompt, caption, filled=tuple(filled), dropped=tuple(dropped), ignored=ignored)


assert set(SIZE_WORDS.values()) == set(SIZES) and set(SHAPE_WORDS.values()) == set(SHAPES)
assert set(COLOR_WORDS.values()) == set(COLORS) and set(BACKGROUND_WORDS.values()) == set(BACKGROUNDS)
assert set(RELATION_PHRASES) == set(OPPOSITE_RELATION) and set(POSITION_WORDS) == set(POSITION_PHRASES)


def scene_requests(prompt: str) -> tuple[CountRequest | None, RelationRequest | None]:
    """What the noise priors lay out for a prompt (`studio.data.scene.requested_objects` and `requested_relation`),
    read from the scene it describes: "big red circle, top-left" gets the bump of its caption's "in the top left
    corner", which the grammar's phrase search alone would miss. A size or background the prompt leaves open stays
    open (None), since a prompt drawn as written does not ask for the caption's defaults; a prompt the grammar
    cannot say is read as written."""
    reading = read_scene(prompt)
    if reading.caption is None:
        return requested_objects(prompt), requested_relation(prompt)
    count, relation = requested_objects(reading.caption), requested_relation(reading.caption)
    opened = {field: None for field in reading.left_open}
    if count is not None and opened:
        count = replace(count, **opened)
    if relation is not None and "background" in opened:
        relation = replace(relation, background=None)
    return count, relation
