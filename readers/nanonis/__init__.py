"""Nanonis reader and ``.3ds`` writer plugin (built-in, registered through the ``nrm_plugins`` entry points).

Reads (chosen by content, see :func:`kind_of`):

* ``.3ds`` grid spectroscopy → ramps (:mod:`.grid`; lazy, each point's own sweep axis),
* ``.dat`` point spectroscopy → ramps (:mod:`.spectrum`),
* ``.sxm`` images → images (:mod:`.image`).

Writes the format ``nanonis-3ds`` (:mod:`.write3ds`).  Roles: :mod:`.roles`.
"""
from __future__ import annotations

from pathlib import Path

from nrm_plugins.errors import ReaderError
from nrm_plugins.hookspecs import hookimpl

#: identify scores (hookspecs conventions)
CONTENT_SCORE = 100
SUFFIX_SCORE = 10
_SUFFIX_KIND = {".3ds": "grid", ".dat": "spectrum", ".sxm": "image"}
_BOM = b"\xef\xbb\xbf"
#: a .dat header is searched this far for its ``[DATA]`` line
_DAT_HEADER_LIMIT = 1 << 20


def kind_of(path, head: bytes) -> str | None:
    """``"grid"``, ``"spectrum"`` or ``"image"`` when the content is a Nanonis file, else None.

    ``.3ds``: starts with ``Grid dim=`` or holds ``:HEADER_END:``; ``.sxm``: starts with
    ``:NANONIS_VERSION:``; ``.dat``: the first line (after an optional UTF-8 BOM) starts with
    ``Experiment<TAB>`` and a ``[DATA]`` line follows.
    """
    text = head[len(_BOM):] if head.startswith(_BOM) else head
    if text.startswith(b":NANONIS_VERSION:"):
        return "image"
    if text.startswith(b"Grid dim=") or b"\n:HEADER_END:" in head:
        return "grid"
    if text.startswith(b"Experiment\t"):
        if b"[DATA]" in head:
            return "spectrum"
        try:
            with open(path, "rb") as fh:
                if b"[DATA]" in fh.read(_DAT_HEADER_LIMIT):
                    return "spectrum"
        except OSError:
            return None
    return None


@hookimpl
def nrm_read_identify(path, head):
    path = Path(path)
    if path.is_dir():
        return None
    if kind_of(path, head):
        return CONTENT_SCORE
    if path.suffix.lower() in _SUFFIX_KIND:
        return SUFFIX_SCORE
    return None


@hookimpl
def nrm_read(path, options):
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(4096)
    kind = kind_of(path, head) or _SUFFIX_KIND.get(path.suffix.lower())
    if kind == "grid":
        from .grid import read_grid

        return read_grid(path, options)
    if kind == "spectrum":
        from .spectrum import read_spectrum

        return read_spectrum(path, options)
    if kind == "image":
        from .image import read_image

        return read_image(path, options)
    raise ReaderError(path, "not a Nanonis file (no grid, spectrum or image header)")


@hookimpl
def nrm_write_formats():
    return [{"name": "nanonis-3ds", "suffixes": [".3ds"],
             "description": "Nanonis grid spectroscopy (one point per ramp or per approach/retract pair)"}]


@hookimpl
def nrm_write(dataset, path, format, options):
    from .write3ds import write_grid

    write_grid(dataset, Path(path), options)
