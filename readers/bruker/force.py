"""Force curves of NanoScope files: segment layout, data blocks, ramps in time order, nominal piezo.

One ``\\*Ciao force image list`` per recorded channel.  Each holds ``n_curves`` curves (1 for a single
force curve, columns × rows for force volume ``FVOL``) back to back; one curve is stored as::

    [ trace (extend/approach), LAST sample first ][ retrace (retract), time order ][ hold, time order ]

with ``Samps/line: <trace> <retrace>`` and ``Hold Samples`` from ``\\*Ciao force list``.  The trace is
stored from the fully extended end (Bruker stores it in Z order, index 0 closest to the surface; the
Height Sensor of nanoscope-pypi_ForceHold.spm shows it), so this reader reverses it: every ramp here
runs in time order (approach far → near, hold, retract near → far).  Scripted ramps (``Start context:
SCRIPT``) list their segments in ``Segment Samples`` / ``Segment Type`` / ``Segment Ramp Size`` ...;
they are stored one after the other, each in time order.

The bytes per sample are ``Data length / (n_curves × samples per curve)`` — 2 or 4 — whatever
``Bytes/pixel`` says: NanoScope ≥ 9.2 writes 32-bit integers under ``Bytes/pixel: 2``.  When the header
says 2 but the data are 4 bytes wide, the scale still refers to 16-bit LSB; some such files (force
volume of NanoScope 9.2, e.g. 20200903_Egel2.0_00023.spm) store the 16-bit value times 256 (every low
byte 0x00 or 0xFF), which is detected and divided out (attribute ``bruker_lsb_divisor``).

**Nominal piezo** (``piezo``, m, larger = farther from the surface).  For a Z ramp of ``L = Ramp size
[V] × Zsens [m/V]`` (``\\@4:Ramp size`` of the channel list, else ``\\@4:Ramp size Zsweep`` of the force
list) the extension towards the surface during a segment of ``n`` samples is
``e_i = e_start + ΔZ · i / n`` (i = 0 … n-1, time order; ΔZ = +L for the approach, −L for the
retract, 0 for a hold), and ``piezo = max(e) − e``: 0 at the most extended point, L at the start of
the approach.  Scripts use their ``Segment Ramp Size`` (nm) as ΔZ.  A hold under force feedback
(``Hold Type: Trigger Force``) moves Z by an amount only the Height Sensor knows: its piezo is NaN.
The absolute Z (``Z scan start``, ``Ramp offset``, ``Ramp Position``) is recorded as attributes but not
added: its sign and zero are not documented, and each ramp is referenced to its own contact point.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from ...errors import ReaderError
from .header import Header, Section
from .scaling import ChannelScale, channel_scale
from .units import parse_ratio, parse_unit

#: Refuse ramps larger than this many samples in total (a corrupt header cannot exhaust memory).
MAX_TOTAL_SAMPLES = 2_000_000_000
#: Stored samples looked at to detect the ×256 fixed-point storage (the whole channel of files here).
FIXED_POINT_PROBE = 4_000_000
#: Samples per dask chunk when reading lazily.
LAZY_CHUNK_SAMPLES = 8_000_000


@dataclass
class Segment:
    """One part of a curve, in time order."""

    direction: str  # approach, retract, hold, modulation
    vendor: str  # the vendor's name for it
    samples: int
    stored_offset: int  # first stored sample of this segment within one curve
    stored_reversed: bool
    duration: float = math.nan  # s
    extension_change: float = math.nan  # m, ΔZ over the segment (towards the surface positive)


@dataclass
class Layout:
    """How the curves of a file are laid out."""

    segments: list[Segment]  # time order
    samples_per_curve: int
    n_curves: int = 1
    columns: int = 1
    rows: int = 1
    force_volume: bool = False
    ramp_length: float = math.nan  # m, L
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- layout
def curve_layout(path, header: Header, force_list: Section, first_channel: Section) -> Layout:
    """Segments of one curve and how many curves the file holds."""
    notes: list[str] = []
    script = (_start_context(header) == "SCRIPT"
              or (force_list.text("Use Ramp Script") or "").strip().lower() == "yes")
    if script and force_list.text("Segment Samples"):
        ramp_length = math.nan  # each scripted segment has its own ramp size
        segments = _script_segments(path, force_list, notes)
    else:
        ramp_length, ramp_volts = _ramp_length(header, force_list, first_channel, notes)
        segments = _standard_segments(path, header, force_list, first_channel, ramp_length, ramp_volts, notes)
    per_curve = sum(s.samples for s in segments)
    if per_curve <= 0:
        raise ReaderError(path, "the force list gives no samples per curve ('Samps/line' is 0 or missing)")
    layout = Layout(segments=segments, samples_per_curve=per_curve, ramp_length=ramp_length, notes=notes)
    if _start_context(header) == "FVOL":
        layout.force_volume = True
        layout.columns = int(force_list.number("force/line") or 0)
        scan = header.first("Ciao scan list")
        layout.rows = int(scan.number("Lines") or 0) if scan is not None else 0
        if layout.columns <= 0:
            raise ReaderError(path, "force volume without a usable 'force/line' (curves per line) entry")
        length = first_channel.number("Data length")
        fits = any(layout.rows * layout.columns * per_curve * width == length for width in (2, 4))
        if length and not fits:
            rows = _rows_from_length(length, layout.columns, per_curve)
            if rows:
                notes.append(f"force volume rows taken from the data length ({rows}), not from 'Lines' "
                             f"({layout.rows})")
                layout.rows = rows
        if layout.rows <= 0:
            raise ReaderError(path, "force volume without a usable number of lines ('Lines')")
        layout.n_curves = layout.rows * layout.columns
    return layout


def _start_context(header: Header) -> str:
    for section in header.sections[:1]:
        text = section.text("Start context")
        if text:
            return text.strip().upper()
    return ""


def _rows_from_length(length: float, columns: int, per_curve: int) -> int:
    for width in (2, 4):
        n, rem = divmod(int(length), columns * per_curve * width)
        if rem == 0 and n > 0:
            return n
    return 0


def _ramp_length(header: Header, force_list: Section, first_channel: Section, notes: list[str]):
    """L (m) and the ramp size in V, from ``@4:Ramp size`` × its sensitivity (Zsens)."""
    entry = None
    for section, key in ((first_channel, "@4:Ramp size"), (force_list, "@4:Ramp size Zsweep"),
                         (force_list, "@4:Ramp size")):
        candidate = section.get(key)
        if candidate is not None and getattr(candidate, "value", None) is not None:
            entry = candidate
            break
    if entry is None:
        notes.append("no '@4:Ramp size' entry: the nominal piezo is unknown")
        return math.nan, math.nan
    unit = parse_unit(entry.unit)
    volts = entry.value * (unit[0] if unit else 1.0)
    sens = header.sens.get(entry.soft_scale or "")
    if sens is None:
        notes.append(f"ramp size sensitivity '@{entry.soft_scale}' not found: the nominal piezo is unknown")
        return math.nan, volts
    ratio = parse_ratio(sens[1])
    if ratio is None or ratio[1] != "m":
        notes.append(f"ramp size sensitivity '@{entry.soft_scale}' has unit {sens[1]!r}, not length per volt")
        return math.nan, volts
    return abs(volts * sens[0] * ratio[0]), volts


def _standard_segments(path, header: Header, force_list: Section, channel: Section, ramp_length: float,
                       ramp_volts: float, notes: list[str]) -> list[Segment]:
    counts = [int(v) for v in force_list.numbers("Samps/line")] or [int(v) for v in channel.numbers("Samps/line")]
    if not counts:
        raise ReaderError(path, "no 'Samps/line' entry in the force list: cannot split the curves")
    trace = counts[0]
    retrace = counts[1] if len(counts) > 1 else counts[0]
    hold = int(force_list.number("Hold Samples") or 0)
    if min(trace, retrace, hold) < 0:
        raise ReaderError(path, f"negative sample counts in the force list: {trace}, {retrace}, hold {hold}")
    forward = force_list.number("Forward vel.")
    reverse = force_list.number("Reverse vel.")
    t_forward = abs(ramp_volts / forward) if forward and math.isfinite(ramp_volts) else math.nan
    t_reverse = abs(ramp_volts / reverse) if reverse and math.isfinite(ramp_volts) else math.nan
    hold_time = force_list.number("Hold Time")
    hold_type = (force_list.text("Hold Type") or "").strip()
    segments = []
    if trace:
        segments.append(Segment("approach", "Extend", trace, 0, True, t_forward, ramp_length))
    if hold:
        change = math.nan if hold_type.lower() == "trigger force" else 0.0
        if hold_type.lower() == "trigger force":
            notes.append("hold under force feedback (Hold Type: Trigger Force): its nominal piezo is NaN; "
                         "the Height Sensor channel, when recorded, has the measured Z")
        sweep = force_list.get("@4:Sweep Type")
        sweep_text = (getattr(sweep, "text", "") or "").strip()
        label = f"Hold ({hold_type or 'unknown type'})"
        if sweep_text and sweep_text.lower() != "off":
            label += f" with {sweep_text} sweep"
        segments.append(Segment("hold", label, hold, trace + retrace, False,
                                hold_time if hold_time is not None else math.nan, change))
    if retrace:
        segments.append(Segment("retract", "Retract", retrace, trace, False, t_reverse, -ramp_length))
    return segments


def _split_list(text: str | None) -> list[str]:
    if not text:
        return []
    parts = [p.strip() for p in text.split(",")]
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def _quantity(text: str, want: str) -> float:
    """``"8000.0 nm"`` → 8e-6 (for want="m"); NaN when empty or another unit."""
    m = re.match(r"^\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*(\S*)\s*$", text or "")
    if not m:
        return math.nan
    unit = parse_unit(m.group(2) or want)
    if unit is None or unit[1] != want:
        return math.nan
    return float(m.group(1)) * unit[0]


def _script_segments(path, force_list: Section, notes: list[str]) -> list[Segment]:
    counts_text = _split_list(force_list.text("Segment Samples")) or _split_list(force_list.text("Segment Size"))
    try:
        counts = [int(float(c)) for c in counts_text]
    except ValueError:
        raise ReaderError(path, f"unreadable 'Segment Samples' list: {force_list.text('Segment Samples')!r}") from None
    if any(c < 0 for c in counts):
        raise ReaderError(path, f"negative segment sample counts: {counts}")
    n = len(counts)

    def column(key):
        values = _split_list(force_list.text(key))
        return values + [""] * (n - len(values))

    types, ramp_types = column("Segment Type"), column("Segment Ramp Type")
    sizes, durations, periods = column("Segment Ramp Size"), column("Segment Duration"), column("Segment Sample Period")
    amplitudes, frequencies = column("Segment Modulation Amplitude"), column("Segment Modulation Frequency")
    segments, offset = [], 0
    for k, count in enumerate(counts):
        ramp_type = ramp_types[k].strip()
        frequency = _quantity(frequencies[k], "1")
        if ramp_type.upper() == "Z":
            change = _quantity(sizes[k], "m")
            direction = "approach" if change > 0 else "retract" if change < 0 else "hold"
        elif ramp_type:
            change = math.nan
            direction = f"{ramp_type} ramp"
            notes.append(f"script segment {k}: ramp of {ramp_type!r}, not Z: its nominal piezo is NaN")
        else:
            change = 0.0
            modulated = amplitudes[k].strip() or (math.isfinite(frequency) and frequency > 0)
            direction = "modulation" if modulated else "hold"
        duration = _quantity(durations[k], "s")
        if not math.isfinite(duration):
            period = _quantity(periods[k], "s")
            duration = period * count if math.isfinite(period) else math.nan
        vendor = f"script segment {k} (type {types[k] or '?'})"
        segments.append(Segment(direction, vendor, count, offset, False, duration, change))
        offset += count
    return segments


# ---------------------------------------------------------------------------------------------- data
@dataclass
class Channel:
    """One recorded channel as ramps: values (n_curves × segments, max samples), NaN-padded."""

    scale: ChannelScale
    section: Section
    hard: np.ndarray  # in scale.hard_unit (numpy, or dask when read lazily)
    bytes_per_sample: int
    header_bytes: int
    lsb_divisor: int
    spring_constant: float | None


def read_channel(path, data_size: int, section: Section, index: int, header: Header, layout: Layout,
                 lazy: bool = False) -> Channel:
    """Read one force-curve list and return its ramps in hard units (time order, NaN-padded).

    ``lazy``: a dask array over the memory-mapped file (nothing is read until computed), else numpy.
    """
    offset = section.number("Data offset")
    length = section.number("Data length")
    where = f"force channel {index + 1}"
    if offset is None:
        raise ReaderError(path, f"{where}: missing '\\Data offset' in its '\\*Ciao force image list'")
    if length is None:
        raise ReaderError(path, f"{where}: missing '\\Data length' in its '\\*Ciao force image list'")
    offset, length = int(offset), int(length)
    if offset < 0 or length < 0:
        raise ReaderError(path, f"{where}: negative data offset {offset} or length {length}")
    header_bytes_value = section.number("Bytes/pixel")
    header_bytes = int(header_bytes_value) if header_bytes_value in (1, 2, 4) else None
    total = layout.n_curves * layout.samples_per_curve
    if total > MAX_TOTAL_SAMPLES:
        raise ReaderError(path, f"{where}: the header announces {total} samples, more than this reader accepts")
    width = None
    for candidate in (header_bytes, 2, 4):
        if candidate and length == total * candidate:
            width = candidate
            break
    if width is None:
        if header_bytes and length > total * header_bytes:
            width = header_bytes
            layout.notes.append(f"{where}: Data length {length} is larger than {total} samples × {width} bytes; "
                                "the extra bytes are ignored")
        else:
            raise ReaderError(path, f"{where}: Data length {length} bytes does not hold {total} samples "
                                    f"({layout.n_curves} curve(s) × {layout.samples_per_curve}) of 2 or 4 bytes")
    needed = total * width
    if offset + needed > data_size:
        found = max(0, data_size - offset)
        raise ReaderError(path, f"truncated: {where} needs {needed} bytes at offset {offset}, "
                                f"but the file has only {found} bytes there (file size {data_size})")
    if header_bytes is None:
        layout.notes.append(f"{where}: no usable 'Bytes/pixel'; {width} bytes per sample derived from the data length")
        header_bytes = width
    shape = (layout.n_curves, layout.samples_per_curve)
    raw = np.memmap(path, dtype=f"<i{width}", mode="r", offset=offset, shape=shape)
    divisor = fixed_point_divisor(raw[: max(1, FIXED_POINT_PROBE // layout.samples_per_curve)], width, header_bytes)
    scale = channel_scale(section, header, f"Channel {index + 1}", header_bytes)
    factor = scale.hard_per_lsb / divisor
    hard = _ramps_lazy(raw, layout, factor) if lazy else _ramps(raw, layout, factor)
    spring = section.number("Spring Constant")
    return Channel(scale=scale, section=section, hard=hard,
                   bytes_per_sample=width, header_bytes=header_bytes, lsb_divisor=divisor,
                   spring_constant=spring)


def _ramps(raw, layout: Layout, factor: float) -> np.ndarray:
    """(n_curves × segments, longest) float64 in time order, NaN-padded."""
    nseg, longest = len(layout.segments), max(s.samples for s in layout.segments)
    hard = np.full((layout.n_curves, nseg, longest), np.nan)
    for k, seg in enumerate(layout.segments):
        block = raw[:, seg.stored_offset:seg.stored_offset + seg.samples]
        if seg.stored_reversed:
            block = block[:, ::-1]
        np.multiply(block, factor, out=hard[:, k, :seg.samples], casting="unsafe")
    return hard.reshape(layout.n_curves * nseg, longest)


def _ramps_lazy(raw, layout: Layout, factor: float):
    """The same as :func:`_ramps` as a dask array, chunked by whole curves."""
    import dask.array as da

    nseg, longest = len(layout.segments), max(s.samples for s in layout.segments)
    curves_per_chunk = max(1, LAZY_CHUNK_SAMPLES // layout.samples_per_curve)
    data = da.from_array(raw, chunks=(curves_per_chunk, layout.samples_per_curve), asarray=True)
    parts = []
    for seg in layout.segments:
        block = data[:, seg.stored_offset:seg.stored_offset + seg.samples]
        if seg.stored_reversed:
            block = block[:, ::-1]
        block = block.astype(np.float64) * factor
        if seg.samples < longest:
            pad = da.full((layout.n_curves, longest - seg.samples), np.nan, chunks=(block.chunks[0], -1))
            block = da.concatenate([block, pad], axis=1)
        parts.append(block.rechunk({1: longest}))
    stacked = da.stack(parts, axis=1).rechunk({1: nseg})
    return stacked.reshape(layout.n_curves * nseg, longest)


def fixed_point_divisor(raw: np.ndarray, width: int, header_bytes: int) -> int:
    """256 when 32-bit data declared as 16-bit hold the value × 256 (every low byte 0x00 or 0xFF), else 1."""
    if width != 4 or header_bytes != 2 or raw.size == 0:
        return 1
    low = raw & 0xFF
    if np.all((low == 0) | (low == 0xFF)) and np.abs(raw).max() >= 0x10000:
        return 256
    return 1


def nominal_piezo(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """``piezo`` (m) and ``time_in_ramp`` (s) for the segments of one curve: (segments, max samples)."""
    nseg = len(layout.segments)
    longest = max(s.samples for s in layout.segments)
    extension = np.full((nseg, longest), np.nan)
    t = np.full((nseg, longest), np.nan)
    position = 0.0
    for k, seg in enumerate(layout.segments):
        i = np.arange(seg.samples)
        if math.isfinite(seg.extension_change):
            extension[k, :seg.samples] = position + seg.extension_change * i / max(seg.samples, 1)
            position += seg.extension_change
        if math.isfinite(seg.duration):
            t[k, :seg.samples] = seg.duration * i / max(seg.samples, 1)
    piezo = np.nanmax(extension) - extension if np.isfinite(extension).any() else extension
    return piezo, t
