"""The training report: pure functions that turn counters and clocks into log lines and metrics.

Kept free of I/O so the exact text format (README, "Training") is unit-tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass


def format_hms(seconds: float) -> str:
    """H:MM:SS with hours unbounded (a 30-hour epoch prints 30:00:00, not '1 day, ...'); under a second,
    hundredths (0:00:00.42): a small model's 50 samples take less than a second, and 0:00:00 says nothing."""
    if 0 < seconds < 0.995:
        return f"0:00:{seconds:05.2f}"
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


@dataclass(frozen=True)
class Report:
    """One report, taken after `epoch_samples` of `epoch_total` samples of epoch `epoch`."""

    epoch: int
    epoch_samples: int
    epoch_total: int
    window_samples: int  # samples since the previous report (a batch boundary may overshoot)
    window_seconds: float
    since_start_seconds: float
    epoch_seconds: float  # time spent in this epoch so far
    global_step: int  # samples seen since the start of training (all ranks)
    loss: float
    iou: float
    log_every: int = 50

    @property
    def per_report_seconds(self) -> float:
        """Time for `log_every` samples, normalised from the actual window."""
        return self.window_seconds / max(self.window_samples, 1) * self.log_every

    @property
    def eta_seconds(self) -> float:
        left = max(self.epoch_total - self.epoch_samples, 0)
        return self.epoch_seconds / max(self.epoch_samples, 1) * left

    @property
    def samples_per_s(self) -> float:
        return self.window_samples / self.window_seconds if self.window_seconds > 0 else 0.0


def report_lines(r: Report) -> list[str]:
    """The four timing lines the README documents, then loss and IoU."""
    return [
        f"Epoch {r.epoch} : {r.epoch_samples} / {r.epoch_total}",
        f"time for last {r.log_every} samples : {format_hms(r.per_report_seconds)} hours",
        f"time since beginning : {format_hms(r.since_start_seconds)} hours",
        f"time left to finish epoch : {format_hms(r.eta_seconds)} hours",
        f"loss : {r.loss:.4f}",
        f"IoU : {r.iou:.4f}",
    ]


def report_metrics(r: Report) -> dict[str, float]:
    """The same figures as MLflow metrics (logged with step = r.global_step)."""
    return {
        "loss": r.loss,
        "iou": r.iou,
        f"time_last_{r.log_every}_samples_s": r.per_report_seconds,
        "time_since_start_s": r.since_start_seconds,
        "epoch_eta_s": r.eta_seconds,
        "samples_per_s": r.samples_per_s,
    }


def due_reports(before: int, after: int, log_every: int) -> bool:
    """True when the count passed a multiple of `log_every` (or reached the epoch end)."""
    return after // log_every > before // log_every
