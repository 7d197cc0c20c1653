"""Caffe LMDB databases of Datum records: the one reader and the one writer of the format.

Data records: Datum(channels, height, width, data = C x H x W uint8 bytes), or an `encoded`
image. Label records (a parallel database with the same keys): Datum(channels = L, height =
width = 1, float_data = the L-vector), read in Caffe by a second Data layer. Records come in
key order (Caffe's DataReader order).

Every record is checked when it is read: a Datum whose byte or float count does not match its
channels x height x width, or that is no Datum at all, is an error naming the database and key.
The writer also leaves `crc32.npy` in the database's folder (Caffe ignores it): the CRC-32 of
every record's bytes in key order; readers verify it when it is there, so a flipped byte inside
a record's pixels is an error too, not a silently different prediction.

The writer fills `<path>.tmp/` and renames it to `<path>/` only when every record is in: a run
killed part-way leaves a `.tmp` folder (removed by the next run), never a database that looks
complete. (facs.preprocess.lmdb writes a manifest last: a pair is finished when it exists.)
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import lmdb
import numpy as np

from facs.caffe import caffe_pb2
from facs.errors import FacsError

COMMIT_EVERY = 256
CHECKSUMS = "crc32.npy"


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


def datum_array(d: caffe_pb2.Datum) -> np.ndarray:
    """C x H x W array of a Datum: uint8 pixels (raw or encoded) or float32 float_data.
    ValueError when the Datum is inconsistent (sizes that do not match its shape)."""
    if d.encoded:
        img = cv2.imdecode(np.frombuffer(d.data, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError("encoded image does not decode")
        return img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
    shape = (max(d.channels, 1), max(d.height, 1), max(d.width, 1))
    n = shape[0] * shape[1] * shape[2]
    if d.data:
        if len(d.data) != n:
            raise ValueError(f"{len(d.data)} bytes of data for shape {shape}")
        return np.frombuffer(d.data, np.uint8).reshape(shape)
    if len(d.float_data) != n:
        raise ValueError(f"{len(d.float_data)} float_data values for shape {shape}")
    return np.asarray(d.float_data, np.float32).reshape(shape)


def parse_datum(raw: bytes, path: Path, key: bytes | str) -> caffe_pb2.Datum:
    """Datum of one record's bytes; FacsError naming the database and key if it is none."""
    d = caffe_pb2.Datum()
    try:
        d.ParseFromString(raw)
    except Exception as exc:  # protobuf's DecodeError
        raise FacsError(f"{path}: record {_key(key)} is not a Caffe Datum ({exc})") from None
    return d


def record_array(raw: bytes, path: Path, key: bytes | str) -> np.ndarray:
    """datum_array of one record's bytes, with errors naming the database and key."""
    try:
        return datum_array(parse_datum(raw, path, key))
    except ValueError as exc:
        raise FacsError(f"{path}: record {_key(key)} is corrupt ({exc})") from None


def _key(key: bytes | str) -> str:
    return key.decode("ascii", "replace") if isinstance(key, bytes) else key


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
        self._crc: dict[bytes, int] = {}

    def __enter__(self) -> LmdbWriter:
        if self.tmp.exists():
            shutil.rmtree(self.tmp)  # left by a killed run
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(self.tmp), map_size=self.map_size, subdir=True, lock=True)
        self.txn = self.env.begin(write=True)
        return self

    def put(self, key: str, datum: caffe_pb2.Datum) -> None:
        raw = datum.SerializeToString()
        k = key.encode("ascii")
        self.txn.put(k, raw)
        self._crc[k] = zlib.crc32(raw)
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
        np.save(self.tmp / CHECKSUMS, np.asarray([self._crc[k] for k in sorted(self._crc)], "<u4"))
        if self.path.exists():
            shutil.rmtree(self.path)
        self.tmp.rename(self.path)


def open_env(path: str | Path, what: str = "") -> lmdb.Environment:
    """A read-only environment of an existing LMDB (a folder with data.mdb, or the file)."""
    path = Path(path)
    prefix = f"{what}: " if what else ""
    if not path.exists():
        raise FacsError(f"{prefix}{path}: no such LMDB")
    if path.is_dir() and not (path / "data.mdb").is_file():
        raise FacsError(f"{prefix}{path}: not an LMDB database (no data.mdb)")
    try:
        return lmdb.open(
            str(path), readonly=True, lock=False, readahead=False, meminit=False,
            subdir=path.is_dir(), max_readers=64,
        )  # fmt: skip
    except lmdb.Error as exc:
        raise FacsError(f"{prefix}{path}: cannot open LMDB ({exc})") from None


# LMDB lets a process open a path once: every reader (a train and a test net on the same
# database, scoring in the same process) shares one environment, counted.
_ENVS: dict[str, list] = {}  # realpath -> [environment, users]
_ENVS_LOCK = threading.Lock()


def acquire_env(path: Path, what: str = "") -> lmdb.Environment:
    key = str(Path(path).resolve())
    with _ENVS_LOCK:
        if key not in _ENVS:
            _ENVS[key] = [open_env(path, what), 0]
        _ENVS[key][1] += 1
        return _ENVS[key][0]


def release_env(path: Path) -> None:
    key = str(Path(path).resolve())
    with _ENVS_LOCK:
        entry = _ENVS.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _ENVS[key]
            entry[0].close()


class LmdbRecords:
    """Random access by record index to the records of an LMDB (keys in sorted order); one read
    transaction per thread (LMDB's rule)."""

    def __init__(self, path: str | Path, what: str = ""):
        self.path = Path(path)
        self.env = acquire_env(self.path, what)
        self._closed = False
        try:
            with self.env.begin() as txn:
                self.keys = list(txn.cursor().iternext(keys=True, values=False))
        except lmdb.Error as exc:
            self.close()
            raise FacsError(f"{self.path}: cannot read LMDB ({exc})") from None
        if not self.keys:
            self.close()
            raise FacsError(f"{what + ': ' if what else ''}{self.path}: LMDB holds no records")
        try:
            self.crc = read_checksums(self.path, len(self.keys))
        except FacsError:
            self.close()
            raise
        self._local = threading.local()

    def __len__(self) -> int:
        return len(self.keys)

    def raw(self, index: int) -> bytes:
        txn = getattr(self._local, "txn", None)
        if txn is None:
            txn = self._local.txn = self.env.begin(buffers=False)
        try:
            raw = txn.get(self.keys[index])
        except lmdb.Error as exc:
            key = _key(self.keys[index])
            raise FacsError(f"{self.path}: cannot read record {key} ({exc})") from None
        if raw is None:
            raise FacsError(f"{self.path}: record {_key(self.keys[index])} is missing")
        check(self.crc, index, raw, self.path, self.keys[index])
        return raw

    def datum(self, index: int) -> caffe_pb2.Datum:
        return parse_datum(self.raw(index), self.path, self.keys[index])

    def array(self, index: int) -> np.ndarray:
        return record_array(self.raw(index), self.path, self.keys[index])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            release_env(self.path)


def read_checksums(path: Path, count: int) -> np.ndarray | None:
    """The records' CRC-32s the writer left (None for a database without them)."""
    f = Path(path) / CHECKSUMS if Path(path).is_dir() else None
    if f is None or not f.is_file():
        return None
    try:
        crc = np.load(f)
    except (OSError, ValueError) as exc:
        raise FacsError(f"{f}: unreadable checksums ({exc})") from None
    if crc.shape != (count,):
        raise FacsError(f"{path}: {len(crc)} checksums for {count} records (a damaged database)")
    return crc


def check(crc: np.ndarray | None, index: int, raw: bytes, path: Path, key) -> None:
    if crc is not None and zlib.crc32(raw) != int(crc[index]):
        raise FacsError(f"{path}: record {_key(key)} is corrupt (its checksum does not match)")


def iter_records(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """(key, raw value) of every record, in key order (checked against the checksums)."""
    path = Path(path)
    env = acquire_env(path)
    try:
        crc = read_checksums(path, env.stat()["entries"])
        with env.begin() as txn:
            for i, (k, v) in enumerate(txn.cursor()):
                check(crc, i, bytes(v), path, k)
                yield k.decode("ascii", "replace"), bytes(v)
    except lmdb.Error as exc:
        raise FacsError(f"{path}: cannot read LMDB ({exc})") from None
    finally:
        release_env(path)


def read_lmdb(path: str | Path, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """(keys, N x C x H x W array) of a data or label database, in key order."""
    keys, arrays = [], []
    for key, raw in iter_records(path):
        keys.append(key)
        arrays.append(record_array(raw, Path(path), key))
        if limit is not None and len(keys) >= limit:
            break
    if not arrays:
        raise FacsError(f"{path}: LMDB holds no records")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise FacsError(f"{path}: records of different shapes {sorted(shapes)}")
    return keys, np.stack(arrays)


def read_pair(data_path: str | Path, labels_path: str | Path, limit: int | None = None):
    """(keys, N x C x H x W uint8, N x L float32) of a data LMDB and its label LMDB."""
    keys, x = read_lmdb(data_path, limit)
    lkeys, y = read_lmdb(labels_path, limit)
    if keys != lkeys:
        raise FacsError(
            f"{labels_path}: its {len(lkeys)} keys differ from the {len(keys)} of {data_path}"
        )
    return keys, x, y.reshape(len(y), -1)


def read_labels(path: str | Path) -> np.ndarray:
    """N x L float32 label vectors of a label LMDB."""
    _, y = read_lmdb(path)
    return y.reshape(len(y), -1)


def count(path: str | Path) -> int:
    env = acquire_env(Path(path))
    try:
        return env.stat()["entries"]
    finally:
        release_env(Path(path))


def record_hashes(path: str | Path) -> list[str]:
    """sha256 of key + value of every record, in key order (compares two databases)."""
    return [
        hashlib.sha256(k.encode("ascii") + b"\0" + v).hexdigest() for k, v in iter_records(path)
    ]
