"""Write any model with ramps as a Nanonis grid spectroscopy file (``.3ds``; layout in :mod:`.grid`).

What goes where
---------------
* The sweep axis (``piezo``, else ``sweep``) becomes each point's ``Sweep Start``/``Sweep End``
  parameters (float32).  ``Sweep Signal`` is the axis' ``sweep_signal`` attribute, else ``Z (m)`` for
  ``piezo`` (same sign convention: larger = farther) or the ``sweep`` variable's name and units.  The
  format stores only the two limits, so the axis must be linear in the sample index; NaN padding at either
  end is allowed (the limits are those of the line through the finite samples).  A non-linear axis (e.g. a
  measured height sensor) is written as the best line through its first and last finite samples **plus**
  an extra channel ``Piezo (m)`` (or ``Sweep (<unit>)``) holding the exact values, with a warning.
* Every other (ramp, sample) variable is a channel named by its ``long_name`` (the vendor name) with the
  unit in parentheses, e.g. ``Input 2 (V)``; values are written as big-endian float32, NaN as NaN
  (ramps of different lengths keep their NaN padding).
* Per-point parameters: ``Sweep Start``, ``Sweep End``, ``X (m)``, ``Y (m)``, ``Time (s)``,
  ``Potential (V)`` (from the ramp coordinates; NaN when unknown), then every numeric per-ramp variable.
* Roles are recorded in the header entry ``NRM>Roles="deflection=Input 2 (V);..."`` so that our reader
  gives them back; other readers ignore it.  A dataset read from a Nanonis file gets its vendor header
  entries (``Module>Parameter``) back; metadata attributes such as ``lockin_frequency`` are written as
  Nanonis keys.

Points
------
When the ramps come in consecutive pairs at one location — (approach, retract), (retract, approach) or
(fwd, bwd), with equal coordinates and per-ramp values and mirrored axes, as our reader produces them —
each pair is **one point** whose second ramp is written as the ``[bwd]`` channels (reversed into sweep
order, as Nanonis stores them).  Otherwise every ramp is its own point.  Either way our reader gives back
the same ramps in the same order, values bit for bit (float32) and each ramp's axis to float32
precision; ``direction`` is recomputed from the axis (``approach``/``retract`` for Z, else ``fwd``, or
``bwd`` for a paired second ramp), so a lone ``bwd`` bias ramp comes back as ``fwd``.

``Grid dim``: the dataset's ``grid_dim`` attribute when it matches the number of points written
(including an unfinished grid: declared minus ``points_missing``), else the x/y raster when the points
form one (line by line, x fastest), else ``N x 1``.
"""
from __future__ import annotations

import os
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np

from nrm_plugins.errors import WriterError
from nrm_plugins.model import ROLES, channel_names, has_ramps

from .common import NUMERIC_ATTRS, VENDOR, parse_signal, with_unit
from .grid import CHUNK_BYTES, HEADER_END, ROLES_KEY

_PAIRS = {("approach", "retract"), ("retract", "approach"), ("fwd", "bwd")}
_COORD_PARAM_NAMES = {"x": "X (m)", "y": "Y (m)", "time": "Time (s)", "potential": "Potential (V)"}
#: header keys the writer makes itself (never copied from a vendor header)
_STRUCTURE = ("Grid dim", "Grid settings", "Filetype", "Sweep Signal", "Fixed parameters",
              "Experiment parameters", "# Parameters (4 byte)", "Experiment size (bytes)", "Points", "Channels",
              "Delay before measuring (s)", "Experiment", "Start time", "End time", "User", "Comment", ROLES_KEY)
#: relative tolerance of the linearity check of the sweep axis
_LINEAR_RTOL = 1e-5


def _file_name(var, long_name: str, units: str) -> str:
    """A channel/parameter name as Nanonis writes it: ``"Input 2 (V)"``; no ``;`` (the list separator)."""
    signal = parse_signal(long_name or var)
    dimensionless = units in ("", "1")
    if long_name and not signal.tags and (signal.unit == units or (dimensionless and not signal.unit)):
        name = long_name
    else:
        base = long_name if long_name and not signal.unit and not signal.tags else str(var)
        name = with_unit(base, "" if dimensionless else units)
    return name.replace(";", ",").replace('"', "'")


def _backward_name(name: str) -> str:
    """``"Current (A)"`` → ``"Current [bwd] (A)"`` (Nanonis' spelling)."""
    s = parse_signal(name)
    tags = "".join(f" [{t}]" for t in s.tags)
    return f"{s.base}{tags} [bwd]" + (f" ({s.unit})" if s.unit else "")


def _unique(names: list[str]) -> list[str]:
    seen, out = set(), []
    for name in names:
        new, k = name, 2
        while new in seen:
            s = parse_signal(name)
            new, k = with_unit(f"{s.base} {k}", s.unit), k + 1
        seen.add(new)
        out.append(new)
    return out


def _tolerance(first, last):
    """How far an axis may be from its line: a fraction of its range plus float32 rounding."""
    return _LINEAR_RTOL * np.abs(last - first) + 4 * np.finfo(np.float32).eps * np.maximum(abs(first), abs(last))


def _axis_limits(axis, n_samples: int):
    """Per ramp: start, end (float64) of the line through the first and last finite sample, and
    whether the axis deviates from that line (beyond float32 rounding)."""
    n_ramps = axis.shape[0]
    start = np.full(n_ramps, np.nan)
    end = np.full(n_ramps, np.nan)
    nonlinear = np.zeros(n_ramps, dtype=bool)
    step = max(1, CHUNK_BYTES // (8 * n_samples))
    index = np.arange(n_samples, dtype=np.float64)
    for a in range(0, n_ramps, step):
        values = np.asarray(axis[a: a + step].values, dtype=np.float64)
        finite = np.isfinite(values)
        has = finite.any(axis=1)
        first = np.argmax(finite, axis=1)
        last = n_samples - 1 - np.argmax(finite[:, ::-1], axis=1)
        rows = np.arange(len(values))
        p0, p1 = values[rows, first], values[rows, last]
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = np.where(last > first, (p1 - p0) / np.maximum(last - first, 1), 0.0)
        s = p0 - slope * first
        e = s + slope * (n_samples - 1)
        fraction = index / (n_samples - 1) if n_samples > 1 else np.zeros(1)
        line = s[:, None] + (e - s)[:, None] * fraction[None, :]
        with np.errstate(invalid="ignore"):
            deviation = np.where(finite, np.abs(values - line), 0.0).max(axis=1)
        tolerance = _tolerance(p0, p1)
        start[a: a + step] = np.where(has, s, np.nan)
        end[a: a + step] = np.where(has, e, np.nan)
        nonlinear[a: a + step] = has & (deviation > tolerance)
    return start, end, nonlinear


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def _paired(direction, per_ramp: list[np.ndarray], start, end) -> bool:
    """Do ramps (2k, 2k+1) form approach/retract (or fwd/bwd) pairs at one location with mirrored axes?"""
    n = len(direction)
    if n == 0 or n % 2:
        return False
    first, second = direction[0::2], direction[1::2]
    if not all((str(a), str(b)) in _PAIRS for a, b in zip(first, second)):
        return False
    if not all(_same(v[0::2], v[1::2]) for v in per_ramp):
        return False
    tolerance = _tolerance(start[0::2], end[0::2])
    mirrored = (np.abs(start[1::2] - end[0::2]) <= tolerance) & (np.abs(end[1::2] - start[0::2]) <= tolerance)
    both_nan = np.isnan(start[0::2]) & np.isnan(start[1::2])
    return bool(np.all(mirrored | both_nan))


def _grid_dim(ds, n_points: int, x: np.ndarray, y: np.ndarray):
    """(nx, ny, grid settings or None) — see the module docstring."""
    dim = ds.attrs.get("grid_dim")
    settings = ds.attrs.get("grid_settings")
    if dim is not None and len(dim) == 2:
        nx, ny = int(dim[0]), int(dim[1])
        missing = int(ds.attrs.get("points_missing", 0) or 0)
        if nx * ny == n_points or (0 < missing and nx * ny - missing == n_points):
            return nx, ny, (list(settings) if settings is not None and len(settings) == 5 else None)
    if n_points > 1 and np.all(np.isfinite(x)) and np.all(np.isfinite(y)):
        changes = np.flatnonzero(y != y[0])
        nx = int(changes[0]) if len(changes) else n_points
        if n_points % nx == 0:
            ny = n_points // nx
            xs, ys = x.reshape(ny, nx), y.reshape(ny, nx)
            if np.array_equal(xs, np.broadcast_to(xs[0], xs.shape)) and \
                    np.array_equal(ys, np.broadcast_to(ys[:, :1], ys.shape)):
                return nx, ny, None
    return n_points, 1, None


def _settings_from_xy(x, y) -> list[float]:
    finite_x, finite_y = x[np.isfinite(x)], y[np.isfinite(y)]
    out = []
    for v in (finite_x, finite_y):
        out.append([(v.min() + v.max()) / 2, v.max() - v.min()] if len(v) else [0.0, 0.0])
    return [out[0][0], out[1][0], out[0][1], out[1][1], 0.0]


def _nanonis_date(iso) -> str:
    try:
        return datetime.fromisoformat(str(iso)).strftime("%d.%m.%Y %H:%M:%S")
    except ValueError:
        return ""


def _header_text(value) -> str:
    return " ".join(str(value).split("\n")).replace("\r", " ")


def write_grid(ds, path: Path, options: dict | None = None) -> None:
    """Write ``ds`` (common model with ramps) to ``path`` as ``.3ds`` — see the module docstring.

    :raises WriterError: no ramps, no sweep axis, no channel besides the axis, or an I/O error.
    """
    path = Path(path)
    if not has_ramps(ds):
        raise WriterError(path, f"a .3ds grid holds spectra: the dataset has no ramps (dims {dict(ds.sizes)})")
    axis_name = "piezo" if "piezo" in ds.data_vars else "sweep" if "sweep" in ds.data_vars else None
    if axis_name is None:
        raise WriterError(path, "a .3ds grid needs a sweep axis: a 'piezo' or 'sweep' variable (ramp, sample); "
                                f"the dataset has {channel_names(ds)} (assign one with channels={{'piezo': ...}})")
    axis = ds[axis_name]
    if axis.dims != ("ramp", "sample"):
        raise WriterError(path, f"'{axis_name}' has dims {axis.dims}, expected ('ramp', 'sample')")
    variables = [v for v in ds.data_vars if ds[v].dims == ("ramp", "sample") and v != axis_name]
    if not variables:
        raise WriterError(path, f"nothing to write besides the sweep axis '{axis_name}': no channel")
    text = [v for v in variables if not np.issubdtype(ds[v].dtype, np.number) and ds[v].dtype != bool]
    if text:
        raise WriterError(path, f"ramp variables {text} are not numbers: a .3ds channel holds float32 values")
    n_ramps, n_samples = ds.sizes["ramp"], ds.sizes["sample"]
    axis_units = str(axis.attrs.get("units", "m" if axis_name == "piezo" else ""))
    sweep_signal = axis.attrs.get("sweep_signal") or (
        "Z (m)" if axis_name == "piezo" else _file_name("Sweep", axis.attrs.get("long_name", ""), axis_units))

    start, end, nonlinear = _axis_limits(axis, n_samples)
    if nonlinear.any():
        bad = np.flatnonzero(nonlinear)
        warnings.warn(f"{path}: the '{axis_name}' of {len(bad)} ramps (first: ramp {bad[0]}) is not linear in the "
                      "sample index; .3ds stores only Sweep Start/End, so the exact values are written as an extra "
                      "channel", UserWarning, stacklevel=3)

    # per-ramp values: coordinates, then numeric ramp variables
    coord_values = {c: (np.asarray(ds[c].values, dtype=np.float64) if c in ds.coords else np.full(n_ramps, np.nan))
                    for c in _COORD_PARAM_NAMES}
    per_ramp_vars = [v for v in ds.data_vars if ds[v].dims == ("ramp",)]
    extra = [v for v in per_ramp_vars if np.issubdtype(ds[v].dtype, np.number) or ds[v].dtype == bool]
    if len(extra) < len(per_ramp_vars):
        warnings.warn(f"{path}: per-ramp variables {sorted(set(per_ramp_vars) - set(extra))} are not numbers and "
                      "are not written (.3ds parameters are float32)", UserWarning, stacklevel=3)
    extra_names = [_file_name(v, ds[v].attrs.get("long_name", ""), str(ds[v].attrs.get("units", "")))
                   for v in extra]
    keep = [k for k, name in enumerate(extra_names) if name not in _COORD_PARAM_NAMES.values()
            and name not in ("Sweep Start", "Sweep End")]
    extra = [extra[k] for k in keep]
    param_names = ["Sweep Start", "Sweep End", *_COORD_PARAM_NAMES.values(), *_unique([extra_names[k] for k in keep])]
    per_ramp = [coord_values[c] for c in _COORD_PARAM_NAMES] + [np.asarray(ds[v].values, dtype=np.float64)
                                                                 for v in extra]
    direction = ds["direction"].values.astype(str) if "direction" in ds.coords else np.full(n_ramps, "")
    paired = _paired(direction, per_ramp, start, end)
    step = 2 if paired else 1
    n_points = n_ramps // step

    names = _unique([_file_name(v, ds[v].attrs.get("long_name", ""), str(ds[v].attrs.get("units", "")))
                     for v in variables])
    sources = [(v, False) for v in variables]
    if nonlinear.any():
        names.append(with_unit("Piezo" if axis_name == "piezo" else "Sweep", axis_units))
        sources.append((axis_name, True))
    file_channels = names + ([_backward_name(n) for n in names] if paired else [])
    n_params = len(param_names)
    record_floats = n_params + n_samples * len(file_channels)

    x, y = coord_values["x"][::step], coord_values["y"][::step]
    nx, ny, settings = _grid_dim(ds, n_points, x, y)
    settings = settings or _settings_from_xy(x, y)
    header = _header(ds, nx, ny, settings, sweep_signal, param_names, n_samples, file_channels,
                     {r: names[variables.index(r)] for r in ROLES if r in variables})

    try:
        with open(path, "wb") as fh:
            fh.write(header)
            chunk = max(1, CHUNK_BYTES // (4 * record_floats))
            for p0 in range(0, n_points, chunk):
                p1 = min(n_points, p0 + chunk)
                ramps = slice(p0 * step, p1 * step, step)
                block = np.empty((p1 - p0, record_floats), dtype=">f4")
                block[:, 0], block[:, 1] = start[ramps], end[ramps]
                for k, values in enumerate(per_ramp):
                    block[:, 2 + k] = values[ramps]
                column = n_params
                for copy in range(step):  # forward channels, then (paired) the backward ones
                    ramps = slice(p0 * step + copy, p1 * step, step)
                    for var, _ in sources:
                        values = np.asarray(ds[var][ramps].values)
                        block[:, column: column + n_samples] = values[:, ::-1] if copy else values
                        column += n_samples
                block.tofile(fh)
    except OSError as exc:
        raise WriterError(path, f"cannot write: {exc}") from None
    except BaseException:
        if path.exists():
            os.remove(path)
        raise


def _header(ds, nx, ny, settings, sweep_signal, param_names, n_samples, channels, roles) -> bytes:
    vendor = ds.attrs.get("vendor_header") if ds.attrs.get("vendor") == VENDOR else None
    vendor = vendor if isinstance(vendor, dict) else {}

    def given(key, default=""):
        return _header_text(vendor.get(key, default))

    start = given("Start time") or _nanonis_date(ds.attrs.get("acquisition_start", ""))
    stop = given("End time") or _nanonis_date(ds.attrs.get("acquisition_end", ""))
    lines = [
        f'Grid dim="{nx} x {ny}"',
        "Grid settings=" + ";".join(f"{float(v):.6E}" for v in settings),
        f"Filetype={given('Filetype', 'Linear')}",
        f'Sweep Signal="{sweep_signal}"',
        'Fixed parameters="Sweep Start;Sweep End"',
        'Experiment parameters="' + ";".join(param_names[2:]) + '"',
        f"# Parameters (4 byte)={len(param_names)}",
        f"Experiment size (bytes)={4 * n_samples * len(channels)}",
        f"Points={n_samples}",
        'Channels="' + ";".join(channels) + '"',
        f"Delay before measuring (s)={given('Delay before measuring (s)', '0.000000E+0')}",
        f'Experiment="{given("Experiment", "Grid Spectroscopy")}"',
        f'Start time="{start}"',
        f'End time="{stop}"',
        f"User={given('User', ds.attrs.get('user', ''))}",
        f"Comment={given('Comment', ds.attrs.get('comment', 'written by nrm-plugins'))}",
    ]
    written = set(_STRUCTURE)
    for key, value in vendor.items():
        if ">" in key and key not in written and "\n" not in key and "=" not in key:
            lines.append(f"{key}={_header_text(value)}")
            written.add(key)
    for attr, keys in NUMERIC_ATTRS.items():
        value = ds.attrs.get(attr)
        if isinstance(value, (int, float)) and not any(k in written for k in keys):
            lines.append(f"{keys[0]}={float(value):.6E}")
    if roles:
        lines.append(f'{ROLES_KEY}="' + ";".join(f"{r}={n}" for r, n in roles.items()) + '"')
    text = "\r\n".join(lines) + "\r\n" + HEADER_END.decode() + "\r\n"
    return text.encode("utf-8")
