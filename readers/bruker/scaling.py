"""From stored integers (LSB) to volts and to physical units, per channel (one ``*Ciao … list``).

Force curves (``\\*Ciao force image list``)::

    \\@4:Z scale: V [Sens. DeflSens] (0.000375 V/LSB) 2.5 V      and     \\@Sens. DeflSens: V 21.9 nm/V

    hard value  [V]  = LSB × hard scale (the number in parentheses, 0.000375 V/LSB)
    physical    [m]  = hard value × sensitivity (21.9 nm/V)

This is Bruker's rule for force data (it reproduces the relative trigger threshold of every file here,
e.g. 0.1 V in nanoscope-pypi_FV.spm, and a constant-compliance slope of 1.02 against the Height Sensor
in nanoscope-pypi_ForceHold.spm).  The ``Z scale`` *hard value* (2.5 V) is only a display range.

Images (``\\*Ciao image list``) are rescaled to the full integer range when saved, so there the hard
value is the full range: ``hard value = LSB × Z scale value / 2^(8·Bytes/pixel)`` (DI/Bruker manual,
"Data File Format"; what Gwyddion and pySPM do for images).

A sensitivity without a unit (``\\@Sens. DeflSens: V 27.39000`` in NanoScope 9.2 files) is read as
nm/V for the deflection sensitivity — the unit NanoScope uses for it everywhere else — and the
assumption is recorded.  Other unit-less sensitivities (``V 1.000000``) leave the channel in its hard
units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .header import CiaoValue, Header, Section
from .units import parse_ratio, parse_unit

#: Sensitivities that are the deflection sensitivity (InvOLS) under the names NanoScope versions use.
DEFLECTION_SENS = ("Sens. DeflSens", "Sens. Deflection")
#: Tokens of ``@N:Image Data`` that are the normal deflection signal.
DEFLECTION_TOKENS = ("DeflectionError", "Deflection", "VerticalDeflection")


@dataclass
class ChannelScale:
    """How one channel's integers become numbers with units."""

    name: str  # vendor name, e.g. "Deflection Error"
    token: str  # vendor token, e.g. "DeflectionError"
    hard_per_lsb: float  # hard units per LSB of the header's data width (NaN when unknown)
    hard_unit: str  # "V", "deg", "Hz", "1"
    soft_scale: str | None = None  # e.g. "Sens. DeflSens"
    sensitivity: float | None = None  # physical units per hard unit (SI), None when there is none
    physical_unit: str | None = None  # e.g. "m"
    notes: list[str] = field(default_factory=list)

    @property
    def is_deflection(self) -> bool:
        return self.token in DEFLECTION_TOKENS or self.soft_scale in DEFLECTION_SENS


def image_data_entry(section: Section) -> CiaoValue | None:
    """The ``\\@N:Image Data`` select entry of a list (group 4 for force curves, 2 or 3 for images)."""
    for norm, (_key, value) in section.entries.items():
        if norm.endswith(":imagedata") and isinstance(value, CiaoValue):
            return value
    return None


def z_scale_entry(section: Section) -> CiaoValue | None:
    for norm, (_key, value) in section.entries.items():
        if norm.startswith("@") and norm.endswith(":zscale") and isinstance(value, CiaoValue):
            return value
    return None


def channel_name(section: Section, fallback: str) -> tuple[str, str]:
    """(vendor name, token) of a list, e.g. ("Height Sensor", "ZSensor")."""
    entry = image_data_entry(section)
    if entry is None:
        return fallback, ""
    name = (entry.text or entry.soft_scale or fallback).strip() or fallback
    return name, (entry.soft_scale or "").strip()


def channel_scale(section: Section, header: Header, fallback_name: str, header_bytes: int,
                  image: bool = False) -> ChannelScale:
    """The scaling of one force-curve list (``image=False``) or image list (``image=True``).

    :param header_bytes: the list's ``Bytes/pixel`` (the width the scales refer to).
    """
    name, token = channel_name(section, fallback_name)
    scale = ChannelScale(name=name, token=token, hard_per_lsb=math.nan, hard_unit="1")
    z = z_scale_entry(section)
    if z is None:
        scale.notes.append(f"'{name}': no '@N:Z scale' entry; values are raw integers (LSB)")
        scale.hard_per_lsb = 1.0
        return scale
    full_range = 2.0 ** (8 * header_bytes)
    value_unit = parse_unit(z.unit)
    per_lsb_unit = _ratio_numerator(z.hard_scale_unit)
    if not image and z.hard_scale is not None and per_lsb_unit is not None:
        factor, unit = per_lsb_unit
        scale.hard_per_lsb, scale.hard_unit = z.hard_scale * factor, unit
    elif z.value is not None and value_unit is not None:
        factor, unit = value_unit
        scale.hard_per_lsb, scale.hard_unit = z.value * factor / full_range, unit
        if not image:
            scale.notes.append(f"'{name}': hard scale unreadable; used Z scale value / 2^{8 * header_bytes}")
    else:
        scale.hard_per_lsb = 1.0
        scale.notes.append(f"'{name}': Z scale unreadable ({z.text!r}); values are raw integers (LSB)")
        return scale
    scale.soft_scale = z.soft_scale
    if z.soft_scale:
        _apply_sensitivity(scale, header)
    return scale


def _apply_sensitivity(scale: ChannelScale, header: Header) -> None:
    soft = scale.soft_scale
    if soft not in header.sens:
        scale.notes.append(f"'{scale.name}': sensitivity '@{soft}' not found in the header; kept in {scale.hard_unit}")
        return
    value, unit = header.sens[soft]
    ratio = parse_ratio(unit)
    if ratio is not None and ratio[1] != "1":
        factor, numerator, denominator = ratio
        if denominator not in (scale.hard_unit, "1"):
            scale.notes.append(f"'{scale.name}': sensitivity unit {unit!r} does not divide {scale.hard_unit}")
        scale.sensitivity, scale.physical_unit = value * factor, numerator
    elif not unit.strip() and soft in DEFLECTION_SENS:
        scale.sensitivity, scale.physical_unit = value * 1e-9, "m"
        scale.notes.append(f"'@{soft}: V {value:g}' has no unit; read as nm/V (NanoScope's unit for it)")


def _ratio_numerator(text: str):
    """``"mV/LSB"`` → (1e-3, "V"); None when the unit is not '<unit>/LSB'."""
    ratio = parse_ratio(text)
    if ratio is None:
        return None
    factor, numerator, denominator = ratio
    if denominator != "1":  # "LSB" parses as dimensionless
        return None
    return factor, numerator
