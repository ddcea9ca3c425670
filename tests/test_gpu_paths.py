"""The pieces that let training run on a GPU machine without the MiniLM package, and fast there; the GPU
itself is exercised by scripts/gpu_train_shipped.sh (its first step is a smoke test on the device)."""

from __future__ import annotations

import os
import shutil
import tarfile

import pytest
import torch

from conftest import load_gpu_carry
from studio.diffusion import training_noise
from studio.text import TEXT_ENCODER_ENV, TextEncoder, default_text_encoder_path
from studio.train import batches


def test_text_encoder_path_from_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(TEXT_ENCODER_ENV, raising=False)
    package = default_text_encoder_path()
    assert (package / "config.json").is_file()
    monkeypatch.setenv(TEXT_ENCODER_ENV, str(tmp_path))
    assert default_text_encoder_path() == tmp_path


@pytest.mark.parametrize("pruned", [False, True])
def test_fp16_copy_of_the_text_encoder_gives_nearly_the_same_embeddings(tmp_path, monkeypatch, text_encoder, pruned):
    gpu_carry = load_gpu_carry()
    prompts = ["a red star to the left of a blue circle on a white background", "two green squares", ""]
    folder = gpu_carry.fp16_text_encoder(tmp_path / "minilm-fp16", prompts[:2] if pruned else None)
    size = (folder / "model.safetensors").stat().st_size
    full = (default_text_encoder_path() / "model.safetensors").stat().st_size
    assert size < (0.26 if pruned else 0.55) * full
    gpu_carry.expand_text_encoder(folder)
    monkeypatch.setenv(TEXT_ENCODER_ENV, str(folder))
    copy = TextEncoder()
    for prompt in prompts:
        a, b = text_encoder.encode(prompt), copy.encode(prompt)
        assert a.tokens.shape == b.tokens.shape
        assert torch.nn.functional.cosine_similarity(a.pooled, b.pooled).item() > 0.999
    if pruned:  # a word that was not carried embeds differently: the copy is for the captions it was made for
        a, b = text_encoder.encode("a purple elephant"), copy.encode("a purple elephant")
        assert torch.nn.functional.cosine_similarity(a.pooled, b.pooled).item() < 0.99
    shutil.rmtree(folder)


def test_shapes_vocabulary_covers_the_caption_grammar():
    texts = load_gpu_carry().shapes_vocabulary_texts(train_scenes=2000, heldout_scenes=200)
    words = {w for t in texts for w in t.split()}
    assert {"red", "circle", "star", "left", "above", "background", "three"} <= words


def test_training_noise_is_reproducible_on_the_cpu():
    x = torch.zeros(3, 3, 8, 8)
    n1 = training_noise(x, torch.Generator().manual_seed(4))
    n2 = training_noise(x, torch.Generator().manual_seed(4))
    n3 = training_noise(x, torch.Generator().manual_seed(5))
    assert torch.equal(n1, n2) and not torch.equal(n1, n3)
    assert n1.shape == x.shape and abs(float(n1.std()) - 1) < 0.2
    # The CPU stream is the one earlier runs drew (resumed CPU runs stay bit-exact).
    assert torch.equal(n1, torch.randn(x.shape, generator=torch.Generator().manual_seed(4)))


@pytest.mark.parametrize("cores, workers", [(1, 0), (2, 0), (4, 0), (8, 4), (16, 8), (64, 8)])
def test_cache_rendering_uses_workers_only_on_big_machines(monkeypatch, cores, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert batches.cache_workers() == workers


def test_park_moves_unneeded_models_out_of_the_travelling_tree_and_back(tmp_path, monkeypatch):
    """`make gpu-park` takes the shipped models no GPU script reads out of what a device call sends (git's
    tracked and unignored files plus the carry), `gpu-unpark` restores them byte for byte."""
    import subprocess

    gpu_carry = load_gpu_carry()
    root = tmp_path / "repo"
    model = root / "assets" / "models" / "shapes-256"
    model.mkdir(parents=True)
    (model / "weights.bin").write_bytes(b"w" * 5000)
    (model / "config.json").write_text("{}")  # its record stays: the scratch twin reads it (studio.train.twin)
    (root / "docs" / "results").mkdir(parents=True)
    (root / "docs" / "results" / "figure.png").write_bytes(b"p" * 700)
    (root / ".gitignore").write_text("/.gpu-parked/\n/.whl/\n")
    (root / ".whl").mkdir()
    (root / ".whl" / "x.whl").write_bytes(b"x" * 300)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    monkeypatch.setattr(gpu_carry, "ROOT", root)
    monkeypatch.setattr(gpu_carry, "PARK", root / ".gpu-parked")
    monkeypatch.setattr(gpu_carry, "CARRY", (".whl",))
    before = gpu_carry.travel_size()
    assert before >= 6000
    gpu_carry.park()
    assert [f.name for f in model.iterdir()] == ["config.json"] and gpu_carry.travel_size() == before - 5700
    gpu_carry.park()  # parking again moves nothing more
    gpu_carry.park(back=True)
    assert (model / "weights.bin").read_bytes() == b"w" * 5000 and gpu_carry.travel_size() == before
    assert (root / "docs" / "results" / "figure.png").is_file() and not any((root / ".gpu-parked").iterdir())


def test_emoji_carry_prepares_the_data_set_offline_on_the_device(tmp_path, monkeypatch):
    """`gpu_carry.py --data emoji` copies the npm tarballs and keeps the captions' vocabulary; on the device
    (scripts/gpu_env.sh) the tarballs sit in $STUDIO_DATA/emoji/downloads and `studio data emoji` never calls npm."""
    from pathlib import Path

    from studio.data import emoji as E

    fixtures = Path(__file__).parent / "fixtures" / "emoji"
    gpu_carry = load_gpu_carry()
    here = tmp_path / "here"
    (here / "emoji" / "downloads").mkdir(parents=True)
    for key in gpu_carry.EMOJI_PACKAGES:  # what `npm pack` left on this machine
        with tarfile.open(here / "emoji" / "downloads" / E.PACKAGES[key].tarball_name, "w:gz") as tar:
            tar.add(fixtures / key, arcname="package")
    monkeypatch.setenv("STUDIO_DATA", str(here))
    monkeypatch.setattr(E, "npm_pack", lambda *a, **k: pytest.fail("npm must not be called"))
    carried = gpu_carry.copy_emoji_packages(tmp_path / ".emoji-packages")
    assert sorted(p.name for p in carried) == sorted(E.PACKAGES[k].tarball_name for k in gpu_carry.EMOJI_PACKAGES)
    members = {}
    for tarball in carried:  # re-packed with only what the 3d style reads
        with tarfile.open(tarball) as tar:
            members[tarball.name] = set(tar.getnames())
    fluent, openmoji = (members[E.PACKAGES[k].tarball_name] for k in gpu_carry.EMOJI_PACKAGES)
    assert "package/assets/1f44d.webp" in fluent and "package/assets/1f44d-1f3fd.webp" not in fluent  # skin tone
    assert openmoji == {"package/data/openmoji.json", "package/package.json", "package/LICENSE.txt"}
    whole = E.prepare_emoji(styles=("3d",), size=32, progress=False)  # from the whole packages, here
    texts = gpu_carry.emoji_vocabulary_texts()
    assert texts and all(t.endswith(", 3d style") for t in texts)
    both = gpu_carry.vocabulary_texts("all")  # one carry for a warm machine that trains both data sets
    assert set(texts) <= set(both) and "circle" in {w for t in both for w in t.split()}
    assert gpu_carry.vocabulary_texts("emoji") == texts

    device = tmp_path / "device"  # a fresh data folder, filled as gpu_env.sh does
    (device / "emoji" / "downloads").mkdir(parents=True)
    for tarball in carried:
        shutil.copy2(tarball, device / "emoji" / "downloads")
    monkeypatch.setenv("STUDIO_DATA", str(device))
    root = E.prepare_emoji(styles=("3d",), size=32, progress=False)
    assert sorted(r["text"] for r in E.load_emoji_metadata(root)) == sorted(texts)
    # the same data set as from the whole packages: records and pixels
    assert (root / "metadata.jsonl").read_text() == (whole / "metadata.jsonl").read_text()
    for record in E.load_emoji_metadata(root):
        assert (root / record["file_name"]).read_bytes() == (whole / record["file_name"]).read_bytes()


def test_park_can_take_every_shipped_model(tmp_path, monkeypatch):
    gpu_carry = load_gpu_carry()
    models = tmp_path / "assets" / "models"
    for name in ("shapes-core-64", "shapes-256"):
        (models / name).mkdir(parents=True)
        (models / name / "w").write_text(name)
    monkeypatch.setattr(gpu_carry, "ROOT", tmp_path)
    monkeypatch.setattr(gpu_carry, "PARK", tmp_path / ".gpu-parked")
    gpu_carry.park(names=("shapes-core-64", "shapes-256"))
    assert not any(models.iterdir())
    gpu_carry.park(back=True)
    assert sorted(p.name for p in models.iterdir()) == ["shapes-256", "shapes-core-64"]


def test_a_leg_keeps_the_model_it_goes_on_from(tmp_path, monkeypatch):
    """`park --keep`: an emoji core leg from the shipped core carries that core and parks the other models (two
    shipped models and the emoji carry exceed the 64 MiB of a call)."""
    gpu_carry = load_gpu_carry()
    for name in ("emoji-256", "emoji-core-64", "shapes-256", "shapes-core-64"):
        (tmp_path / "assets" / "models" / name).mkdir(parents=True)
    monkeypatch.setattr(gpu_carry, "ROOT", tmp_path)
    assert gpu_carry.models_to_park("emoji") == ("emoji-256", "emoji-core-64", "shapes-256", "shapes-core-64")
    assert gpu_carry.models_to_park("emoji", ("emoji-core-64",)) == ("emoji-256", "shapes-256", "shapes-core-64")
    assert gpu_carry.models_to_park("shapes") == ("shapes-256",)
    assert gpu_carry.models_to_park("shapes", ("shapes-256",)) == ()
    with pytest.raises(ValueError, match="no shipped model emoji-512"):
        gpu_carry.models_to_park("emoji", ("emoji-512",))
