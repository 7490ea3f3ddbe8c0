"""The track step: a checkpoint, a user's video (a file or a folder of frames) and the target's box in
its first frame -> the evaluate tracker on every frame -> boxes.txt, boxes.csv, tracked.mp4 and
preview.gif, logged as a `track` MLflow run.

Every input is checked before the run starts (the box, the video's first frame, the checkpoint): a
mistake is one line and leaves no run and no file behind."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqtrack_mlflow.config import ConfigError, TrackerConfig, VideoConfig, parse_box, step_settings
from seqtrack_mlflow.evaluation.runners import check_backend
from seqtrack_mlflow.evaluation.track_video import TrackedVideo, check_first_box, track_video
from seqtrack_mlflow.evaluation.tracker import SeqTrackTracker
from seqtrack_mlflow.model.factory import TrainedWeights, load_trained_weights
from seqtrack_mlflow.model.references import resolve_checkpoint, resolved_reference
from seqtrack_mlflow.steps.lineage import checkpoint_tags
from seqtrack_mlflow.tracking import RunLogger, run_context
from seqtrack_mlflow.train.distributed import pick_device
from seqtrack_mlflow.video.source import VideoSource, open_video


@dataclass(frozen=True)
class TrackResult:
    run_id: str | None
    out_dir: Path
    source: str  # what was tracked: name, size, rate
    tracked: TrackedVideo


def run_track(
    video: VideoConfig,
    checkpoint: str,
    tracker_cfg: TrackerConfig,
    *,
    preset: str | None = None,
    device: str = "auto",
    output_dir: Path = Path("outputs"),
) -> TrackResult:
    """`preset`: for an official file whose shapes should be checked against a named preset."""
    tracker_cfg.validate()
    tracker_cfg = tracker_cfg.resolved()  # an unset update interval: the benchmark's official one
    video.validate()
    if not video.video:
        raise ConfigError("track needs a video: pass -P video=<video file or folder of frames>")
    if not video.box:
        raise ConfigError("track needs the target's box in the first frame: pass -P box=x,y,w,h (pixels)")
    if not checkpoint:
        raise ConfigError(
            "track needs a checkpoint: pass -P checkpoint="
            "<train run id | runs:/ URI | models:/<name>/<version> | file>"
        )
    box = parse_box(video.box)
    with open_video(Path(video.video).expanduser(), video.fps) as source:
        check_first_box(box, source, video.box)
        torch_device = pick_device(device)
        check_backend(tracker_cfg, torch_device)
        path, ckpt_run = resolve_checkpoint(checkpoint, output_dir / "downloads")
        trained = load_trained_weights(path, preset)
        tracker = SeqTrackTracker.from_weights(trained.model, trained.state_dict, tracker_cfg, torch_device)
        with run_context("track", system_metrics=False) as logger:
            out_dir = output_dir / (logger.run_id or "offline")
            given = {**dataclasses.asdict(video), "checkpoint": checkpoint, "device": device}
            given["checkpoint_uri"] = resolved_reference(checkpoint, path, ckpt_run)  # as evaluate logs it
            _log_inputs(logger, given, output_dir, trained, tracker_cfg, source, ckpt_run, torch_device)
            tracked = track_video(tracker, source, box, out_dir, tracker_cfg.max_frames or 0)
            _log_outcome(logger, tracked, source, path.name, video.box)
            return TrackResult(logger.run_id, out_dir, describe_source(source), tracked)


def describe_source(source: VideoSource) -> str:
    return f"{source.name} ({source.width}x{source.height}, {source.fps:.4g} fps)"


def _log_inputs(
    logger: RunLogger,
    given: dict[str, Any],
    output_dir: Path,
    trained: TrainedWeights,
    tracker_cfg: TrackerConfig,
    source: VideoSource,
    ckpt_run: str | None,
    device: torch.device,
) -> None:
    """Every setting of the step with the value used, and what the input is."""
    tracker = dataclasses.asdict(tracker_cfg)
    settings = {s.name: tracker.get(s.name, given.get(s.name)) for s in step_settings("track")}
    logger.log_params(
        {
            **settings,
            "checkpoint_uri": given["checkpoint_uri"],
            "preset": trained.preset,
            "output_dir": str(output_dir),
            "eval_search_factor": tracker_cfg.eval_search_factor,
            "eval_template_factor": tracker_cfg.eval_template_factor,
            "patch_size": trained.model.patch_size,
            "video_name": source.name,
            "video_kind": source.kind,
            "video_size": f"{source.width}x{source.height}",
            "video_fps": round(source.fps, 4),
        }
    )
    logger.set_tags(checkpoint_tags(trained, ckpt_run, device))


def _log_outcome(
    logger: RunLogger, tracked: TrackedVideo, source: VideoSource, checkpoint_name: str, box: str
) -> None:
    """The input's frame count (known for sure once read), metrics, the files, the run's description."""
    if tracked.complete:
        frames: Any = tracked.frames
    else:
        frames = source.expected_frames or f"more than {tracked.frames}"
    logger.log_params({"video_frames": frames})
    metrics = {"frames": tracked.frames, "fps": tracked.fps, "template_updates": len(tracked.updates)}
    if tracked.mean_confidence is not None:
        metrics["mean_confidence"] = tracked.mean_confidence
    logger.log_metrics(metrics)
    for file in tracked.files:
        logger.log_artifact(file)
    confidence = (
        f", mean confidence {tracked.mean_confidence:.2f}" if tracked.mean_confidence is not None else ""
    )
    logger.describe(
        f"Tracked {tracked.frames} frames of {describe_source(source)} from box {box} with "
        f"{checkpoint_name}: {tracked.fps:.1f} frames/s{confidence}"
    )
