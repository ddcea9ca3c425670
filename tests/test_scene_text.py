"""Reading free-form prompts as `shapes` scenes (studio.data.scene_text) and the evaluation's free wordings."""

from __future__ import annotations

import random

import pytest

from studio.data.scene import OPPOSITE_RELATION
from studio.data.scene_text import read_scene
from studio.data.shapes import heldout_captions, parse_caption
from studio.eval.scene_wordings import free_wording, free_wordings

# Written by hand, apart from both the reader's tables and the evaluation's wordings: how people type scenes.
HAND_WRITTEN = {
    "big red circle, top-left, on white": "a large red circle in the top left corner on a white background",
    "A tiny blue star in the middle of a black background.": "a small blue star in the center on a black background",
    "2 green triangles on grey": "two green triangles on a gray background",
    "three orange crosses against a black backdrop": "three orange crosses on a black background",
    "a pair of yellow squares, gray bg": "two yellow squares on a gray background",
    "purple square at the bottom right, white background": "a large purple square in the bottom right corner on a "
                                                           "white background",
    "small violet dot in the lower left corner on black": "a small purple circle in the bottom left corner on a "
                                                          "black background",
    "a red circle left of a blue square on a black background": "a red circle to the left of a blue square on a "
                                                                "black background",
    "a yellow star under a green cross, grey background": "a yellow star below a green cross on a gray background",
    "orange triangle on top of a purple circle, on black": "an orange triangle above a purple circle on a black "
                                                           "background",
    "a red circle on the left and a blue square on the right, black bg": "a red circle to the left of a blue "
                                                                         "square on a black background",
    "a green star at the top and a red star at the bottom on gray": "a green star above a red star on a gray "
                                                                   "background",
    "a blue cross to the right of a yellow one, white background": "a blue cross to the right of a yellow cross on "
                                                                   "a white background",
    "Huge crimson plus sign at the top center on white": "a large red cross at the top on a white background",
    "a blue square, centered, on a dark background": "a large blue square in the center on a black background",
    "the red square is below the blue circle": "a red square below a blue circle on a white background",
}


def _same_scene(a: str, b: str) -> bool:
    """Whether two captions name the same scene ("X left of Y" is "Y right of X")."""
    pa, pb = parse_caption(a), parse_caption(b)
    if pa == pb:
        return True
    return bool(pa["relation"]) and pa["background"] == pb["background"] and pa["objects"][::-1] == pb["objects"] \
        and OPPOSITE_RELATION[pa["relation"]] == pb["relation"]


def test_a_canonical_caption_reads_as_itself():
    for seed in (0, 1, 2):
        for scene in heldout_captions(300, seed):
            reading = read_scene(scene.caption)
            assert reading.caption == scene.caption, scene.caption
            assert not (reading.filled or reading.dropped or reading.ignored)
            assert "drawn as written" in reading.describe()


@pytest.mark.parametrize("prompt", sorted(HAND_WRITTEN))
def test_hand_written_prompts_read_as_the_scene_they_describe(prompt):
    assert read_scene(prompt).caption == HAND_WRITTEN[prompt]


def test_the_evaluations_free_wordings_read_back_as_their_scenes():
    scenes = heldout_captions(600, seed=4)
    wordings = free_wordings(scenes, seed=4)
    assert wordings == free_wordings(scenes, seed=4) and wordings != free_wordings(scenes, seed=5)
    assert not set(wordings) & {s.caption for s in scenes}  # every one reworded
    for scene, wording in zip(scenes, wordings):
        reading = read_scene(wording)
        assert reading.caption is not None and _same_scene(reading.caption, scene.caption), (wording, reading)


def test_what_the_prompt_leaves_open_is_filled_and_said():
    reading = read_scene("a green star")
    assert reading.caption == "a large green star on a white background"
    assert reading.filled == ("background white", "size large")
    assert "filled in background white, size large" in reading.describe()


def test_what_the_grammar_cannot_say_of_a_scene_kind_is_left_out_and_said():
    reading = read_scene("two large red circles in the center on grey")
    assert reading.caption == "two red circles on a gray background"
    assert len(reading.dropped) == 2 and "left out the size" in reading.describe()
    reading = read_scene("a big red circle to the left of a blue square in the top left corner, on black")
    assert reading.caption == "a red circle to the left of a blue square on a black background"
    assert len(reading.dropped) == 2


def test_unknown_words_are_ignored_and_named():
    reading = read_scene("a shiny red circle on a white background")
    assert reading.caption == "a large red circle on a white background" and reading.ignored == ("shiny",)
    assert "shiny" in reading.describe()


@pytest.mark.parametrize("prompt, reason", [
    ("a pink star on white", "no colour of the palette"),
    ("a red apple", "no shape of the grammar"),
    ("four red circles on white", "4 objects"),
    ("several red circles", "not one number"),
    ("red circles on white", "not one number"),
    ("a red circle next to a blue square", "two colours but no relation"),
    ("a red circle and a red square", "two shapes but no relation"),
    ("a white star on a black background", "white is a background colour"),
    ("a red circle on a white and black background", "more than one background"),
    ("a red circle left of a red circle", "differ in colour or shape"),
    ("a red circle above a square", "each side of 'above' needs one colour"),
    ("a small big red circle", "more than one size"),
    ("", "an empty prompt"),
])
def test_what_the_grammar_cannot_say_is_drawn_as_written(prompt, reason):
    reading = read_scene(prompt)
    assert reading.caption is None and reason in reading.reason
    assert reading.describe().endswith("drawn as written.")


def test_free_wordings_name_what_the_caption_names():
    rng = random.Random(0)
    for scene in heldout_captions(200, seed=9):
        wording = free_wording(scene, rng)
        assert ",," not in wording and "  " not in wording and not wording.endswith(",")
        for obj in scene.objects:
            assert obj.color in wording


def test_the_shipped_wordings_file_is_hand_written_and_read():
    from pathlib import Path

    lines = (Path(__file__).parents[1] / "assets" / "prompts" / "shapes-wordings.txt").read_text().splitlines()
    assert len(lines) == 12 and set(lines) <= set(HAND_WRITTEN)


def test_the_noise_priors_read_the_scene_a_free_wording_describes():
    from studio.data.scene import requested_objects, requested_relation
    from studio.data.scene_text import scene_requests

    # "top-left" is no grammar phrase: read as written, the one bump would go to the noise's strongest place
    assert requested_objects("big red circle, top-left, on white").position is None
    count, relation = scene_requests("big red circle, top-left, on white")
    assert relation is None and count == requested_objects(
        "a large red circle in the top left corner on a white background")
    count, relation = scene_requests("red circle under a blue square")  # read as "... below ..."
    assert count is None and requested_relation("red circle under a blue square") is None
    assert (relation.relation, relation.subject_color, relation.object_shape) == ("below", "red", "square")
    assert relation.background is None  # left open by the prompt: the caption's default white is not asked for
    assert scene_requests("tiny blue star")[0].size == "small"
    assert scene_requests("blue star")[0].size is None
    # what the grammar cannot say is read as written, as before
    assert scene_requests("four red circles") == (requested_objects("four red circles"), None)
    assert scene_requests("a red apple") == (None, None)
    for caption in [s.caption for s in heldout_captions(60, seed=3)]:  # a caption reads as itself
        assert scene_requests(caption) == (requested_objects(caption), requested_relation(caption))
