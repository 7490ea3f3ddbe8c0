"""Encoder-to-decoder bridge and the causal box-token decoder.

Faithful to the official DETR-style decoder (paper Sec. 3, official code): post-norm layers of causal
self-attention -> cross-attention -> ReLU FFN, dropout 0.1, a learned query position embedding added
to q/k of self-attention and q of cross-attention, memory positions added to the cross-attention keys
only, final LayerNorm. Attention is written over F.scaled_dot_product_attention (fused kernels) and
keeps nn.MultiheadAttention's parameter layout (packed in_proj_weight/in_proj_bias + out_proj, so
the xavier init matches the official one). It adds what the official code lacks: a key/value cache
for greedy decoding (per-layer self-attention K/V, memory K/V computed once).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .positions import sinusoid_table


class MemoryBridge(nn.Module):
    """Search tokens (B, Ns, encoder_dim) -> decoder memory (B, Ns, decoder_dim), plus memory positions.

    The positional table starts as a sinusoid and is trainable, as in the official model.
    """

    def __init__(self, encoder_dim: int, decoder_dim: int, num_search_tokens: int) -> None:
        super().__init__()
        self.proj = nn.Linear(encoder_dim, decoder_dim)
        self.pos = nn.Parameter(sinusoid_table(num_search_tokens, decoder_dim))

    def forward(self, search_tokens: Tensor) -> Tensor:
        return self.proj(search_tokens)


class Attention(nn.Module):
    """Multi-head attention over SDPA with nn.MultiheadAttention's parameters (q, k, v packed)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"decoder_dim {dim} is not a multiple of decoder_heads {heads}")
        self.dim, self.heads, self.dropout = dim, heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def project(self, x: Tensor, first: int, count: int = 1) -> Tensor:
        """Apply `count` consecutive projections (0 = q, 1 = k, 2 = v) starting at `first`.

        Returns (B, heads, L, head_dim) for count 1, else (count, B, heads, L, head_dim).
        """
        rows = slice(first * self.dim, (first + count) * self.dim)
        y = F.linear(x, self.in_proj_weight[rows], self.in_proj_bias[rows])
        batch, length = x.shape[:2]
        y = y.view(batch, length, count, self.heads, self.dim // self.heads).permute(2, 0, 3, 1, 4)
        return y[0] if count == 1 else y

    def attend(self, q: Tensor, k: Tensor, v: Tensor, is_causal: bool = False) -> Tensor:
        """(B, heads, Lq, hd) x (B, heads, Lk, hd) -> (B, Lq, dim) after the output projection."""
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=is_causal)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class DecoderLayer(nn.Module):
    """Post-norm: causal self-attention -> cross-attention -> FFN, each with residual + LayerNorm."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = Attention(dim, heads, dropout)
        self.cross_attn = Attention(dim, heads, dropout)
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)  # shared: dropout modules hold no state

    def memory_kv(self, memory: Tensor, memory_pos: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention keys (memory + positions) and values (memory), once per search image."""
        return self.cross_attn.project(memory + memory_pos, 1), self.cross_attn.project(memory, 2)

    def forward(
        self,
        x: Tensor,
        query_pos: Tensor,
        memory_kv: tuple[Tensor, Tensor],
        cache: tuple[Tensor, Tensor] | None = None,
        step: int = 0,
    ) -> Tensor:
        """x (B, L, dim). Without cache: the whole prefix, causal. With cache: x is the token at
        position `step` (L = 1); its K/V are written into the cache and it attends to 0..step.
        """
        q, k = self.self_attn.project(x + query_pos, 0, 2)
        v = self.self_attn.project(x, 2)
        if cache is None:
            attn = self.self_attn.attend(q, k, v, is_causal=True)
        else:
            cache_k, cache_v = cache
            cache_k[:, :, step : step + 1] = k
            cache_v[:, :, step : step + 1] = v
            attn = self.self_attn.attend(q, cache_k[:, :, : step + 1], cache_v[:, :, : step + 1])
        return self._after_self_attention(x, attn, query_pos, memory_kv)

    def step_with_past(
        self, x: Tensor, query_pos: Tensor, memory_kv: tuple[Tensor, Tensor], past: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """The cached step with a growing cache instead of a buffer written in place: x (B, 1, dim) is
        the token after the `past` K/V (B, heads, P, hd); returns its output and the K/V of all P + 1
        tokens. What the ONNX decoder graph runs (no in-place writes, P may be 0); same arithmetic."""
        q, k = self.self_attn.project(x + query_pos, 0, 2)
        v = self.self_attn.project(x, 2)
        k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        attn = self.self_attn.attend(q, k, v)
        return self._after_self_attention(x, attn, query_pos, memory_kv), (k, v)

    def _after_self_attention(
        self, x: Tensor, attn: Tensor, query_pos: Tensor, memory_kv: tuple[Tensor, Tensor]
    ) -> Tensor:
        """Residual + norm, cross-attention to the memory, FFN: the rest of the layer."""
        x = self.norm1(x + self.dropout(attn))
        q = self.cross_attn.project(x + query_pos, 0)
        x = self.norm2(x + self.dropout(self.cross_attn.attend(q, *memory_kv)))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm3(x + self.dropout(ffn))


class BoxDecoder(nn.Module):
    """Token embedding -> N decoder layers -> final LayerNorm; hidden states (B, L, dim)."""

    def __init__(
        self, vocab_size: int, dim: int, heads: int, ffn: int, layers: int, dropout: float, max_len: int = 5
    ) -> None:
        super().__init__()
        self.dim, self.heads, self.max_len = dim, heads, max_len
        self.word_embeddings = nn.Embedding(vocab_size, dim)
        self.embed_norm = nn.LayerNorm(dim)
        self.embed_dropout = nn.Dropout(dropout)
        self.query_pos = nn.Embedding(max_len, dim)
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, ffn, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        for p in self.parameters():  # the official init: xavier on every matrix of the decoder
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def embed(self, tokens: Tensor) -> Tensor:
        return self.embed_dropout(self.embed_norm(self.word_embeddings(tokens)))

    def memory_kv(self, memory: Tensor, memory_pos: Tensor) -> list[tuple[Tensor, Tensor]]:
        return [layer.memory_kv(memory, memory_pos) for layer in self.layers]

    def forward(self, tokens: Tensor, memory: Tensor, memory_pos: Tensor) -> Tensor:
        """Teacher-forced (or full-prefix) pass: tokens (B, L <= max_len) -> (B, L, dim)."""
        length = tokens.shape[1]
        if length > self.max_len:
            raise ValueError(f"decoder input has {length} tokens, at most {self.max_len} are supported")
        x = self.embed(tokens)
        query_pos = self.query_pos.weight[:length]
        for layer, kv in zip(self.layers, self.memory_kv(memory, memory_pos), strict=True):
            x = layer(x, query_pos, kv)
        return self.norm(x)

    def new_cache(self, batch: int, like: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per-layer self-attention K/V buffers (B, heads, max_len, head_dim), filled step by step."""
        shape = (batch, self.heads, self.max_len, self.dim // self.heads)
        return [(like.new_empty(shape), like.new_empty(shape)) for _ in self.layers]

    def step(
        self,
        token: Tensor,
        position: int,
        memory_kv: list[tuple[Tensor, Tensor]],
        cache: list[tuple[Tensor, Tensor]],
    ) -> Tensor:
        """One incremental step: token (B, 1) at `position` -> hidden state (B, 1, dim)."""
        x = self.embed(token)
        query_pos = self.query_pos.weight[position : position + 1]
        for layer, kv, layer_cache in zip(self.layers, memory_kv, cache, strict=True):
            x = layer(x, query_pos, kv, layer_cache, position)
        return self.norm(x)

    def step_with_past(
        self, token: Tensor, memory_kv: list[tuple[Tensor, Tensor]], past: list[tuple[Tensor, Tensor]]
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """`step` with growing per-layer caches (`DecoderLayer.step_with_past`): the token's position is
        the cache length. Returns the hidden state (B, 1, dim) and the caches one token longer."""
        position = past[0][0].shape[2]
        x = self.embed(token)
        query_pos = self.query_pos.weight[position : position + 1]
        present = []
        for layer, kv, layer_past in zip(self.layers, memory_kv, past, strict=True):
            x, layer_present = layer.step_with_past(x, query_pos, kv, layer_past)
            present.append(layer_present)
        return self.norm(x), present


class MLP(nn.Module):
    """The output head: Linear layers with ReLU between (256 -> 256 -> 256 -> vocab officially)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 3) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [out_dim], strict=True))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


__all__ = ["Attention", "BoxDecoder", "DecoderLayer", "MLP", "MemoryBridge"]
