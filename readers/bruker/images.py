"""Images of NanoScope files (``\\*Ciao image list``: Height, Deflection Error, FV Modulus …).

Each list has ``Samps/line`` (columns), ``Number of lines`` (rows), ``Scan Size: 2 2 ~m`` and
``\\@2:Z scale``; the data are ``rows × columns`` integers at ``\\Data offset``, first stored line
first.  ``row`` 0 is that first stored line, which NanoScope (and Gwyddion, which flips it) shows at
the *bottom*; force-volume pixels use the same order (checked: the contact position of each
20200903_Egel2.0_00023.spm curve correlates with the Height image in this order, r = 0.44, and not
in any flipped one).  The ``Z offset`` entry is not added (as Gwyddion).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ...errors import ReaderError
from .force import fixed_point_divisor
from .header import Header, Section
from .scaling import channel_scale
from .units import parse_unit


@dataclass
class Image:
    name: str
    data: np.ndarray  # (rows, columns)
    units: str
    attrs: dict = field(default_factory=dict)


def scan_size(section: Section | None) -> tuple[float, float] | None:
    """``Scan Size: 2 2 ~m`` → (2e-6, 2e-6); ``Scan Size: 2500 nm`` → (2.5e-6, 2.5e-6), m."""
    if section is None:
        return None
    text = section.text("Scan Size")
    if not text:
        return None
    m = re.match(r"^\s*([-+\d.eE]+)(?:\s+([-+\d.eE]+))?\s*(\S+)\s*$", text)
    if not m:
        return None
    unit = parse_unit(m.group(3))
    if unit is None or unit[1] != "m":
        return None
    try:
        x = float(m.group(1)) * unit[0]
        y = float(m.group(2)) * unit[0] if m.group(2) else x
    except ValueError:
        return None
    return x, y


def scan_offset(header: Header) -> tuple[float, float]:
    """``X Offset``/``Y Offset`` of the scan list in m (the scan centre), 0 when absent."""
    scan = header.first("Ciao scan list")
    out = []
    for key in ("X Offset", "Y Offset"):
        text = scan.text(key) if scan is not None else None
        m = re.match(r"^\s*([-+\d.eE]+)\s*(\S*)\s*$", text or "")
        unit = parse_unit(m.group(2)) if m else None
        try:
            out.append(float(m.group(1)) * unit[0] if m and unit and unit[1] == "m" else 0.0)
        except ValueError:
            out.append(0.0)
    return out[0], out[1]


def read_images(path, data_size: int, header: Header) -> tuple[list[Image], list[str]]:
    """Every ``\\*Ciao image list`` as an :class:`Image` in physical units where the header allows."""
    images, notes = [], []
    centre = scan_offset(header)
    for k, section in enumerate(header.all("Ciao image list")):
        where = f"image {k + 1}"
        offset, length = section.number("Data offset"), section.number("Data length")
        columns, rows = section.number("Samps/line"), section.number("Number of lines")
        if offset is None or length is None:
            raise ReaderError(path, f"{where}: missing '\\Data offset' or '\\Data length' in its '\\*Ciao image list'")
        if not columns or not rows or columns < 1 or rows < 1:
            raise ReaderError(path, f"{where}: missing or invalid 'Samps/line' / 'Number of lines'")
        offset, length, columns, rows = int(offset), int(length), int(columns), int(rows)
        n = rows * columns
        if length not in (2 * n, 4 * n):
            raise ReaderError(path, f"{where}: Data length {length} bytes does not hold {rows} × {columns} "
                                    "pixels of 2 or 4 bytes")
        width = length // n
        if offset < 0 or offset + length > data_size:
            raise ReaderError(path, f"truncated: {where} needs {length} bytes at offset {offset}, but the file "
                                    f"has only {max(0, data_size - offset)} bytes there (file size {data_size})")
        header_bytes_value = section.number("Bytes/pixel")
        header_bytes = int(header_bytes_value) if header_bytes_value in (1, 2, 4) else width
        raw = np.fromfile(path, dtype=f"<i{width}", count=n, offset=offset).reshape(rows, columns)
        divisor = fixed_point_divisor(raw, width, header_bytes)
        scale = channel_scale(section, header, f"Image {k + 1}", header_bytes, image=True)
        notes.extend(scale.notes)
        data = raw * (scale.hard_per_lsb / divisor)
        units = scale.hard_unit
        if scale.sensitivity is not None:
            data = data * scale.sensitivity
            units = scale.physical_unit
        size = scan_size(section) or scan_size(header.first("Ciao scan list"))
        attrs = {"bruker_bytes_per_pixel": width, "bruker_lsb_divisor": divisor,
                 "bruker_scale_per_lsb": float(scale.hard_per_lsb / divisor * (scale.sensitivity or 1.0)),
                 "row_order": "row 0 = first line stored in the file (displayed at the bottom by NanoScope)"}
        if size is not None:
            attrs.update(x_real=size[0], y_real=size[1], x_offset=centre[0] - size[0] / 2,
                         y_offset=centre[1] - size[1] / 2)
        else:
            notes.append(f"{where} ('{scale.name}'): no scan size; x_real/y_real unknown")
        images.append(Image(name=scale.name, data=data, units=units, attrs=attrs))
    return images, notes
