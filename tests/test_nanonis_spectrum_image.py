"""Nanonis .dat spectra against nanonispy, and .sxm images against Gwyddion 2.62 (value by value)."""
from __future__ import annotations

import os
import shutil
import subprocess
import warnings

import numpy as np
import pytest

import nrm_plugins as nrm
from nrm_plugins.readers.nanonis.common import parse_signal

from conftest import real_file

nap = pytest.importorskip("nanonispy")

SPECTRA = ["Bias-Spectroscopy002.dat", "NanonisReader_BiasSpectroscopy.dat", "STS_nanonis_generic_4_5.dat",
           "Z-Spectroscopy002.dat", "Z-Spectroscopy__012.dat", "nanonis-xarray_i_v.dat", "nanonis-xarray_z.dat"]
IMAGES = ["A170315.172707-00393.sxm", "A151216.123306-02602.sxm"]


def open_quietly(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nrm.open(path, **kwargs)


# ---------------------------------------------------------------------------------------------- .dat
@pytest.mark.parametrize("name", SPECTRA)
def test_spectrum_matches_nanonispy(name):
    path = real_file(f"nanonis/{name}")
    ds = open_quietly(path)
    columns = nap.read.Spec(str(path)).signals
    names = list(columns)
    x_name = names[0].lstrip("\ufeff")
    axis = ds["piezo" if x_name == "Z rel (m)" else "sweep"]
    assert axis.attrs["long_name"] == x_name and axis.attrs["units"] == parse_signal(x_name).unit
    labels = sorted({parse_signal(n).sweep_label for n in names[1:]}, key=lambda s: (s == "AVG", s))
    directions = 2 if any("[bwd]" in n for n in names) else 1
    assert ds.sizes["ramp"] == len(labels) * directions and ds.sizes["sample"] == len(columns[names[0]])
    for ramp in range(ds.sizes["ramp"]):
        backward = ramp % directions == 1
        expected_axis = columns[names[0]][::-1] if backward else columns[names[0]]
        np.testing.assert_array_equal(axis.values[ramp], expected_axis)
    for name_ in names[1:]:
        s = parse_signal(name_)
        var = [v for v in ds.data_vars if ds[v].attrs.get("long_name") == s.plain + (" [filt]" if s.filtered else "")]
        assert len(var) == 1, name_
        var = ds[var[0]]
        assert var.attrs["units"] == s.unit
        ramp = labels.index(s.sweep_label) * directions + int(s.backward)
        ours = var.values[ramp][::-1] if s.backward else var.values[ramp]
        np.testing.assert_array_equal(ours, columns[name_], err_msg=name_)
    if "sweep_number" in ds:
        assert list(ds["sweep_number"].values) == [0 if label == "AVG" else int(label)
                                                   for label in labels for _ in range(directions)]


def test_spectrum_roles_filtered_copies_and_metadata():
    deflection = open_quietly(real_file("nanonis/NanonisReader_BiasSpectroscopy.dat"))
    assert deflection["deflection"].attrs["long_name"] == "Vert. Deflection (V)"
    assert deflection["Vert_Deflection_filt"].attrs["long_name"] == "Vert. Deflection (V) [filt]"
    np.testing.assert_allclose(deflection["x"].values, 1.10123e-6)
    demod = open_quietly(real_file("nanonis/STS_nanonis_generic_4_5.dat"))  # starts with a UTF-8 BOM
    assert demod["lateral_x"].attrs["long_name"] == "LI Demod X (V)"
    assert demod["lateral_y"].attrs["long_name"] == "LI Demod Y (V)"
    assert demod["lateral_r"].attrs["long_name"] == "LI Demod R (V)"
    assert demod["lateral_x"].attrs["lockin_signal"] == "input"
    assert demod.attrs["experiment"] == "bias spectroscopy"
    assert demod.attrs["acquisition_start"].startswith("2023-03-31")
    tunnelling = open_quietly(real_file("nanonis/nanonis-xarray_i_v.dat"))
    assert "lateral_x" not in tunnelling and tunnelling["LIX_1_omega"].attrs["units"] == "A"
    assert tunnelling.attrs["lockin_frequency"] == 600.0
    generic = open_quietly(real_file("nanonis/Bias-Spectroscopy002.dat"))
    assert "deflection" not in generic and generic["Input_3"].attrs["units"] == "A"
    several = open_quietly(real_file("nanonis/nanonis-xarray_z.dat"))  # Z rel from -210 pm to +490 pm
    assert list(several["direction"].values[:2]) == ["retract", "approach"]
    assert list(several["sweep_number"].values) == [1, 1, 2, 2, 3, 3, 0, 0]


def test_cut_spectrum_warns_and_leaves_out_the_cut_row(tmp_path):
    data = real_file("nanonis/Z-Spectroscopy002.dat").read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[:-30])
    with pytest.warns(UserWarning, match="truncated"):
        ds = nrm.open(cut)
    full = open_quietly(real_file("nanonis/Z-Spectroscopy002.dat"))
    assert ds.sizes["sample"] == full.sizes["sample"] - 1
    np.testing.assert_array_equal(ds["Current"].values[0], full["Current"].values[0, :-1])
    ragged = tmp_path / "ragged.dat"
    ragged.write_bytes(data.replace(b"\n-1.30000E-9\tNaN", b"\n-1.30000E-9\nNaN", 1))
    with pytest.raises(nrm.ReaderError, match="ragged.dat: unreadable data rows"):
        nrm.open(ragged)


# ---------------------------------------------------------------------------------------------- .sxm
GWYDDION = shutil.which("gwyddion")


@pytest.fixture(scope="module")
def gwyddion_images(tmp_path_factory):
    """Each .sxm converted by Gwyddion itself (``--convert-to-gwy`` needs no display)."""
    if GWYDDION is None:
        pytest.skip("the gwyddion binary is absent (Debian package 'gwyddion', 2.62): cannot cross-check .sxm")
    gwyfile = pytest.importorskip("gwyfile")
    home = tmp_path_factory.mktemp("gwyhome")
    out = {}
    for name in IMAGES:
        target = home / (name + ".gwy")
        result = subprocess.run([GWYDDION, f"--convert-to-gwy={target}", str(real_file(f"nanonis/{name}"))],
                                env={**os.environ, "HOME": str(home)}, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and target.exists(), result.stderr
        out[name] = gwyfile.util.get_datafields(gwyfile.load(str(target)))
    return out


@pytest.mark.parametrize("name", IMAGES)
def test_sxm_matches_gwyddion(name, gwyddion_images):
    ds = open_quietly(real_file(f"nanonis/{name}"))
    fields = gwyddion_images[name]
    assert len(fields) == len(ds.data_vars)
    for title, field in fields.items():
        channel, direction = title.rsplit(" (", 1)
        var = ds[channel + ("_bwd" if direction == "Backward)" else "")]
        assert var.dims == ("row", "col") and var.shape == field.data.shape
        np.testing.assert_array_equal(var.values, field.data, err_msg=title)  # same orientation, same values
        assert var.attrs["units"] == field.si_unit_z.get("unitstr", "")
        np.testing.assert_allclose([ds.attrs["x_real"], ds.attrs["y_real"]], [field.xreal, field.yreal], rtol=1e-12)
        np.testing.assert_allclose([ds.attrs["x_offset"], ds.attrs["y_offset"]],
                                   [field["xoff"], field["yoff"]], rtol=1e-9)


def test_sxm_orientation_and_names_without_gwyddion():
    """Row 0 = top: an 'up' scan's first stored line is the bottom row; backward lines run right to left."""
    path = real_file("nanonis/A151216.123306-02602.sxm")
    raw = path.read_bytes()
    start = raw.index(b"\x1a\x04", raw.index(b":SCANIT_END:")) + 2
    planes = np.frombuffer(raw[start:], dtype=">f4").reshape(-1, 128, 128)
    ds = open_quietly(path)
    assert ds.attrs["scan_direction"] == "up"
    np.testing.assert_array_equal(ds["Input_4"].values, planes[2][::-1])  # DATA_INFO: Z, Input_4, ...
    np.testing.assert_array_equal(ds["Input_4_bwd"].values, planes[3][::-1, ::-1])
    assert ds["Frequency_Shift_bwd"].attrs["long_name"] == "Frequency Shift [bwd] (Hz)"
    assert ds.attrs["lockin_frequency"] == 470.0 and ds.attrs["x_real"] == 2e-9


def test_sxm_truncated_and_header_only(tmp_path):
    data = real_file("nanonis/A170315.172707-00393.sxm").read_bytes()
    cut = tmp_path / "cut.sxm"
    cut.write_bytes(data[:-4])
    with pytest.raises(nrm.ReaderError, match=r"cut\.sxm: truncated: 16 images of 48 x 48 float32 = 147456 bytes"):
        nrm.open(cut)
    header = tmp_path / "header.sxm"
    header.write_bytes(data[: data.index(b":SCANIT_END:") + 12])
    with pytest.raises(nrm.ReaderError, match=r"header\.sxm: header only"):
        nrm.open(header)
