"""Nanonis scan images (``.sxm``) → image variables of the common model.

File layout
-----------
A text header of sections: a line ``:NAME:`` followed by its value lines (``:SCAN_PIXELS:`` → ``"nx ny"``,
``:SCAN_RANGE:`` → width and height in m, ``:SCAN_OFFSET:`` → frame centre in m, ``:SCAN_ANGLE:`` (deg),
``:SCAN_DIR:`` → ``up``/``down``, ``:SCANIT_TYPE:`` → ``FLOAT MSBFIRST``, ``:DATA_INFO:`` → a tab table
``Channel Name Unit Direction Calibration Offset``), ended by ``:SCANIT_END:``, blank lines and the two
bytes ``1A 04``.  Then, for each DATA_INFO row in order, the forward and (``Direction = both``) backward
image, each ``ny`` lines of ``nx`` big-endian float32 values in acquisition order: lines from the first
scanned to the last, every line left to right for forward and right to left for backward images.

Model (DESIGN.md §3)
--------------------
Each image is a variable (``row``, ``col``): ``<Name>`` (forward) and ``<Name>_bwd``, ``long_name`` the
Nanonis signal name (``Frequency Shift (Hz)``, ``Frequency Shift [bwd] (Hz)``).  The orientation is
Gwyddion's (2.62, checked value by value in the tests): **row 0 is the top of the frame and column 0 its
left edge**, so backward images are mirrored left–right and, for ``SCAN_DIR = up`` (first line at the
bottom), every image is flipped upside down.  Attributes ``x_real``, ``y_real`` (m, frame size) and
``x_offset``, ``y_offset`` (m) = frame centre − half the size, as Gwyddion's ``xoff``/``yoff``; the
rotation ``scan_angle`` (deg) and the centre ``scan_center`` are kept as attributes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from nrm_plugins.errors import ReaderError
from nrm_plugins.model import ramps_dataset, sanitize

from .common import decode_text, metadata_attrs, parse_date, parse_number, units_of, with_unit

FILE_FORMAT = "Nanonis scan image (.sxm)"
END_TAG = b":SCANIT_END:"
DATA_START = b"\x1a\x04"
_TYPES = {("FLOAT", "MSBFIRST"): ">f4", ("FLOAT", "LSBFIRST"): "<f4"}


def _sections(text: str) -> dict[str, str]:
    """``:NAME:`` sections → ``{NAME: value text}`` (value lines joined with newlines)."""
    out: dict[str, str] = {}
    name, lines = None, []
    for line in text.splitlines():
        stripped = line.strip()
        if len(stripped) > 2 and stripped.startswith(":") and stripped.endswith(":") and not line.startswith("\t"):
            if name is not None:
                out[name] = "\n".join(lines).strip("\n")
            name, lines = stripped[1:-1], []
        elif name is not None:
            lines.append(line.rstrip("\r"))
    if name is not None:
        out[name] = "\n".join(lines).strip("\n")
    return out


def _numbers(path, sections, key, count) -> list[float]:
    values = [parse_number(v) for v in sections.get(key, "").split()]
    if len(values) < count or any(v is None for v in values[:count]):
        raise ReaderError(path, f"cannot read :{key}: ('{sections.get(key, '')}'; expected {count} numbers)")
    return values[:count]


def read_image(path, options: dict | None = None) -> xr.Dataset:
    """Open an ``.sxm`` image file (all channels, forward and backward) — see the module docstring.

    :raises ReaderError: header problems, unsupported data type, a truncated file.
    """
    path = Path(path)
    raw = path.read_bytes()
    end = raw.find(END_TAG)
    if end < 0:
        raise ReaderError(path, "no ':SCANIT_END:' line: not a Nanonis image, or its header is cut off")
    start = raw.find(DATA_START, end)
    if start < 0:
        raise ReaderError(path, "header only: no data marker (1A 04) after ':SCANIT_END:'")
    start += len(DATA_START)
    sections = _sections(decode_text(raw[:end]))
    dtype = _TYPES.get(tuple(sections.get("SCANIT_TYPE", "").split()))
    if dtype is None:
        raise ReaderError(path, f"unsupported data type ':SCANIT_TYPE: {sections.get('SCANIT_TYPE', '')}' "
                                f"(supported: {[' '.join(k) for k in _TYPES]})")
    nx, ny = (int(v) for v in _numbers(path, sections, "SCAN_PIXELS", 2))
    width, height = _numbers(path, sections, "SCAN_RANGE", 2)
    center_x, center_y = _numbers(path, sections, "SCAN_OFFSET", 2)
    table = [row.strip("\t").split("\t") for row in sections.get("DATA_INFO", "").splitlines() if row.strip()]
    if len(table) < 2:
        raise ReaderError(path, "no channels in :DATA_INFO:")
    head = [h.strip() for h in table[0]]
    try:
        col_name, col_unit, col_dir = head.index("Name"), head.index("Unit"), head.index("Direction")
    except ValueError:
        raise ReaderError(path, f":DATA_INFO: columns {head} lack Name, Unit or Direction") from None
    scan_up = sections.get("SCAN_DIR", "").strip().lower() == "up"

    planes = []  # (variable name, long name, unit, backward, extra attrs)
    for number, row in enumerate(table[1:], start=1):
        if len(row) <= max(col_name, col_unit, col_dir):
            raise ReaderError(path, f":DATA_INFO: row {number} has {len(row)} columns, the table header has "
                                    f"{len(head)}: {row!r}")
        name, unit, direction = row[col_name].strip(), row[col_unit].strip(), row[col_dir].strip().lower()
        info = {h: v.strip() for h, v in zip(head, row)}
        base = name.replace("_", " ")
        for backward in ((False, True) if direction == "both" else (direction == "backward",)):
            extra = {"scan_direction": "backward" if backward else "forward", "nanonis_data_info": info}
            label = f"{base} [bwd]" if backward else base
            planes.append((sanitize(name) + ("_bwd" if backward else ""), with_unit(label, unit), unit,
                           backward, extra))
    plane = nx * ny
    expected = len(planes) * plane * 4
    found = len(raw) - start
    if found < expected:
        raise ReaderError(path, f"truncated: {len(planes)} images of {nx} x {ny} float32 = {expected} bytes "
                                f"expected after the header, found {found} bytes")
    data = np.frombuffer(raw, dtype=dtype, count=len(planes) * plane, offset=start)
    images = {}
    for k, (name, long_name, unit, backward, extra) in enumerate(planes):
        image = data[k * plane: (k + 1) * plane].reshape(ny, nx)
        if backward:
            image = image[:, ::-1]
        if scan_up:
            image = image[::-1, :]
        images[name] = (image.astype(np.float32), units_of(unit), long_name, extra)

    header = dict(sections)
    attrs = metadata_attrs({**header, "Comment": header.get("COMMENT", "")})
    attrs.update({
        "file_format": FILE_FORMAT,
        "source_file": str(path),
        "x_real": width, "y_real": height,
        "x_offset": center_x - width / 2, "y_offset": center_y - height / 2,
        "scan_center": [center_x, center_y],
        "scan_pixels": [nx, ny],
        "scan_direction": sections.get("SCAN_DIR", "").strip(),
        "vendor_header": header,
    })
    angle = parse_number(sections.get("SCAN_ANGLE"))
    if angle is not None:
        attrs["scan_angle"] = angle
    started = parse_date(f"{sections.get('REC_DATE', '').strip()} {sections.get('REC_TIME', '').strip()}")
    if started:
        attrs["acquisition_start"] = started
    return ramps_dataset({}, attrs=attrs, images=images)
