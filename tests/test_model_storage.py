"""Common model helpers and native NetCDF/Zarr storage round trips (DESIGN.md §3)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

import nrm_plugins as nrm
from nrm_plugins.model import assign_roles, describe, ramps_dataset, sanitize, validate

from conftest import SHARED


def make_model(n_ramps=3, n_samples=5):
    rng = np.random.default_rng(1)
    piezo = np.linspace(100e-9, 0, n_samples)[None, :] + rng.normal(0, 1e-9, (n_ramps, 1))
    defl = rng.normal(0, 0.01, (n_ramps, n_samples))
    defl[1, 3:] = np.nan  # a shorter ramp, NaN-padded
    lx = rng.normal(0, 1, (n_ramps, n_samples)).astype(np.float32)
    return ramps_dataset(
        {"piezo": (piezo, "m", "Z (m)"), "deflection": (defl, "V", "Input 2 (V)"),
         "Input_3": (lx, "V", "Input 3 (V)"), "Input_4": (lx * 2, "V", "Input 4 (V)")},
        coords={"x": np.arange(n_ramps) * 20e-9, "time": np.arange(n_ramps) * 1.5,
                "direction": np.array(["approach", "retract", "approach"], dtype=object), "source": "a.3ds"},
        attrs={"spring_constant": 0.5, "lockin_sensitivity": 0.05, "complete": True, "comment": None,
               "vendor_header": {"Grid dim": "3 x 1", "Sweep Signal": "Z (m)", "nested": {"a": [1, 2]}},
               "json_looking": "json:not really"},
        images={"topography": (np.arange(12.0).reshape(3, 4), "m", "Z", {"x_real": 1e-6, "y_real": 7.5e-7,
                                                                         "x_offset": 0.0, "y_offset": 0.0})},
    )


def test_sanitize_vendor_names():
    assert sanitize("LI Demod 1 X (V)") == "LI_Demod_1_X"
    assert sanitize("Current [bwd] (A)") == "Current_bwd"
    assert sanitize("Z (m)") == "Z"
    assert sanitize("piezo") == "ch_piezo"  # a vendor channel never takes a role name by accident


def test_ramps_dataset_fills_every_ramp_coordinate():
    ds = make_model()
    for c, fill in [("y", np.nan), ("potential", np.nan)]:
        assert np.isnan(ds[c].values).all()
    np.testing.assert_array_equal(ds["index"].values, [0, 1, 2])
    assert ds["time"].attrs["units"] == "s" and ds["x"].attrs["units"] == "m"
    assert list(ds["source"].values) == ["a.3ds"] * 3
    assert ds["topography"].dims == ("row", "col")


def test_validate_names_missing_roles_and_lists_channels():
    ds = make_model()
    validate(ds, require=["piezo", "deflection"])
    with pytest.raises(nrm.ModelError) as err:
        validate(ds, require=["piezo", "lateral_x", "lateral_y"])
    msg = str(err.value)
    assert "lateral_x" in msg and "lateral_y" in msg and "Input 3 (V)" in msg and "[channels]" in msg
    bad = ds.copy()
    bad["piezo"].attrs["units"] = "nm"
    with pytest.raises(nrm.ModelError, match="'piezo' has units 'nm'"):
        validate(bad, require=["piezo"])


def test_assign_roles_by_vendor_name_and_back():
    ds = make_model()
    out = assign_roles(ds, {"lateral_x": "Input 3 (V)", "lateral_y": "Input 4 (V)"})
    np.testing.assert_array_equal(out["lateral_y"].values, ds["Input_4"].values)
    assert out["lateral_x"].attrs["long_name"] == "Input 3 (V)"
    # reassigning the deflection role sends the old deflection back to its vendor name
    out2 = assign_roles(ds, {"deflection": "Input 3 (V)"})
    np.testing.assert_array_equal(out2["deflection"].values, ds["Input_3"].values)
    np.testing.assert_array_equal(out2["Input_2"].values, ds["deflection"].values)
    with pytest.raises(nrm.ModelError, match=r"no such channel.*Input 2 \(V\)"):
        assign_roles(ds, {"deflection": "Input 9 (V)"})
    with pytest.raises(nrm.ModelError, match="unknown role"):
        assign_roles(ds, {"friction": "Input 3 (V)"})


def test_describe_counts_directions_and_roles():
    d = describe(make_model())
    assert d["ramps"] == 3 and d["samples"] == 5
    assert d["directions"] == {"approach": 2, "retract": 1}
    assert d["roles"] == ["piezo", "deflection"]


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_native_round_trip_preserves_everything(tmp_path, suffix):
    ds = make_model()
    path = tmp_path / f"model{suffix}"
    nrm.save(ds, path)
    back = nrm.open(path).load()
    xr.testing.assert_identical(back.drop_attrs(deep=False), ds.drop_attrs(deep=False))
    for name in ds.variables:
        assert back[name].attrs == ds[name].attrs, name
    attrs = dict(back.attrs)
    assert attrs.pop("reader") == "storage"
    assert attrs == ds.attrs
    assert back["Input_3"].dtype == np.float32
    assert np.isnan(back["deflection"].values[1, 3:]).all()


def test_written_model_passes_the_contract_checker(tmp_path):
    checker = SHARED / "tools" / "check_contracts.py"
    if not checker.exists():
        pytest.skip(f"contract checker {checker} absent (../shared not beside the project)")
    path = tmp_path / "model.nc"
    nrm.save(make_model(), path)
    out = subprocess.run([sys.executable, str(checker), "model", str(path)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout


def test_writer_by_unknown_suffix_is_a_clear_error(tmp_path):
    with pytest.raises(nrm.WriterError, match=r"no writer for the suffix '\.xyz'"):
        nrm.save(make_model(), tmp_path / "out.xyz")


def test_accessor_reads_like_the_api(tmp_path):
    ds = make_model()
    assert ds.nrm.roles == ["piezo", "deflection"]
    out = ds.nrm.assign_roles({"lateral_x": "Input 3 (V)", "lateral_y": "Input 4 (V)"})
    assert out.nrm.roles == ["piezo", "deflection", "lateral_x", "lateral_y"]
    with pytest.raises(nrm.ModelError, match="lateral_x"):
        ds.nrm.validate(["lateral_x"])
    out.nrm.save(tmp_path / "a.nc")
    np.testing.assert_array_equal(nrm.open(tmp_path / "a.nc")["lateral_y"].values, ds["Input_4"].values)
