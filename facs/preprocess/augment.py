"""Bootstrapping of training frames (the original work's "tilt" and "brightness" copies).

Each transform makes one extra copy of a frame: a rotation by a few degrees about the crop's
centre (positive = counter-clockwise, OpenCV's convention) or a brightness offset. With the
profile's `per_frame: k`, every frame gets k transforms drawn from the list (seeded by the
record, so a re-run draws the same); with `per_frame: null`, all of them. Only the train split
is ever augmented (facs.preprocess.lmdb); val and test keep the frames as they are.

Masks stay masks: after a rotation the elliptic mask is applied again, and a brightness offset
only changes pixels inside it. Extra channels (the `reference: median` input, frame minus the
clip's median + 128) are rotated with the frame and keep 128 outside the mask; a brightness
offset leaves them unchanged, as if the whole clip were brighter.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Transform:
    kind: str  # "rot" (degrees) or "bright" (grey levels)
    value: float

    @property
    def name(self) -> str:
        prefix = "r" if self.kind == "rot" else "b"
        v = int(self.value) if float(self.value).is_integer() else self.value
        return f"{prefix}{'+' if self.value >= 0 else ''}{v}"


def transforms_from_profile(aug: dict) -> list[Transform]:
    rots = [Transform("rot", float(a)) for a in aug.get("rotations", [])]
    brights = [Transform("bright", float(b)) for b in aug.get("brightness", [])]
    return rots + brights


def choose(transforms: list[Transform], per_frame: int | None, key: str, seed: int = 0):
    """The transforms applied to one record: all of them, or `per_frame` drawn by (seed, key)."""
    if per_frame is None or per_frame >= len(transforms):
        return list(transforms)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    picked = sorted(rng.choice(len(transforms), size=per_frame, replace=False))
    return [transforms[i] for i in picked]


def apply(
    img: np.ndarray, t: Transform, mask: np.ndarray | None = None, n_colour: int = 3
) -> np.ndarray:
    """Transform an H x W x C uint8 crop; channels >= n_colour are 128-centred extra channels."""
    h, w = img.shape[:2]
    c = img.shape[2]
    fill = np.array([0] * n_colour + [128] * (c - n_colour), np.uint8)
    if t.kind == "rot":
        m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), t.value, 1.0)
        # warpAffine handles at most 4 channels: rotate in groups of channels
        parts = []
        for lo in range(0, c, 3):
            chunk = np.ascontiguousarray(img[:, :, lo : lo + 3])
            border = tuple(int(v) for v in fill[lo : lo + 3])
            out = cv2.warpAffine(
                chunk,
                m,
                (w, h),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=border + (0,) * (4 - len(border)),
            )
            parts.append(out.reshape(h, w, -1))
        out = np.concatenate(parts, axis=2)
        if mask is not None:
            out = np.where(mask[..., None].astype(bool), out, fill)
        return out.astype(np.uint8)
    if t.kind == "bright":
        out = img.copy()
        colour = out[:, :, :n_colour].astype(np.int16) + int(t.value)
        colour = np.clip(colour, 0, 255).astype(np.uint8)
        if mask is not None:
            colour = np.where(mask[..., None].astype(bool), colour, img[:, :, :n_colour])
        out[:, :, :n_colour] = colour
        return out
    raise ValueError(f"unknown transform {t.kind!r}")
