"""The core: the deep transformer that learns text-image alignment on a G x G token grid.

Exactly the tensors of this module are carried from the Shallow-UViT into every grown model and frozen
there: position embedding, in/out projections, text projection (and, where configured, the text position
embedding and the trainable text transformer), the noise-level and pooled-text embedders, and the
transformer blocks.

Text pathway options (every default is the original core, so older folders load as they were trained):
- `text_layers` > 0: a small trainable transformer re-reads the frozen encoder's projected token states;
- `text_positions` > 0: a learned position embedding on the text tokens (up to that many), so a head can
  match "left"/"right" against the image tokens' positions by where words stand in the caption;
- `joint_attention`: the text tokens join the self-attention instead of a separate cross-attention;
- `cross_attention_gate=False`: the cross-attention is added without adaLN modulation and gate.
"""

from __future__ import annotations

import torch
from torch import nn

from studio.models.layers import (LogSNREmbedder, PooledTextEmbedder, TextTransformer, TransformerBlock, modulate,
                                  sincos_2d)


class Core(nn.Module):
    def __init__(self, channels: int, grid: int, width: int, depth: int, heads: int,
                 mlp_ratio: float = 4.0, text_dim: int = 384, text_layers: int = 0, text_positions: int = 0,
                 joint_attention: bool = False, cross_attention_gate: bool = True):
        super().__init__()
        self.grid = grid
        self.in_proj = nn.Linear(channels, width)  # 1x1 projection C -> D
        self.pos_embed = nn.Parameter(sincos_2d(grid, width)[None])  # (1, N, D), learned, sincos init
        self.text_proj = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, width))
        self.text_pos_embed = nn.Parameter(torch.zeros(1, text_positions, width)) if text_positions else None
        self.text_transformer = TextTransformer(width, heads, text_layers, mlp_ratio) if text_layers else None
        self.logsnr_embed = LogSNREmbedder(width)
        self.text_pool_embed = PooledTextEmbedder(text_dim, width)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, mlp_ratio, joint_attention, cross_attention_gate)
                                    for _ in range(depth))
        self.norm_out = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.adaLN_out = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out_proj = nn.Linear(width, channels)  # projection back D -> C
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for block in self.blocks:  # adaLN-Zero: every block starts as the identity
            nn.init.zeros_(block.adaLN[-1].weight)
            nn.init.zeros_(block.adaLN[-1].bias)
        nn.init.zeros_(self.adaLN_out[-1].weight)
        nn.init.zeros_(self.adaLN_out[-1].bias)
        nn.init.normal_(self.logsnr_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.logsnr_embed.mlp[2].weight, std=0.02)
        if self.text_pos_embed is not None:
            nn.init.normal_(self.text_pos_embed, std=0.02)

    def text_pathway(self) -> list[nn.Module | nn.Parameter]:
        """What reads the text encoder's output before the blocks do: the text projection, the text position
        embedding and transformer (where configured) and the pooled-text embedder (`train_only: text`)."""
        parts = [self.text_proj, self.text_pos_embed, self.text_transformer, self.text_pool_embed]
        return [p for p in parts if p is not None]

    def condition(self, logsnr: torch.Tensor, text_tokens: torch.Tensor, text_pooled: torch.Tensor,
                  text_mask: torch.Tensor | None = None):
        """Noise level + pooled text -> cond (B, D); text states (B, T, 384) -> (B, T, D).
        The convolutional stages around the core reuse `cond` through their own projections."""
        cond = self.logsnr_embed(logsnr) + self.text_pool_embed(text_pooled)  # (B, D)
        text = self.text_proj(text_tokens)  # (B, T, D)
        if self.text_pos_embed is not None:
            T = min(text.shape[1], self.text_pos_embed.shape[1])  # tokens past the table get no position
            text = torch.cat([text[:, :T] + self.text_pos_embed[:, :T], text[:, T:]], dim=1)
        if self.text_transformer is not None:
            text = self.text_transformer(text, text_mask)
        return cond, text

    def forward(self, h: torch.Tensor, cond: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, C, G, _ = h.shape  # h (B, C, G, G), cond (B, D), text (B, T, D), mask (B, T) bool
        x = self.in_proj(h.flatten(2).transpose(1, 2)) + self.pos_embed  # (B, N, D)
        for block in self.blocks:
            x = block(x, cond, text, mask)  # (B, N, D)
        shift, scale = self.adaLN_out(cond).chunk(2, dim=-1)
        x = self.out_proj(modulate(self.norm_out(x), shift, scale))  # (B, N, C)
        return x.transpose(1, 2).reshape(B, C, G, G)
