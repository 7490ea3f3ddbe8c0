"""The SeqTrack model: official sizes, real patch size, decoding, loss, training, checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqtrack_mlflow.config import ConfigError, ModelConfig, preset
from seqtrack_mlflow.model.factory import build_model
from seqtrack_mlflow.model.seqtrack import (
    SeqTrack,
    count_parameters,
    logging_iou,
    sequence_loss,
)
from seqtrack_mlflow.model.tokens import box_to_tokens, hann_window, teacher_forcing

pytestmark = pytest.mark.usefixtures("one_thread")  # small ops on a shared 2-core machine


# Small but complete: every structural piece of SeqTrack, cheap on 2 CPU cores.
SMALL = ModelConfig(
    encoder_dim=32,
    encoder_depth=2,
    encoder_heads=2,
    template_size=32,
    search_size=48,
    patch_size=8,
    decoder_dim=32,
    decoder_heads=4,
    decoder_ffn=64,
    decoder_layers=2,
    bins=200,
)


def _inputs(cfg: ModelConfig, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t, s = cfg.template_size, cfg.search_size
    templates = torch.randn(batch, cfg.num_templates, 3, t, t, generator=g)
    search = torch.randn(batch, 3, s, s, generator=g)
    wh = torch.rand(batch, 2, generator=g) * s * 0.5 + 4
    xy = torch.rand(batch, 2, generator=g) * (s - 1 - wh)
    tokens = box_to_tokens(torch.cat([xy, wh], 1), s, cfg.bins)
    return templates, search, tokens


@pytest.mark.parametrize(
    ("name", "official"),
    [("b256", 90.60e6), ("b384", 91.2e6), ("l256", 308.2e6), ("l384", 308.98e6)],
)
def test_presets_match_official_parameter_counts(name: str, official: float) -> None:
    cfg, _ = preset(name)
    with torch.device("meta"):
        model = SeqTrack(cfg)
    assert abs(count_parameters(model) - official) / official < 1e-3
    assert cfg.num_tokens == (768 if cfg.search_size == 256 else 1728)


@pytest.mark.parametrize("patch", [16, 8, 4, 2, 1])
def test_patch_size_is_real(patch: int) -> None:
    cfg = ModelConfig(
        encoder_dim=16,
        encoder_depth=1,
        encoder_heads=2,
        template_size=16,
        search_size=32,
        patch_size=patch,
        decoder_dim=16,
        decoder_heads=2,
        decoder_ffn=32,
        decoder_layers=1,
        bins=30,
    )
    torch.manual_seed(0)
    model = SeqTrack(cfg).eval()
    assert model.encoder.patch_embed.proj.weight.shape == (16, 3, patch, patch)
    templates, search, tokens = _inputs(cfg, batch=2)
    with torch.no_grad():
        embedded = model.encoder.embed(templates, search)
        memory = model.encode(templates, search)
        logits = model(templates, search, teacher_forcing(tokens, cfg.bins)[0])
    assert embedded.shape == (2, cfg.num_tokens, 16)
    assert cfg.num_tokens == (32 // patch) ** 2 + 2 * (16 // patch) ** 2
    assert memory.shape == (2, (32 // patch) ** 2, 16)
    assert logits.shape == (2, 5, cfg.vocab_size)
    assert torch.isfinite(logits).all()


def test_patch_size_must_divide_the_crops() -> None:
    with pytest.raises(ConfigError, match="patch_size 3 does not divide"):
        SeqTrack(ModelConfig(encoder_dim=16, encoder_depth=1, encoder_heads=2, patch_size=3))


def test_search_and_template_tokens_all_reach_the_memory() -> None:
    """Joint attention: changing a template changes the search memory; the order is [search, templates]."""
    torch.manual_seed(0)
    model = SeqTrack(SMALL).eval()
    templates, search, _ = _inputs(SMALL, batch=1)
    with torch.no_grad():
        base = model.encode(templates, search)
        other = templates.clone()
        other[:, 1] = 0
        assert not torch.allclose(model.encode(other, search), base)
        # The two templates share one positional table: swapping them leaves the memory unchanged.
        swapped = model.encode(templates.flip(1), search)
    assert torch.allclose(swapped, base, atol=1e-5)


@pytest.mark.parametrize("use_window", [False, True])
def test_cached_decoding_matches_full_prefix_decoding(use_window: bool) -> None:
    torch.manual_seed(1)
    model = SeqTrack(SMALL).eval()
    templates, search, _ = _inputs(SMALL, batch=3, seed=3)
    window = hann_window(SMALL.bins) if use_window else None
    with torch.no_grad():
        memory = model.encode(templates, search)
    tokens, probs = model.decode_greedy(memory, window=window, use_cache=True)
    ref_tokens, ref_probs = model.decode_greedy(memory, window=window, use_cache=False)
    assert tokens.shape == probs.shape == (3, 4)
    assert tokens.dtype == torch.long
    assert torch.equal(tokens, ref_tokens)
    assert torch.allclose(probs, ref_probs, atol=1e-5)
    assert int(tokens.min()) >= 0 and int(tokens.max()) < SMALL.bins
    if not use_window:
        # Greedy decoding agrees with the teacher-forced pass fed its own tokens.
        with torch.no_grad():
            logits = model.decode(memory, teacher_forcing(tokens, SMALL.bins)[0])
        coord = logits[:, :4, : SMALL.bins]
        assert torch.equal(coord.argmax(-1), tokens)
        # Official confidence: softmax over the whole vocabulary, restricted to the bins.
        full = logits[:, :4].softmax(-1)[..., : SMALL.bins]
        assert torch.allclose(full.amax(-1), probs, atol=1e-5)


def test_window_steers_only_the_centre_and_confidences_are_windowed() -> None:
    torch.manual_seed(2)
    model = SeqTrack(SMALL).eval()
    templates, search, _ = _inputs(SMALL, batch=2, seed=4)
    with torch.no_grad():
        memory = model.encode(templates, search)
    window = torch.zeros(SMALL.bins)
    window[17] = 0.5  # only bin 17 survives the penalty
    tokens, probs = model.decode_greedy(memory, window=window)
    assert (tokens[:, :2] == 17).all()
    with torch.no_grad():
        logits = model.decode(memory, teacher_forcing(tokens, SMALL.bins)[0])
    p = logits[:, :4].softmax(-1)[..., : SMALL.bins]  # official: whole-vocabulary softmax
    chosen = p.gather(-1, tokens[..., None]).squeeze(-1)
    # As the official tracker: cx and cy confidences are the windowed values, w and h plain.
    assert torch.allclose(probs, chosen * torch.tensor([0.5, 0.5, 1.0, 1.0]), atol=1e-6)
    assert torch.equal(tokens[:, 2:], p[:, 2:].argmax(-1))  # w, h: no window


def test_sequence_loss_weights_start_and_end_at_one_percent() -> None:
    bins = 10
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, bins + 2, generator=g)
    target = torch.tensor([[1, 2, 3, 4, bins], [5, 6, 7, 8, bins], [9, 0, bins + 1, 1, bins]])
    per_token = F.cross_entropy(logits.reshape(-1, bins + 2), target.reshape(-1), reduction="none")
    weight = torch.where(target.reshape(-1) >= bins, 0.01, 1.0)
    expected = (per_token * weight).sum() / weight.sum()
    assert torch.allclose(sequence_loss(logits, target, bins), expected, atol=1e-6)


def test_logging_iou_reads_top1_tokens_as_cxcywh() -> None:
    bins = 200
    target = torch.tensor([[50, 50, 20, 20, bins], [100, 100, 40, 10, bins]])
    pred = torch.tensor([[60, 50, 20, 20, bins], [100, 100, 40, 10, bins]])  # 1/3 overlap, exact
    logits = F.one_hot(pred, bins + 2).float() * 5
    logits[..., bins:] = 50.0  # special tokens are ignored even when they dominate
    iou = logging_iou(logits, target, bins)
    assert torch.allclose(iou, torch.tensor((1 / 3 + 1.0) / 2), atol=1e-6)


def test_param_groups_split_encoder_and_rest() -> None:
    model = SeqTrack(SMALL)
    groups = model.param_groups(lr=1e-4, encoder_lr_mult=0.1, weight_decay=1e-4)
    by_name = {g["name"]: g for g in groups}
    assert by_name["encoder"]["lr"] == pytest.approx(1e-5)
    assert by_name["decoder"]["lr"] == pytest.approx(1e-4)
    assert all(g["weight_decay"] == 1e-4 for g in groups)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in model.encoder.parameters()} == {id(p) for p in by_name["encoder"]["params"]}
    torch.optim.AdamW(groups)  # accepted as is


def test_tiny_preset_overfits_one_batch() -> None:
    cfg, _ = preset("tiny")
    torch.manual_seed(0)
    model = SeqTrack(cfg).train()  # dropout stays on
    templates, search, tokens = _inputs(cfg, batch=4)
    inp, tgt = teacher_forcing(tokens, cfg.bins)
    opt = torch.optim.AdamW(model.param_groups(1e-3, 1.0, 1e-4))
    losses = []
    for _ in range(40):
        loss = sequence_loss(model(templates, search, inp), tgt, cfg.bins)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if losses[-1] <= losses[0] / 2:
            break
    assert losses[-1] <= losses[0] / 2, losses


def test_state_dict_round_trip_with_weights_only(tmp_path) -> None:
    cfg, _ = preset("tiny")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    fresh = SeqTrack(cfg).eval()
    fresh.load_state_dict(torch.load(path, weights_only=True))
    templates, search, tokens = _inputs(cfg, batch=2)
    inp, _ = teacher_forcing(tokens, cfg.bins)
    with torch.no_grad():
        assert torch.equal(model(templates, search, inp), fresh(templates, search, inp))
        memory = model.encode(templates, search)
    assert torch.equal(model.decode_greedy(memory)[0], fresh.decode_greedy(memory)[0])


def test_wrong_image_size_is_a_clear_error() -> None:
    model = SeqTrack(SMALL)
    templates, search, tokens = _inputs(SMALL, batch=1)
    with pytest.raises(ValueError, match="search must be"):
        model(templates, search[..., :-8, :-8], teacher_forcing(tokens, SMALL.bins)[0])
