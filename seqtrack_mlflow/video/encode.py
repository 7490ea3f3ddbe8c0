"""Writing what a person watches: a video a browser plays (H.264 in MP4, else VP9 in WebM, through
PyAV's bundled FFmpeg) and small looping GIFs (PIL) that the MLflow UI shows inline."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from seqtrack_mlflow.fileio import atomic_write

# (encoder, container suffix, encoder options), best first: browsers play both with yuv420p.
ENCODERS = (
    ("libx264", ".mp4", {"crf": "23", "preset": "veryfast"}),
    ("libvpx-vp9", ".webm", {"crf": "33", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}),
)
GIF_BYTES = 400_000  # a GIF is shrunk (fewer frames, then smaller) until it fits
GIF_COLORS = 128  # per frame: half the GIF maximum, a third smaller files, boxes and text still crisp


def pick_encoder() -> tuple[str, str, dict[str, str]] | None:
    """The first encoder of ENCODERS that this PyAV build has, or None."""
    available = av.codecs_available
    return next((enc for enc in ENCODERS if enc[0] in available), None)


class VideoWriter:
    """Frames of one size (RGB arrays) into `<stem>.mp4` (H.264) or `<stem>.webm` (VP9), yuv420p.

    yuv420p halves the chroma resolution, so both sides must be even: an odd one is padded with one
    repeated edge row or column. The MP4's index goes first (`+faststart`), so a browser starts
    playing before the whole file has arrived."""

    def __init__(self, stem: Path, width: int, height: int, fps: float | Fraction) -> None:
        encoder = pick_encoder()
        if encoder is None:
            raise RuntimeError("PyAV has neither libx264 nor libvpx-vp9: install the `av` wheel from PyPI")
        codec, suffix, options = encoder
        self.path = stem.with_suffix(suffix)
        self.codec = codec
        self.size = (width, height)
        self.frames = 0
        rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
        container_options = {"movflags": "+faststart"} if suffix == ".mp4" else {}
        self._container = av.open(str(self.path), "w", options=container_options)
        try:
            self._stream = self._container.add_stream(codec, rate=rate)
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = dict(options)
        except BaseException:
            self._container.close()
            raise

    def write(self, image: np.ndarray | Image.Image) -> None:
        arr = np.asarray(image)
        if arr.shape[1::-1] != self.size:
            raise ValueError(
                f"frame is {arr.shape[1]}x{arr.shape[0]}, the video {self.size[0]}x{self.size[1]}"
            )
        pad = ((0, arr.shape[0] % 2), (0, arr.shape[1] % 2), (0, 0))
        if any(p[1] for p in pad):
            arr = np.pad(arr, pad, mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (its index written)."""
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def gif_bytes(frames: list[Image.Image], frame_ms: int, colors: int = GIF_COLORS) -> bytes:
    """A looping GIF. Each frame gets its own palette from a fast octree quantizer without dithering:
    Pillow's own RGB conversion took 30 s for 33 frames of 320x180 here, this 0.1 s, and undithered
    flat areas compress better."""
    quantized = [
        f.convert("RGB").quantize(colors=colors, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        for f in frames
    ]
    buffer = io.BytesIO()
    quantized[0].save(
        buffer, format="GIF", save_all=True, append_images=quantized[1:], duration=frame_ms, loop=0
    )
    return buffer.getvalue()


def write_gif(frames: list[Image.Image], path: Path, frame_ms: int, max_bytes: int = GIF_BYTES) -> Path:
    """`frames` (RGB) as a looping GIF of at most `max_bytes`. While it is larger it loses, in turn,
    pixels down to 240 px, frames down to 16 (each kept one shown twice as long), pixels down to 160
    px, frames down to 8, then pixels: motion matters more in a preview than the last bit of detail."""
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    data = gif_bytes(frames, frame_ms)
    while len(data) > max_bytes and max(frames[0].size) > 32:
        side, count = max(frames[0].size), len(frames)
        if side > 240 or (count <= 16 and side > 160) or count <= 8:
            frames = [f.resize((max(1, f.width * 3 // 4), max(1, f.height * 3 // 4))) for f in frames]
        else:
            frames, frame_ms = frames[::2], frame_ms * 2
        data = gif_bytes(frames, frame_ms)
    return atomic_write(path, lambda f: f.write(data))


__all__ = ["ENCODERS", "GIF_BYTES", "VideoWriter", "gif_bytes", "pick_encoder", "write_gif"]
