"""Caption matching: a prompt drawn as the nearest trained caption of a model that ships its captions."""

from __future__ import annotations

import json

import pytest
import torch

from studio.caption_match import (CAPTIONS_FILE, MATCH_THRESHOLD, CaptionMatcher, match_prompts, matcher_for,
                                  read_captions, write_captions)
from studio.errors import ConfigError, ModelFormatError

RECORDS = [{"text": f"{name}, 3d style", "name": name}
           for name in ("hot beverage", "red apple", "guide dog", "dog", "blue heart", "light blue heart", "ghost")]
ENTRIES = [{"caption": r["text"], "name": r["name"]} for r in RECORDS]  # as read_captions returns them


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))  # the matcher's embedding cache
    return tmp_path / "data"


@pytest.fixture
def matched_model(tmp_path, tiny_core, data_home):
    """The tiny core with a folder that ships RECORDS as its trained captions."""
    torch.manual_seed(1)
    with torch.no_grad():  # random weights everywhere, so the prompt reaches the picture (zero-init gates do not)
        for p in tiny_core.parameters():
            p.normal_(std=0.1)
    folder = tmp_path / "tiny-emoji"
    tiny_core.save_pretrained(folder)
    write_captions(folder, RECORDS)
    tiny_core.folder = folder
    return tiny_core


def test_captions_file_round_trip_keeps_each_caption_once_in_order(tmp_path):
    path = write_captions(tmp_path, RECORDS + [{"text": "ghost, 3d style", "name": "ghost"},
                                               {"text": "a caption without a name"}])
    assert path == tmp_path / CAPTIONS_FILE
    entries = read_captions(tmp_path)
    assert [e["caption"] for e in entries] == [r["text"] for r in RECORDS] + ["a caption without a name"]
    assert entries[0]["name"] == "hot beverage" and entries[-1]["name"] is None
    assert read_captions(tmp_path / "nowhere") is None and read_captions(None) is None
    (tmp_path / CAPTIONS_FILE).write_text(json.dumps({"prompts": []}))
    with pytest.raises(ModelFormatError, match="not a captions file"):
        read_captions(tmp_path)


def test_other_wordings_are_drawn_as_their_concepts_caption(data_home):
    matcher = CaptionMatcher(ENTRIES)
    coffee = matcher.match("a cup of hot coffee")
    assert coffee.caption == "hot beverage, 3d style" and coffee.similarity >= MATCH_THRESHOLD
    assert coffee.replaced and coffee.drawn == coffee.caption and "nearest trained caption 'hot beverage, 3d style'" in coffee.describe()
    # the concept's name is matched too: "a dog" is nearer "dog" than "guide dog" once ", 3d style" is set aside
    assert matcher.match("a dog").caption == "dog, 3d style"
    assert matcher.match("a blue heart").caption == "blue heart, 3d style"
    exact = matcher.match("red apple, 3d style")
    assert exact.caption == exact.prompt and not exact.replaced and "is a trained caption" in exact.describe()


def test_prompts_no_caption_is_close_to_are_drawn_as_written(data_home):
    matcher = CaptionMatcher(ENTRIES)
    far = matcher.match("qwerty zxcv uiop")
    assert far.caption is None and far.drawn == "qwerty zxcv uiop" and not far.replaced
    assert far.similarity < MATCH_THRESHOLD
    assert "drawn as written" in far.describe()
    empty = matcher.match("")  # the unconditional input stays unconditional
    assert empty.caption is None and empty.similarity is None and empty.describe() == ""
    strict = CaptionMatcher(ENTRIES, threshold=0.999)
    assert strict.match("a cup of hot coffee").caption is None


def test_the_embeddings_are_kept_on_disk(data_home):
    CaptionMatcher(ENTRIES)
    files = list((data_home / "embeddings").glob("match-*.safetensors"))
    assert len(files) == 1
    again = CaptionMatcher(ENTRIES)  # read back, same answers
    assert again.match("a cup of hot coffee").caption == "hot beverage, 3d style"


def test_models_without_trained_captions_draw_prompts_as_written(tiny_core, tmp_path, data_home):
    assert matcher_for(tiny_core) is None  # no folder at all
    tiny_core.folder = tmp_path  # a folder without captions.json
    assert matcher_for(tiny_core) is None
    (match,) = match_prompts(tiny_core, ["a cup of hot coffee"])
    assert match.drawn == "a cup of hot coffee" and match.describe() == ""
    with pytest.raises(ModelFormatError, match="at least one caption"):
        CaptionMatcher([])


def test_a_rewritten_captions_file_is_read_again(matched_model):
    import os

    assert matcher_for(matched_model).match("a cup of hot coffee").caption == "hot beverage, 3d style"
    write_captions(matched_model.folder, [{"text": "coffee cup, 3d style", "name": "coffee cup"}])
    path = matched_model.folder / CAPTIONS_FILE
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert matcher_for(matched_model).match("a cup of hot coffee").caption == "coffee cup, 3d style"


def test_stream_draws_the_matched_caption_and_the_png_says_so(matched_model):
    from studio.sampling import encode_prompts, generation_info, sample_tensor

    kwargs = dict(seed=3, steps=2)
    matched = sample_tensor(matched_model, "a cup of hot coffee", match_captions=True, **kwargs)
    caption = sample_tensor(matched_model, "hot beverage, 3d style", **kwargs)
    as_written = sample_tensor(matched_model, "a cup of hot coffee", **kwargs)
    assert torch.equal(matched, caption) and not torch.equal(matched, as_written)
    info = generation_info(matched_model, "a cup of hot coffee", 3, "dpm++", 2, 3.0, match_captions=True)
    assert info["prompt"] == "a cup of hot coffee" and info["drawn_as"] == "hot beverage, 3d style"
    assert info["match_captions"] is True
    assert "drawn_as" not in generation_info(matched_model, "a cup of hot coffee", 3, "dpm++", 2, 3.0)
    with pytest.raises(ConfigError, match="pass prompts, not `text`"):
        sample_tensor(matched_model, "x", match_captions=True, text=encode_prompts(["x"]))


def test_training_caption_records_leave_the_eval_split_out(tmp_path):
    from studio.data.folder import trained_caption_records

    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in (
        {"file_name": "a.png", "text": "red apple, 3d style", "name": "red apple", "split": "train"},
        {"file_name": "b.png", "text": "ghost, 3d style", "name": "ghost", "split": "eval"},
        {"file_name": "c.png", "caption": "a plain folder caption"})) + "\n")
    assert trained_caption_records(tmp_path) == [{"text": "red apple, 3d style", "name": "red apple"},
                                                 {"text": "a plain folder caption", "name": None}]


def test_a_model_trained_on_shapes_reads_prompts_as_scenes(tiny_core, tmp_path, data_home):
    from studio.caption_match import SceneMatcher

    tiny_core.folder = tmp_path / "shapes-model"
    tiny_core.folder.mkdir()
    (tiny_core.folder / "training.json").write_text(json.dumps({"data": {"source": "shapes"}}))
    assert isinstance(matcher_for(tiny_core), SceneMatcher)
    read, as_written, empty = match_prompts(tiny_core, ["2 blue stars, grey bg", "a red apple", ""])
    assert read.drawn == "two blue stars on a gray background" and read.replaced
    assert read.describe() == "Read as the scene 'two blue stars on a gray background'."
    assert as_written.drawn == "a red apple" and not as_written.replaced
    assert "drawn as written" in as_written.describe()
    assert empty.drawn == "" and empty.describe() == ""  # the unconditional input stays itself
