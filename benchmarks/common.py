"""Shared benchmark helpers: the machine description, timing with device sync, the matmul reference
and the markdown table printer. Benchmarks print markdown so their output can go into the README as is.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

# Matmul side for the "peak" reference: big enough to reach the BLAS plateau, small enough for seconds.
CPU_MATMUL_SIZE = 2048
GPU_MATMUL_SIZE = 8192


def add_threads_arg(
    parser: argparse.ArgumentParser, default: str = "torch's choice, usually the core count"
) -> None:
    parser.add_argument("--threads", type=int, default=0, help=f"torch intra-op threads (default: {default})")


def add_run_args(parser: argparse.ArgumentParser, quick_help: str) -> None:
    """--device, --quick and --threads, shared by the scripts that run a model."""
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    add_threads_arg(parser)


def start(args: argparse.Namespace) -> torch.device:
    """Apply --threads and resolve --device."""
    apply_threads(args.threads)
    return resolve_device(args.device)


def apply_threads(threads: int) -> None:
    """Fewer threads than cores avoids stalls at every parallel region when other processes compete."""
    if threads > 0:
        torch.set_num_threads(threads)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine, use --device cpu")
    return device


def cpu_model() -> str:
    """The CPU's marketing name (first 'model name' of /proc/cpuinfo, else platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, str]:
    """What the numbers depend on: CPU, cores usable by this process, torch, threads, GPU."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    info = {
        "cpu": f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()})",
        "cores": f"{usable} usable of {os.cpu_count()}",
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "device": str(device),
    }
    if torch.cuda.is_available():
        index = device.index if device.type == "cuda" and device.index is not None else 0
        info["gpu"] = f"{torch.cuda.get_device_name(index)} (CUDA {torch.version.cuda})"
    else:
        info["gpu"] = "none"
    return info


def print_header(title: str, device: torch.device, notes: Sequence[str] = ()) -> None:
    """Markdown heading, the machine line and any notes (conventions, settings)."""
    info = machine_info(device)
    print(f"### {title}\n")
    print("Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + "\n")
    for note in notes:
        print(f"- {note}")
    if notes:
        print()


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table: columns whose cells all read as numbers are right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    right = [bool(cells) and all(_looks_numeric(r[i]) for r in cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right, strict=True)]
    return "\n".join([line(list(headers)), "|" + "|".join(rule) + "|", *(line(r) for r in cells)])


def _looks_numeric(text: str) -> bool:
    """'1,234', '71%', '3.2x', '-' (a missing number) all count as numbers."""
    if text == "-":
        return True
    try:
        float(text.replace(",", "").rstrip("%x"))
    except ValueError:
        return False
    return True


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock time covers it (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], reps: int, warmup: int, device: torch.device) -> list[float]:
    """Seconds of each of `reps` calls of `fn` after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def matmul_flops(
    device: torch.device, dtype: torch.dtype = torch.float32, size: int | None = None, reps: int = 5
) -> float:
    """Measured FLOP/s of one large square matmul (median of `reps`): the 'peak' MFU is relative to.

    On the CPU this is what BLAS reaches with the current thread count, a fairer reference on a
    shared or throttled machine than a datasheet number.
    """
    n = size or (GPU_MATMUL_SIZE if device.type == "cuda" else CPU_MATMUL_SIZE)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    times = time_calls(lambda: torch.matmul(a, b, out=out), reps, warmup=1, device=device)
    return 2.0 * n**3 / median(times)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def fmt(value: float, digits: int = 1) -> str:
    """Thousands separators for big numbers, `digits` decimals for small ones."""
    if value != value:  # NaN
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


__all__ = [
    "add_run_args",
    "add_threads_arg",
    "apply_threads",
    "fmt",
    "machine_info",
    "markdown_table",
    "matmul_flops",
    "median",
    "print_header",
    "resolve_device",
    "start",
    "sync",
    "time_calls",
    "verdict",
]
