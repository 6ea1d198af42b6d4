"""Hook specifications of nrm-plugins (DESIGN.md §2), in the style of pytest's ``hookspec.py``.

A plugin is any module or object with functions decorated by :data:`hookimpl` whose names are the hooks
below; it is registered by an entry point in the group ``nrm_plugins``::

    [project.entry-points.nrm_plugins]
    myvendor = "myvendor_nrm.reader"

The built-in readers, writers and methods are registered through that same group, so they use exactly
the path a third party uses.  Every hook is optional: a plugin implements the ones it needs.

Readers
    The plugin manager calls :func:`nrm_read_identify` on **every** reader, picks the highest score and
    then calls :func:`nrm_read` of **that** plugin only.
Writers
    :func:`nrm_write_formats` announces formats; :func:`nrm_write` of the plugin that announced the
    requested format is called.
Processing
    :func:`nrm_contact_methods`, :func:`nrm_derivative_methods` and :func:`nrm_analyses` return
    self-describing method objects (see :mod:`nrm_plugins.methods`).
Hardware
    :func:`nrm_hw_sources` returns sources that acquire ramps into the common model.
"""
from __future__ import annotations

import pluggy

PROJECT = "nrm_plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorator for hook implementations in plugins: ``@hookimpl def nrm_read(path, options): ...``
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------------------------------------- readers
@hookspec
def nrm_read_identify(path, head: bytes) -> int | None:
    """Score how well this reader understands the file ``path``.

    :param path: :class:`pathlib.Path` of the file (or folder, e.g. a Zarr store).
    :param head: the first 4096 bytes of the file (``b""`` for a folder).
    :return: ``None`` (or 0) when the file is not for this reader; otherwise a score, higher = more
        certain.  Conventions: 100 = magic bytes / a header signature that cannot be anything else;
        50 = a structural match of the header; 10 = the file suffix only.

    Decide by content (like Gwyddion's detect functions), never raise: an exception here is reported
    and the reader is skipped for this file.
    """


@hookspec
def nrm_read(path, options: dict):
    """Read ``path`` into the common model (DESIGN.md §3), an :class:`xarray.Dataset`.

    Called only on the plugin that gave the highest :func:`nrm_read_identify` score.

    :param path: :class:`pathlib.Path`.
    :param options: reader options.  Keys every reader understands: ``strict`` (bool, missing
        calibration metadata is an error instead of a warning).  Role overrides (``channels``) are
        applied by the core after the read, so readers need not handle them.
    :raises nrm_plugins.ReaderError: naming the file and the problem, for anything unreadable.
    """


# ---------------------------------------------------------------------------------------------- writers
@hookspec
def nrm_write_formats() -> list[dict]:
    """Formats this plugin writes: a list of ``{"name": "nanonis-3ds", "suffixes": [".3ds"],
    "description": "..."}``.  The manager chooses a writer by ``--to NAME`` or by the suffix."""


@hookspec
def nrm_write(dataset, path, format: str, options: dict):
    """Write ``dataset`` to ``path`` in ``format`` (one of this plugin's :func:`nrm_write_formats`).

    Only the plugin that announced ``format`` is called.
    :raises nrm_plugins.WriterError: when the dataset cannot be represented in the format.
    """


# ---------------------------------------------------------------------------------------------- hardware
@hookspec
def nrm_hw_sources() -> list:
    """Hardware sources (instruments or their simulated twins): objects with ``name``, ``title``,
    ``open(**settings)`` and ``simulated`` (bool)."""


# ---------------------------------------------------------------------------------------------- processing
@hookspec
def nrm_contact_methods() -> list:
    """Contact-point methods: :class:`nrm_plugins.methods.Method` objects whose ``function`` maps a
    batch of ramps to contact positions, uncertainties and flags (see :mod:`nrm_plugins.pipeline`)."""


@hookspec
def nrm_derivative_methods() -> list:
    """Depth-derivative methods: :class:`nrm_plugins.methods.Method` objects whose ``function`` returns
    ``dF*/dz_p`` of a batch of ramps on the common depth grid."""


@hookspec
def nrm_analyses() -> list:
    """Further analyses (per-ramp or per-window statistics): :class:`nrm_plugins.methods.Method`
    objects."""
