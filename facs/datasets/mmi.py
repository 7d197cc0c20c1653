"""Reader for the MMI Facial Expression Database's `Sessions/` tree (and the synthetic corpus).

    DATA/Sessions/<session>/<name>.avi             the clip
    DATA/Sessions/<session>/<name>-oao_aucs.xml    per-frame FACS annotation (OAO markers)
    DATA/Sessions/<session>/session.xml            names the subject (and the media file)

A clip enters the index only when it has an `-oao_aucs.xml` (MMI's per-frame annotation; 328 of
2392 real clips). Markers are 1-based in the XML and 0-based everywhere in facs.

Rules for MMI's quirks (also in docs/formats.md §2):
- Markers are sorted by (frame, type) before they are read, so their order in the file does not
  matter. Type 1 opens an event (onset), 2 sets its apex, 3 closes it (offset); sequences
  1,2,3,1,2,3 give several events of one AU.
- A missing offset (a new onset, or the end of the list, comes first) is stored as None; in span
  mode the event runs to the frame before the AU's next onset, else to the clip's last frame
  (the clip ended while the AU was still on).
- A missing onset (an apex/offset with no open event) is stored as None; in span mode the event
  starts after the AU's previous event, else at frame 0 (the AU was on when the clip started).
- A second apex inside one event keeps the first one (span mode does not depend on it).
- Lettered codes (28B, 46L, 46R) are labels of their own.
- An ActionUnit element without markers is kept in the clip's events as an empty list (annotated,
  never active) and does not enter the label list unless it is active in some other clip: a label
  with no positive frame can be neither learned nor evaluated.
- An OAO file that lists AUs but no marker at all is a clip-level coding, not a per-frame one:
  the clip is skipped. One with no ActionUnit at all is a clip with no AU active (kept).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from facs.aus import normalize_code
from facs.datasets.clips import Clip, Event, Skipped, probe_video, rel
from facs.datasets.reading import read_or_skip
from facs.errors import FacsError

OAO_SUFFIX = "-oao_aucs.xml"
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".wmv", ".mpg", ".mpeg", ".mkv", ".webm")
NO_OAO = "no per-frame annotation (-oao_aucs.xml)"
NO_MARKERS = "no per-frame annotation (AUs listed without markers)"


@dataclass(frozen=True)
class SessionInfo:
    session: str
    subject: str
    media_file: str | None


# --------------------------------------------------------------------------- XML


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise FacsError(f"{path}: malformed XML ({exc})") from None
    except OSError as exc:
        raise FacsError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _attr(el: ET.Element, name: str) -> str | None:
    """An attribute by name, tolerating lower-case spellings."""
    value = el.get(name)
    return value if value is not None else el.get(name.lower())


def read_session_xml(path: str | Path) -> SessionInfo:
    """session.xml -> SessionInfo(session id, subject id, media file). The subject is required."""
    path = Path(path)
    root = _parse_xml(path)
    subject_el = root if root.tag == "subject" else root.find(".//subject")
    subject = _attr(subject_el, "id") if subject_el is not None else None
    if not subject or not subject.strip():
        raise FacsError(f'{path}: no subject (expected <subject id="..."/> inside <session>)')
    session = _attr(root, "sessionId") or path.parent.name
    media = _attr(root, "mediaFile")
    return SessionInfo(session=str(session).strip(), subject=subject.strip(), media_file=media)


def _events_from_markers(markers: list[tuple[int, int]]) -> list[Event]:
    """Sorted (frame, type) markers -> (onset, apex, offset) events, None where one is missing."""
    events: list[Event] = []
    cur: list[int | None] | None = None
    for frame, kind in sorted(markers):
        if kind == 1:
            if cur is not None:
                events.append(tuple(cur))  # offset missing: a new onset came first
            cur = [frame, None, None]
        elif kind == 2:
            if cur is None:
                cur = [None, frame, None]  # onset missing
            elif cur[1] is None:
                cur[1] = frame
        else:
            if cur is None:
                events.append((None, None, frame))  # onset (and apex) missing
            else:
                cur[2] = frame
                events.append(tuple(cur))
                cur = None
    if cur is not None:
        events.append(tuple(cur))
    return events


def read_oao_xml(path: str | Path, frames: int | None = None) -> dict[str, list[Event]]:
    """An MMI `-oao_aucs.xml` -> {code: [(onset, apex, offset), ...]}, 0-based frames.

    `frames` (the clip's frame count) checks that every marker lies inside the clip.
    Codes are normalised ('AU012' -> '12', '46l' -> '46L'); repeated ActionUnit elements of one
    code are merged. An ActionUnit without markers gives an empty list.
    """
    path = Path(path)
    root = _parse_xml(path)
    units = list(root.iter("ActionUnit"))
    if root.tag != "ActionUnits" and not units:
        raise FacsError(f"{path}: not an OAO FACS annotation (root <{root.tag}>, no <ActionUnit>)")
    markers: dict[str, list[tuple[int, int]]] = {}
    for unit in units:
        number = _attr(unit, "Number")
        if number is None:
            raise FacsError(f"{path}: <ActionUnit> without a Number attribute")
        try:
            code = normalize_code(number)
        except ValueError:
            raise FacsError(f"{path}: ActionUnit Number={number!r} is not an AU code") from None
        unit_markers = markers.setdefault(code, [])
        for m in unit.iter("Marker"):
            frame_s, type_s = _attr(m, "Frame"), _attr(m, "Type")
            try:
                frame, kind = int(str(frame_s).strip()), int(str(type_s).strip())
            except ValueError:
                raise FacsError(
                    f"{path}: AU {code}: Marker Frame={frame_s!r} Type={type_s!r} is not two "
                    "integers"
                ) from None
            if kind not in (1, 2, 3):
                raise FacsError(
                    f"{path}: AU {code}: Marker Type={kind} at frame {frame} "
                    "(expected 1 onset, 2 apex or 3 offset)"
                )
            if frame < 1:
                raise FacsError(f"{path}: AU {code}: Marker Frame={frame} (frames are 1-based)")
            if frames is not None and frame > frames:
                raise FacsError(
                    f"{path}: AU {code}: Marker Frame={frame} is beyond the clip's last frame "
                    f"({frames}; the video has {frames} frames)"
                )
            unit_markers.append((frame - 1, kind))
    return {code: _events_from_markers(ms) for code, ms in markers.items()}


# --------------------------------------------------------------------------- tree


def sessions_dir(root: str | Path) -> Path:
    """DATA/Sessions (or DATA itself when it is the Sessions folder)."""
    root = Path(root)
    if not root.exists():
        raise FacsError(f"{root}: no such data folder")
    if root.name == "Sessions" and root.is_dir():
        return root
    sessions = root / "Sessions"
    if not sessions.is_dir():
        raise FacsError(
            f"{root}: no Sessions/ folder (expected MMI's layout {root}/Sessions/<session>/...)"
        )
    return sessions


def _find_video(folder: Path, name: str, media_file: str | None) -> Path | None:
    for ext in VIDEO_EXTENSIONS:
        for cand in (folder / f"{name}{ext}", folder / f"{name}{ext.upper()}"):
            if cand.is_file():
                return cand
    # A session with one annotated clip may name its media file differently.
    if media_file and (folder / media_file).is_file():
        return folder / media_file
    return None


def read_clip(xml_path: Path, base: Path, session: SessionInfo) -> Clip:
    """One annotated clip: find its video, probe it, read and check its markers."""
    name = xml_path.name[: -len(OAO_SUFFIX)]
    video = _find_video(xml_path.parent, name, session.media_file)
    if video is None:
        raise FacsError(
            f"{xml_path}: no video for this annotation (looked for {name}.avi and other "
            f"extensions in {xml_path.parent})"
        )
    info = probe_video(video)
    if info.frames <= 0:
        raise FacsError(f"{video}: no frames")
    events = read_oao_xml(xml_path, frames=info.frames)
    return Clip(
        id=name,
        session=session.session,
        subject=session.subject,
        video=rel(video, base),
        xml=rel(xml_path, base),
        fps=float(info.fps),
        frames=int(info.frames),
        width=int(info.width),
        height=int(info.height),
        events=events,
    )


def _session_folders(sessions: Path) -> list[Path]:
    def key(p: Path):
        # numeric session ids sort as numbers (2 before 10), others after, by name
        return (0, int(p.name), "") if p.name.isdigit() else (1, 0, p.name)

    return sorted((p for p in sessions.iterdir() if p.is_dir()), key=key)


def scan(
    root: str | Path,
    progress: bool = True,
    skip_bad: bool = False,
    skipped: list[Skipped] | None = None,
) -> list[Clip]:
    """Every clip with per-frame (OAO) annotation under DATA/Sessions, in session order.

    Session folders with videos but no `-oao_aucs.xml` are left out and, when `skipped` is a
    list, recorded there. With `skip_bad`, a clip whose files are bad is recorded there too
    instead of stopping the scan (a real corpus may have a few); by default it raises FacsError.
    """
    from tqdm import tqdm

    sessions = sessions_dir(root)
    base = sessions.parent
    folders = _session_folders(sessions)
    if not folders:
        raise FacsError(f"{sessions}: no session folders")
    clips: list[Clip] = []
    skipped = skipped if skipped is not None else []
    # disable=None: a bar on a terminal only, so piped stderr keeps errors on one line
    bar = tqdm(folders, desc="index", unit="session", disable=None if progress else True)
    for folder in bar:
        oao = sorted(folder.glob(f"*{OAO_SUFFIX}"))
        if not oao:
            for v in sorted(folder.iterdir()):
                if v.suffix.lower() in VIDEO_EXTENSIONS:
                    skipped.append(Skipped(rel(v, base), NO_OAO))
            continue
        try:
            session_xml = folder / "session.xml"
            if not session_xml.is_file():
                raise FacsError(f"{session_xml}: missing (it names the subject of the session)")
            session = read_session_xml(session_xml)
        except FacsError as exc:
            if not skip_bad:
                raise
            skipped.extend(Skipped(rel(x, base), str(exc)) for x in oao)
            continue
        for xml_path in oao:
            clip = read_or_skip(
                rel(xml_path, base), skip_bad, skipped, read_clip, xml_path, base, session
            )
            if clip is None:
                continue
            if clip.events and not any(clip.events.values()):
                # AUs listed, none timed: a clip-level coding, not a per-frame one
                skipped.append(Skipped(clip.xml, NO_MARKERS))
                continue
            clips.append(clip)
    return clips
