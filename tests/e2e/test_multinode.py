"""Two "nodes" on 127.0.0.1: two `torchrun --nnodes 2 --node_rank R` launches, each with its own output
folder and its own data cache (as separate machines have), sharing only the tracking store (as real nodes
share the tracking server). One MLflow run, the checkpoint on node 0 only, reports counting both nodes'
samples; then a resume by run id on both nodes continues the same run."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from mlflow.tracking import MlflowClient
from services import free_port, torchrun_nodes

from seqtrack_mlflow.tracking import stored_file

TRAIN = [
    "train", "--preset", "tiny", "--seed", "8", "--source", "synthetic", "--device", "cpu",
    "--search_size", "32", "--template_size", "32", "--epochs", "1", "--samples_per_epoch", "40",
    "--batch_size", "5", "--log_every", "10", "--system_metrics", "false", "--synthetic_frames", "30",
]  # fmt: skip


def reports(log: Path, epoch: int) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith(f"Epoch {epoch} : ")]


def test_two_nodes_train_checkpoint_and_resume(tmp_path: Path, mlflow_uri: str) -> None:
    outs = [tmp_path / f"node{r}" / "outputs" for r in (0, 1)]
    caches = [tmp_path / f"node{r}" / "cache" for r in (0, 1)]
    envs = [{"SEQTRACK_CACHE": str(c)} for c in caches]  # each node its own cache, as on separate machines

    start = time.monotonic()
    first = torchrun_nodes(
        free_port(),
        [([*TRAIN, "--output_dir", str(o)], e) for o, e in zip(outs, envs, strict=True)],
        tmp_path,
    )
    print(f"train on 2 nodes: {time.monotonic() - start:.0f}s")
    for rank, (rc, log) in enumerate(first):
        assert rc == 0, f"node {rank}:\n{log[-3000:]}"

    client = MlflowClient()
    runs = client.search_runs(experiment_ids=["0"])
    assert len(runs) == 1  # only global rank 0 (node 0 under static rendezvous) talks to MLflow
    run_id = runs[0].info.run_id
    assert runs[0].data.tags["seqtrack.world_size"] == "2"
    assert runs[0].info.status == "FINISHED"
    assert [p.name for p in outs[0].iterdir()] == [run_id]
    assert stored_file(run_id, "checkpoints/epoch_1.ckpt") is not None  # the local store: the one copy
    assert not (outs[0] / run_id / "checkpoints" / "epoch_1.ckpt").exists()
    assert not outs[1].exists() or not any(outs[1].rglob("*")), "node 1 wrote into its output folder"
    assert [f.path for f in client.list_artifacts(run_id, "checkpoints")] == ["checkpoints/epoch_1.ckpt"]
    # Node 1 selected the data itself (after rank 0 prepared it) into its own cache.
    for cache in caches:
        assert list((cache / "synthetic").glob("*/*")), f"no data prepared in {cache}"
    # 2 nodes x batch 5 = 10 samples per step: the reports count the samples of both nodes.
    assert reports(outs[0] / run_id / "training_log.txt", 1) == [
        f"Epoch 1 : {n} / 40" for n in (10, 20, 30, 40)
    ]
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [10, 20, 30, 40]

    # Resume on both nodes by run id; node 1 finds its cache gone (a fresh machine) and prepares the data
    # again in its own folder ($SEQTRACK_CACHE wins over the folder node 0 recorded in the checkpoint).
    shutil.rmtree(caches[1])
    resume = ["train", "--resume", run_id, "--epochs", "2", "--device", "cpu", "--system_metrics", "false"]
    start = time.monotonic()
    second = torchrun_nodes(
        free_port(),
        [([*resume, "--output_dir", str(o)], e) for o, e in zip(outs, envs, strict=True)],
        tmp_path,
    )
    print(f"resume on 2 nodes: {time.monotonic() - start:.0f}s")
    for rank, (rc, log) in enumerate(second):
        assert rc == 0, f"node {rank}:\n{log[-3000:]}"

    runs = client.search_runs(experiment_ids=["0"])
    assert [r.info.run_id for r in runs] == [run_id]  # the same run, continued
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["seqtrack.resumed_from"] == run_id
    names = [f.path for f in client.list_artifacts(run_id, "checkpoints")]
    assert names == ["checkpoints/epoch_1.ckpt", "checkpoints/epoch_2.ckpt"]
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [10, 20, 30, 40, 50, 60, 70, 80]
    assert [m.step for m in client.get_metric_history(run_id, "epoch_loss")] == [40, 80]
    assert reports(outs[0] / run_id / "training_log.txt", 2) == [
        f"Epoch 2 : {n} / 40" for n in (10, 20, 30, 40)
    ]
    assert stored_file(run_id, "checkpoints/epoch_2.ckpt") is not None
    # Every rank resolves the run id through the tracking store (hence every node needs
    # MLFLOW_TRACKING_URI): a local artifact store is read in place (a remote one is downloaded into
    # downloads/rank<N>/); node 1 wrote no checkpoint or run folder of its own.
    assert [str(p.relative_to(outs[1])) for p in sorted(outs[1].rglob("*")) if p.is_file()] == []
    assert list((caches[1] / "synthetic").glob("*/*")), "node 1 did not prepare the data in its own cache"
