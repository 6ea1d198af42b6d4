"""Bruker NanoScope file → common model (DESIGN.md §3): force ramps with every channel, plus images.

Roles:

* ``deflection`` (V): the raw photodiode signal of the deflection channel (``Deflection Error``),
  ``LSB × hard scale``; NanoScope's sign already has the tip pushed away from the surface positive
  (it rises at contact on every approach here).  The same channel scaled by its deflection sensitivity
  (InvOLS, ``\\@Sens. DeflSens``) is kept as ``Deflection_Error`` in m.
* ``piezo`` (m): the nominal Z ramp, larger = farther (see :mod:`.force`).
* ``time_in_ramp`` (s): from the ramp velocities / segment durations, where the header has them.
* every other channel under its sanitized vendor name (``Height_Sensor`` m, ``Amplitude2`` V,
  ``Phase2`` deg, ``Input1`` V, ``Xsensor`` m …) in physical units when the header gives a
  sensitivity with a unit, else in its hard units.

Attributes: ``spring_constant`` (N/m) of the deflection channel's list (lists may differ: all are in
``bruker_spring_constants``), ``invols`` (m/V), the header version, date, Zsens, ramp size and the whole
header text as ``vendor_header``.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from ...errors import ReaderError
from ...model import ramps_dataset, sanitize
from .force import LAZY_CHUNK_SAMPLES, Layout, curve_layout, nominal_piezo, read_channel
from .header import HEADER_END, MAGICS, MAX_HEADER_BYTES, Header, find_header_end, parse_header
from .images import read_images, scan_offset, scan_size

#: Suffixes NanoScope uses: .spm, .pfc, and numbered captures .000 … .999.
SUFFIXES = (".spm", ".pfc")
#: Read lazily (dask over a memory map) when one channel would take more than this in memory.
LAZY_ABOVE_BYTES = 512 * 1024**2


def identify(path: Path, head: bytes) -> int | None:
    """100 for a NanoScope magic at the start, 10 for a NanoScope suffix alone, else None."""
    if head.startswith(MAGICS):
        return 100
    suffix = path.suffix.lower()
    if suffix in SUFFIXES or (len(suffix) == 4 and suffix[1:].isdigit()):
        return 10
    return None


def read_header(path: Path) -> tuple[Header, int]:
    """The parsed header and the file size; ReaderError when it is not a NanoScope file."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(MAX_HEADER_BYTES + len(HEADER_END))
    if head.startswith(b"?*File list"):
        raise ReaderError(path, "NanoScope text-export files ('?*File list') are not supported; "
                                "export the binary file instead")
    if not head.startswith(MAGICS):
        raise ReaderError(path, "not a NanoScope file: it does not start with '\\*Force file list' or "
                                "'\\*File list'")
    end = find_header_end(head)
    if end < 0:
        raise ReaderError(path, "the NanoScope header has no end marker '\\*File list end' (file truncated "
                                "inside the header, or not a NanoScope file)")
    return parse_header(head[:end]), size


def read_nanoscope(path, options: dict | None = None):
    """Read a NanoScope file into the common model; see the module docstring."""
    path = Path(path)
    options = dict(options or {})
    strict = bool(options.get("strict", False))
    header, size = read_header(path)
    force_lists = header.all("Ciao force image list")
    images, image_notes = read_images(path, size, header)
    notes = list(image_notes)
    missing: list[str] = []
    attrs = _file_attrs(path, header)
    channels, coords, extra_coords = {}, {}, {}
    if force_lists:
        channels, coords, extra_coords = _read_ramps(path, size, header, force_lists, options, attrs, notes, missing)
    if not channels and not images:
        raise ReaderError(path, "the NanoScope file holds neither force curves nor images")
    notes.extend(header.problems)
    attrs["bruker_notes"] = notes
    if missing:
        message = "missing calibration metadata: " + "; ".join(missing)
        if strict:
            raise ReaderError(path, message + " (strict mode)")
        warnings.warn(f"{path}: {message}; the raw data are opened without it (strict=True makes this an error)",
                      UserWarning, stacklevel=3)
        attrs["missing_calibration"] = missing
    image_vars = {}
    for image in images:
        base = sanitize(image.name)
        name = _unique(base if base not in channels else f"{base}_image", set(channels) | set(image_vars))
        image_vars[name] = (image.data, image.units, image.name, image.attrs)
    ds = ramps_dataset(channels, coords if channels else None, attrs, image_vars)
    if extra_coords:
        ds = ds.assign_coords({name: ("ramp", values) for name, values in extra_coords.items()})
    return ds


def _read_ramps(path, size, header, force_lists, options, attrs, notes, missing):
    """Channels ``{name: (data, units, long_name)}``, ramp coordinates and extra coordinates."""
    force_list = header.first("Ciao force list")
    if force_list is None:
        raise ReaderError(path, "force data without a '\\*Ciao force list' section (no ramp description)")
    layout = curve_layout(path, header, force_list, force_lists[0])
    lazy = _want_lazy(options.get("lazy"), layout)
    read = [read_channel(path, size, section, k, header, layout, lazy) for k, section in enumerate(force_lists)]
    notes.extend(layout.notes)
    channels, deflection = _ramp_channels(read, notes)
    attrs.update(_calibration_attrs(read, deflection, missing))
    piezo, t = nominal_piezo(layout)
    if np.isfinite(piezo).any():
        channels["piezo"] = (_per_curve(piezo, layout.n_curves, lazy), "m", "Z ramp (nominal, larger = farther)")
    else:
        missing.append("Z ramp size or its sensitivity (Zsens): no piezo")
    if np.isfinite(t).any():
        channels["time_in_ramp"] = (_per_curve(t, layout.n_curves, lazy), "s", "time since the segment start")
    attrs.update(_layout_attrs(layout))
    coords, extra_coords = _ramp_coords(path, header, layout)
    return channels, coords, extra_coords


def _unique(name: str, taken) -> str:
    """``name``, or ``name_2``, ``name_3`` … when taken."""
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}_{k}", k + 1
    return candidate


def _want_lazy(option, layout) -> bool:
    """``lazy`` option: True/False, or None = lazy when one channel exceeds :data:`LAZY_ABOVE_BYTES` as float64."""
    if option is None:
        option = layout.n_curves * len(layout.segments) * max(s.samples for s in layout.segments) * 8 > LAZY_ABOVE_BYTES
    if option:
        try:
            import dask.array  # noqa: F401
        except ImportError:
            warnings.warn("dask is not installed: the Bruker file is read into memory (pip install dask)",
                          UserWarning, stacklevel=4)
            return False
    return bool(option)


def _per_curve(one_curve: np.ndarray, n_curves: int, lazy: bool):
    """(segments, samples) of one curve → (n_curves × segments, samples); lazily (dask) when ``lazy``."""
    if lazy:
        import dask.array as da

        curves_per_chunk = max(1, LAZY_CHUNK_SAMPLES // one_curve.size)
        return da.tile(da.from_array(one_curve, chunks=-1), (n_curves, 1)).rechunk(
            (curves_per_chunk * one_curve.shape[0], -1))
    return np.tile(one_curve, (n_curves, 1))


# ---------------------------------------------------------------------------------------------- channels
def _ramp_channels(read, notes: list[str]):
    """``{name: (data, units, long_name)}`` for every force channel, and the deflection channel used."""
    channels: dict = {}
    deflection = next((c for c in read if c.scale.is_deflection), None)
    used_names: set[str] = set()
    for channel in read:
        scale = channel.scale
        notes.extend(scale.notes)
        base = sanitize(scale.name)
        name = _unique(base, used_names)
        used_names.add(name)
        long_name = scale.name if name == base else f"{scale.name} [{name.rsplit('_', 1)[1]}]"
        if channel is deflection:
            channels["deflection"] = (channel.hard, scale.hard_unit, long_name)
        if scale.sensitivity is not None:
            channels[name] = (channel.hard * scale.sensitivity, scale.physical_unit, long_name)
        elif channel is not deflection:
            channels[name] = (channel.hard, scale.hard_unit, long_name)
    return channels, deflection


def _calibration_attrs(read, deflection, missing: list[str]) -> dict:
    attrs: dict = {}
    springs = []
    for k, channel in enumerate(read):
        springs.append(f"{channel.scale.name} (list {k + 1}): "
                       + (f"{channel.spring_constant:g} N/m" if channel.spring_constant is not None else "none"))
    attrs["bruker_spring_constants"] = "; ".join(springs)
    attrs["bruker_channels"] = "; ".join(
        f"{c.scale.name}: {c.bytes_per_sample} bytes/sample (header {c.header_bytes}), "
        f"{c.scale.hard_per_lsb / c.lsb_divisor:.10g} {c.scale.hard_unit}/LSB"
        + (f", sensitivity {c.scale.sensitivity:.10g} {c.scale.physical_unit}/{c.scale.hard_unit}"
           if c.scale.sensitivity is not None else "")
        + (f", LSB divisor {c.lsb_divisor}" if c.lsb_divisor != 1 else "")
        for c in read)
    if deflection is None:
        missing.append("no deflection channel among the force channels")
        return attrs
    k = deflection.spring_constant
    if k is not None and math.isfinite(k) and k > 0:
        attrs["spring_constant"] = float(k)
    else:
        missing.append(f"spring constant of the '{deflection.scale.name}' list")
    if deflection.scale.sensitivity is not None and deflection.scale.physical_unit == "m":
        attrs["invols"] = float(deflection.scale.sensitivity)
    else:
        missing.append(f"deflection sensitivity ('@{deflection.scale.soft_scale or 'Sens. DeflSens'}' in nm/V)")
    attrs["deflection_sign"] = "as stored: NanoScope's deflection rises when the tip is pushed away"
    return attrs


# ---------------------------------------------------------------------------------------------- coords/attrs
def _ramp_coords(path: Path, header: Header, layout: Layout):
    nseg = len(layout.segments)
    curve = np.repeat(np.arange(layout.n_curves), nseg)
    segment = np.tile(np.arange(nseg), layout.n_curves)
    directions = np.array([s.direction for s in layout.segments], dtype=object)[segment]
    coords = {"source": path.name, "index": curve, "direction": directions}
    vendor = np.array([s.vendor for s in layout.segments], dtype=object)[segment]
    extra = {"segment": segment, "vendor_segment": vendor}
    if layout.force_volume:
        row, col = np.divmod(curve, layout.columns)
        size = scan_size(header.first("Ciao scan list"))
        if size is not None:
            centre = scan_offset(header)
            coords["x"] = centre[0] - size[0] / 2 + (col + 0.5) * size[0] / layout.columns
            coords["y"] = centre[1] - size[1] / 2 + (row + 0.5) * size[1] / layout.rows
        extra["grid_row"], extra["grid_col"] = row, col
    else:
        starts = np.cumsum([0.0] + [s.duration for s in layout.segments[:-1]])
        coords["time"] = np.tile(starts, layout.n_curves)
    return coords, extra


def _layout_attrs(layout: Layout) -> dict:
    attrs = {
        "bruker_segments": "; ".join(f"{s.direction} = {s.vendor}, {s.samples} samples" for s in layout.segments),
        "bruker_curves": layout.n_curves,
    }
    if layout.force_volume:
        attrs["bruker_grid"] = f"{layout.rows} rows x {layout.columns} columns"
    if math.isfinite(layout.ramp_length):
        attrs["ramp_size"] = float(layout.ramp_length)
    return attrs


def _file_attrs(path: Path, header: Header) -> dict:
    attrs = {"vendor": "Bruker NanoScope", "source_file": path.name, "vendor_header": header.text}
    first = header.sections[0] if header.sections else None
    if first is not None:
        for key, name in (("Version", "bruker_version"), ("Date", "date"), ("Start context", "bruker_start_context")):
            text = first.text(key)
            if text:
                attrs[name] = text.strip()
    mode = header.lookup("Operating mode")
    if isinstance(mode, str):
        attrs["bruker_operating_mode"] = mode.strip()
    zsens = header.sens.get("Sens. Zsens")
    if zsens is not None and zsens[1].strip() == "nm/V":
        attrs["bruker_zsens"] = zsens[0] * 1e-9
    for key, name in (("@Z scan start", "bruker_z_scan_start_V"), ("@4:Ramp offset Zsweep", "bruker_ramp_offset_V"),
                      ("@Ramp Position", "bruker_ramp_position_V")):
        value = header.lookup(key)
        if getattr(value, "value", None) is not None:
            attrs[name] = float(value.value)
    return attrs
