"""Helpers shared by the Nanonis readers: signal names, header numbers, metadata attributes.

Nanonis names a signal ``"<name> (<unit>)"`` and marks variants with tags in brackets, in an order that
differs between file kinds: ``"Current [bwd] (A)"`` (.3ds, .dat), ``"Current (A) [bwd] [filt]"`` (.dat
filtered copies), ``"Current [00001] [bwd] (A)"`` (.dat with several sweeps), ``"Current [AVG] (A)"``
(their average).  :func:`parse_signal` splits such a name into base name, unit and tags.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import numpy as np

VENDOR = "Nanonis"
#: dimensionless quantities carry this ``units`` string (CF convention)
DIMENSIONLESS = "1"

_TAG = re.compile(r"\[([^\[\]]*)\]")
_UNIT = re.compile(r"\(([^()]*)\)\s*$")


@dataclass(frozen=True)
class Signal:
    """A parsed Nanonis signal name."""

    name: str  # the full vendor name, e.g. "Current [bwd] (A)"
    base: str  # "Current"
    unit: str  # "A" ("" when the name has none)
    tags: tuple[str, ...]  # ("bwd",)

    @property
    def backward(self) -> bool:
        return "bwd" in self.tags

    @property
    def filtered(self) -> bool:
        return "filt" in self.tags

    @property
    def sweep_label(self) -> str:
        """``"AVG"`` or a sweep number such as ``"00001"`` (.dat files with several sweeps), else ``""``."""
        for tag in self.tags:
            if tag == "AVG" or tag.isdigit():
                return tag
        return ""

    @property
    def plain(self) -> str:
        """The name without tags: ``"Current (A)"``."""
        return with_unit(self.base, self.unit)


def parse_signal(name: str) -> Signal:
    """``"Current (A) [bwd] [filt]"`` → ``Signal(base="Current", unit="A", tags=("bwd", "filt"))``."""
    tags = tuple(t.strip() for t in _TAG.findall(name))
    rest = _TAG.sub(" ", name).strip()
    match = _UNIT.search(rest)
    unit = match.group(1).strip() if match else ""
    base = rest[: match.start()].strip() if match else rest
    return Signal(name=name.strip(), base=" ".join(base.split()), unit=unit, tags=tags)


def with_unit(base: str, unit: str) -> str:
    """``("Current", "A")`` → ``"Current (A)"``; no parentheses for a dimensionless value."""
    return f"{base} ({unit})" if unit and unit != DIMENSIONLESS else base


def units_of(unit: str) -> str:
    """The ``units`` attribute for a Nanonis unit string (``""`` → ``"1"``)."""
    return unit if unit else DIMENSIONLESS


def is_z_sweep(signal: Signal) -> bool:
    """True for a sweep of the tip height: ``Z (m)`` or ``Z rel (m)``."""
    return signal.unit == "m" and signal.base in ("Z", "Z rel")


def parse_number(text) -> float | None:
    """A header number (``"313E+0"``, ``"1,5951E+0"``, ``"Inf"``) as float; None when it is not one."""
    if text is None:
        return None
    text = str(text).strip().strip('"')
    if not text:
        return None
    if "," in text and "." not in text:  # a decimal comma (seen in some headers)
        text = text.replace(",", ".")
    try:
        return float(text)
    except ValueError:
        return None


def parse_date(text) -> str | None:
    """``"26.10.2021 10:48:37"`` → ``"2021-10-26T10:48:37"``; None when empty or not a Nanonis date."""
    text = (text or "").strip().strip('"')
    for fmt in ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y"):
        try:
            return datetime.strptime(text, fmt).isoformat()
        except ValueError:
            continue
    return None


#: dataset attribute ← the first header key present (keys as Nanonis writes them, ``Module>Parameter``)
NUMERIC_ATTRS = {
    "lockin_frequency": ("Lock-in>Frequency (Hz)",),
    "lockin_amplitude": ("Lock-in>Amplitude",),
    "lockin_harmonic": ("Lock-in>Harmonic",),
    "lockin_reference_phase": ("Lock-in>Reference phase (deg)",),
    "lockin_sensitivity": ("Lock-in>Sensitivity (V)", "Lock-in>Sensitivity"),
    "lockin_time_constant": ("Lock-in>Time constant (s)", "Lock-in>Time Constant (s)"),
    "bias": ("Bias>Bias (V)",),
}
TEXT_ATTRS = {
    "lockin_status": ("Lock-in>Lock-in status",),
    "lockin_modulated_signal": ("Lock-in>Modulated signal",),
    "lockin_demodulated_signal": ("Lock-in>Demodulated signal",),
    "software_version": ("NanonisMain>SW Version",),
    "experiment": ("Experiment",),
    "user": ("User",),
    "comment": ("Comment",),
}
_START = ("Start time", "Date", "Saved Date")


def metadata_attrs(header: dict) -> dict:
    """Instrument metadata (DESIGN.md §3 attribute names) found in a flat Nanonis header.

    Only what the header holds; ``lockin_amplitude`` is in the units of ``lockin_modulated_signal``.
    """
    attrs = {"vendor": VENDOR}
    for attr, keys in NUMERIC_ATTRS.items():
        for key in keys:
            value = parse_number(header.get(key))
            if value is not None:
                attrs[attr] = value
                break
    for attr, keys in TEXT_ATTRS.items():
        for key in keys:
            value = str(header.get(key, "")).strip().strip('"')
            if value:
                attrs[attr] = value
                break
    for key in _START:
        start = parse_date(header.get(key))
        if start:
            attrs["acquisition_start"] = start
            break
    end = parse_date(header.get("End time"))
    if end:
        attrs["acquisition_end"] = end
    return attrs


def decode_text(raw: bytes) -> str:
    """Header bytes as text: UTF-8 (a leading BOM dropped), else Windows-1252/Latin-1."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def direction_labels(first: np.ndarray, last: np.ndarray, z_sweep: bool, backward: bool) -> np.ndarray:
    """Direction of each ramp from its sweep axis' first and last value (time order).

    For a Z sweep (Nanonis: larger Z = tip farther from the surface) going from larger to smaller Z is an
    ``approach``, the other way a ``retract``; a ramp whose axis does not move keeps the vendor's name.
    Other sweeps (bias...) are ``fwd`` / ``bwd`` as Nanonis names them.
    """
    first = np.asarray(first, dtype=np.float64)
    vendor = "bwd" if backward else "fwd"
    out = np.full(first.shape, vendor, dtype=object)
    if z_sweep:
        last = np.asarray(last, dtype=np.float64)
        out[first > last] = "approach"
        out[first < last] = "retract"
    return out
