"""The model description: what `facs analyze` and the web demo run, typed, with one reader and
one writer.

A model folder `models/<name>/` holds `model.json` (format `facs-model/2`) and one folder per
stream. Each stream folder holds `stream.json` (a `StreamSpec`, written by the stage that
trained the stream) and the stream's files; `model.json` gathers the streams its fusion was
fitted on, the fusion, the thresholds and, once evaluated, the test metrics:

    {"format": "facs-model/2", "name", "created", "description", "trained_on": {...},
     "labels": ["1", "2", ...],
     "streams": {"spatial": {"kind": "cnn", "folder": "spatial", "deploy": "deploy.prototxt",
                             "weights": "weights.caffemodel", "mean": "mean.binaryproto",
                             "crop": 64, "scale": 1.0, "input": {facs.preprocess.records
                             StreamInput}, "training": {...}},
                 "geometry": {"kind": "landmarks", "method": "rules" | "learned",
                              "folder": "geometry", "classifier": "classifier.json"}},
     "fusion": {facs.training.fusion spec}, "thresholds": {code: t}, "threshold_choice": {...},
     "onevsall": {code: StreamSpec}, "metrics": {...}}

Paths in a StreamSpec are relative to its folder, which is relative to the model folder.
`load_model("face")` (the default), `load_model("blendshapes")` and `load_model("geometry")`
are the built-in models that need no training.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field, fields
from pathlib import Path

from facs.analysis.geometry import LABELS as GEOMETRY_LABELS
from facs.analysis.realface import LABELS as FACE_LABELS
from facs.errors import FacsError
from facs.fileio import read_json, write_json
from facs.preprocess.records import StreamInput

FORMAT = "facs-model/2"
MODELS_DIR = Path("models")
BUILTIN = "face"  # the default: the real-face model
KINDS = ("cnn", "landmarks", "mediapipe")


@dataclass
class StreamSpec:
    """One stream of a model: a CNN (deploy net, weights, mean, how its input records are made)
    or the landmark stream (FACS rules, or a learned classifier)."""

    kind: str
    folder: str = ""
    deploy: str | None = None
    weights: str | None = None
    mean: str | None = None
    input: StreamInput | None = None
    crop: int | None = None  # the Data layer's centre crop: the net's input side
    scale: float = 1.0
    method: str | None = None  # landmarks: "rules" | "learned"
    classifier: str | None = None
    training: dict = field(default_factory=dict)  # provenance: seconds, iterations, fingerprint

    def file(self, model_folder: Path | None, name: str | None) -> Path | None:
        """Absolute path of one of the stream's files (None stays None)."""
        if name is None:
            return None
        base = Path(model_folder or ".") / self.folder
        return (base / name).resolve()

    def to_json(self) -> dict:
        out: dict = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "kind" or value is None or value == {} or value == "":
                continue
            out[f.name] = value.to_json() if isinstance(value, StreamInput) else value
        return out

    @classmethod
    def from_json(cls, d: dict, where: str) -> StreamSpec:
        if not isinstance(d, dict) or d.get("kind") not in KINDS:
            raise FacsError(f"{where}: a stream needs a kind ({' or '.join(KINDS)})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise FacsError(f"{where}: unknown stream field(s) {', '.join(unknown)}")
        try:
            spec = cls(**d)
            if spec.input is not None:
                spec.input = StreamInput.from_json(d["input"])
            spec.scale = float(spec.scale)
            spec.crop = int(spec.crop) if spec.crop is not None else None
        except (TypeError, ValueError, KeyError) as exc:
            raise FacsError(f"{where}: bad stream description ({exc})") from None
        if spec.kind == "cnn" and not (spec.deploy and spec.weights and spec.input):
            raise FacsError(f"{where}: a cnn stream needs deploy, weights and input")
        if spec.kind == "landmarks" and spec.method not in ("rules", "learned"):
            raise FacsError(f"{where}: a landmarks stream's method is rules or learned")
        if spec.kind == "mediapipe" and spec.method not in ("combined", "blendshapes"):
            raise FacsError(f"{where}: a mediapipe stream's method is combined or blendshapes")
        return spec


@dataclass
class Model:
    """A model: its labels, streams, fusion and thresholds (see the module docstring)."""

    name: str
    labels: list[str]
    streams: dict[str, StreamSpec]
    fusion: dict
    thresholds: dict[str, float] = field(default_factory=dict)
    created: str = ""
    description: str = ""
    trained_on: dict = field(default_factory=dict)
    threshold_choice: dict = field(default_factory=dict)
    onevsall: dict[str, StreamSpec] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    folder: Path | None = None
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # loaded nets

    def threshold(self, code: str) -> float:
        return float(self.thresholds.get(code, 0.5))

    def file(self, stream: str, name: str | None) -> Path | None:
        return self.streams[stream].file(self.folder, name)

    @property
    def faces(self) -> str:
        """What faces the model learned from, in words (the CLI, JSON and page say it)."""
        if self.trained_on.get("faces"):
            return str(self.trained_on["faces"])
        return TRAINED_ON.get(self.name, "unknown")

    @property
    def synthetic(self) -> bool:
        return self.faces.startswith("synthetic")

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "name": self.name,
            "created": self.created,
            "description": self.description,
            "trained_on": self.trained_on,
            "labels": list(self.labels),
            "streams": {n: s.to_json() for n, s in self.streams.items()},
            "fusion": self.fusion,
            "thresholds": self.thresholds,
            "threshold_choice": self.threshold_choice,
            "onevsall": {c: s.to_json() for c, s in self.onevsall.items()},
            "metrics": self.metrics,
        }

    @classmethod
    def from_json(cls, d: dict, where: str, folder: Path | None = None) -> Model:
        if d.get("format") != FORMAT:
            found = (
                d.get("format") or "none (written by facs before the model format had a version)"
            )
            raise FacsError(
                f"{where}: model format {found}; this facs reads {FORMAT} "
                "(re-run scripts/09_fuse.sh to rewrite it from the trained streams)"
            )
        labels = [str(c) for c in d.get("labels") or []]
        if not labels:
            raise FacsError(f"{where}: no labels")
        streams = {
            str(n): StreamSpec.from_json(s, f"{where}: stream {n}")
            for n, s in (d.get("streams") or {}).items()
        }
        if not streams:
            raise FacsError(f"{where}: no streams")
        try:
            thresholds = {str(k): float(v) for k, v in (d.get("thresholds") or {}).items()}
        except (TypeError, ValueError):
            raise FacsError(f"{where}: thresholds must be numbers") from None
        fusion = d.get("fusion") or {"method": "average", "streams": list(streams)}
        if not isinstance(fusion, dict):
            raise FacsError(f"{where}: fusion must be an object")
        return cls(
            name=str(d.get("name") or (folder.name if folder else "model")),
            labels=labels,
            streams=streams,
            fusion=fusion,
            thresholds=thresholds,
            created=str(d.get("created") or ""),
            description=str(d.get("description") or ""),
            trained_on=dict(d.get("trained_on") or {}),
            threshold_choice=dict(d.get("threshold_choice") or {}),
            onevsall={
                str(c): StreamSpec.from_json(s, f"{where}: one-vs-all net {c}")
                for c, s in (d.get("onevsall") or {}).items()
            },
            metrics=dict(d.get("metrics") or {}),
            folder=folder,
        )


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- files


def read_stream(folder: Path) -> StreamSpec:
    """A stream folder's stream.json."""
    path = Path(folder) / "stream.json"
    spec = StreamSpec.from_json(read_json(path, "stream description"), str(path))
    spec.folder = Path(folder).name
    return spec


def write_stream(folder: Path, spec: StreamSpec) -> Path:
    return write_json(Path(folder) / "stream.json", spec.to_json(), indent=1)


def read_model(folder: Path) -> Model:
    """models/<name>/model.json, checked (FacsError naming the file)."""
    folder = Path(folder)
    path = folder / "model.json"
    model = Model.from_json(read_json(path, "model description"), str(path), folder)
    for name, stream in model.streams.items():
        for key in ("deploy", "weights", "mean", "classifier"):
            f = stream.file(folder, getattr(stream, key))
            if f is not None and not f.is_file():
                raise FacsError(f"{path}: stream {name}'s {key} file {f} does not exist")
    return model


def write_model(model: Model, folder: Path | None = None) -> Path:
    folder = Path(folder or model.folder)
    return write_json(folder / "model.json", model.to_json(), indent=1)


# --------------------------------------------------------------------------- finding a model


# Streams that need no files: any model can add them (`facs analyze --streams spatial,face`).
BUILTIN_STREAMS = {
    "face": StreamSpec(kind="mediapipe", method="combined"),
    "geometry": StreamSpec(kind="landmarks", method="rules"),
}
TRAINED_ON = {
    "face": "real faces (Google MediaPipe's face landmark and blendshape models; facs' AU rules)",
    "blendshapes": "real faces (Google MediaPipe's blendshapes mapped to AUs; no geometry)",
    "geometry": "no training data: FACS rules on dlib's 68 landmarks (dlib learned real faces)",
}
SYNTHETIC = "synthetic drawn faces (facs synth)"


def builtin(name: str) -> Model:
    """The built-in models, which need no training: `face` (the default: MediaPipe's
    blendshapes and mesh, facs.analysis.realface), `blendshapes` (the blendshape mapping
    alone) and `geometry` (dlib's landmarks, facs.analysis.geometry's FACS rules)."""
    if name == "geometry":
        labels, stream = list(GEOMETRY_LABELS), BUILTIN_STREAMS["geometry"]
        description = "built-in: 68 dlib landmarks, per-person neutral calibration, FACS rules"
        streams = {"geometry": stream}
    else:
        labels = list(FACE_LABELS)
        method = "blendshapes" if name == "blendshapes" else "combined"
        streams = {"face": StreamSpec(kind="mediapipe", method=method)}
        description = (
            "built-in: MediaPipe FaceLandmarker (478 landmarks, 52 blendshapes); blendshapes "
            + ("mapped to AUs" if method == "blendshapes" else "and mesh geometry -> AU rules")
        )
    return Model(
        name=name,
        labels=labels,
        streams=streams,
        fusion={"method": "average", "streams": list(streams)},
        thresholds={c: 0.5 for c in labels},
        description=description,
    )


def model_folder(dir_or_name: str | Path, models_dir: Path = MODELS_DIR) -> Path:
    """A folder holding model.json: the path itself, else a name under `models_dir`."""
    folder = Path(dir_or_name)
    if not (folder / "model.json").is_file() and (models_dir / folder / "model.json").is_file():
        folder = models_dir / folder
    if not (folder / "model.json").is_file():
        known = ", ".join(TRAINED_ON)
        raise FacsError(f"{folder}: not a model folder (no model.json) nor a built-in ({known})")
    return folder


def load_model(dir_or_name: str | Path | None = None, models_dir: Path = MODELS_DIR) -> Model:
    """A model folder, a folder name under models/, or a built-in model (`face`, the default;
    `blendshapes`; `geometry`)."""
    name = BUILTIN if dir_or_name is None else str(dir_or_name)
    if name in TRAINED_ON and not (models_dir / name / "model.json").is_file():
        return builtin(name)
    return read_model(model_folder(dir_or_name, models_dir))


def default_model() -> str:
    """The model `facs analyze` and `facs serve` use unless told: the built-in real-face model.
    A model trained on the synthetic corpus runs only when named (it learned drawn faces)."""
    return BUILTIN
