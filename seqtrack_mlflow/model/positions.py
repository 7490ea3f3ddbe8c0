"""Fixed sin/cos position tables: the 1-D one of the official decoder memory and the 2-D one of MAE.

Pure functions of (length or grid, width), float32 rows in token order (row-major, as `PatchEmbed`).
"""

from __future__ import annotations

import torch
from torch import Tensor


def sinusoid_table(length: int, dim: int) -> Tensor:
    """The 1-D sin/cos table of the official `get_sinusoid_encoding_table` (even dims sin, odd cos)."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    exponent = 2 * (torch.arange(dim) // 2).to(torch.float64) / dim
    angles = position / torch.pow(10000.0, exponent)[None, :]
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.to(torch.float32)


def sincos_2d(grid: int, dim: int) -> Tensor:
    """MAE's `get_2d_sincos_pos_embed` for a grid x grid patch grid -> (grid * grid, dim).

    The first half of the width encodes the column, the second the row; each half is [sin | cos] of
    the position times dim / 4 frequencies from 1 down to 1 / 10000. It is the table the official
    encoder starts from (MAE's weights carry it), which a from-scratch encoder would otherwise learn.
    """
    if dim % 4:
        raise ValueError(f"a 2-D sin/cos table needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij"
    )

    def encode(position: Tensor) -> Tensor:
        angles = position.reshape(-1, 1) * omega[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).to(torch.float32)


__all__ = ["sincos_2d", "sinusoid_table"]
