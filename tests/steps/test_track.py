"""`track` on a user's video: a real H.264 mp4 encoded here with PyAV and a folder of PNG frames, both
made from synthetic LaSOT frames; the boxes are those of evaluate's tracker on the same decoded frames,
the outputs decode, the run records the input, and every bad input is one line with nothing written."""

from __future__ import annotations

import csv
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from factories import CLIP_FRAMES as FRAMES
from factories import CLIP_SIZE as SIZE
from factories import decoded, reference_boxes
from mlflow.tracking import MlflowClient
from PIL import Image

from seqtrack_mlflow.cli import main
from seqtrack_mlflow.config import TrackerConfig, VideoConfig, step_settings
from seqtrack_mlflow.evaluation.track_video import Excerpt
from seqtrack_mlflow.steps.track import run_track
from seqtrack_mlflow.video.encode import write_gif


def check_outputs(
    result, expected: np.ndarray, frames: list[np.ndarray], video_size: tuple[int, int]
) -> None:
    out = result.out_dir
    assert np.allclose(np.loadtxt(out / "boxes.txt", delimiter=","), expected, atol=0.0051, rtol=0)
    rows = list(csv.DictReader((out / "boxes.csv").open()))
    assert [int(r["frame"]) for r in rows] == list(range(FRAMES)) and rows[0]["confidence"] == ""
    assert all(float(r["confidence"]) > 0 for r in rows[1:])
    table = np.array([[float(r[k]) for k in "xywh"] for r in rows])
    assert np.allclose(table, expected, atol=0.0051, rtol=0)
    video = decoded(out / "tracked.mp4")
    assert len(video) == FRAMES and video[0].shape[1::-1] == video_size
    # The last frame's box is drawn: along its right edge (the confidence tag and the caption may cover
    # parts of the top and bottom edges) the pixels changed, orange-ish, while the rest of the frame is
    # the input within H.264's loss.
    height, width = frames[-1].shape[:2]
    change = np.abs(video[-1][:height, :width].astype(int) - frames[-1].astype(int))
    x, y, w, h = expected[-1]
    right, rows = int(x + w), slice(int(y) + 1, int(y + h) - 1)
    edge = video[-1][rows, max(right - 3, 0) : right].astype(int).mean(axis=1)
    assert np.median(change[rows, max(right - 3, 0) : right].sum(axis=2)) > 60
    assert np.median(edge[:, 0] - edge[:, 2]) > 40  # red over blue: orange, not the truth's blue
    assert np.median(change.sum(axis=2)) < 20
    with Image.open(out / "preview.gif") as gif:
        assert gif.n_frames >= 8 and max(gif.size) <= 320
    assert (out / "preview.gif").stat().st_size <= 400_000


def test_track_a_video_file(tiny_ckpt: Path, clip: Path, sequence, tmp_path: Path, mlflow_uri: str) -> None:
    box = sequence[1]
    result = run_track(
        VideoConfig(video=str(clip), box=box), str(tiny_ckpt), TrackerConfig(), output_dir=tmp_path / "out"
    )
    frames = decoded(clip)
    check_outputs(result, reference_boxes(tiny_ckpt, frames, box), frames, SIZE)
    run = MlflowClient().get_run(result.run_id)
    params = run.data.params
    for s in step_settings("track"):  # every setting of the step, with the value used
        assert s.name in params, s.name
    assert params["video"] == str(clip) and params["box"] == box and params["checkpoint"] == str(tiny_ckpt)
    assert params["checkpoint_uri"] == str(tiny_ckpt.resolve())
    assert (params["video_name"], params["video_size"], params["video_frames"]) == (
        "clip.mp4",
        "162x122",
        "10",
    )
    assert float(params["video_fps"]) == 25.0 and params["preset"] == "tiny"
    metrics = run.data.metrics
    assert metrics["frames"] == FRAMES and metrics["fps"] > 0
    assert metrics["mean_confidence"] == pytest.approx(result.tracked.mean_confidence)
    assert run.data.tags["seqtrack.train_run_id"] == "c" * 32
    names = {a.path for a in MlflowClient().list_artifacts(result.run_id)}
    assert names == {"boxes.txt", "boxes.csv", "tracked.mp4", "preview.gif"}
    times = [float(r["time_s"]) for r in csv.DictReader((result.out_dir / "boxes.csv").open())]
    assert times[:3] == [0.0, 0.04, 0.08]  # the file's own timestamps at 25 fps


def test_track_a_frame_folder(
    tiny_ckpt: Path, folder: Path, sequence, tmp_path: Path, mlflow_uri: str
) -> None:
    box = sequence[1]
    frames = [np.asarray(Image.open(folder / f"frame{i}.png")) for i in range(1, FRAMES + 1)]
    result = run_track(
        VideoConfig(video=str(folder), box=box, fps=10.0),
        str(tiny_ckpt),
        TrackerConfig(),
        output_dir=tmp_path / "out",
    )
    # Odd frames (161x121) are padded by one edge row and column for yuv420p.
    check_outputs(result, reference_boxes(tiny_ckpt, frames, box), frames, SIZE)
    params = MlflowClient().get_run(result.run_id).data.params
    assert (params["video_name"], params["video_size"], params["video_kind"]) == (
        "shots",
        "161x121",
        "frames",
    )
    assert params["fps"] == "10.0" and float(params["video_fps"]) == 10.0
    with av.open(str(result.out_dir / "tracked.mp4")) as container:
        assert container.streams.video[0].average_rate == 10


def test_max_frames_stops_early_and_says_how_many_the_input_has(
    tiny_ckpt: Path, clip: Path, sequence, tmp_path: Path, mlflow_uri: str
) -> None:
    result = run_track(
        VideoConfig(video=str(clip), box=sequence[1]),
        str(tiny_ckpt),
        TrackerConfig(max_frames=5),
        output_dir=tmp_path / "out",
    )
    assert np.loadtxt(result.out_dir / "boxes.txt", delimiter=",").shape == (5, 4)
    assert len(decoded(result.out_dir / "tracked.mp4")) == 5
    assert MlflowClient().get_run(result.run_id).data.params["video_frames"] == "10"


def test_a_clip_with_a_display_rotation_is_read_upright(tmp_path: Path) -> None:
    """A phone's portrait clip: landscape pixels plus a display matrix that turns them 90 degrees
    clockwise (written here into the MP4's track header, as a phone does). A player shows the stored
    left edge at the top: so must the frames the tracker and the box see."""
    import struct

    from seqtrack_mlflow.video.source import open_video

    stored = np.zeros((32, 64, 3), np.uint8)
    stored[:, :8] = 255  # a white stripe along the stored left edge
    path = tmp_path / "portrait.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        container.mux(stream.encode(None))
    data = bytearray(path.read_bytes())
    matrix = data.index(b"tkhd") - 4 + 48  # version-0 track header: the 3x3 matrix, 16.16 fixed point
    assert struct.unpack(">9i", data[matrix : matrix + 36])[::4] == (0x10000, 0x10000, 0x40000000)
    data[matrix : matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 32 << 16, 0, 0x40000000)
    path.write_bytes(bytes(data))
    with open_video(path) as source:
        assert (source.width, source.height) == (32, 64)
        frames = [f.image for f in source.frames()]
    assert len(frames) == 3 and frames[0].shape == (64, 32, 3)
    assert frames[0][:6].mean() > 200 and frames[0][12:].mean() < 60  # the stripe is on top


@pytest.mark.parametrize(
    ("video", "box", "message"),
    [
        ("missing.mp4", None, "video=missing.mp4: no such file or folder: give a video file"),
        ("fake.mp4", None, "fake.mp4 is not a video PyAV can read (Invalid data found"),
        ("empty", None, "empty holds no JPEG/PNG frames: give a video file"),
        (
            "clip",
            "150,100,40,40",
            "box=150,100,40,40 lies outside the first frame of clip.mp4 (162x122 pixels)",
        ),
        ("clip", "-1,10,20,20", "box=-1,10,20,20 lies outside the first frame"),
        ("clip", "10,10,0,5", "box=10,10,0,5 is invalid: use x,y,w,h in pixels of the first frame"),
        ("clip", "10,10,20,-5", "box=10,10,20,-5 is invalid"),
        ("clip", "1,2,3", "box=1,2,3 is invalid: use x,y,w,h"),
        ("clip", "a,b,c,d", "box=a,b,c,d is invalid"),
        ("clip", "1,2,nan,4", "box=1,2,nan,4 is invalid"),
    ],
)
def test_bad_inputs_are_one_line_and_write_nothing(
    video: str, box: str | None, message: str, tiny_ckpt: Path, clip: Path, tmp_path: Path
) -> None:
    (tmp_path / "fake.mp4").write_text("this is a text file, not a video\n")
    (tmp_path / "empty").mkdir()
    args = ["track", "--video", str(clip) if video == "clip" else video, "--box", box or "10,10,20,20"]
    result = CliRunner().invoke(main, [*args, "--checkpoint", str(tiny_ckpt)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "outputs").exists()  # no run folder
    assert not (tmp_path / "mlflow.db").exists()  # no run: the tracking store was never opened


def test_a_missing_video_box_or_checkpoint_is_one_line(tmp_path: Path, clip: Path) -> None:
    for args, name in (
        (["--box", "1,1,5,5", "--checkpoint", "x.ckpt"], "-P video="),
        (["--video", str(clip), "--checkpoint", "x.ckpt"], "-P box="),
        (["--video", str(clip), "--box", "1,1,5,5"], "-P checkpoint="),
    ):
        result = CliRunner().invoke(main, ["track", *args])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1 and name in result.stderr, (
            result.stderr
        )


def test_the_preview_keeps_a_bounded_spread_of_a_stream_of_unknown_length() -> None:
    excerpt = Excerpt(32)
    for index in range(1000):
        if excerpt.wants(index):
            excerpt.add(index, Image.new("RGB", (4, 4)))
    kept = [i for i, _ in excerpt.kept]
    assert 16 < len(kept) <= 32 and kept[0] == 0 and kept[-1] >= 900
    assert len(set(np.diff(kept))) == 1  # evenly spaced


def test_a_gif_over_its_budget_shrinks_until_it_fits_keeping_some_motion(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 255, (180, 320, 3), dtype=np.uint8)) for _ in range(32)]
    path = write_gif(noise, tmp_path / "noise.gif", 100, max_bytes=150_000)
    assert path.stat().st_size <= 150_000
    with Image.open(path) as gif:
        assert 8 <= gif.n_frames <= 16 and gif.size[0] < 320


def test_without_libx264_the_video_is_vp9_webm_and_odd_sizes_are_padded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seqtrack_mlflow.video import encode

    monkeypatch.setattr(encode, "ENCODERS", tuple(e for e in encode.ENCODERS if e[0] != "libx264"))
    rng = np.random.default_rng(1)
    with encode.VideoWriter(tmp_path / "tracked", 33, 21, 12.5) as writer:
        for _ in range(5):
            writer.write(rng.integers(0, 255, (21, 33, 3), dtype=np.uint8))
    assert writer.path == tmp_path / "tracked.webm"
    with av.open(str(writer.path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "vp9" and (stream.width, stream.height) == (34, 22)
        assert sum(1 for _ in container.decode(stream)) == 5
