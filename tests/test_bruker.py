"""Bruker NanoScope reader: numbers from the real files (../shared/data/real/bruker, MANIFEST.md) and
cross-checks against Gwyddion 2.62 (its own .gwy references, and fresh ``--convert-to-gwy`` runs).

Convention differences with Gwyddion that the checks below pin down (docs/readers/bruker.md):
* Gwyddion plots single curves against Z (extend and retract both last-sample-first); we keep time order.
* Gwyddion's curve maps (force volume) scale by ``Z scale value / 65536`` instead of the hard scale,
  ignore the ×256 of 32-bit data declared as 16-bit, and its images of such files keep the ×256.
* Gwyddion ignores the ``mV`` of ``(… mV/LSB)`` hard scales (Amplitude2 ×1000) and takes a unit-less
  DeflSens as dimensionless (its "N" of 20200904_Egel4 is ours × 1e9).
* Gwyddion reads only the first 2 × Samps/line samples of a scripted ramp.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import warnings

import numpy as np
import pytest

import nrm_plugins as nrm
from nrm_plugins.errors import ReaderError
from nrm_plugins.readers.bruker import nrm_read_identify
from nrm_plugins.readers.bruker.force import fixed_point_divisor
from nrm_plugins.readers.bruker.header import parse_header
from nrm_plugins.readers.bruker.reader import read_nanoscope

from conftest import real_file

gwyfile = pytest.importorskip("gwyfile")

# file -> (ramps, samples per segment in time order, directions of one curve, spring constant, invols m/V)
FILES = {
    "20200903_Egel2.0_00023.spm": (512, [1024, 1024], ["approach", "retract"], 0.1332, 27.39e-9),
    "20200904_Egel4-Z1.0_00025.spm": (2, [1024, 1024], ["approach", "retract"], 0.1332, 27.39e-9),
    "BrukerReader_ForceCurve_Sapphire_TAP525.001": (2, [512, 512], ["approach", "retract"], 90.0, 72.76923e-9),
    "nanoscope-pypi_FV.spm": (2048, [1024, 1024], ["approach", "retract"], 10.0, 22e-9),
    "nanoscope-pypi_Force.spm": (2, [1024, 1024], ["approach", "retract"], 10.0, 21.9e-9),
    "nanoscope-pypi_ForceHold.spm": (3, [4096, 260, 4096], ["approach", "hold", "retract"], 0.01, 63.05653e-9),
    "nanoscope-pypi_ForceHoldSweep.spm": (3, [512, 520, 512], ["approach", "hold", "retract"], 7.066, 66.51697e-9),
    "nanoscope-pypi_Script.spm": (7, [1041, 2083, 1250, 2083, 1250, 2083, 1041],
                                  ["approach", "hold", "approach", "hold", "retract", "hold", "retract"],
                                  0.1, 29.184e-9),
    "nanoscope-pypi_ScriptModulation.spm": (15, [1041] + [1024] * 11 + [1041, 1024, 1041],
                                            ["approach", "hold", "modulation", "hold", "modulation", "hold",
                                             "modulation", "hold", "modulation", "hold", "modulation", "hold",
                                             "modulation", "hold", "retract"], 2.82036, 101.575e-9),
}
#: Relative trigger threshold (V) of the standard curves (\@4:Trig threshold Deflection), an independent
#: check of LSB → V: the approach stops when the deflection has risen by about this much.
TRIGGER = {"20200903_Egel2.0_00023.spm": 1.2, "20200904_Egel4-Z1.0_00025.spm": 1.2,
           "BrukerReader_ForceCurve_Sapphire_TAP525.001": 0.2061311, "nanoscope-pypi_FV.spm": 0.1,
           "nanoscope-pypi_Force.spm": 0.1, "nanoscope-pypi_ForceHold.spm": 1.585879,
           "nanoscope-pypi_ForceHoldSweep.spm": 0.02127277}


def bruker(name):
    return real_file(f"bruker/{name}")


def open_quiet(path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no file here lacks calibration: any warning is a failure
        return nrm.open(path, **options)


def ramp(ds, r):
    """Ramp r without its NaN padding."""
    values = {v: ds[v].values[r] for v in ds.data_vars if ds[v].dims == ("ramp", "sample")}
    n = int(np.isfinite(values["deflection"]).sum())
    return {v: a[:n] for v, a in values.items()}


# ---------------------------------------------------------------------------------------------- every file
@pytest.mark.parametrize("name", sorted(FILES))
def test_every_file_opens_with_counts_and_calibration(name):
    ramps, samples, directions, spring, invols = FILES[name]
    ds = open_quiet(bruker(name))
    nrm.validate(ds, require=["piezo", "deflection"])
    assert ds.attrs["reader"] == "bruker"
    assert ds.sizes["ramp"] == ramps and ds.sizes["sample"] == max(samples)
    assert list(ds["direction"].values[:len(directions)]) == directions
    per_curve = len(directions)
    counts = np.isfinite(ds["deflection"].values).sum(axis=1)
    np.testing.assert_array_equal(counts, np.tile(samples, ramps // per_curve))
    # no channel is NaN inside its segment (NaN only pads), and every variable has units
    for v in ds.data_vars:
        assert ds[v].attrs.get("units"), v
        if ds[v].dims == ("ramp", "sample") and v not in ("piezo",):
            np.testing.assert_array_equal(np.isfinite(ds[v].values).sum(axis=1), counts, err_msg=v)
    assert ds.attrs["spring_constant"] == pytest.approx(spring, rel=1e-12)
    assert ds.attrs["invols"] == pytest.approx(invols, rel=1e-12)
    # the physical deflection channel is deflection (V) × InvOLS
    np.testing.assert_allclose(ds["Deflection_Error"].values, ds["deflection"].values * invols, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(FILES))
def test_approach_piezo_grows_with_distance_and_deflection_rises_at_contact(name):
    ds = open_quiet(bruker(name))
    approaches = np.flatnonzero(ds["direction"].values == "approach")
    rises = []
    for r in approaches:
        a = ramp(ds, r)
        # time order: the approach starts far (largest piezo) and ends at the most extended point
        assert np.all(np.diff(a["piezo"]) < 0), f"ramp {r}: piezo must fall along the approach"
        half = len(a["deflection"]) // 2
        rise = a["deflection"][-len(a["deflection"]) // 50:].max() - np.median(a["deflection"][:half])
        assert rise > 0, f"ramp {r}: deflection must rise at contact (tip pushed away = positive)"
        rises.append(rise)
    if name in TRIGGER:  # Bruker's relative trigger: the rise reaches (nearly) the threshold, never 2x it
        ratio = np.array(rises) / TRIGGER[name]
        assert np.all((ratio > 0.7) & (ratio < 1.2)), (ratio.min(), ratio.max())


def test_spring_constants_of_all_lists_are_recorded():
    force = open_quiet(bruker("nanoscope-pypi_Force.spm"))
    assert force.attrs["spring_constant"] == 10.0
    assert "Deflection Error (list 2): 13.8772 N/m" in force.attrs["bruker_spring_constants"]
    sapphire = open_quiet(bruker("BrukerReader_ForceCurve_Sapphire_TAP525.001"))
    assert sapphire.attrs["spring_constant"] == 90.0  # the deflection list, not the Height Sensor's 0.0677954
    assert "Height Sensor (list 2): 0.0677954 N/m" in sapphire.attrs["bruker_spring_constants"]
    assert sapphire.attrs["bruker_zsens"] == pytest.approx(35.88e-9)


def test_nominal_ramp_length_and_time():
    force = open_quiet(bruker("nanoscope-pypi_Force.spm"))
    L = 6.172840 * 8.1e-9  # \@4:Ramp size (V) × \@Sens. Zsens (nm/V) = 50 nm
    assert force.attrs["ramp_size"] == pytest.approx(L, rel=1e-12)
    a, r = ramp(force, 0), ramp(force, 1)
    np.testing.assert_allclose(a["piezo"], L * (1 - np.arange(1024) / 1024), rtol=1e-12)
    np.testing.assert_allclose(r["piezo"], L * np.arange(1024) / 1024, rtol=1e-12)
    # one direction lasts Ramp size / velocity = 6.17284 V / 60.2816 V/s; scan rate 4.88281 Hz = 2 directions
    assert force["time"].values[1] == pytest.approx(6.172840 / 60.2816, rel=1e-9)
    assert 2 * force["time"].values[1] == pytest.approx(1 / 4.88281, rel=1e-5)


def test_script_piezo_follows_the_height_sensor():
    """Scripted Z ramps: the nominal piezo change of each segment equals the measured Height Sensor change
    (these scanners' Height Sensor decreases towards the surface, so piezo and sensor change alike)."""
    for name in ("nanoscope-pypi_Script.spm", "nanoscope-pypi_ScriptModulation.spm"):
        ds = open_quiet(bruker(name))
        for r in np.flatnonzero(np.isin(ds["direction"].values, ["approach", "retract"])):
            a = ramp(ds, r)
            d_piezo = a["piezo"][-1] - a["piezo"][0]
            d_height = a["Height_Sensor"][-1] - a["Height_Sensor"][0]
            assert abs(d_piezo) > 100e-9
            assert d_height == pytest.approx(d_piezo, rel=0.02), (name, r)


def test_force_volume_grid_and_images():
    ds = open_quiet(bruker("20200903_Egel2.0_00023.spm"))
    assert ds["Height"].dims == ("row", "col") and ds["Height"].shape == (16, 16)
    assert ds["Height"].attrs["x_real"] == pytest.approx(2e-6) and ds["Height"].attrs["y_real"] == pytest.approx(2e-6)
    assert ds["Height"].attrs["units"] == "m"
    # 32-bit data under "Bytes/pixel: 2" holding value × 256: divided out (heights of tens of nm, not µm)
    assert ds["Height"].attrs["bruker_lsb_divisor"] == 256
    assert -150e-9 < float(ds["Height"].min()) < float(ds["Height"].max()) < 0
    assert "LSB divisor 256" in ds.attrs["bruker_channels"]
    np.testing.assert_array_equal(ds["grid_row"].values[::2], np.repeat(np.arange(16), 16))
    np.testing.assert_array_equal(ds["grid_col"].values[::2], np.tile(np.arange(16), 16))
    # pixel centres on a 2 µm square around the scan offset (0, 0)
    assert ds["x"].values[0] == pytest.approx(-1e-6 + 62.5e-9) and ds["y"].values[-1] == pytest.approx(1e-6 - 62.5e-9)
    fv = open_quiet(bruker("nanoscope-pypi_FV.spm"))
    assert {"Height", "Deflection_Error_image", "FV_Modulus"} <= set(fv.data_vars)
    assert fv["FV_Modulus"].attrs["units"] == "Pa" and fv["Height"].shape == (32, 32)


# ---------------------------------------------------------------------------------------------- quirks
def test_deflsens_without_unit_is_read_as_nm_per_volt():
    ds = open_quiet(bruker("20200904_Egel4-Z1.0_00025.spm"))
    assert "\\@Sens. DeflSens: V 27.39000 \r\n" in ds.attrs["vendor_header"]
    assert ds.attrs["invols"] == pytest.approx(27.39e-9)
    assert any("has no unit; read as nm/V" in note for note in ds.attrs["bruker_notes"])
    np.testing.assert_allclose(ds["Deflection_Error"].values, ds["deflection"].values * 27.39e-9)


def test_corrupted_header_line_does_not_stop_the_read():
    ds = open_quiet(bruker("20200903_Egel2.0_00023.spm"))
    assert any("\\Data length V/LSB" in note for note in ds.attrs["bruker_notes"])
    assert ds.attrs["ramp_size"] == pytest.approx(151.4807 * 13.203e-9, rel=1e-9)


def test_ramp_size_falls_back_to_the_corrupted_force_list_line(tmp_path):
    """With the channel's own \\@4:Ramp Size made unreadable too, the hard value of the corrupted
    force-list line (151.4807 V) still gives the ramp."""
    data = bruker("20200903_Egel2.0_00023.spm").read_bytes()
    good = b"\\@4:Ramp Size: V [Sens. Zsens] (0.006713765 V/LSB) 151.4807 V"
    assert data.count(good) == 1
    bad = tmp_path / "corrupt.spm"
    bad.write_bytes(data.replace(good, b"\\@4:Ramp Sizx: V [Sens. Zsens] (0.006713765 V/LSB) 151.4807 V"))
    ds = open_quiet(bad)
    assert ds.attrs["ramp_size"] == pytest.approx(151.4807 * 13.203e-9, rel=1e-9)


def test_missing_bytes_per_pixel_is_derived_from_the_data_length(tmp_path):
    path = bruker("nanoscope-pypi_ForceHold.spm")
    data = path.read_bytes()
    edited = tmp_path / "no_bpp.spm"
    edited.write_bytes(data.replace(b"\\Bytes/pixel:", b"\\Bytez/pixel:"))
    ds, ref = open_quiet(edited), open_quiet(path)
    np.testing.assert_array_equal(ds["deflection"].values, ref["deflection"].values)
    np.testing.assert_array_equal(ds["Height_Sensor"].values, ref["Height_Sensor"].values)
    assert any("derived from the data length" in n for n in ds.attrs["bruker_notes"])


def test_mixed_two_and_four_byte_channels():
    """ForceHold declares Deflection Error 2 bytes/pixel and Height Sensor 4; both are stored 4 bytes wide
    (NanoScope 9.3); the Height Sensor's hard scale is already per 32-bit LSB.  The constant-compliance
    slope deflection/height is 1 (a 0.01 N/m lever on any sample): both scalings are right."""
    ds = open_quiet(bruker("nanoscope-pypi_ForceHold.spm"))
    assert "Deflection Error: 4 bytes/sample (header 2)" in ds.attrs["bruker_channels"]
    assert "Height Sensor: 4 bytes/sample (header 4)" in ds.attrs["bruker_channels"]
    a = ramp(ds, 0)
    contact = slice(len(a["deflection"]) - 600, len(a["deflection"]) - 50)
    slope = np.polyfit(a["Height_Sensor"][contact], a["Deflection_Error"][contact], 1)[0]
    assert slope == pytest.approx(1.0, abs=0.05)


def test_fixed_point_divisor():
    shifted = (np.arange(-5000, 5000, 7, dtype=np.int64) * 256 - (np.arange(-5000, 5000, 7) < 0)).astype("<i4")
    assert fixed_point_divisor(shifted, 4, 2) == 256
    assert fixed_point_divisor(shifted, 4, 4) == 1  # declared 32-bit: scale is per 32-bit LSB
    assert fixed_point_divisor(np.arange(-3000, 3000, dtype="<i4"), 4, 2) == 1
    assert fixed_point_divisor(np.zeros(10, dtype="<i4"), 4, 2) == 1


def test_header_parser():
    text = (b"\\*Force file list\r\n\\Version: 0x0920B046\r\n\\*Scanner list\r\n"
            b"\\@Sens. Zsens: V 13.20300 nm/V\r\n\\@Sens. DeflSens: V 27.39000 \r\n"
            b"\\*Ciao force image list\r\n\\Samps/line: 1024 1024\r\n\\PF PGain\t: 99.8779\r\n"
            b"\\@4:Image Data: S [DeflectionError] \"Deflection Error\"\r\n"
            b"\\@Z magnify: C [4:Z scale] 1.000000 \r\n"
            b"\\@4:Z scale: V [Sens. DeflSens] (0.0003750000 V/LSB) 2.500000 V\r\n"
            b"\\@4:Ramp Size Zsweep: V [Sens. Zsens] (\\Data length V/LSB) 151.4807 V\r\n"
            b"\\@4:Z scale: V (0.005493164 \xba/LSB) 360.0000 \xba\r\n")
    h = parse_header(text)
    assert h.version == 0x0920B046
    assert h.sens == {"Sens. Zsens": (13.203, "nm/V"), "Sens. DeflSens": (27.39, "")}
    s = h.first("Ciao force image list")
    assert s.numbers("samps/line") == [1024.0, 1024.0] and s.number("PF PGain") == 99.8779
    z = s.get("@4:Z scale")  # first occurrence wins
    assert (z.soft_scale, z.hard_scale, z.hard_scale_unit, z.value, z.unit) == (
        "Sens. DeflSens", 0.000375, "V/LSB", 2.5, "V")
    assert s.get("@4:image data").text == "Deflection Error" and s.get("@4:Image Data").soft_scale == "DeflectionError"
    assert s.get("@z magnify").kind == "C" and s.get("@Z magnify").value == 1.0
    broken = s.get("@4:ramp size zsweep")
    assert broken.hard_scale is None and broken.value == 151.4807 and broken.soft_scale == "Sens. Zsens"
    assert len(h.problems) == 1 and "Data length" in h.problems[0]


def test_identify_by_content_then_suffix(tmp_path):
    head = bruker("nanoscope-pypi_Force.spm").read_bytes()[:4096]
    assert nrm_read_identify(path=tmp_path / "x.bin", head=head) == 100
    assert nrm_read_identify(path=tmp_path / "x.bin", head=b"\\*File list\r\n\\Version: 0x05300001") == 100
    assert nrm_read_identify(path=tmp_path / "x.001", head=b"nothing") == 10
    assert nrm_read_identify(path=tmp_path / "x.spm", head=b"nothing") == 10
    assert nrm_read_identify(path=tmp_path / "x.txt", head=b"nothing") is None
    # a NanoScope file renamed to another suffix is still read as one
    renamed = tmp_path / "renamed.dat"
    renamed.write_bytes(bruker("nanoscope-pypi_Force.spm").read_bytes())
    assert open_quiet(renamed).sizes["ramp"] == 2


# ---------------------------------------------------------------------------------------------- calibration
def _edit(src, tmp_path, old: bytes, new: bytes, name="edited.spm"):
    assert len(old) == len(new)  # keep every data offset valid
    data = src.read_bytes()
    assert old in data
    out = tmp_path / name
    out.write_bytes(data.replace(old, new))
    return out


def test_missing_spring_constant_warns_and_strict_raises(tmp_path):
    path = _edit(bruker("nanoscope-pypi_Force.spm"), tmp_path, b"\\Spring Constant:", b"\\Spring Constanx:")
    with pytest.warns(UserWarning, match="missing calibration metadata: spring constant"):
        ds = nrm.open(path)
    assert "spring_constant" not in ds.attrs and ds.sizes["ramp"] == 2
    reference = open_quiet(bruker("nanoscope-pypi_Force.spm"))
    np.testing.assert_array_equal(ds["deflection"].values, reference["deflection"].values)
    with pytest.raises(ReaderError, match=r"edited\.spm.*spring constant.*strict"):
        nrm.open(path, strict=True)


def test_missing_deflection_sensitivity_warns_and_strict_raises(tmp_path):
    path = _edit(bruker("nanoscope-pypi_Force.spm"), tmp_path, b"\\@Sens. DeflSens:", b"\\@Sens. DeflSenx:")
    with pytest.warns(UserWarning, match="deflection sensitivity"):
        ds = nrm.open(path)
    assert "invols" not in ds.attrs and "Deflection_Error" not in ds and ds["deflection"].attrs["units"] == "V"
    with pytest.raises(ReaderError, match="deflection sensitivity"):
        nrm.open(path, strict=True)


# ---------------------------------------------------------------------------------------------- bad input
def test_truncated_data_names_expected_and_found_bytes(tmp_path):
    data = bruker("nanoscope-pypi_Force.spm").read_bytes()
    cut = tmp_path / "cut.spm"
    cut.write_bytes(data[:41000])
    with pytest.raises(ReaderError, match=r"cut\.spm: truncated: force channel 1 needs 4096 bytes at offset "
                                          r"40960, but the file has only 40 bytes there"):
        nrm.open(cut)


def test_header_without_end_marker(tmp_path):
    cut = tmp_path / "header_only.spm"
    cut.write_bytes(bruker("nanoscope-pypi_Force.spm").read_bytes()[:20000])
    with pytest.raises(ReaderError, match=r"header_only\.spm: .*no end marker"):
        nrm.open(cut)


def test_not_a_nanoscope_file(tmp_path):
    fake = tmp_path / "fake.spm"
    fake.write_bytes(b"PK\x03\x04 this is a zip, not a force curve" * 10)
    with pytest.raises(ReaderError, match=r"fake\.spm: not a NanoScope file"):
        read_nanoscope(fake)
    with pytest.raises(ReaderError, match="fake.spm"):
        nrm.open(fake)


def test_missing_data_offset(tmp_path):
    path = _edit(bruker("nanoscope-pypi_Force.spm"), tmp_path, b"\\Data offset: 40960", b"\\Data offsex: 40960")
    with pytest.raises(ReaderError, match=r"force channel 1: missing '\\Data offset'"):
        nrm.open(path)


def test_data_length_that_fits_no_sample_width(tmp_path):
    path = _edit(bruker("nanoscope-pypi_Force.spm"), tmp_path, b"\\Data length: 4096", b"\\Data length: 4095")
    with pytest.raises(ReaderError, match="Data length 4095 bytes does not hold 2048 samples"):
        nrm.open(path)


def test_mutated_files_raise_only_reader_error(tmp_path):
    """A few hundred truncations and byte edits (the long run is the fuzz benchmark): the reader itself,
    not the plugin manager's safety net, raises nothing but ReaderError."""
    rng = random.Random(7)
    sources = [bruker(n).read_bytes() for n in ("nanoscope-pypi_Force.spm", "nanoscope-pypi_ForceHoldSweep.spm",
                                                 "20200904_Egel4-Z1.0_00025.spm")]
    target = tmp_path / "mutant.spm"
    outcomes = {"ok": 0, "error": 0}
    for _ in range(200):
        data = bytearray(rng.choice(sources))
        end = data.find(b"\\*File list end")
        if rng.random() < 0.3:
            data = data[:rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 8)):
                j = rng.randrange(end) if rng.random() < 0.8 else rng.randrange(len(data))
                data[j] = rng.choice(b"0123456789.-e \\:\r\n\x00\xff")
        target.write_bytes(bytes(data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                read_nanoscope(target)
                outcomes["ok"] += 1
            except ReaderError as error:
                assert "mutant.spm" in str(error)
                outcomes["error"] += 1
    assert outcomes["ok"] > 20 and outcomes["error"] > 20


# ---------------------------------------------------------------------------------------------- Gwyddion
def _gwy_objects(gwy):
    return {k: v for k, v in gwy.items() if not k.endswith(("/log", "/meta")) and "/meta" not in k}


def test_force_curve_agrees_with_stored_gwyddion_graphs():
    """gwy262_graphs_from_nanoscope-pypi_Force.gwy (Gwyddion 2.62): F = V × InvOLS × k, against Z."""
    ds = open_quiet(bruker("nanoscope-pypi_Force.spm"))
    gwy = gwyfile.load(str(real_file("gwyddion/gwy262_graphs_from_nanoscope-pypi_Force.gwy")))
    _check_single_curve_graphs(ds, gwy)


def test_force_volume_agrees_with_stored_gwyddion_curve_map():
    """gwy262_curvemap_from_20200903_Egel2.0_00023.gwy: GwyLawn 16 × 16, 2048 samples, 2 segments."""
    ds = open_quiet(bruker("20200903_Egel2.0_00023.spm"))
    gwy = gwyfile.load(str(real_file("gwyddion/gwy262_curvemap_from_20200903_Egel2.0_00023.gwy")))
    # Gwyddion: Z scale value (2.5 V) / 65536 × DeflSens (27.39, unit-less) per stored integer;
    # ours: hard scale 0.000375 V / 256 per stored integer (32-bit data holding the 16-bit value × 256)
    _check_lawn(ds, gwy["/lawn/0"], expected_ratio=2.5 / 65536 * 27.39 * 256 / 0.000375, variable="deflection")
    image = gwy["/1/data"]
    assert gwy["/1/data/title"] == "Height"
    g = np.asarray(image["data"]).reshape(image["yres"], image["xres"])[::-1]  # Gwyddion flips images
    np.testing.assert_allclose(g, ds["Height"].values * 256, rtol=1e-9)  # Gwyddion keeps the ×256
    assert image["xreal"] == pytest.approx(ds["Height"].attrs["x_real"])


def _check_lawn(ds, lawn, expected_ratio, variable):
    nx, ny = lawn["xres"], lawn["yres"]
    assert (nx * ny * 2, 1024) == (ds.sizes["ramp"], ds.sizes["sample"])
    np.testing.assert_array_equal(lawn["curvelengths"], 2048)
    assert lawn["nsegments"] == 2
    np.testing.assert_array_equal(np.asarray(lawn["segments"]).reshape(nx * ny, 4), [[0, 1024, 1024, 2048]] * (nx * ny))
    assert lawn["xreal"] == pytest.approx(ds["Height"].attrs["x_real"])
    g = np.asarray(lawn["data"]).reshape(nx * ny, 2048)  # pixel order = file order, row by row
    ours = np.concatenate([ds[variable].values[0::2], ds[variable].values[1::2]], axis=1)  # approach | retract
    ratio = g[ours != 0] / ours[ours != 0]
    np.testing.assert_allclose(ratio, expected_ratio, rtol=1e-9)
    np.testing.assert_array_equal(g[ours == 0], 0)


def _check_single_curve_graphs(ds, gwy):
    """Gwyddion's first graph: force of the deflection channel; x = Height Sensor when recorded (sorted by
    x by Gwyddion), else the nominal Z ramp L·k/n (k counted from the far end)."""
    graph = gwy["/0/graph/graph/1"]
    k, invols = ds.attrs["spring_constant"], ds.attrs["invols"]
    unitless_deflsens = "has no unit" in " ".join(ds.attrs["bruker_notes"])
    names = {"Approach": "approach", "Extend": "approach", "Contact": "hold", "Retract": "retract"}
    assert len(graph["curves"]) == len(set(ds["direction"].values))
    for curve in graph["curves"]:
        r = int(np.flatnonzero(ds["direction"].values == names[curve["description"]])[0])
        a = ramp(ds, r)
        x, y = np.asarray(curve["xdata"]), np.asarray(curve["ydata"])
        assert len(y) == len(a["deflection"])
        force = a["deflection"] * invols * k * (1e9 if unitless_deflsens else 1.0)
        if "Height_Sensor" in a:
            ours, theirs = np.lexsort((force, a["Height_Sensor"])), np.lexsort((y, x))
            np.testing.assert_allclose(a["Height_Sensor"][ours], x[theirs], rtol=1e-9, atol=1e-15)
            np.testing.assert_allclose(force[ours], y[theirs], rtol=1e-9, atol=1e-20)
            continue
        if names[curve["description"]] == "retract":  # Gwyddion shows the retract against Z too
            force, piezo = force[::-1], a["piezo"][::-1]
            shift = ds.attrs["ramp_size"] / len(y)
        else:
            piezo, shift = a["piezo"], 0.0
        np.testing.assert_allclose(force, y, rtol=1e-9, atol=1e-20)
        np.testing.assert_allclose(ds.attrs["ramp_size"] - shift - piezo, x, rtol=1e-9, atol=1e-15)


@pytest.fixture(scope="module")
def gwyddion_convert(tmp_path_factory):
    """``convert(name)`` → the .gwy Gwyddion 2.62 writes for a Bruker file (``--convert-to-gwy``)."""
    exe = shutil.which("gwyddion")
    if exe is None:
        pytest.skip("the gwyddion program is not installed (Debian package 'gwyddion'; CI installs it)")
    home = tmp_path_factory.mktemp("gwyhome")
    cache = {}

    def convert(name):
        if name not in cache:
            out = home / (name + ".gwy")
            env = {**os.environ, "HOME": str(home)}
            env.pop("DISPLAY", None)  # --convert-to-gwy needs no X server
            proc = subprocess.run([exe, "--no-splash", f"--convert-to-gwy={out}", str(bruker(name))],
                                  env=env, capture_output=True, text=True, timeout=120)
            assert out.exists(), f"gwyddion did not convert {name}: {proc.stderr}"
            cache[name] = gwyfile.load(str(out))
        return cache[name]

    return convert


@pytest.mark.gwyddion
@pytest.mark.parametrize("name", ["nanoscope-pypi_Force.spm", "20200904_Egel4-Z1.0_00025.spm",
                                  "BrukerReader_ForceCurve_Sapphire_TAP525.001", "nanoscope-pypi_ForceHold.spm",
                                  "nanoscope-pypi_ForceHoldSweep.spm"])
def test_single_curves_agree_with_gwyddion(gwyddion_convert, name):
    _check_single_curve_graphs(open_quiet(bruker(name)), gwyddion_convert(name))


@pytest.mark.gwyddion
def test_lock_in_style_channels_agree_with_gwyddion(gwyddion_convert):
    """ForceHoldSweep: Phase2 (deg, no sensitivity) equal; Amplitude2 (mV/LSB) Gwyddion ×1000 (it takes V)."""
    name = "nanoscope-pypi_ForceHoldSweep.spm"
    ds, gwy = open_quiet(bruker(name)), gwyddion_convert(name)
    names = {"Approach": "approach", "Contact": "hold", "Retract": "retract"}
    for key, variable, factor, rtol in (("/0/graph/graph/2", "Amplitude2", 1000.0, 1e-9),
                                        ("/0/graph/graph/3", "Phase2", 1.0, 2e-8)):
        graph = gwy[key]
        assert graph["left_label"] == variable
        for curve in graph["curves"]:
            a = ramp(ds, int(np.flatnonzero(ds["direction"].values == names[curve["description"]])[0]))
            ours = a[variable] if curve["description"] == "Approach" else a[variable][::-1]
            np.testing.assert_allclose(np.asarray(curve["ydata"]), ours * factor, rtol=rtol, atol=1e-12)
    assert ds["Phase2"].attrs["units"] == "deg" and ds["Amplitude2"].attrs["units"] == "V"


@pytest.mark.gwyddion
def test_force_volume_and_images_agree_with_gwyddion(gwyddion_convert):
    name = "nanoscope-pypi_FV.spm"
    ds, gwy = open_quiet(bruker(name)), gwyddion_convert(name)
    lawn = gwy["/lawn/1"]
    assert gwy["/lawn/1/title"] == "DeflectionError" and lawn["si_units_curves"][0]["unitstr"] == "m"
    # Gwyddion: Z scale value 0.4545455 V / 65536 × 22 nm/V per integer; ours: 0.000375 V/LSB (× InvOLS)
    _check_lawn(ds, lawn, expected_ratio=0.4545455 / 65536 * 22e-9 / 0.000375, variable="deflection")
    for key, variable in (("/0/data", "Height"), ("/2/data", "Deflection_Error_image"), ("/3/data", "FV_Modulus")):
        image = gwy[key]
        g = np.asarray(image["data"]).reshape(image["yres"], image["xres"])[::-1]
        np.testing.assert_allclose(g, ds[variable].values, rtol=1e-9)
        assert image["si_unit_z"]["unitstr"] == ds[variable].attrs["units"]


@pytest.mark.gwyddion
@pytest.mark.parametrize("name", ["nanoscope-pypi_Script.spm", "nanoscope-pypi_ScriptModulation.spm"])
def test_scripted_ramps_agree_with_gwyddion_where_it_reads_them(gwyddion_convert, name):
    """Gwyddion splits the first 2 × 512 stored samples into "Extend"/"Retract", each last-sample-first; the
    rest of the script it ignores.  Those 1024 samples equal ours (segments concatenated in time order)."""
    ds, gwy = open_quiet(bruker(name)), gwyddion_convert(name)
    stored = {v: np.concatenate([ramp(ds, r)[v] for r in range(ds.sizes["ramp"])])[:1024]
              for v in ("deflection", "Height_Sensor")}
    force = stored["deflection"] * ds.attrs["invols"] * ds.attrs["spring_constant"]
    checked = 0
    for key, graph in _gwy_objects(gwy).items():
        if "/graph/" not in key or graph["left_label"] not in ("Force", "Height Sensor"):
            continue
        ours = force if graph["left_label"] == "Force" else stored["Height_Sensor"]
        theirs = np.concatenate([np.asarray(c["ydata"])[::-1] for c in graph["curves"]])
        np.testing.assert_allclose(theirs, ours, rtol=1e-9, atol=1e-20)
        checked += 1
    assert checked >= 1


def test_lazy_read_equals_eager():
    """``lazy=True`` (automatic above 512 MB per channel): dask arrays over a memory map, same numbers."""
    pytest.importorskip("dask")
    path = bruker("nanoscope-pypi_FV.spm")
    eager, lazy = open_quiet(path), open_quiet(path, lazy=True)
    assert type(lazy["deflection"].data).__module__.startswith("dask")
    assert lazy["deflection"].data.chunks[1] == (1024,)
    for variable in ("deflection", "Deflection_Error", "piezo", "time_in_ramp"):
        np.testing.assert_array_equal(lazy[variable].values, eager[variable].values)
