"""Building blocks shared by the core and the convolutional stages.

Shapes: B batch, C channels, H/W pixels, N = G*G tokens, D core width, T text tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups that divide the channel count (works for tiny test widths)."""
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: (B, N, D) * (1 + scale) + shift, with (B, D) modulation vectors."""
    return x * (1 + scale[:, None]) + shift[:, None]


#################################################################################
#                         Conditioning embedders                                #
#################################################################################

class LogSNREmbedder(nn.Module):
    """Continuous noise level -> (B, D). The network sees logSNR (not a step index), so any sampler can
    drive it. Fourier features with periods from ~0.2 to ~200 logSNR units cover the shifted range."""

    def __init__(self, dim: int, frequencies: int = 128):
        super().__init__()
        self.register_buffer("freqs", 2.0 ** torch.linspace(-5, 5, frequencies), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, logsnr: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, D)
        angles = logsnr.float()[:, None] * self.freqs[None]  # (B, F)
        features = torch.cat([angles.cos(), angles.sin()], dim=-1)  # (B, 2F)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class PooledTextEmbedder(nn.Module):
    """Masked-mean text vector (B, 384) -> (B, D), added to the noise-level embedding."""

    def __init__(self, text_dim: int, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(text_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.mlp(pooled)


#################################################################################
#                         Attention and transformer block                      #
#################################################################################

def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """`F.scaled_dot_product_attention` (q (B, h, N, d), k and v (B, h, M, d)). Under bfloat16 autocast on a CPU it
    runs in float32: PyTorch's CPU flash-attention backward is over ten times slower in bfloat16 than in float32,
    which costs a training step more than the bfloat16 matmuls save (`studio bench --only train --precisions
    fp32,bf16` times the step in both)."""
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=attn_mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


class SelfAttention(nn.Module):
    """Self-attention over the image tokens. With `joint=True` (ours, after SD3's MMDiT) the text tokens
    join it: image queries attend to the image tokens and the text tokens together, the text through keys
    and values of its own, so one attention decides both layout and what the caption asks for."""

    def __init__(self, dim: int, heads: int, joint: bool = False):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)  # fused QKV: one matmul instead of three
        self.proj = nn.Linear(dim, dim)
        self.text_kv = nn.Linear(dim, 2 * dim) if joint else None

    def forward(self, x: torch.Tensor, text: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape  # x (B, N, D); joint: text (B, T, D), mask (B, T) bool
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # 3x (B, h, N, d)
        attn_mask = None
        if self.text_kv is not None:
            T = text.shape[1]
            tk, tv = self.text_kv(text).view(B, T, 2, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
            k, v = torch.cat([k, tk], dim=2), torch.cat([v, tv], dim=2)  # (B, h, N + T, d)
            attn_mask = torch.cat([mask.new_ones(B, N), mask], dim=1)[:, None, None, :]  # (B, 1, 1, N + T)
        elif mask is not None:  # a masked self-attention over text tokens (TextTransformer)
            attn_mask = mask[:, None, None, :]
        out = attention(q, k, v, attn_mask)  # (B, h, N, d)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class CrossAttention(nn.Module):
    """Image tokens attend to text tokens; padding tokens are masked out."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape  # x (B, N, D), text (B, T, D), mask (B, T) bool
        T = text.shape[1]
        q = self.q(x).view(B, N, self.heads, D // self.heads).transpose(1, 2)  # (B, h, N, d)
        k, v = self.kv(text).view(B, T, 2, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, h, T, d)
        out = attention(q, k, v, mask[:, None, None, :])  # (B, h, N, d)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class TransformerBlock(nn.Module):
    """Self-attention, masked cross-attention to text, MLP; each modulated by adaLN from the conditioning
    vector with zero-initialised gates (DiT's adaLN-Zero), so a fresh block is the identity.

    `joint_attention=True` drops the cross-attention: the text tokens join the self-attention instead.
    `cross_attention_gate=False` (ours, as in PixArt-alpha) adds the cross-attention to the residual stream
    without adaLN shift, scale and gate. With the zero-initialised gate, the cross-attention receives no
    gradient until the gate has grown, and the gate none until the attention says something useful: text
    that must act *somewhere* (a position, a relation) is learned slower (`scripts/layout_regression.py`
    measures it)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, joint_attention: bool = False,
                 cross_attention_gate: bool = True):
        super().__init__()
        self.joint = joint_attention
        self.cross_gate = cross_attention_gate
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads, joint=joint_attention)
        if not joint_attention:
            self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            self.cross = CrossAttention(dim, heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x (B, N, D), cond (B, D), text (B, T, D), mask (B, T)
        (shift1, scale1, gate1, shift2, scale2, gate2,
         shift3, scale3, gate3) = self.adaLN(cond).chunk(9, dim=-1)  # 9x (B, D)
        if self.joint:
            x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1), text, mask)
        else:
            x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
            if self.cross_gate:
                x = x + gate2[:, None] * self.cross(modulate(self.norm2(x), shift2, scale2), text, mask)
            else:
                x = x + self.cross(self.norm2(x), text, mask)
        x = x + gate3[:, None] * self.mlp(modulate(self.norm3(x), shift3, scale3))
        return x


class TextTransformer(nn.Module):
    """A small trainable transformer over the projected text states (B, T, D), pre-norm, masked: the frozen
    encoder's states are re-read for what the image tokens need (which word binds to which object)."""

    def __init__(self, dim: int, heads: int, layers: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.blocks = nn.ModuleList(nn.ModuleDict(dict(
            norm1=nn.LayerNorm(dim, eps=1e-6), attn=SelfAttention(dim, heads), norm2=nn.LayerNorm(dim, eps=1e-6),
            mlp=nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(approximate="tanh"),
                              nn.Linear(int(dim * mlp_ratio), dim)))) for _ in range(layers))

    def forward(self, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T, D), (B, T) bool
        for block in self.blocks:
            text = text + block["attn"](block["norm1"](text), mask=mask)
            text = text + block["mlp"](block["norm2"](text))
        return text


#################################################################################
#                         Convolutional stages                                  #
#################################################################################

class ResBlock(nn.Module):
    """Pre-norm residual conv block; the conditioning vector sets a scale and shift after the second norm
    (as in ADM/UNets). The last conv is zero-initialised, so a fresh block is the identity."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.cond = nn.Linear(cond_dim, 2 * out_channels)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:  # x (B, C, H, W), cond (B, Dc)
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C', H, W)
        scale, shift = self.cond(F.silu(cond)).chunk(2, dim=-1)  # (B, C') each
        h = self.norm2(h) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class PatchConv2d(nn.Conv2d):
    """The patchify conv (kernel = stride = patch): (B, C, R, R) -> (B, C', R/p, R/p). On a CPU in bfloat16 (under
    autocast or with bfloat16 weights) it computes in float32: oneDNN's bfloat16 kernel for kernel = stride
    convolutions (torch 2.13, seen on an AMX Xeon, e.g. 16 -> 64 channels with 4 x 4 patches) returns values
    unrelated to the input (relative error ~1), while 3x3, strided 3x3 and 1x1 convs are right to bfloat16's
    precision. A core trained through the broken kernel learned nothing a float32 forward could use.
    Same parameters as nn.Conv2d, so saved weights load unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and (x.dtype == torch.bfloat16 or torch.is_autocast_enabled("cpu")):
            with torch.autocast("cpu", enabled=False):
                bias = None if self.bias is None else self.bias.float()
                out = F.conv2d(x.float(), self.weight.float(), bias, self.stride, self.padding)
            return out.to(x.dtype) if x.dtype == torch.bfloat16 else out
        return super().forward(x)


class Downsample(nn.Module):
    """2x down with a strided 3x3 conv (changes channels)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C', H/2, W/2)
        return self.conv(x)


class Upsample(nn.Module):
    """2x nearest-neighbour up, then a 3x3 conv (no checkerboard artefacts)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C', 2H, 2W)
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2D sine-cosine position table (N, D), the initial value of the learned position embedding."""
    assert dim % 4 == 0, "core width must be divisible by 4"
    coords = torch.arange(grid, dtype=torch.float64)
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    parts = []
    for c in (yy.flatten(), xx.flatten()):
        angles = c[:, None] * omega[None]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()  # (G*G, D)
