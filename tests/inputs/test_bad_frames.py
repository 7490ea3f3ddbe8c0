"""Bad frames injected for real into a synthetic LaSOT tree: a truncated JPEG, a text file named .jpg and
flipped bytes, in the middle of a sequence. select_data (-P verify_frames=true), the training loader
and the tracker each report the file in one line; training skips a bad sample deterministically,
counts it (`skipped_samples`) and stops past the documented limit."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import tracker_model

from seqtrack_mlflow import cli
from seqtrack_mlflow.config import DataConfig, ModelConfig, SamplingConfig, build_settings, replace
from seqtrack_mlflow.datasets.base import FrameError, verify_frames
from seqtrack_mlflow.datasets.lasot import LasotFormatError, class_sequence_dirs, read_sequence
from seqtrack_mlflow.datasets.selection import prepare_root
from seqtrack_mlflow.datasets.synthetic import generate_lasot
from seqtrack_mlflow.inputs import sampling
from seqtrack_mlflow.inputs.batches import make_loader
from seqtrack_mlflow.inputs.sampling import BadFramesError, SkipCounter, TrainingSamples

FRAMES = 24
BAD = 12  # 0-based index of the damaged frame: the middle of the sequence
MODEL = ModelConfig(template_size=32, search_size=32, num_templates=2)


@pytest.fixture(scope="module")
def clean_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    generate_lasot(root, ["airplane"], sequences_per_class=2, frames=FRAMES, size=(160, 120), seed=3)
    return root


@pytest.fixture
def tree(clean_tree, tmp_path) -> Path:
    """A private copy a test may damage."""
    root = tmp_path / "lasot"
    shutil.copytree(clean_tree, root)
    return root


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def textify(path: Path) -> None:
    path.write_text("this is not a JPEG\n")


def flip(path: Path) -> None:
    """Flip 16 bytes inside the Huffman table: the header still parses, decoding fails ("broken data
    stream"). Flips inside the entropy-coded data are often decoded silently into wrong pixels, which
    no decoder can flag (documented in lasot.py)."""
    data = bytearray(path.read_bytes())
    start = data.index(b"\xff\xc4") + 4  # DHT marker + segment length
    for i in range(start, start + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {"truncated": truncate, "text": textify, "flipped": flip}


def damage(root: Path, how: str, frame: int = BAD, sequence: int = 0) -> Path:
    seq = read_sequence(class_sequence_dirs(root, "airplane")[sequence])
    path = seq.frame_path(frame)
    DAMAGE[how](path)
    return path


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


# -- select_data ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_verify_frames_names_the_damaged_frame(tree, how):
    path = damage(tree, how)
    cfg = DataConfig(source="local", lasot_root=str(tree), classes="airplane", verify_frames=True)
    with pytest.raises(FrameError) as info:
        prepare_root(cfg, ["airplane"], 0)
    message = one_line(info.value)
    assert message.startswith(f"{path}: cannot decode frame image (")
    assert "re-download" in message
    # Without the option only the file listing is checked: the damage passes, as documented.
    assert prepare_root(DataConfig(source="local", lasot_root=str(tree), classes="airplane"), ["airplane"], 0)


def test_verify_frames_is_ordered_and_counts(clean_tree, tree):
    seqs = [read_sequence(p) for p in class_sequence_dirs(clean_tree, "airplane")]
    assert verify_frames(seqs, workers=2) == 2 * FRAMES
    late, early = damage(tree, "text", frame=20, sequence=1), damage(tree, "truncated", frame=5, sequence=1)
    bad = [read_sequence(p) for p in class_sequence_dirs(tree, "airplane")]
    for workers in (1, 2):  # always the first bad frame in sequence/frame order, whatever the threads
        with pytest.raises(FrameError) as info:
            verify_frames(bad, workers=workers)
        assert info.value.path == early != late


def test_select_data_cli_gives_one_line(tree, tmp_path, mlflow_uri, monkeypatch):
    from click.testing import CliRunner

    path = damage(tree, "truncated")
    monkeypatch.chdir(tmp_path)
    args = ["select-data", "--source", "local", "--lasot_root", str(tree), "--classes", "airplane"]
    result = CliRunner().invoke(cli.main, [*args, "--verify_frames", "true"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"{path}: cannot decode frame image" in errors[0], result.stderr
    assert "Traceback" not in result.output


# -- training --------------------------------------------------------------------------------------


def _samples(root: Path, samples: int = 40, seed: int = 5) -> TrainingSamples:
    seqs = [read_sequence(p) for p in class_sequence_dirs(root, "airplane")]
    sampling_cfg = SamplingConfig(min_frames=2, min_visible=2)
    return TrainingSamples(seqs, MODEL, sampling_cfg, seed=seed, samples_per_epoch=samples)


def _uses(ds: TrainingSamples, index: int, attempt: int, path: Path) -> bool:
    draw = sampling.draw_sample(ds.sequences, ds.draw_rng(index, attempt), 2, MODEL.search_size, ds.sampling)
    seq = ds.sequences[draw.sequence]
    return any(seq.frame_path(f) == path for f in draw.frames.tolist())


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_loader_skips_a_bad_sample_deterministically(clean_tree, tree, how):
    path = damage(tree, how)
    ds, clean = _samples(tree), _samples(clean_tree)
    ds.set_epoch(1)
    clean.set_epoch(1)
    hit = [i for i in range(len(ds)) if _uses(ds, i, 0, path)]
    assert hit, "the seed draws no sample on the damaged frame: pick another"
    index = hit[0]
    sample = ds[index]
    assert int(sample["skipped"]) >= 1 and not bool(sample["failed"])
    assert sample["bad_frame"].startswith(f"{path}: cannot decode frame image")
    # The redraw is a pure function of (seed, epoch, index): again the same, and equal to the clean
    # tree's draw of the same attempt (the attempt's random numbers do not depend on the damage).
    again = ds[index]
    attempt = int(sample["skipped"])
    draw = sampling.draw_sample(clean.sequences, clean.draw_rng(index, attempt), 2, 32, clean.sampling)
    want = sampling.render_sample(clean.sequences[draw.sequence], draw, MODEL, clean.sampling)
    for key in ("templates", "search", "search_box"):
        assert torch.equal(sample[key], again[key])
        np.testing.assert_array_equal(sample[key].numpy(), want[key])
    ok = [i for i in range(len(ds)) if i not in hit]
    for i in ok[:3]:  # untouched samples are exactly the clean tree's
        assert torch.equal(ds[i]["search"], clean[i]["search"]) and int(ds[i]["skipped"]) == 0
    assert not _uses(ds, index, attempt, path)


def test_loader_with_workers_reports_the_file(tree):
    path = damage(tree, "text")
    ds = _samples(tree)
    ds.set_epoch(1)
    messages, skipped = [], 0
    for batch in make_loader(ds, batch_size=8, workers=1):
        counter = SkipCounter(1, len(ds), warn=messages.append)
        counter.update(batch)
        skipped += counter.count
        # The bad-frame bookkeeping is removed.
        assert set(batch) == {"templates", "search", "search_box", "brightness", "gray"}
    assert skipped >= 1
    want = f"warning: skipped a training sample of epoch 1: {path}: cannot decode frame image (not an image"
    assert messages and all(m.startswith(want) for m in messages)


def test_skip_limit_stops_with_one_line(tree, capsys):
    for frame in range(FRAMES):  # the whole first sequence is lost (say, an interrupted copy)
        damage(tree, "truncated", frame=frame, sequence=0)
    ds = _samples(tree, samples=200)
    ds.set_epoch(1)
    counter = SkipCounter(1, len(ds))
    assert counter.limit == max(sampling.SKIP_LIMIT_MIN, int(0.01 * 200)) == 10
    with pytest.raises(BadFramesError) as info:
        for batch in make_loader(ds, batch_size=8, workers=0):
            counter.update(batch)
    message = one_line(info.value)
    assert f"over the limit of {counter.limit}" in message and "verify_frames=true" in message
    assert "airplane" in message and ".jpg: cannot decode frame image" in message
    warned = capsys.readouterr().err.splitlines()
    assert warned and all(line.startswith("warning: skipped a training sample") for line in warned)
    assert len(warned) == len(set(warned))  # once per bad file


def test_sample_with_no_decodable_draw_stops(tree):
    for seq in (0, 1):
        for frame in range(FRAMES):
            damage(tree, "text", frame=frame, sequence=seq)
    ds = _samples(tree, samples=8)
    ds.set_epoch(1)
    sample = ds[0]
    assert bool(sample["failed"]) and int(sample["skipped"]) == sampling.MAX_DRAWS
    counter = SkipCounter(1, 10**6)
    with pytest.raises(BadFramesError, match=f"no decodable frames in {sampling.MAX_DRAWS} draws"):
        counter.update(next(iter(make_loader(ds, batch_size=2, workers=0))))


class Recorder:
    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_report(self, report) -> None:
        pass

    def on_epoch_end(self, epoch, metrics, step) -> None:
        self.epochs.append(dict(metrics))

    def on_checkpoint(self, path, epoch) -> None:
        pass


def _trainer(tree: Path, out: Path, epochs: int = 1):
    from seqtrack_mlflow.train.distributed import DistContext
    from seqtrack_mlflow.train.trainer import Trainer

    data = DataConfig(source="local", lasot_root=str(tree), classes="airplane")
    model = {"search_size": 32, "template_size": 32, "encoder_depth": 1}
    train = {
        "epochs": epochs,
        "samples_per_epoch": 40,
        "batch_size": 10,
        "seed": 5,
        "system_metrics": False,
        "log_every": 20,
        "device": "cpu",
    }
    settings = build_settings("tiny", {}, train, data)
    settings = replace(
        settings,
        model=replace(settings.model, **model),
        sampling=replace(settings.sampling, min_frames=2, min_visible=2),
    )
    seqs = [read_sequence(p) for p in class_sequence_dirs(tree, "airplane")]
    ctx = DistContext(0, 1, 0, torch.device("cpu"))
    recorder = Recorder()
    return Trainer(settings, seqs, out, ctx, {}, callbacks=recorder), recorder


def test_training_skips_counts_and_stops(tree, tmp_path, capsys):
    path = damage(tree, "truncated")
    trainer, recorder = _trainer(tree, tmp_path / "run")
    outcome = trainer.fit()
    assert np.isfinite(outcome.final_loss)
    skipped = recorder.epochs[0]["skipped_samples"]
    assert skipped >= 1
    err = capsys.readouterr().err
    assert f"warning: skipped a training sample of epoch 1: {path}: cannot decode frame image" in err
    assert "Traceback" not in err

    for frame in range(FRAMES):  # now more than the limit (10 draws) per epoch
        damage(tree, "text", frame=frame, sequence=0)
    trainer, _ = _trainer(tree, tmp_path / "run2")

    @cli.user_facing
    def train() -> None:
        trainer.fit()

    with pytest.raises(SystemExit) as info:
        train()
    assert info.value.code == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors[-1].startswith("error: epoch 1 skipped ") and "over the limit of 10" in errors[-1]
    assert not (tmp_path / "run2" / "checkpoints").exists()


# -- evaluate (the tracker) ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
    return tracker_model(size=32, depth=1)


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_tracker_names_the_bad_frame(tree, tiny_model, how, capsys):
    from seqtrack_mlflow.config import TrackerConfig
    from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker, TrackerError, track_sequence

    path = damage(tree, how)
    seq = read_sequence(class_sequence_dirs(tree, "airplane")[0])
    tracker = SeqTrackTracker(tiny_model, TrackerConfig(update_interval=450))
    with pytest.raises(TrackerError) as info:
        track_sequence(tracker, seq)
    assert isinstance(info.value, LasotFormatError)  # the CLI's one-line errors
    assert one_line(info.value).startswith(f"{path}: cannot decode frame image (")

    @cli.user_facing
    def evaluate() -> None:
        track_sequence(SeqTrackTracker(tiny_model, TrackerConfig(update_interval=450)), seq)

    with pytest.raises(SystemExit) as exit_info:
        evaluate()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {info.value}"
