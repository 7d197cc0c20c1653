"""JSON files written atomically: a temp file beside the target, then a rename.

An interrupted or failed run never leaves a half-written index/split, and never destroys the
previous good one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from facs.errors import FacsError


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, data) -> Path:
    """Write `data` as readable JSON to a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise FacsError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(dumps_readable(data) + "\n")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | Path, what: str = "JSON file") -> dict:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FacsError(f"{path}: no such {what}") from None
    except json.JSONDecodeError as exc:
        raise FacsError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except OSError as exc:
        raise FacsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise FacsError(f"{path}: not a {what} (expected a JSON object)")
    return data
