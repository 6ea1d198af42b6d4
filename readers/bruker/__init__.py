"""Bruker NanoScope reader plugin: ``.spm`` / ``.pfc`` / ``.000``… force curves, force volume, scripted
ramps and images (header versions 0x0815–0x0960 tested).  See ``docs/readers/bruker.md``.

Modules: :mod:`.header` (CIAO text header), :mod:`.scaling` (LSB → V → physical), :mod:`.force`
(segments, data blocks, nominal piezo), :mod:`.images`, :mod:`.reader` (the common model).
"""
from __future__ import annotations

from pathlib import Path

from ...hookspecs import hookimpl
from .reader import identify, read_nanoscope

__all__ = ["nrm_read_identify", "nrm_read", "read_nanoscope"]


@hookimpl
def nrm_read_identify(path, head):
    """100 when the file starts with ``\\*Force file list`` / ``\\*File list``; 10 for the suffix alone."""
    return identify(Path(path), head or b"")


@hookimpl
def nrm_read(path, options):
    return read_nanoscope(path, options)
