"""Position tables: MAE's 2-D sin/cos layout, and which init a from-scratch encoder gets."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from seqtrack_mlflow.config import ConfigError, ModelConfig, preset
from seqtrack_mlflow.model.encoder import ViTEncoder
from seqtrack_mlflow.model.positions import sincos_2d

TINY = ModelConfig(
    encoder_dim=16, encoder_depth=1, encoder_heads=2, template_size=32, search_size=48, patch_size=16
)


def test_sincos_2d_is_maes_layout_row_major_columns_first() -> None:
    """MAE's get_2d_sincos_pos_embed: tokens row-major; width [sin, cos](column), then [sin, cos](row),
    frequencies 1 / 10000 ** (k / (dim / 4)). Pretrained MAE tables and this one must line up."""
    grid, dim = 3, 8
    table = sincos_2d(grid, dim).double()
    omega = torch.tensor([1.0, 1.0 / 100.0], dtype=torch.float64)  # dim / 4 = 2 frequencies
    for row in range(grid):
        for col in range(grid):
            column, row_part = col * omega, row * omega
            expected = torch.cat([column.sin(), column.cos(), row_part.sin(), row_part.cos()])
            assert torch.allclose(table[row * grid + col], expected, atol=1e-7), (row, col)
    assert sincos_2d(grid, dim).dtype == torch.float32
    assert math.isclose(float(table[1, 0]), math.sin(1.0), rel_tol=1e-7)  # token 1 = row 0, column 1
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(2, 6)


def test_from_scratch_encoder_starts_from_the_chosen_position_tables() -> None:
    torch.manual_seed(0)
    official = ViTEncoder(TINY)  # trunc_normal(0.02): the official from-scratch init
    assert 0.01 < float(official.pos_embed_search.detach().std()) < 0.03
    mae = ViTEncoder(dataclasses.replace(TINY, position_init="sincos"))
    assert torch.equal(mae.pos_embed_search[0], sincos_2d(3, 16))
    assert torch.equal(mae.pos_embed_template[0], sincos_2d(2, 16))
    assert mae.pos_embed_search.requires_grad  # a starting point, trained like the official tables


def test_the_tiny_preset_starts_from_sincos_and_bad_values_are_refused() -> None:
    model, _ = preset("tiny")
    assert model.position_init == "sincos"
    assert preset("b256")[0].position_init == "trunc_normal"  # MAE's weights bring their own table
    with pytest.raises(ConfigError, match="position_init=zeros is invalid: use trunc_normal or sincos"):
        dataclasses.replace(TINY, position_init="zeros").validate()
