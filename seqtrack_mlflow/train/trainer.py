"""The SeqTrack training loop: AdamW (encoder at a fraction of the LR), StepLR per epoch, gradient
clipping, optional bf16 autocast on CUDA, DDP under torchrun, the 50-sample report, epoch checkpoints
and exact resumption.

Exactness of resume rests on three facts: samples are a pure function of (seed, epoch, index), the
loader does not shuffle, and the checkpoint carries the optimiser, scheduler and RNG states.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from seqtrack_mlflow.config import TrainConfig, TrainSettings
from seqtrack_mlflow.datasets.base import Sequence
from seqtrack_mlflow.inputs.batches import make_loader
from seqtrack_mlflow.inputs.photometric import model_inputs
from seqtrack_mlflow.inputs.pools import Mix
from seqtrack_mlflow.inputs.sampling import SkipCounter, TrainingSamples
from seqtrack_mlflow.model.factory import build_model
from seqtrack_mlflow.model.seqtrack import SeqTrack, logging_iou, sequence_loss
from seqtrack_mlflow.model.tokens import box_to_tokens, teacher_forcing
from seqtrack_mlflow.train import checkpoints, distributed
from seqtrack_mlflow.train.callbacks import TrainerCallbacks
from seqtrack_mlflow.train.checkpoints import Checkpoint
from seqtrack_mlflow.train.distributed import DistContext, all_sum
from seqtrack_mlflow.train.interrupt import Interrupted, StopRequest, stop_at_step_boundary
from seqtrack_mlflow.train.progress import Report, due_reports, report_lines


@dataclass
class History:
    """Report-level curves (for the PNG plots) and per-epoch summaries; survives resume."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    epoch_iou: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class TrainOutcome:
    epochs_done: int
    final_loss: float
    final_iou: float
    checkpoint: Path | None
    history: History


def make_optimizer(model: SeqTrack, tc: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the encoder at `encoder_lr_mult` x the LR. fused: one kernel for all parameters
    (on the CPU torch otherwise loops over parameters: 2.7x slower for b256's 90 M)."""
    groups = model.param_groups(tc.lr, tc.encoder_lr_mult, tc.weight_decay)
    return torch.optim.AdamW(groups, lr=tc.lr, fused=True)


def optimizer_step(
    loss: torch.Tensor, model: SeqTrack, optimizer: torch.optim.Optimizer, grad_clip: float
) -> None:
    """Backward, clip (when `grad_clip` > 0) and step: the trainer's update, also timed by step_timing.py."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class LogFile:
    """The text training log: every line goes to training_log.txt (rank 0) and, unless `console` is
    "bar", to the console above the progress bar."""

    def __init__(self, path: Path | None, console: str = "reports"):
        self.path, self.console = path, console
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, lines: list[str]) -> None:
        if self.path is None:
            return
        text = "\n".join(lines) + "\n"
        if self.console != "bar":
            tqdm.write(text, end="", file=sys.stdout)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text)


class Trainer:
    """One training run. Construct, optionally `load_state` from a checkpoint, then `fit`."""

    def __init__(
        self,
        settings: TrainSettings,
        sequences: list[Sequence] | Mix,
        out_dir: Path,
        ctx: DistContext,
        dataset_info: dict[str, Any],
        callbacks: TrainerCallbacks | None = None,
        run_id: str = "",
        pretrained_file: Path | None = None,
    ):
        """`pretrained_file`: the local file of a `pretrained` setting that names one in the tracking
        store (a runs:/ or models:/ URI, resolved by the step); the settings keep the URI."""
        tc = settings.train
        distributed.check_shares(tc.samples_per_epoch, ctx.world_size)
        self.settings, self.ctx = settings, ctx
        self.callbacks = callbacks or TrainerCallbacks()
        self.run_id = run_id  # the tracking run the checkpoints belong to (stored in them)
        self.out_dir = out_dir
        self.dataset_info = dataset_info
        seed_everything(tc.seed)
        model_cfg = settings.model
        if pretrained_file is not None:
            model_cfg = dataclasses.replace(model_cfg, pretrained=str(pretrained_file))
        self.model: SeqTrack = build_model(model_cfg).to(ctx.device)
        self.optimizer = make_optimizer(self.model, tc)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, tc.lr_drop_epoch, tc.lr_gamma)
        self.dataset = TrainingSamples(
            sequences, settings.model, settings.sampling, tc.seed, tc.samples_per_epoch
        )
        self.start_epoch = 1
        self.progress: Progress | None = None  # of the epoch in progress, when resumed mid-epoch
        self.elapsed_before = 0.0
        self.history = History()
        self.skipped_samples = 0  # draws the last epoch skipped for undecodable frames (all processes)
        self.dataset_samples: list[int] = []  # a mix: the last epoch's samples per dataset (all processes)
        # Dropout must differ across ranks; model init above is identical on every rank.
        torch.manual_seed(tc.seed + 1000003 * ctx.rank)
        self.net: torch.nn.Module = (
            DistributedDataParallel(
                self.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
            )
            if ctx.distributed
            else self.model
        )
        self.log = LogFile(out_dir / "training_log.txt" if ctx.is_main else None, tc.console)

    # -- state ---------------------------------------------------------------------------------
    def checkpoint(
        self, epoch: int, loss: float, iou: float, elapsed: float, progress: Progress | None = None
    ):
        """After epoch `epoch` (and, when `progress` is given, part of the next one)."""
        return Checkpoint(
            epoch=epoch,
            settings=self.settings,
            model_state_dict=self.model.state_dict(),
            optimizer_state_dict=self.optimizer.state_dict(),
            scheduler_state_dict=self.scheduler.state_dict(),
            loss=loss,
            iou=iou,
            dataset_info=self.dataset_info,
            rng_state=checkpoints.rng_state(),
            mlflow_run_id=self.run_id,
            elapsed_seconds=elapsed,
            history=dataclasses.asdict(self.history),
            progress=dataclasses.asdict(progress) if progress else {},
        )

    def load_state(self, ckpt: Checkpoint) -> None:
        self.model.load_state_dict(ckpt.model_state_dict)
        self.optimizer.load_state_dict(ckpt.optimizer_state_dict)
        self.scheduler.load_state_dict(ckpt.scheduler_state_dict)
        # The schedule's shape may change on resume (the state dict restored the old one).
        self.scheduler.step_size = self.settings.train.lr_drop_epoch
        self.scheduler.gamma = self.settings.train.lr_gamma
        checkpoints.restore_rng_state(ckpt.rng_state)
        if self.ctx.rank:
            torch.manual_seed(self.settings.train.seed + 1000003 * self.ctx.rank + ckpt.epoch)
        self.start_epoch = ckpt.epoch + 1
        self.elapsed_before = ckpt.elapsed_seconds
        self.history = History(**ckpt.history)
        self.progress = Progress(**ckpt.progress) if ckpt.progress else None

    def learning_rates(self) -> dict[str, float]:
        """The base rate (the paper's lr, on the decoder group) and the encoder's (lr x encoder_lr_mult)."""
        rates = {g.get("name", ""): g["lr"] for g in self.optimizer.param_groups}
        return {"lr": rates["decoder"], "lr_encoder": rates["encoder"]}

    # -- loop ----------------------------------------------------------------------------------
    def fit(self) -> TrainOutcome:
        """Train to `epochs`. On SIGTERM/SIGINT: stop at the next step boundary, write
        `checkpoints/epoch_<E>_partial.ckpt` when the epoch in progress has done any step (the
        previous epoch's checkpoint holds everything otherwise), and raise `Interrupted`."""
        tc = self.settings.train
        start = time.perf_counter() - self.elapsed_before
        ckpt_path: Path | None = None
        loss = iou = float("nan")
        with stop_at_step_boundary() as stop:
            for epoch in range(self.start_epoch, tc.epochs + 1):
                progress, self.progress = self.progress, None
                result = self._epoch(epoch, start, progress, stop)
                if isinstance(result, Progress):
                    self._stopped(epoch, result, stop, start)
                loss, iou = result
                self.history.epoch_loss.append(loss)
                self.history.epoch_iou.append(iou)
                rates = self.learning_rates()
                self.scheduler.step()
                if self.ctx.is_main:
                    metrics = {"epoch_loss": loss, "epoch_iou": iou, **rates}
                    metrics["skipped_samples"] = self.skipped_samples  # draws skipped for bad frames
                    metrics.update(self._mix_metrics())
                    self.callbacks.on_epoch_end(epoch, metrics, epoch * tc.samples_per_epoch)
                    self.log.write(
                        [f"Epoch {epoch} done : loss {loss:.4f} , IoU {iou:.4f} , lr {rates['lr']:.2e}"]
                        + self._mix_lines(epoch)
                    )
                    ckpt = self.checkpoint(epoch, loss, iou, time.perf_counter() - start)
                    ckpt_path = checkpoints.save(
                        ckpt, self.out_dir / checkpoints.CHECKPOINT_DIR / checkpoints.checkpoint_name(epoch)
                    )
                    self.callbacks.on_checkpoint(ckpt_path, epoch)
        return TrainOutcome(tc.epochs, loss, iou, ckpt_path, self.history)

    def _mix_metrics(self) -> dict[str, float]:
        """A mix's `samples_<dataset>` metrics: how many of the epoch's samples each dataset gave."""
        if self.dataset.mix is None:
            return {}
        return {f"samples_{n}": c for n, c in zip(self.dataset.mix.names, self.dataset_samples, strict=True)}

    def _mix_lines(self, epoch: int) -> list[str]:
        if self.dataset.mix is None:
            return []
        counts = " , ".join(
            f"{n} {c}" for n, c in zip(self.dataset.mix.names, self.dataset_samples, strict=True)
        )
        return [f"Epoch {epoch} samples per dataset : {counts}"]

    def _stopped(self, epoch: int, progress: Progress, stop: StopRequest, start: float) -> None:
        """Write the state so far (rank 0) and raise `Interrupted` with the line that says where it is."""
        signame = signal.Signals(stop.signum or signal.SIGTERM).name
        where = f"epoch {epoch}, sample {progress.samples} / {self.settings.train.samples_per_epoch}"
        path = self.out_dir / checkpoints.CHECKPOINT_DIR / checkpoints.checkpoint_name(epoch - 1)
        if progress.samples > 0 and self.ctx.is_main:
            ckpt = self.checkpoint(
                epoch - 1, float("nan"), float("nan"), time.perf_counter() - start, progress
            )
            path = checkpoints.save(ckpt, path.with_name(checkpoints.partial_name(epoch)))
            self.callbacks.on_checkpoint(path, epoch - 1)
        held = path if path.exists() else f"run {self.run_id}'s {checkpoints.CHECKPOINT_DIR}/{path.name}"
        saved = f"state saved in {held}" if progress.samples > 0 or epoch > 1 else "nothing to save yet"
        raise Interrupted(stop.signum or signal.SIGTERM, f"{signame} at {where}: {saved}")

    def _epoch(
        self, epoch: int, start: float, progress: Progress | None, stop: StopRequest
    ) -> tuple[float, float] | Progress:
        """Epoch `epoch` (from `progress` on, when resuming mid-epoch): (loss, IoU), or the progress
        made when a stop was requested."""
        tc, mc, ctx = self.settings.train, self.settings.model, self.ctx
        progress = progress or Progress()
        self.dataset.set_epoch(epoch)
        share = tc.samples_per_epoch // ctx.world_size  # equal on every rank (check_shares)
        rank_done = progress.samples // ctx.world_size
        loader = make_loader(self.dataset, tc.batch_size, tc.workers, ctx.rank, ctx.world_size, rank_done)
        self.net.train()
        epoch_start = time.perf_counter()
        window_start, window_done = epoch_start, progress.window_done
        # Running sums stay on the device: no host sync per step, only at report time.
        window = torch.tensor(progress.window, device=ctx.device, dtype=torch.float64)  # loss*n, iou*n, n
        total = torch.tensor(progress.total, device=ctx.device, dtype=torch.float64)
        done = progress.samples
        bar = tqdm(
            total=tc.samples_per_epoch,
            initial=done,
            desc=f"epoch {epoch}",
            unit="sample",
            disable=not (ctx.is_main and sys.stderr.isatty()),
            leave=False,
        )
        autocast = torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=tc.amp)
        skips = SkipCounter(epoch, share)  # bad frames: warn, count, stop past the limit (sampling.py)
        pools = len(self.dataset.pools)
        per_dataset = torch.tensor(progress.datasets or [0] * pools, dtype=torch.float64)  # a mix's counts
        for step, batch in enumerate(loader, start=rank_done // tc.batch_size + 1):
            skips.update(batch)
            if "dataset" in batch:
                per_dataset += torch.bincount(batch.pop("dataset"), minlength=pools)
            templates, search = model_inputs(batch, ctx.device)  # uint8 -> normalised, on the device
            tokens = box_to_tokens(batch["search_box"].to(ctx.device), mc.search_size, mc.bins)
            inputs, targets = teacher_forcing(tokens, mc.bins)
            with autocast:
                logits = self.net(templates, search, inputs)
                loss = sequence_loss(logits.float(), targets, mc.bins)
            optimizer_step(loss, self.model, self.optimizer, tc.grad_clip)
            n = targets.shape[0]
            stats = torch.stack(
                [
                    loss.detach().double() * n,
                    logging_iou(logits.detach().float(), targets, mc.bins).double() * n,
                ]
            )
            window[:2] += stats
            window[2] += n
            before = done
            done = ctx.world_size * min(step * tc.batch_size, share)
            bar.update(done - before)
            if due_reports(before, done, tc.log_every):
                summed = all_sum(window, ctx).tolist()
                total += window
                now = time.perf_counter()
                report = Report(
                    epoch=epoch,
                    epoch_samples=done,
                    epoch_total=tc.samples_per_epoch,
                    window_samples=done - window_done,
                    window_seconds=now - window_start,
                    since_start_seconds=now - start,
                    epoch_seconds=now - epoch_start,
                    global_step=(epoch - 1) * tc.samples_per_epoch + done,
                    loss=summed[0] / summed[2],
                    iou=summed[1] / summed[2],
                    log_every=tc.log_every,
                )
                if ctx.is_main:
                    self.log.write(report_lines(report))
                    bar.set_postfix(loss=f"{report.loss:.3f}", iou=f"{report.iou:.3f}", refresh=False)
                    self.callbacks.on_report(report)
                    self.history.steps.append(report.global_step)
                    self.history.loss.append(report.loss)
                    self.history.iou.append(report.iou)
                window.zero_()
                window_start, window_done = now, done
            if done < tc.samples_per_epoch and _any_rank(stop.requested, ctx):
                bar.close()
                return Progress(done, total.tolist(), window.tolist(), window_done, per_dataset.tolist())
        bar.close()
        skipped = torch.tensor([skips.count], device=ctx.device, dtype=torch.float64)
        self.skipped_samples = int(all_sum(skipped, ctx).item())
        self.dataset_samples = [int(c) for c in all_sum(per_dataset.to(ctx.device), ctx).tolist()]
        total += window
        loss_sum, iou_sum, count = all_sum(total, ctx).tolist()
        return loss_sum / max(count, 1), iou_sum / max(count, 1)


@dataclass
class Progress:
    """How far an interrupted epoch got: samples done (all ranks) and the running sums (loss * n,
    IoU * n, n) of the epoch and of the report window, so a resumed epoch reports as if never stopped."""

    samples: int = 0
    total: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    window: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    window_done: int = 0
    datasets: list[float] = field(default_factory=list)  # a mix: samples per dataset so far


def _any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when one rank got the signal (they must stop at the same step)."""
    if not ctx.distributed:
        return flag
    return bool(all_sum(torch.tensor([float(flag)], device=ctx.device, dtype=torch.float64), ctx).item() > 0)
