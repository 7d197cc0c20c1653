"""Random identities (one per subject) and clip styles (camera, lighting, motion, background).

Everything here is drawn from its own random stream, never from a clip's AU plan, so none of
it carries label information.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Canvas on which a face is drawn (face-local units); it is warped into the frame afterwards.
CANVAS_W, CANVAS_H = 128, 176
FACE_CX, FACE_CY = 64.0, 80.0

FRAME_W, FRAME_H = 192, 144

# Skin tones (BGR), light to dark; an identity mixes two neighbours.
_SKIN = np.array(
    [
        [188, 204, 236],
        [165, 186, 226],
        [140, 170, 214],
        [112, 148, 196],
        [86, 118, 164],
        [66, 92, 136],
    ],
    dtype=np.float64,
)
_HAIR = np.array(
    [[20, 22, 26], [30, 40, 60], [40, 60, 95], [70, 110, 150], [110, 120, 130], [35, 30, 30]],
    dtype=np.float64,
)


@dataclass
class Identity:
    skin: np.ndarray  # BGR 0..255
    hair: np.ndarray
    lip: np.ndarray
    iris: np.ndarray
    a: float  # face half width (canvas units)
    b: float  # face half height
    eye_y: float
    eye_dx: float
    eye_w: float  # half width of an eye
    eye_h: float  # upper aperture height
    brow_gap: float
    brow_thick: float
    brow_arch: float
    nose_y: float
    nose_w: float
    mouth_y: float
    mouth_w: float  # half width
    lip_up: float
    lip_lo: float
    hairline: float  # y of the hairline's centre
    hair_sides: float  # how far down the temples the hair reaches (0..1)
    shade: float  # strength of the 3-D shading


def sample_identity(rng: np.random.Generator) -> Identity:
    u = rng.uniform(0, len(_SKIN) - 1)
    i = int(u)
    skin = _SKIN[i] * (1 - (u - i)) + _SKIN[min(i + 1, len(_SKIN) - 1)] * (u - i)
    skin = skin * rng.uniform(0.95, 1.05, 3)
    hair = _HAIR[int(rng.integers(len(_HAIR)))] * rng.uniform(0.8, 1.2)
    lip = skin * np.array([0.62, 0.62, 0.92]) * rng.uniform(0.85, 1.0)
    iris = np.array([[40, 60, 90], [90, 80, 50], [60, 90, 70], [30, 40, 60]])[
        int(rng.integers(4))
    ] * rng.uniform(0.8, 1.2)
    b = rng.uniform(56, 63)
    eye_y = rng.uniform(69, 75)
    brow_gap = rng.uniform(11, 14)
    return Identity(
        skin=skin,
        hair=hair,
        lip=lip,
        iris=iris,
        a=rng.uniform(44, 50),
        b=b,
        eye_y=eye_y,
        eye_dx=rng.uniform(18.5, 22.5),
        eye_w=rng.uniform(9.0, 11.0),
        eye_h=rng.uniform(4.2, 5.4),
        brow_gap=brow_gap,
        brow_thick=rng.uniform(2.6, 4.2),
        brow_arch=rng.uniform(1.0, 3.5),
        nose_y=rng.uniform(97, 102),
        nose_w=rng.uniform(7.0, 9.5),
        mouth_y=rng.uniform(115, 120),
        mouth_w=rng.uniform(13.0, 16.5),
        lip_up=rng.uniform(2.6, 3.8),
        lip_lo=rng.uniform(3.4, 5.0),
        hairline=min(FACE_CY - b * rng.uniform(0.62, 0.78), eye_y - brow_gap - 20),
        hair_sides=rng.uniform(0.0, 1.0),
        shade=rng.uniform(0.15, 0.3),
    )


@dataclass
class Style:
    """How a clip is filmed: placement, motion, lighting, noise, background."""

    scale: float  # frame pixels per canvas unit
    cx: float  # face centre in the frame
    cy: float
    tilt: float  # degrees
    motion: np.ndarray  # (4, 3): amplitude, frequency (Hz), phase for dx, dy, angle, scale
    gain: float
    light_angle: float
    light_strength: float
    noise: float
    background: np.ndarray  # (FRAME_H, FRAME_W, 3) float32


def sample_style(rng: np.random.Generator, ident: Identity) -> Style:
    width = rng.uniform(68, 90)  # drawn face width in pixels (Haar boxes come out ~75-105)
    scale = min(width / (2 * ident.a), 124 / (2 * ident.b))
    half_w, half_h = ident.a * scale, ident.b * scale
    cx = rng.uniform(half_w + 6, FRAME_W - half_w - 6)
    # keep the chin (and a dropped jaw) inside the frame; the hair may leave it at the top
    cy_max = FRAME_H - 3 - (half_h + 16 * scale)
    cy = rng.uniform(min(cy_max, half_h - 4), cy_max)
    motion = np.stack(
        [
            [rng.uniform(0.5, 3.5), rng.uniform(0.1, 0.6), rng.uniform(0, 2 * np.pi)],
            [rng.uniform(0.5, 2.5), rng.uniform(0.1, 0.6), rng.uniform(0, 2 * np.pi)],
            [rng.uniform(0.5, 3.0), rng.uniform(0.1, 0.5), rng.uniform(0, 2 * np.pi)],
            [rng.uniform(0.0, 0.03), rng.uniform(0.1, 0.4), rng.uniform(0, 2 * np.pi)],
        ]
    )
    return Style(
        scale=scale,
        cx=cx,
        cy=cy,
        tilt=rng.uniform(-5, 5),
        motion=motion,
        gain=rng.uniform(0.8, 1.15),
        light_angle=rng.uniform(0, 2 * np.pi),
        light_strength=rng.uniform(0.0, 0.3),
        noise=rng.uniform(1.5, 5.0),
        background=_background(rng),
    )


def _background(rng: np.random.Generator) -> np.ndarray:
    """A room-like backdrop: a colour gradient, a few blurred blocks, a torso."""
    import cv2

    top = rng.uniform(40, 220, 3)
    bottom = top * rng.uniform(0.6, 1.2, 3)
    t = np.linspace(0, 1, FRAME_H)[:, None, None]
    bg = (top * (1 - t) + bottom * t) * np.ones((1, FRAME_W, 1))
    for _ in range(int(rng.integers(1, 5))):
        x0, y0 = int(rng.integers(0, FRAME_W)), int(rng.integers(0, FRAME_H))
        w, h = int(rng.integers(10, 80)), int(rng.integers(10, 80))
        cv2.rectangle(bg, (x0, y0), (x0 + w, y0 + h), rng.uniform(30, 230, 3).tolist(), -1)
    bg = cv2.GaussianBlur(bg, (0, 0), rng.uniform(1.0, 4.0))
    return bg.astype(np.float32)
