"""Asylum/Igor reader: real MFP-3D force curves against igor2's raw wave, afmformats and Gwyddion 2.62."""
from __future__ import annotations


import numpy as np
import pytest

import nrm_plugins as nrm
from nrm_plugins.model import validate
from nrm_plugins.readers import igor

from conftest import assert_each_raises_reader_error, gwyddion_convert, real_file

FILES = {  # file: (directions, samples per segment) from the note's Indexes/Direction
    "asylum/fmt-igor-fd_SiN_FD_plot.ibw": (["approach", "retract"], [1009, 1007]),
    "asylum/fmt-igor-fd_U3_3_p10004.ibw": (["approach", "retract"], [5058, 5039]),
    "asylum/IgorIBWReader_ForceCurve.ibw": (["approach", "retract", "hold"], [225, 1008, 28]),
}
AFMFORMATS_READS = ["asylum/fmt-igor-fd_SiN_FD_plot.ibw", "asylum/fmt-igor-fd_U3_3_p10004.ibw"]


def raw_wave(path):
    import igor2.binarywave as binarywave

    wave = binarywave.load(str(path))["wave"]
    labels = [x.decode() for x in wave["labels"][1][1:]]
    return {lab: wave["wData"][:, i].astype(float) for i, lab in enumerate(labels)}, wave


def joined(ds, var):
    """The ramps of ``var`` put back end to end (NaN padding dropped)."""
    return np.concatenate([ds[var].values[r, :int(ds[var][r].count())] for r in range(ds.sizes["ramp"])])


@pytest.mark.parametrize("name", list(FILES))
def test_identify(name, tmp_path):
    path = real_file(name)
    assert nrm.get_plugin_manager().identify(path)[0] == (100, "igor")
    data = path.read_bytes()
    damaged = bytearray(data[:4096])
    damaged[100] ^= 0xFF  # checksum no longer adds up: version bytes and suffix only
    assert igor.nrm_read_identify(tmp_path / "x.ibw", bytes(damaged)) == 50
    assert igor.nrm_read_identify(tmp_path / "x.dat", bytes(damaged)) is None
    assert igor.nrm_read_identify(tmp_path / "x.ibw", b"\xff\xfe garbage") == 10
    assert igor.nrm_read_identify(tmp_path / "x.bin", data[:4096]) == 100  # content alone


@pytest.mark.parametrize("name", list(FILES))
def test_segments_units_and_raw_values(name):
    """Every sample of the wave lands in exactly one ramp; piezo = -ZSnsr, deflection = Defl (m)."""
    path = real_file(name)
    ds = nrm.open(path)
    directions, counts = FILES[name]
    assert list(ds.direction.values) == directions
    assert list(ds.deflection.count("sample").values) == counts
    validate(ds, require=["piezo", "deflection", "time_in_ramp"])
    for var in ds.data_vars:
        assert ds[var].attrs["units"], var
    assert ds.deflection.attrs["units"] == "m" and ds.piezo.attrs["units"] == "m"
    cols, wave = raw_wave(path)
    np.testing.assert_array_equal(joined(ds, "deflection"), cols["Defl"])
    np.testing.assert_array_equal(joined(ds, "piezo"), -cols["ZSnsr"])
    np.testing.assert_array_equal(joined(ds, "Raw"), cols["Raw"])
    dt = float(wave["wave_header"]["sfA"][0])
    starts = np.cumsum([0] + counts[:-1])
    np.testing.assert_allclose(ds.time.values, starts * dt)
    np.testing.assert_allclose(ds.time_in_ramp.values[0, :3], [0, dt, 2 * dt])


@pytest.mark.parametrize("name", AFMFORMATS_READS)
def test_against_afmformats(name):
    afmformats = pytest.importorskip("afmformats")
    path = real_file(name)
    ds = nrm.open(path)
    curve = afmformats.load_data(path)[0]
    assert ds.attrs["spring_constant"] == curve.metadata["spring constant"]
    assert ds.attrs["invols"] == curve.metadata["sensitivity"]
    np.testing.assert_allclose(joined(ds, "deflection") * ds.attrs["spring_constant"], curve["force"], rtol=1e-6)
    np.testing.assert_allclose(joined(ds, "piezo"), curve["height (measured)"], rtol=1e-7)


@pytest.mark.gwyddion
@pytest.mark.parametrize("name", list(FILES))
def test_against_gwyddion(name, tmp_path):
    """Gwyddion 2.62 shows each column as a graph against time, listing the samples last first."""
    path = real_file(name)
    loaded = gwyddion_convert(path, tmp_path / "w.gwy")
    graphs = {g["title"]: g["curves"][0] for k, g in loaded.items() if k.startswith("/0/graph/graph/")}
    ds = nrm.open(path)
    for title, var, sign in (("Defl", "deflection", 1), ("ZSnsr", "piezo", -1), ("Raw", "Raw", 1)):
        theirs = np.asarray(graphs[title]["ydata"])[::-1]
        np.testing.assert_allclose(sign * joined(ds, var), theirs, rtol=1e-6)
        assert np.diff(graphs[title]["xdata"])[0] == pytest.approx(ds.time_in_ramp.values[0, 1])


@pytest.mark.parametrize("name", list(FILES))
def test_piezo_larger_is_farther_on_approach(name):
    ds = nrm.open(real_file(name))
    n = int(ds.piezo[0].count())
    piezo, defl = ds.piezo.values[0, :n], ds.deflection.values[0, :n]
    assert ds.direction.values[0] == "approach"
    assert piezo[-1] < piezo[0]
    free = defl[: n // 2]
    top = int(np.argmax(defl))  # the strongest push where the piezo is closest
    assert piezo[top] <= np.quantile(piezo, 0.05)
    assert defl[top] - np.median(free) > 5 * np.std(free)


def test_note_without_date_opens():
    """afmformats fails on this file (no Date key); we take the start from Seconds (Igor's 1904 clock)."""
    ds = nrm.open(real_file("asylum/IgorIBWReader_ForceCurve.ibw"))
    assert ds.attrs["start_time"] == "2016-02-25T14:32:00.083000"
    assert ds.attrs["spring_constant"] == 0.018189 and ds.attrs["invols"] == 1e-7
    # a force-map point: its own XLVDT/YLVDT come last in the note and win over the map's
    assert float(ds.x[0]) == 3.1665e-06 and float(ds.y[0]) == -4.1177e-08


def test_missing_calibration_warns_and_strict_raises(tmp_path):
    data = real_file("asylum/fmt-igor-fd_SiN_FD_plot.ibw").read_bytes()
    damaged = data.replace(b"\rSpringConstant:", b"\rSpringKonstant:")  # same length: the sizes stay valid
    assert damaged != data
    path = tmp_path / "nok.ibw"
    path.write_bytes(damaged)
    with pytest.warns(UserWarning, match="spring constant"):
        ds = nrm.open(path)
    assert "spring_constant" not in ds.attrs and ds.attrs["invols"] == 4.499e-08
    with pytest.raises(nrm.ReaderError, match="nok.ibw.*spring constant"):
        nrm.open(path, strict=True)


def test_bad_files_raise_reader_error(tmp_path):
    data = real_file("asylum/fmt-igor-fd_SiN_FD_plot.ibw").read_bytes()
    cases = {
        "empty.ibw": b"",
        "random.ibw": np.random.default_rng(5).integers(0, 256, 3000, dtype=np.uint8).tobytes(),
        "truncated.ibw": data[: len(data) // 2],
        "short_header.ibw": data[:100],
        "checksum.ibw": data[:50] + bytes([data[50] ^ 0x55]) + data[51:],
    }
    assert_each_raises_reader_error(tmp_path, cases)
    with pytest.raises(nrm.ReaderError, match="truncated: the Igor header announces 41227 bytes"):
        nrm.open(tmp_path / "truncated.ibw")


def test_wave_that_is_not_a_force_curve(tmp_path):
    data = real_file("asylum/fmt-igor-fd_SiN_FD_plot.ibw").read_bytes()
    head, tail = data[:41099], data[41099:]  # the column labels follow the note (ends at byte 41099)
    for old, new in ((b"Raw", b"Abc"), (b"Defl", b"Wxyz"), (b"ZSnsr", b"Qwert")):
        tail = tail.replace(old, new)
    path = tmp_path / "image_like.ibw"
    path.write_bytes(head + tail)
    expected = r"image_like.ibw: not an Asylum force curve: no .* among \['Abc', 'Wxyz', 'Qwert'\]"
    with pytest.raises(nrm.ReaderError, match=expected):
        nrm.open(path)


def test_note_parser():
    note = b"A:1\rB: two words\rInvOLS: 4.5e-08\r\nC:x:y\nA:3\r"
    assert igor.parse_note(note) == {"A": "3", "B": "two words", "InvOLS": "4.5e-08", "C": "x:y"}
