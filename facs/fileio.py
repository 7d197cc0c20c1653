"""Files written atomically, and JSON read with errors that name the file.

Every output of facs goes through `atomic_path`: the content is written to a temporary file
beside the target, then renamed over it. An interrupted or failed run never leaves a
half-written file and never destroys the previous good one.

    with atomic_path("out/clip.csv") as tmp:      # tmp: a path in out/, renamed on success
        frame.to_csv(tmp)
    write_json("work/index.json", data)           # readable JSON, atomically
    save_npy("work/faces/c.npy", crops)
    data = read_json("work/index.json", "index file")
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from facs.errors import FacsError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside `path` (ending in `suffix`, e.g. ".npy" for writers that add
    it); renamed over `path` when the block ends without an exception, removed otherwise."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as exc:
        raise FacsError(f"{path}: cannot write ({exc.strerror or exc})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def check_writable(path: str | Path) -> None:
    """FacsError naming `path` when a file cannot be written there: its folder is a file, is
    not writable, or `path` itself is a folder. Checked before long work, so that it fails
    first, not after an hour of analysis."""
    path = Path(path)
    if path.is_dir():
        raise FacsError(f"{path}: is a folder, not a file name")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise FacsError(f"{path}: cannot write it: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FacsError(f"{path}: cannot write it: no permission to write in {folder}")


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def copy_file(src: str | Path, dst: str | Path) -> Path:
    with atomic_path(dst, Path(dst).suffix) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    with atomic_path(path, ".npy") as tmp:
        np.save(tmp, array)
    return Path(path)


def dumps_readable(data) -> str:
    """JSON with one top-level key per line and one item per line for lists of objects/lists:
    diff-friendly and far smaller than indent=2 for an index of thousands of clips."""
    if not isinstance(data, dict):
        return json.dumps(data)
    lines = []
    for key, value in data.items():
        k = json.dumps(key)
        if isinstance(value, list) and value and isinstance(value[0], (dict, list)):
            items = ",\n  ".join(json.dumps(v) for v in value)
            lines.append(f"{k}: [\n  {items}\n ]")
        elif isinstance(value, dict) and value:
            items = ",\n  ".join(f"{json.dumps(a)}: {json.dumps(b)}" for a, b in value.items())
            lines.append(f"{k}: {{\n  {items}\n }}")
        else:
            lines.append(f"{k}: {json.dumps(value)}")
    return "{\n " + ",\n ".join(lines) + "\n}"


def write_json(
    path: str | Path, data, indent: int | None | str = "readable", sort_keys: bool = False
) -> Path:
    """Write `data` as JSON atomically: `readable` (dumps_readable), or json.dumps' indent."""
    if indent == "readable":
        text = dumps_readable(data)
    else:
        text = json.dumps(data, indent=indent, sort_keys=sort_keys)
    return write_text(path, text + "\n")


def read_json(path: str | Path, what: str = "JSON file", hint: str = "") -> dict:
    """A JSON object from `path`; FacsError naming the file when it is missing, unreadable,
    not JSON or not an object (`hint` says which stage writes a missing file)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FacsError(f"{path}: no such {what}{f' ({hint})' if hint else ''}") from None
    except json.JSONDecodeError as exc:
        raise FacsError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise FacsError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except OSError as exc:
        raise FacsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise FacsError(f"{path}: not a {what} (expected a JSON object)")
    return data


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what C libraries (FFmpeg, OpenCV's AVI parser, MediaPipe's graph set-up) print
    to fd 2 meanwhile: a user sees facs' own lines, not native chatter."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
