"""Asylum Research (MFP-3D, Cypher) force curves saved as Igor binary waves (``.ibw``).

The wave is read with ``igor2``: a 2-D wave (points × columns) whose column labels name the recorded
channels (``Raw``, ``Defl``, ``ZSnsr``, ``LVDT``, ``DeflV``, ...), one data unit for the whole wave
(``m`` for the usual Raw/Defl/ZSnsr set), the sample interval as the row scaling (s), and a note of
``key:value`` lines with the instrument settings (``SpringConstant`` N/m, ``InvOLS`` m/V, ``XLVDT`` and
``YLVDT`` m, ``Indexes``, ``Direction``, ``Date``, ``Time``, ``Seconds``...).

Normalisation (DESIGN.md §3, tested on an approach curve in ``tests/test_igor.py``):

* ``deflection`` = ``Defl`` (m, the vendor's InvOLS-scaled deflection; ``DeflV`` in V when there is no
  ``Defl``). Asylum's deflection grows when the cantilever is pushed away: no sign change.
* ``piezo`` = **−** ``ZSnsr`` (m). The Z sensor grows as the piezo extends toward the sample (on the
  approach segment ZSnsr rises while the deflection rises at contact), so its sign is flipped to make
  larger = farther. Every other column (``Raw``, ``LVDT``...) is kept as recorded.
* Segments from the note: ``Indexes`` ``i0,i1,...,iN`` are the last sample of each segment (the first
  segment starts at ``i0``, segment k at ``i_k + 1``) and ``Direction`` gives each segment's sense
  (``1`` extend → ``approach``, ``-1`` → ``retract``, ``0`` → ``hold``; the leading ``NaN`` belongs to
  ``i0``). Without them the curve is split at the maximum of ZSnsr (the turning point).
* ``time_in_ramp`` (s) from the wave's row scaling, from each segment's start; ``time`` = the segment's
  start since the start of the wave; ``x``, ``y`` = ``XLVDT``, ``YLVDT``.

A note without ``Date`` (IgorIBWReader_ForceCurve.ibw) is fine: ``start_time`` then comes from
``Seconds`` (Igor's clock, seconds since 1904-01-01). Missing ``SpringConstant`` or ``InvOLS`` opens the
data with a warning (``strict=True``: ReaderError).
"""
from __future__ import annotations

import logging
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from nrm_plugins.errors import ReaderError
from nrm_plugins.hookspecs import hookimpl
from nrm_plugins.model import ramps_dataset, sanitize

#: Bytes covered by the header checksum per Igor binary-wave version (bin header + wave header).
CHECKSUM_BYTES = {1: 8 + 110, 2: 16 + 110, 3: 20 + 110, 5: 64 + 320}
DIRECTIONS = {1: "approach", -1: "retract", 0: "hold"}
#: Column labels of Asylum force waves; a wave with none of them is not a force curve.
FORCE_COLUMNS = {"Raw", "Defl", "DeflV", "ZSnsr", "LVDT"}
IGOR_EPOCH = datetime(1904, 1, 1)


# ---------------------------------------------------------------------------------------------- hooks
@hookimpl
def nrm_read_identify(path, head):
    """100: Igor version bytes with a valid header checksum; 50: version bytes + ``.ibw``; 10: suffix."""
    by_suffix = Path(path).suffix.lower() == ".ibw"
    version, order = _version(head)
    if version is None:
        return 10 if by_suffix else None
    n = CHECKSUM_BYTES[version]
    if len(head) >= n and int(np.frombuffer(head[:n], dtype=order + "i2").astype(np.int64).sum()) % 65536 == 0:
        return 100
    return 50 if by_suffix else None


@hookimpl
def nrm_read(path, options):
    """Read an Asylum force curve (.ibw) into the common model (see the module docstring)."""
    return read_ibw(Path(path), strict=bool((options or {}).get("strict", False)))


# ---------------------------------------------------------------------------------------------- reader
def _version(head: bytes):
    if len(head) < 2:
        return None, None
    for order in ("<", ">"):
        v = int(np.frombuffer(head[:2], dtype=order + "i2")[0])
        if v in CHECKSUM_BYTES:
            return v, order
    return None, None


def read_ibw(path: Path, strict: bool = False):
    import igor2.binarywave as binarywave

    with open(path, "rb") as fh:
        head = fh.read(512)
    version, order = _version(head)
    if version is None:
        raise ReaderError(path, f"not an Igor binary wave: version bytes {head[:2].hex()} are not 1, 2, 3 or 5")
    n = CHECKSUM_BYTES[version]
    if len(head) < n:
        raise ReaderError(path, f"truncated: the Igor header needs {n} bytes, the file has {len(head)}")
    if int(np.frombuffer(head[:n], dtype=order + "i2").astype(np.int64).sum()) % 65536 != 0:
        raise ReaderError(path, "damaged Igor header: the header checksum does not add up")
    if version == 5:
        # BinHeader5: the sizes of the wave and of every block after it (note, labels, units)
        sizes = np.frombuffer(head[4:64], dtype=order + "i4")
        expected = 64 + int(sizes[:13].astype(np.int64).sum())
        actual = path.stat().st_size
        if actual < expected:
            raise ReaderError(path, f"truncated: the Igor header announces {expected} bytes, the file has {actual}")
    logger = logging.getLogger("igor2.binarywave")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # igor2 logs damaged data (the whole buffer) at ERROR level
    try:
        wave = binarywave.load(str(path))["wave"]
    except Exception as exc:  # noqa: BLE001 - igor2 raises struct/value/index errors on damaged files
        raise ReaderError(path, f"damaged or truncated Igor wave ({type(exc).__name__}: {exc})") from None
    finally:
        logger.setLevel(level)
    return _build(path, wave, strict)


def parse_note(note: bytes) -> dict:
    """The wave note's ``key:value`` lines (CR, LF or CRLF separated) as a dict of strings.

    Force-map points exported from ARDF repeat some keys at the end of the note with the point's own
    values (``Indexes``, ``XLVDT``, ``YLVDT``, ``Seconds``), so a repeated key takes its last value.
    """
    text = note.decode("latin-1") if isinstance(note, bytes) else str(note)
    out = {}
    for line in text.replace("\r\n", "\r").replace("\n", "\r").split("\r"):
        if ":" in line:
            key, value = line.split(":", 1)
            if key.strip():
                out[key.strip()] = value.strip()  # a repeated key: the last value wins
    return out


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, np.ndarray):
        return b"".join(value.ravel().tolist()).decode("latin-1") if value.dtype.kind == "S" else ""
    return str(value)


def _build(path: Path, wave: dict, strict: bool):
    data = np.asarray(wave["wData"])
    header = wave["wave_header"]
    if data.ndim != 2 or data.shape[0] < 2:
        raise ReaderError(path, f"not an Asylum force curve: the wave has shape {data.shape}, expected "
                                "(points, channels) (images and 1-D waves are not read)")
    if data.dtype.kind == "c" or data.dtype.kind not in "fiu":
        raise ReaderError(path, f"not an Asylum force curve: wave data type {data.dtype}")
    n_points, n_cols = data.shape
    labels = [_text(x) for x in (wave.get("labels") or [[], []])[1]][1:] if wave.get("labels") else []
    labels = (labels + [f"column_{i}" for i in range(len(labels), n_cols)])[:n_cols]
    labels = [lab or f"column_{i}" for i, lab in enumerate(labels)]
    unit = _text(wave.get("data_units") or b"") or _text(header["dataUnits"])
    note = parse_note(wave.get("note") or b"")
    dt = float(header["sfA"][0])
    t_unit = _text(wave.get("dimension_units") or b"") or _text(header["dimUnits"][0])
    has_time = t_unit.strip() == "s" and np.isfinite(dt) and dt > 0

    if not FORCE_COLUMNS & set(labels):
        raise ReaderError(path, f"not an Asylum force curve: no {sorted(FORCE_COLUMNS)} column among "
                                f"{labels[:8]} (images and other waves are not read)")
    columns = {lab: data[:, i].astype(np.float64) for i, lab in enumerate(labels)}
    segments = _segments(path, note, columns.get("ZSnsr"), n_points)

    n_ramps = len(segments)
    n_samples = max(stop - start for start, stop, _ in segments)
    channels = {}
    deflection = "Defl" if "Defl" in columns else ("DeflV" if "DeflV" in columns else None)
    for lab, values in columns.items():
        col_unit = _column_unit(lab, unit)
        if lab == deflection and col_unit in ("m", "V"):
            var, sign = "deflection", 1.0
        elif lab == "ZSnsr" and col_unit == "m":
            var, sign = "piezo", -1.0  # ZSnsr grows toward the sample
        else:
            var, sign = sanitize(lab), 1.0
        channels[var] = (_split(sign * values, segments, n_samples), col_unit, lab)
    if has_time:
        t = np.arange(n_points) * dt
        channels["time_in_ramp"] = (_split(t, segments, n_samples, rezero=True), "s",
                                    "time from the segment start (wave row scaling)")

    x, y = (_number(note.get(key)) for key in ("XLVDT", "YLVDT"))
    coords = {
        "x": np.nan if x is None else x,
        "y": np.nan if y is None else y,
        "time": [start * dt if has_time else np.nan for start, _, _ in segments],
        "source": path.name,
        "index": np.zeros(n_ramps, dtype=np.int64),
        "direction": [d for _, _, d in segments],
    }

    attrs = {"instrument": "Asylum Research (Igor binary wave)", "source_file": str(path),
             "wave_name": _text(header.get("bname", b"")), "vendor_header": note}
    start = _start_time(note)
    if start:
        attrs["start_time"] = start
    missing = []
    for key, attr, label in (("SpringConstant", "spring_constant", "spring constant (SpringConstant)"),
                             ("InvOLS", "invols", "sensitivity (InvOLS)")):
        value = _number(note.get(key))
        if value is not None and np.isfinite(value) and value > 0:
            attrs[attr] = value
        else:
            missing.append(label)
    if missing:
        problem = "missing calibration metadata in the wave note: " + ", ".join(missing)
        if strict:
            raise ReaderError(path, problem)
        warnings.warn(f"{path}: {problem}", UserWarning, stacklevel=4)
    return ramps_dataset(channels, coords=coords, attrs=attrs)


def _column_unit(label: str, wave_unit: str) -> str:
    """The wave has one data unit; Asylum's volt and phase columns are named for their unit."""
    if label.endswith("V") or label.endswith("Volts"):
        return "V"
    if label.startswith("Phase"):
        return "deg"
    return wave_unit


def _segments(path, note: dict, zsensor, n_points: int) -> list[tuple[int, int, str]]:
    """``[(start, stop, direction), ...]`` (stop exclusive) from Indexes/Direction, else the Z turning point."""
    indexes = [int(v) for v in (_number(s) for s in note.get("Indexes", "").split(",") if s.strip())
               if v is not None and np.isfinite(v)]
    senses = [s.strip() for s in note.get("Direction", "").split(",") if s.strip()]
    if len(indexes) >= 2:
        if indexes != sorted(indexes) or indexes[0] < 0 or indexes[-1] >= n_points:
            raise ReaderError(path, f"the note's Indexes {note.get('Indexes')} do not fit a wave of {n_points} points")
        out = []
        for k in range(len(indexes) - 1):
            start = indexes[k] + (1 if k else 0)
            stop = indexes[k + 1] + 1
            sense = _number(senses[k + 1]) if k + 1 < len(senses) else None
            direction = DIRECTIONS.get(int(sense), str(senses[k + 1])) if sense is not None and np.isfinite(sense) \
                else ""
            if stop > start:
                out.append((start, stop, direction))
        return out
    if zsensor is not None and np.isfinite(zsensor).any():
        turn = int(np.nanargmax(zsensor))
        if 0 < turn < n_points - 1:
            return [(0, turn + 1, "approach"), (turn + 1, n_points, "retract")]
    return [(0, n_points, "")]


def _split(values, segments, n_samples: int, rezero: bool = False):
    out = np.full((len(segments), n_samples), np.nan)
    for i, (start, stop, _) in enumerate(segments):
        seg = values[start:stop]
        out[i, :len(seg)] = seg - seg[0] if rezero else seg
    return out


def _start_time(note: dict) -> str | None:
    if note.get("Date") and note.get("Time"):
        return f"{note['Date']} {note['Time']}"
    seconds = _number(note.get("Seconds"))
    if seconds is not None and np.isfinite(seconds) and 0 < seconds < 1e11:
        return (IGOR_EPOCH + timedelta(seconds=seconds)).isoformat()
    return None
