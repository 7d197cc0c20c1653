"""Reader for CK+ (the Extended Cohn-Kanade corpus): posed sequences coded at the peak only.

    DATA/cohn-kanade-images/S005/001/S005_001_00000001.png ...   the clip: one image per frame
    DATA/FACS/S005/001/S005_001_00000011_facs.txt                the peak's AUs (frame 11 = last)

Some copies keep the `_facs.txt` beside the images (cohn-kanade-images/S005/001/); both are read.
A FACS file has one line per AU present at the peak, "   1.0000000e+00   3.0000000e+00" = AU
number and intensity (0 = not given). One clip per coded session, id `S005_001`, fps 30.

CK+'s protocol as labels (facs.datasets.clips.Clip): the first frame is neutral (every label
known 0), the last frame is the peak (the listed AUs 1, every other label known 0: the peak's
coding is complete, so `coded` is None), the frames between are not coded
(`unknown = {"*": [(1, n - 2)]}`). Each listed AU is one event (n-1, n-1, n-1).

Sessions with images but no FACS file are not coded: they go to `skipped` (NO_FACS), never an
error, as MMI's clips without an OAO file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from facs.aus import normalize_code
from facs.datasets.clips import ALL, Clip, Event, Skipped, Span, rel
from facs.datasets.reading import image_sequence_clip, read_or_skip
from facs.errors import FacsError
from facs.video import image_files, natural_key

IMAGES_DIR = "cohn-kanade-images"
FACS_DIR = "FACS"
FACS_SUFFIX = "_facs.txt"
FPS = 30.0
NO_FACS = "no FACS coding (*_facs.txt)"
_FACS_NAME = re.compile(r"^(?P<prefix>.*?)_?(?P<frame>\d+)_facs\.txt$", re.IGNORECASE)
_FRAME_NUMBER = re.compile(r"(\d+)$")


def is_ckplus(root: str | Path) -> bool:
    return (Path(root) / IMAGES_DIR).is_dir()


def read_facs_file(path: str | Path) -> dict[str, int]:
    """A CK+ `_facs.txt` -> {AU code: intensity (0 = not given)}, in file order. An empty file
    is a peak with no AU. FacsError (naming the file and line) for a line that is not two
    numbers or an AU number that is not a positive integer."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise FacsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    aus: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            number, intensity = float(parts[0]), float(parts[1])
        except ValueError:
            raise FacsError(
                f"{path}: line {lineno}: expected two numbers 'AU intensity', got {line!r}"
            ) from None
        if not (math.isfinite(number) and number >= 1 and number == int(number)):
            raise FacsError(f"{path}: line {lineno}: AU number {parts[0]} is not an AU")
        if not (math.isfinite(intensity) and intensity >= 0):
            raise FacsError(
                f"{path}: line {lineno}: AU {int(number)} intensity {parts[1]} (expected 0, "
                "not given, or 1..5)"
            )
        code = normalize_code(int(number))
        aus[code] = max(aus.get(code, 0), round(intensity))
    return aus


def peak_frame(path: str | Path) -> int:
    """The frame number in a FACS file's name (`S005_001_00000011_facs.txt` -> 11)."""
    path = Path(path)
    m = _FACS_NAME.match(path.name)
    if not m:
        raise FacsError(
            f"{path}: no frame number in the name (expected S005_001_000000NN_facs.txt)"
        )
    return int(m.group("frame"))


def read_clip(facs_path: str | Path, folder: str | Path, root: str | Path) -> Clip:
    """One coded session: its FACS file and its image folder (under `root`)."""
    facs_path, folder, root = Path(facs_path), Path(folder), Path(root)
    files = image_files(folder) if folder.is_dir() else []
    if not files:
        raise FacsError(f"{facs_path}: no images in {folder}")
    n = len(files)
    peak = peak_frame(facs_path)
    m = _FRAME_NUMBER.search(files[-1].stem)
    last = int(m.group(1)) if m else None
    if peak != n or (last is not None and last != peak):
        raise FacsError(
            f"{facs_path}: names frame {peak} as the peak (the last image), but {folder} has "
            f"{n} images, the last {files[-1].name}"
        )
    aus = read_facs_file(facs_path)
    subject, session = folder.parent.name, folder.name
    peak_event: Event = (n - 1, n - 1, n - 1)
    unknown: dict[str, list[Span]] = {ALL: [(1, n - 2)]} if n >= 3 else {}
    return image_sequence_clip(
        f"{subject}_{session}", subject, folder, files, facs_path, root, FPS,
        events={code: [peak_event] for code in aus},
        coded=None,
        unknown=unknown,
        intensity={code: [(n - 1, n - 1, v)] for code, v in aus.items() if v > 0},
    )  # fmt: skip


def _sessions(root: Path) -> list[tuple[str, str]]:
    """(subject, session) of every session folder under the images and the FACS trees."""
    found: set[tuple[str, str]] = set()
    for top in (root / IMAGES_DIR, root / FACS_DIR):
        if not top.is_dir():
            continue
        for subject in top.iterdir():
            if subject.is_dir() and not subject.name.startswith("."):
                found.update(
                    (subject.name, s.name)
                    for s in subject.iterdir()
                    if s.is_dir() and not s.name.startswith(".")
                )
    return sorted(found, key=lambda k: (natural_key(k[0]), natural_key(k[1])))


def _facs_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(FACS_SUFFIX)
    )


def scan(
    root: str | Path,
    progress: bool = True,
    skip_bad: bool = False,
    skipped: list[Skipped] | None = None,
) -> list[Clip]:
    """Every session with a FACS file, sorted by subject and session. Sessions with images but
    no FACS file go to `skipped` (NO_FACS); with `skip_bad`, a session whose files are bad goes
    there too instead of stopping the scan."""
    from tqdm import tqdm

    root = Path(root)
    if not is_ckplus(root):
        raise FacsError(f"{root}: no {IMAGES_DIR}/ folder (not a CK+ tree)")
    skipped = skipped if skipped is not None else []
    clips: list[Clip] = []
    sessions = _sessions(root)
    for subject, session in tqdm(
        sessions, desc="index", unit="session", disable=None if progress else True
    ):
        folder = root / IMAGES_DIR / subject / session
        facs = _facs_files(root / FACS_DIR / subject / session)
        # the flat variant: beside the images (a copy in both places counts once)
        facs += [p for p in _facs_files(folder) if p.name not in {f.name for f in facs}]
        if not facs:
            if folder.is_dir() and image_files(folder):
                skipped.append(Skipped(rel(folder, root), NO_FACS))
            continue
        clip = read_or_skip(
            rel(facs[0], root), skip_bad, skipped, _read_session, facs, folder, root
        )
        if clip is not None:
            clips.append(clip)
    return clips


def _read_session(facs: list[Path], folder: Path, root: Path) -> Clip:
    if len(facs) > 1:
        raise FacsError(
            f"{facs[0]}: session {folder.parent.name}_{folder.name} has {len(facs)} FACS files "
            f"({', '.join(rel(p, root) for p in facs)}; expected one, at the peak)"
        )
    return read_clip(facs[0], folder, root)
