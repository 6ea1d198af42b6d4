"""JPK force files: ``.jpk-force`` (one curve), ``.jpk-force-map`` and ``.jpk-qi-data`` (maps).

A JPK force file is a zip archive of Java ``.properties`` headers and big-endian binary channels::

    header.properties                      what the file is (jpk-data-file=..., type=...)
    shared-data/header.properties          channel descriptions shared by all curves (format >= 2.0)
    [index/N/]header.properties            one curve of a map: its x, y position
    [index/N/]segments/K/segment-header.properties   one segment: style (extend/retract/pause),
                                                     number of points, duration, time stamp, channels
    [index/N/]segments/K/channels/<name>.dat         raw samples of one channel

Each channel has an *encoder* (raw integer → base unit: ``value = offset + multiplier * raw``) and a
*conversion set*: named calibration slots, each a linear ``offset + multiplier * value`` step on top of
its ``base-calibration-slot`` (e.g. vDeflection: volts → distance (× sensitivity, m/V) → force
(× spring constant, N/m); height: volts → nominal → calibrated, m).

Normalisation (DESIGN.md §3, tested on an approach curve in ``tests/test_jpk.py``):

* ``deflection`` = ``vDeflection`` in V (the base slot; the vendor's distance/force slots give the
  ``invols`` and ``spring_constant`` attributes). JPK's vDeflection grows when the cantilever bends
  away from the sample, so no sign change.
* ``piezo`` = the first of ``measuredHeight``, ``capacitiveSensorHeight``, ``strainGaugeHeight``,
  ``height`` (a measured sensor before the commanded height), in m after the vendor's default
  conversion. JPK heights grow when the tip moves away from the sample (the extend segment runs from
  z-start to z-end, and the deflection rises as the height falls), so larger = farther as recorded.
* Every other channel is kept (sanitized name, ``long_name`` = JPK name) after its default conversion.
* Segments: ``extend`` → ``approach``, ``retract`` → ``retract``, ``pause`` → ``hold``; one ramp per
  segment, ramps NaN-padded to the longest segment.
* Coordinates: ``x``, ``y`` (m) from each curve's position, ``time`` (s) from the segment time stamps,
  counted from the earliest one in the file; ``index`` = the curve's grid position index in a map
  (``position-index``; the ``index/N`` folder number when absent), 0 for a single curve;
  ``time_in_ramp`` (s) = sample number × segment duration / number of points.

Missing spring constant or sensitivity (the vDeflection force/distance conversions not defined, as in
JPK calibration files) opens the raw data with a warning naming what is missing; ``strict=True`` turns
it into a :class:`~nrm_plugins.errors.ReaderError`.
"""
from __future__ import annotations

import re
import warnings
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np

from nrm_plugins.errors import ReaderError
from nrm_plugins.hookspecs import hookimpl
from nrm_plugins.model import ramps_dataset, sanitize

SUFFIXES = (".jpk-force", ".jpk-force-map", ".jpk-qi-data", ".jpk-qi-series")
#: Height channels in the order they are preferred for the ``piezo`` role.
PIEZO_CHANNELS = ("measuredHeight", "capacitiveSensorHeight", "strainGaugeHeight", "height")
DEFLECTION_CHANNEL = "vDeflection"
#: JPK segment style → ramp ``direction``.
DIRECTIONS = {"extend": "approach", "retract": "retract", "pause": "hold"}
_SEGMENT_HEADER = re.compile(r"^(index/\d+/)?segments/(\d+)/segment-header\.properties$")
#: Raw sample types (encoder type, else data type) → big-endian numpy dtype.
DTYPES = {
    "signedshort": ">i2", "unsignedshort": ">u2", "signedinteger": ">i4", "unsignedinteger": ">u4",
    "signedlong": ">i8", "unsignedlong": ">u8",
    "short": ">i2", "short-data": ">i2", "integer": ">i4", "integer-data": ">i4", "int": ">i4",
    "long": ">i8", "long-data": ">i8", "float": ">f4", "float-data": ">f4", "double": ">f8",
    "double-data": ">f8",
}


# ---------------------------------------------------------------------------------------------- hooks
@hookimpl
def nrm_read_identify(path, head):
    """100 for a zip whose ``header.properties`` declares a JPK data file; 10 for the suffix alone."""
    path = Path(path)
    by_suffix = 10 if path.name.lower().endswith(SUFFIXES) else None
    if not head.startswith(b"PK\x03\x04"):
        return by_suffix
    try:
        with zipfile.ZipFile(path) as archive:
            with archive.open("header.properties") as fh:
                text = fh.read(4096)
    except Exception:  # noqa: BLE001 - identify never raises
        return by_suffix
    if b"jpk-data-file=" in text or re.search(rb"^type=(force-scan-series|force-scan-map|quantitative-imaging)",
                                              text, re.M):
        return 100
    return by_suffix


@hookimpl
def nrm_read(path, options):
    """Read a JPK force curve, force map or QI map into the common model (see the module docstring)."""
    return read_jpk(Path(path), strict=bool((options or {}).get("strict", False)))


# ---------------------------------------------------------------------------------------------- reader
def read_jpk(path: Path, strict: bool = False):
    try:
        archive = zipfile.ZipFile(path)
    except Exception as exc:  # noqa: BLE001 - BadZipFile, EOFError, NotImplementedError (damaged directory)...
        raise ReaderError(path, f"not a readable zip archive (JPK files are zip archives): {exc}") from None
    with archive:
        try:
            return _read_archive(path, archive, strict)
        except (ReaderError, Warning):  # a warning turned into an error by the caller's filter stays itself
            raise
        except Exception as exc:  # noqa: BLE001 - damaged members: zlib/CRC/struct/key errors
            raise ReaderError(path, f"damaged JPK archive ({type(exc).__name__}: {exc})") from None


def _read_archive(path: Path, archive: zipfile.ZipFile, strict: bool):
    names = set(archive.namelist())
    if "header.properties" not in names:
        raise ReaderError(path, "no header.properties in the archive: not a JPK data file")
    top = _properties(archive, "header.properties")
    shared = _group_shared(_properties(archive, "shared-data/header.properties")
                           if "shared-data/header.properties" in names else {})

    # curve folder ("" for a single curve, "index/N/" in a map) → its segment numbers, in one pass
    segments: dict[str, list[int]] = {}
    for name in names:
        m = _SEGMENT_HEADER.match(name)
        if m:
            segments.setdefault(m.group(1) or "", []).append(int(m.group(2)))
    if not segments:
        raise ReaderError(path, "no segments/N/segment-header.properties in the archive: no force curves")
    folders = sorted(segments, key=lambda f: int(f.split("/")[1]) if f else -1)

    ramps = []  # one dict per segment
    for folder in folders:
        header = top if not folder else (_properties(archive, folder + "header.properties")
                                         if folder + "header.properties" in names else {})
        x, y, position_index = _position(header)
        curve = int(folder.split("/")[1]) if folder else 0
        if folder and position_index is not None:
            curve = position_index  # the map's grid index (index/N folders number only the curves kept)
        for seg in sorted(segments[folder]):
            ramps.append(_read_segment(path, archive, names, f"{folder}segments/{seg}/", shared, curve, seg, x, y))

    return _build(path, top, ramps, strict)


def _read_segment(path, archive, names, seg_prefix, shared, curve, seg, x, y) -> dict:
    where = f"curve {curve}, segment {seg}"
    props = _properties(archive, seg_prefix + "segment-header.properties")
    n_points = _int(props.get("force-segment-header.num-points"))
    duration = _float(props.get("force-segment-header.duration"))
    info = _segment_info(props, shared)
    style = info.get("settings.style") or info.get("settings.segment-settings.style") or ""
    channels = {}
    for name in props.get("channels.list", "").split():
        desc = _channel_description(props, shared, name)
        if desc is None:
            raise ReaderError(path, f"{where}: no description of channel '{name}' in the headers")
        file_name = props.get(f"channel.{name}.data.file.name", f"channels/{name}.dat")
        member = seg_prefix + file_name
        if member not in names:
            raise ReaderError(path, f"{where}: channel '{name}' data {member} is missing from the archive")
        raw = archive.read(member)
        n = _int(props.get(f"channel.{name}.data.num-points")) or n_points
        channels[name] = _decode(path, where, name, raw, n, desc)
    length = max((len(v[0]) for v in channels.values()), default=0)
    # sample interval: the segment's duration over its announced number of points
    dt = duration / (n_points or length) if duration is not None and (n_points or length) else None
    stamp = _timestamp(props.get("force-segment-header.time-stamp"))
    return {"curve": curve, "segment": seg, "style": style, "n": length, "dt": dt,
            "channels": channels, "x": x, "y": y, "stamp": stamp,
            "calibration": _calibration(props, shared)}


def _group_shared(shared: dict) -> dict:
    """The shared header by block: ``{("lcd-info", "1"): {"encoder.type": ..., ...}, ...}`` (built once)."""
    groups: dict[tuple[str, str], dict] = {}
    for key, value in shared.items():
        parts = key.split(".", 2)
        if len(parts) == 3 and parts[0] in ("lcd-info", "force-segment-header-info"):
            groups.setdefault((parts[0], parts[1]), {})[parts[2]] = value
    return groups


def _segment_info(props: dict, shared: dict) -> dict:
    """Segment settings: ``force-segment-header.*`` keys, or the shared ``force-segment-header-info.N``."""
    out = {k[len("force-segment-header."):]: v for k, v in props.items() if k.startswith("force-segment-header.")}
    ref = props.get("force-segment-header.force-segment-header-info.*")
    if ref is not None:
        for k, v in shared.get(("force-segment-header-info", ref), {}).items():
            out.setdefault(k, v)
    return out


def _channel_description(props: dict, shared: dict, name: str) -> dict | None:
    """Keys describing one channel, relative to its root: ``encoder.*``, ``conversion-set.*``, ``type``.

    Format >= 2.0 points to ``lcd-info.N`` in the shared header; older files describe the channel in
    the segment header under ``channel.<name>.data.*`` and ``channel.<name>.conversion-set.*``.
    """
    ref = props.get(f"channel.{name}.lcd-info.*")
    if ref is not None:
        return shared.get(("lcd-info", ref)) or None
    base = f"channel.{name}."
    own = {k[len(base):]: v for k, v in props.items() if k.startswith(base)}
    if not own:
        return None
    desc = {k: v for k, v in own.items() if k.startswith("conversion-set.")}
    for k, v in own.items():
        if k.startswith("data.encoder."):
            desc[k[len("data."):]] = v
    if "data.type" in own:
        desc["type"] = own["data.type"]
    if "data.unit.unit" in own:
        desc["unit.unit"] = own["data.unit.unit"]
    return desc


def _decode(path, where, name, raw: bytes, n: int | None, desc: dict):
    """Raw bytes → (values in the encoder's unit, unit, description)."""
    kind = desc.get("encoder.type") or desc.get("type") or ""
    dtype = DTYPES.get(kind)
    if dtype is None:
        raise ReaderError(path, f"{where}: channel '{name}' has an unknown sample type '{kind}'")
    itemsize = np.dtype(dtype).itemsize
    if n is None:
        n = len(raw) // itemsize
    if len(raw) != n * itemsize:
        raise ReaderError(path, f"{where}: channel '{name}' holds {len(raw)} bytes, expected {n} samples × "
                                f"{itemsize} bytes = {n * itemsize} (truncated or damaged)")
    values = np.frombuffer(raw, dtype=dtype).astype(np.float64)
    unit = desc.get("unit.unit", "")
    if "encoder.scaling.multiplier" in desc:
        values = _float(desc.get("encoder.scaling.offset"), 0.0) + _float(desc["encoder.scaling.multiplier"]) * values
        unit = desc.get("encoder.scaling.unit.unit", unit)
    return values, unit, desc


def _convert(values, unit, desc: dict, target: str | None):
    """Apply the conversion chain from the base slot up to ``target`` (None: the vendor's default)."""
    cs = "conversion-set."
    base = desc.get(cs + "conversions.base", "")
    if target is None:
        target = desc.get(cs + "conversions.default", base)
    chain = []
    slot, guard = target, 0
    while slot and slot != base and guard < 16:
        if desc.get(f"{cs}conversion.{slot}.defined", "false") != "true":
            return values, unit, base  # not defined: stay at the base slot
        chain.append(slot)
        slot = desc.get(f"{cs}conversion.{slot}.base-calibration-slot", base)
        guard += 1
    for slot in reversed(chain):
        key = f"{cs}conversion.{slot}.scaling."
        values = _float(desc.get(key + "offset"), 0.0) + _float(desc.get(key + "multiplier"), 1.0) * values
        unit = desc.get(key + "unit.unit", unit)
    return values, unit, (target if chain else base)


def _calibration(props: dict, shared: dict) -> dict:
    """Sensitivity (m/V) and spring constant (N/m) from vDeflection's distance and force conversions."""
    desc = _channel_description(props, shared, DEFLECTION_CHANNEL) or {}
    out = {}
    for slot, attr in (("distance", "invols"), ("force", "spring_constant")):
        key = f"conversion-set.conversion.{slot}."
        if desc.get(key + "defined") == "true" and desc.get(key + "scaling.multiplier") is not None:
            value = _float(desc[key + "scaling.multiplier"])
            if np.isfinite(value) and value > 0:
                out[attr] = value
    return out


def _build(path: Path, top: dict, ramps: list[dict], strict: bool):
    # calibration (the same for every segment of a file; take the first one that has it)
    calib = {}
    for r in ramps:
        for k, v in r["calibration"].items():
            calib.setdefault(k, v)
    missing = [label for attr, label in (("spring_constant", "spring constant (vDeflection 'force' conversion)"),
                                         ("invols", "sensitivity (vDeflection 'distance' conversion)"))
               if attr not in calib]
    if missing:
        problem = "missing calibration metadata: " + ", ".join(missing) + \
                  "; the raw deflection (V) is read, give the values in the calibration file"
        if strict:
            raise ReaderError(path, problem)
        warnings.warn(f"{path}: {problem}", UserWarning, stacklevel=4)

    n_ramps = len(ramps)
    n_samples = max(r["n"] for r in ramps)
    if n_samples == 0:
        raise ReaderError(path, "the file's segments hold no samples")
    names = []  # channel names in first-seen order
    for r in ramps:
        for name in r["channels"]:
            if name not in names:
                names.append(name)
    piezo_name = next((c for c in PIEZO_CHANNELS if c in names), None)

    arrays, units, slots = {}, {}, {}
    for name in names:
        arr = np.full((n_ramps, n_samples), np.nan)
        unit_seen = None
        for i, r in enumerate(ramps):
            if name not in r["channels"]:
                continue
            values, unit, desc = r["channels"][name]
            target = desc.get("conversion-set.conversions.base") if name == DEFLECTION_CHANNEL else None
            values, unit, slots[name] = _convert(values, unit, desc, target)
            if unit_seen is not None and unit != unit_seen:
                raise ReaderError(path, f"channel '{name}' is in {unit_seen} in one segment and {unit} in another")
            unit_seen = unit
            arr[i, :len(values)] = values[:n_samples]
        arrays[name] = arr
        units[name] = unit_seen or ""

    channels, variables = {}, {}
    for name in names:
        if name == DEFLECTION_CHANNEL and units[name] == "V":
            var = "deflection"
        elif name == piezo_name and units[name] == "m":
            var = "piezo"
        else:
            var = sanitize(name)
        channels[var] = (arrays[name], units[name], name)
        variables[var] = name

    time_in_ramp = np.full((n_ramps, n_samples), np.nan)
    for i, r in enumerate(ramps):
        if r["dt"] is not None and np.isfinite(r["dt"]):
            time_in_ramp[i, :r["n"]] = np.arange(r["n"]) * r["dt"]
    if np.isfinite(time_in_ramp).any():
        channels["time_in_ramp"] = (time_in_ramp, "s", "time in segment (duration / num-points)")

    stamps = [r["stamp"] for r in ramps]
    known = [s for s in stamps if s is not None]
    t0 = min(known) if known else None
    coords = {
        "x": [r["x"] for r in ramps],
        "y": [r["y"] for r in ramps],
        "time": [(s - t0).total_seconds() if s is not None else np.nan for s in stamps],
        "source": path.name,
        "index": np.array([r["curve"] for r in ramps], dtype=np.int64),
        "direction": [DIRECTIONS.get(r["style"], r["style"]) for r in ramps],
    }
    attrs = {
        "instrument": "JPK",
        "source_file": str(path),
        "jpk_file_type": top.get("type", ""),
        "jpk_file_format_version": top.get("file-format-version", ""),
        "segments": ", ".join(f"{r['curve']}/{r['segment']}:{r['style']}" for r in ramps[:50]) +
                    (" ..." if n_ramps > 50 else ""),
        "vendor_header": dict(top),
    }
    if t0 is not None:
        attrs["start_time"] = t0.isoformat()
    if piezo_name:
        attrs["piezo_channel"] = piezo_name
    attrs.update(calib)
    ds = ramps_dataset(channels, coords=coords, attrs=attrs)
    for var, name in variables.items():
        ds[var].attrs["jpk_conversion"] = slots[name]  # the conversion slot applied (volts, nominal, ...)
    return ds


# ---------------------------------------------------------------------------------------------- helpers
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")


def _unescape(text: str) -> str:
    def repl(m):
        s = m.group(1)
        if s.startswith("u") and len(s) == 5:
            return chr(int(s[1:], 16))
        return {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(s, s)
    return _ESCAPE.sub(repl, text)


def parse_properties(data: bytes) -> dict:
    """A Java ``.properties`` text (ISO-8859-1, ``\\uXXXX`` escapes, ``#`` comments) as a dict."""
    out = {}
    lines = data.decode("latin-1").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].lstrip()
        i += 1
        while line.endswith("\\") and not line.endswith("\\\\") and i < len(lines):  # continuation
            line = line[:-1] + lines[i].lstrip()
            i += 1
        if not line or line[0] in "#!":
            continue
        m = re.match(r"((?:\\.|[^=:\\])*)\s*[=:]?\s*(.*)$", line)
        key, value = m.group(1).strip(), m.group(2)
        out[_unescape(key)] = _unescape(value)
    return out


def _properties(archive: zipfile.ZipFile, member: str) -> dict:
    return parse_properties(archive.read(member))


def _float(text, default=None):
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        return default


def _int(text):
    value = _float(text)
    return int(value) if value is not None and np.isfinite(value) else None


def _position(header: dict) -> tuple[float, float, int | None]:
    """x, y (m) and the grid position index of one curve from its series header."""
    for k in header:
        if k.endswith(".header.position.x"):
            stem = k[: -len(".position.x")]
            return (_float(header.get(stem + ".position.x"), np.nan), _float(header.get(stem + ".position.y"), np.nan),
                    _int(header.get(stem + ".position-index")))
    return np.nan, np.nan, None


def _timestamp(text):
    """``2016-03-31 17:51:14.543 +0200`` → aware datetime (None when absent or unreadable)."""
    if not text:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S.%f %z", "%Y-%m-%d %H:%M:%S %z"):
        try:
            return datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
    return None
