"""The `peer` section: diffusers' UNet2DConditionModel with our core's parameter count, trained through the
same step on the same batch, so the ratio of images/s compares architectures and nothing else."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from studio.bench.context import Run, jsonable
from studio.bench.flops import training_flops
from studio.bench.models import parameter_counts
from studio.bench.train import train_benchmark


class PeerUNet(nn.Module):
    """diffusers' UNet2DConditionModel behind our forward signature, so the same loss and step drive it.
    The noise level (logSNR) goes in as the timestep (sinusoidal embedding), the text token states as
    `encoder_hidden_states` with their padding mask; the pooled vector is not used (the UNet has no input
    for it without an added embedding)."""

    def __init__(self, unet: nn.Module, resolution: int):
        super().__init__()
        self.unet = unet
        self.resolution = self.schedule_reference_resolution = resolution

    def forward(self, sample, logsnr, text_tokens, text_mask, text_pooled):
        return self.unet(sample, logsnr, encoder_hidden_states=text_tokens, encoder_attention_mask=text_mask,
                         return_dict=False)[0]


def peer_unet_config(resolution: int, grid: int, base: int, multipliers: Sequence[int], layers: int,
                     heads: int, text_dim: int = 384) -> dict:
    """An SD-style UNet with one level per resolution from R down to the core grid G; cross-attention
    (transformer) blocks only at the G x G level and in the middle block, i.e. on the same token grid as our
    core (with layers_per_block = 2 that is 2 + 1 + 3 = 6 transformer blocks, our depth)."""
    levels = int(math.log2(resolution // grid)) + 1
    channels = tuple(int(base * m) for m in multipliers)
    down = tuple("CrossAttnDownBlock2D" if resolution // 2 ** i <= grid else "DownBlock2D" for i in range(levels))
    up = tuple("CrossAttnUpBlock2D" if d.startswith("CrossAttn") else "UpBlock2D" for d in reversed(down))
    return dict(sample_size=resolution, in_channels=3, out_channels=3, down_block_types=down, up_block_types=up,
                block_out_channels=channels, layers_per_block=layers, cross_attention_dim=text_dim,
                attention_head_dim=heads, norm_num_groups=math.gcd(32, base))


_PARAM_CACHE: dict[str, int] = {}


def _unet_params(cfg: dict) -> int:
    key = repr(sorted(cfg.items()))
    if key not in _PARAM_CACHE:
        with torch.device("meta"):
            unet = UNet2DConditionModel(**cfg)
        _PARAM_CACHE[key] = sum(p.numel() for p in unet.parameters())
    return _PARAM_CACHE[key]


def transformer_blocks(cfg: dict) -> int:
    """Transformer (self + cross attention) blocks of a UNet config: per attention level layers_per_block
    down and layers_per_block + 1 up, plus the middle block."""
    attn = sum(t.startswith("CrossAttn") for t in cfg["down_block_types"])
    return attn * cfg["layers_per_block"] + 1 + attn * (cfg["layers_per_block"] + 1)


def _smallest_base(target_params: int, resolution: int, grid: int, mult: tuple, layers: int, heads: int) -> int:
    """The smallest k with base width 4 k whose UNet reaches `target_params` (params grow with k: double k
    until it is enough, then bisect)."""
    def count(k: int) -> int:
        return _unet_params(peer_unet_config(resolution, grid, 4 * k, mult, layers, heads))

    hi = 1
    while hi < 512 and count(hi) < target_params:
        hi *= 2
    lo = max(1, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if count(mid) < target_params:
            lo = mid + 1
        else:
            hi = mid
    return lo


def match_peer(target_params: int, resolution: int, grid: int, heads: int, depth: int | None = None,
               tolerance: float = 0.10) -> dict:
    """Search base width (multiples of 4: at ~3M parameters a step of 8 channels moves the count by ~25%),
    channel multipliers and layers_per_block for a UNet with
    `target_params` parameters (counted on the meta device: no memory, no init cost). Among the candidates
    within `tolerance`, the one whose number of transformer blocks is closest to our `depth` wins, then the
    one closest in parameters."""
    levels = int(math.log2(resolution // grid)) + 1
    patterns = [tuple(min(2 ** i, 2) for i in range(levels)), tuple(min(2 ** i, 4) for i in range(levels))]
    patterns = list(dict.fromkeys(patterns))
    tried = []
    for mult in patterns:
        for layers in (1, 2):
            lo = _smallest_base(target_params, resolution, grid, mult, layers, heads)
            for k in sorted({max(1, lo - 1), lo}):
                cfg = peer_unet_config(resolution, grid, 4 * k, mult, layers, heads)
                params = _unet_params(cfg)
                entry = dict(base=4 * k, multipliers=list(mult), layers_per_block=layers, params=params,
                             ratio=params / target_params, transformer_blocks=transformer_blocks(cfg))
                tried.append((cfg, entry))

    def rank(item):
        entry = item[1]
        off = abs(entry["ratio"] - 1)
        return (off > tolerance, abs(entry["transformer_blocks"] - (depth or 0)) if depth else 0, off)

    cfg, entry = min(tried, key=rank)
    tried = [e for _, e in tried]
    return dict(config=cfg, params=entry["params"], target_params=target_params, ratio=entry["ratio"],
                transformer_blocks=entry["transformer_blocks"], our_depth=depth,
                within_tolerance=abs(entry["ratio"] - 1) <= tolerance, tolerance=tolerance, candidates=tried)


def build_peer(target_params: int, resolution: int, grid: int, heads: int, depth: int | None = None,
               seed: int = 0) -> tuple[PeerUNet, dict]:
    match = match_peer(target_params, resolution, grid, heads, depth)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**match["config"])
    return PeerUNet(unet, resolution), match


def peer_of(run: Run) -> tuple[PeerUNet, dict]:
    """The peer of this run's core (same parameter count, our depth in transformer blocks)."""
    target = parameter_counts(run.core)["params"]
    return build_peer(target, run.core_res, run.grid, int(run.core.config.heads), int(run.core.config.depth),
                      run.config.seed)


def run_peer(run: Run) -> None:
    """Our core and the peer through the same training step at every precision (our rows reused from the
    `train` section when it ran)."""
    config = run.config
    run.log("peer: matching UNet2DConditionModel")
    run.peer, match = peer_of(run)
    peer_flops = training_flops(run.peer, run.core_res, config.text_tokens)
    ours_flops = run.flops["core"]["flops_per_image"]
    rows = []
    for precision in config.precisions:
        ours = run.train_row("core", precision)
        if ours is None:
            run.log(f"peer: our core {precision}")
            ours = train_benchmark("core", copy.deepcopy(run.core).to(run.device), run.core_res,
                                   config.train_batch_core, precision, config, flops_per_image=ours_flops,
                                   peaks=run.peaks)
        run.log(f"peer: UNet {precision}")
        theirs = train_benchmark("peer-unet", copy.deepcopy(run.peer).to(run.device), run.core_res,
                                 config.train_batch_core, precision, config,
                                 flops_per_image=peer_flops["flops_per_image"], peaks=run.peaks)
        rows.append(dict(precision=precision, ours_images_per_s=ours["images_per_s"],
                         peer_images_per_s=theirs["images_per_s"],
                         ratio=ours["images_per_s"] / theirs["images_per_s"], ours=ours, peer=theirs))
    run.result["peer"] = dict(match=jsonable(match), flops=peer_flops, ours_params=parameter_counts(run.core)["params"],
                              rows=rows, ours_flops_per_image=ours_flops,
                              note="the peer ignores the pooled text vector (no input for it)")
