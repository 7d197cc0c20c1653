"""Profiles: every preprocessing (and training) setting of a run, in one JSON file.

    profiles/quick.json   the embedded default (small crops, frame stride, bootstrapping subset)
    profiles/paper.json   the original work's settings (230 -> 227, full bootstrapping)

`load_profile("quick")` finds profiles/<name>.json in the repository; a path to any JSON file
works too. Stages print the profile's sections they use at their start.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from facs.errors import FacsError

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"


def profile_path(name_or_path: str | Path) -> Path:
    """profiles/<name>.json for a bare name, else the path itself."""
    p = Path(name_or_path)
    if p.suffix == ".json" or p.exists():
        return p
    return PROFILES_DIR / f"{name_or_path}.json"


def load_profile(name_or_path: str | Path) -> dict:
    path = profile_path(name_or_path)
    if not path.is_file():
        known = sorted(q.stem for q in PROFILES_DIR.glob("*.json"))
        raise FacsError(f"{path}: no such profile (known: {', '.join(known) or 'none'})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FacsError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise FacsError(f"{path}: a profile is a JSON object")
    data.setdefault("name", path.stem)
    data["_path"] = str(path)
    return data


def section(profile: dict, key: str) -> dict:
    """One section of a profile (e.g. "faces"), with a clear error when it is missing."""
    value = profile.get(key)
    if not isinstance(value, dict):
        raise FacsError(f'{profile.get("_path", "profile")}: no "{key}" section')
    return value


def describe(profile: dict, *keys: str) -> str:
    """The profile's name and the named sections, compact, for the start of a stage."""
    lines = [f"profile {profile.get('name')} ({profile.get('_path')})"]
    for key in keys:
        if key in profile:
            lines.append(f"  {key}: {json.dumps(profile[key], separators=(', ', ': '))}")
    return "\n".join(lines)


def default_profile() -> str:
    return os.environ.get("PROFILE", "quick")


def default_work(profile_name: str) -> Path:
    return Path(os.environ.get("WORK", f"work/{profile_name}"))


def add_common_arguments(parser, workers: bool = True) -> None:
    """--profile, --work (and --workers): the options every stage after `facs split` shares."""
    parser.add_argument(
        "--profile",
        default=default_profile(),
        help="profile name (profiles/<name>.json) or path; default $PROFILE or quick",
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="work directory; default $WORK or work/<profile>"
    )
    if workers:
        parser.add_argument(
            "--workers", type=int, default=1, help="parallel processes (one clip or database each)"
        )
