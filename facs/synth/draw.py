"""Drawing one face on its canvas: a shaded head (made once per clip) and the features that the
AUs move (drawn every frame).

Coordinates are canvas units (see identity.CANVAS_W/H); cv2 draws with 4 fractional bits so
features move smoothly with intensity. Each AU changes its own place on the face, as in FACS
(DESIGN.md §5a): forehead and brows (1, 2, 4), lids (5, 7, 43, 45), cheeks and eye corners (6),
nose (9), lip corners (12, 15, 20), lips and jaw (25, 26, 27), chin (17).
"""

from __future__ import annotations

import cv2
import numpy as np

from facs.synth.identity import CANVAS_H, CANVAS_W, FACE_CX, FACE_CY, Identity

_SHIFT = 4
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA


def _pts(xy) -> np.ndarray:
    return np.round(np.asarray(xy, dtype=np.float64) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _col(c) -> tuple[float, float, float, float]:
    """A BGR colour as a cv2 scalar; the 4th value keeps the canvas's alpha channel opaque."""
    return (
        min(255.0, max(0.0, float(c[0]))),
        min(255.0, max(0.0, float(c[1]))),
        min(255.0, max(0.0, float(c[2]))),
        255.0,
    )


def _xy(x, y) -> np.ndarray:
    return np.stack([x, y], axis=-1)


def _band(xs, top, bottom) -> np.ndarray:
    """Closed outline of the region between two curves over the same xs."""
    return np.concatenate([_xy(xs, top), _xy(xs, bottom)[::-1]])


# parameters along curves (precomputed: np.linspace per frame costs more than the drawing)
_U6 = np.linspace(0, 1, 6)
_U7 = np.linspace(-1, 1, 7)
_U9 = np.linspace(-1, 1, 9)
_U11 = np.linspace(-1, 1, 11)


def _line(img, xy, color, thick: float = 1.0, closed: bool = False) -> None:
    cv2.polylines(img, [_pts(xy)], closed, _col(color), max(1, int(round(thick))), _AA, _SHIFT)


def _fill(img, xy, color) -> None:
    cv2.fillPoly(img, [_pts(xy)], _col(color), _AA, _SHIFT)


def _ellipse(img, c, axes, color, angle: float = 0.0, thick: int = -1) -> None:
    center = (int(round(c[0] * _ONE)), int(round(c[1] * _ONE)))
    ax = (max(1, int(round(axes[0] * _ONE))), max(1, int(round(axes[1] * _ONE))))
    cv2.ellipse(img, center, ax, angle, 0, 360, _col(color), thick, _AA, _SHIFT)


class FaceCanvas:
    """A subject's head: static texture and mask, plus per-frame features."""

    def __init__(self, ident: Identity, rng: np.random.Generator):
        self.id = ident
        self.texture = self._head(rng)  # BGRA: the alpha channel is the head's outline
        yy, xx = np.mgrid[0:CANVAS_H, 0:CANVAS_W].astype(np.float32)
        self._xx, self._yy = xx, yy
        # how much of the jaw's drop each row takes: 0 above the mouth, 1 from the chin down
        top, chin = ident.mouth_y - 2, FACE_CY + ident.b
        w = np.clip((yy - top) / (chin - top), 0, 1)
        self._jaw_w = (w * w * (3 - 2 * w)).astype(np.float32)

    # ----- once per clip -------------------------------------------------------------------
    def _head(self, rng):
        d = self.id
        yy, xx = np.mgrid[0:CANVAS_H, 0:CANVAS_W].astype(np.float64)
        nx, ny = (xx - FACE_CX) / d.a, (yy - FACE_CY) / d.b
        r2 = nx * nx + ny * ny
        # sphere-like shading, brighter towards the upper left of the face
        shade = 1 - d.shade + d.shade * np.sqrt(np.clip(1 - r2, 0, 1)) + 0.04 * (-nx - ny)

        def blob(x, y, sx, sy):
            return np.exp(-(((xx - x) / sx) ** 2 + ((yy - y) / sy) ** 2))

        for s in (-1, 1):
            ex = FACE_CX + s * d.eye_dx
            shade -= 0.16 * blob(ex, d.eye_y - 1.5, d.eye_w * 1.35, 6.5)  # eye sockets
            shade += 0.05 * blob(ex + s * 3, d.eye_y + 17, 9, 6)  # cheekbones
            shade -= 0.07 * blob(FACE_CX + s * (d.nose_w + 1), (d.eye_y + d.nose_y) / 2, 2.5, 12)
        shade += 0.07 * blob(FACE_CX, (d.eye_y + d.nose_y) / 2 + 2, 3.0, 14)  # nose ridge
        shade += 0.06 * blob(FACE_CX, d.nose_y - 3, 4.0, 4.0)  # nose tip
        shade -= 0.10 * blob(FACE_CX, d.nose_y + 4, 7.0, 2.5)  # under the nose
        shade -= 0.10 * blob(FACE_CX, d.mouth_y + d.lip_lo + 6, 8.0, 2.5)  # under the lip
        skin = d.skin[None, None, :] * shade[:, :, None]
        skin[:, :, 2] += 14 * blob(FACE_CX - d.eye_dx, d.eye_y + 20, 9, 7)  # rosy cheeks
        skin[:, :, 2] += 14 * blob(FACE_CX + d.eye_dx, d.eye_y + 20, 9, 7)
        face = r2 <= 1.0

        # neck and ears
        neck = (np.abs(xx - FACE_CX) < d.a * 0.58) & (yy > FACE_CY + d.b * 0.4)
        ears = np.zeros_like(face)
        for s in (-1, 1):
            ears |= blob(FACE_CX + s * d.a * 0.98, d.eye_y + 9, 5.0, 10.0) > 0.37
        tex = np.where(neck[:, :, None], d.skin * 0.72, 0.0)
        tex = np.where(ears[:, :, None], d.skin * 0.85, tex)
        tex = np.where(face[:, :, None], skin, tex)

        # hair: cap above a curved hairline, optionally down the temples
        hr2 = ((xx - FACE_CX) / (d.a + 4)) ** 2 + ((yy - FACE_CY + 2) / (d.b + 6)) ** 2
        line = d.hairline + 10 * nx**2 + d.hair_sides * 22 * np.clip(np.abs(nx) - 0.7, 0, 1)
        hair = (hr2 <= 1.0) & ((yy < line) | ((np.abs(nx) > 0.88) & (yy < d.eye_y)))
        streak = 1 + 0.1 * np.sin(xx * 0.9 + rng.uniform(0, 6)) * np.sqrt(np.clip(1 - hr2, 0, 1))
        tex = np.where(hair[:, :, None], d.hair[None, None, :] * streak[:, :, None], tex)
        alpha = cv2.GaussianBlur((face | neck | ears | hair).astype(np.float32), (0, 0), 0.7)
        bgra = np.concatenate([tex, 255 * alpha[:, :, None]], axis=2)
        return np.clip(np.round(bgra), 0, 255).astype(np.uint8)

    # ----- every frame ---------------------------------------------------------------------
    def render(self, au: dict[str, float]) -> tuple[np.ndarray, float]:
        """Canvas image (uint8 BGRA) and the jaw drop (canvas units)."""
        g = au.get
        jaw = 12.0 * g("26", 0.0) + 16.0 * g("27", 0.0)
        if jaw > 0.05:  # the lower face slides down, stretching between mouth and chin
            map_y = self._yy - jaw * self._jaw_w
            img = cv2.remap(
                self.texture, self._xx, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
        else:
            img = self.texture.copy()
        self._forehead_and_brows(img, g)
        for s in (-1, 1):
            self._eye(img, s, g)
        self._nose(img, g)
        self._mouth(img, g, jaw)
        return img, jaw

    def _forehead_and_brows(self, img, g) -> None:
        d = self.id
        a1, a2, a4 = g("1", 0.0), g("2", 0.0), g("4", 0.0)
        brow_y = d.eye_y - d.brow_gap
        if a1 > 0:  # horizontal wrinkles in the centre of the forehead
            for k in range(3):
                y = brow_y - 7 - 4.2 * k - 6 * a1
                xs = FACE_CX + _U7 * (11 - k)
                _line(
                    img,
                    _xy(xs, y - 1.5 * (1 - ((xs - FACE_CX) / 11) ** 2)),
                    d.skin * (1 - 0.5 * a1),
                    1.2,
                )
        if a2 > 0:  # wrinkles above the outer brows
            for s in (-1, 1):
                for k in range(2):
                    x0 = FACE_CX + s * (d.eye_dx + 1)
                    y = brow_y - 8 - 4 * k - 6 * a2
                    _line(
                        img,
                        [(x0 - 6, y + 1), (x0, y), (x0 + 6, y + 1)],
                        d.skin * (1 - 0.45 * a2),
                        1.2,
                    )
        if a4 > 0:  # vertical furrows between the brows
            for s in (-1, 1):
                x = FACE_CX + s * 2.6
                _line(
                    img, [(x, brow_y - 3), (x - s * 0.6, brow_y + 6)], d.skin * (1 - 0.55 * a4), 1.3
                )
        u = _U6
        for s in (-1, 1):
            inner = d.eye_dx - d.eye_w * 0.95
            x = FACE_CX + s * (inner + u * d.eye_w * 2.3 - 4.5 * a4 * (1 - u))
            y = brow_y - (d.brow_arch + 2.5 * a2) * np.sin(np.pi * u * 0.85)
            y = y - 9 * a1 * (1 - u) ** 1.5 - 9 * a2 * u**1.2 + (5.5 * (1 - u) + 2.0) * a4
            _line(img, _xy(x, y), d.hair * 0.8, d.brow_thick)

    def _eye(self, img, s: int, g) -> None:
        d = self.id
        a5, a6, a7 = g("5", 0.0), g("6", 0.0), g("7", 0.0)
        close = max(g("43", 0.0), g("45", 0.0))
        ex, ey = FACE_CX + s * d.eye_dx, d.eye_y
        hu = d.eye_h * (1 + 1.0 * a5 - 0.4 * a7 - 0.1 * a6)
        hl = d.eye_h * 0.75 * (1 - 0.45 * a6 - 0.65 * a7)
        hu = hu * (1 - close) - close * hl * 0.4
        hl = hl * (1 - 0.3 * close)
        u = _U9
        xs = ex + u * d.eye_w
        upper = ey - 0.6 * s * u - hu * (1 - u * u) ** 0.8  # outer corner a touch higher
        lower_shape = (1 - a7) * (1 - u * u) + a7 * (1 - u**4)  # 7 straightens the lower lid
        lower = ey - 0.6 * s * u + hl * lower_shape
        upper = np.minimum(upper, lower)
        almond = _band(xs, upper, lower)
        # sclera and iris inside the almond only
        x0, x1 = int(ex - d.eye_w - 2), int(ex + d.eye_w + 3)
        y0, y1 = int(ey - d.eye_h * 2 - 2), int(ey + d.eye_h * 2 + 3)
        roi = img[y0:y1, x0:x1]
        local = almond - (x0, y0)
        eye = np.empty_like(roi)
        eye[:] = (232, 234, 238, 255)
        _ellipse(eye, (ex - x0, ey + 0.5 - y0), (d.eye_h * 1.05, d.eye_h * 1.05), d.iris)
        _ellipse(eye, (ex - x0, ey + 0.5 - y0), (d.eye_h * 0.45, d.eye_h * 0.45), (15, 15, 15))
        mask = np.zeros(roi.shape[:2], np.uint8)
        _fill(mask, local, (255, 0, 0))
        m = mask[:, :, None].astype(np.float32) / 255.0
        roi[:] = (roi * (1 - m) + eye * m).astype(np.uint8)
        # lids: lash line, crease, lower lid
        _line(img, _xy(xs, upper), (25, 22, 22), 1.8)
        if close < 0.5:
            _line(
                img,
                _xy(xs[1:-1], upper[1:-1] - 3.0 - 2.5 * (1 - a5)),
                d.skin * (0.72 + 0.25 * a5),
                1.0,
            )
        _line(img, _xy(xs[1:-1], lower[1:-1]), d.skin * (0.6 - 0.25 * a7), 1.0 + 1.2 * a7)
        if a6 > 0:
            # crow's feet at the outer corner, a raised furrow under the eye, lifted cheek
            ox = ex + s * (d.eye_w + 1.5)
            for k in (-1, 0, 1):
                _line(
                    img,
                    [(ox, ey + 1.8 * k), (ox + s * 7, ey + 3.8 * k + 1)],
                    d.skin * (1 - 0.5 * a6),
                    1.1,
                )
            fy = ey + 8.5 - 3 * a6
            _line(img, _xy(xs[1:-1], fy + 1.2 * (u[1:-1] ** 2)), d.skin * (1 - 0.4 * a6), 1.2)
            _ellipse(img, (ex + s * 2, ey + 17 - 4 * a6), (8, 4.5), d.skin * (1 + 0.12 * a6))

    def _nose(self, img, g) -> None:
        d = self.id
        a9, a12 = g("9", 0.0), g("12", 0.0)
        ny = d.nose_y - 3.0 * a9
        if a9 > 0:  # wrinkles across the nose bridge
            for k in range(3):
                y = d.eye_y + 3 + 3.2 * k
                _line(
                    img,
                    [(FACE_CX - 5, y + 0.6), (FACE_CX, y), (FACE_CX + 5, y + 0.6)],
                    d.skin * (1 - 0.55 * a9),
                    1.2,
                )
        for s in (-1, 1):
            # nostril wing and nostril
            wx = FACE_CX + s * d.nose_w
            _line(
                img,
                [(wx - s * 2, ny - 4), (wx, ny - 1), (wx - s * 1.5, ny + 1.5)],
                d.skin * 0.7,
                1.0,
            )
            _ellipse(
                img, (FACE_CX + s * d.nose_w * 0.5, ny + 1.2), (2.2 + 1.2 * a9, 1.3), d.skin * 0.35
            )
        self._nasolabial = max(a9, 0.8 * a12)

    def _mouth(self, img, g, jaw: float) -> None:
        d = self.id
        a9, a12, a15, a17 = g("9", 0.0), g("12", 0.0), g("15", 0.0), g("17", 0.0)
        a20, a25, a27 = g("20", 0.0), g("25", 0.0), g("27", 0.0)
        my = d.mouth_y
        half = d.mouth_w * (1 + 0.3 * a12 + 0.7 * a20 - 0.05 * a15 - 0.2 * a27)
        cy = my - 8.5 * a12 + 8.0 * a15 + 0.8 * a20
        gap = max(a25 * (5.0 + 0.7 * jaw), 14.0 * a27)
        lo_shift = 0.35 * jaw if gap < 0.3 else 0.0  # jaw drop with lips still together
        thin = 1 - 0.45 * a20
        up_top = my - d.lip_up * thin - 2.5 * a9
        inner_top = my - 1.6 * a17
        inner_bot = inner_top + gap
        lo_bot = inner_bot + d.lip_lo * thin + lo_shift - 2.5 * a17
        u = _U11
        xs = FACE_CX + u * half
        bend = (cy - my) * u**2  # corners up (12) or down (15)
        bow = 0.8 * np.exp(-(((np.abs(u) - 0.22) / 0.12) ** 2))  # cupid's bow peaks
        top_outer = my + bend + (up_top - my) * (1 - u * u) ** 0.6 - bow
        top_inner = my + bend + (inner_top - my) * (1 - u * u)
        bot_inner = my + bend + (inner_bot - my) * (1 - u * u) ** 0.8
        bot_outer = my + bend + (lo_bot - my) * (1 - u * u) ** 0.6
        # nasolabial furrows, deepened by 9 and 12
        k = self._nasolabial
        for s in (-1, 1):
            nx = FACE_CX + s * (d.nose_w + 2)
            mx = xs[-1 if s > 0 else 0] + s * 3
            pts = [(nx, d.nose_y - 2), (nx + s * 3, (d.nose_y + my) / 2), (mx, cy + 2)]
            _line(img, pts, d.skin * (0.88 - 0.4 * k), 1.0 + 0.6 * k)
        if gap > 0.3:
            _fill(img, _band(xs, top_inner, bot_inner), (40, 30, 70))
            if a25 > 0.05:  # upper teeth
                teeth = np.minimum(top_inner + min(3.5, gap * 0.5), bot_inner)
                _fill(
                    img,
                    _band(xs[2:-2], top_inner[2:-2], teeth[2:-2]),
                    (215, 222, 228),
                )
        _fill(img, _band(xs, top_outer, top_inner), d.lip)
        _fill(img, _band(xs, bot_inner, bot_outer), d.lip * 1.08)
        _line(img, _xy(xs, top_inner), d.lip * 0.45, 1.0)
        if a15 > 0:  # depressor shadows running down from the corners
            for s in (-1, 1):
                x = xs[-1 if s > 0 else 0]
                _line(
                    img,
                    [(x, cy + 1), (x + s * 2, cy + 7 * a15 + 2)],
                    d.skin * (1 - 0.45 * a15),
                    1.2,
                )
        if a20 > 0:  # stretched corners pull the skin sideways into short folds
            for side in (-1, 1):
                x = xs[-1 if side > 0 else 0] + side * 2
                fold = [(x, cy - 3), (x + side * 4, cy), (x, cy + 3)]
                _line(img, fold, d.skin * (1 - 0.55 * a20), 1.3)
        # chin: the mentolabial furrow under the lip, the chin boss pushed up by 17
        chin = FACE_CY + d.b + jaw
        fy = lo_bot + 4.5 - 1.5 * a17
        _line(
            img,
            [(FACE_CX - 7, fy + 1), (FACE_CX, fy), (FACE_CX + 7, fy + 1)],
            d.skin * (0.9 - 0.4 * a17),
            1.0 + a17,
        )
        if a17 > 0:
            by = chin - 9 - 3 * a17
            _ellipse(
                img, (FACE_CX, by), (7.5, 4.5), d.skin * (1 - 0.35 * a17), thick=1 + int(a17 > 0.5)
            )
            for x, y in ((-3, -1), (2.5, -1.5), (0, 1.5), (-1.5, 3)):
                _ellipse(img, (FACE_CX + x, by + y), (1.1, 1.1), d.skin * (1 - 0.5 * a17))
