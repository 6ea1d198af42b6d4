"""JPK reader: real JPK files against afmformats (an independent MIT reader) and Gwyddion 2.62."""
from __future__ import annotations

import shutil
import warnings
import zipfile

import numpy as np
import pytest

import nrm_plugins as nrm
from nrm_plugins.model import validate
from nrm_plugins.readers import jpk

from conftest import gwyddion_convert, real_file

FILES = {  # file: (curves, samples per segment)
    "jpk/fmt-jpk-fd_spot3-0192.jpk-force": (1, 2000),
    "jpk/fmt-jpk-fd_map2x2_extracted.jpk-force-map": (4, 12030),
    "jpk/fmt-jpk-fd_2020.02.07-16.29.05.036.jpk-qi-data": (4, 300),
}
CALIBRATION_FILE = "jpk/fmt-jpk-cl_calibration_force-save-2015.02.04-11.25.21.294.jpk-force"


@pytest.fixture(scope="module")
def opened():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = nrm.open(real_file(name))
        return cache[name]
    return get


@pytest.mark.parametrize("name", list(FILES))
def test_identify_by_content(name, tmp_path):
    path = real_file(name)
    assert nrm.get_plugin_manager().identify(path)[0] == (100, "jpk")
    renamed = tmp_path / "curve.bin"  # content alone is enough
    shutil.copy(path, renamed)
    assert jpk.nrm_read_identify(renamed, renamed.read_bytes()[:4096]) == 100
    other = tmp_path / "x.jpk-force"  # suffix alone
    other.write_bytes(b"not a zip at all")
    assert jpk.nrm_read_identify(other, other.read_bytes()) == 10
    plain_zip = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain_zip, "w") as z:
        z.writestr("readme.txt", "hello")
    assert jpk.nrm_read_identify(plain_zip, plain_zip.read_bytes()[:4096]) is None


@pytest.mark.parametrize("name", list(FILES))
def test_model_and_units(name, opened):
    ds = opened(name)
    curves, n = FILES[name]
    assert ds.sizes["ramp"] == 2 * curves
    assert ds.sizes["sample"] == n
    validate(ds, require=["piezo", "deflection", "time_in_ramp"])
    for var in ds.data_vars:
        assert ds[var].attrs["units"], var
    assert ds.deflection.attrs["units"] == "V" and ds.deflection.attrs["long_name"] == "vDeflection"
    assert ds.piezo.attrs["units"] == "m"
    assert ds.deflection.attrs["jpk_conversion"] == "volts" and ds.height.attrs["jpk_conversion"] == "calibrated"
    assert list(ds.direction.values) == ["approach", "retract"] * curves
    # no ramp is padded with zeros: every ramp's samples are finite up to its length, NaN after
    counts = ds.deflection.count("sample").values
    for r in range(ds.sizes["ramp"]):
        assert np.isfinite(ds.deflection.values[r, :counts[r]]).all()
        assert np.isnan(ds.deflection.values[r, counts[r]:]).all()


@pytest.mark.parametrize("name", list(FILES))
def test_against_afmformats(name, opened):
    """Heights, force and time equal afmformats' values for every curve and segment (same float32 math)."""
    afmformats = pytest.importorskip("afmformats")
    ds = opened(name)
    group = afmformats.load_data(real_file(name))
    assert len(group) == FILES[name][0]
    for j, curve in enumerate(group):
        meta = curve.metadata
        assert ds.attrs["spring_constant"] == pytest.approx(meta["spring constant"], rel=1e-12)
        assert ds.attrs["invols"] == pytest.approx(meta["sensitivity"], rel=1e-12)
        segment = np.asarray(curve["segment"])
        for s, direction in ((0, "approach"), (1, "retract")):
            ramp = ds.isel(ramp=2 * j + s)
            assert ramp.direction.item() == direction
            assert float(ramp.x) == pytest.approx(meta["position x"])
            assert float(ramp.y) == pytest.approx(meta["position y"])
            sel = segment == s
            n = int(sel.sum())
            assert int(ramp.deflection.count()) == n
            np.testing.assert_allclose(ramp.piezo.values[:n], curve["height (measured)"][sel], rtol=1e-12, atol=0)
            np.testing.assert_allclose(ramp.height.values[:n], curve["height (piezo)"][sel], rtol=1e-12, atol=0)
            force = ramp.deflection.values[:n] * ds.attrs["invols"] * ds.attrs["spring_constant"]
            np.testing.assert_allclose(force, curve["force"][sel], rtol=1e-12, atol=1e-24)
            t = np.asarray(curve["time"])[sel]
            np.testing.assert_allclose(ramp.time_in_ramp.values[:n], t - t[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(FILES) + [CALIBRATION_FILE])
def test_piezo_larger_is_farther_on_approach(name):
    """On every approach the tip moves toward the sample: piezo falls and the deflection rises at contact."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = nrm.open(real_file(name))
    for r in np.flatnonzero(ds.direction.values == "approach"):
        n = int(ds.piezo[r].count())
        piezo, defl = ds.piezo.values[r, :n], ds.deflection.values[r, :n]
        assert piezo[-1] < piezo[0]
        free = defl[: n // 2]
        top = int(np.argmax(defl))  # the strongest push happens where the piezo is closest
        assert piezo[top] <= np.quantile(piezo, 0.05)
        assert defl[top] - np.median(free) > 5 * np.std(free)


def test_calibration_file_warns_and_strict_raises():
    path = real_file(CALIBRATION_FILE)
    with pytest.warns(UserWarning, match="spring constant.*sensitivity"):
        ds = nrm.open(path)
    assert "spring_constant" not in ds.attrs and "invols" not in ds.attrs
    assert ds.deflection.attrs["units"] == "V"
    with pytest.raises(nrm.ReaderError) as info:
        nrm.open(path, strict=True)
    assert path.name in str(info.value) and "spring constant" in str(info.value)


@pytest.mark.gwyddion
def test_calibration_file_against_gwyddion(tmp_path):
    """Gwyddion 2.62 (jpkscan) reads this file as graphs: same vDeflection (V) and height sensors (m).

    Gwyddion lists each curve by increasing abscissa (the approach reversed) and its abscissa is the
    calibrated height less a constant (Gwyddion leaves out the vendor's offsets: 7.000007e-5 m here).
    """
    path = real_file(CALIBRATION_FILE)
    loaded = gwyddion_convert(path, tmp_path / "cal.gwy")
    graphs = {g["title"]: g for k, g in loaded.items() if k.startswith("/0/graph/graph/")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = nrm.open(path)
    for title, var in (("vDeflection", "deflection"), ("capacitiveSensorHeight", "capacitiveSensorHeight"),
                       ("measuredHeight", "piezo")):
        curves = graphs[title]["curves"]
        assert len(curves) == ds.sizes["ramp"] == 2
        for r, curve in enumerate(curves):
            flip = slice(None, None, -1) if ds.height.values[r][0] > ds.height.values[r][-1] else slice(None)
            np.testing.assert_allclose(np.asarray(curve["ydata"]), ds[var].values[r][flip], rtol=1e-12)
            shift = ds.height.values[r][flip] - np.asarray(curve["xdata"])
            assert np.ptp(shift) < 1e-15  # same scale: the sample-to-sample steps agree exactly


def test_coordinates(opened):
    ds = opened("jpk/fmt-jpk-fd_map2x2_extracted.jpk-force-map")
    assert list(ds["index"].values) == [0, 0, 9, 9, 90, 90, 99, 99]  # grid positions of the 2 x 2 extract
    assert ds.x.values[2] == pytest.approx(5.718359375e-4) and ds.y.values[0] == pytest.approx(-7.5353515625e-4)
    assert ds.time.values[0] == 0 and ds.time.values[1] == pytest.approx(6.001, abs=1e-9)
    assert ds.time_in_ramp.values[0, 1] == pytest.approx(6.0 / 12030)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04" + bytes(100),
                                     np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes()])
def test_bad_files_raise_reader_error(content, tmp_path):
    path = tmp_path / "bad.jpk-force"
    path.write_bytes(content)
    with pytest.raises(nrm.ReaderError) as info:
        nrm.open(path)
    assert "bad.jpk-force" in str(info.value)


def test_truncated_and_damaged_members(tmp_path):
    src = real_file("jpk/fmt-jpk-fd_spot3-0192.jpk-force")
    data = src.read_bytes()
    truncated = tmp_path / "truncated.jpk-force"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(nrm.ReaderError, match="truncated.jpk-force.*zip"):
        nrm.open(truncated)
    # a channel shorter than its header says
    short = tmp_path / "short.jpk-force"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(short, "w") as zout:
        for item in zin.infolist():
            payload = zin.read(item)
            if item.filename == "segments/0/channels/vDeflection.dat":
                payload = payload[:-10]
            zout.writestr(item, payload)
    with pytest.raises(nrm.ReaderError, match=r"segment 0: channel 'vDeflection' holds 3990 bytes"):
        nrm.open(short)


def test_properties_parser():
    text = b"#comment\nkey.a=1.5\nkey.b=2016-03-31 17\\:51\\:14.543 +0200\nunit=100\\u00B5m\n\nempty=\n"
    props = jpk.parse_properties(text)
    assert props == {"key.a": "1.5", "key.b": "2016-03-31 17:51:14.543 +0200", "unit": "100\u00b5m", "empty": ""}
