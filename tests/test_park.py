"""Park Systems TIFF reader: spectroscopy against the documented layout and the file's own Force channel,
images against Gwyddion 2.62 (psia module). The Park files are AGPL: read from ../shared, never copied."""
from __future__ import annotations

import struct

import numpy as np
import pytest
import tifffile

import nrm_plugins as nrm
from nrm_plugins.model import validate
from nrm_plugins.readers import park

from conftest import assert_each_raises_reader_error, gwyddion_convert, real_file

FORCE = "park/ForceCurve_009.tiff"
IMAGES = ["park/ForceCurve_009.tiff", "park/Park_20210916_034.tiff", "park/example_ps.tiff"]


@pytest.fixture(scope="module")
def force():
    return nrm.open(real_file(FORCE))


@pytest.fixture(scope="module")
def raw():
    """Independent decoding of the spectroscopy tags (docs/readers/park.md): curves × sources × points."""
    with tifffile.TiffFile(real_file(FORCE)) as tif:
        tags = tif.pages[0].tags
        header = tags[50438].value
        data = np.frombuffer(tags[50439].value, "<f4").reshape(7, 5, 1024).astype(float)
        image_header = tags[50435].value
    return data, header, image_header


def test_identify(tmp_path):
    for name in IMAGES:
        assert nrm.get_plugin_manager().identify(real_file(name))[0] == (100, "park")
    plain = tmp_path / "plain.tiff"
    tifffile.imwrite(plain, np.zeros((4, 4), np.uint8))
    assert park.nrm_read_identify(plain, plain.read_bytes()[:4096]) == 10  # a TIFF, not Park: suffix only
    with pytest.raises(nrm.ReaderError, match="plain.tiff.*magic number"):
        nrm.open(plain)
    other = tmp_path / "plain.bin"
    other.write_bytes(b"II*\x00" + bytes(60))
    assert park.nrm_read_identify(other, other.read_bytes()) is None


def test_spectroscopy_header(raw):
    _, header, _ = raw
    spec = park.spectroscopy_header(header)
    assert [s["name"] for s in spec["sources"]] == ["Vertical (A-B)", "Force", "Z Scan", "Z Detector", "Time Stamp"]
    assert [s["unit"] for s in spec["sources"]] == ["V", "nN", "um", "um", "usec"]
    assert (spec["n_curves"], spec["points_per_curve"], spec["driving_source"]) == (7, 1024, 2)
    assert spec["force_constant_N_per_m"] == 42.0
    assert spec["sensitivity_V_per_um"] == pytest.approx(59.988, abs=1e-3)
    assert spec["forward_period_s"] == pytest.approx(160.1, abs=1e-4)
    assert len(spec["positions_um"]) == 7 and spec["positions_um"][0] == pytest.approx([2.6475611, 1.9969512])


def test_ramps_against_documented_layout(force, raw):
    """Curve c, forward half → ramp 2c (approach), backward half → ramp 2c+1 (retract), SI units.

    The acquired length of each half is where the Time Stamp stops increasing (the vendor repeats the
    last sample to fill the half) — an independent criterion from the reader's.
    """
    data, _, _ = raw
    assert force.sizes["ramp"] == 14
    validate(force, require=["piezo", "deflection", "time_in_ramp"])
    for var in force.data_vars:
        assert force[var].attrs["units"], var
    units = {v: force[v].attrs["units"] for v in ("deflection", "Force", "piezo", "Z_Detector", "time_in_ramp")}
    assert units == {"deflection": "V", "Force": "N", "piezo": "m", "Z_Detector": "m", "time_in_ramp": "s"}
    assert force.piezo.attrs["long_name"] == "Z Scan" and force.deflection.attrs["long_name"] == "Vertical (A-B)"
    for c in range(7):
        for h, direction in ((0, "approach"), (1, "retract")):
            half = data[c, :, 512 * h: 512 * (h + 1)]
            n = 1 + int(np.sum(np.diff(half[4]) > 0))  # time stamps that advance
            assert np.all(np.diff(half[4])[n - 1:] == 0)
            ramp = force.isel(ramp=2 * c + h)
            assert ramp.direction.item() == direction and int(ramp["index"]) == c
            assert int(ramp.deflection.count()) == n
            np.testing.assert_array_equal(ramp.deflection.values[:n], half[0, :n])
            np.testing.assert_allclose(ramp.Force.values[:n], half[1, :n] * 1e-9, rtol=1e-15)
            np.testing.assert_allclose(ramp.piezo.values[:n], half[2, :n] * 1e-6, rtol=1e-15)
            np.testing.assert_allclose(ramp.Z_Detector.values[:n], half[3, :n] * 1e-6, rtol=1e-15)
            np.testing.assert_allclose(ramp.time_in_ramp.values[:n], (half[4, :n] - half[4, 0]) * 1e-6, rtol=1e-12)
            assert np.isnan(ramp.deflection.values[n:]).all()


def test_force_relation_inside_the_file(force, raw):
    """The file's Force channel is F = k (V - V0) / (S f) with V0 one offset per curve.

    k = 42 N/m and S = 59.988 V/um from the spectroscopy header, f = 0.92370 the intensity factor of the
    image header (byte 424): slope 757.975 nN/V for all seven curves, residuals at float32 rounding.
    Without f the slope would be 700.14 nN/V (8 % off): the factor is needed.
    """
    _, _, image_header = raw
    k = force.attrs["spring_constant"]
    f = struct.unpack_from("<d", image_header, 424)[0]
    assert f == pytest.approx(0.9236979, abs=1e-7) and force.attrs["park_intensity_factor"] == f
    slope = k * force.attrs["invols"]  # N/V
    assert slope == pytest.approx(k / (59.988e6 * f), rel=1e-4)
    assert slope * 1e9 == pytest.approx(757.975, abs=1e-3)
    for c in range(7):
        ramps = force.isel(ramp=[2 * c, 2 * c + 1])
        v = ramps.deflection.values.ravel()
        F = ramps.Force.values.ravel()
        ok = np.isfinite(v)
        fitted_slope, intercept = np.polyfit(v[ok], F[ok], 1)
        assert fitted_slope == pytest.approx(slope, rel=1e-6)
        v0 = np.mean(v[ok] - F[ok] / slope)
        assert -0.62 < v0 < -0.58  # the free-cantilever deflection of each curve
        assert np.max(np.abs(F[ok] - slope * (v[ok] - v0))) < 2e-13  # 0.2 pN on forces up to 1.5 uN
        assert abs(fitted_slope - k / 59.988e6) / slope > 0.07


def test_piezo_larger_is_farther_on_approach(force):
    for r in np.flatnonzero(force.direction.values == "approach"):
        n = int(force.piezo[r].count())
        piezo, defl = force.piezo.values[r, :n], force.deflection.values[r, :n]
        assert piezo[-1] < piezo[0]  # Z Scan falls toward the sample
        top = int(np.argmax(defl))
        assert top >= n - 2 and defl[top] - np.median(defl[:20]) > 1.5  # pushed away by ~2 V at the end
        assert force.Force.values[r, top] > 1e-6  # and the vendor's force is repulsive there


def test_positions_and_image(force):
    topo = force.Topography
    assert topo.dims == ("row", "col") and topo.shape == (256, 256) and topo.attrs["units"] == "m"
    assert topo.attrs["x_real"] == pytest.approx(3.25e-6) and topo.attrs["y_real"] == pytest.approx(3.25e-6)
    assert topo.attrs["x_offset"] == pytest.approx(0.0) and topo.attrs["y_offset"] == pytest.approx(-0.5e-6)
    x0, y0 = topo.attrs["x_offset"], topo.attrs["y_offset"]
    assert np.all((force.x.values > x0) & (force.x.values < x0 + topo.attrs["x_real"]))
    assert np.all((force.y.values > y0) & (force.y.values < y0 + topo.attrs["y_real"]))
    assert force.x.values[0] == pytest.approx(2.6475611e-6) and force.y.values[0] == pytest.approx(1.9969512e-6)


@pytest.mark.gwyddion
@pytest.mark.parametrize("name", IMAGES)
def test_images_against_gwyddion(name, tmp_path):
    path = real_file(name)
    loaded = gwyddion_convert(path, tmp_path / "image.gwy")
    container = loaded
    field = container["/0/data"]
    ds = nrm.open(path)
    images = [v for v in ds.data_vars if ds[v].dims == ("row", "col")]
    assert len(images) == 1
    image = ds[images[0]]
    assert image.attrs["long_name"] == container["/0/data/title"]
    assert image.shape == (field["yres"], field["xres"])
    np.testing.assert_allclose(image.values, np.asarray(field["data"]).reshape(field["yres"], field["xres"]),
                               rtol=1e-12, atol=1e-24)
    assert image.attrs["x_real"] == pytest.approx(field["xreal"], rel=1e-12)
    assert image.attrs["y_real"] == pytest.approx(field["yreal"], rel=1e-12)
    assert image.attrs["units"] == field["si_unit_z"]["unitstr"] == "m"


def test_image_only_files():
    ds = nrm.open(real_file("park/Park_20210916_034.tiff"))
    assert "ramp" not in ds.dims and list(ds.data_vars) == ["Topography"]
    ds = nrm.open(real_file("park/example_ps.tiff"))
    assert list(ds.data_vars) == ["Z_Height"] and ds.Z_Height.shape == (512, 512)


def test_bad_files_raise_reader_error(tmp_path):
    data = real_file(FORCE).read_bytes()
    cases = {
        "empty.tiff": b"",
        "random.tiff": np.random.default_rng(7).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "truncated.tiff": data[: len(data) // 2],
        "truncated_end.tiff": data[:-1000],
    }
    assert_each_raises_reader_error(tmp_path, cases)
    with pytest.raises(nrm.ReaderError, match="truncated: the TIFF directory points to data up to byte 476887"):
        nrm.open(tmp_path / "truncated_end.tiff")


def test_units():
    assert park.si_unit("um") == ("m", 1e-6)
    assert park.si_unit("nN") == ("N", 1e-9)
    assert park.si_unit("usec") == ("s", 1e-6)
    assert park.si_unit("V") == ("V", 1.0)
    assert park.si_unit("deg") == ("deg", 1.0)
    assert park.si_unit("arb") == ("arb", 1.0)
