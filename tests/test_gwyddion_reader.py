"""Gwyddion ``.gwy`` reader: numbers against an independent parse (``gwyfile.load``), the source files
that Gwyddion 2.62 converted (MANIFEST.md), and Gwyddion itself (``gwyddion --convert-to-gwy``)."""
from __future__ import annotations

import shutil
import subprocess
import warnings

import gwyfile
import numpy as np
import pytest
from gwyfile.objects import GwyContainer, GwyObject, GwySIUnit

import nrm_plugins as nrm
from nrm_plugins.readers import gwyddion as gwy_reader
from nrm_plugins.readers.gwyddion.serialization import GwyFormatError, loads

CURVEMAP = "gwyddion/gwy262_curvemap_from_20200903_Egel2.0_00023.gwy"
GRAPHS = "gwyddion/gwy262_graphs_from_nanoscope-pypi_Force.gwy"
SPECTRA = "gwyddion/gwy262_spectra_from_nanonis-xarray_z.gwy"
needs_gwyddion = pytest.mark.skipif(shutil.which("gwyddion") is None, reason="Debian 'gwyddion' is not installed")


def _open(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return nrm.open(path)


# ---------------------------------------------------------------------------------------------- curve map
def test_curve_map_matches_manifest_and_gwyfile(real):
    path = real(CURVEMAP)
    ds = _open(path)
    assert ds.attrs["reader"] == "gwyddion"
    # MANIFEST: 16 x 16 pixels, one curve "DeflectionError" (V), 2048 samples, 2 segments, Height image
    assert ds.sizes["ramp"] == 16 * 16 * 2 and ds.sizes["sample"] == 1024
    assert ds["deflection"].attrs["units"] == "V" and ds["deflection"].attrs["long_name"] == "DeflectionError"
    assert list(ds["direction"].values[:4]) == ["approach", "retract", "approach", "retract"]
    assert "piezo" not in ds  # Gwyddion's curve map of this force volume holds no Z curve
    # independent parse: pixel-major, curve-major inside a pixel; segments [0,1024) and [1024,2048)
    lawn = gwyfile.load(str(path))["/lawn/0"]
    raw = np.asarray(lawn["data"]).reshape(256, 2048)
    bounds = np.asarray(lawn["segments"]).reshape(256, 2, 2)
    assert (bounds == [[0, 1024], [1024, 2048]]).all()
    got = ds["deflection"].values.reshape(256, 2, 1024)
    np.testing.assert_array_equal(got[:, 0], raw[:, :1024])
    np.testing.assert_array_equal(got[:, 1], raw[:, 1024:])
    # approach ends in contact: the deflection rises at the end of the approach, falls along the retract
    assert np.median(got[:, 0, -10:].mean(1) - got[:, 0, :10].mean(1)) > 100
    # ramp coordinates: pixel centres of a 2 um map, row-major from the top-left
    step = 2e-6 / 16
    np.testing.assert_allclose(ds["x"].values[[0, 2, 32]], [0.5 * step, 1.5 * step, 0.5 * step])
    np.testing.assert_allclose(ds["y"].values[[0, 2, 32]], [0.5 * step, 0.5 * step, 1.5 * step])
    assert ds["x"].attrs["units"] == "m"
    # the Height image with its real size, and the Bruker header that Gwyddion kept as metadata
    height = ds["Height"]
    assert height.dims == ("row", "col") and height.shape == (16, 16) and height.attrs["units"] == "m"
    assert height.attrs["x_real"] == pytest.approx(2e-6) and height.attrs["y_real"] == pytest.approx(2e-6)
    np.testing.assert_array_equal(height.values, np.asarray(gwyfile.load(str(path))["/1/data"]["data"]).reshape(16, 16))
    assert ds.attrs["vendor_header"]["/1/meta"]["Sens. Zsens"] == "13.20300 nm/V"


# ---------------------------------------------------------------------------------------------- graphs
def test_graphs_one_ramp_per_curve_with_normalised_piezo(real):
    path = real(GRAPHS)
    ds = _open(path)
    raw = gwyfile.load(str(path))
    # MANIFEST: two graphs, Approach and Retract of 1024 points: N against m, and N against an index
    assert ds.sizes["ramp"] == 4 and ds.sizes["sample"] == 1024
    assert list(ds["direction"].values) == ["approach", "retract", "approach", "retract"]
    g1, g2 = raw["/0/graph/graph/1"]["curves"], raw["/0/graph/graph/2"]["curves"]
    for i, curve in enumerate(g1):  # x in m: piezo, normalised; Force kept in N
        np.testing.assert_array_equal(ds["Force"].values[i], curve["ydata"])
        np.testing.assert_array_equal(ds["piezo"].values[i], -np.asarray(curve["xdata"]))
        assert np.isnan(ds["sweep"].values[i]).all()
    for i, curve in enumerate(g2, start=2):  # unitless x (sample number): sweep, no piezo
        np.testing.assert_array_equal(ds["Force"].values[i], curve["ydata"])
        np.testing.assert_array_equal(ds["sweep"].values[i], curve["xdata"])
        assert np.isnan(ds["piezo"].values[i]).all()
    assert ds["piezo"].attrs["units"] == "m" and ds["Force"].attrs["units"] == "N"
    assert ds["sweep"].attrs["units"] == "1" and ds["sweep"].attrs["long_name"] == "Sample number"
    # normalisation on the approach curve: the force is highest (contact) where the piezo is smallest
    piezo, force = ds["piezo"].values[0], ds["Force"].values[0]
    near, far = np.argsort(piezo)[:50], np.argsort(piezo)[-50:]
    assert force[near].mean() > force[far].mean() + 1e-8
    assert "piezo = -x" in ds["piezo"].attrs["normalisation"]


# ---------------------------------------------------------------------------------------------- spectra
def _nanonis_dat_columns(path):
    lines = path.read_text(encoding="latin-1").splitlines()
    start = lines.index("[DATA]") + 1
    names = lines[start].split("\t")
    values = np.array([[float(v) for v in line.split("\t") if v.strip()] for line in lines[start + 1:] if line.strip()])
    return {name: values[:, k] for k, name in enumerate(names)}


def test_spectra_equal_the_nanonis_columns_gwyddion_read(real):
    path = real(SPECTRA)
    ds = _open(path)
    columns = _nanonis_dat_columns(real("nanonis/nanonis-xarray_z.dat"))
    # one point (X, Y of the .dat header), 200 samples; Gwyddion wrote each channel's own unit as the
    # x unit, so the spectra split by x unit: A, V, m, deg, Hz
    assert ds.sizes["sample"] == 200 and ds.sizes["ramp"] == 5
    np.testing.assert_allclose(ds["x"].values, 190.67e-9)
    np.testing.assert_allclose(ds["y"].values, 49.4127e-9)
    current = ds["Current_AVG"].values
    ramp = int(np.flatnonzero(np.isfinite(current[:, 0]))[0])
    np.testing.assert_allclose(current[ramp], columns["Current [AVG] (A)"], rtol=1e-12)
    # Gwyddion dropped "[bwd]" from the titles: the second "Current [AVG]" is the backward sweep
    np.testing.assert_allclose(ds["Current_AVG_2"].values[ramp], columns["Current [AVG] [bwd] (A)"], rtol=1e-12)
    np.testing.assert_allclose(ds["LIX_1_omega_00002"].values[ramp], columns["LIX 1 omega [00002] (A)"], rtol=1e-12)
    # abscissa off + i * real / res: starts at the .dat's Z rel, within one step of it everywhere
    z_rel = columns["Z rel (m)"]
    axis = ds["sweep"].values[ramp]
    assert axis[0] == pytest.approx(z_rel[0]) and np.abs(axis - z_rel).max() < 3.6e-12
    assert sum(v.startswith("sweep") for v in ds.data_vars) == 5  # one abscissa per x unit, none invented
    # MANIFEST: one GwySpectra per column of the .dat: every column but Z rel is a channel, measured once
    spectra = [v for v in ds.data_vars if not v.startswith("sweep")]
    assert len(spectra) == len(columns) - 1 == 72
    assert all(np.isfinite(ds[v].values).all(axis=1).sum() == 1 for v in spectra)


# ---------------------------------------------------------------------------------------------- images
def test_images_with_sizes_units_and_titles(real):
    ds = _open(real("gwyddion/gwyfile_test.gwy"))
    raw = gwyfile.load(str(real("gwyddion/gwyfile_test.gwy")))["/0/data"]
    assert "ramp" not in ds.dims
    test = ds["Test"]
    assert test.shape == (128, 128) and test.attrs["units"] == "1" and test.attrs["x_real"] == 128.0
    np.testing.assert_array_equal(test.values, np.asarray(raw["data"]).reshape(128, 128))
    assert ds.attrs["gwy_objects_not_read"] == ["/0/select/pointer (GwySelectionPoint)"]


def test_old_gwyo_file_units_lose_their_prefix(real):
    ds = _open(real("gwyddion/GwiddionReader_chip.gwy"))
    image = ds["image_0"]  # MANIFEST: 300 x 300 image in m
    assert ds.attrs["file_format"] == "gwy (GWYO)"
    assert image.shape == (300, 300) and image.attrs["units"] == "m" and image.attrs["xy_units"] == "m"
    assert image.attrs["x_real"] == pytest.approx(8e-5)
    assert float(image.values[0, 0]) == pytest.approx(1.8345124e-05)


@needs_gwyddion
def test_old_gwyo_file_equals_gwyddions_own_conversion(real, tmp_path):
    """Gwyddion reads the GWYO file and writes GWYP; gwyfile parses that: same values, sizes, units."""
    out = tmp_path / "chip.gwy"
    subprocess.run(["gwyddion", "--convert-to-gwy=" + str(out), str(real("gwyddion/GwiddionReader_chip.gwy"))],
                   check=True, capture_output=True, timeout=120)
    field = gwyfile.load(str(out))["/0/data"]
    image = _open(real("gwyddion/GwiddionReader_chip.gwy"))["image_0"]
    np.testing.assert_array_equal(image.values, np.asarray(field["data"]).reshape(300, 300))
    assert image.attrs["x_real"] == field["xreal"] and image.attrs["units"] == field["si_unit_z"]["unitstr"]


# ---------------------------------------------------------------------------------------------- synthetic lawn
def _unit(text):
    return GwySIUnit(unitstr=text)


def _lawn_file(path, heights, deflections, lengths, segments, labels=("Extend", "Retract")):
    """A 2 x 1 curve map with Height (m) and Deflection (V) curves of per-pixel lengths."""
    lawn = GwyObject("GwyLawn")
    data = np.concatenate([np.concatenate([h, d]) for h, d in zip(heights, deflections)])
    values = {"xres": 2, "yres": 1, "xreal": 2e-6, "yreal": 1e-6, "xoff": 1e-6, "yoff": 0.0,
              "si_unit_xy": _unit("m"), "ncurves": 2, "curvelengths": np.asarray(lengths, "<i4"),
              "data": np.asarray(data, "<f8"), "si_units_curves": [_unit("m"), _unit("V")],
              "curve_labels": ["Height", "Deflection"], "nsegments": 2,
              "segments": np.asarray(segments, "<i4").ravel(), "segment_labels": list(labels)}
    codes = {"xres": "i", "yres": "i", "xreal": "d", "yreal": "d", "xoff": "d", "yoff": "d", "si_unit_xy": "o",
             "ncurves": "i", "curvelengths": "I", "data": "D", "si_units_curves": "O", "curve_labels": "S",
             "nsegments": "i", "segments": "I", "segment_labels": "S"}
    lawn.update(values)
    lawn.typecodes.update(codes)
    container = GwyContainer()
    container["/lawn/0"] = lawn
    container["/lawn/0/title"] = "synthetic"
    container.typecodes["/lawn/0/title"] = "s"
    container.tofile(str(path))
    return path


def _synthetic(tmp_path):
    # pixel 0: 6 + 4 samples, pixel 1: 4 + 4; the height grows along the approach (Bruker-like Z)
    heights = [np.array([0, 1, 2, 3, 4, 5, 5, 4, 3, 2]) * 1e-8, np.array([0, 2, 4, 6, 6, 4, 2, 0]) * 1e-8]
    deflections = [np.array([0, 0, 0, 0.1, 0.5, 1.0, 1.0, 0.5, 0.1, 0]), np.array([0, 0, 0.4, 1.2, 1.2, 0.4, 0, 0])]
    segments = [[[0, 6], [6, 10]], [[0, 4], [4, 8]]]
    return _lawn_file(tmp_path / "lawn.gwy", heights, deflections, [10, 8], segments), heights, deflections


def test_lawn_with_different_lengths_and_height_curve(tmp_path):
    path, heights, deflections = _synthetic(tmp_path)
    ds = _open(path)
    assert ds.sizes["ramp"] == 4 and ds.sizes["sample"] == 6
    assert list(ds["direction"].values) == ["approach", "retract", "approach", "retract"]
    # the height grows during the approach: piezo = -height (larger = farther)
    np.testing.assert_array_equal(ds["piezo"].values[0], -heights[0][:6])
    np.testing.assert_array_equal(ds["piezo"].values[1, :4], -heights[0][6:])
    np.testing.assert_array_equal(ds["piezo"].values[3, :4], -heights[1][4:])
    assert np.isnan(ds["piezo"].values[3, 4:]).all()  # NaN-padded, not zero-filled
    np.testing.assert_array_equal(ds["deflection"].values[2, :4], deflections[1][:4])
    assert ds["piezo"].attrs["long_name"] == "Height" and "-height" in ds["piezo"].attrs["normalisation"]
    np.testing.assert_allclose(ds["x"].values, [1.5e-6, 1.5e-6, 2.5e-6, 2.5e-6])
    np.testing.assert_allclose(ds["y"].values, 0.5e-6)


@needs_gwyddion
def test_synthetic_lawn_is_what_gwyddion_reads(tmp_path):
    """Gwyddion accepts the synthetic curve map (a size mismatch would drop it) and our reading of its
    re-serialization equals our reading of the original."""
    path, _, _ = _synthetic(tmp_path)
    out = tmp_path / "roundtrip.gwy"
    result = subprocess.run(["gwyddion", "--convert-to-gwy=" + str(out), str(path)], capture_output=True, text=True,
                            timeout=120)
    assert out.exists() and "CRITICAL" not in result.stderr, result.stderr
    a, b = _open(path), _open(out)
    for name in ("piezo", "deflection"):
        np.testing.assert_array_equal(a[name].values, b[name].values)


# ---------------------------------------------------------------------------------------------- detection, errors
def test_identify_by_content(tmp_path, real):
    assert gwy_reader.nrm_read_identify(path=tmp_path / "x.bin", head=b"GWYPGwyContainer\0") == 100
    assert gwy_reader.nrm_read_identify(path=tmp_path / "x.bin", head=b"GWYOGwyContainer\0") == 100
    assert gwy_reader.nrm_read_identify(path=tmp_path / "x.gwy", head=b"not gwy") == 10
    assert gwy_reader.nrm_read_identify(path=tmp_path / "x.spm", head=b"\\*Force file list") is None
    renamed = tmp_path / "curvemap.dat"  # content wins over the suffix
    shutil.copy(real(GRAPHS), renamed)
    assert nrm.get_plugin_manager().identify(renamed)[0] == (100, "gwyddion")


def test_wrong_magic_with_gwy_suffix_names_the_file(tmp_path):
    bad = tmp_path / "bad.gwy"
    bad.write_bytes(b"GWYX" + b"\0" * 100)
    with pytest.raises(nrm.ReaderError, match=r"bad\.gwy.*magic bytes"):
        nrm.open(bad)


@pytest.mark.parametrize("cut", [5, 20, 1000, -1])
def test_truncated_file_is_a_reader_error(tmp_path, real, cut):
    data = real(GRAPHS).read_bytes()
    bad = tmp_path / "cut.gwy"
    bad.write_bytes(data[:cut])
    with pytest.raises(nrm.ReaderError, match=r"cut\.gwy: not a readable Gwyddion file"):
        nrm.open(bad)


def test_parser_rejects_what_would_hang_or_allocate():
    """gwyfile.load loops forever on a text without NUL and trusts counts; the bounded parser does not."""
    def obj(name, body):
        return name + b"\0" + len(body).to_bytes(4, "little") + body
    with pytest.raises(GwyFormatError, match="terminating NUL"):
        loads(b"GWYP" + obj(b"GwyContainer", b"/t\0sno-nul"))
    with pytest.raises(GwyFormatError, match="needs 34359738360 bytes"):
        loads(b"GWYP" + obj(b"GwyContainer", b"/a\0D" + (0xFFFFFFFF).to_bytes(4, "little")))
    with pytest.raises(GwyFormatError, match="texts cannot fit"):
        loads(b"GWYP" + obj(b"GwyContainer", b"/s\0S" + (0xFFFFFFFF).to_bytes(4, "little")))
    nested = b"x"
    for _ in range(100):
        nested = obj(b"GwyContainer", b"/o\0o" + nested) if nested != b"x" else obj(b"GwyContainer", b"")
    with pytest.raises(GwyFormatError, match="nested deeper"):
        loads(b"GWYP" + nested)
    with pytest.raises(GwyFormatError, match="declares 1000 bytes"):
        loads(b"GWYP" + b"GwyContainer\0" + (1000).to_bytes(4, "little"))


def test_inconsistent_lawn_names_the_object(tmp_path):
    heights = [np.arange(10.0), np.arange(8.0)]
    path = _lawn_file(tmp_path / "badlawn.gwy", heights, heights, [10, 9], [[[0, 6], [6, 10]], [[0, 4], [4, 8]]])
    with pytest.raises(nrm.ReaderError, match=r"badlawn\.gwy.*/lawn/0: 36 values, but 2 curves x 19 samples"):
        nrm.open(path)


def test_curve_map_is_the_bruker_force_volume(real):
    """Same ramps in the same order as the Bruker reader gives for the source .spm; the values are
    proportional (one raw-data decode; Gwyddion 2.62 scales this file's DeflectionError 713.28125 times
    larger than the Bruker reader, see docs/readers/gwyddion.md)."""
    if "nrm_read" not in {i.name: i.hooks for i in nrm.get_plugin_manager().plugins()}.get("bruker", []):
        pytest.skip("reader not implemented yet")
    bruker = _open(real("bruker/20200903_Egel2.0_00023.spm"))
    ours = _open(real(CURVEMAP))
    assert bruker.sizes == {**bruker.sizes, "ramp": ours.sizes["ramp"], "sample": ours.sizes["sample"]}
    assert list(bruker["direction"].values) == list(ours["direction"].values)
    a, b = ours["deflection"].values, bruker["deflection"].values
    nonzero = b != 0
    ratio = a[nonzero] / b[nonzero]
    assert np.ptp(ratio) < 1e-9 * abs(ratio.mean()) and (a[~nonzero] == 0).all()
    # same grid step; Gwyddion puts the map origin at 0, the Bruker reader at the scan centre
    np.testing.assert_allclose(np.diff(ours["x"].values[::2][:16]), np.diff(bruker["x"].values[::2][:16]))


def test_empty_curve_map_with_absurd_curve_count_is_refused_quickly(tmp_path):
    lawn = GwyObject("GwyLawn")
    lawn.update({"xres": 1000, "yres": 1000, "ncurves": 2 ** 31 - 1, "curvelengths": np.zeros(10 ** 6, "<i4"),
                 "data": np.zeros(0, "<f8")})
    lawn.typecodes.update({"xres": "i", "yres": "i", "ncurves": "i", "curvelengths": "I", "data": "D"})
    container = GwyContainer()
    container["/lawn/0"] = lawn
    path = tmp_path / "emptylawn.gwy"
    container.tofile(str(path))
    with pytest.raises(nrm.ReaderError, match=r"emptylawn\.gwy: no curve map, graph, spectra or image"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nrm.open(path)


_ODD_INTS = [0, 1, -1, 3, 2 ** 31 - 1, -2 ** 31]


def _variants(obj, prefix="", limit=None):
    """(description, setter) for every integer and array component of a Gwyddion object tree (of the
    first ``limit`` items only)."""
    for name, value in list(obj.items())[:limit]:
        where = f"{prefix}/{name}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            for odd in _ODD_INTS:
                yield f"{where} = {odd}", (lambda o=obj, n=name, v=odd: o.__setitem__(n, v))
        elif isinstance(value, np.ndarray) and value.size:
            for odd in ([-1, 2 ** 31 - 1] if value.dtype.kind == "i" else [np.nan, np.inf]):
                def change(o=obj, n=name, v=odd):
                    a = np.array(o[n]); a[a.size // 2] = v; o[n] = a
                yield f"{where}[mid] = {odd}", change
            yield f"{where} one item short", (lambda o=obj, n=name: o.__setitem__(n, np.array(o[n])[:-1]))
        elif isinstance(value, list) and value:
            yield f"{where} one item short", (lambda o=obj, n=name: o.__setitem__(n, o[n][:-1]))
            for k, item in enumerate(value[:2]):
                if isinstance(item, GwyObject):
                    yield from _variants(item, f"{where}[{k}]")
        elif isinstance(value, GwyObject):
            yield from _variants(value, where)


@pytest.mark.parametrize("source", ["synthetic-lawn", GRAPHS, SPECTRA])
def test_every_odd_component_value_is_a_reader_error_or_a_valid_model(source, tmp_path, real):
    """Structure-aware fuzzing: each integer/array component set to an odd value, one at a time."""
    from test_readers_generic import assert_valid_model

    template = _synthetic(tmp_path)[0] if source == "synthetic-lawn" else real(source)
    count = len(list(_variants(gwyfile.load(str(template)), limit=3)))
    assert count > 20
    for k in range(count):
        root = gwyfile.load(str(template))
        description, change = list(_variants(root, limit=3))[k]
        change()
        path = tmp_path / f"variant{k}.gwy"
        root.tofile(str(path))
        try:
            ds = _open(path)
        except nrm.ReaderError as exc:
            assert path.name in str(exc) and "reader failed" not in str(exc), f"{description}: {exc}"
            continue
        assert_valid_model(ds, description)
