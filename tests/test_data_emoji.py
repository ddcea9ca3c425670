"""The `emoji` data set on tiny fixture packages (tests/fixtures/emoji mimics the three npm package layouts; no
network, no npm)."""

from __future__ import annotations

import argparse
import importlib.util
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from PIL import Image

import studio.data.emoji.prepare as emoji_prepare
from studio.data import emoji as E
from studio.errors import DataError, StudioError

FIXTURES = Path(__file__).parent / "fixtures" / "emoji"
PACKAGE_DIRS = {key: FIXTURES / key for key in ("fluent3d", "fluentui", "openmoji")}
SIZE = 32  # small renders keep the tests fast; the pipeline is the same at 256

HAS_SVG = any(importlib.util.find_spec(m) for m in ("resvg_py", "cairosvg"))
needs_svg = pytest.mark.skipif(not HAS_SVG, reason="needs resvg-py (or cairosvg) to rasterise SVG")


def prepare(tmp_path: Path, styles=("3d",), name: str = "out", **kwargs) -> Path:
    kwargs.setdefault("package_dirs", PACKAGE_DIRS)
    return E.prepare_emoji(styles, out=tmp_path / name, size=SIZE, progress=False,
                           cache_dir=tmp_path / "cache", **kwargs)


def records_by_file(root: Path) -> dict[str, dict]:
    return {r["file_name"]: r for r in E.load_emoji_metadata(root)}


@pytest.fixture(scope="module")
def index() -> E.EmojiIndex:
    return E.load_emoji_index(FIXTURES / "openmoji" / "data" / "openmoji.json")


# ----- pure helpers ----------------------------------------------------------------------------------------

def test_parse_codepoints_and_key():
    assert E.parse_codepoints("1f43b-200d-2744-fe0f") == (0x1F43B, 0x200D, 0x2744, 0xFE0F)
    assert E.codepoint_key(E.parse_codepoints("0023-FE0F-20E3")) == "23-20e3"
    assert E.codepoint_key(E.parse_codepoints("23-fe0f-20e3")) == "23-20e3"
    # Fluent 3D writes tag sequences without separators and without the closing CANCEL TAG.
    assert E.codepoint_key(E.parse_codepoints("1f3f4-e0067e0062e0065e006ee0067")) == \
        E.codepoint_key(E.parse_codepoints("1F3F4-E0067-E0062-E0065-E006E-E0067-E007F"))
    for bad in ("polar-bear", "", "1234567", "110000"):
        with pytest.raises(ValueError):
            E.parse_codepoints(bad)


def test_skin_tone_of():
    assert E.skin_tone_of((0x1F44D,)) is None
    assert E.skin_tone_of((0x1F3FD,)) is None  # the swatch itself
    assert E.skin_tone_of((0x1F44D, 0x1F3FD)) == "medium"
    assert E.skin_tone_of((0x1F469, 0x1F3FB, 0x200D, 0x1F91D, 0x200D, 0x1F468, 0x1F3FF)) == "light,dark"


def test_captions_and_styles():
    assert E.build_caption("polar bear", "3d") == "polar bear, 3d style"
    assert E.build_caption("polar bear", "flat") == "polar bear, flat style"
    assert E.build_caption("polar bear", "openmoji") == "polar bear, openmoji style"
    assert E.normalise_styles("3d, flat,3d") == ("3d", "flat")
    with pytest.raises(DataError, match="choose from"):
        E.normalise_styles("3d,watercolor")


def test_index_names_concepts_keywords(index):
    bear = index.by_key["1f43b-200d-2744"]
    assert (bear.name, bear.concept, bear.skin_tone) == ("polar bear", "polar bear", None)
    assert "arctic" in bear.keywords and "ice" in bear.openmoji_keywords
    tone = index.by_key["1f44d-1f3fd"]
    assert (tone.name, tone.concept, tone.skin_tone) == ("thumbs up: medium skin tone", "thumbs up", "medium")
    assert "thumb" in tone.keywords  # inherited from the base emoji
    assert index.by_tone[("1f44d", "light")].key == "1f44d-1f3fb"


def test_fluent_names_resolve(index):
    siblings = {"thumbs-up-default", "thumbs-up-medium", "polar-bear", "hugging-face", "new-moon-face-dark"}
    assert E.resolve_fluent_name("polar-bear", siblings, index).key == "1f43b-200d-2744"
    assert E.resolve_fluent_name("thumbs-up-default", siblings, index).key == "1f44d"
    assert E.resolve_fluent_name("thumbs-up-medium", siblings, index).key == "1f44d-1f3fd"
    assert E.resolve_fluent_name("hugging-face", siblings, index).name == "smiling face with open hands"
    assert E.resolve_fluent_name("new-moon-face-dark", siblings, index) is None  # no "-default": not a tone
    assert E.resolve_fluent_name("mystery-thing", siblings, index) is None


def test_pixel_duplicates_keep_the_most_generic_name():
    def image(style, key, name):
        info = E.EmojiInfo(key=key, name=name, concept=name, emoji="", skin_tone=None, keywords=())
        return E.SourceImage(style, Path(f"{key}.svg"), info)

    images = [image("openmoji", "1f1ea-1f1e6", "flag: Ceuta & Melilla"), image("openmoji", "1f1ea-1f1f8",
              "flag: Spain"), image("3d", "1f1ea-1f1f8", "flag: Spain"), image("openmoji", "1f431", "cat face"),
              image("openmoji", "1f473-200d-2640", "woman wearing turban"),
              image("openmoji", "1f473", "person wearing turban")]
    # Same pixels within openmoji: Spain stays; the 3d image (other style) and the cat are untouched; fewer
    # code points beat a shorter name.
    assert E.resolve_pixel_duplicates(images, ["a", "a", "a", "b", "c", "c"]) == [1, None, None, None, 5, None]


def test_split_is_reproducible_and_about_five_percent():
    names = [f"concept {i}" for i in range(4000)]
    first = [E.assign_split(n) for n in names]
    assert first == [E.assign_split(n) for n in names]
    share = first.count("eval") / len(first)
    assert 0.035 < share < 0.065
    assert {E.assign_split(n, 0.0) for n in names[:50]} == {"train"}


def test_flatten_composites_transparency_on_white():
    rgba = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    rgba.paste((200, 0, 0, 255), (5, 2, 15, 8))
    rgba.putpixel((0, 0), (0, 0, 255, 128))  # half-transparent blue
    out = E.flatten_on_background(rgba, 40)
    assert out.mode == "RGB" and out.size == (40, 40)
    assert out.getpixel((0, 0)) == (255, 255, 255)  # padding (wide image fitted into a square)
    assert out.getpixel((20, 20)) == (200, 0, 0)
    assert out.getpixel((0, 10))[2] == 255 and out.getpixel((0, 10))[0] < 255  # blended, not black


@needs_svg
def test_rasterise_svg_keeps_transparency_until_flattened():
    svg = (FIXTURES / "fluentui" / "icons" / "flat" / "polar-bear.svg").read_bytes()
    image = E.rasterise_svg(svg, SIZE)
    assert image.mode == "RGBA" and image.size == (SIZE, SIZE)
    assert image.getpixel((0, 0))[3] == 0
    assert E.flatten_on_background(image, SIZE).getpixel((0, 0)) == (255, 255, 255)


# ----- preparation --------------------------------------------------------------------------------------

def test_prepare_3d_fixture(tmp_path):
    root = prepare(tmp_path)
    records = records_by_file(root)
    assert set(records) == {"3d/1f43b-200d-2744.png", "3d/1f44d.png", "3d/23-20e3.png", "3d/1f600.png",
                            "3d/1f3f4-e0067-e0062-e0065-e006e-e0067-e007f.png"}
    bear = records["3d/1f43b-200d-2744.png"]
    assert bear["text"] == "polar bear, 3d style"
    assert bear["concept"] == "polar bear" and bear["style"] == "3d" and bear["codepoints"] == "1f43b-200d-2744"
    assert bear["skin_tone"] is None and "arctic" in bear["keywords"] and bear["split"] in ("train", "eval")
    assert set(bear) >= {"file_name", "text", "concept", "style", "codepoints", "keywords", "split"}
    for name in records:
        with Image.open(root / name) as im:
            assert im.mode == "RGB" and im.size == (SIZE, SIZE) and im.format == "PNG"
            if "1f3f4" not in name:  # the flag fixture is opaque
                assert im.getpixel((0, 0)) == (255, 255, 255)  # transparent corner -> white
    with Image.open(root / "3d/1f3f4-e0067-e0062-e0065-e006e-e0067-e007f.png") as flag:
        assert flag.getpixel((0, 0)) != (255, 255, 255)  # opaque source stays as it is
    manifest = E.read_manifest(root)
    assert manifest["counts"]["3d"]["images"] == 5 and manifest["concepts"] == 5
    dropped = manifest["dropped"]
    assert [d["file"] for d in dropped["skin_tone"]] == ["1f44d-1f3fd.webp"]
    assert [d["file"] for d in dropped["duplicate_name"]] == ["23-fe0f-20e3.webp"]  # same concept + style
    assert dropped["duplicate_pixels"] == [{"style": "3d", "file": "1f601.webp",
                                            "name": "beaming face with smiling eyes", "same_as": "3d/1f600.png"}]
    assert [u["file"] for u in manifest["unresolved"]] == ["f0000.webp"]
    assert (root / "LICENSE-fluent-emoji.txt").read_text().startswith("MIT License")
    assert "Microsoft" in (root / "ATTRIBUTION.md").read_text()
    assert not (root / "LICENSE-openmoji-CC-BY-SA-4.0.txt").exists()  # no OpenMoji images, no OpenMoji licence


@needs_svg
def test_prepare_all_styles_with_skin_tones(tmp_path):
    root = prepare(tmp_path, styles=("3d", "flat", "color", "openmoji"), skin_tones=True, eval_fraction=0.5)
    records = E.load_emoji_metadata(root)
    by_style: dict[str, set[str]] = {}
    for r in records:
        by_style.setdefault(r["style"], set()).add(r["codepoints"])
        assert r["text"] == f"{r['name']}, {r['style']} style"
        assert r["file_name"].startswith(f"{r['style']}/")
    assert by_style["flat"] == {"1f43b-200d-2744", "1f44d", "1f44d-1f3fb", "1f44d-1f3fd", "1f917", "1f600"}
    assert by_style["color"] == {"1f43b-200d-2744"}
    assert by_style["openmoji"] == {"1f43b-200d-2744", "1f44d", "1f44d-1f3fd", "1f600", "e000"}
    assert "1f44d-1f3fd" in by_style["3d"]
    tone = next(r for r in records if r["style"] == "flat" and r["codepoints"] == "1f44d-1f3fd")
    assert (tone["skin_tone"], tone["concept"], tone["text"]) == \
        ("medium", "thumbs up", "thumbs up: medium skin tone, flat style")
    # One split per concept across styles and skin tones.
    splits: dict[str, set[str]] = {}
    for r in records:
        splits.setdefault(r["concept"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values())
    assert {next(iter(s)) for s in splits.values()} == {"train", "eval"}
    om = next(r for r in records if r["style"] == "openmoji" and r["codepoints"] == "1f43b-200d-2744")
    assert "ice" in om["keywords"]  # OpenMoji's own tags only on OpenMoji images
    assert "ice" not in next(r for r in records if r["style"] == "3d" and r["concept"] == "polar bear")["keywords"]
    with Image.open(root / "flat/1f600.png") as wide:  # a 2:1 SVG padded with white
        assert wide.getpixel((SIZE // 2, 0)) == (255, 255, 255)
        assert wide.getpixel((SIZE // 2, SIZE // 2)) != (255, 255, 255)
    assert (root / "LICENSE-openmoji-CC-BY-SA-4.0.txt").is_file()
    assert (root / "LICENSE-fluentui-emoji-package.txt").is_file()
    assert "CC BY-SA 4.0" in (root / "ATTRIBUTION.md").read_text()
    suite = E.emoji_prompt_suite(root)
    eval_texts = {r["text"] for r in records if r["split"] == "eval" and r["skin_tone"] is None}
    assert suite and set(suite) == eval_texts
    assert len({p.rsplit(", ", 1)[1] for p in suite[:4]}) > 1  # styles interleaved
    assert E.emoji_prompt_suite(root, styles=["flat"], limit=2) == \
        [p for p in suite if p.endswith("flat style")][:2]


def test_limit_keeps_first_concepts(tmp_path):
    root = prepare(tmp_path, limit=2)
    assert len({r["concept"] for r in E.load_emoji_metadata(root)}) == 2
    assert E.read_manifest(root)["config"]["limit"] == 2


def test_groups_keep_only_those_unicode_groups(tmp_path):
    root = prepare(tmp_path, groups="Smileys-Emotion, animals-nature")
    names = {r["name"] for r in E.load_emoji_metadata(root)}
    assert "polar bear" in names and "grinning face" in names
    assert "thumbs up" not in names and "flag: England" not in names
    assert E.read_manifest(root)["config"]["groups"] == ["smileys-emotion", "animals-nature"]
    assert E.default_emoji_dir(("3d",), groups=("smileys-emotion", "food-drink")).name == \
        "3d-smileys-emotion+food-drink"
    assert "groups" not in E.read_manifest(prepare(tmp_path, name="all"))["config"]  # older sets still match
    with pytest.raises(DataError, match="unknown emoji group.*choose from .*animals-nature"):
        prepare(tmp_path, name="bad", groups="smileys,food-drink")


def test_rerun_is_a_noop_and_other_settings_refuse(tmp_path, capsys):
    root = prepare(tmp_path)
    stamp = (root / "metadata.jsonl").stat().st_mtime_ns
    assert E.prepare_emoji(out=root, size=SIZE, package_dirs=PACKAGE_DIRS, cache_dir=tmp_path / "c") == root
    assert "already prepared" in capsys.readouterr().err
    assert (root / "metadata.jsonl").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="other settings"):
        prepare(tmp_path, skin_tones=True)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="not an emoji data set"):
        prepare(tmp_path, name="junk")


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = E.load_source_image

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(emoji_prepare, "load_source_image", flaky)  # where prepare_emoji looks it up
    with pytest.raises(KeyboardInterrupt):
        prepare(tmp_path)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    monkeypatch.setattr(emoji_prepare, "load_source_image", real)
    assert E.read_manifest(prepare(tmp_path)) is not None  # a later run completes


def test_default_location_under_studio_data(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    assert E.default_emoji_dir(("3d",)) == tmp_path / "data" / "emoji" / "3d"
    assert E.default_emoji_dir(("3d", "flat"), skin_tones=True, limit=5).name == "3d+flat-skintones-limit5"


# ----- download and extraction ----------------------------------------------------------------------------

def make_tarball(folder: Path, target: Path) -> Path:
    with tarfile.open(target, "w:gz") as tar:
        tar.add(folder, arcname="package")
    return target


def test_tarballs_are_extracted_once_and_used(tmp_path):
    tarballs = {key: make_tarball(path, tmp_path / E.PACKAGES[key].tarball_name)
                for key, path in PACKAGE_DIRS.items() if key != "fluentui"}
    root = prepare(tmp_path, package_dirs={}, tarballs=tarballs)
    assert len(E.load_emoji_metadata(root)) == 5
    extracted = tmp_path / "cache" / "packages" / "openmoji-17.0.0"
    assert (extracted / "data" / "openmoji.json").is_file() and (extracted / "color" / "svg").is_dir()
    packages = E.read_manifest(root)["packages"]
    assert packages["fluent3d"]["sha256"] and packages["openmoji"]["license"] == "CC-BY-SA-4.0"


def test_safe_extract_refuses_path_traversal(tmp_path):
    evil = tmp_path / "evil.tgz"
    with tarfile.open(evil, "w:gz") as tar:
        data = b"pwned"
        info = tarfile.TarInfo("package/../../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match="unsafe"):
        E.safe_extract(evil, tmp_path / "x" / "pkg")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "x" / "pkg").exists()
    assert list((tmp_path / "x").iterdir()) == []  # no partial folder left


def test_safe_extract_skips_links_and_filters(tmp_path):
    tgz = tmp_path / "links.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, data in (("package/package.json", b"{}"), ("package/assets/a.webp", b"x"),
                           ("package/src/big.bin", b"y")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("package/assets/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    dest = E.safe_extract(tgz, tmp_path / "pkg", keep=("assets/", "package.json"))
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == \
        ["assets/a.webp", "package.json"]


def test_missing_npm_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(StudioError) as err:
        prepare(tmp_path, package_dirs={})
    assert "apt-get install npm" in str(err.value) and "nodejs" in str(err.value).lower()
    assert not (tmp_path / "out").exists()


def test_npm_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/npm")
    failed = subprocess.CompletedProcess([], 1, stdout="", stderr="npm error code E404\nnpm error 404 Not Found")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(DataError, match="registry") as err:
        E.npm_pack("openmoji@17.0.0", tmp_path)
    assert "E404" in str(err.value)
    assert list(tmp_path.iterdir()) == []


# ----- command line --------------------------------------------------------------------------------------

def test_cli_with_tarball_dir(tmp_path, monkeypatch, capsys):
    from studio.cli.data_emoji import register_emoji

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    for key in ("fluent3d", "openmoji"):
        make_tarball(PACKAGE_DIRS[key], tmp_path / E.PACKAGES[key].tarball_name)
    parser = argparse.ArgumentParser(prog="studio data")
    register_emoji(parser.add_subparsers(dest="data_command"))
    args = parser.parse_args(["emoji", "--styles", "3d", "--size", str(SIZE), "--quiet",
                              "--tarball-dir", str(tmp_path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    expected = tmp_path / "data" / "emoji" / f"3d-{SIZE}px"
    assert str(expected) in out and "5 images" in out
    assert args.func(args) == 0  # second run: no-op, same answer
    assert str(expected) in capsys.readouterr().out


def test_caption_wordings_of_an_emoji():
    assert E.caption_wordings("blue heart", "3d", ["blue", "heart", "love"]) == [
        "blue heart, 3d style", "blue heart", "a blue heart", "a blue heart, 3d style", "3d blue heart",
        "blue heart emoji", "blue heart, love"]
    words = E.caption_wordings("hot beverage", "flat", ["beverage", "coffee", "drink", "hot", "tea"])
    assert words[0] == "hot beverage, flat style" and words[-2:] == ["hot beverage, coffee", "hot beverage, drink"]
    assert "an ogre" in E.caption_wordings("ogre", "3d")


def test_a_folder_can_list_its_own_training_wordings():
    from studio.data.wordings import training_wordings

    record = dict(caption="a cat", metadata=dict(wordings=["a kitten", "a cat", " "]))
    assert training_wordings(record) == ["a cat", "a kitten"]
    assert training_wordings(dict(caption="a cat", metadata={})) == ["a cat"]
    emoji = dict(caption="ghost, 3d style", metadata=dict(name="ghost", style="3d", keywords=["halloween"]))
    assert training_wordings(emoji)[:3] == ["ghost, 3d style", "ghost", "a ghost"]
