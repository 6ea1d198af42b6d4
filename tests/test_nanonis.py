"""Nanonis .3ds grids: reader against nanonispy and an independent numpy decode, per-point sweep axes,
roles, bad input, the .3ds writer (round trips, nanonispy reads it) and the CLI on real files."""
from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import nrm_plugins as nrm
from nrm_plugins.model import ramps_dataset
from nrm_plugins.readers import nanonis
from nrm_plugins.readers.nanonis.grid import ChannelArray

from conftest import ROOT, SHARED, real_file

nap = pytest.importorskip("nanonispy")

GRIDS = ["Grid_Spectroscopy006.3ds", "Grid_Spectroscopy002.3ds", "NanonisReader_STS_grid_lockin.3ds"]
#: nanonispy insists on keys this old header lacks; the values do not matter for the data
NANONISPY_OVERRIDE = {"Delay before measuring (s)": "0", "Start time": "", "End time": "", "Comment": ""}
CHECKER = SHARED / "tools" / "check_contracts.py"


def open_quietly(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nrm.open(path, **kwargs)


def decode_3ds(path):
    """Independent decode of the documented layout: header dict, params (P, N), channels (P, C, M)."""
    raw = Path(path).read_bytes()
    end = raw.index(b":HEADER_END:\r\n")
    header = dict(line.split("=", 1) for line in raw[:end].decode("latin-1").split("\r\n") if "=" in line)
    header = {k: v.strip('"') for k, v in header.items()}
    n_params, n_samples = int(header["# Parameters (4 byte)"]), int(header["Points"])
    channels = header["Channels"].split(";")
    data = np.frombuffer(raw[end + 14:], dtype=">f4")
    record = n_params + n_samples * len(channels)
    data = data[: len(data) // record * record].reshape(-1, record)
    return header, data[:, :n_params], data[:, n_params:].reshape(len(data), len(channels), n_samples), channels


def nanonispy_grid(path):
    return nap.read.Grid(str(path), header_override=NANONISPY_OVERRIDE)


# ---------------------------------------------------------------------------------------------- real grids
@pytest.mark.parametrize("name", GRIDS)
def test_grid_matches_nanonispy(name):
    path = real_file(f"nanonis/{name}")
    ds = open_quietly(path)
    grid = nanonispy_grid(path)
    header, params, _, channels = decode_3ds(path)
    n_points = params.shape[0]
    n_dirs = 2 if any("[bwd]" in c for c in channels) else 1
    assert ds.sizes == {"ramp": n_points * n_dirs, "sample": int(header["Points"])}
    by_long_name = {ds[v].attrs["long_name"]: v for v in ds.data_vars if ds[v].dims == ("ramp", "sample")}
    forward_names = [c for c in channels if "[bwd]" not in c]
    assert set(forward_names) <= set(by_long_name)  # every vendor channel kept, under its vendor name
    for channel in channels:
        backward = "[bwd]" in channel
        fwd_name = channel.replace(" [bwd]", "")
        var = ds[by_long_name[fwd_name]]
        assert var.attrs["units"] == fwd_name[fwd_name.rindex("(") + 1: -1]
        theirs = grid.signals[channel].reshape(-1, grid.header["num_sweep_signal"])[:n_points]
        ours = var.values[1::2] if backward else var.values[::n_dirs]
        if backward:  # stored in sweep order; our ramps are in time order
            ours = ours[:, ::-1]
        np.testing.assert_array_equal(ours, theirs, err_msg=channel)
    # nanonispy's one sweep axis (point 0's) equals our axis of point 0 (to float32 precision)
    axis = ds["piezo" if "piezo" in ds else "sweep"].values[0]
    span = abs(axis[-1] - axis[0])
    np.testing.assert_allclose(axis, grid.signals["sweep_signal"], rtol=0, atol=1e-6 * span)
    their_params = grid.signals["params"].reshape(-1, params.shape[1])[:n_points]
    np.testing.assert_array_equal(ds["x"].values[::n_dirs], their_params[:, 2])


@pytest.mark.parametrize("name", GRIDS)
def test_grid_per_point_axes_and_coords_from_the_raw_records(name):
    path = real_file(f"nanonis/{name}")
    ds = open_quietly(path)
    header, params, _, channels = decode_3ds(path)
    names = (header["Fixed parameters"] + ";" + header["Experiment parameters"]).split(";")
    n_dirs = ds.sizes["ramp"] // len(params)
    n = int(header["Points"])
    expected = params[:, 0:1].astype(float) + (params[:, 1:2].astype(float) - params[:, 0:1]) * np.arange(n) / (n - 1)
    axis = ds["piezo" if header["Sweep Signal"] == "Z (m)" else "sweep"]
    np.testing.assert_allclose(axis.values[::n_dirs], expected, rtol=1e-6)
    if n_dirs == 2:
        np.testing.assert_array_equal(axis.values[1::2], axis.values[0::2][:, ::-1])
    np.testing.assert_array_equal(ds["x"].values[::n_dirs], params[:, names.index("X (m)")])
    np.testing.assert_array_equal(ds["y"].values[::n_dirs], params[:, names.index("Y (m)")])
    np.testing.assert_array_equal(ds["index"].values[::n_dirs], np.arange(len(params)))
    assert np.isnan(ds["time"].values).all() and np.isnan(ds["potential"].values).all()  # not in these files
    # every other per-point parameter is a ramp variable with its unit
    z = ds["param_Z"]
    assert z.attrs["units"] == "m" and z.attrs["long_name"] == "Z (m)"
    np.testing.assert_array_equal(z.values[::n_dirs], params[:, names.index("Z (m)")])
    assert ds.attrs["vendor_header"]["Grid dim"] == header["Grid dim"]


def test_z_grid_roles_directions_and_lockin_metadata():
    ds = open_quietly(real_file("nanonis/Grid_Spectroscopy006.3ds"))
    assert ds.attrs["sweep_signal"] == "Z (m)" and ds["piezo"].attrs["units"] == "m"
    assert "sweep" not in ds
    # Sweep Start 200 pm > Sweep End -800 pm: forward = approach, backward = retract, interleaved
    assert list(ds["direction"].values[:4]) == ["approach", "retract", "approach", "retract"]
    np.testing.assert_allclose(ds["piezo"].values[0, [0, -1]], [200e-12, -800e-12], rtol=1e-6)
    np.testing.assert_allclose(ds["piezo"].values[1, [0, -1]], [-800e-12, 200e-12], rtol=1e-6)
    # the measured Z channel follows the axis + the point's Z-controller position (the "relative" note)
    np.testing.assert_allclose(ds["Z"].values[0, :50], ds["piezo"].values[0, :50] + ds["param_Z"].values[0],
                               rtol=0, atol=2e-12)
    # no channel has a lateral role: LIX/LIY 1 omega are tunnelling-current parameters here
    assert not {"deflection", "lateral_x", "lateral_y"} & set(ds.data_vars)
    assert ds["param_Scan_LIX_1_omega"].attrs["units"] == "A"
    assert ds.attrs["lockin_frequency"] == 313.0 and ds.attrs["lockin_amplitude"] == 0.04
    assert ds.attrs["lockin_modulated_signal"] == "Bias (V)"


def test_bias_grid_keeps_sweep_and_lockin_grid_maps_lateral():
    bias = open_quietly(real_file("nanonis/Grid_Spectroscopy002.3ds"))
    assert "piezo" not in bias and bias["sweep"].attrs["units"] == "V"
    assert set(bias["direction"].values) == {"fwd"}
    np.testing.assert_allclose(bias["sweep"].values[0, [0, -1]], [0.2, -0.1], rtol=1e-6)
    lockin = open_quietly(real_file("nanonis/NanonisReader_STS_grid_lockin.3ds"))
    assert lockin["lateral_x"].attrs["long_name"] == "LockinX (V)"
    assert lockin["lateral_y"].attrs["long_name"] == "LockinY (V)"
    assert "deflection" not in lockin
    # a user mapping overrides the default and names a channel that exists
    mapped = open_quietly(real_file("nanonis/NanonisReader_STS_grid_lockin.3ds"),
                          channels={"deflection": "Bias_m (V)", "lateral_x": "LockinY (V)"})
    assert mapped["deflection"].attrs["long_name"] == "Bias_m (V)"
    assert mapped["lateral_x"].attrs["long_name"] == "LockinY (V)"


def test_larger_piezo_is_farther_from_the_surface():
    """Nanonis Z: larger = tip farther away.  Tunnelling current falls exponentially with the gap, so on
    every Z ramp |I| must fall as piezo grows (Z-Spectroscopy002.dat: 4 decades over 1.5 nm)."""
    ds = open_quietly(real_file("nanonis/Z-Spectroscopy002.dat"))
    assert list(ds["direction"].values) == ["approach", "retract"]
    for ramp in range(2):
        z, current = ds["piezo"].values[ramp], np.abs(ds["Current"].values[ramp])
        ok = np.isfinite(current) & (current > 1e-12)
        slope = np.polyfit(z[ok], np.log(current[ok]), 1)[0]
        assert slope < -5e9  # 1/m: the current decays by e per < 0.2 nm of larger Z
    assert ds["piezo"].values[0, 0] > ds["piezo"].values[0, -1]  # approach: from far to near


def test_grid_channels_are_lazy_and_read_only_what_is_asked(monkeypatch):
    path = real_file("nanonis/Grid_Spectroscopy006.3ds")
    ds = open_quietly(path)
    data = ds["Current"].variable._data
    assert not isinstance(data, np.ndarray)
    _, _, channels, names = decode_3ds(path)
    full = ds["Current"].values
    # unsorted, repeated fancy ramp selection and a sample slice
    picked = ds["Current"].isel(ramp=[5, 1, 5, 0], sample=slice(10, 20)).values
    np.testing.assert_array_equal(picked, full[[5, 1, 5, 0], 10:20])
    for step in (slice(None, None, 3), slice(1, None, 2), slice(7, 3, -1)):
        np.testing.assert_array_equal(ds["Current"][step].values, full[step])
        np.testing.assert_array_equal(ds["piezo"][step, ::5].values, ds["piezo"].values[step, ::5])
    np.testing.assert_array_equal(full[3], channels[1, names.index("Current [bwd] (A)")][::-1])
    # reading ramps 0..1 touches only the first record
    reads = []
    original = ChannelArray._read

    def spy(self, key):
        reads.append(key)
        return original(self, key)

    monkeypatch.setattr(ChannelArray, "_read", spy)
    ds["Current"][:2].values
    assert len(reads) == 1


# ---------------------------------------------------------------------------------------------- bad input
def _grid_bytes():
    return real_file("nanonis/Grid_Spectroscopy006.3ds").read_bytes()


def test_unfinished_grid_opens_measured_points_and_warns():
    path = real_file("nanonis/Grid_Spectroscopy006.3ds")
    with pytest.warns(UserWarning, match=r"88 of 1024 .*936 missing"):
        ds = nrm.open(path)
    assert ds.attrs["points_declared"] == 1024 and ds.attrs["points_missing"] == 936
    assert ds.sizes["ramp"] == 2 * 88
    # nanonispy pads the 936 missing points with zeros; we never do
    padded = nanonispy_grid(path).signals["Current (A)"].reshape(1024, -1)
    assert not padded[88:].any()
    values = ds["Current"].values
    assert not (np.nan_to_num(values) == 0).all(axis=1).any()
    # NaN tails (sweeps stopped early) are kept as NaN, not dropped or zeroed
    assert np.isnan(values[0, -5:]).all() and np.isfinite(values[0, :5]).all()


def test_file_ending_inside_a_record_is_truncated(tmp_path):
    data = _grid_bytes()
    header_end = data.index(b":HEADER_END:\r\n") + 14
    record = 4 * (20 + 16 * 256)
    cut = tmp_path / "cut.3ds"
    cut.write_bytes(data[: header_end + 10 * record + 100])
    with pytest.raises(nrm.ReaderError, match="truncated") as err:
        nrm.open(cut)
    message = str(err.value)
    assert "cut.3ds" in message and str(1024 * record) in message and str(10 * record + 100) in message
    with pytest.warns(UserWarning, match="truncated"):
        ds = nrm.open(cut, allow_truncated=True)
    assert ds.sizes["ramp"] == 20
    np.testing.assert_array_equal(ds["Current"].values, open_quietly(real_file(
        "nanonis/Grid_Spectroscopy006.3ds"))["Current"].values[:20])


def test_header_only_random_and_empty_files(tmp_path):
    data = _grid_bytes()
    header_only = tmp_path / "header.3ds"
    header_only.write_bytes(data[: data.index(b":HEADER_END:\r\n") + 14])
    with pytest.raises(nrm.ReaderError, match=r"header\.3ds: header only"):
        nrm.open(header_only)
    random = tmp_path / "random.3ds"
    random.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(nrm.ReaderError, match=r"random\.3ds: no ':HEADER_END:'"):
        nrm.open(random)
    empty = tmp_path / "empty.3ds"
    empty.write_bytes(b"")
    with pytest.raises(nrm.ReaderError, match=r"empty\.3ds.*empty"):
        nrm.open(empty)
    missing_key = tmp_path / "nochannels.3ds"
    missing_key.write_bytes(data.replace(b"Channels=", b"Chanels="))
    with pytest.raises(nrm.ReaderError, match=r"lacks \['Channels'\]"):
        nrm.open(missing_key)
    absurd = tmp_path / "absurd.3ds"  # a damaged count must not allocate gigabytes
    absurd.write_bytes(data.replace(b"# Parameters (4 byte)=20", b"# Parameters (4 byte)=900000000"))
    with pytest.raises(nrm.ReaderError, match=r"absurd\.3ds: .*larger than the file"):
        nrm.open(absurd)


def test_missing_required_channel_is_named_with_the_channels_found():
    with pytest.raises(nrm.ModelError, match=r"'Nope'.*Current \(A\).*Excitation \(V\)"):
        open_quietly(real_file("nanonis/Grid_Spectroscopy006.3ds"), channels={"deflection": "Nope"})


# ---------------------------------------------------------------------------------------------- identify
def test_identification_by_content_then_suffix(tmp_path):
    for name in GRIDS + ["Z-Spectroscopy002.dat", "STS_nanonis_generic_4_5.dat", "A170315.172707-00393.sxm"]:
        path = real_file(f"nanonis/{name}")
        assert nanonis.nrm_read_identify(path=path, head=path.read_bytes()[:4096]) == 100, name
        renamed = tmp_path / ("renamed_" + name + ".bin")
        shutil.copy(path, renamed)
        assert nrm.get_plugin_manager().identify(renamed)[0] == (100, "nanonis")
    other = tmp_path / "other.3ds"
    other.write_bytes(b"not a grid at all")
    assert nanonis.nrm_read_identify(path=other, head=other.read_bytes()) == 10
    text = tmp_path / "notes.txt"
    text.write_bytes(b"Experiment\tbut no data section\r\n")
    assert nanonis.nrm_read_identify(path=text, head=text.read_bytes()) is None


# ---------------------------------------------------------------------------------------------- writer
def _model(n_ramps=6, n_samples=40, seed=0, paired=False):
    """Ramps with different sweep ranges per ramp; float32 channel values."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(50e-9, 100e-9, n_ramps)
    end = rng.uniform(-20e-9, 0, n_ramps)
    if paired:
        end[1::2], start[1::2] = start[0::2], end[0::2]
    piezo = start[:, None] + (end - start)[:, None] * np.arange(n_samples) / (n_samples - 1)
    values = {name: rng.normal(size=(n_ramps, n_samples)).astype(np.float32) for name in ("d", "x", "y")}
    direction = np.where(start > end, "approach", "retract")
    x = np.repeat(np.arange(n_ramps // 2), 2) * 50e-9 if paired else np.arange(n_ramps) * 50e-9
    return ramps_dataset(
        {"piezo": (piezo, "m", "Z"), "deflection": (values["d"], "V", "Input 2 (V)"),
         "lateral_x": (values["x"], "V", "Input 3 (V)"), "lateral_y": (values["y"], "V", "Input 4 (V)")},
        coords={"x": x, "y": np.zeros(n_ramps), "time": np.arange(n_ramps) // (2 if paired else 1) * 1.5,
                "potential": np.linspace(2.0, 0.5, n_ramps // (2 if paired else 1)).repeat(2 if paired else 1),
                "direction": direction},
        attrs={"lockin_frequency": 1234.5})


def _assert_round_trip(ds, back):
    assert back.sizes == ds.sizes
    for var in ("deflection", "lateral_x", "lateral_y"):
        np.testing.assert_array_equal(back[var].values, ds[var].values.astype(np.float32))  # bit for bit
        assert back[var].attrs["long_name"] == ds[var].attrs["long_name"]
    # float32 precision of the stored Sweep Start/End: relative to the ramp's largest |value|
    scale = np.nanmax(np.abs(ds["piezo"].values), axis=1, keepdims=True)
    assert np.all(np.abs(back["piezo"].values - ds["piezo"].values) <= 2 * np.finfo(np.float32).eps * scale)
    for coord in ("x", "y", "time", "potential"):
        np.testing.assert_array_equal(back[coord].values, ds[coord].values.astype(np.float32))
    assert list(back["direction"].values) == list(ds["direction"].values)


def test_writer_per_point_sweep_axes_round_trip_and_nanonispy(tmp_path):
    ds = _model()
    path = nrm.save(ds, tmp_path / "grid.3ds")
    header, params, channels, names = decode_3ds(path)
    assert header["Channels"] == "Input 2 (V);Input 3 (V);Input 4 (V)"
    assert header["Sweep Signal"] == "Z (m)" and header["Grid dim"] == "6 x 1"
    assert header["Experiment parameters"].startswith("X (m);Y (m);Time (s);Potential (V)")
    np.testing.assert_array_equal(params[:, 0], ds["piezo"].values[:, 0].astype(np.float32))
    np.testing.assert_array_equal(params[:, 1], ds["piezo"].values[:, -1].astype(np.float32))
    back = nrm.open(path)
    _assert_round_trip(ds, back)
    assert back.attrs["lockin_frequency"] == 1234.5
    # roles come back through the NRM>Roles header entry
    assert {"deflection", "lateral_x", "lateral_y"} <= set(back.data_vars)
    # nanonispy loads it too: same values, but one sweep axis for all (point 0's): wrong for the others
    grid = nap.read.Grid(str(path))
    np.testing.assert_array_equal(grid.signals["Input 2 (V)"].reshape(6, -1), ds["deflection"].values)
    atol = 4 * np.finfo(np.float32).eps * 100e-9
    np.testing.assert_allclose(grid.signals["sweep_signal"], back["piezo"].values[0], rtol=0, atol=atol)
    assert not np.allclose(grid.signals["sweep_signal"], back["piezo"].values[1], rtol=1e-3)


def test_writer_pairs_approach_and_retract_into_fwd_bwd(tmp_path):
    ds = _model(n_ramps=8, paired=True)
    path = nrm.save(ds, tmp_path / "pairs.3ds")
    header, params, _, names = decode_3ds(path)
    assert names == ["Input 2 (V)", "Input 3 (V)", "Input 4 (V)",
                     "Input 2 [bwd] (V)", "Input 3 [bwd] (V)", "Input 4 [bwd] (V)"]
    assert len(params) == 4 and header["Grid dim"] == "4 x 1"
    _assert_round_trip(ds, nrm.open(path))
    # and a real file with fwd/bwd goes through write → read unchanged
    real = open_quietly(real_file("nanonis/Grid_Spectroscopy006.3ds"))
    again = open_quietly(nrm.save(real, tmp_path / "006.3ds"))
    assert again.attrs["points_missing"] == 936 and decode_3ds(tmp_path / "006.3ds")[0]["Grid dim"] == "32 x 32"
    for var in real.data_vars:
        np.testing.assert_array_equal(again[var].values, real[var].values, err_msg=var)
    assert list(again["direction"].values) == list(real["direction"].values)


def test_writer_regular_raster_nan_padding_and_nan_points(tmp_path):
    ds = _model(n_ramps=6)
    ds = ds.assign_coords(x=("ramp", np.tile([0.0, 1e-7, 2e-7], 2), ds["x"].attrs),
                          y=("ramp", np.repeat([0.0, 1e-7], 3), ds["y"].attrs))
    deflection = ds["deflection"].values.copy()
    deflection[2, 30:] = np.nan  # a shorter ramp (NaN padded)
    deflection[4] = np.nan  # a point where nothing was measured
    piezo = ds["piezo"].values.copy()
    piezo[2, 30:] = np.nan
    ds["deflection"] = (("ramp", "sample"), deflection, ds["deflection"].attrs)
    ds["piezo"] = (("ramp", "sample"), piezo, ds["piezo"].attrs)
    path = nrm.save(ds, tmp_path / "raster.3ds")
    assert decode_3ds(path)[0]["Grid dim"] == "3 x 2"
    back = nrm.open(path)
    np.testing.assert_array_equal(back["deflection"].values, deflection.astype(np.float32))
    assert np.isnan(back["deflection"].values[4]).all()
    # the shorter ramp's axis continues its line where the channels are NaN
    np.testing.assert_allclose(back["piezo"].values[2, :30], piezo[2, :30], rtol=2e-7)
    slope = (piezo[2, 29] - piezo[2, 0]) / 29
    np.testing.assert_allclose(back["piezo"].values[2, 30:], piezo[2, 0] + slope * np.arange(30, 40), rtol=2e-6)


def test_writer_bias_sweep_nonlinear_axis_and_errors(tmp_path):
    bias = open_quietly(real_file("nanonis/nanonis-xarray_i_v.dat"))  # sweep (V), fwd/bwd, LIX channels
    back = open_quietly(nrm.save(bias, tmp_path / "iv.3ds"))
    assert decode_3ds(tmp_path / "iv.3ds")[0]["Sweep Signal"] == "Bias calc (V)"
    assert list(back["direction"].values) == ["fwd", "bwd"] and "piezo" not in back
    np.testing.assert_array_equal(back["LIX_1_omega"].values, bias["LIX_1_omega"].values.astype(np.float32))
    np.testing.assert_allclose(back["sweep"].values, bias["sweep"].values, rtol=1e-6)
    # a measured, non-linear piezo: written as the line through its ends plus the exact values
    ds = _model(n_ramps=2)
    piezo = ds["piezo"].values.copy()
    piezo[:, 5] += 3e-9
    ds["piezo"] = (("ramp", "sample"), piezo, {"units": "m", "long_name": "Height Sensor (m)"})
    with pytest.warns(UserWarning, match="not linear"):
        path = nrm.save(ds, tmp_path / "measured.3ds")
    back = nrm.open(path)
    np.testing.assert_allclose(back["Piezo"].values, piezo, rtol=1e-7)
    # what .3ds cannot hold
    image_only = ramps_dataset({}, images={"height": (np.zeros((3, 4)), "m", "Height")})
    with pytest.raises(nrm.WriterError, match="no ramps"):
        nrm.save(image_only, tmp_path / "image.3ds")
    no_axis = ds.drop_vars("piezo")
    with pytest.raises(nrm.WriterError, match="needs a sweep axis"):
        nrm.save(no_axis, tmp_path / "noaxis.3ds")
    assert not (tmp_path / "noaxis.3ds").exists()


# ---------------------------------------------------------------------------------------------- CLI
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "nrm_plugins", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def test_cli_info_and_convert_3ds_to_netcdf_and_back(tmp_path):
    src = real_file("nanonis/Grid_Spectroscopy006.3ds")
    info = _cli("info", src)
    assert info.returncode == 0, info.stderr
    assert "ramps: 176 x 256 samples" in info.stdout and "approach: 88" in info.stdout
    assert "88 of 1024" in info.stderr  # the unfinished grid is reported
    nc, back = tmp_path / "y.nc", tmp_path / "z.3ds"
    assert _cli("convert", src, "-o", nc).returncode == 0
    assert _cli("convert", nc, "-o", back).returncode == 0
    original, converted, returned = open_quietly(src), open_quietly(nc), open_quietly(back)
    for var in original.data_vars:
        np.testing.assert_array_equal(converted[var].values, original[var].values, err_msg=var)
        np.testing.assert_array_equal(returned[var].values, original[var].values, err_msg=var)
    assert returned.attrs["vendor_header"]["Lock-in>Frequency (Hz)"] == "313E+0"
    if CHECKER.exists():
        check = subprocess.run([sys.executable, str(CHECKER), "model", str(nc)], capture_output=True, text=True)
        assert check.returncode == 0 and check.stdout.strip() == "ok", check.stdout
    bad = tmp_path / "bad.3ds"
    bad.write_bytes(src.read_bytes()[:7000])
    out = _cli("info", bad)
    assert out.returncode == 1 and "truncated" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.skipif(not CHECKER.exists(), reason=f"contract checker {CHECKER} is absent")
def test_converted_nanonis_files_pass_the_contract_checker(tmp_path):
    for name in ["Grid_Spectroscopy002.3ds", "NanonisReader_STS_grid_lockin.3ds", "nanonis-xarray_z.dat",
                 "STS_nanonis_generic_4_5.dat", "A151216.123306-02602.sxm"]:
        out = tmp_path / (name + ".nc")
        nrm.save(open_quietly(real_file(f"nanonis/{name}")), out)
        check = subprocess.run([sys.executable, str(CHECKER), "model", str(out)], capture_output=True, text=True)
        assert check.returncode == 0, (name, check.stdout)
    assert xr.open_dataset(out).attrs["file_format"] == "Nanonis scan image (.sxm)"
