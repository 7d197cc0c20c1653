"""What the corpus readers share: reading one item or recording it as skipped (--skip-bad), and
the Clip record of an image sequence (BP4D, CK+)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from facs.datasets.clips import Clip, Skipped, rel
from facs.errors import FacsError
from facs.video import read_image


def read_or_skip(
    where: str, skip_bad: bool, skipped: list[Skipped], read: Callable[..., Clip], *args
) -> Clip | None:
    """`read(*args)`; when its files are bad (FacsError), None and `where` recorded in
    `skipped` with the error if `skip_bad`, else the error itself."""
    try:
        return read(*args)
    except FacsError as exc:
        if not skip_bad:
            raise
        skipped.append(Skipped(where, str(exc)))
        return None


def image_sequence_clip(
    name: str, subject: str, folder: Path, files: list[Path], labels: Path, root: Path,
    fps: float, **coding,
) -> Clip:  # fmt: skip
    """The Clip of the images `files` in `folder`, coded in the file `labels` (paths relative
    to `root`); `coding`: events, coded, unknown, intensity."""
    h, w = read_image(files[0]).shape[:2]
    return Clip(
        id=name,
        session=name,
        subject=subject,
        video=rel(folder, root),
        xml=rel(labels, root),
        fps=fps,
        frames=len(files),
        width=int(w),
        height=int(h),
        **coding,
    )
