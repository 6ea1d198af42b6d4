"""Gwyddion ``.gwy`` reader plugin: curve maps, graphs, spectra and images into the common model.

Detection by content: the magic bytes ``GWYP`` (Gwyddion 2) or ``GWYO`` (Gwyddion 1) score 100; a
``.gwy`` suffix with other bytes scores 10, so that the user gets this reader's error message.
The file is parsed by :mod:`.serialization` (bounded: a corrupted size never allocates more than the
file holds) and converted by :mod:`.objects`; ``docs/readers/gwyddion.md`` documents the layout and
the piezo normalisation rule.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from nrm_plugins.errors import ReaderError
from nrm_plugins.hookspecs import hookimpl
from nrm_plugins.model import ramps_dataset, sanitize

from .objects import GwyContentError, RampSet, read_graphs, read_image, read_lawn, read_spectra, warn_notes
from .serialization import MAGIC_NEW, MAGIC_OLD, GwyFormatError, loads

#: Output values (float64) allowed per byte of input, and at least this many: a guard against
#: absurd NaN padding from a corrupted file (a real file needs about 1/8 value per byte).
VALUES_PER_BYTE = 8
MIN_VALUES = 1 << 24

_IMAGE_KEY = re.compile(r"^/(\d+)/data$")
_SPRING = re.compile(r"spring\s*const", re.IGNORECASE)


def _natural(key: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def _merge(sets: list[RampSet], max_values: int) -> tuple[dict, dict]:
    """Concatenate ramp sets along ``ramp`` (channels a set lacks are NaN there, lengths NaN-padded)."""
    sets = [s for s in sets if s.n_ramps]
    if len(sets) == 1:
        s = sets[0]
        return s.channels, {"x": s.x, "y": s.y, "direction": s.direction}
    n_ramps = sum(s.n_ramps for s in sets)
    n_samples = max(next(iter(s.channels.values()))[0].shape[1] for s in sets)
    n_channels = len({name for s in sets for name in s.channels})
    if n_ramps * n_samples * n_channels > max_values:
        raise GwyContentError("(all ramps)", f"{n_ramps} ramps x {n_samples} samples x {n_channels} channels "
                                             f"would need {n_ramps * n_samples * n_channels * 8 / 1e9:.1f} GB")
    channels: dict = {}
    start = 0
    for s in sets:
        for name, (data, units, long_name, attrs) in s.channels.items():
            target = name
            if name in channels and channels[name][1] != units:
                target = f"{name}_{sanitize(units)}"
            if target not in channels:
                channels[target] = (np.full((n_ramps, n_samples), np.nan), units, long_name, attrs)
            channels[target][0][start:start + s.n_ramps, :data.shape[1]] = data
        start += s.n_ramps
    coords = {k: np.concatenate([getattr(s, k) for s in sets]) for k in ("x", "y", "direction")}
    return channels, coords


def _metadata(root) -> tuple[dict, dict]:
    """``vendor_header`` (every text item, metadata container and log) and the known instrument values."""
    header, known = {}, {}
    for key, value in root.items():
        name = getattr(value, "name", None)
        if isinstance(value, str):
            header[key] = value
        elif name == "GwyContainer" and key.endswith("/meta"):
            header[key] = {k: str(v) for k, v in value.items() if isinstance(v, (str, int, float))}
            for k, v in header[key].items():
                match = re.match(r"\s*([-+0-9.eE]+)\s*(N/m)?\s*$", v)
                if _SPRING.search(k) and match and "spring_constant" not in known:
                    known["spring_constant"] = float(match.group(1))
        elif name == "GwyStringList":
            header[key] = [str(s) for s in value.get("strings", [])]
    return header, known


def read_gwy(path, options: dict | None = None):
    """Read a ``.gwy`` file into the common model (see the module and :mod:`.objects` docstrings)."""
    path = Path(path)
    data = path.read_bytes()
    max_values = max(MIN_VALUES, VALUES_PER_BYTE * len(data))
    try:
        root = loads(data)
        if root.name != "GwyContainer":
            raise GwyFormatError(4, f"the top-level object is a {root.name}, not a GwyContainer")
        lawns, graphs, spectra, images, skipped = [], [], [], {}, []
        for key in sorted(root, key=_natural):
            value = root[key]
            kind = getattr(value, "name", None)
            if kind == "GwyLawn":
                lawns.append(read_lawn(key, value, max_values))
            elif kind == "GwyGraphModel":
                graphs.append((key, value))
            elif kind == "GwySpectra":
                spectra.append((key, value))
            elif kind == "GwyDataField" and _IMAGE_KEY.match(key):
                title = root.get(f"{key}/title")
                images[key] = read_image(key, value, title if isinstance(title, str) else None)
            elif kind not in (None, "GwyContainer", "GwyStringList"):
                skipped.append(f"{key} ({kind})")
        sets = lawns + [read_graphs(graphs, max_values), read_spectra(spectra, max_values)]
    except (GwyFormatError, GwyContentError) as exc:
        raise ReaderError(path, f"not a readable Gwyddion file: {exc}") from None
    notes = [n for s in sets for n in s.notes]
    if not any(s.n_ramps for s in sets) and not images:
        raise ReaderError(path, "no curve map, graph, spectra or image in this Gwyddion file"
                                + (f" (only {', '.join(skipped)})" if skipped else ""))
    header, known = _metadata(root)
    attrs = {
        "vendor": "Gwyddion", "file_format": f"gwy ({'GWYP' if data[:4] == MAGIC_NEW else 'GWYO'})",
        "source_file": path.name, **known, "vendor_header": header,
        "gwy_objects_not_read": skipped, "reader_notes": notes,
    }
    image_vars, taken = {}, set()
    for key, (array, units, long_name, extra) in images.items():
        name = sanitize(long_name) if long_name != key else f"image_{_IMAGE_KEY.match(key).group(1)}"
        while name in taken:
            name += "_2"
        taken.add(name)
        image_vars[name] = (array, units, long_name, extra)
    try:
        channels, coords = _merge(sets, max_values) if any(s.n_ramps for s in sets) else ({}, {})
    except GwyContentError as exc:
        raise ReaderError(path, f"not a readable Gwyddion file: {exc}") from None
    ramp_vars, extra_attrs = {}, {}
    for name, (array, units, long_name, var_attrs) in channels.items():
        if name in taken:
            name = f"{name}_ramp"
        ramp_vars[name] = (array, units, long_name)
        extra_attrs[name] = var_attrs
    if coords:
        coords["source"] = np.full(len(coords["direction"]), path.name, dtype=object)
    ds = ramps_dataset(ramp_vars, coords or None, attrs, image_vars)
    for name, var_attrs in extra_attrs.items():
        ds[name].attrs.update(var_attrs)
    warn_notes(notes, path)
    return ds


# ---------------------------------------------------------------------------------------------- hooks
@hookimpl
def nrm_read_identify(path, head):
    if head[:4] in (MAGIC_NEW, MAGIC_OLD):
        return 100
    if Path(path).suffix.lower() == ".gwy":
        return 10
    return None


@hookimpl
def nrm_read(path, options):
    return read_gwy(path, options)
