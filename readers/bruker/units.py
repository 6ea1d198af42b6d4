"""NanoScope unit strings (``nm/V``, ``~m``, ``mV/LSB``, ``º``, ``kHz``, ``Pa/Arb``) → SI factor and unit."""
from __future__ import annotations

_PREFIX = {"f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "~": 1e-6, "µ": 1e-6, "\xb5": 1e-6, "m": 1e-3,
           "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
#: Base units as written by NanoScope → CF/UDUNITS name.
_BASE = {"m": "m", "V": "V", "A": "A", "N": "N", "Pa": "Pa", "Hz": "Hz", "HZ": "Hz", "s": "s", "eV": "eV",
         "W": "W", "deg": "deg", "º": "deg", "\xba": "deg", "°": "deg", "Arb": "1", "LSB": "1", "1": "1",
         "g": "g", "C": "C", "F": "F", "Ohm": "ohm", "%": "%"}


def parse_unit(text: str) -> tuple[float, str] | None:
    """``"nm"`` → (1e-9, ``"m"``); ``"KHz"`` → (1e3, ``"Hz"``); ``""`` → (1, ``"1"``); None if unknown."""
    text = (text or "").strip()
    if not text:
        return 1.0, "1"
    if text in _BASE:
        return 1.0, _BASE[text]
    if len(text) > 1 and text[0] in _PREFIX and text[1:] in _BASE:
        return _PREFIX[text[0]], _BASE[text[1:]]
    return None


def parse_ratio(text: str) -> tuple[float, str, str] | None:
    """``"nm/V"`` → (1e-9, ``"m"``, ``"V"``): SI factor, numerator and denominator units; None if unknown
    (e.g. ``log(Pa)/log(Arb)`` or ``N/m*Arb``)."""
    text = (text or "").strip()
    if text.count("/") != 1:
        return None
    num, den = text.split("/")
    a, b = parse_unit(num), parse_unit(den)
    if a is None or b is None or not num.strip():
        return None
    return a[0] / b[0], a[1], b[1]
