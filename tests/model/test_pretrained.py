"""Encoder initialisation from timm-ViT weights (local files only; the network is never used)."""

from __future__ import annotations

import socket

import pytest
import torch
from timm.layers import resample_patch_embed
from timm.models.vision_transformer import VisionTransformer

from seqtrack_mlflow.config import ModelConfig
from seqtrack_mlflow.model.encoder import ViTEncoder
from seqtrack_mlflow.model.factory import build_model
from seqtrack_mlflow.model.pretrained import PretrainedError, load_pretrained

WIDTH, DEPTH = 32, 2
_FIX = "use -P pretrained=none to train from scratch, or -P pretrained=/path/to/weights.pth"


def _cfg(**over) -> ModelConfig:
    base = dict(
        encoder_dim=WIDTH,
        encoder_depth=DEPTH,
        encoder_heads=2,
        patch_size=8,
        search_size=112,
        template_size=32,
        decoder_dim=32,
        decoder_heads=2,
        decoder_ffn=64,
        decoder_layers=1,
        bins=50,
    )
    return ModelConfig(**{**base, **over})


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    """A real (randomly initialised) timm ViT/16 at 224 px: pos_embed (1, 1 + 14 * 14, WIDTH) with cls."""
    torch.manual_seed(0)
    vit = VisionTransformer(
        img_size=224, patch_size=16, embed_dim=WIDTH, depth=DEPTH, num_heads=2, num_classes=0
    )
    sd = {k: v.clone() for k, v in vit.state_dict().items()}
    pos = torch.randn(1, 1 + 14 * 14, WIDTH)
    pos[..., 0] = 0.25  # channel 0 constant: interpolation must keep it constant
    pos[:, 0] = 99.0  # the cls entry, which must be dropped
    sd["pos_embed"] = pos
    return sd


def test_loads_timm_vit_into_patch8_encoder_with_other_grids(source, tmp_path) -> None:
    path = tmp_path / "vit.pth"
    torch.save(source, path)
    cfg = _cfg()  # search grid 14 (= source grid), template grid 4
    encoder = ViTEncoder(cfg)
    report = load_pretrained(encoder, str(path), cfg)
    sd = encoder.state_dict()

    assert sd["patch_embed.proj.weight"].shape == (WIDTH, 3, 8, 8)
    expected = resample_patch_embed(source["patch_embed.proj.weight"], [8, 8])
    assert torch.allclose(sd["patch_embed.proj.weight"], expected, atol=1e-6)
    assert torch.equal(sd["patch_embed.proj.bias"], source["patch_embed.proj.bias"])
    assert report.patch_resampled == (16, 8)

    # Same grid: the table is copied in row-major order, cls entry dropped.
    assert torch.equal(sd["pos_embed_search"], source["pos_embed"][:, 1:])
    # Other grid: interpolated from the source (constant channel stays constant, no cls leak).
    assert sd["pos_embed_template"].shape == (1, 16, WIDTH)
    assert torch.allclose(sd["pos_embed_template"][..., 0], torch.full((1, 16), 0.25), atol=1e-5)
    assert sd["pos_embed_template"].abs().max() < 20
    assert report.pos_grid == (14, 14, 4)

    for key, value in source.items():
        if key.startswith(("blocks.", "norm.")):
            assert torch.equal(sd[key], value), key
    assert report.missing == [] and report.unexpected == []


@pytest.mark.parametrize("fmt", ["model", "state_dict", "module_prefix", "safetensors"])
def test_accepts_common_checkpoint_layouts(source, tmp_path, fmt: str) -> None:
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "vit.safetensors"
        save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    else:
        path = tmp_path / "vit.bin"
        obj = {f"module.{k}": v for k, v in source.items()} if fmt == "module_prefix" else {fmt: source}
        torch.save(obj, path)
    cfg = _cfg(patch_size=16, search_size=64, template_size=64)
    encoder = ViTEncoder(cfg)
    load_pretrained(encoder, str(path), cfg)
    assert torch.equal(encoder.patch_embed.proj.weight, source["patch_embed.proj.weight"])
    assert torch.equal(encoder.blocks[1].mlp.fc2.weight, source["blocks.1.mlp.fc2.weight"])
    assert torch.allclose(encoder.pos_embed_search[..., 0], torch.tensor(0.25), atol=1e-5)


def test_build_model_loads_the_encoder_only(source, tmp_path) -> None:
    path = tmp_path / "vit.pt"
    torch.save(source, path)
    torch.manual_seed(0)
    model = build_model(_cfg(pretrained=str(path)))
    assert torch.equal(model.encoder.blocks[0].attn.qkv.weight, source["blocks.0.attn.qkv.weight"])
    assert model.pretrained_report is not None and model.pretrained_report.loaded > 0


def test_deeper_source_reports_unexpected_blocks(source, tmp_path) -> None:
    path = tmp_path / "vit.pth"
    torch.save(source, path)
    cfg = _cfg(encoder_depth=1)
    report = load_pretrained(ViTEncoder(cfg), str(path), cfg)
    assert report.unexpected and all(k.startswith("blocks.1.") for k in report.unexpected)


def test_width_mismatch_is_one_line_error(source, tmp_path) -> None:
    path = tmp_path / "vit.pth"
    torch.save(source, path)
    cfg = _cfg(encoder_dim=48)
    with pytest.raises(PretrainedError) as info:
        load_pretrained(ViTEncoder(cfg), str(path), cfg)
    message = str(info.value)
    assert "\n" not in message and "32 wide" in message and "48 wide" in message


def test_missing_file_and_unknown_name_are_one_line_errors(tmp_path) -> None:
    cfg = _cfg()
    with pytest.raises(PretrainedError, match="not found") as info:
        load_pretrained(ViTEncoder(cfg), str(tmp_path / "nope.pth"), cfg)
    assert "\n" not in str(info.value)
    with pytest.raises(PretrainedError, match="neither an existing file nor a timm model"):
        load_pretrained(ViTEncoder(cfg), "definitely_not_a_model_name", cfg)
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedError, match="cannot read"):
        load_pretrained(ViTEncoder(cfg), str(bad), cfg)


def test_offline_timm_download_is_one_line_error(monkeypatch, tmp_path) -> None:
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    name = "vit_tiny_patch16_224.augreg_in21k"
    cfg = _cfg(encoder_dim=192, encoder_heads=3, encoder_depth=1)
    with pytest.raises(PretrainedError) as info:
        load_pretrained(ViTEncoder(cfg), name, cfg)
    assert str(info.value) == f"cannot download pretrained weights '{name}' (offline?): {_FIX}"
