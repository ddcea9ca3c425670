"""The two model classes: the Shallow-UViT (phase 1) and the grown UViT (phases 2 and 3).

Both predict v for a noisy image z_t (B, 3, R, R) given its logSNR (B,) and the text encoder's token
states (B, T, 384), padding mask (B, T) and pooled vector (B, 384). Both hold the same `Core` under the
attribute `core`, so growing is a state-dict copy of `core.*`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from studio.diffusion import PREDICTIONS, alpha_sigma, resolution_shift, v_from_x, x0_from_v
from studio.models.core import Core
from studio.models.layers import Downsample, PatchConv2d, ResBlock, Upsample, group_norm

UNTRAINED = "untrained"
# The config keys that describe the core (and the text encoder it reads): carried unchanged into grown models.
# How the core reads the prompt; nothing outside the core depends on these (growth's copy_stages relies on it).
TEXT_PATHWAY_KEYS = ("text_dim", "text_layers", "text_positions", "joint_attention", "cross_attention_gate",
                     "text_encoder")
CORE_KEYS = ("grid", "core_channels", "width", "depth", "heads", "mlp_ratio", *TEXT_PATHWAY_KEYS)


class _UViT(ModelMixin, ConfigMixin):
    """What both classes share: the core, its conditioning, and a little bookkeeping."""

    core: Core

    def _build_core(self) -> Core:
        c = self.config
        return Core(c.core_channels, c.grid, c.width, c.depth, c.heads, c.mlp_ratio, c.text_dim, c.text_layers,
                    c.text_positions, c.joint_attention, c.cross_attention_gate)

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def prediction(self) -> str:
        """What the network's last layer outputs before `forward` turns it into v: "v" or "x"."""
        return self.config.prediction

    @property
    def schedule_reference_resolution(self) -> int:
        """The resolution whose noise schedule is unshifted: the core's pre-training resolution."""
        return self.config.reference_resolution or self.config.resolution

    def _check_prediction(self) -> None:
        if self.config.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.config.prediction!r}")

    def _as_v(self, out: torch.Tensor, sample: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        """The network's output as v. With `prediction="x"` (ours, after JiT) the network outputs the clean
        image and v follows from it, so the noise never has to travel through the network: a model that
        predicts v must copy the input noise to its output pixel-exactly, or its x0 keeps that noise."""
        if self.config.prediction == "x":
            return v_from_x(sample.float(), out.float(), logsnr).to(out.dtype)
        return out

    @property
    def text_encoder_name(self) -> str:
        """Which text encoder the model reads (`studio.text.text_encoder_for`)."""
        return self.config.text_encoder

    def core_config(self) -> dict:
        return {k: self.config[k] for k in CORE_KEYS}


#################################################################################
#                                Shallow-UViT                                   #
#################################################################################

def shallow_state(model) -> dict:
    """The tensors of a model's shallow layers (everything of a Shallow-UViT but its core; a grown model's
    low-resolution path), named as in `_ShallowLayers`: what growth keeps as the low-resolution path."""
    if isinstance(model, GrownUViT):
        return model.low_res.state_dict()
    return {k: v for k, v in model.state_dict().items() if not k.startswith("core.")}


class _ShallowLayers:
    """The Shallow-UViT's layers around the core, shared by the Shallow-UViT and a grown model's LowResPath.

    `pixel_channels` > 0 (ours, after U-ViT) adds layers at full resolution: a 3x3 conv and a ResBlock
    before the patchify conv, and after the transposed conv a ResBlock fed with a skip from the first, then a
    3x3 output conv. Without them every output pixel is a linear function of one token (4 px patches show
    as a texture) and the patchify conv reads the raw noisy pixels."""

    def _build_shallow(self, resolution: int, grid: int, core_channels: int, cond_dim: int, skip: bool,
                       build_core=None, pixel_channels: int = 0) -> None:
        """Create the layers; `build_core` runs between the entry and the exit layers, the order in which the
        Shallow-UViT has always drawn its random initial weights (a seed keeps giving the same model)."""
        patch = resolution // grid
        P = pixel_channels
        if P:
            self.pixel_in = nn.Conv2d(3, P, 3, padding=1)
            self.pixel_encoder = ResBlock(P, P, cond_dim)
        self.entry = PatchConv2d(P or 3, core_channels, kernel_size=patch, stride=patch)
        self.encoder_block = ResBlock(core_channels, core_channels, cond_dim)
        if build_core is not None:
            build_core()
        self.decoder_block = ResBlock((2 if skip else 1) * core_channels, core_channels, cond_dim)
        self.out_norm = group_norm(core_channels)
        self.exit = nn.ConvTranspose2d(core_channels, P or 3, kernel_size=patch, stride=patch)
        if P:
            self.pixel_decoder = ResBlock(2 * P, P, cond_dim)
            self.pixel_out_norm = group_norm(P)
            self.pixel_out = nn.Conv2d(P, 3, 3, padding=1)

    @property
    def last_layer(self) -> nn.Module:
        """The layer that writes the pixels (zero-initialised in a fresh Shallow-UViT)."""
        return getattr(self, "pixel_out", None) or self.exit

    def encode(self, sample: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, 3, R0, R0) -> token-grid features (B, C, G, G) and the full-resolution features (B, P, R0, R0)
        that the pixel layers skip to the output (None without pixel layers)."""
        pixels = None
        if hasattr(self, "pixel_in"):
            pixels = self.pixel_encoder(self.pixel_in(sample), cond)  # (B, P, R0, R0)
            sample = pixels
        return self.encoder_block(self.entry(sample), cond), pixels

    def decode(self, h: torch.Tensor, skip: torch.Tensor | None, cond: torch.Tensor,
               pixels: torch.Tensor | None = None) -> torch.Tensor:
        """Core output (B, C, G, G), plus the encoder's output when the layers have the skip (and the
        full-resolution features with pixel layers) -> (B, 3, R0, R0)."""
        if skip is not None:
            h = torch.cat([h, skip], dim=1)  # (B, 2C, G, G)
        out = self.exit(F.silu(self.out_norm(self.decoder_block(h, cond))))  # (B, P or 3, R0, R0)
        if pixels is not None:
            out = self.pixel_decoder(torch.cat([out, pixels], dim=1), cond)  # (B, P, R0, R0)
            out = self.pixel_out(F.silu(self.pixel_out_norm(out)))  # (B, 3, R0, R0)
        return out


class ShallowUViT(_ShallowLayers, _UViT):
    """Entry conv (kernel = stride = R/G) -> ResBlock -> core -> ResBlock -> transposed conv.

    The shallow entry/exit layers are cheap and thrown away at growth; the core is what is kept.

    `skip=True` (ours, the "U" of a UViT) concatenates the encoder ResBlock's output with the core's output
    before the decoder ResBlock. Without it, every pixel of the noise to be predicted must pass through the
    16 x 16 transformer, and samples keep high-frequency noise: the core is asked to denoise patches instead
    of laying out the picture. The skip is part of the shallow layers, so growth is unchanged.
    """

    @register_to_config
    def __init__(self, resolution: int = 64, grid: int = 16, core_channels: int = 128, width: int = 256,
                 depth: int = 6, heads: int = 4, mlp_ratio: float = 4.0, text_dim: int = 384,
                 reference_resolution: int | None = None, training_phase: str = UNTRAINED,
                 skip: bool = False, prediction: str = "v", text_layers: int = 0, text_positions: int = 0,
                 joint_attention: bool = False, pixel_channels: int = 0, text_encoder: str = "minilm",
                 cross_attention_gate: bool = True):
        super().__init__()
        self._check_prediction()
        patch = resolution // grid
        if patch * grid != resolution or patch < 1:
            raise ValueError(f"resolution {resolution} must be a multiple of the core grid {grid}")
        self._build_shallow(resolution, grid, core_channels, width, skip,
                            build_core=lambda: setattr(self, "core", self._build_core()),
                            pixel_channels=pixel_channels)
        nn.init.zeros_(self.last_layer.weight)  # the untrained network outputs 0 (v = 0, or x = 0)
        nn.init.zeros_(self.last_layer.bias)

    def forward(self, sample: torch.Tensor, logsnr: torch.Tensor, text_tokens: torch.Tensor,
                text_mask: torch.Tensor, text_pooled: torch.Tensor) -> torch.Tensor:
        cond, text = self.core.condition(logsnr, text_tokens, text_pooled, text_mask)  # (B, D), (B, T, D)
        skip, pixels = self.encode(sample, cond)  # (B, C, G, G), (B, P, R, R) or None
        h = self.core(skip, cond, text, text_mask)  # (B, C, G, G)
        out = self.decode(h, skip if self.config.skip else None, cond, pixels)  # (B, 3, R, R)
        return self._as_v(out, sample, logsnr)


#################################################################################
#                                 Grown UViT                                    #
#################################################################################

class EncoderStage(nn.Module):
    """ResBlocks at this stage's resolution, then 2x down to the next stage inwards."""

    def __init__(self, channels: int, inner_channels: int, blocks: int, cond_dim: int):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(channels, channels, cond_dim) for _ in range(blocks))
        self.down = Downsample(channels, inner_channels)


class DecoderStage(nn.Module):
    """2x up from the stage inwards, concatenate the encoder's skip, ResBlocks."""

    def __init__(self, channels: int, inner_channels: int, blocks: int, cond_dim: int):
        super().__init__()
        self.up = Upsample(inner_channels, channels)
        self.blocks = nn.ModuleList(
            ResBlock(2 * channels if i == 0 else channels, channels, cond_dim) for i in range(blocks))


class LowResPath(_ShallowLayers, nn.Module):
    """The parent Shallow-UViT's entry and exit layers, kept beside the new stages (ours, `low_res_path=True`).

    The paper discards them at growth, so the grown model starts from new stages that feed the frozen core
    noise it has never seen; on a CPU those stages never train long enough for the core's alignment to show
    (measured in docs/results/shipped-models.md, "Growing with a low-resolution path"). Kept, they
    give the grown model the parent's picture from its first step: the noisy R px image is box-pooled to the
    parent's R0 px (which, under the resolution shift, is exactly the signal-to-noise ratio the parent was
    trained at), the parent predicts its clean R0 px image, and that is upsampled for the new stages to refine.
    """

    def __init__(self, resolution: int, grid: int, core_channels: int, cond_dim: int, skip: bool, prediction: str,
                 pixel_channels: int = 0):
        super().__init__()
        self.resolution, self.skip, self.prediction = resolution, skip, prediction
        self._build_shallow(resolution, grid, core_channels, cond_dim, skip, pixel_channels=pixel_channels)

    def pool(self, sample: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) at logSNR lambda_R -> (B, 3, R0, R0) variance-preserving at lambda_R + 2 log(R/R0).

        Averaging f x f pixels keeps alpha x and divides the noise's std by f, so the pooled image is
        alpha x + (sigma/f) eps; dividing by sqrt(alpha^2 + sigma^2/f^2) makes it the parent's kind of input."""
        factor = sample.shape[-1] // self.resolution
        alpha, sigma = alpha_sigma(logsnr.float())
        scale = torch.rsqrt(alpha ** 2 + (sigma / factor) ** 2).to(sample.dtype)[:, None, None, None]
        return F.avg_pool2d(sample, factor) * scale

    def clean_image(self, h: torch.Tensor, skip: torch.Tensor, pooled: torch.Tensor, cond: torch.Tensor,
                    logsnr: torch.Tensor, pixels: torch.Tensor | None = None) -> torch.Tensor:
        """Core output (B, C, G, G) -> the parent's clean-image prediction (B, 3, R0, R0)."""
        out = self.decode(h, skip if self.skip else None, cond, pixels)
        if self.prediction == "v":
            return x0_from_v(pooled.float(), out.float(), logsnr.float()).to(out.dtype)
        return out


class GrownUViT(_UViT):
    """Stem at R -> encoder stages (ResBlocks, 2x down) to the G x G grid -> core -> decoder stages
    (2x up, skip, ResBlocks) -> output conv.

    `encoder_to_core=False` (ours; with a low-resolution path) feeds the core the low-resolution path's input alone:
    the encoder's stages still skip to the decoder's, and `encoder_stages.0.down` is not built (what that input does
    to the swap test: `scripts/relation_gap.py`).

    `stage_channels` lists the stages **from the core outwards**: stage 0 works at 2G pixels, stage k at
    G * 2^(k+1). Module names follow the same order (`encoder_stages.0` is next to the core), so growing
    again (R -> 2R) appends one stage and every existing tensor keeps its name.
    """

    @register_to_config
    def __init__(self, resolution: int = 256, grid: int = 16, core_channels: int = 128, width: int = 256,
                 depth: int = 6, heads: int = 4, mlp_ratio: float = 4.0, text_dim: int = 384,
                 stage_channels: tuple[int, ...] = (128, 64, 32, 32), blocks_per_stage: int = 1,
                 reference_resolution: int | None = None, training_phase: str = UNTRAINED,
                 prediction: str = "v", low_res_path: bool = False, low_res_skip: bool = False,
                 low_res_prediction: str = "x", text_layers: int = 0, text_positions: int = 0,
                 joint_attention: bool = False, low_res_pixel_channels: int = 0, text_encoder: str = "minilm",
                 cross_attention_gate: bool = True, encoder_to_core: bool = True):
        super().__init__()
        self._check_prediction()
        if not encoder_to_core and not low_res_path:
            raise ValueError("encoder_to_core=False leaves the core the low-resolution path's input alone: "
                             "it needs low_res_path=True")
        stages = math.log2(resolution / grid)
        if stages != int(stages) or stages < 1:
            raise ValueError(f"resolution {resolution} must be the core grid {grid} times a power of two")
        if len(stage_channels) != int(stages):
            raise ValueError(f"{int(stages)} stages take the grid {grid} to {resolution} px, "
                             f"but stage_channels has {len(stage_channels)} entries: {list(stage_channels)}")
        inner = [core_channels, *stage_channels[:-1]]  # channels of the next stage inwards
        self.core = self._build_core()
        self.stem = nn.Conv2d(3, stage_channels[-1], 3, padding=1)
        self.encoder_stages = nn.ModuleList(
            EncoderStage(c, ci, blocks_per_stage, width) for c, ci in zip(stage_channels, inner))
        self.decoder_stages = nn.ModuleList(
            DecoderStage(c, ci, blocks_per_stage, width) for c, ci in zip(stage_channels, inner))
        self.out_norm = group_norm(stage_channels[-1])
        self.out = nn.Conv2d(stage_channels[-1], 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.low_res = None
        if low_res_path:
            if prediction != "x":
                raise ValueError("low_res_path refines the parent's clean image: it needs prediction='x'")
            if not reference_resolution or resolution % reference_resolution or resolution == reference_resolution:
                raise ValueError(f"low_res_path needs the parent's resolution as reference_resolution, a proper "
                                 f"divisor of {resolution}; got {reference_resolution}")
            self.low_res = LowResPath(reference_resolution, grid, core_channels, width, low_res_skip,
                                      low_res_prediction, low_res_pixel_channels)
            if encoder_to_core:
                nn.init.zeros_(self.encoder_stages[0].down.conv.weight)  # the new encoder adds nothing at first
                nn.init.zeros_(self.encoder_stages[0].down.conv.bias)
            else:
                self.encoder_stages[0].down = None

    def forward(self, sample: torch.Tensor, logsnr: torch.Tensor, text_tokens: torch.Tensor,
                text_mask: torch.Tensor, text_pooled: torch.Tensor) -> torch.Tensor:
        core_logsnr = logsnr
        if self.low_res is not None:  # the core and the parent's layers read the pooled image's noise level
            core_logsnr = logsnr - resolution_shift(self.resolution, self.low_res.resolution)
        cond, text = self.core.condition(core_logsnr, text_tokens, text_pooled, text_mask)  # (B, D), (B, T, D)
        h = self.stem(sample)  # (B, c_K, R, R)
        skips = []
        for k, stage in enumerate(reversed(self.encoder_stages)):  # outermost first
            for block in stage.blocks:
                h = block(h, cond)
            skips.append(h)  # (B, c_k, r, r)
            if stage.down is not None:
                h = stage.down(h)  # (B, c_{k-1}, r/2, r/2)
        if self.low_res is not None:
            pooled = self.low_res.pool(sample, logsnr)  # (B, 3, R0, R0)
            low_skip, low_pixels = self.low_res.encode(pooled, cond)  # (B, C, G, G), (B, P, R0, R0) or None
            h = h + low_skip if self.config.encoder_to_core else low_skip
        h = self.core(h, cond, text, text_mask)  # (B, C, G, G)
        core_out = h
        for stage in self.decoder_stages:  # innermost first
            h = torch.cat([stage.up(h), skips.pop()], dim=1)  # (B, 2 c_k, r, r)
            for block in stage.blocks:
                h = block(h, cond)
        out = self.out(F.silu(self.out_norm(h)))  # (B, 3, R, R)
        if self.low_res is not None:  # the new stages refine the parent's upsampled picture
            x_low = self.low_res.clean_image(core_out, low_skip, pooled, cond, core_logsnr,
                                             low_pixels)  # (B, 3, R0, R0)
            out = out + F.interpolate(x_low, size=out.shape[-2:], mode="bilinear", align_corners=False)
        return self._as_v(out, sample, logsnr)  # (B, 3, R, R)


MODEL_CLASSES = {"ShallowUViT": ShallowUViT, "GrownUViT": GrownUViT}
