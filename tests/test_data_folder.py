"""Image folders: writing atomically, loading user folders robustly, and `studio data` on the command line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.data.folder import ImageFolderDataset, write_image_folder
from studio.data.scene import Scene
from studio.data.shapes import render_scene, sample_scene
from studio.errors import DataError


def _img(color, size=(40, 24), mode="RGB"):
    return Image.new(mode, size, color)


@pytest.fixture
def user_folder(tmp_path):
    """A sidecar-captioned folder with a good image, a transparent PNG, a corrupt file and a zero-byte file."""
    root = tmp_path / "user"
    root.mkdir()
    # 90x30: blue | green | red thirds, so a centre crop keeps only green.
    stripes = np.zeros((30, 90, 3), np.uint8)
    stripes[:, :30] = (0, 0, 255)
    stripes[:, 30:60] = (0, 255, 0)
    stripes[:, 60:] = (255, 0, 0)
    Image.fromarray(stripes).save(root / "stripes.png")
    _img((10, 20, 30, 0), mode="RGBA").save(root / "clear.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    (root / "empty.jpg").write_bytes(b"")
    for stem in ("stripes", "clear", "corrupt", "empty"):
        (root / f"{stem}.txt").write_text(f"a picture called {stem}\n")
    (root / "notes.md").write_text("not an image, ignored")
    return root


def test_user_folder_skips_bad_files_in_one_warning_and_loads_the_rest(user_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="studio.data"):
        ds = ImageFolderDataset(user_folder, 16)
    assert len(ds) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 2 of 4" in warnings[0]
    assert "corrupt.png" in warnings[0] and "empty.jpg" in warnings[0]
    assert ds.skipped == {"unreadable": ["corrupt.png"], "empty file": ["empty.jpg"]}
    items = {ds[i]["file"]: ds[i] for i in range(len(ds))}
    stripes, clear = items["stripes.png"], items["clear.png"]
    assert stripes["caption"] == "a picture called stripes" and stripes["metadata"] == {}
    for item in (stripes, clear):
        assert item["image"].shape == (3, 16, 16) and -1 <= item["image"].min() and item["image"].max() <= 1
    # Centre crop of the shorter side: only the green middle third survives (edges may blend a little).
    green = stripes["image"][:, :, 3:13]
    assert green[1].min() > 0.9 and green[0].max() < -0.9 and green[2].max() < -0.9
    assert clear["image"].min() == 1.0  # transparent pixels composited onto white
    assert "scene" not in clear


def test_missing_sidecar_caption_is_an_error_naming_the_files(user_folder):
    (user_folder / "clear.txt").unlink()
    _img("red").save(user_folder / "extra.png")
    with pytest.raises(DataError, match=r"2 image\(s\).*no caption: clear.png, extra.png.*\.txt"):
        ImageFolderDataset(user_folder, 16)


def test_empty_folders_and_folders_without_images_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        ImageFolderDataset(tmp_path / "empty", 16)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("hello")
    (docs / "b.csv").write_text("x,y")
    with pytest.raises(DataError, match=r"no images \(found 2 files with extensions \.csv, \.txt\)"):
        ImageFolderDataset(docs, 16)
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nope", 16)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"garbage")
    (bad / "x.txt").write_text("x")
    with pytest.raises(DataError, match="none of the 1 images"):
        ImageFolderDataset(bad, 16)


def test_write_then_read_round_trip_keeps_captions_order_and_scenes(tmp_path):
    scenes = [sample_scene(i) for i in range(5)]
    out = write_image_folder(((render_scene(s, 32), s.caption, {"scene": s.to_dict()}) for s in scenes),
                             tmp_path / "set", progress=False)
    assert sorted(p.name for p in out.iterdir()) == [f"{i:05d}.png" for i in range(5)] + ["metadata.jsonl"]
    lines = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [line["file_name"] for line in lines] == [f"{i:05d}.png" for i in range(5)]
    assert [line["text"] for line in lines] == [s.caption for s in scenes]
    ds = ImageFolderDataset(out, 32)
    for i, s in enumerate(scenes):
        item = ds[i]
        assert item["caption"] == s.caption and Scene.from_dict(item["scene"]) == s
        want = np.asarray(render_scene(s, 32), dtype=np.float32) / 127.5 - 1
        assert np.allclose(item["image"].permute(1, 2, 0).numpy(), want, atol=1e-6)


def test_writing_is_atomic_and_refuses_to_clobber(tmp_path):
    def broken():
        yield _img("red"), "a red thing", {}
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_image_folder(broken(), tmp_path / "set", progress=False)
    assert list(tmp_path.iterdir()) == []  # no half-written folder, no temp folder left over
    write_image_folder([(_img("red"), "one", {})], tmp_path / "set", progress=False)
    with pytest.raises(DataError, match="not empty.*--overwrite"):
        write_image_folder([(_img("blue"), "two", {})], tmp_path / "set", progress=False)
    write_image_folder([(_img("blue"), "two", {})], tmp_path / "set", progress=False, overwrite=True)
    assert ImageFolderDataset(tmp_path / "set", 16)[0]["caption"] == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["set"]


def test_metadata_jsonl_folders_accept_extra_fields_and_sidecars_for_the_rest(tmp_path):
    root = tmp_path / "hf"
    (root / "sub").mkdir(parents=True)
    _img("red").save(root / "sub" / "a.png")
    _img("blue").save(root / "b.jpg")
    (root / "b.txt").write_text("a blue thing")
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "sub/a.png", "text": "a red thing",
                                                     "source": "me"}) + "\n")
    ds = ImageFolderDataset(root, 16)
    assert [(ds[i]["file"], ds[i]["caption"], ds[i]["metadata"]) for i in range(2)] == [
        ("sub/a.png", "a red thing", {"source": "me"}), ("b.jpg", "a blue thing", {})]
    (root / "metadata.jsonl").write_text("{not json\n")
    with pytest.raises(DataError, match="line 1 is not valid JSON"):
        ImageFolderDataset(root, 16)


def test_cli_data_shapes_writes_a_folder_with_scenes(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert main(["data", "shapes", "--n", "4", "--resolution", "32", "--out", str(out), "--seed", "2",
                 "--split", "heldout"]) == 0
    assert "wrote 4 images" in capsys.readouterr().out
    ds = ImageFolderDataset(out, 32)
    assert len(ds) == 4 and ds.has_scenes
    assert [ds[i]["caption"] for i in range(4)] == [sample_scene(i, 2, split="heldout").caption for i in range(4)]
    # A second run into the same folder is refused with a clear message, not a traceback.
    assert main(["data", "shapes", "--n", "4", "--resolution", "32", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["data", "folder-check", str(out), "--resolution", "32"]) == 0
    assert "4 usable images, 0 skipped" in capsys.readouterr().out


def test_data_source_folder_resolves_names_under_the_data_directory(tmp_path, monkeypatch):
    """Presets name prepared sets relative to $STUDIO_DATA (`emoji/3d-limit192`); paths and `emoji` still work."""
    from studio.data.emoji import default_emoji_dir
    from studio.paths import data_source_folder

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    subset = tmp_path / "data" / "emoji" / "3d-limit5"
    subset.mkdir(parents=True)
    assert data_source_folder("emoji/3d-limit5") == subset
    with pytest.raises(DataError, match="studio data emoji"):  # the default set, not prepared yet
        data_source_folder("emoji")
    (tmp_path / "data" / "emoji" / "3d").mkdir()
    assert data_source_folder("emoji") == default_emoji_dir() == tmp_path / "data" / "emoji" / "3d"
    (tmp_path / "emoji" / "3d-limit5").mkdir(parents=True)  # a folder of that name here wins, as a path does
    assert data_source_folder("emoji/3d-limit5") == Path("emoji/3d-limit5")
    assert data_source_folder(str(subset)) == subset
    with pytest.raises(DataError, match="studio data emoji"):  # not prepared: says how
        data_source_folder("emoji/3d-limit7")
