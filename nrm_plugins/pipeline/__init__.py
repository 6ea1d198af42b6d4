"""The 1D-NRM pipeline: calibration → contact point → depth → derivative → moduli → statistics.

>>> import nrm_plugins as nrm
>>> results = nrm.process(ds, "calibration.toml", windows=[[1.5, 2.0], [1.0, 1.5]])
>>> nrm.derive(results, "G_abs")

Modules: :mod:`.lateral` (X, Y → F*), :mod:`.contact` (two-line contact point), :mod:`.derivative`
(resampling and local-polynomial derivative), :mod:`.moduli` (E*, derived quantities, corrections),
:mod:`.thickness` (SEI thickness), :mod:`.statistics` (windows, CIs, KDE), :mod:`.methods` (the plugin
registering the methods), :mod:`.process` (orchestration).  See docs/pipeline.md.
"""
from .process import derive, process

__all__ = ["process", "derive"]
