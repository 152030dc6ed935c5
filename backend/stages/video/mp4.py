"""video.mp4: H.264 (libx264, yuv420p) through PyAV, whose wheels bundle FFmpeg with libx264."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_mp4(path: Path, frames: np.ndarray, fps: int, crf: int = 18) -> dict:
    """[T, H, W, 3] uint8 frames (H, W even) -> an H.264 MP4 at `fps`. Returns what was written."""
    import av

    frames = np.ascontiguousarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be [T, H, W, 3] uint8, got {frames.dtype} {list(frames.shape)}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 in yuv420p needs an even frame size, got {w}x{h}")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return {"codec": "h264", "encoder": "libx264", "frames": int(t), "width": int(w), "height": int(h), "fps": int(fps)}


def read_mp4(path: Path) -> tuple[np.ndarray, str]:
    """Decode every frame: ([T, H, W, 3] uint8, codec name)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return np.stack(frames), codec
