"""Variance-preserving diffusion in pixel space (simple-diffusion conventions).

- z_t = alpha_t x + sigma_t eps, alpha_t^2 = sigmoid(lambda_t), sigma_t^2 = sigmoid(-lambda_t)
- cosine logSNR lambda(t) = -2 log tan(t_min + t (t_max - t_min)), in [-15, 15]
- resolution shift lambda_R(t) = lambda(t) + 2 log(R_ref / R): more noise at higher resolution
- v-prediction: v = alpha eps - sigma x

The schedule knows nothing of a particular model: it takes a resolution and a reference resolution.
`make_scheduler` hands the same shifted schedule to any diffusers scheduler as `trained_betas`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from studio.constants import SAMPLERS
from studio.errors import ConfigError

LOGSNR_MIN, LOGSNR_MAX = -15.0, 15.0
NUM_TRAIN_TIMESTEPS = 1000


#################################################################################
#                                 Schedule                                      #
#################################################################################

def resolution_shift(resolution: int, reference_resolution: int) -> float:
    """2 log(R_ref / R): 0 at the reference, -2 log 2 per doubling."""
    return 2.0 * math.log(reference_resolution / resolution)


def logsnr_cosine(t: torch.Tensor | float, logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX):
    """Cosine logSNR for t in [0, 1]: logsnr_max at t=0, logsnr_min at t=1."""
    t = torch.as_tensor(t, dtype=torch.float64)
    t_min = math.atan(math.exp(-0.5 * logsnr_max))
    t_max = math.atan(math.exp(-0.5 * logsnr_min))
    return (-2.0 * torch.log(torch.tan(t_min + t * (t_max - t_min)))).clamp(logsnr_min, logsnr_max)


def logsnr_schedule(t: torch.Tensor | float, resolution: int, reference_resolution: int) -> torch.Tensor:
    """The shifted schedule lambda_R(t) (float64)."""
    return logsnr_cosine(t) + resolution_shift(resolution, reference_resolution)


def alpha_sigma(logsnr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha = sqrt(sigmoid(lambda)), sigma = sqrt(sigmoid(-lambda))."""
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def _expand(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return coef.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def add_noise(x: torch.Tensor, noise: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    alpha, sigma = alpha_sigma(logsnr)
    return _expand(alpha, x) * x + _expand(sigma, x) * noise


def v_target(x: torch.Tensor, noise: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    alpha, sigma = alpha_sigma(logsnr)
    return _expand(alpha, x) * noise - _expand(sigma, x) * x


def x0_from_v(z: torch.Tensor, v: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    alpha, sigma = alpha_sigma(logsnr)
    return _expand(alpha, z) * z - _expand(sigma, z) * v


def v_from_x(z: torch.Tensor, x_hat: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """The v for which `x0_from_v` gives back `x_hat` exactly: v = (alpha z - x_hat) / sigma."""
    alpha, sigma = alpha_sigma(logsnr.float())
    return (_expand(alpha, z) * z - x_hat) / _expand(sigma, z)


def eps_from_v(z: torch.Tensor, v: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    alpha, sigma = alpha_sigma(logsnr)
    return _expand(sigma, z) * z + _expand(alpha, z) * v


#################################################################################
#                                 Training loss                                 #
#################################################################################

LOSS_WEIGHTINGS = ("v", "sigmoid", "min_snr", "x")
PREDICTIONS = ("v", "x")
X_PREDICTION_SIGMA_MIN = 0.05


def x_prediction_weight(logsnr: torch.Tensor, sigma_min: float = X_PREDICTION_SIGMA_MIN) -> torch.Tensor:
    """Extra v-loss weight for a model that predicts x (`prediction="x"`): its v error is the x error over
    sigma, so the v-MSE weighs clean-ish images by 1 / sigma^2 (3e6 at logSNR 15). Capping that at
    1 / sigma_min^2 is the clamp of JiT (Li & He 2025, "Back to Basics: Let Denoising Generative Models
    Denoise"): min(1, sigma^2 / sigma_min^2)."""
    _, sigma = alpha_sigma(logsnr.float())
    return (sigma / sigma_min).pow(2).clamp(max=1.0)


def loss_weight(logsnr: torch.Tensor, weighting: str = "v", sigmoid_bias: float = -1.0,
                min_snr_gamma: float = 5.0) -> torch.Tensor:
    """Per-example weight on the v-MSE.

    Since eps_hat - eps = alpha (v_hat - v), an eps-loss weight w_eps equals a v-loss weight w_eps * alpha^2.
    - "v": plain v-MSE (= eps-MSE weighted by 1 + exp(-lambda)).
    - "sigmoid": eps-loss weight sigmoid(b - lambda) (Kingma & Gao 2023; simple diffusion v2), rescaled
      so the weight is ~1 at the low-noise end.
    - "min_snr": min(SNR, gamma) / (SNR + 1) (Hang et al. 2023, v-prediction form).
    - "x": the MSE of the predicted clean image, sigma^2 = sigmoid(-lambda) on the v-MSE (the x error is sigma
      times the v error, for either prediction). The v-MSE weighs an x error by 1 / sigma^2 (up to 400 for an
      x-predicting model), so nearly clean inputs dominate the gradient; in pixels, the picture predicted from
      nearly pure noise counts as much as the last details.
    """
    if weighting == "v":
        return torch.ones_like(logsnr)
    if weighting == "sigmoid":
        return torch.sigmoid(sigmoid_bias - logsnr) * torch.sigmoid(logsnr) / torch.sigmoid(torch.tensor(sigmoid_bias))
    if weighting == "min_snr":
        snr = logsnr.exp()
        return snr.clamp(max=min_snr_gamma) / (snr + 1)
    if weighting == "x":
        return torch.sigmoid(-logsnr)
    raise ConfigError(f"unknown loss weighting {weighting!r}; choose one of {LOSS_WEIGHTINGS}")


TIMESTEP_SAMPLINGS = ("cosine", "logit_normal")


@dataclass(frozen=True)
class TimestepSampler:
    """How training draws noise levels.

    - "cosine": stratified t ~ U(0, 1) (lower-variance loss estimates) through the shifted cosine schedule.
    - "logit_normal": the clean fraction of a rectified flow, s = sigmoid(n) with n ~ N(mean, std) (JiT: mean
      -0.8, std 0.8, more weight on noisy inputs, where layout is decided). Its logSNR is 2 log(s / (1 - s))
      = 2 n, so logSNR ~ N(2 mean, 2 std) plus the resolution shift; stratified through the normal's quantiles.
    """

    kind: str = "cosine"
    mean: float = -0.8
    std: float = 0.8

    def __call__(self, batch: int, resolution: int, reference_resolution: int,
                 generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        u = torch.arange(batch, dtype=torch.float64) + torch.rand(batch, generator=generator, dtype=torch.float64)
        u = u / batch
        u = u[torch.randperm(batch, generator=generator)]
        if self.kind == "cosine":
            return logsnr_schedule(u, resolution, reference_resolution).float().to(device)
        if self.kind == "logit_normal":
            n = self.mean + self.std * math.sqrt(2.0) * torch.erfinv(2.0 * u.clamp(1e-6, 1 - 1e-6) - 1.0)
            logsnr = 2.0 * n + resolution_shift(resolution, reference_resolution)
            return logsnr.clamp(LOGSNR_MIN, LOGSNR_MAX).float().to(device)
        raise ConfigError(f"unknown timestep sampling {self.kind!r}; choose one of {TIMESTEP_SAMPLINGS}")


class LossModel:
    """What `diffusion_loss` reads from a model, for a wrapped one (DDP, torch.compile and other callables hide
    the attributes): `wrapped` is called, the schedule and parameterisation come from the bare model `raw`."""

    def __init__(self, wrapped, raw):
        self.wrapped = wrapped
        self.resolution = raw.resolution
        self.schedule_reference_resolution = raw.schedule_reference_resolution
        self.prediction = getattr(raw, "prediction", "v")

    def __call__(self, *args):
        return self.wrapped(*args)


def training_noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian noise shaped like x, drawn from the (CPU) `generator`. On a GPU the noise is drawn there from
    a generator seeded by `generator`: still reproducible, and no host-side randn of a whole 256 px batch
    (tens of ms per step, longer than the GPU's own step) followed by a copy."""
    if x.device.type != "cuda":  # the CPU (and the meta device FLOP counting uses)
        return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    device_generator = torch.Generator(device=x.device).manual_seed(seed)
    return torch.randn(x.shape, generator=device_generator, dtype=x.dtype, device=x.device)


# The caption contrast (`CaptionContrast`): only noise levels below this logSNR, where the picture still hides
# the layout (above it the image shows where and how many the objects are, and a wrong caption has nothing left to
# decide), and a soft hinge that stops pushing once the wrong caption's error is a few times 1 / this above the true
CONTRAST_MAX_LOGSNR = 0.0
CONTRAST_SHARPNESS = 4.0


@dataclass(frozen=True)
class CaptionContrast:
    """What the caption contrast of `diffusion_loss` needs: the batch `rows` (k,) whose caption has a wrong twin
    (the relation turned around, "left of" <-> "right of", "above" <-> "below"; the count, "two" <-> "three"; or
    another shape), those twins (a TextEmbedding-like `text` of k rows) and each row's term `weight` (k,)."""

    rows: torch.Tensor
    text: object
    weight: torch.Tensor


def _weighted_error(model, v_hat: torch.Tensor, target: torch.Tensor, logsnr: torch.Tensor,
                    weighting: str) -> torch.Tensor:
    """Per-example weighted v-MSE (B,) of a prediction against its target."""
    per_example = (v_hat.float() - target.float()).pow(2).mean(dim=(1, 2, 3)) * loss_weight(logsnr, weighting)
    if getattr(model, "prediction", "v") == "x":
        per_example = per_example * x_prediction_weight(logsnr)
    return per_example


def caption_contrast_term(model, z: torch.Tensor, logsnr: torch.Tensor, target: torch.Tensor,
                          per_example: torch.Tensor, contrast: CaptionContrast, weighting: str) -> torch.Tensor:
    """The same noisy images denoised under the wrong caption: a soft hinge on the relative gap
    g = (L_wrong - L_true) / L_true (L_true detached in the scale), weighted per row, summed over the contrasted
    rows and divided by the batch, so each contrasted caption's gradient is w sigmoid(-k g) (dL_wrong - dL_true):
    the model is pushed to need the relation (count, shape) words to denoise, in the units of the loss itself."""
    keep = logsnr[contrast.rows] < CONTRAST_MAX_LOGSNR
    rows = contrast.rows[keep]
    if len(rows) == 0:
        return per_example.new_zeros(())
    text = contrast.text[keep.to(contrast.text.mask.device)]
    wrong = _weighted_error(model, model(z[rows], logsnr[rows], text.tokens, text.mask, text.pooled), target[rows],
                            logsnr[rows], weighting)
    scale = per_example[rows].detach().clamp_min(1e-8)
    gap = (wrong - per_example[rows]) / scale
    k = CONTRAST_SHARPNESS
    weight = contrast.weight.to(scale.device)[keep.to(contrast.weight.device)]
    return (weight * scale / k * torch.nn.functional.softplus(-k * gap)).sum() / len(per_example)


def diffusion_loss(model, x: torch.Tensor, text, *, weighting: str = "v", generator: torch.Generator | None = None,
                   reduce: bool = True, timesteps: TimestepSampler | None = None,
                   contrast: CaptionContrast | None = None) -> torch.Tensor:
    """v-MSE of `model` on clean images x (B, 3, R, R) in [-1, 1] and a TextEmbedding-like `text`.
    Noise and timesteps (`timesteps`, default cosine) are drawn from `generator` (seeded runs are reproducible).
    `contrast` adds the caption contrast (`caption_contrast_term`) to the mean."""
    B = x.shape[0]
    logsnr = (timesteps or TimestepSampler())(B, model.resolution, model.schedule_reference_resolution, generator,
                                              device=x.device)
    noise = training_noise(x, generator)
    z = add_noise(x, noise, logsnr)
    target = v_target(x, noise, logsnr)
    per_example = _weighted_error(model, model(z, logsnr, text.tokens, text.mask, text.pooled), target, logsnr,
                                  weighting)
    if contrast is None:
        return per_example.mean() if reduce else per_example
    if not reduce:
        raise ValueError("the caption contrast is a term of the batch's mean loss: use it with reduce=True")
    return per_example.mean() + caption_contrast_term(model, z, logsnr, target, per_example, contrast, weighting)


#################################################################################
#                        Bridge to diffusers schedulers                         #
#################################################################################

@dataclass(frozen=True)
class DiscreteSchedule:
    """The shifted schedule on diffusers' integer grid: timestep i <-> t = (i + 1) / N."""

    resolution: int
    reference_resolution: int
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS

    def logsnrs(self) -> np.ndarray:
        t = (np.arange(self.num_train_timesteps) + 1) / self.num_train_timesteps
        return logsnr_schedule(torch.from_numpy(t), self.resolution, self.reference_resolution).numpy()

    def alphas_cumprod(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logsnrs()))  # sigmoid(lambda) = alpha^2

    def betas(self) -> np.ndarray:
        acp = self.alphas_cumprod()
        return 1.0 - acp / np.concatenate([[1.0], acp[:-1]])

    def logsnr_at(self, timestep) -> torch.Tensor:
        """logSNR at (possibly fractional, as Euler uses) scheduler timesteps, by interpolation."""
        t = np.atleast_1d(np.asarray(torch.as_tensor(timestep).detach().cpu().double()))
        grid = np.arange(self.num_train_timesteps)
        return torch.from_numpy(np.interp(t, grid, self.logsnrs())).float()


def make_scheduler(sampler: str, resolution: int, reference_resolution: int):
    """A diffusers scheduler driven by the shifted schedule, predicting v."""
    # deferred: the schedulers (with scipy.stats) add ~1 s to every model load; only sampling needs them
    from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                           UniPCMultistepScheduler)

    schedule = DiscreteSchedule(resolution, reference_resolution)
    common = dict(num_train_timesteps=schedule.num_train_timesteps, trained_betas=schedule.betas().tolist(),
                  prediction_type="v_prediction")
    if sampler == "ddpm":
        return DDPMScheduler(**common, clip_sample=False, timestep_spacing="linspace")
    if sampler == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True, timestep_spacing="linspace")
    if sampler == "dpm++":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                           timestep_spacing="linspace", final_sigmas_type="zero")
    if sampler == "euler":
        return EulerDiscreteScheduler(**common, timestep_spacing="linspace")
    if sampler == "unipc":
        return UniPCMultistepScheduler(**common, timestep_spacing="linspace", final_sigmas_type="zero")
    raise ConfigError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
