"""Video decoding: OpenCV first, PyAV where OpenCV's header or decoder fails; stills and image
sequences beside videos.

    probe(path) -> VideoInfo(fps, frames, width, height)
    read_frames(path, stride=1) -> iterator of BGR uint8 frames (H x W x 3)
    frame_times(path) -> seconds of every frame, from the packets' timestamps
    open_media(path) -> Media: a video, one still image, or a folder of images in name order

Wherever a video is accepted, a folder of images is too: its images, in natural name order
(9.jpg before 10.jpg), are the frames (BP4D and CK+ store their sessions so), at SEQUENCE_FPS.

OpenCV reads the frame count and fps from the container header. Some containers have no
usable header: a browser's MediaRecorder writes live webm without duration, for which OpenCV
reports a count of about -9e18 and fps 1000. In that case the frames are counted by decoding
them (PyAV) and the fps is taken from the packet timestamps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from facs.errors import FacsError

# Header values outside these ranges are treated as lies and measured instead.
_MAX_PLAUSIBLE_FRAMES = 10_000_000
_MAX_PLAUSIBLE_FPS = 300.0


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    frames: int
    width: int
    height: int


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FacsError(f"{path}: no such file")
    if not path.is_file():
        raise FacsError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise FacsError(f"{path}: empty file, not a video")


def _open_cv(path: Path) -> cv2.VideoCapture | None:
    cap = cv2.VideoCapture(os.fspath(path))
    if not cap.isOpened():
        cap.release()
        return None
    return cap


def _av_open(path: Path):
    """Open `path` with PyAV; FacsError naming the file if it is no video at all."""
    import av

    try:
        container = av.open(os.fspath(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise FacsError(f"{path}: not a readable video ({exc.__class__.__name__})") from None
    if not container.streams.video:
        container.close()
        raise FacsError(f"{path}: has no video stream")
    return container


def _av_scan(path: Path) -> tuple[int, list[float], int, int]:
    """Decode every frame with PyAV: (count, timestamps in s, width, height)."""
    import av

    with _av_open(path) as container:
        count, times, width, height = 0, [], 0, 0
        try:
            for frame in container.decode(container.streams.video[0]):
                count += 1
                width, height = frame.width, frame.height
                if frame.pts is not None and frame.time_base is not None:
                    times.append(float(frame.pts * frame.time_base))
        except av.error.FFmpegError:
            pass  # truncated or corrupt tail: keep the frames that decoded
    if count == 0:
        raise FacsError(f"{path}: no frame could be decoded (corrupt, truncated or not a video)")
    return count, times, width, height


def _fps_from_times(times: list[float], fallback: float) -> float:
    """Frames per second from presentation timestamps (robust to a jittery last frame)."""
    ts = np.unique(np.asarray(times, dtype=np.float64))
    if len(ts) < 2:
        return fallback
    dt = np.diff(ts)
    span = ts[-1] - ts[0]
    if span <= 0:
        return fallback
    # Variable-rate recordings (MediaRecorder) have uneven steps: use the mean rate.
    return float((len(ts) - 1) / span) if np.median(dt) > 0 else fallback


def probe(path: str | Path, exact: bool = False) -> VideoInfo:
    """Frame rate, frame count and size of a video.

    The header's count is used when plausible; with `exact=True`, or when the header is
    implausible (negative, huge, fps >= 300), frames are counted by decoding them.
    Raises FacsError naming the file when nothing decodes.
    """
    path = Path(path)
    if path.is_dir():
        files = _sequence(path)
        h, w = read_image(files[0]).shape[:2]
        return VideoInfo(fps=SEQUENCE_FPS, frames=len(files), width=w, height=h)
    _check_file(path)
    cap = _open_cv(path)
    fps = 0.0
    if cap is not None:
        try:
            ok, frame = cap.read()
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        finally:
            cap.release()
        plausible = 0 < count < _MAX_PLAUSIBLE_FRAMES and 0 < fps < _MAX_PLAUSIBLE_FPS
        if ok and plausible and not exact:
            h, w = frame.shape[:2]
            return VideoInfo(fps=fps, frames=count, width=w, height=h)
    n, times, w, h = _av_scan(path)
    fallback = fps if 0 < fps < _MAX_PLAUSIBLE_FPS else 25.0
    return VideoInfo(fps=_fps_from_times(times, fallback), frames=n, width=w, height=h)


def _read_cv(path: Path, stride: int) -> Iterator[np.ndarray]:
    cap = _open_cv(path)
    if cap is None:
        return
    try:
        i = 0
        while True:
            if i % stride == 0:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame
            elif not cap.grab():  # skip without converting the frame to BGR
                return
            i += 1
    finally:
        cap.release()


def _read_av(path: Path, stride: int) -> Iterator[np.ndarray]:
    import av

    with _av_open(path) as container:
        try:
            for i, frame in enumerate(container.decode(container.streams.video[0])):
                if i % stride == 0:
                    yield frame.to_ndarray(format="bgr24")
        except av.error.FFmpegError:
            return  # truncated tail: stop at the last frame that decoded


def read_frames(path: str | Path, stride: int = 1) -> Iterator[np.ndarray]:
    """Yield every `stride`-th frame (0, stride, 2*stride, ...) as BGR uint8 H x W x 3.

    OpenCV decodes when it can read the first frame; otherwise PyAV. Raises FacsError naming
    the file when no frame decodes at all.
    """
    if stride < 1:
        raise FacsError(f"stride must be >= 1, got {stride}")
    path = Path(path)
    if path.is_dir():
        for f in _sequence(path)[::stride]:
            yield read_image(f)
        return
    _check_file(path)
    got = False
    for frame in _read_cv(path, stride):
        got = True
        yield frame
    if got:
        return
    for frame in _read_av(path, stride):
        got = True
        yield frame
    if not got:
        raise FacsError(f"{path}: no frame could be decoded (corrupt, truncated or not a video)")


def read_all(path: str | Path, stride: int = 1) -> np.ndarray:
    """All (strided) frames as one N x H x W x 3 uint8 array."""
    frames = list(read_frames(path, stride))
    return np.stack(frames)


def frame_times(path: str | Path) -> np.ndarray:
    """Presentation time in seconds of every frame, from PyAV's timestamps (first frame = 0).

    Where a container has no timestamps, times are index / fps.
    """
    path = Path(path)
    if path.is_dir():
        return np.arange(len(_sequence(path)), dtype=np.float64) / SEQUENCE_FPS
    _check_file(path)
    n, times, _, _ = _av_scan(path)
    if len(times) == n:
        t = np.asarray(times, dtype=np.float64)
        return t - t[0]
    info = probe(path)
    return np.arange(n, dtype=np.float64) / info.fps


# --------------------------------------------------------------------------- stills, sequences

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SEQUENCE_FPS = 30.0  # an image sequence's frame rate unless told (CK+ was filmed at 30)


@dataclass(frozen=True)
class Media:
    """What `facs analyze` reads: a video file, one still image, or a folder of images taken
    as the frames of one video in name order (as CK+ stores its sessions)."""

    path: Path
    kind: str  # "video" | "image" | "sequence"
    fps: float
    frames: int
    width: int
    height: int
    files: tuple[Path, ...] = ()

    def read(self) -> Iterator[np.ndarray]:
        """Every frame as BGR uint8."""
        if self.kind == "video":
            yield from read_frames(self.path)
            return
        for f in self.files:
            yield read_image(f)


def read_image(path: str | Path) -> np.ndarray:
    """One image file as BGR uint8 (grey images are converted)."""
    path = Path(path)
    _check_file(path)
    img = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FacsError(f"{path}: not a readable image (corrupt or not an image format)")
    return img


def natural_key(name: str) -> list:
    """Sort key of a name in natural order: its digit runs compare as numbers (9 before 10)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


def image_files(folder: Path) -> list[Path]:
    """The image files of a folder in natural name order (frame 9 before frame 10)."""
    return sorted(
        (f for f in Path(folder).iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS),
        key=lambda f: natural_key(f.name),
    )


def _sequence(folder: Path) -> list[Path]:
    files = image_files(folder)
    if not files:
        raise FacsError(f"{folder}: folder holds no image files ({', '.join(sorted(IMAGE_EXTS))})")
    return files


def open_media(path: str | Path, fps: float | None = None) -> Media:
    """A video, a still (by its extension) or a folder of images as a frame sequence."""
    path = Path(path)
    if path.is_dir():
        files = _sequence(path)
        h, w = read_image(files[0]).shape[:2]
        rate = fps or SEQUENCE_FPS
        return Media(path, "sequence", rate, len(files), w, h, tuple(files))
    if path.suffix.lower() in IMAGE_EXTS:
        h, w = read_image(path).shape[:2]
        return Media(path, "image", 0.0, 1, w, h, (path,))
    info = probe(path)
    return Media(path, "video", fps or info.fps, info.frames, info.width, info.height)


# --------------------------------------------------------------------------- is it a video?

# Leading bytes of the containers a camera, phone or browser writes (offset, magic).
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "mp4/mov"),
    (4, b"moov", "mov"),
    (4, b"mdat", "mov"),
    (4, b"wide", "mov"),
    (0, b"\x1a\x45\xdf\xa3", "webm/mkv"),
    (0, b"RIFF", "avi"),
    (0, b"OggS", "ogg"),
    (0, b"FLV", "flv"),
    (0, b"\x00\x00\x01\xba", "mpeg-ps"),
    (0, b"\x30\x26\xb2\x75", "asf/wmv"),
    (0, b"YUV4MPEG2", "y4m"),
)


MAX_FPS = 120  # frames per second of clip length an upload may hold

_STILL_FORMATS = {"image2", "gif", "apng", "webp"}


class MediaError(FacsError):
    """A file that is not a video facs can analyse. `status` is the HTTP status the server
    answers with (415: not a video; 422: broken, truncated or too long); `message` says what is
    wrong without the path (a server never shows its own file names)."""

    def __init__(self, status: int, message: str, path: Path | None = None):
        super().__init__(f"{path}: {message}" if path is not None else message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ClipCheck:
    """What decoding a video found."""

    container: str
    codec: str
    width: int
    height: int
    frames: int
    duration: float  # seconds, from the decoded frames' timestamps
    # presentation time of every frame, first frame = 0
    times: tuple[float, ...] = field(default=(), repr=False)


def sniff(path: Path) -> str | None:
    """The container family named by the file's leading bytes, or None."""
    with open(path, "rb") as f:
        head = f.read(16)
    for offset, magic, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


def check_video(path: Path, max_seconds: float = float("inf")) -> ClipCheck:
    """The one judgment of what a video is, for `facs analyze` and the server: decode the
    whole file once; raise MediaError(415/422, naming the file) for what cannot be analysed.

    Not a video (415): empty, nothing a demuxer knows, no video stream, a still image (also one
    renamed .mp4), a single frame. Broken (422): a known container that cannot be opened or
    decodes no frame, decoding that fails part-way, a container that promises more frames
    (header count) or more time (header duration) than decode, longer than `max_seconds`.
    """
    path = Path(path)
    if not path.is_file():
        raise FacsError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        return _check_video(path, max_seconds)
    except MediaError as exc:
        raise MediaError(exc.status, exc.message, path) from None


def _check_video(path: Path, max_seconds: float) -> ClipCheck:
    if path.stat().st_size == 0:
        raise MediaError(415, "an empty file, not a video")
    family = sniff(path)
    try:
        container = av.open(os.fspath(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        if family:
            raise MediaError(
                422, f"broken or truncated {family} file: it cannot be opened"
            ) from None
        raise MediaError(415, "not a video: no known video container in the file") from None
    with container:
        if not container.streams.video:
            raise MediaError(415, "not a video: the file holds no video stream")
        if container.format.name in _STILL_FORMATS or container.format.name.endswith("_pipe"):
            raise MediaError(415, "not a video: a still image")
        stream = container.streams.video[0]
        header_frames = int(stream.frames or 0)
        header_duration = (
            float(container.duration) / av.time_base if container.duration is not None else None
        )
        if header_duration is not None and header_duration > max_seconds + 0.5:
            raise MediaError(
                422, f"clip too long: {header_duration:.1f} s (the limit is {max_seconds:g} s)"
            )
        frames, first, last, step = 0, None, None, None
        times: list[float] = []
        width = height = 0
        failed = None
        try:
            for frame in container.decode(stream):
                frames += 1
                width, height = frame.width, frame.height
                if frame.pts is not None and frame.time_base is not None:
                    t = float(frame.pts * frame.time_base)
                    times.append(t)
                    first = t if first is None else min(first, t)
                    if last is not None and t > last:
                        step = t - last
                    last = t if last is None else max(last, t)
                    if last - first > max_seconds:
                        raise MediaError(
                            422, f"clip too long: more than {max_seconds:g} s of video"
                        )
                if frames > MAX_FPS * max_seconds:
                    # A tiny file can hold a huge number of frames (absurd frame rates).
                    raise MediaError(422, f"too many frames for {max_seconds:g} s of video")
        except av.error.FFmpegError as exc:
            failed = exc
        fmt, codec = container.format.name, stream.codec_context.name
    if frames == 0:
        raise MediaError(422, f"broken {family or fmt} file: no frame could be decoded")
    if failed is not None:
        raise MediaError(422, f"broken or truncated video: decoding stopped after {frames} frames")
    if frames == 1:
        raise MediaError(415, "not a video: a single still frame")
    # Headers are approximate (edit lists, variable rate): only a clear shortfall counts.
    if header_frames > 1 and frames < 0.8 * header_frames:
        raise MediaError(
            422, f"truncated video: the header promises {header_frames} frames, {frames} decode"
        )
    span = (last - first) if first is not None and last is not None else 0.0
    frame_step = step or 0.04
    if header_duration is not None and header_duration > 1.25 * (span + frame_step) + 0.25:
        raise MediaError(
            422,
            f"truncated video: the header promises {header_duration:.1f} s, "
            f"{span + frame_step:.1f} s decode",
        )
    rel = tuple(t - first for t in times) if len(times) == frames and first is not None else ()
    return ClipCheck(fmt, codec, width, height, frames, span + frame_step, rel)
