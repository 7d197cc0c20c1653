"""Putting a drawn face into video frames: head pose and motion, background, lighting, noise."""

from __future__ import annotations

import math

import cv2
import numpy as np

from facs.synth.draw import FaceCanvas
from facs.synth.identity import FACE_CX, FACE_CY, FRAME_H, FRAME_W, Identity, Style


class ClipRenderer:
    def __init__(self, ident: Identity, style: Style, rng: np.random.Generator, fps: float):
        self.id, self.st, self.fps = ident, style, fps
        self.face = FaceCanvas(ident, rng)
        self.rng = rng
        self.bg = style.background.copy()
        self._torso()
        yy, xx = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
        ca, sa = math.cos(style.light_angle), math.sin(style.light_angle)
        light = 1 + style.light_strength * (ca * (xx / FRAME_W - 0.5) + sa * (yy / FRAME_H - 0.5))
        light = np.repeat((style.gain * light)[:, :, None], 3, axis=2).astype(np.float32)
        self.light = light
        self.bg_lit = (self.bg * light).astype(np.float32)
        # a bank of noise frames, one picked per frame: drawing fresh noise costs more than the
        # whole face, and repeating patterns across a clip is invisible to a classifier
        self.noise = [
            rng.standard_normal((FRAME_H, FRAME_W, 3), dtype=np.float32) * style.noise
            for _ in range(6)
        ]
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        self._outline = np.c_[FACE_CX + ident.a * np.cos(t), FACE_CY + ident.b * np.sin(t)]

    def _torso(self) -> None:
        st, d = self.st, self.id
        w = d.a * st.scale * 2.4
        top = st.cy + d.b * st.scale * 1.25
        color = self.rng.uniform(30, 220, 3)
        pts = np.array(
            [
                [st.cx - w, FRAME_H + 5],
                [st.cx - w * 0.8, top + 12],
                [st.cx - w * 0.3, top],
                [st.cx + w * 0.3, top],
                [st.cx + w * 0.8, top + 12],
                [st.cx + w, FRAME_H + 5],
            ],
            dtype=np.int32,
        )
        cv2.fillPoly(self.bg, [pts], color.tolist(), cv2.LINE_AA)

    def pose(self, i: int) -> np.ndarray:
        """2x3 affine map from canvas to frame at frame i: slow sway, nod, tilt and zoom."""
        st = self.st
        t = i / self.fps
        m = [a * math.sin(2 * math.pi * f * t + p) for a, f, p in st.motion]
        scale = st.scale * (1 + m[3])
        M = cv2.getRotationMatrix2D((FACE_CX, FACE_CY), st.tilt + m[2], scale)
        M[0, 2] += st.cx + m[0] - FACE_CX
        M[1, 2] += st.cy + m[1] - FACE_CY
        return M

    def frame(self, i: int, au: dict[str, float]) -> tuple[np.ndarray, list[int]]:
        """Frame i (BGR uint8) and the drawn face's box [x, y, w, h] in it."""
        img, jaw = self.face.render(au)
        M = self.pose(i)
        warped = cv2.warpAffine(img, M, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR)
        a = np.multiply(warped[:, :, 3], 1 / 255, dtype=np.float32)
        face = cv2.cvtColor(warped, cv2.COLOR_BGRA2BGR)
        lit = cv2.multiply(face, self.light, dtype=cv2.CV_32F)
        out = cv2.blendLinear(lit, self.bg_lit, a, 1.0 - a)
        cv2.add(out, self.noise[int(self.rng.integers(len(self.noise)))], out)
        frame = cv2.convertScaleAbs(out)  # saturating cast to uint8
        # box of the face ellipse (with the dropped jaw) in the frame
        pts = self._outline.copy()
        pts[:, 1] += np.where(pts[:, 1] > self.id.mouth_y, jaw, 0.0)
        p = pts @ M[:, :2].T + M[:, 2]
        x0, y0 = np.floor(p.min(axis=0))
        x1, y1 = np.ceil(p.max(axis=0))
        return frame, [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]
