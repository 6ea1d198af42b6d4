"""The test every registered reader must pass (the afmformats ``tests/test_fmt.py`` idea).

Parametrized over every built-in plugin that implements ``nrm_read`` and its example files in
``../shared/data/real/<vendor>/`` (the storage plugin reads files it wrote itself).  For each file:
``nrm.open`` works (the JPK calibration file with its missing-metadata warning), the reader chosen is
that plugin, the model is valid (``nrm_plugins.model.validate`` and the contract checker), every variable
has units, no ramp is zero-filled, the ramp coordinates are present and a piezo is in m.  Bad files
(empty, random bytes, truncated copies) raise ``nrm_plugins.ReaderError`` naming the file.

A vendor plugin registered without an ``nrm_read`` hook yet is reported as skipped ("reader not
implemented yet") so this module picks up readers as they land.
"""
from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import nrm_plugins as nrm
from nrm_plugins.model import RAMP_COORDS, RAMP_COORD_UNITS, ROLES, ramps_dataset, validate
from nrm_plugins.plugins import get_plugin_manager

from conftest import REAL, SHARED

#: Reader plugin -> its folder of example files in shared/data/real.
VENDOR_FOLDERS = {"nanonis": "nanonis", "bruker": "bruker", "park": "park", "jpk": "jpk", "igor": "asylum",
                  "gwyddion": "gwyddion"}
#: Files that must open with a warning about missing calibration metadata (and fail with strict=True).
MISSING_METADATA = {"jpk/fmt-jpk-cl_calibration_force-save-2015.02.04-11.25.21.294.jpk-force"}
MISSING_METADATA_WORDS = re.compile(r"spring|sensitiv|calibrat|missing", re.IGNORECASE)


def _wrapped_crash(exc: nrm.ReaderError) -> bool:
    """True when the plugin manager wrapped an unexpected exception of the reader (a reader bug)."""
    return bool(re.match(r"the '[^']+' reader failed: ", exc.problem))


def _reader_plugins() -> dict[str, bool]:
    """Built-in reader plugins: name -> whether it implements nrm_read."""
    manager = get_plugin_manager()
    out = {}
    for info in manager.plugins():
        if not info.builtin:
            continue
        if "nrm_read" in info.hooks or info.name in VENDOR_FOLDERS:
            out[info.name] = "nrm_read" in info.hooks
    return out


def _cases():
    cases = []
    for name, implemented in sorted(_reader_plugins().items()):
        if name == "storage":
            continue  # tested with files it writes itself, below
        folder = VENDOR_FOLDERS.get(name)
        if folder is None:
            cases.append(pytest.param(name, None, id=f"{name}/(no example folder)"))
            continue
        files = sorted(p for p in (REAL / folder).glob("*") if p.is_file()) if REAL.is_dir() else []
        marks = [] if implemented else [pytest.mark.skip(reason="reader not implemented yet")]
        if not REAL.is_dir():
            marks = [pytest.mark.skip(reason=f"shared real-data folder {REAL} is absent")]
            files = [None]
        for path in files:
            rel = f"{folder}/{path.name}" if path else f"{folder}/(absent)"
            cases.append(pytest.param(name, path, id=rel, marks=marks))
    return cases


CASES = _cases()


def _open_checked(path: Path):
    """Open with warnings recorded; returns (dataset, warning messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = nrm.open(path)
    return ds, [str(w.message) for w in caught]


def _load_contract_checker():
    path = SHARED / "tools" / "check_contracts.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("check_contracts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONTRACTS = _load_contract_checker()


def assert_valid_model(ds, source: str) -> None:
    """Every check a reader's output must pass (also used by the fuzz test)."""
    roles = [r for r in ROLES if r in ds.data_vars]
    validate(ds, require=roles, source=source)
    if CONTRACTS is not None:
        problems = CONTRACTS.check_model(ds)
        assert not problems, f"{source}: contract problems {problems}"
    for name, var in ds.data_vars.items():
        units = var.attrs.get("units")
        assert isinstance(units, str) and units.strip(), f"{source}: variable '{name}' has no units"
    if "piezo" in ds:
        assert ds["piezo"].attrs["units"] == "m"
    if "ramp" not in ds.dims:
        return
    for coord in RAMP_COORDS:
        assert coord in ds.coords and ds[coord].dims == ("ramp",), f"{source}: ramp coordinate '{coord}' missing"
        if coord in RAMP_COORD_UNITS:
            assert ds[coord].attrs.get("units") == RAMP_COORD_UNITS[coord]
    ramp_vars = [v for v in ds.data_vars if ds[v].dims == ("ramp", "sample")]
    assert ramp_vars, f"{source}: dims ramp/sample but no ramp variable"
    has_data = np.zeros(ds.sizes["ramp"], bool)
    for v in ramp_vars:
        values = np.asarray(ds[v].values, dtype=float)
        has_data |= (np.isfinite(values) & (values != 0)).any(axis=1)
    empty = np.flatnonzero(~has_data)
    assert not empty.size, (f"{source}: {empty.size} ramp(s) with no finite non-zero value in any channel "
                            f"(zero-filled or empty), first: {empty[:5].tolist()}")


# ---------------------------------------------------------------------------------------------- real files
@pytest.mark.parametrize("reader, path", CASES)
def test_reader_opens_its_example_files(reader, path):
    assert path is not None, f"reader '{reader}' has no example folder: add it to VENDOR_FOLDERS"
    rel = f"{path.parent.name}/{path.name}"
    ds, messages = _open_checked(path)
    if rel in MISSING_METADATA:
        assert any(MISSING_METADATA_WORDS.search(m) for m in messages), \
            f"{rel}: expected a missing-calibration warning, got {messages}"
        with pytest.raises(nrm.ReaderError, match=re.escape(path.name)):
            nrm.open(path, strict=True)
    assert ds.attrs.get("reader") == reader, f"{rel}: read by '{ds.attrs.get('reader')}', expected '{reader}'"
    assert get_plugin_manager().identify(path)[0][1] == reader
    assert_valid_model(ds, rel)


@pytest.mark.parametrize("reader, path", CASES)
def test_bad_files_raise_reader_error_naming_the_file(reader, path, tmp_path):
    assert path is not None, f"reader '{reader}' has no example folder: add it to VENDOR_FOLDERS"
    data = path.read_bytes()
    rng = np.random.default_rng(len(data))
    bad = {
        "empty": b"",
        "random": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "half": data[: len(data) // 2],
        "tenth": data[: len(data) // 10],
    }
    for kind, content in bad.items():
        target = tmp_path / f"{kind}_{path.name}"
        target.write_bytes(content)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ds = nrm.open(target)
            except nrm.ReaderError as exc:
                assert target.name in str(exc), f"{kind}: the message does not name the file: {exc}"
                assert not _wrapped_crash(exc), f"{kind} copy of {path.name}: the reader crashed: {exc}"
                continue
        # a reader may accept an incomplete file (e.g. an unfinished Nanonis grid) only if it says so
        assert kind in ("half", "tenth"), f"{kind} copy of {path.name} was read without an error"
        assert caught, f"{kind} copy of {path.name}: truncated file read without an error or a warning"
        assert_valid_model(ds, f"{kind} copy of {path.name}")


# ---------------------------------------------------------------------------------------------- storage
def _small_model():
    rng = np.random.default_rng(1)
    piezo = np.tile(np.linspace(100e-9, 0, 50), (3, 1))
    deflection = np.maximum(0, 20e-9 - piezo) * 0.05 + rng.normal(0, 1e-4, piezo.shape)
    return ramps_dataset({"piezo": (piezo, "m", "Z"), "deflection": (deflection, "V", "Defl")},
                         coords={"direction": ["approach", "retract", "approach"], "x": [0.0, 1e-7, 2e-7]},
                         attrs={"spring_constant": 0.5},
                         images={"topography": (rng.normal(size=(4, 5)), "m", "Height", {"x_real": 1e-6})})


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_storage_reads_what_it_writes(tmp_path, suffix):
    ds = _small_model()
    path = nrm.save(ds, tmp_path / f"model{suffix}")
    back, _ = _open_checked(path)
    assert back.attrs["reader"] == "storage"
    assert_valid_model(back, path.name)
    np.testing.assert_array_equal(back["deflection"].values, ds["deflection"].values)


def test_storage_bad_files(tmp_path):
    data = nrm.save(_small_model(), tmp_path / "good.nc").read_bytes()
    for kind, content in {"empty": b"", "random": bytes(range(256)) * 8, "half": data[: len(data) // 2]}.items():
        target = tmp_path / f"{kind}.nc"
        target.write_bytes(content)
        with pytest.raises(nrm.ReaderError, match=re.escape(target.name)):
            nrm.open(target)
