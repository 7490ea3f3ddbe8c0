"""The SeqTrack encoder: a plain ViT with joint attention over [search, template_1, template_2].

Faithful to the official encoder (paper Sec. 3, official code): one shared patch embedding, one search
positional table and ONE template table shared by every template, no cls token, no token-type
embedding, timm ViT blocks (qkv bias, LayerNorm eps 1e-6, no dropout, no drop path), final LayerNorm.
Only the patch size is a parameter here (16 in every official preset).
"""

from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from ..config import ModelConfig
from .positions import sincos_2d


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> dim, for any image size divisible by p (templates and search)."""

    def __init__(self, patch_size: int, dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, H/p * W/p, dim), row-major like timm (so pretrained tables line up)."""
        return self.proj(images).flatten(2).transpose(1, 2)


class ViTEncoder(nn.Module):
    """Joint ViT over the search tokens followed by every template's tokens."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        dim = cfg.encoder_dim
        self.cfg = cfg
        self.num_search = cfg.search_grid**2
        self.num_template = cfg.template_grid**2
        self.patch_embed = PatchEmbed(cfg.patch_size, dim)
        self.pos_embed_search = nn.Parameter(torch.zeros(1, self.num_search, dim))
        self.pos_embed_template = nn.Parameter(torch.zeros(1, self.num_template, dim))
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(dim, cfg.encoder_heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(cfg.encoder_depth)
        )
        for block in self.blocks:
            # timm decides from TIMM_FUSED_ATTN; the token counts here need the fused kernel.
            block.attn.fused_attn = True
        self.norm = norm_layer(dim)
        self._init_weights()

    def _init_weights(self) -> None:
        """The official from-scratch init (pretrained weights overwrite most of it); with
        `position_init=sincos` the position tables start as MAE's 2-D sin/cos instead, the values the
        official encoder starts from, so a from-scratch model need not learn where its patches are."""
        if self.cfg.position_init == "sincos":
            with torch.no_grad():
                self.pos_embed_search.copy_(sincos_2d(self.cfg.search_grid, self.cfg.encoder_dim)[None])
                self.pos_embed_template.copy_(sincos_2d(self.cfg.template_grid, self.cfg.encoder_dim)[None])
        else:
            nn.init.trunc_normal_(self.pos_embed_search, std=0.02)
            nn.init.trunc_normal_(self.pos_embed_template, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def embed(self, templates: Tensor, search: Tensor) -> Tensor:
        """Patch tokens plus positions, concatenated once: (B, Ns + nt * Nt, dim)."""
        batch, num_templates = templates.shape[:2]
        z = self.patch_embed(templates.flatten(0, 1)) + self.pos_embed_template
        x = self.patch_embed(search) + self.pos_embed_search
        return torch.cat([x, z.reshape(batch, num_templates * self.num_template, -1)], dim=1)

    def forward(self, templates: Tensor, search: Tensor) -> Tensor:
        """templates (B, nt, 3, T, T), search (B, 3, S, S) -> last-layer search tokens (B, Ns, dim)."""
        self._check_sizes(templates, search)
        tokens = self.embed(templates, search)
        for block in self.blocks:
            tokens = block(tokens)
        # LayerNorm is per token: normalising only the search tokens gives the same memory.
        return self.norm(tokens[:, : self.num_search])

    def _check_sizes(self, templates: Tensor, search: Tensor) -> None:
        t, s = self.cfg.template_size, self.cfg.search_size
        if templates.dim() != 5 or tuple(templates.shape[-3:]) != (3, t, t):
            raise ValueError(f"templates must be (B, n, 3, {t}, {t}), got {tuple(templates.shape)}")
        if search.dim() != 4 or tuple(search.shape[-3:]) != (3, s, s):
            raise ValueError(f"search must be (B, 3, {s}, {s}), got {tuple(search.shape)}")


__all__ = ["PatchEmbed", "ViTEncoder"]
