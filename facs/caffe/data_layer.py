"""Caffe's Data layer: batches of Datum records from an LMDB, with Caffe's transform_param.

Records are read in key order and wrap around, as Caffe's DataReader does. A batch is a pure
function of its index (which records, which crop offsets, which mirror flips), so a run
repeats exactly under the same seed, and a resumed run continues exactly where a snapshot left
off (`seek`). Two Data layers with the same batch size on an image LMDB and its parallel label
LMDB therefore stay in lockstep. Under torch.distributed each rank reads a disjoint stride of
the records (rank r reads records r, r + W, r + 2W, ...).
"""

from __future__ import annotations

import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from facs.caffe.io import read_blobproto
from facs.caffe.lmdb import LmdbRecords, datum_array
from facs.errors import FacsError


class Transform:
    """Caffe's DataTransformer: crop, mirror, mean (file or values), scale."""

    def __init__(self, tp, phase: str, shape: tuple[int, int, int], base_dir: Path, what: str):
        self.train = phase == "TRAIN"
        self.crop = int(tp.crop_size) if tp is not None else 0
        self.mirror = bool(tp.mirror) if tp is not None else False
        self.scale = float(tp.scale) if tp is not None and tp.HasField("scale") else 1.0
        c, h, w = shape
        if self.crop and (self.crop > h or self.crop > w):
            raise FacsError(f"{what}: crop_size {self.crop} is larger than the data ({h}x{w})")
        self.mean: np.ndarray | None = None
        self.mean_cropped = False
        if tp is not None and tp.HasField("mean_file"):
            if len(tp.mean_value):
                raise FacsError(f"{what}: give mean_file or mean_value, not both")
            mpath = Path(tp.mean_file)
            mpath = mpath if mpath.is_absolute() else base_dir / mpath
            if not mpath.exists():
                raise FacsError(f"{what}: mean_file {mpath} does not exist")
            mean = np.asarray(read_blobproto(mpath), np.float32)
            mean = mean.reshape(mean.shape[-3:]) if mean.ndim >= 3 else mean
            # Caffe's mean has the records' size and is cropped with them; a mean of the
            # crop's size is also accepted (subtracted after cropping).
            self.mean_cropped = self.crop > 0 and mean.shape == (c, self.crop, self.crop)
            if mean.shape != (c, h, w) and not self.mean_cropped:
                raise FacsError(f"{what}: mean_file {mpath} has shape {mean.shape}, "
                                f"the data {(c, h, w)}")  # fmt: skip
            self.mean = mean
        elif tp is not None and len(tp.mean_value):
            values = np.asarray(tp.mean_value, np.float32)
            if len(values) not in (1, c):
                raise FacsError(f"{what}: {len(values)} mean_value for {c} channels")
            self.mean = np.broadcast_to(values.reshape(-1, 1, 1), (c, 1, 1))
        self.out_hw = (self.crop, self.crop) if self.crop else (h, w)

    def offsets(self, rng: np.random.Generator, h: int, w: int) -> tuple[int, int, bool]:
        """Crop offsets and mirror flag of one record (random in TRAIN, centre in TEST)."""
        ho = wo = 0
        if self.crop:
            if self.train:
                ho = int(rng.integers(h - self.crop + 1))
                wo = int(rng.integers(w - self.crop + 1))
            else:
                ho, wo = (h - self.crop) // 2, (w - self.crop) // 2
        flip = bool(self.mirror and self.train and rng.integers(2))
        return ho, wo, flip

    def apply(self, x: np.ndarray, ho: int, wo: int) -> np.ndarray:
        """Crop, mean and scale of a record (C x H x W) or a batch (N x C x H x W) of uint8, all
        cropped at (ho, wo): float32, as Caffe computes it."""
        hh, ww = self.out_hw
        y = x[..., ho : ho + hh, wo : wo + ww].astype(np.float32)
        if self.mean is not None:
            # Caffe subtracts the mean at the image's own (uncropped) position, before mirroring.
            m = self.mean
            full = m.shape[1] > 1 and not self.mean_cropped
            y -= m[:, ho : ho + hh, wo : wo + ww] if full else m
        if self.scale != 1.0:
            y *= self.scale
        return y

    def test_batch(self, x: np.ndarray) -> np.ndarray:
        """TEST-phase transform of N x C x H x W uint8 records: centre crop, no mirror."""
        h, w = x.shape[-2:]
        ho, wo = ((h - self.crop) // 2, (w - self.crop) // 2) if self.crop else (0, 0)
        return self.apply(x, ho, wo)

    def __call__(self, x: np.ndarray, ho: int, wo: int, flip: bool, out: np.ndarray) -> None:
        y = self.apply(x, ho, wo)
        out[...] = y[:, :, ::-1] if flip else y


class DataLayer:
    """One Caffe Data layer: `.tops`, `.top_shapes`, `.next()`, `.seek(batch)`."""

    def __init__(self, layer_param, phase: str, base_dir: Path, seed: int, rank: int = 0,
                 world: int = 1):  # fmt: skip
        self.name = layer_param.name
        what = f"layer '{self.name}'"
        dp = layer_param.data_param
        if dp.backend not in (0, 1) or (dp.backend == 0 and dp.HasField("backend")):
            # Caffe's enum: LEVELDB = 0, LMDB = 1; the default in Caffe's proto is LEVELDB.
            raise FacsError(f"{what}: only backend: LMDB is supported")
        if not dp.source:
            raise FacsError(f"{what}: data_param.source is missing")
        if dp.batch_size <= 0:
            raise FacsError(f"{what}: data_param.batch_size must be positive")
        src = Path(dp.source)
        src = src if src.is_absolute() else base_dir / src
        self.records = LmdbRecords(src, what)
        self.batch_size = int(dp.batch_size)
        self.tops = list(layer_param.top)
        if not 1 <= len(self.tops) <= 2:
            raise FacsError(f"{what}: a Data layer has one or two tops, not {len(self.tops)}")
        # Disjoint stride of the records for this rank (all records when not distributed).
        self.indices = np.arange(rank, len(self.records), world)
        if len(self.indices) == 0:
            raise FacsError(f"{what}: LMDB {src} has fewer records than processes")
        first = self._array(self.records.datum(int(self.indices[0])), 0)
        self.shape = first.shape
        tp = layer_param.transform_param if layer_param.HasField("transform_param") else None
        self.transform = Transform(tp, phase, self.shape, base_dir, what)
        c = self.shape[0]
        self.top_shapes = [(self.batch_size, c, *self.transform.out_hw)]
        if len(self.tops) == 2:
            self.top_shapes.append((self.batch_size,))
        self.seed = (seed * 1_000_003 + zlib.crc32(self.name.encode()) + rank * 7919) % 2**63
        self.batch = 0  # index of the next batch
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"data-{self.name}")
        self._ahead: tuple[int, Future] | None = None
        self.what = what

    def __len__(self) -> int:
        return len(self.indices)

    def _array(self, d, record: int) -> np.ndarray:
        try:
            return datum_array(d)
        except ValueError as exc:
            raise FacsError(
                f"{self.what}: record {record} of {self.records.path} is corrupt ({exc})"
            ) from None

    def seek(self, batch: int) -> None:
        """Make `batch` the next batch `next()` returns (resume, test passes)."""
        self.batch = int(batch)

    def _load(self, batch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, batch])
        n = len(self.indices)
        start = batch * self.batch_size
        data = np.empty(self.top_shapes[0], np.float32)
        labels = np.empty(self.batch_size, np.float32)
        for j in range(self.batch_size):
            d = self.records.datum(int(self.indices[(start + j) % n]))
            x = self._array(d, start + j)
            if x.shape != self.shape:
                raise FacsError(f"{self.what}: record {j + start} of {self.records.path} has "
                                f"shape {x.shape}, the first {self.shape}")  # fmt: skip
            ho, wo, flip = self.transform.offsets(rng, x.shape[1], x.shape[2])
            self.transform(x, ho, wo, flip, data[j])
            labels[j] = d.label
        return [data, labels] if len(self.tops) == 2 else [data]

    def next(self) -> list[torch.Tensor]:
        """The next batch, one tensor per top; prefetches the one after in a thread."""
        b = self.batch
        if self._ahead is not None and self._ahead[0] == b:
            arrays = self._ahead[1].result()
        else:
            arrays = self._load(b)
        self.batch = b + 1
        self._ahead = (b + 1, self._pool.submit(self._load, b + 1))
        return [torch.from_numpy(a) for a in arrays]

    def close(self) -> None:
        """Stop prefetching and release the LMDB (closed when its last reader closes)."""
        if self._pool is None:
            return
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None
        self._ahead = None
        self.records.close()


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def make_data_layer(layer_param, phase: str, base_dir: Path | None) -> DataLayer:
    """Build a Data layer. Randomness is seeded from torch's seed (solver random_seed)."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    rank, world = _dist_rank_world()
    # Only TRAIN data is split across ranks; a TEST net (run by rank 0) reads every record.
    if phase != "TRAIN":
        rank, world = 0, 1
    return DataLayer(layer_param, phase, base, torch.initial_seed(), rank, world)
