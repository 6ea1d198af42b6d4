"""Gwyddion data objects → ramps and images of the common model (DESIGN.md §3).

What is read (the object layouts are documented in ``docs/readers/gwyddion.md``):

* **GwyLawn** (curve map, ``/lawn/K``): every pixel holds ``ncurves`` curves (e.g. Height, Deflection)
  of ``curvelengths[pixel]`` samples, optionally cut into ``nsegments`` segments by per-pixel
  ``[start, end)`` boundaries.  One ramp per pixel and segment, ramp order pixel-major
  (``ramp = pixel * nsegments + segment``), pixels row-major from the top-left.  Segment labels give
  the direction; an unlabelled two-segment map is (approach, retract), the order of a force volume.
* **GwyGraphModel** (``/N/graph/graph/K``): one ramp per curve.  Curves of different graphs with the
  same abscissa (same x unit and values) and the same segment label are one ramp with several
  channels (Gwyddion stores one graph per quantity).  The abscissa becomes ``piezo`` (x in m),
  ``time_in_ramp`` (x in s) or ``sweep`` (any other unit, e.g. a sample number).
* **GwySpectra** (``/sps/K``): one ramp per spectrum (point); spectra of different objects at the
  same point with the same abscissa are one ramp with several channels.  ``x``, ``y`` are the point's
  coordinates; the abscissa of a GwyDataLine is ``off + i * real / res``.
* **GwyDataField** (``/N/data``): an image variable (``row``, ``col``) with ``x_real``, ``y_real``,
  ``x_offset``, ``y_offset``; row 0 is the top row, as in Gwyddion.

Piezo normalisation (larger = farther from the surface, DESIGN.md §3) — the rule, in order:

1. *Time-ordered data* (curve maps): along an approach segment the piezo moves toward the surface, so
   if the height/Z curve grows during the approach segments (median over ramps), ``piezo = -Z``,
   otherwise ``piezo = Z``.
2. *Otherwise* (graphs: Gwyddion sorts every graph curve by x, so the time order is lost; or maps
   without an approach segment): the contact side.  The deflection (or force) is larger where the tip
   is pushed by the surface, so the end of the x axis where it is larger is the near end: larger at the
   high end of x means ``piezo = -x``, at the low end ``piezo = x``.  The difference between the two ends (5 % of the
   samples each) must exceed 5 noise standard deviations summed over the ramps that share the axis (at
   most 256 of them, evenly spread), otherwise the direction is undecided.
3. *Undecided*: the axis is kept as ``sweep`` in m (or the curve under its own name) with a warning;
   the user can assign the role (``[channels] piezo = ...``).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from nrm_plugins.model import sanitize

#: SI prefixes Gwyddion drops from a stored unit string (values are already in base units).
_PREFIXES = {"Y", "Z", "E", "P", "T", "G", "M", "k", "h", "d", "c", "m", "µ", "u", "n", "p", "f", "a", "z", "y"}
_BASE_UNITS = {"m", "V", "A", "N", "s", "Hz", "Pa", "W", "J", "C", "F", "K", "S", "T", "Ohm", "Ω", "rad", "deg",
               "N/m", "m/V", "V/m", "m/s", "A/V", "V/A"}

_HEIGHT = re.compile(r"^(height|z|piezo|distance|zsnsr)\b|z ?sens|z[ _]?rel|z[ _]?pos|height ?sensor|zsnsr",
                     re.IGNORECASE)
_DEFLECTION = re.compile(r"defl", re.IGNORECASE)
#: Graph titles that name the kind of graph, not the quantity (then the y-axis label names it).
_GENERIC_TITLE = re.compile(r"spectrum|spectra|curve|graph|profile", re.IGNORECASE)
_DIRECTIONS = [
    (re.compile(r"^(approach|extend|trace|ext)\b", re.IGNORECASE), "approach"),
    (re.compile(r"^(retract|retrace|ret|withdraw)\b", re.IGNORECASE), "retract"),
    (re.compile(r"^(hold|contact|pause|dwell|surface ?delay)\b", re.IGNORECASE), "hold"),
]
#: Samples at each end of the x axis compared by the contact-side rule (fraction of the ramp).
_END_FRACTION = 0.05
#: Evidence (in noise standard deviations, summed over ramps) needed to decide a piezo direction.
_MIN_EVIDENCE = 5.0
#: Ramps (evenly spread) that the contact-side rule looks at.
_MAX_EVIDENCE_RAMPS = 256


class GwyContentError(ValueError):
    """An object is inconsistent (sizes that do not match); ``key`` is its container key."""

    def __init__(self, key: str, problem: str):
        self.key = key
        super().__init__(f"{key}: {problem}")


def si_unit(obj) -> str:
    """Unit text of a ``GwySIUnit`` (or None) as stored in the model: ``""`` → ``"1"`` (dimensionless).

    Gwyddion parses a stored unit string and drops its SI prefix without rescaling the values (checked
    with ``gwyddion --convert-to-gwy``: a GWYO image with ``µm`` lateral units and ``xreal = 8e-5``
    comes back as ``m`` and ``8e-5``), so ``"µm"`` and ``"nm"`` mean ``m`` here too.
    """
    text = (obj or {}).get("unitstr", "") if hasattr(obj, "get") else ""
    text = str(text).strip()
    if not text:
        return "1"
    if text not in _BASE_UNITS and text[:1] in _PREFIXES and text[1:] in _BASE_UNITS:
        return text[1:]
    return text


def direction_of(label: str) -> str | None:
    """``approach``/``retract``/``hold`` for a segment label such as ``Extend-cellhesion200``, else None."""
    for pattern, name in _DIRECTIONS:
        if pattern.search(label.strip()):
            return name
    return None


def _unique(name: str, taken) -> str:
    new, k = name, 2
    while new in taken:
        new, k = f"{name}_{k}", k + 1
    return new


def _array(obj, key: str, where: str, dtype=np.float64) -> np.ndarray:
    value = obj.get(key)
    if not isinstance(value, np.ndarray):
        raise GwyContentError(where, f"component '{key}' is missing or not an array")
    return value.astype(dtype, copy=False)


def _int(obj, key: str, where: str, minimum: int = 0) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise GwyContentError(where, f"component '{key}' is {value!r}, expected an integer >= {minimum}")
    return value


def _float(obj, key: str, default: float = 0.0) -> float:
    value = obj.get(key, default)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


# ---------------------------------------------------------------------------------------------- ramps
@dataclass
class RampSet:
    """Ramps from one object kind: ``channels`` {name: (data (ramp, sample), units, long_name, attrs)}."""

    channels: dict = field(default_factory=dict)
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    direction: np.ndarray | None = None
    keys: list = field(default_factory=list)  # container key of each ramp's object(s)
    notes: list = field(default_factory=list)

    @property
    def n_ramps(self) -> int:
        return len(self.keys)


def piezo_sign(z: np.ndarray, directions, contact: np.ndarray | None, time_ordered: bool) -> tuple[int | None, str]:
    """Sign ``s`` such that ``piezo = s * z`` grows away from the surface (module docstring), and why.

    :param z: (ramp, sample) heights/abscissae in m, NaN-padded.
    :param directions: direction of each ramp.
    :param contact: (ramp, sample) deflection or force (larger = tip pushed away), or None.
    :param time_ordered: samples are in acquisition order (True for curve maps, False for graphs).
    """
    directions = np.asarray(directions, dtype=object)
    if time_ordered:
        approach = np.flatnonzero(directions == "approach")
        if approach.size:
            first = np.array([_first_valid(z[i]) for i in approach])
            last = np.array([_first_valid(z[i][::-1]) for i in approach])
            change = np.nanmedian(last - first) if np.isfinite(last - first).any() else np.nan
            if np.isfinite(change) and change != 0:
                sign = -1 if change > 0 else 1
                return sign, ("the height grows along the approach segments, so piezo = -height" if sign < 0
                              else "the height shrinks along the approach segments, so piezo = height")
    if contact is None:
        return None, "no approach segment in acquisition order and no deflection/force channel"
    evidence = 0.0
    sample = np.unique(np.linspace(0, len(z) - 1, min(len(z), _MAX_EVIDENCE_RAMPS)).astype(int))
    for zi, ci in zip(z[sample], contact[sample]):
        ok = np.isfinite(zi) & np.isfinite(ci)
        if ok.sum() < 20:
            continue
        order = np.argsort(zi[ok], kind="stable")
        c = ci[ok][order]
        n_end = max(3, int(len(c) * _END_FRACTION))
        noise = 1.4826 * np.median(np.abs(np.diff(c))) / np.sqrt(2)
        if not np.isfinite(noise) or noise <= 0:
            noise = np.std(c) or 1.0
        evidence += (c[:n_end].mean() - c[-n_end:].mean()) / (noise / np.sqrt(n_end))
    if not np.isfinite(evidence) or abs(evidence) < _MIN_EVIDENCE:
        return None, f"the deflection/force differs too little between the two ends of the axis ({evidence:.1f} σ)"
    if evidence > 0:
        return 1, f"the deflection/force is larger at the low end of the axis ({evidence:.0f} σ), so piezo = x"
    return -1, f"the deflection/force is larger at the high end of the axis ({-evidence:.0f} σ), so piezo = -x"


def _first_valid(row: np.ndarray) -> float:
    idx = np.flatnonzero(np.isfinite(row))
    return row[idx[0]] if idx.size else np.nan


def _contact_channel(channels: dict):
    """The deflection (or a force in N) among ``{name: (data, units, long_name, attrs)}``, or None."""
    for name, (data, units, long_name, _) in channels.items():
        if name == "deflection":
            return data
    for name, (data, units, long_name, _) in channels.items():
        if units == "N":  # a force (Gwyddion's F-Z graphs): positive when the tip is pushed away
            return data
    return None


def assign_roles(channels: dict, names: list[str]) -> dict:
    """Rename the first deflection-like channel (label with "defl", units V or m) to ``deflection``."""
    out = {}
    done = False
    for name in names:
        data, units, long_name, attrs = channels[name]
        if not done and _DEFLECTION.search(long_name) and units in ("V", "m"):
            name, done = "deflection", True
        out[name] = (data, units, long_name, attrs)
    return out


def make_piezo(channels: dict, name: str, directions, time_ordered: bool, where: str, notes: list) -> dict:
    """Replace the height-like channel ``name`` by a normalised ``piezo`` when its direction is decided."""
    data, units, long_name, attrs = channels[name]
    sign, why = piezo_sign(data, directions, _contact_channel(channels), time_ordered)
    if sign is None:
        msg = (f"{where}: '{long_name}' (m) kept as '{name}', not as piezo: cannot tell which way is away from "
               f"the surface ({why}); say so with [channels] piezo = \"{long_name}\" if it already grows away")
        notes.append(msg)
        return channels
    out = {}
    for key, value in channels.items():
        if key == name:
            out["piezo"] = (data if sign > 0 else -data, "m", long_name,
                            {**attrs, "normalisation": f"piezo = {'+' if sign > 0 else '-'}{long_name}: {why}"})
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------- lawn
def read_lawn(key: str, lawn, max_values: int) -> RampSet:
    """Ramps of one ``GwyLawn`` (curve map); see the module docstring for the layout."""
    xres = _int(lawn, "xres", key, 1)
    yres = _int(lawn, "yres", key, 1)
    ncurves = _int(lawn, "ncurves", key, 1)
    npix = xres * yres
    lengths = _array(lawn, "curvelengths", key, np.int64)
    data = _array(lawn, "data", key)
    if lengths.size != npix:
        raise GwyContentError(key, f"{lengths.size} curve lengths for {xres} x {yres} = {npix} pixels")
    if (lengths < 0).any():
        raise GwyContentError(key, "negative curve length")
    if int(lengths.sum()) * ncurves != data.size:
        raise GwyContentError(key, f"{data.size} values, but {ncurves} curves x {int(lengths.sum())} samples "
                                   f"= {int(lengths.sum()) * ncurves} expected")
    present = np.flatnonzero(lengths > 0)
    if not present.size:  # before anything is sized by ncurves (which then nothing bounds)
        return RampSet(notes=[f"{key}: no pixel of the {xres} x {yres} map holds a curve"])
    labels = list(lawn.get("curve_labels") or [])
    units = [si_unit(u) for u in (lawn.get("si_units_curves") or [])]
    if labels and len(labels) != ncurves or units and len(units) != ncurves:
        raise GwyContentError(key, f"{len(labels)} labels / {len(units)} units for {ncurves} curves")
    labels = labels or [f"curve {i + 1}" for i in range(ncurves)]
    units = units or ["1"] * ncurves

    nseg = lawn.get("nsegments", 0) if isinstance(lawn.get("nsegments", 0), int) else -1
    if nseg < 0:
        raise GwyContentError(key, f"nsegments is {lawn.get('nsegments')!r}")
    if nseg:
        segments = _array(lawn, "segments", key, np.int64)
        if segments.size != npix * 2 * nseg:
            raise GwyContentError(key, f"{segments.size} segment boundaries, expected {npix} pixels x 2 x {nseg}")
        segments = segments.reshape(npix, nseg, 2)
        bad = (segments[..., 0] < 0) | (segments[..., 1] < segments[..., 0]) | (segments[..., 1] > lengths[:, None])
        if bad.any():
            pix, seg = np.argwhere(bad)[0]
            raise GwyContentError(key, f"segment {seg} of pixel {pix} is {segments[pix, seg].tolist()}, outside the "
                                       f"curve of {lengths[pix]} samples")
        seg_labels = list(lawn.get("segment_labels") or [])
        if seg_labels and len(seg_labels) != nseg:
            raise GwyContentError(key, f"{len(seg_labels)} segment labels for {nseg} segments")
    else:
        segments = np.stack([np.zeros(npix, np.int64), lengths], axis=1)[:, None, :]
        seg_labels = []
        nseg = 1
    if seg_labels:
        directions = [direction_of(s) or s.strip().lower() or f"segment_{i + 1}" for i, s in enumerate(seg_labels)]
    elif nseg == 2:
        directions = ["approach", "retract"]  # force volume order (DESIGN.md §3 convention for unlabelled maps)
    elif nseg == 1:
        directions = [""]
    else:
        directions = [f"segment_{i + 1}" for i in range(nseg)]

    notes = []
    if present.size < npix:
        notes.append(f"{key}: {npix - present.size} of {npix} pixels hold no curve and give no ramp")
    seg_len = segments[present, :, 1] - segments[present, :, 0]
    n_samples = int(seg_len.max()) if seg_len.size else 0
    n_ramps = present.size * nseg
    if n_ramps * n_samples * ncurves > max_values:
        raise GwyContentError(key, f"{n_ramps} ramps x {n_samples} samples x {ncurves} curves would need "
                                   f"{n_ramps * n_samples * ncurves * 8 / 1e9:.1f} GB")
    covered = seg_len.sum(axis=1)
    if (covered < lengths[present]).any():
        notes.append(f"{key}: {int((lengths[present] - covered).sum())} samples lie outside every segment "
                     "and are not in any ramp")

    offsets = np.concatenate([[0], np.cumsum(lengths * ncurves)])[:-1]
    uniform = bool((lengths[present] == lengths[present[0]]).all() and
                   (segments[present] == segments[present[0]]).all()) if present.size else True
    channels = {}
    for c in range(ncurves):
        out = np.full((present.size, nseg, n_samples), np.nan)
        if uniform and present.size:
            length = int(lengths[present[0]])
            # pixels with curves are contiguous blocks of ncurves * length values
            block = data.reshape(-1, ncurves, length) if present.size == npix else \
                np.stack([data[offsets[p]:offsets[p] + ncurves * length] for p in present]).reshape(-1, ncurves, length)
            for s in range(nseg):
                start, end = segments[present[0], s]
                out[:, s, :end - start] = block[:, c, start:end]
        else:  # curves or segments differ between pixels: one copy per pixel (rare; no vectorisation)
            for i, p in enumerate(present):
                curve = data[offsets[p] + c * lengths[p]: offsets[p] + (c + 1) * lengths[p]]
                for s in range(nseg):
                    start, end = segments[p, s]
                    out[i, s, :end - start] = curve[start:end]
        name = _unique(sanitize(labels[c]), channels)
        channels[name] = (out.reshape(n_ramps, n_samples), units[c], labels[c], {"gwy_key": key})

    direction = np.tile(np.array(directions, dtype=object), present.size)
    names = list(channels)
    channels = assign_roles(channels, names)
    height = [n for n, (_, u, label, _) in channels.items() if u == "m" and n != "deflection" and _HEIGHT.search(label)]
    if height:
        channels = make_piezo(channels, height[0], direction, True, key, notes)

    xy_unit = si_unit(lawn.get("si_unit_xy"))
    col, row = present % xres, present // xres
    if xy_unit == "m":
        x = _float(lawn, "xoff") + (col + 0.5) * _float(lawn, "xreal", 1.0) / xres
        y = _float(lawn, "yoff") + (row + 0.5) * _float(lawn, "yreal", 1.0) / yres
    else:
        x = y = np.full(present.size, np.nan)
        notes.append(f"{key}: lateral unit '{xy_unit}' is not m; ramp x, y left unknown")
    return RampSet(channels=channels, x=np.repeat(x, nseg), y=np.repeat(y, nseg), direction=direction,
                   keys=[key] * n_ramps, notes=notes)


# ---------------------------------------------------------------------------------------------- graphs, spectra
@dataclass
class _Ramp:
    axis: np.ndarray
    axis_unit: str
    axis_label: str
    direction: str
    x: float = np.nan
    y: float = np.nan
    channels: dict = field(default_factory=dict)  # name -> (values, units, long_name, attrs)
    keys: list = field(default_factory=list)


def _axis_key(axis: np.ndarray, unit: str, direction: str, extra=()) -> tuple:
    return (unit, direction, axis.size, axis.tobytes(), *extra)


def read_graphs(items: list, max_values: int) -> RampSet:
    """Ramps of all ``GwyGraphModel`` objects ``[(key, graph), ...]`` (module docstring)."""
    titles = [str(g.get("title", "")) for _, g in items]
    ramps: dict = {}
    for (key, graph), title in zip(items, titles):
        curves = graph.get("curves")
        if not isinstance(curves, list):
            raise GwyContentError(key, "component 'curves' is missing")
        left = str(graph.get("left_label", "")).strip()
        generic = titles.count(title) > 1 or not title.strip() or _GENERIC_TITLE.search(title)
        name_text = left if generic and len(left) > 1 else title
        name_text = name_text.strip() or key
        x_unit, y_unit = si_unit(graph.get("x_unit")), si_unit(graph.get("y_unit"))
        x_label = str(graph.get("bottom_label", "")).strip()
        for k, curve in enumerate(curves):
            where = f"{key} curve {k}"
            xdata, ydata = _array(curve, "xdata", where), _array(curve, "ydata", where)
            if xdata.size != ydata.size:
                raise GwyContentError(where, f"{xdata.size} x values but {ydata.size} y values")
            description = str(curve.get("description", "")).strip()
            direction = direction_of(description)
            long_name = name_text if direction or not description else description
            ramp_key = _axis_key(xdata, x_unit, direction or "", (x_label,))
            ramp = ramps.setdefault(ramp_key, _Ramp(xdata, x_unit, x_label, direction or ""))
            name = _unique(sanitize(long_name), ramp.channels)
            ramp.channels[name] = (ydata, y_unit, long_name, {"gwy_key": key, "curve_description": description})
            ramp.keys.append(key)
    return _assemble(list(ramps.values()), time_ordered=False, what="graph", max_values=max_values)


def read_spectra(items: list, max_values: int) -> RampSet:
    """Ramps of all ``GwySpectra`` objects ``[(key, spectra), ...]`` (module docstring)."""
    ramps: dict = {}
    for key, spectra in items:
        lines = spectra.get("data")
        if not isinstance(lines, list):
            raise GwyContentError(key, "component 'data' (the spectra) is missing")
        coords = _array(spectra, "coords", key) if "coords" in spectra else np.full(2 * len(lines), np.nan)
        if coords.size != 2 * len(lines):
            raise GwyContentError(key, f"{coords.size // 2} point coordinates for {len(lines)} spectra")
        xy_unit = si_unit(spectra.get("si_unit_xy"))
        title = str(spectra.get("title", "")).strip() or str(spectra.get("spec_ylabel", "")).strip() or key
        x_label = str(spectra.get("spec_xlabel", "")).strip()
        for p, line in enumerate(lines):
            where = f"{key} spectrum {p}"
            values = _array(line, "data", where)
            res = _int(line, "res", where, 1)
            if res != values.size:
                raise GwyContentError(where, f"res is {res} but the data line holds {values.size} values")
            real = _float(line, "real", 1.0)
            axis = _float(line, "off") + np.arange(res) * (real / res)
            point = tuple(coords[2 * p:2 * p + 2]) if xy_unit == "m" else (np.nan, np.nan)
            ramp_key = _axis_key(axis, si_unit(line.get("si_unit_x")), "", (x_label, np.array(point).tobytes()))
            ramp = ramps.setdefault(ramp_key, _Ramp(axis, si_unit(line.get("si_unit_x")), x_label, "", *point))
            name = _unique(sanitize(title), ramp.channels)
            ramp.channels[name] = (values, si_unit(line.get("si_unit_y")), title, {"gwy_key": key})
            ramp.keys.append(key)
    return _assemble(list(ramps.values()), time_ordered=False, what="spectra", max_values=max_values)


def _axis_variable(unit: str) -> str:
    return {"m": "piezo", "s": "time_in_ramp"}.get(unit, "sweep")


def _assemble(ramps: list[_Ramp], time_ordered: bool, what: str, max_values: int) -> RampSet:
    """Stack ramps with possibly different channels and lengths into one NaN-padded RampSet.

    A channel name met again with another unit becomes ``<name>_<unit>``; a channel a ramp does not
    have is NaN there (not measured).
    """
    if not ramps:
        return RampSet()
    n_samples = max(r.axis.size for r in ramps)
    units_of: dict = {}  # global channel name -> units
    placed = []  # per ramp: [(global name, values, units, long_name, attrs)]
    for r in ramps:
        row = []
        for name, (values, units, long_name, attrs) in r.channels.items():
            if units_of.setdefault(name, units) != units:
                name = f"{name}_{sanitize(units)}"
                units_of.setdefault(name, units)
            row.append((name, values, units, long_name, attrs))
        placed.append(row)
    total = len(ramps) * n_samples * (len(units_of) + 1)
    if total > max_values:
        raise GwyContentError(f"/{what}", f"{len(ramps)} ramps x {n_samples} samples x {len(units_of)} channels "
                                          f"would need {total * 8 / 1e9:.1f} GB")
    channels: dict = {}
    for i, row in enumerate(placed):
        for name, values, units, long_name, attrs in row:
            if name not in channels:
                channels[name] = (np.full((len(ramps), n_samples), np.nan), units, long_name, attrs)
            channels[name][0][i, :values.size] = values
    channels = assign_roles(channels, list(channels))
    directions = np.array([r.direction for r in ramps], dtype=object)
    contact = _contact_channel(channels)
    # the abscissa of each ramp, grouped by its kind (piezo / time_in_ramp / sweep), unit and label
    families: dict = {}
    for i, r in enumerate(ramps):
        families.setdefault((_axis_variable(r.axis_unit), r.axis_unit, r.axis_label), []).append(i)
    axes: dict = {}
    notes = []
    for (kind, unit, label), members in families.items():
        axis = np.full((len(ramps), n_samples), np.nan)
        for i in members:
            axis[i, :ramps[i].axis.size] = ramps[i].axis
        attrs = {"gwy_axis": f"{what} abscissa"}
        if kind == "piezo":
            sign, why = piezo_sign(axis[members], directions[members],
                                   None if contact is None else contact[members], time_ordered)
            if sign is None:
                kind = "sweep"
                notes.append(f"{what}: the x axis '{label}' (m) is kept as sweep, not piezo: cannot tell which way "
                             f"is away from the surface ({why})")
            else:
                axis = axis * sign
                attrs["normalisation"] = f"piezo = {'+' if sign > 0 else '-'}x ({label or 'x'}): {why}"
        name = _unique(kind, {**axes, **channels}) if kind in axes or kind in channels else kind
        axes[name] = (axis, unit, label or "x", attrs)
    return RampSet(channels={**axes, **channels}, x=np.array([r.x for r in ramps], float),
                   y=np.array([r.y for r in ramps], float), direction=directions,
                   keys=[",".join(dict.fromkeys(r.keys)) for r in ramps], notes=notes)


# ---------------------------------------------------------------------------------------------- images
def read_image(key: str, field_obj, title: str | None):
    """``(data (row, col), units, long_name, attrs)`` of a ``GwyDataField``."""
    xres = _int(field_obj, "xres", key, 1)
    yres = _int(field_obj, "yres", key, 1)
    data = _array(field_obj, "data", key)
    if data.size != xres * yres:
        raise GwyContentError(key, f"{data.size} values for {xres} x {yres} pixels")
    xy_unit = si_unit(field_obj.get("si_unit_xy"))
    attrs = {
        "x_real": _float(field_obj, "xreal", 1.0), "y_real": _float(field_obj, "yreal", 1.0),
        "x_offset": _float(field_obj, "xoff"), "y_offset": _float(field_obj, "yoff"),
        "xy_units": xy_unit, "gwy_key": key,
    }
    return data.reshape(yres, xres), si_unit(field_obj.get("si_unit_z")), title or key, attrs


def warn_notes(notes: list[str], path) -> None:
    for note in notes:
        warnings.warn(f"{path}: {note}", UserWarning, stacklevel=4)
