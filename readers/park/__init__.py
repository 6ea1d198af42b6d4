"""Park Systems TIFF (PSIA, SmartScan/XEI): the image and the force–distance spectroscopy.

A Park TIFF is an ordinary 8-bit palette TIFF (a preview) with private tags that hold the data:

======  ===========================================================================================
tag     content
======  ===========================================================================================
50432   magic number 0x0E031301
50433   version (0x01000001, 0x01000002)
50434   image data: ``yres × xres`` int16 / int32 / float32 (image header ``data_type``), little-endian
50435   image header (356 bytes in version 1, 580 in version 2), decoded in :func:`image_header`
50436   comment (text, optional)
50438   spectroscopy header (binary), decoded in :func:`spectroscopy_header`
50439   spectroscopy data: float32, ``curves × sources × points``
======  ===========================================================================================

The byte layout, the conversions and how they were verified are in ``docs/readers/park.md`` (no open
reader of the spectroscopy existed; the layout was decoded from ForceCurve_009.tiff with the field
order of AtomicJ's and nanoAFMr's readers as a guide, and checked against the file's own Force channel).

Normalisation (tested in ``tests/test_park.py``):

* each spectroscopy curve holds a forward half (``approach``) and a backward half (``retract``); the
  vendor fills the rest of a half that stopped early (force limit reached) by repeating its last sample
  — those repeats are NaN here;
* ``deflection`` = ``Vertical (A-B)`` in V; it rises at contact (positive = pushed away), as recorded;
* ``piezo`` = the driving source (``Z Scan``) in m, as recorded: Park's Z scan decreases toward the
  sample (on the approach the deflection rises as Z Scan falls), so larger = farther already;
  ``Z Detector`` and every other source are kept as channels in SI units (``Force`` in N);
* ``time_in_ramp`` = ``Time Stamp`` (s), from each ramp's first sample;
* ``x``, ``y`` = the curve positions (m) from the spectroscopy header;
* the image: a (``row``, ``col``) variable named after its source (``Topography``) in SI units, rows in
  the order Gwyddion 2.62 shows them (the file's last row first), ``x_real``, ``y_real``, ``x_offset``,
  ``y_offset`` (m; the header stores the scan centre, the offset is the lower-left corner).
"""
from __future__ import annotations

import json
import logging
import struct
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from nrm_plugins.errors import ReaderError
from nrm_plugins.hookspecs import hookimpl
from nrm_plugins.model import ramps_dataset, sanitize

TAG_MAGIC, TAG_VERSION, TAG_DATA, TAG_HEADER, TAG_COMMENT = 50432, 50433, 50434, 50435, 50436
TAG_SPEC_HEADER, TAG_SPEC_DATA = 50438, 50439
MAGIC = 0x0E031301
VERSIONS = (0x01000001, 0x01000002)
IMAGE_DTYPES = {0: "<i2", 1: "<i4", 2: "<f4"}
MAX_SOURCES = 8
SOURCE_RECORD = 96  # bytes per spectroscopy source record
POINTS_OFFSET = 1208  # start of the (x, y, t) float32 triplets of the curve positions (extended header)

#: Park unit strings → (SI unit, factor).
_BASE_UNITS = {"m": "m", "V": "V", "N": "N", "A": "A", "s": "s", "sec": "s", "Hz": "Hz", "deg": "deg",
               "W": "W", "F": "F", "Ohm": "Ohm", "%": "%"}
_PREFIXES = {"p": 1e-12, "n": 1e-9, "u": 1e-6, "\u00b5": 1e-6, "\u03bc": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6,
             "G": 1e9}


# ---------------------------------------------------------------------------------------------- hooks
@hookimpl
def nrm_read_identify(path, head):
    """100 for a TIFF carrying the PSIA magic number tag; 10 for a ``.tif``/``.tiff`` suffix alone."""
    path = Path(path)
    by_suffix = 10 if path.suffix.lower() in (".tif", ".tiff") else None
    if head[:4] not in (b"II*\x00", b"MM\x00*"):
        return by_suffix
    try:
        import tifffile

        with _quiet("tifffile"), tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags.get(TAG_MAGIC)
            if tag is not None and int(np.ravel(tag.value)[0]) == MAGIC:
                return 100
    except Exception:  # noqa: BLE001 - identify never raises
        pass
    return by_suffix


@hookimpl
def nrm_read(path, options):
    """Read a Park Systems TIFF (image and F–D spectroscopy) into the common model."""
    return read_park(Path(path))


# ---------------------------------------------------------------------------------------------- headers
class _Bytes:
    """Little-endian field reader over a header, with the offsets the documentation lists."""

    def __init__(self, data: bytes):
        self.data = data

    def i32(self, offset):
        return struct.unpack_from("<i", self.data, offset)[0]

    def f32(self, offset):
        return struct.unpack_from("<f", self.data, offset)[0]

    def f64(self, offset):
        return struct.unpack_from("<d", self.data, offset)[0]

    def text(self, offset, chars):
        raw = self.data[offset:offset + 2 * chars]
        return raw.decode("utf-16-le", errors="replace").split("\x00", 1)[0].strip()


def image_header(data: bytes, version: int) -> dict:
    """The image header (tag 50435); offsets in bytes, see docs/readers/park.md."""
    b = _Bytes(data)
    h = {
        "image_type": b.i32(0), "source_name": b.text(4, 32), "image_mode": b.text(68, 8),
        "lpf_strength": b.f64(84), "auto_flatten": b.i32(92), "ac_track": b.i32(96),
        "xres": b.i32(100), "yres": b.i32(104), "angle_deg": b.f64(108), "sine_scan": b.i32(116),
        "overscan_percent": b.f64(120), "fast_scan_forward": b.i32(128), "slow_scan_up": b.i32(132),
        "swap_xy": b.i32(136), "x_scan_size_um": b.f64(140), "y_scan_size_um": b.f64(148),
        "x_center_um": b.f64(156), "y_center_um": b.f64(164), "scan_rate_hz": b.f64(172),
        "set_point": b.f64(180), "set_point_unit": b.text(188, 8), "tip_bias_v": b.f64(204),
        "sample_bias_v": b.f64(212), "data_gain": b.f64(220), "z_scale": b.f64(228), "z_offset": b.f64(236),
        "z_unit": b.text(244, 8), "data_min": b.i32(260), "data_max": b.i32(264), "data_avg": b.i32(268),
        "compression": b.i32(272), "log_scale": b.i32(276), "square": b.i32(280), "data_type": 0,
    }
    if version >= 0x01000002 and len(data) >= 432:
        h.update({
            "z_servo_gain": b.f64(284), "z_scanner_range": b.f64(292), "xy_voltage_mode": b.text(300, 8),
            "z_voltage_mode": b.text(316, 8), "xy_servo_mode": b.text(332, 8), "data_type": b.i32(348),
            "x_pdd_regions": b.i32(352), "y_pdd_regions": b.i32(356), "ncm_amplitude": b.f64(360),
            "ncm_frequency_hz": b.f64(368), "head_rotation_angle_deg": b.f64(376),
            "cantilever": b.text(384, 16), "ncm_drive_percent": b.f64(416), "intensity_factor": b.f64(424),
        })
    return h


def spectroscopy_header(data: bytes) -> dict:
    """The spectroscopy header (tag 50438); offsets in bytes, see docs/readers/park.md."""
    b = _Bytes(data)
    sources = []
    for k in range(MAX_SOURCES):
        o = SOURCE_RECORD * k
        sources.append({"name": b.text(o, 32), "unit": b.text(o + 64, 8), "gain": b.f64(o + 80),
                        "is_x_axis": b.i32(o + 88), "is_y_axis": b.i32(o + 92),
                        "offset": b.f64(808 + 8 * k), "log_scale": b.i32(872 + 4 * k),
                        "square": b.i32(904 + 4 * k)})
    h = {
        "n_sources": b.i32(768), "average": b.i32(772), "points_per_curve": b.i32(776), "n_curves": b.i32(780),
        "driving_source": b.i32(784), "forward_period_s": b.f32(788), "backward_period_s": b.f32(792),
        "forward_speed": b.f32(796), "backward_speed": b.f32(800), "volume_image": b.i32(804),
    }
    h["sources"] = sources[:max(0, min(h["n_sources"], MAX_SOURCES))]
    if len(data) >= 1112:
        h.update({
            "points_per_x": b.i32(936), "has_reference_image": b.i32(940), "grid_x_size": b.f64(944),
            "grid_y_size": b.f64(952), "grid_x_offset": b.f64(960), "grid_y_offset": b.f64(968),
            "force_constant_N_per_m": b.f64(976), "sensitivity_V_per_um": b.f64(984),
            "force_limit_V": b.f32(992), "use_extended_header": b.i32(1048), "spectroscopy_type": b.i32(1052),
            "data_type": b.i32(1108),
        })
    n = h["n_curves"]
    if 0 < n and len(data) >= POINTS_OFFSET + 12 * n:
        xyz = np.frombuffer(data, dtype="<f4", count=3 * n, offset=POINTS_OFFSET).reshape(n, 3)
        h["positions_um"] = xyz[:, :2].astype(float).tolist()
    return h


def si_unit(unit: str) -> tuple[str, float]:
    """A Park unit string (``um``, ``nN``, ``usec``, ``V``) → (SI unit, factor to multiply by)."""
    unit = unit.strip()
    if unit in _BASE_UNITS:
        return _BASE_UNITS[unit], 1.0
    for prefix, factor in _PREFIXES.items():
        if unit.startswith(prefix) and unit[len(prefix):] in _BASE_UNITS:
            return _BASE_UNITS[unit[len(prefix):]], factor
    return unit, 1.0  # unknown: kept as the vendor wrote it


# ---------------------------------------------------------------------------------------------- reader
def read_park(path: Path):
    import tifffile

    with _quiet("tifffile"):  # tifffile logs each unreadable tag; the error below says it once
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds on damaged files
            raise ReaderError(path, f"not a readable TIFF file ({type(exc).__name__}: {exc})") from None
        with tif:
            try:
                page = tif.pages[0]
                tags = {code: tag.value for code, tag in page.tags.items() if code >= TAG_MAGIC}
                strips = [(int(o), int(c)) for o, c in zip(np.ravel(page.tags[273].value),
                                                            np.ravel(page.tags[279].value))] \
                    if 273 in page.tags and 279 in page.tags else []
            except Exception as exc:  # noqa: BLE001
                raise ReaderError(path, f"damaged TIFF tags ({type(exc).__name__}: {exc})") from None
            software = _tag_text(tif, 305)
            date = _tag_text(tif, 306)
    size = path.stat().st_size
    end = max((o + c for o, c in strips), default=0)
    if end > size:
        raise ReaderError(path, f"truncated: the TIFF directory points to data up to byte {end}, the file has {size}")
    return _build(path, tags, software, date)


@contextmanager
def _quiet(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _tag_text(tif, code):
    try:
        tag = tif.pages[0].tags.get(code)
        return str(tag.value).strip() if tag is not None else ""
    except Exception:  # noqa: BLE001 - descriptive only
        return ""


def _blob(path, tags, code, what) -> bytes:
    value = tags.get(code)
    if value is None:
        raise ReaderError(path, f"the Park {what} tag {code} is missing")
    if isinstance(value, np.ndarray):
        value = value.tobytes()
    if not isinstance(value, (bytes, bytearray)):
        raise ReaderError(path, f"the Park {what} tag {code} is not binary data")
    return bytes(value)


def _build(path: Path, tags: dict, software: str, date: str):
    magic = tags.get(TAG_MAGIC)
    if magic is None or int(np.ravel(magic)[0]) != MAGIC:
        raise ReaderError(path, "not a Park Systems TIFF: the PSIA magic number tag 50432 is missing")
    version = int(np.ravel(tags.get(TAG_VERSION, 0))[0])
    if version not in VERSIONS:
        raise ReaderError(path, f"unsupported Park TIFF version 0x{version:08x} (known: 0x01000001, 0x01000002)")
    raw_header = _blob(path, tags, TAG_HEADER, "image header")
    need = 356 if version == 0x01000001 else 580
    if len(raw_header) < need:
        raise ReaderError(path, f"the Park image header has {len(raw_header)} bytes, expected {need} (damaged)")
    header = image_header(raw_header, version)

    attrs = {"instrument": "Park Systems", "source_file": str(path), "software": software,
             "start_time": date, "park_version": f"0x{version:08x}"}
    comment = tags.get(TAG_COMMENT)
    if isinstance(comment, (str, bytes)) and comment:
        attrs["comment"] = comment if isinstance(comment, str) else comment.decode("latin-1", "replace")
    images = {}
    if TAG_DATA in tags:
        name, image, extra = _image(path, header, _blob(path, tags, TAG_DATA, "image data"))
        images[name] = image + (extra,)

    channels, coords = {}, None
    vendor = {"image": header}
    if TAG_SPEC_HEADER in tags or TAG_SPEC_DATA in tags:
        spec = spectroscopy_header(_blob(path, tags, TAG_SPEC_HEADER, "spectroscopy header"))
        vendor["spectroscopy"] = spec
        channels, coords = _spectroscopy(path, spec, _blob(path, tags, TAG_SPEC_DATA, "spectroscopy data"))
        k, s = spec.get("force_constant_N_per_m"), spec.get("sensitivity_V_per_um")
        f = header.get("intensity_factor")
        if k and np.isfinite(k) and k > 0:
            attrs["spring_constant"] = float(k)
        if s and np.isfinite(s) and s > 0:
            attrs["park_sensitivity_V_per_um"] = float(s)
            # the vendor's Force channel is k * (V - V0) / (S * intensity factor)  (docs/readers/park.md)
            scale = f if f and np.isfinite(f) and f > 0 else 1.0
            attrs["invols"] = 1e-6 / (s * scale)
        if f and np.isfinite(f):
            attrs["park_intensity_factor"] = float(f)
        if "force_limit_V" in spec:
            attrs["park_force_limit_V"] = float(spec["force_limit_V"])
    attrs["vendor_header"] = json.loads(json.dumps(vendor, default=float))
    if not channels and not images:
        raise ReaderError(path, "the Park file holds neither image data nor spectroscopy")
    return ramps_dataset(channels, coords=coords, attrs=attrs, images=images)


def _image(path, header, blob):
    xres, yres = header["xres"], header["yres"]
    dtype = IMAGE_DTYPES.get(header["data_type"])
    if dtype is None:
        raise ReaderError(path, f"unknown Park image data type {header['data_type']} (known 0, 1, 2)")
    if not (0 < xres <= 65536 and 0 < yres <= 65536):
        raise ReaderError(path, f"implausible Park image size {xres} × {yres} (damaged header)")
    size = xres * yres * np.dtype(dtype).itemsize
    if len(blob) < size:
        raise ReaderError(path, f"image data has {len(blob)} bytes, {xres} × {yres} {dtype[1:]} needs {size} "
                                "(truncated)")
    raw = np.frombuffer(blob, dtype=dtype, count=xres * yres).reshape(yres, xres)
    unit, factor = si_unit(header["z_unit"] or "um")
    z_scale = header["z_scale"] or 1.0
    # value = gain * (raw * z_scale + z_offset), in the header's z unit; rows as Gwyddion shows them
    image = (factor * header["data_gain"]) * (raw[::-1].astype(np.float64) * z_scale + header["z_offset"])
    xs, ys = abs(header["x_scan_size_um"]) * 1e-6, abs(header["y_scan_size_um"]) * 1e-6
    extra = {"x_real": xs, "y_real": ys,
             "x_offset": header["x_center_um"] * 1e-6 - xs / 2, "y_offset": header["y_center_um"] * 1e-6 - ys / 2,
             "image_mode": header["image_mode"]}
    name = sanitize(header["source_name"] or "image")
    return name, (image, unit, header["source_name"] or "image"), extra


def _spectroscopy(path, spec, blob):
    n_src, n_pts, n_curves = spec["n_sources"], spec["points_per_curve"], spec["n_curves"]
    if not (0 < n_src <= MAX_SOURCES and 0 < n_pts and 0 < n_curves):
        raise ReaderError(path, f"implausible spectroscopy header: {n_src} sources, {n_curves} curves of "
                                f"{n_pts} points (damaged)")
    if spec.get("data_type", 2) != 2:
        raise ReaderError(path, f"spectroscopy data type {spec['data_type']} is not supported (only float32, "
                                "type 2, is known)")
    size = 4 * n_src * n_pts * n_curves
    if len(blob) != size:
        raise ReaderError(path, f"spectroscopy data has {len(blob)} bytes, the header announces {n_curves} curves × "
                                f"{n_src} sources × {n_pts} points × 4 bytes = {size} (truncated or damaged)")
    data = np.frombuffer(blob, dtype="<f4").reshape(n_curves, n_src, n_pts).astype(np.float64)
    sources = spec["sources"]
    units = []
    for k, src in enumerate(sources):
        unit, factor = si_unit(src["unit"])
        data[:, k] = (data[:, k] * src["gain"] + src["offset"]) * factor
        units.append(unit)

    # halves: forward (approach) then backward (retract), split in proportion to their periods
    fwd, bwd = spec["forward_period_s"], spec["backward_period_s"]
    both = np.isfinite(fwd) and np.isfinite(bwd) and fwd > 0 and bwd > 0
    n_fwd = min(n_pts, max(1, int(round(n_pts * fwd / (fwd + bwd))))) if both else n_pts
    halves = [(0, n_fwd, "approach")] + ([(n_fwd, n_pts, "retract")] if n_fwd < n_pts else [])

    # the vendor repeats the last sample to fill a half that stopped early: those repeats are not data
    pieces, lengths, directions = [], [], []
    for start, stop, direction in halves:
        part = data[:, :, start:stop]
        same = np.all(part[:, :, 1:] == part[:, :, :-1], axis=1)  # (curve, n-1): sample equal to the previous
        trailing = np.cumprod(same[:, ::-1], axis=1).sum(axis=1)
        pieces.append(part)
        lengths.append(part.shape[2] - trailing)
        directions.append(direction)
    n_samples = int(max(length.max() for length in lengths))
    n_ramps = n_curves * len(halves)
    out = np.full((n_ramps, n_src, n_samples), np.nan)
    for h, part in enumerate(pieces):
        keep = np.arange(n_samples)[None, :] < lengths[h][:, None]  # (curve, sample)
        values = part[:, :, :n_samples]
        values = np.where(keep[:, None, :values.shape[2]], values, np.nan)
        out[h::len(halves), :, :values.shape[2]] = values

    names = [s["name"] for s in sources]
    driving = spec["driving_source"]
    deflection = next((k for k, s in enumerate(sources) if s["name"].startswith("Vertical") and units[k] == "V"),
                      None)
    time_src = next((k for k, s in enumerate(sources) if s["name"] == "Time Stamp" and units[k] == "s"), None)
    channels = {}
    for k, name in enumerate(names):
        values = out[:, k, :]
        if k == deflection:
            var = "deflection"
        elif k == driving and units[k] == "m":
            var = "piezo"  # Park's Z scan falls toward the sample: larger = farther as recorded
        elif k == driving:
            var = "sweep"
        elif k == time_src:
            var = "time_in_ramp"
            values = values - values[:, :1]
        else:
            var = sanitize(name)
        channels[var] = (values, units[k], name)

    positions = np.asarray(spec.get("positions_um", np.full((n_curves, 2), np.nan)), dtype=float) * 1e-6
    coords = {
        "x": np.repeat(positions[:, 0], len(halves)),
        "y": np.repeat(positions[:, 1], len(halves)),
        "source": path.name,
        "index": np.repeat(np.arange(n_curves), len(halves)),
        "direction": directions * n_curves,
    }
    return channels, coords
