"""nrm-plugins: the open toolkit for 1D nanorheology microscopy (1D-NRM).

Python API (DESIGN.md §3)::

    import nrm_plugins as nrm
    ds = nrm.open("grid.3ds")                      # vendor file -> common model (xarray.Dataset)
    results = nrm.process(ds, "calibration.toml", windows=[(1.5, 2.0), (1.0, 1.5)])
    G = nrm.derive(results, "G_abs")
    nrm.save(results, "results.nc")
    nrm.report(results, "report/")
"""
from __future__ import annotations

from pathlib import Path

from ._version import __version__
from .errors import CalibrationError, ModelError, NRMError, PluginError, ReaderError, WriterError
from . import accessor as _accessor  # noqa: F401 - registers ds.nrm
from .model import ROLES, assign_roles, validate
from .plugins import get_plugin_manager

__all__ = [
    "__version__", "open", "save", "convert", "process", "derive", "report", "validate", "assign_roles",
    "ROLES", "NRMError", "ReaderError", "WriterError", "ModelError", "CalibrationError", "PluginError",
    "get_plugin_manager",
]


def open(path, channels=None, **options):  # noqa: A001 - the API name DESIGN.md asks for
    """Read a file (any registered reader, chosen by content) into the common model.

    :param channels: role overrides ``{"deflection": "Input 2 (V)", ...}`` (the `[channels]` table)
    :param options: reader options, e.g. ``strict=True``
    """
    path = Path(path)
    ds = get_plugin_manager().read(path, options)
    if channels:
        ds = assign_roles(ds, channels, source=path)
    return ds


def save(ds, path, format=None, **options):
    """Write ``ds`` with the writer chosen by ``format`` or by the suffix (.nc, .zarr, .3ds, ...)."""
    return get_plugin_manager().write(ds, path, format, options)


def convert(src, dst, format=None, channels=None, **options):
    """``open(src)`` then ``save(dst)``; returns the output path."""
    return save(open(src, channels=channels), dst, format, **options)


def process(ds, calibration=None, **options):
    """Run the 1D-NRM pipeline (DESIGN.md §1) and return the results Dataset (DESIGN.md §3)."""
    from .pipeline import process as _process

    return _process(ds, calibration, **options)


def derive(results, name):
    """A quantity computed on demand from results: ``S_storage``, ``G_loss``, ``G_abs``, ``viscosity``..."""
    from .pipeline import derive as _derive

    return _derive(results, name)


def report(results, outdir, **options):
    """Figures, CSV tables and a self-contained HTML page for a results Dataset."""
    from .reporting import report as _report

    return _report(results, outdir, **options)
