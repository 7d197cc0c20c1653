"""Reader for BP4D-Spontaneous: per-frame AU occurrence, 9 where a frame was not coded.

    DATA/AUCoding/AU_OCC/F001_T1.csv      header "0,1,2,4,...", rows "frame,AU1,AU2,..."
    DATA/Sequences/F001/T1/0001.jpg ...   the clip: 2D texture frames named by frame number

One clip per CSV (subject and task), id `F001_T1`, fps 25. Column 0 of the CSV is the frame
number whatever its header ("0", "", "frame"); the other headers are AU numbers ("12" or "AU12").
A cell is 0 (absent), 1 (present) or 9 (not coded). The frame numbers are the numbers in the
image names, so each row goes to the image with its number; the coding usually covers a
sub-range of the sequence, and images without a row are unknown for every label ("*").

What a clip holds (facs.datasets.clips.Clip): `coded` = the AU columns with at least one coded
(0/1) cell (a column of 9 only says nothing, the same as no column), events = the runs of 1
(facs.datasets.runs.runs_to_events), `unknown[code]` = the runs of 9, `unknown["*"]` = the
images the CSV has no row for.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facs.aus import normalize_code
from facs.datasets.clips import ALL, Clip, Skipped, Span, rel
from facs.datasets.reading import image_sequence_clip, read_or_skip
from facs.datasets.runs import runs_to_events
from facs.errors import FacsError
from facs.video import image_files, natural_key

CODING_DIR = ("AUCoding", "AU_OCC")
SEQUENCES_DIR = "Sequences"
FPS = 25.0
ABSENT, PRESENT, NOT_CODED = 0, 1, 9
_FRAME_NUMBER = re.compile(r"(\d+)$")


@dataclass(frozen=True)
class Occurrence:
    """One AU_OCC CSV: `values[i, j]` is AU `codes[j]` (0, 1 or 9) at frame number `frames[i]`,
    read from line `lines[i]` of the file (1-based)."""

    path: Path
    frames: np.ndarray  # int64, one per row
    codes: list[str]
    values: np.ndarray  # int8, rows x codes
    lines: list[int]


def coding_dir(root: str | Path) -> Path:
    return Path(root).joinpath(*CODING_DIR)


def is_bp4d(root: str | Path) -> bool:
    return coding_dir(root).is_dir()


def _int_cell(text: str) -> int | None:
    """'12' / '12.0' -> 12; anything else -> None."""
    try:
        value = float(text)
    except ValueError:
        return None
    if not np.isfinite(value) or value != int(value):
        return None
    return int(value)


def _is_au_header(cell: str) -> bool:
    try:
        return normalize_code(cell) != "0"
    except ValueError:
        return False


def read_occ_csv(path: str | Path) -> Occurrence:
    """A BP4D `AU_OCC/<subject>_<task>.csv` -> Occurrence. FacsError (naming the file and the
    line) for a CSV without a frame column, a header that is not AU numbers, a row of the wrong
    length, a frame listed twice, or a cell other than 0, 1 or 9."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise FacsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    rows = [
        (lineno, [c.strip() for c in row])
        for lineno, row in enumerate(csv.reader(io.StringIO(text)), 1)
        if any(c.strip() for c in row)
    ]
    if not rows:
        raise FacsError(f"{path}: empty file (expected a header row and one row per frame)")
    header_line, header = rows[0]
    while header and not header[-1]:  # a trailing comma
        header.pop()
    if _is_au_header(header[0]):
        raise FacsError(
            f"{path}: no frame column (the first header cell {header[0]!r} is an AU; expected "
            "the frame number in column 0)"
        )
    codes: list[str] = []
    for col, cell in enumerate(header[1:], 1):
        try:
            code = normalize_code(cell)
        except ValueError:
            raise FacsError(
                f"{path}: line {header_line}: column {col + 1} header {cell!r} is not an AU number"
            ) from None
        if code in codes:
            raise FacsError(f"{path}: line {header_line}: AU {code} has two columns")
        codes.append(code)
    if not codes:
        raise FacsError(f"{path}: line {header_line}: no AU columns after the frame column")

    width = len(header)
    frames: list[int] = []
    lines: list[int] = []
    values = np.empty((len(rows) - 1, len(codes)), dtype=np.int8)
    seen: dict[int, int] = {}
    for i, (lineno, row) in enumerate(rows[1:]):
        while len(row) > width and not row[-1]:
            row.pop()
        frame = _int_cell(row[0])
        if frame is None or frame < 0:
            raise FacsError(
                f"{path}: line {lineno}: no frame column (the first cell {row[0]!r} is not a "
                "frame number)"
            )
        if len(row) != width:
            raise FacsError(
                f"{path}: line {lineno}: {len(row)} cells, the header has {width} columns"
            )
        if frame in seen:
            if set(seen) <= {ABSENT, PRESENT, NOT_CODED}:
                raise FacsError(
                    f"{path}: line {lineno}: no frame column (column 0 repeats {frame}: AU "
                    "values, not frame numbers)"
                )
            raise FacsError(
                f"{path}: line {lineno}: frame {frame} is listed twice (also line {seen[frame]})"
            )
        seen[frame] = lineno
        for j, cell in enumerate(row[1:]):
            value = _int_cell(cell)
            if value not in (ABSENT, PRESENT, NOT_CODED):
                raise FacsError(
                    f"{path}: line {lineno}: AU {codes[j]}: value {cell!r} (expected 0 absent, "
                    "1 present or 9 not coded)"
                )
            values[i, j] = value
        frames.append(frame)
        lines.append(lineno)
    return Occurrence(path, np.asarray(frames, dtype=np.int64), codes, values, lines)


def frame_numbers(folder: Path, files: list[Path]) -> list[int]:
    """The frame number in each image's name (`0001.jpg` -> 1), in the order the frames are
    read (facs.video.image_files: natural name order, 9.jpg before 10.jpg)."""
    numbers: list[int] = []
    for f in files:
        m = _FRAME_NUMBER.search(f.stem)
        if not m:
            raise FacsError(f"{folder}: image {f.name} is not named by its frame number")
        n = int(m.group(1))
        if numbers and n <= numbers[-1]:
            raise FacsError(
                f"{folder}: images {files[len(numbers) - 1].name} and {f.name} have the same "
                "frame number"
                if n == numbers[-1]
                else f"{folder}: image {f.name} is out of frame-number order"
            )
        numbers.append(n)
    return numbers


def _spans(mask: np.ndarray) -> list[Span]:
    return [(s, e) for s, _apex, e in runs_to_events(mask)]


def _split_name(path: Path) -> tuple[str, str]:
    subject, sep, task = path.stem.partition("_")
    if not sep or not subject or not task:
        raise FacsError(f"{path}: not a <subject>_<task>.csv name (e.g. F001_T1.csv)")
    return subject, task


def read_clip(csv_path: str | Path, root: str | Path) -> Clip:
    """One `AU_OCC/<subject>_<task>.csv` with its image sequence under `root`/Sequences."""
    csv_path, root = Path(csv_path), Path(root)
    subject, task = _split_name(csv_path)
    folder = root / SEQUENCES_DIR / subject / task
    if not folder.is_dir():
        raise FacsError(f"{csv_path}: no image sequence for this coding (looked for {folder})")
    files = image_files(folder)
    if not files:
        raise FacsError(f"{folder}: no images (the frames coded in {csv_path.name})")
    numbers = frame_numbers(folder, files)
    occ = read_occ_csv(csv_path)
    index = {n: i for i, n in enumerate(numbers)}
    n = len(files)
    # per image: the CSV row coding it, -1 where the CSV has none
    row_of = np.full(n, -1, dtype=np.int64)
    for row, (frame, lineno) in enumerate(zip(occ.frames.tolist(), occ.lines, strict=True)):
        i = index.get(frame)
        if i is None:
            where = "is beyond" if not numbers[0] <= frame <= numbers[-1] else "is missing from"
            raise FacsError(
                f"{csv_path}: line {lineno}: frame {frame} {where} the sequence ({folder} has "
                f"{n} images, frames {numbers[0]}..{numbers[-1]})"
            )
        row_of[i] = row
    has_row = row_of >= 0
    cells = np.full((n, len(occ.codes)), NOT_CODED, dtype=np.int8)
    cells[has_row] = occ.values[row_of[has_row]]

    coded: list[str] = []
    events = {}
    unknown: dict[str, list[Span]] = {}
    uncoded = _spans(~has_row)
    if uncoded:
        unknown[ALL] = uncoded
    for j, code in enumerate(occ.codes):
        col = cells[:, j]
        if not (col[has_row] != NOT_CODED).any():
            continue  # 9 throughout: no coding for this AU
        coded.append(code)
        events[code] = runs_to_events(col == PRESENT)
        spans = _spans((col == NOT_CODED) & has_row)
        if spans:
            unknown[code] = spans
    return image_sequence_clip(
        f"{subject}_{task}", subject, folder, files, csv_path, root, FPS,
        events=events, coded=coded, unknown=unknown,
    )  # fmt: skip


def _csv_key(path: Path):
    subject, _, task = path.stem.partition("_")
    return (natural_key(subject), natural_key(task), path.name)


def scan(
    root: str | Path,
    progress: bool = True,
    skip_bad: bool = False,
    skipped: list[Skipped] | None = None,
) -> list[Clip]:
    """Every coded clip (one per AU_OCC CSV), sorted by subject and task. With `skip_bad`, a
    clip whose files are bad goes to `skipped` instead of stopping the scan."""
    from tqdm import tqdm

    root = Path(root)
    folder = coding_dir(root)
    if not folder.is_dir():
        raise FacsError(f"{root}: no {'/'.join(CODING_DIR)}/ folder (not a BP4D tree)")
    skipped = skipped if skipped is not None else []
    files = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv"), key=_csv_key
    )
    clips: list[Clip] = []
    for path in tqdm(files, desc="index", unit="clip", disable=None if progress else True):
        clip = read_or_skip(rel(path, root), skip_bad, skipped, read_clip, path, root)
        if clip is not None:
            clips.append(clip)
    return clips
