"""Media handling of the web demo: checking uploads by decoding them, and example clips.

Uploads are judged by their bytes, never by their names, by facs.video.check_video (the same
judgment as `facs analyze`): MediaError 415 (not a video) or 422 (broken, truncated, too long).

Example clips come from the embedded corpus (`data/synth`, MJPG AVI) and from the real face
clips of facs.datasets.realfaces. Browsers play neither MJPG AVI nor HEVC MOV, so those are
transcoded once to VP8 webm (PyAV) into a cache folder, keeping every frame's timestamp so that
the page's `video.currentTime` and the analysis' per-frame times agree.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from facs.aus import sort_codes
from facs.datasets.clips import event_spans
from facs.datasets.mmi import OAO_SUFFIX, read_oao_xml
from facs.datasets.realfaces import load_labels
from facs.errors import FacsError
from facs.video import probe

# ---------------------------------------------------------------------------------------------
# Example clips


@dataclass
class Example:
    """One example clip the page offers; `id` is the only thing a request may name."""

    id: str
    title: str
    source: str  # "synthetic" or "real"
    path: Path
    description: str = ""  # what the clip shows, in full
    annotated: list[str] = field(default_factory=list)  # AU codes of the clip's annotation
    # {code: [[first, last], ...]}: frames where the annotation says the AU is on
    spans: dict[str, list[list[int]]] = field(default_factory=dict)

    def public(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description or self.title,
            "source": self.source,
            "annotated": self.annotated,
            "annotation": self.spans,
            "video_url": f"/api/examples/{self.id}/video",
        }


_ID_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
EXAMPLE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
REAL_VIDEOS = ("single_face.mp4", "WolfgangLanger_Pexels.mp4", "face_noface.mov",
               "noface_face.mov", "no_face.mp4")  # fmt: skip


def _annotation(video: Path) -> dict[str, list[list[int]]]:
    """A synthetic clip's annotated AUs as frame spans, read from its OAO XML by the MMI
    reader (facs.datasets.mmi), the file the training labels come from."""
    xml = video.with_name(video.stem + OAO_SUFFIX)
    try:
        frames = probe(video).frames
        events = read_oao_xml(xml, frames)
    except (FacsError, OSError):
        return {}
    spans = {code: [list(sp) for sp in event_spans(evs, frames)] for code, evs in events.items()}
    return {code: spans[code] for code in sort_codes(spans) if spans[code]}


def _real_descriptions() -> dict[str, str]:
    """What each real clip shows: its description in the real-face labels, written by someone
    who watched it (titles come from the clip, not from guesses)."""
    out = {}
    for src in load_labels()["sources"]:
        for f in src["files"]:
            if f["file"] in REAL_VIDEOS:
                out[f["file"]] = f["description"][0].upper() + f["description"][1:]
    return out


def _title(description: str) -> str:
    """A card title: the description without its parenthesised details."""
    return re.sub(r"\s*\([^)]*\)", "", description).strip()


def list_examples(synth_root: Path | None, real_dir: Path | None, synth_count: int = 4) -> list:
    """Examples present on disk: a few synthetic clips with the most AUs, then the real clips.

    Nothing is fetched or generated here; a missing folder just contributes no examples.
    """
    out: list[Example] = []
    if synth_root is not None and (synth_root / "Sessions").is_dir():
        clips = sorted((synth_root / "Sessions").glob("*/*.avi"))
        scored = [(c, _annotation(c)) for c in clips[:200]]
        # Clips with more annotated AUs make livelier examples; ties keep corpus order.
        scored.sort(key=lambda item: -len(item[1]))
        for clip, spans in scored[:synth_count]:
            aus = ", ".join(f"AU{c}" for c in spans)
            out.append(
                Example(
                    id="synth-" + _ID_SAFE.sub("_", clip.stem),
                    title=f"Drawn face {clip.stem}",
                    description=f"A drawn face of the synthetic corpus: {aus or 'no AU'}",
                    source="synthetic",
                    path=clip,
                    annotated=list(spans),
                    spans=spans,
                )
            )
    if real_dir is not None and real_dir.is_dir():
        described = _real_descriptions()
        for name in REAL_VIDEOS:
            clip = real_dir / name
            if clip.is_file():
                out.append(
                    Example(
                        id="real-" + _ID_SAFE.sub("_", Path(name).stem),
                        title=_title(described.get(name, name)),
                        description=described.get(name, name),
                        source="real",
                        path=clip,
                    )
                )
    return out


def browser_mime(container: str, codec: str) -> str | None:
    """The MIME type under which browsers play a video of this container (PyAV's format name)
    and codec as it is (H.264 in MP4/MOV, VP8/VP9 in webm), else None."""
    if codec == "h264" and "mp4" in container:
        return "video/mp4"
    if codec in ("vp8", "vp9") and "webm" in container:
        return "video/webm"
    return None


def playable_natively(src: Path) -> tuple[bool, str]:
    """Whether browsers play the file as it is, and the MIME type to serve it with."""
    with av.open(os.fspath(src)) as c:
        mime = browser_mime(c.format.name, c.streams.video[0].codec_context.name)
    return mime is not None, mime or "video/webm"


_transcode_lock = threading.Lock()


def browser_playable(src: Path, cache: Path) -> tuple[Path, str]:
    """A file the browser can play for `src`, and its MIME type: `src` itself when browsers
    play it, else a VP8 webm made once in `cache` (named after the source's name, size and
    mtime, so edits invalidate it)."""
    native, mime = playable_natively(src)
    if native:
        return src, mime
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


def transcode_webm(
    src: Path, dst: Path, max_width: int = 640, progress: Callable[[int], None] | None = None
) -> None:
    """Re-encode `src` as VP8 webm, same frames and timestamps (the first frame at 0, as the
    analysis counts them), at most `max_width` wide; `progress(frames done)` as it goes."""
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
            if progress is not None:
                progress(i + 1)
        for packet in ostream.encode():
            out.mux(packet)
