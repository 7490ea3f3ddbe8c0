"""MLflow logging overhead: training time per sample with and without the trainer's 50-sample report.

Training steps are the trainer's (see train_throughput.py) on fixed random tensors of the `tiny`
preset. After every 50 samples a report is computed in both variants (the host sync for loss and IoU,
as the trainer does); only the "with" variant then calls `RunLogger.log_metrics` (asynchronous MLflow
logging to a SQLite store in a temporary folder). Blocks of 50 samples with and without logging
alternate in ABBA order within one process, so drift and background load hit both alike.

    python benchmarks/logging_overhead.py             # defaults: well under a minute on 2 CPU cores
    python benchmarks/logging_overhead.py --quick     # seconds: checks the script runs
    python benchmarks/logging_overhead.py --samples 2000
    python benchmarks/logging_overhead.py --via client   # MlflowClient.log_batch, without RunLogger
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import mlflow
import torch
from common import (
    add_run_args,
    markdown_table,
    median,
    print_header,
    start,
    sync,
    verdict,
)
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from train_throughput import make_step, model_config

from seqtrack_mlflow.config import preset
from seqtrack_mlflow.tracking import RunLogger
from seqtrack_mlflow.train.progress import Report, report_metrics

TARGET_OVERHEAD = 0.01  # MLflow logging < 1 % of training time
PRESET = "tiny"
VIA = {"runlogger": "RunLogger.log_metrics (the trainer's call)", "client": "MlflowClient.log_batch"}


def client_logger(run_id: str) -> Callable[..., None]:
    """Asynchronous logging without the fluent API's per-call `get_run` (a synchronous DB query)."""
    client = MlflowClient()

    def log_metrics(metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        client.log_batch(run_id, metrics=batch, synchronous=False)

    return log_metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--samples",
        type=int,
        default=0,
        help="timed samples per variant, a multiple of --log-every (default 400; quick 100)",
    )
    p.add_argument("--log-every", type=int, default=0, help="samples per report (default: the preset's 50)")
    p.add_argument("--batch", type=int, default=0, help="batch size (default: the preset's 10)")
    p.add_argument(
        "--via",
        choices=("runlogger", "client"),
        default="runlogger",
        help="runlogger: RunLogger.log_metrics, the trainer's path (default); client: "
        "MlflowClient.log_batch(synchronous=False) directly, for comparison",
    )
    add_run_args(p, "100 samples per variant: a check that it runs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = start(args)
    model_cfg, train_cfg = preset(PRESET)
    log_every = args.log_every or train_cfg.log_every
    batch = args.batch or train_cfg.batch_size
    steps_per_block = max(1, -(-log_every // batch))  # a report is due once log_every samples passed
    samples = args.samples or (100 if args.quick else 400)
    pairs = max(1, round(samples / (steps_per_block * batch)))  # one block of each variant per pair
    cfg = model_config(PRESET, model_cfg.patch_size, model_cfg.search_size)
    step = make_step(cfg, batch, "fp32", device, grad_clip=train_cfg.grad_clip)

    with tempfile.TemporaryDirectory(prefix="seqtrack-bench-") as tmp:
        os.environ.pop("MLFLOW_RUN_ID", None)
        mlflow.set_tracking_uri(f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        mlflow.set_experiment("logging-overhead")  # creates the store (schema migrations: untimed)
        run = mlflow.start_run(run_name="logging-overhead")
        logger = RunLogger(run.info.run_id)
        log_metrics = logger.log_metrics if args.via == "runlogger" else client_logger(run.info.run_id)
        times: dict[bool, list[float]] = {True: [], False: []}
        call_times: list[float] = []
        done = 0
        start_all = time.perf_counter()

        def block(log: bool) -> None:
            """`steps_per_block` steps, then the report (and with `log`, the MLflow call); timed."""
            nonlocal done
            sync(device)
            start = time.perf_counter()
            window = torch.zeros(2, dtype=torch.float64, device=device)
            for _ in range(steps_per_block):
                window += step() * batch
            before, done = done, done + steps_per_block * batch
            loss, iou = (window / (steps_per_block * batch)).tolist()  # the trainer's report sync
            now = time.perf_counter()
            report = Report(
                epoch=1,
                epoch_samples=done,
                epoch_total=10**9,
                window_samples=done - before,
                window_seconds=now - start,
                since_start_seconds=now - start_all,
                epoch_seconds=now - start_all,
                global_step=done,
                loss=loss,
                iou=iou,
                log_every=log_every,
            )
            if log:
                call = time.perf_counter()
                log_metrics(report_metrics(report), step=report.global_step)
                call_times.append(time.perf_counter() - call)
            times[log].append(time.perf_counter() - start)

        try:
            # Warm-up: one block each (allocator, first async call starts MLflow's logging thread).
            first = time.perf_counter()
            block(True)
            first_block = time.perf_counter() - first
            first_call = call_times.pop()
            block(False)
            times[True].clear()
            times[False].clear()
            for pair in range(pairs):
                order = (True, False) if pair % 2 == 0 else (False, True)
                for log in order:
                    block(log)
            flush = time.perf_counter()
            logger.flush()
            flush_s = time.perf_counter() - flush
        finally:
            mlflow.end_run()
        logged = len(MlflowClient().get_metric_history(run.info.run_id, "loss"))

    with_s, without_s = sum(times[True]), sum(times[False])
    per_block = steps_per_block * batch
    n = len(times[True]) * per_block
    overhead = median(times[True]) / median(times[False]) - 1.0  # medians: robust to load spikes
    direct = sum(call_times) / without_s
    print_header(
        "MLflow logging overhead",
        device,
        [
            f"preset {PRESET}, batch {batch}, a report every {per_block} samples; {n} timed samples per "
            f"variant in {2 * pairs} alternating (ABBA) blocks; warm-up blocks excluded; overhead = ratio "
            "of the median block times",
            f"with = {VIA[args.via]}, asynchronous, to a SQLite store after every report",
            f"first log call (starts the async logger): {first_call * 1e3:.1f} ms in a {first_block:.2f} s "
            f"block; final flush: {flush_s * 1e3:.1f} ms; loss points in the store: {logged} "
            f"(expected {len(call_times) + 1})",
        ],
    )
    rows = [
        ["without MLflow", n, f"{without_s:.2f}", f"{without_s / n * 1e3:.2f}", "-", "-"],
        [
            "with MLflow",
            n,
            f"{with_s:.2f}",
            f"{with_s / n * 1e3:.2f}",
            f"{sum(call_times) / len(call_times) * 1e3:.2f}",
            f"{overhead:+.2%}",
        ],
    ]
    print(markdown_table(["variant", "samples", "seconds", "ms/sample", "ms per log call", "overhead"], rows))
    print()
    print(f"log_metrics calls alone: {direct:.3%} of training time")
    print(
        f"target (MLflow logging < {TARGET_OVERHEAD:.0%} of training time): end-to-end {overhead:+.2%} "
        f"-> {verdict(overhead < TARGET_OVERHEAD)}"
    )


if __name__ == "__main__":
    main()
