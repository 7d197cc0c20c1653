"""Caffe LMDB databases of Datum records: a crash-safe writer and a reader.

Data records: Datum(channels, height, width, data = C x H x W uint8 bytes). Label records (a
parallel database with the same keys): Datum(channels = L, height = width = 1, float_data = the
L-vector), read in Caffe by a second Data layer.

The writer fills `<path>.tmp/` and renames it to `<path>/` only when every record is in: a run
killed part-way leaves a `.tmp` folder (removed by the next run), never a database that looks
complete. A pair is finished when its manifest exists (facs.lmdb_build writes it last).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import lmdb
import numpy as np

from facs.caffe import caffe_pb2
from facs.errors import FacsError

COMMIT_EVERY = 256


def array_to_datum(array: np.ndarray) -> caffe_pb2.Datum:
    """C x H x W uint8 -> Datum."""
    if array.dtype != np.uint8 or array.ndim != 3:
        raise ValueError(f"expected C x H x W uint8, got {array.dtype} {array.shape}")
    c, h, w = array.shape
    return caffe_pb2.Datum(
        channels=c, height=h, width=w, data=np.ascontiguousarray(array).tobytes()
    )


def labels_to_datum(labels: np.ndarray) -> caffe_pb2.Datum:
    """L-vector -> Datum(channels=L, height=width=1, float_data)."""
    vec = np.asarray(labels, dtype=np.float32).ravel()
    d = caffe_pb2.Datum(channels=len(vec), height=1, width=1)
    d.float_data.extend(vec.tolist())
    return d


def datum_to_array(d: caffe_pb2.Datum) -> np.ndarray:
    """Datum -> C x H x W uint8 (data) or float32 (float_data)."""
    shape = (d.channels, d.height, d.width)
    if d.data:
        return np.frombuffer(d.data, dtype=np.uint8).reshape(shape)
    return np.asarray(d.float_data, dtype=np.float32).reshape(shape)


def tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


class LmdbWriter:
    """Write records to `<path>.tmp`, rename to `<path>` on a clean close.

    with LmdbWriter(path, map_size) as w:
        w.put(key, datum)
    """

    def __init__(self, path: str | Path, map_size: int = 1 << 34):
        self.path = Path(path)
        self.tmp = tmp_path(self.path)
        self.map_size = int(map_size)
        self.count = 0

    def __enter__(self) -> LmdbWriter:
        if self.tmp.exists():
            shutil.rmtree(self.tmp)  # left by a killed run
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(self.tmp), map_size=self.map_size, subdir=True, lock=True)
        self.txn = self.env.begin(write=True)
        return self

    def put(self, key: str, datum: caffe_pb2.Datum) -> None:
        self.txn.put(key.encode("ascii"), datum.SerializeToString())
        self.count += 1
        if self.count % COMMIT_EVERY == 0:
            self.txn.commit()
            self.txn = self.env.begin(write=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.txn.abort()
            self.env.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        self.txn.commit()
        self.env.sync()
        self.env.close()
        if self.path.exists():
            shutil.rmtree(self.path)
        self.tmp.rename(self.path)


def _open(path: Path) -> lmdb.Environment:
    if not (path / "data.mdb").is_file():
        raise FacsError(f"{path}: not an LMDB database (no data.mdb)")
    try:
        return lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True)
    except lmdb.Error as exc:
        raise FacsError(f"{path}: cannot open LMDB ({exc})") from None


def iter_datums(path: str | Path) -> Iterator[tuple[str, caffe_pb2.Datum]]:
    """(key, Datum) in key order."""
    env = _open(Path(path))
    try:
        with env.begin() as txn:
            for k, v in txn.cursor():
                d = caffe_pb2.Datum()
                d.ParseFromString(v)
                yield k.decode("ascii"), d
    finally:
        env.close()


def count(path: str | Path) -> int:
    env = _open(Path(path))
    try:
        return env.stat()["entries"]
    finally:
        env.close()


def read_lmdb(path: str | Path, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """(keys, N x C x H x W array) of a data or label database, in key order."""
    keys, arrays = [], []
    for key, d in iter_datums(path):
        keys.append(key)
        arrays.append(datum_to_array(d))
        if limit is not None and len(keys) >= limit:
            break
    if not arrays:
        return keys, np.zeros((0, 0, 0, 0), np.uint8)
    return keys, np.stack(arrays)


def read_pair(data_path: str | Path, labels_path: str | Path, limit: int | None = None):
    """(keys, N x C x H x W uint8, N x L float32) of a data LMDB and its label LMDB."""
    keys, x = read_lmdb(data_path, limit)
    lkeys, y = read_lmdb(labels_path, limit)
    if keys != lkeys:
        raise FacsError(f"{data_path}: keys differ from {labels_path}")
    return keys, x, y.reshape(len(y), -1) if len(y) else y


def record_hashes(path: str | Path) -> list[str]:
    """sha256 of key + value of every record, in key order (compares two databases)."""
    env = _open(Path(path))
    try:
        with env.begin() as txn:
            return [hashlib.sha256(k + b"\0" + v).hexdigest() for k, v in txn.cursor()]
    finally:
        env.close()
