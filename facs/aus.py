"""FACS action unit codes and names, and the sort order of label lists.

Codes are strings because MMI uses lettered codes (28B, 46L, 46R) as labels of
their own.
"""

from __future__ import annotations

import re

# A (frame, label) cell the corpus did not code (BP4D's 9, CK+'s frames between neutral and
# peak): -1 in every label matrix, label LMDB and scores file; the nets' loss_param
# ignore_label, and skipped by every metric, threshold and fusion fit.
UNKNOWN = -1

AU_NAMES: dict[str, str] = {
    "1": "Inner Brow Raiser",
    "2": "Outer Brow Raiser",
    "4": "Brow Lowerer",
    "5": "Upper Lid Raiser",
    "6": "Cheek Raiser",
    "7": "Lid Tightener",
    "8": "Lips Toward Each Other",
    "9": "Nose Wrinkler",
    "10": "Upper Lip Raiser",
    "11": "Nasolabial Deepener",
    "12": "Lip Corner Puller",
    "13": "Cheek Puffer",
    "14": "Dimpler",
    "15": "Lip Corner Depressor",
    "16": "Lower Lip Depressor",
    "17": "Chin Raiser",
    "18": "Lip Puckerer",
    "19": "Tongue Show",
    "20": "Lip Stretcher",
    "21": "Neck Tightener",
    "22": "Lip Funneler",
    "23": "Lip Tightener",
    "24": "Lip Pressor",
    "25": "Lips Part",
    "26": "Jaw Drop",
    "27": "Mouth Stretch",
    "28": "Lip Suck",
    "28B": "Lip Suck (Bottom)",
    "28T": "Lip Suck (Top)",
    "29": "Jaw Thrust",
    "30": "Jaw Sideways",
    "31": "Jaw Clencher",
    "32": "Lip Bite",
    "33": "Cheek Blow",
    "34": "Cheek Puff",
    "35": "Cheek Suck",
    "36": "Tongue Bulge",
    "37": "Lip Wipe",
    "38": "Nostril Dilator",
    "39": "Nostril Compressor",
    "41": "Lid Droop",
    "42": "Slit",
    "43": "Eyes Closed",
    "44": "Squint",
    "45": "Blink",
    "46": "Wink",
    "46L": "Wink (Left)",
    "46R": "Wink (Right)",
    "51": "Head Turn Left",
    "52": "Head Turn Right",
    "53": "Head Up",
    "54": "Head Down",
    "55": "Head Tilt Left",
    "56": "Head Tilt Right",
    "57": "Head Forward",
    "58": "Head Back",
}

_CODE = re.compile(r"^\s*(?:AU)?\s*0*(\d+)\s*([A-Za-z]?)\s*$")


def normalize_code(code: str | int) -> str:
    """'AU012' / ' 12 ' / 12 -> '12'; '46l' -> '46L'. Raises ValueError if not an AU code."""
    m = _CODE.match(str(code))
    if not m:
        raise ValueError(f"not a FACS action unit code: {code!r}")
    return m.group(1) + m.group(2).upper()


def sort_key(code: str) -> tuple[int, str]:
    """Sort AU codes by number, then letter: 1, 2, ..., 28, 28B, 28T, 46, 46L, 46R."""
    m = _CODE.match(code)
    if not m:
        return (10**6, code)
    return (int(m.group(1)), m.group(2).upper())


def sort_codes(codes) -> list[str]:
    return sorted({normalize_code(c) for c in codes}, key=sort_key)


def au_name(code: str) -> str:
    return AU_NAMES.get(normalize_code(code), "Action Unit")


def au_label(code: str) -> str:
    """'12' -> 'AU12 Lip Corner Puller' (for pages and figures)."""
    c = normalize_code(code)
    return f"AU{c} {au_name(c)}"


def column_prefix(code: str) -> str:
    """OpenFace-style column stem: '1' -> 'AU01', '46L' -> 'AU46L'."""
    c = normalize_code(code)
    m = _CODE.match(c)
    assert m
    return f"AU{int(m.group(1)):02d}{m.group(2)}"
