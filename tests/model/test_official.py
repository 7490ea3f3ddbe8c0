"""Official SeqTrack release files: read without running any of their code, mapped exactly to our model."""

from __future__ import annotations

import importlib.util
import os
import pickle
import shlex
import zipfile
from pathlib import Path

import pytest
import torch
from factories import STUB, official_container, official_training_code, tiny_model

from seqtrack_mlflow.config import ModelConfig, preset
from seqtrack_mlflow.model import torch_zip
from seqtrack_mlflow.model.factory import (
    is_official_checkpoint,
    official_preset_shapes,
    official_shapes,
    read_official,
)
from seqtrack_mlflow.model.official import (
    OFFICIAL_PRESETS,
    OfficialCheckpointError,
    from_official_state_dict,
    infer_preset,
    to_official_state_dict,
)
from seqtrack_mlflow.model.seqtrack import SeqTrack
from seqtrack_mlflow.model.torch_zip import InertObject, TorchZipError

pytestmark = pytest.mark.usefixtures("one_thread")  # small ops on a shared 2-core machine


def shape_only_net(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Tensors of the given shapes backed by one element each (stride 0): tiny files, any preset."""
    return {k: torch.zeros(()).expand(shape) for k, shape in shapes.items()}


def preset_model(name: str) -> ModelConfig:
    return preset(name)[0]


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ (a) round trip, bit-identical


def test_official_file_from_our_model_loads_bit_identical(tmp_path: Path):
    model = tiny_model()
    net = to_official_state_dict(model)
    path = tmp_path / "SEQTRACK_ep0500.pth.tar"
    with official_training_code(tmp_path) as stub:
        torch.save(official_container(net, stub), path)
    assert importlib.util.find_spec(STUB) is None  # the official code is gone at load time
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # why a restricted reader is needed at all

    assert is_official_checkpoint(path)
    weights = read_official(path, preset="tiny")
    assert (weights.preset, weights.epoch) == ("tiny", 500)
    assert weights.config == ModelConfig(**{**vars(preset_model("tiny")), "pretrained": "none"})
    report = SeqTrack(weights.config).load_state_dict(weights.state_dict, strict=True)
    assert not report.missing_keys and not report.unexpected_keys

    rebuilt = weights.build().eval()
    torch.manual_seed(1)
    t, x = model.cfg.template_size, model.cfg.search_size
    templates, search = torch.randn(2, 2, 3, t, t), torch.randn(2, 3, x, x)
    tokens = torch.randint(0, 64, (2, 5))
    with torch.no_grad():
        assert torch.equal(rebuilt(templates, search, tokens), model(templates, search, tokens))
        memory = model.encode(templates, search)
        assert torch.equal(rebuilt.encode(templates, search), memory)
        for a, b in zip(rebuilt.decode_greedy(memory), model.decode_greedy(memory), strict=True):
            assert torch.equal(a, b)


def test_official_position_table_is_search_rows_then_one_template_table():
    model = tiny_model()
    net = to_official_state_dict(model)
    grid = model.cfg.search_grid**2
    pos = net["encoder.body.pos_embed"]
    assert torch.equal(pos[:, :grid], model.encoder.pos_embed_search)
    assert torch.equal(pos[:, grid:], model.encoder.pos_embed_template)
    assert torch.equal(net["pos_embed"][0], model.bridge.pos)
    back = from_official_state_dict(net, model.cfg)
    assert back.keys() == model.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())


def official_b256_names() -> set[str]:
    """The 200 tensor names of the official SeqTrack-B256 `net`, written out from its module names."""
    names = {
        "encoder.body.patch_embed.proj.weight",
        "encoder.body.patch_embed.proj.bias",
        "encoder.body.pos_embed",
        "encoder.body.norm.weight",
        "encoder.body.norm.bias",
        "bottleneck.weight",
        "bottleneck.bias",
        "pos_embed",
        "decoder.embedding.word_embeddings.weight",
        "decoder.embedding.position_embeddings.weight",
        "decoder.embedding.LayerNorm.weight",
        "decoder.embedding.LayerNorm.bias",
        "decoder.body.norm.weight",
        "decoder.body.norm.bias",
    }
    block_parts = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
    names |= {
        f"encoder.body.blocks.{i}.{p}.{t}" for i in range(12) for p in block_parts for t in ("weight", "bias")
    }
    for j in range(2):
        for attn in ("self_attn", "multihead_attn"):
            names |= {f"decoder.body.layers.{j}.{attn}.{p}" for p in ("in_proj_weight", "in_proj_bias")}
            names |= {f"decoder.body.layers.{j}.{attn}.out_proj.{t}" for t in ("weight", "bias")}
        layer_parts = ("linear1", "linear2", "norm1", "norm2", "norm3")
        names |= {f"decoder.body.layers.{j}.{p}.{t}" for p in layer_parts for t in ("weight", "bias")}
    names |= {f"vocab_embed.layers.{k}.{t}" for k in range(3) for t in ("weight", "bias")}
    return names


def test_b256_official_names_and_shapes_round_trip():
    cfg = preset_model("b256")
    shapes = official_shapes(cfg)
    assert len(shapes) == 200 and set(shapes) == official_b256_names()
    expected = {
        "encoder.body.patch_embed.proj.weight": (768, 3, 16, 16),
        "encoder.body.pos_embed": (1, 512, 768),
        "encoder.body.blocks.11.attn.qkv.weight": (2304, 768),
        "encoder.body.blocks.0.mlp.fc1.weight": (3072, 768),
        "bottleneck.weight": (256, 768),
        "pos_embed": (1, 256, 256),
        "decoder.embedding.word_embeddings.weight": (4002, 256),
        "decoder.embedding.position_embeddings.weight": (5, 256),
        "decoder.body.layers.1.multihead_attn.in_proj_weight": (768, 256),
        "decoder.body.layers.0.linear1.weight": (1024, 256),
        "vocab_embed.layers.2.weight": (4002, 256),
    }
    assert {k: shapes[k] for k in expected} == expected
    with torch.device("meta"):
        ours = SeqTrack(cfg).state_dict()
    back = from_official_state_dict(to_official_state_dict(ours), cfg)
    assert {k: tuple(v.shape) for k, v in back.items()} == {k: tuple(v.shape) for k, v in ours.items()}


def test_official_parameter_counts():
    """The official presets' parameter counts (90.6 M, 91.2 M, 308.2 M, 309.0 M)."""
    counts = {
        n: sum(torch.Size(s).numel() for s in official_shapes(preset_model(n)).values())
        for n in OFFICIAL_PRESETS
    }
    assert {n: round(c / 1e6, 1) for n, c in counts.items()} == {
        "b256": 90.6,
        "b384": 91.2,
        "l256": 308.2,
        "l384": 309.0,
    }


# ------------------------------------------------------------------ (b) no code from the file runs


class ExecPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


class SystemPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_reduce_payloads_in_the_container_stay_inert(tmp_path: Path):
    exec_marker, system_marker = tmp_path / "exec-ran", tmp_path / "system-ran"
    path = tmp_path / "SEQTRACK_ep0500.pth.tar"
    with official_training_code(tmp_path) as stub:
        container = official_container(
            to_official_state_dict(tiny_model()),
            stub,
            settings=ExecPayload(exec_marker),
            constructor=SystemPayload(system_marker),
        )
        torch.save(container, path)

    assert is_official_checkpoint(path)
    weights = read_official(path, preset="tiny")
    assert weights.preset == "tiny"
    assert not exec_marker.exists() and not system_marker.exists()
    obj, _ = torch_zip.open_archive(path)
    assert isinstance(obj["settings"], InertObject) and obj["settings"].source == "builtins.exec"
    assert isinstance(obj["constructor"], InertObject) and obj["constructor"].source.endswith(".system")
    assert isinstance(obj["stats"], InertObject) and obj["stats"].source == f"{STUB}.StatsDict"
    assert not exec_marker.exists() and not system_marker.exists()

    # The payloads are real: an unrestricted load (with the official code importable) runs both.
    with official_training_code(tmp_path):
        torch.load(path, map_location="cpu", weights_only=False)
    assert exec_marker.read_text() == "ran" and system_marker.exists()


def test_payload_in_place_of_a_weight_is_refused_in_one_line(tmp_path: Path):
    marker = tmp_path / "ran"
    net = to_official_state_dict(tiny_model())
    net["bottleneck.weight"] = ExecPayload(marker)
    path = tmp_path / "evil.pth.tar"
    torch.save({"net": net, "epoch": 1}, path)
    with pytest.raises(OfficialCheckpointError) as exc:
        read_official(path, preset="tiny")
    assert "net['bottleneck.weight'] is not a tensor" in one_line(exc)
    assert not marker.exists()


def handcrafted_torch_zip(path: Path, pickle_bytes: bytes) -> Path:
    """A zip laid out like torch.save's, holding a hand-written pickle."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle_bytes)
        zf.writestr("archive/byteorder", "little")
    return path


def test_chained_globals_cannot_reach_a_callable(tmp_path: Path):
    """getattr(__import__('os'), 'system')('touch marker'), written as raw pickle opcodes."""
    marker = tmp_path / "ran"
    payload = (
        b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR" + f"(Vtouch {marker}\ntR.".encode()
    )
    path = handcrafted_torch_zip(tmp_path / "chain.pth.tar", payload)
    with pytest.raises(OfficialCheckpointError) as exc:
        read_official(path)
    assert "cannot read" in one_line(exc)
    assert not is_official_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(OfficialCheckpointError):  # a root that is itself a payload: not a checkpoint
        read_official(handcrafted_torch_zip(tmp_path / "root.pth.tar", b"cos\nsystem\n(Vtrue\ntR."))


def handwritten_tensor(build: bytes = b"") -> bytes:
    """Pickle opcodes of torch's tensor record for storage "0" (one float), then optional `build`."""
    storage = b"(Vstorage\nctorch\nFloatStorage\nV0\nVcpu\nI1\ntQ"  # BINPERSID of torch's id tuple
    hooks = b"ccollections\nOrderedDict\n)R"
    return (
        b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + b"I0\n(I1\nt(I1\ntI00\n" + hooks + b"tR" + build
    )


def test_a_pickle_cannot_rewrite_a_checked_tensor_record(tmp_path: Path):
    """BUILD opcodes applied to a tensor record after it was checked (size -> (9,)) are refused."""
    for build in (b"", b"(Vsize\n(I9\ntdb", b"N(Vsize\n(I9\ntdtb"):
        path = handcrafted_torch_zip(
            tmp_path / "record.pth.tar", b"(Vx\n" + handwritten_tensor(build) + b"d."
        )
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("archive/data/0", torch.tensor([1.5]).numpy().tobytes())
        if not build:  # the hand-written record itself reads back
            obj, archive = torch_zip.open_archive(path)
            assert torch.equal(torch_zip.materialise(obj, archive)["x"], torch.tensor([1.5]))
            continue
        with pytest.raises(TorchZipError) as exc:
            torch_zip.open_archive(path)
        assert "cannot read" in one_line(exc)


def test_files_that_are_not_torch_zips_are_refused(tmp_path: Path):
    text = tmp_path / "notes.pth.tar"
    text.write_text("not a checkpoint")
    for path in (text, tmp_path / "missing.pth.tar"):
        with pytest.raises(OfficialCheckpointError) as exc:
            read_official(path)
        one_line(exc)
        assert not is_official_checkpoint(path)
    ours = tmp_path / "project.pt"
    torch.save({"model": tiny_model().state_dict(), "epoch": 1}, ours)
    assert not is_official_checkpoint(ours)
    with pytest.raises(OfficialCheckpointError, match="not an official SeqTrack checkpoint"):
        read_official(ours)


# ------------------------------------------------------------------ (c-e) presets from the shapes


def save_shapes(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    torch.save({"net": shape_only_net(shapes), "epoch": 500, "net_type": "SEQTRACK"}, path)
    return path


@pytest.mark.parametrize("name", OFFICIAL_PRESETS)
def test_preset_is_inferred_from_the_shapes(tmp_path: Path, name: str):
    path = save_shapes(tmp_path / f"{name}.pth.tar", official_shapes(preset_model(name)))
    weights = read_official(path)
    assert weights.preset == name and weights.epoch == 500
    cfg = preset_model(name)
    assert (weights.config.encoder_dim, weights.config.search_size) == (cfg.encoder_dim, cfg.search_size)
    assert weights.config.pretrained == "none"  # the weights come from the file, not MAE
    with torch.device("meta"):
        ours = SeqTrack(cfg).state_dict()
    assert {k: tuple(v.shape) for k, v in weights.state_dict.items()} == {
        k: tuple(v.shape) for k, v in ours.items()
    }


def test_presets_are_told_apart():
    shapes_of = official_preset_shapes
    assert [infer_preset(official_shapes(preset_model(n)), shapes_of) for n in OFFICIAL_PRESETS] == list(
        OFFICIAL_PRESETS
    )


def test_a_file_that_fits_no_preset_is_refused_in_one_line(tmp_path: Path):
    odd = ModelConfig(encoder_dim=640, encoder_heads=10)
    path = save_shapes(tmp_path / "odd.pth.tar", official_shapes(odd))
    with pytest.raises(OfficialCheckpointError) as exc:
        read_official(path)
    message = one_line(exc)
    assert "fits no preset" in message
    assert "b256 (width 768, 12 blocks, 512 position rows)" in message
    assert "l384 (width 1024, 24 blocks, 1152 position rows)" in message
    assert "found width 640, 12 blocks, 512 position rows" in message

    other_vocab = save_shapes(tmp_path / "bins.pth.tar", official_shapes(ModelConfig(bins=1000)))
    with pytest.raises(OfficialCheckpointError) as exc:
        read_official(other_vocab)
    assert (
        "against b256: decoder.embedding.word_embeddings.weight is (1002, 256), expected (4002, 256)"
        in one_line(exc)
    )


def test_a_preset_that_disagrees_with_the_shapes_is_refused(tmp_path: Path):
    path = save_shapes(tmp_path / "b256.pth.tar", official_shapes(preset_model("b256")))
    with pytest.raises(OfficialCheckpointError) as exc:
        read_official(path, preset="l384")
    message = one_line(exc)
    assert "does not fit preset l384" in message
    assert "expected width 1024, 24 blocks, 1152 position rows" in message
    assert "found width 768, 12 blocks, 512 position rows" in message
    assert "fits preset b256" in message
    with pytest.raises(OfficialCheckpointError, match="unknown preset 'b512'"):
        read_official(path, preset="b512")
    assert read_official(path, preset="b256").preset == "b256"
