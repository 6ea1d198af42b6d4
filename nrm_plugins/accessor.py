"""``ds.nrm``: the toolkit as an xarray accessor, so code reads like the physics.

>>> ds = nrm.open("grid.3ds")
>>> ds.nrm.roles                        # ['piezo', 'deflection', 'lateral_x', 'lateral_y']
>>> ds = ds.nrm.assign_roles({"lateral_x": "Input 3 (V)"})
>>> results = ds.nrm.process("calibration.toml", windows=[[1.5, 2.0]])
>>> results.nrm.derive("viscosity")     # Pa s, Eq. 7
>>> results.nrm.save("results.nc")
"""
from __future__ import annotations

import xarray as xr

from . import model


@xr.register_dataset_accessor("nrm")
class NRMAccessor:
    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    @property
    def roles(self) -> list[str]:
        """The roles (DESIGN §3) this dataset holds."""
        return [r for r in model.ROLES if r in self._ds.data_vars]

    def validate(self, require=()) -> xr.Dataset:
        """:func:`nrm_plugins.model.validate`: raises ModelError naming missing roles."""
        return model.validate(self._ds, require)

    def assign_roles(self, mapping) -> xr.Dataset:
        """:func:`nrm_plugins.model.assign_roles`: ``{"deflection": "Input 2 (V)", ...}``."""
        return model.assign_roles(self._ds, mapping)

    def describe(self) -> dict:
        return model.describe(self._ds)

    def process(self, calibration=None, **options) -> xr.Dataset:
        """Run the 1D-NRM pipeline on these ramps (see :func:`nrm_plugins.process`)."""
        from .pipeline import process

        return process(self._ds, calibration, **options)

    def derive(self, name: str) -> xr.DataArray:
        """A results quantity computed on demand: S_*, G_*, G_abs, viscosity (DESIGN §3)."""
        from .pipeline import derive

        return derive(self._ds, name)

    def report(self, outdir, **options):
        """The Fig.-4 report of a results dataset (see :func:`nrm_plugins.report`)."""
        from .reporting import report

        return report(self._ds, outdir, **options)

    def save(self, path, format=None, **options):
        """Write with the writer chosen by ``format`` or the suffix (.nc, .zarr, .3ds...)."""
        from .plugins import get_plugin_manager

        return get_plugin_manager().write(self._ds, path, format, options)
