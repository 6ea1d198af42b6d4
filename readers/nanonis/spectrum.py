"""Nanonis point spectroscopy files (``.dat``: bias or Z spectroscopy) → the common model.

File layout
-----------
Text (UTF-8, newer versions start with a BOM ``EF BB BF``; lines end in CR LF).  A header of
``key<TAB>value<TAB>`` lines, the first one ``Experiment<TAB>bias spectroscopy`` (or ``Z spectroscopy``),
then an empty line, the line ``[DATA]``, one line of tab-separated column names and one line of numbers
per sample (``NaN`` where nothing was measured).  The first column is the swept signal (``Bias calc (V)``
or ``Z rel (m)``); the others are the recorded channels, each possibly in several copies::

    Current (A)              forward sweep
    Current [bwd] (A)        backward sweep, stored in the order of the first column (reversed in time)
    Current (A) [filt]       a filtered copy (Nanonis' display filter), also with [bwd]
    Current [00001] (A)      sweep 1 of several (``Number of sweeps``), and Current [AVG] (A) their mean

Model (DESIGN.md §3)
--------------------
* One ramp per sweep and direction: sweep 1 fwd, sweep 1 bwd, sweep 2 fwd, ... and the ``[AVG]`` average
  (kept: it may average more sweeps than the file stores) last; the ramp variable ``sweep_number`` says
  which (0 = the average).  Samples are in time order: a backward ramp is its column reversed.
* ``Z rel (m)`` → ``piezo`` (larger = farther from the surface, as Nanonis; relative to the Z-controller
  position before the sweep); any other first column → ``sweep`` (units from its name).
* ``direction``: Z sweeps ``approach`` (larger → smaller Z) / ``retract``; otherwise ``fwd`` / ``bwd``.
* **Filtered copies are separate channels** named ``<name>_filt`` (same ramps), never mixed with the
  raw data and never given a role.
* Coordinates ``x``, ``y`` from the header's ``X (m)``, ``Y (m)``; values are float64 as written.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from nrm_plugins.errors import ReaderError
from nrm_plugins.model import ramps_dataset

from .common import (Signal, decode_text, direction_labels, is_z_sweep, metadata_attrs, parse_number,
                     parse_signal, units_of)
from .roles import default_roles, role_attrs, variable_names

FILE_FORMAT = "Nanonis point spectroscopy (.dat)"
DATA_TAG = "[DATA]"


def _split_file(path: Path) -> tuple[dict, list[str], str]:
    text = decode_text(path.read_bytes())
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == DATA_TAG)
    except StopIteration:
        raise ReaderError(path, "no '[DATA]' line: not a Nanonis spectrum, or its header is cut off") from None
    header = {}
    for line in lines[:start]:
        if not line.strip():
            continue
        key, _, value = line.rstrip("\r").partition("\t")
        header[key.strip()] = value.rstrip("\t").strip()
    if start + 1 >= len(lines) or not lines[start + 1].strip():
        raise ReaderError(path, "no column names after '[DATA]'")
    columns = [c.strip() for c in lines[start + 1].rstrip("\r\t").split("\t")]
    rows = [line for line in lines[start + 2:] if line.strip()]
    if rows and not text.endswith(("\n", "\r")):
        # a complete file ends with a line end: the last row may be cut inside a number (1.23E-12 → 1.2)
        warnings.warn(f"{path}: truncated: the file ends inside a data row (no line end after the last row); "
                      f"that row is left out, {len(rows) - 1} rows are read", UserWarning, stacklevel=4)
        rows = rows[:-1]
    return header, columns, "\n".join(rows)


def read_spectrum(path, options: dict | None = None) -> xr.Dataset:
    """Open a ``.dat`` spectrum as a common-model Dataset (see the module docstring).

    :raises ReaderError: no ``[DATA]``, no rows, rows whose number of values differs from the columns.
    """
    path = Path(path)
    header, columns, body = _split_file(path)
    if not body:
        raise ReaderError(path, f"no data rows after the {len(columns)} column names")
    try:
        table = np.loadtxt(io.StringIO(body), delimiter="\t", dtype=np.float64, ndmin=2,
                           usecols=range(len(columns)))
    except ValueError as exc:
        raise ReaderError(path, f"unreadable data rows ({exc})") from None
    n_samples = table.shape[0]
    declared = parse_number(header.get("Bias Spectroscopy>Num Pixel"))
    if header.get("Experiment", "").lower() == "bias spectroscopy" and declared and n_samples < declared:
        warnings.warn(f"{path}: truncated? the header declares {int(declared)} sweep points "
                      f"(Bias Spectroscopy>Num Pixel), the file holds {n_samples} rows", UserWarning, stacklevel=3)
    axis_signal = parse_signal(columns[0])
    z_sweep = is_z_sweep(axis_signal)
    axis = table[:, 0]

    # group the columns: one variable per (base, unit, filtered); one ramp per (sweep label, direction)
    signals: dict[tuple, Signal] = {}
    cells: dict[tuple, dict[tuple[str, int], int]] = {}
    labels, backward_seen = set(), False
    for index, name in enumerate(columns[1:], start=1):
        s = parse_signal(name)
        key = (s.base, s.unit, s.filtered)
        label = s.sweep_label
        labels.add(label)
        backward_seen |= s.backward
        cells.setdefault(key, {})[(label, int(s.backward))] = index
        if key not in signals:
            signals[key] = Signal(name=s.plain + (" [filt]" if s.filtered else ""), base=s.base, unit=s.unit,
                                  tags=("filt",) if s.filtered else ())
    numbered = sorted(label for label in labels if label.isdigit())
    ramp_labels = numbered + [label for label in ("AVG", "") if label in labels]
    dirs = [0, 1] if backward_seen else [0]
    ramps = [(label, d) for label in ramp_labels for d in dirs]
    n_ramps = len(ramps)

    def ramp_rows(values_of):
        out = np.full((n_ramps, n_samples), np.nan)
        for r, (label, d) in enumerate(ramps):
            column = values_of((label, d))
            if column is not None:
                out[r] = column[::-1] if d else column
        return out

    roles = default_roles({k: s for k, s in signals.items() if not s.filtered})
    names = variable_names(signals, roles)
    axis_name = "piezo" if z_sweep else "sweep"
    channels = {axis_name: (ramp_rows(lambda _: axis), units_of(axis_signal.unit), axis_signal.name)}
    extra = {axis_name: {"sweep_signal": axis_signal.name}}
    for key, s in signals.items():
        where = cells[key]
        channels[names[key]] = (ramp_rows(lambda cell: table[:, where[cell]] if cell in where else None),
                                units_of(s.unit), s.name)
        extra[names[key]] = role_attrs(s, roles.get(key))

    backward = np.array([d for _, d in ramps], dtype=bool)
    first, last = np.where(backward, axis[-1], axis[0]), np.where(backward, axis[0], axis[-1])
    direction = np.where(backward, direction_labels(first, last, z_sweep, backward=True),
                         direction_labels(first, last, z_sweep, backward=False)).astype(object)
    coords = {"direction": direction, "source": np.full(n_ramps, path.name, dtype=object)}
    for coord, key in (("x", "X (m)"), ("y", "Y (m)")):
        value = parse_number(header.get(key))
        if value is not None:
            coords[coord] = np.full(n_ramps, value)
    attrs = metadata_attrs(header)
    attrs.update({"file_format": FILE_FORMAT, "source_file": str(path), "sweep_signal": axis_signal.name,
                  "vendor_header": dict(header)})
    ds = ramps_dataset(channels, coords=coords, attrs=attrs)
    for name, more in extra.items():
        ds[name].attrs.update(more)
    if ramp_labels != [""]:
        number = [0 if label == "AVG" else int(label) for label, _ in ramps]
        ds["sweep_number"] = xr.Variable("ramp", np.array(number, dtype=np.int64),
                                         {"units": "1", "long_name": "sweep number (0 = [AVG], the average)"})
    return ds
