"""Two-pass per-channel means (the original work's normalisation), saved as Caffe files.

Pass 1 (here): the global mean of every channel over all pixels of all training records — the
records exactly as written to the train LMDB, bootstrapped copies included, masked pixels
included. Pass 2, the subtraction, happens when the data is read: Caffe's Data layer subtracts
`transform_param { mean_file: "..._mean.binaryproto" }` from every record. The LMDB keeps the
raw uint8 values, as Caffe's do (uint8 cannot hold a mean-subtracted value); subtracting in the
reader is what Caffe itself does and gives the same numbers as the report's second pass.

The mean file is a BlobProto 1 x C x H x W at the stored record size (Caffe subtracts the mean at
the crop's own position, so the file has the uncropped size), every pixel of a channel holding
that channel's mean. Read it with facs.caffe.io.read_blobproto.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facs.caffe.io import write_blobproto


class ChannelMean:
    """Running per-channel sum of C x H x W uint8 records (exact: integer sums)."""

    def __init__(self, channels: int):
        self.sums = np.zeros(channels, np.int64)
        self.pixels = 0

    def add(self, chw: np.ndarray) -> None:
        c = chw.shape[0]
        self.sums += chw.reshape(c, -1).sum(axis=1, dtype=np.int64)
        self.pixels += chw.shape[1] * chw.shape[2]

    @property
    def mean(self) -> np.ndarray:
        if self.pixels == 0:
            return np.zeros_like(self.sums, dtype=np.float64)
        return self.sums / float(self.pixels)


def mean_image(per_channel: np.ndarray, height: int, width: int) -> np.ndarray:
    """1 x C x H x W float32 image holding each channel's mean everywhere."""
    c = len(per_channel)
    values = np.asarray(per_channel, np.float32).reshape(1, c, 1, 1)
    return np.broadcast_to(values, (1, c, height, width)).copy()


def write_mean(path: Path, per_channel: np.ndarray, height: int, width: int) -> Path:
    """Write the mean image as a .binaryproto (atomically)."""
    write_blobproto(path, mean_image(per_channel, height, width))
    return Path(path)
