"""An example third-party plugin for nrm-plugins: what an outside vendor ships.

The ``.toy`` format is a text file::

    TOYNRM 1
    spring_constant 0.5
    ramp 0 approach
    <piezo in nm> <deflection in V>
    ...
    ramp 1 approach
    ...

The reader turns it into the common model with ``nrm_plugins.model.ramps_dataset``; the analysis
``toy-max-deflection`` reports each ramp's largest deflection.  Registration is one entry point in
``pyproject.toml`` (group ``nrm_plugins``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nrm_plugins.errors import ReaderError
from nrm_plugins.hookspecs import hookimpl
from nrm_plugins.methods import Method, Parameter
from nrm_plugins.model import ramps_dataset

MAGIC = b"TOYNRM 1"


@hookimpl
def nrm_read_identify(path, head):
    if head.startswith(MAGIC):
        return 100
    return 10 if Path(path).suffix == ".toy" else None


@hookimpl
def nrm_read(path, options):
    lines = Path(path).read_text().splitlines()
    if not lines or lines[0].strip() != MAGIC.decode():
        raise ReaderError(path, "not a TOYNRM 1 file (first line must be 'TOYNRM 1')")
    attrs, ramps, directions = {}, [], []
    for number, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words:
            continue
        if words[0] == "spring_constant":
            attrs["spring_constant"] = float(words[1])
        elif words[0] == "ramp":
            ramps.append([])
            directions.append(words[2] if len(words) > 2 else "")
        elif ramps:
            try:
                ramps[-1].append((float(words[0]) * 1e-9, float(words[1])))
            except (ValueError, IndexError):
                raise ReaderError(path, f"line {number}: expected '<piezo nm> <deflection V>', got {line!r}") from None
        else:
            raise ReaderError(path, f"line {number}: data before the first 'ramp' line")
    if not ramps or not all(ramps):
        raise ReaderError(path, "no ramps, or a ramp without data")
    n = max(len(r) for r in ramps)
    data = np.full((len(ramps), n, 2), np.nan)
    for i, r in enumerate(ramps):
        data[i, : len(r)] = r
    return ramps_dataset(
        {"piezo": (data[..., 0], "m", "piezo (nm)"), "deflection": (data[..., 1], "V", "deflection (V)")},
        coords={"direction": np.array(directions, dtype=object), "source": Path(path).name},
        attrs=attrs,
    )


def max_deflection(ds, **params):
    """Largest deflection of each ramp (V)."""
    return ds["deflection"].max("sample")


@hookimpl
def nrm_analyses():
    return [Method(name="toy-max-deflection", title="Largest deflection per ramp", kind="analysis",
                   function=max_deflection, parameters=(Parameter("unused", None, "", "no parameters"),),
                   citation="nrm-toyvendor example")]
