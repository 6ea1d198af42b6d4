"""The report (nrm_plugins.reporting) on a results set built by hand from known profiles.

``make_results`` builds a contract-conforming results Dataset (DESIGN.md §3, INTERFACES.md) and the raw
common-model ramps behind it, with per-window statistics computed here independently (Student-t CI), so
every table value, figure line and diagnostic can be checked against a known number.
"""
from __future__ import annotations

import base64
import re
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats
from scipy.ndimage import gaussian_filter1d

import nrm_plugins as nrm
from nrm_plugins.calibration import Calibration
from nrm_plugins.reporting import access, figures, layers, raw

from conftest import images_in_chromium

WINDOWS = [(1.5, 2.0), (1.0, 1.5), (0.5, 1.0), (0.005, 0.5)]
LABELS = ["1.5-2.0V", "1.0-1.5V", "0.5-1.0V", "0.005-0.5V"]
INTERVALS = [(0.0, 5e-9), (5e-9, 10e-9), (10e-9, 20e-9)]
INVOLS = 60e-9  # m/V
FREQUENCY = 1000.0  # Hz
#: per window: SEI top (m), E' at z_p = 0 (Pa), decay length (m), stiff top skin (factor, thickness)
LAYERS = [(20e-9, 10e6, 8e-9, (3.0, 4e-9)), (14e-9, 6e6, 6e-9, None), (10e-9, 4e6, 5e-9, None),
          (8e-9, 3e6, 4e-9, None)]
Q_NAMES = ["E_storage", "E_loss", "G_storage", "G_loss", "G_abs", "viscosity"]


def _t_stats(values):
    """mean, CI low, CI high, n over axis 0 (NaN ignored): the Student-t 95 % CI of the mean."""
    n = np.isfinite(values).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0) if values.shape[0] else np.full(values.shape[1:], np.nan)
        sd = np.nanstd(values, axis=0, ddof=1) if values.shape[0] > 1 else np.full(values.shape[1:], np.nan)
        half = stats.t.ppf(0.975, np.maximum(n - 1, 1)) * sd / np.sqrt(n)
    half = np.where(n >= 2, half, np.nan)
    return mean, mean - half, mean + half, n


def make_results(per_window=(12, 8, 1, 0), seed=0, samples=256, windows=True, grid=4):
    """(results, model): contract-conforming results of known profiles and the raw ramps behind them.

    Window w holds ``per_window[w]`` accepted ramps with E′(z) = E0·a·exp(−z/λ) below the SEI top h (window 0
    also a ×3 stiff skin in the top 4 nm), E″ = 0.3 E′, a ~ lognormal(0, 0.25), plus 20 kPa noise; window 0
    additionally two rejected ramps (no contact) and one accepted ramp with a warning, and one ramp lies in
    no window (0.001 V).  Ramps sit on a ``grid`` × ``grid`` grid, 50 nm step; the first two of window 0 share a location.
    """
    rng = np.random.default_rng(seed)
    z = np.round(np.arange(0, 1001) * 0.1e-9, 15)
    window_of, potential, ok, flag = [], [], [], []
    for w, count in enumerate(per_window):
        lo, hi = WINDOWS[w]
        for _ in range(count):
            window_of.append(w)
            potential.append(rng.uniform(lo, hi))
            ok.append(True)
            flag.append("")
    extra = [(0, False, "no contact: deflection never leaves the baseline"),
             (0, False, "no contact: deflection never leaves the baseline"),
             (0, True, "high contact uncertainty: 1.2 nm > 1 nm")]
    for w, good, text in extra:
        window_of.append(w)
        potential.append(rng.uniform(*WINDOWS[w]))
        ok.append(good)
        flag.append(text)
    window_of.append(-1)
    potential.append(0.001)
    ok.append(True)
    flag.append("")
    window_of, potential, ok, flag = np.array(window_of), np.array(potential), np.array(ok), np.array(flag, object)
    n = window_of.size
    time = (2.0 - potential) / 1e-3  # 1 mV/s cathodic sweep from 2.0 V
    slot = np.zeros(n, int)
    for w in range(-1, len(WINDOWS)):
        slot[window_of == w] = np.arange((window_of == w).sum())
    slot[np.flatnonzero(window_of == 0)[1]] = slot[np.flatnonzero(window_of == 0)[0]]  # shared location
    x = (slot % grid) * 50e-9
    y = (slot // grid % grid) * 50e-9
    # per-ramp profiles
    E = np.full((n, z.size), np.nan)
    thickness = np.full(n, np.nan)
    for i in range(n):
        w = max(window_of[i], 0)
        h, e0, lam, skin = LAYERS[w]
        profile = e0 * rng.lognormal(0, 0.25) * np.exp(-z / lam)
        if skin:
            profile = np.where(z > h - skin[1], profile * skin[0], profile)
        profile = np.where(z < h, profile, 0.0) + rng.normal(0, 2e4, z.size)
        if ok[i]:
            E[i] = profile
            thickness[i] = h
    E_storage = E.astype(np.float32)
    E_loss = (0.3 * E).astype(np.float32)
    G_storage, G_loss = E_storage.astype(float) / 3, E_loss.astype(float) / 3
    per_ramp = {"E_storage": E_storage.astype(float), "E_loss": E_loss.astype(float), "G_storage": G_storage,
                "G_loss": G_loss, "G_abs": np.hypot(G_storage, G_loss), "viscosity": G_loss / (2 * np.pi * FREQUENCY)}
    contact = 1e-6 + 100e-9 * np.sin(x / 80e-9) * np.cos(y / 60e-9)
    contact[~ok] = np.nan
    baseline_slope, baseline_offset = np.full(n, 1e4), np.full(n, 0.1)  # V/m, V
    contact_slope = np.where(ok, baseline_slope - 1 / INVOLS, np.nan)
    contact_offset = np.where(ok, baseline_offset + contact / INVOLS, np.nan)
    # raw ramps: approach from contact + 300 nm to contact - 30 nm
    true_contact = np.where(np.isfinite(contact), contact, 1e-6)
    piezo = true_contact[:, None] + np.linspace(300e-9, -30e-9, samples)[None, :]
    push = np.where(ok[:, None], np.clip(true_contact[:, None] - piezo, 0, None), 0.0)
    deflection = baseline_slope[:, None] * piezo + baseline_offset[:, None] + push / INVOLS
    contact_index = np.where(ok, np.argmax(piezo <= true_contact[:, None], axis=1), -1)
    coords = {"x": ("ramp", x, {"units": "m"}), "y": ("ramp", y, {"units": "m"}),
              "time": ("ramp", time, {"units": "s"}), "potential": ("ramp", potential, {"units": "V"}),
              "source": ("ramp", np.full(n, "/data/run/fixture.3ds", object)), "index": ("ramp", np.arange(n)),
              "direction": ("ramp", np.full(n, "approach", object))}
    model = xr.Dataset({"piezo": (("ramp", "sample"), piezo, {"units": "m"}),
                        "deflection": (("ramp", "sample"), deflection, {"units": "V"})},
                       coords=coords, attrs={"invols": INVOLS, "spring_constant": 0.5})
    cal = Calibration({"normal": {"invols": INVOLS, "spring_constant": 0.5},
                       "lateral": {"dither_amplitude": 1e-9, "dither_frequency": FREQUENCY,
                                   "torsion_sensitivity": 2e-3, "torsional_stiffness": 1e-9, "tip_length": 1e-5},
                       "processing": {"windows": [list(w) for w in WINDOWS]}}, origin="calibration file fixture.toml")
    cal = cal.resolve(model)
    data = {
        "contact_position": ("ramp", contact, {"units": "m"}),
        "contact_uncertainty": ("ramp", np.where(ok, 0.2e-9, np.nan), {"units": "m"}),
        "ok": ("ramp", ok), "flag": ("ramp", flag),
        "sei_thickness": ("ramp", thickness, {"units": "m"}),
        "E_storage": (("ramp", "z"), E_storage, {"units": "Pa"}),
        "E_loss": (("ramp", "z"), E_loss, {"units": "Pa"}),
        "baseline_slope": ("ramp", baseline_slope, {"units": "V m-1"}),
        "baseline_offset": ("ramp", baseline_offset, {"units": "V"}),
        "contact_slope": ("ramp", contact_slope, {"units": "V m-1"}),
        "contact_offset": ("ramp", contact_offset, {"units": "V"}),
        "contact_index": ("ramp", contact_index),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rejected ramps: all NaN
        interval_values = np.stack([np.nanmean(np.where((z >= lo) & (z < hi), per_ramp["G_abs"], np.nan), axis=1)
                                    for lo, hi in INTERVALS], axis=1)
    interval_values[~ok] = np.nan
    data["G_abs_interval"] = (("ramp", "interval"), interval_values, {"units": "Pa"})
    attrs = {"nrm_version": nrm.__version__, "calibration": cal.to_toml(with_defaults=True),
             "calibration_sources": dict(cal.sources), "warnings": list(cal.warnings),
             "counts": {"read": n, "accepted": int(ok.sum()),
                        "flagged": {"no contact": int((~ok).sum()), "high contact uncertainty": 1}},
             "source_files": ["/data/run/fixture.3ds"], "r_g": 1.25, "dither_frequency": FREQUENCY, "poisson": 0.5}
    result_coords = dict(coords)
    result_coords["z"] = ("z", z, {"units": "m"})
    result_coords["interval"] = ("interval", ["0-5nm", "5-10nm", "10-20nm"])
    truth = {}
    if windows:
        g = np.linspace(4.0, 9.0, 126)
        result_coords["window"] = ("window", LABELS)
        result_coords["g"] = ("g", g, {"units": "1", "long_name": "log10(|G*| / Pa)"})
        attrs["window_labels"] = LABELS
        for q in Q_NAMES:
            arrays = {s: np.full((len(WINDOWS), z.size), np.nan) for s in ("mean", "ci_low", "ci_high")}
            counts = np.zeros((len(WINDOWS), z.size), np.int64)
            for w in range(len(WINDOWS)):
                sel = per_ramp[q][(window_of == w) & ok]
                arrays["mean"][w], arrays["ci_low"][w], arrays["ci_high"][w], counts[w] = _t_stats(sel)
            unit = "Pa s" if q == "viscosity" else "Pa"
            for s, a in arrays.items():
                data[f"{q}_{s}"] = (("window", "z"), a, {"units": unit})
            data[f"{q}_n"] = (("window", "z"), counts)
            truth[q] = arrays | {"n": counts}
        sei = [_t_stats(thickness[(window_of == w) & ok][:, None]) for w in range(len(WINDOWS))]
        for k, s in enumerate(("mean", "ci_low", "ci_high")):
            data[f"sei_thickness_{s}"] = ("window", np.array([float(v[k][0]) for v in sei]), {"units": "m"})
        data["sei_thickness_n"] = ("window", np.array([int(v[3][0]) for v in sei]))
        kde = np.full((len(WINDOWS), z.size, g.size), np.nan)
        dg = g[1] - g[0]
        for w in range(len(WINDOWS)):  # histogram on the g grid smoothed by a 0.15-decade Gaussian kernel
            sel = per_ramp["G_abs"][(window_of == w) & ok]
            if sel.shape[0]:
                with np.errstate(divide="ignore", invalid="ignore"):
                    bins = np.round((np.log10(sel) - g[0]) / dg)
                inside = np.isfinite(bins) & (bins >= 0) & (bins < g.size)
                counts = np.zeros((z.size, g.size))
                np.add.at(counts, (np.broadcast_to(np.arange(z.size), sel.shape)[inside], bins[inside].astype(int)), 1)
                kde[w] = gaussian_filter1d(counts, 0.15 / dg, axis=1, mode="constant") / (sel.shape[0] * dg)
        data["G_abs_kde"] = (("window", "z", "g"), kde, {"units": "1", "long_name": "density of log10 |G*|"})
    results = xr.Dataset(data, coords=result_coords, attrs=attrs)
    return results, model, {"window_of": window_of, "per_ramp": per_ramp, "stats": truth, "contact": contact}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    results, model, truth = make_results()
    out = tmp_path_factory.mktemp("report")
    html = nrm.report(results, out, model=model)
    return results, model, truth, out, html


# ---------------------------------------------------------------------------------------------- tables
def test_fixture_conforms_to_the_results_contract(tmp_path):
    checker = Path(__file__).resolve().parents[2] / "shared" / "tools" / "check_contracts.py"
    if not checker.exists():
        pytest.skip(f"contract checker {checker} absent")
    results, _, _ = make_results()
    path = tmp_path / "results.nc"
    nrm.save(results, path)
    run = subprocess.run(["python", str(checker), "results", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_profiles_table_holds_every_window_statistic(built):
    results, _, truth, out, _ = built
    df = pd.read_csv(out / "tables" / "profiles.csv")
    assert len(df) == len(Q_NAMES) * len(WINDOWS) * results.sizes["z"]
    z = results["z"].values
    for q in Q_NAMES:
        for w, label in enumerate(LABELS):
            part = df[(df.quantity == q) & (df.window == label)]
            np.testing.assert_allclose(part.z_m.to_numpy(), z, rtol=1e-8)
            for s in ("mean", "ci_low", "ci_high"):
                np.testing.assert_allclose(part[s].to_numpy(), truth["stats"][q][s][w], rtol=1e-7, equal_nan=True)
            np.testing.assert_array_equal(part.n.to_numpy(), truth["stats"][q]["n"][w])
    assert set(df[df.quantity == "viscosity"].units) == {"Pa s"}


def test_windows_table_counts_thickness_and_notes(built):
    _, _, truth, out, _ = built
    df = pd.read_csv(out / "tables" / "windows.csv", keep_default_na=False)
    assert list(df.window) == LABELS
    assert list(df.ramps) == [15, 8, 1, 0] and list(df.accepted) == [13, 8, 1, 0]
    assert list(df.note) == ["", "", "one ramp: no confidence interval", "no ramps"]
    np.testing.assert_allclose(df.sei_thickness_mean_m[:3].astype(float), [20e-9, 14e-9, 10e-9], rtol=1e-9)
    assert float(df.sei_thickness_median_m[0]) == pytest.approx(20e-9)
    assert list(df.lo) == [w[0] for w in WINDOWS] and list(df.hi) == [w[1] for w in WINDOWS]


def test_ramp_interval_and_flag_tables(built):
    results, _, truth, out, _ = built
    ramps = pd.read_csv(out / "tables" / "ramps.csv", keep_default_na=False)
    n = results.sizes["ramp"]
    assert len(ramps) == n
    expect = np.array(LABELS + [""], object)[truth["window_of"]]
    assert list(ramps.window) == list(expect)
    contact = pd.to_numeric(ramps.contact_position_m.replace("", np.nan))
    np.testing.assert_allclose(contact, truth["contact"], rtol=1e-9, equal_nan=True)
    intervals = pd.read_csv(out / "tables" / "G_abs_interval.csv", keep_default_na=False)
    assert len(intervals) == 3 * n
    value = intervals[(intervals.ramp == 5) & (intervals.interval == "5-10nm")].G_abs_Pa.astype(float).item()
    assert value == pytest.approx(float(results.G_abs_interval[5, 1]), rel=1e-8)
    flags = pd.read_csv(out / "tables" / "flags.csv")
    got = {(r.reason, r.status): r.ramps for r in flags.itertuples()}
    assert got == {("no contact", "rejected"): 2, ("high contact uncertainty", "accepted with warning"): 1}
    counts = pd.read_csv(out / "tables" / "counts.csv")
    assert dict(zip(counts.key, counts.value))["flagged.no contact"] == 2


def test_sublayer_boundary_of_the_stiff_skin(built):
    _, _, _, out, _ = built
    df = pd.read_csv(out / "tables" / "sublayers.csv")
    skin = df[df.window == LABELS[0]]
    rises = skin[skin.change == "modulus rises with z_p"]
    assert len(rises) == 1 and rises.z_m.item() == pytest.approx(16e-9, abs=1e-9)
    assert rises.modulus_ratio.item() > 2  # x3 skin seen over the 2 nm fit width
    # the smooth exponential of window 1 has no boundary below its top
    assert not ((df.window == LABELS[1]) & (df.z_m < 12e-9)).any()


@pytest.mark.parametrize("seed", range(20))
def test_boundary_criterion_on_known_profiles(seed):
    rng = np.random.default_rng(seed)
    z = np.arange(0, 601) * 0.1e-9
    n = 25

    def window_mean(skin):
        e = 10e6 * np.exp(-z / 8e-9)
        if skin:
            e = np.where((z > 14e-9) & (z < 18e-9), 3 * e, e)
        ramps = e * rng.lognormal(0, 0.3, (n, 1)) + rng.normal(0, 2e4, (n, z.size))
        return _t_stats(ramps)

    found = layers.find_boundaries(z, *window_mean(True))
    inside = [b for b in found if b["z"] < 19e-9]
    assert [(b["change"], round(b["z"] * 1e9)) for b in inside] == [("modulus rises with z_p", 14),
                                                                      ("modulus falls with z_p", 18)]
    assert all(abs(b["z"] - t) <= 0.5e-9 for b, t in zip(inside, (14e-9, 18e-9)))
    plain = layers.find_boundaries(z, *window_mean(False))
    assert not [b for b in plain if b["z"] < 30e-9]  # no skin, no boundary (the top of the signal aside)


def test_overlapping_windows_and_text_groups():
    potential = np.array([1.9, 1.6, 1.2, 0.2])
    ds = xr.Dataset(coords={"potential": ("ramp", potential), "window": ("window", ["1.0-2.0V", "1.5-2.0V"]),
                            "source": ("ramp", ["a.3ds", "a.3ds", "b.3ds", "b.3ds"])})
    np.testing.assert_array_equal(access.membership(ds), [[1, 1, 1, 0], [1, 1, 0, 0]])
    assert list(access.ramp_window_labels(ds)) == ["1.0-2.0V;1.5-2.0V", "1.0-2.0V;1.5-2.0V", "1.0-2.0V", ""]
    by_file = ds.assign_coords(window=["b.3ds", "a.3ds"]).assign_attrs(group_by="source")
    np.testing.assert_array_equal(access.membership(by_file), [[0, 0, 1, 1], [1, 1, 0, 0]])
    negative = ds.assign_coords(window=["-0.5-0.25V"], potential=("ramp", [-0.6, -0.5, 0.0, 0.25]))
    assert access.windows(negative)[0].lo == -0.5 and access.windows(negative)[0].hi == 0.25
    np.testing.assert_array_equal(access.membership(negative), [[0, 1, 1, 0]])


# ---------------------------------------------------------------------------------------------- figures
def test_profile_figure_draws_the_stored_means(built):
    results, _, truth, _, _ = built
    fig = figures.profile_figure(results, ("G_storage", "G_loss"), z_limit=30e-9)
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() and not line.get_label().startswith("_")]
    assert [line.get_label() for line in lines] == ["1.5-2.0V (n = 13)", "1.0-1.5V (n = 8)",
                                                    "0.5-1.0V (n = 1, no CI)", "0.005-0.5V (no ramps)"]
    y = lines[1].get_ydata()
    z = results.z.values * 1e9
    mean = truth["stats"]["G_storage"]["mean"][1] * 1e-6
    shown = np.isfinite(y)
    assert shown.sum() > 100
    np.testing.assert_allclose(y[shown], mean[shown], rtol=1e-12)
    assert z[shown].max() <= 30.0 + 1e-9
    assert ax.get_yscale() == "log"
    assert len(ax.collections) == 2  # bands only for windows with n >= 2


def test_kde_map_and_violin_and_cv_figures(built):
    results, _, truth, _, _ = built
    kde = figures.kde_figure(results, z_limit=25e-9)
    images = [im for ax in kde.axes for im in ax.get_images()]
    assert len(images) == 3  # the empty window has a note instead
    np.testing.assert_allclose(images[0].get_array().T, results.G_abs_kde[0, :251].values)
    assert any(t.get_text() == "no ramps" for t in kde.axes[3].texts)
    violins = figures.violin_figure(results)
    medians = [c.get_offsets()[0, 1] for c in violins.axes[1].collections if c.get_gid() == "median"]
    accepted0 = (truth["window_of"] == 0) & results.ok.values
    want = np.median(np.log10(results.G_abs_interval.values[accepted0, 1]))
    assert medians[0] == pytest.approx(want)
    cv = figures.cv_figure(results)
    points = sum(len(c.get_offsets()) for c in cv.axes[0].collections if hasattr(c, "get_offsets"))
    assert points == results.sizes["ramp"]


def test_maps_average_ramps_sharing_a_location(built):
    results, _, truth, _, _ = built
    fig = figures.map_figure(results, "contact_position")
    image = fig.axes[0].get_images()[0].get_array()
    contact = truth["contact"] * 1e9
    centre = np.nanmedian(contact)
    first = np.flatnonzero(truth["window_of"] == 0)[:2]  # share x, y = (0, 0)
    assert image[0, 0] == pytest.approx(np.mean(contact[first]) - centre)
    assert np.ma.getdata(image).shape == (4, 4)


def test_diagnostic_tip_sample_distance(built):
    results, model, truth, _, _ = built
    i = 3
    zp = raw.tip_sample_distance(model.piezo.values[i], model.deflection.values[i], truth["contact"][i],
                                 results.baseline_slope.values[i], results.baseline_offset.values[i], INVOLS)
    free = model.piezo.values[i] > truth["contact"][i]
    np.testing.assert_allclose(zp[free], model.piezo.values[i][free] - truth["contact"][i], atol=1e-15)
    np.testing.assert_allclose(zp[~free], 0.0, atol=1e-15)  # hard contact: the tip follows the sample


def test_ramps_matched_by_source_and_index():
    results, model, _ = make_results(per_window=(3, 2, 0, 0))
    order = np.random.default_rng(1).permutation(model.sizes["ramp"])
    shuffled = model.isel(ramp=order)
    where = raw.match_ramps(results, shuffled)
    np.testing.assert_array_equal(order[where], np.arange(results.sizes["ramp"]))
    picked = raw.select(results, shuffled, [2, 4])
    np.testing.assert_array_equal(picked.piezo, model.piezo.values[[2, 4]])


def test_lines_stored_in_metres_over_a_deflection_in_volts():
    results, model, truth = make_results(per_window=(3, 0, 0, 0))
    for name in ("baseline_slope", "baseline_offset", "contact_slope", "contact_offset"):
        results[name] = results[name] * INVOLS  # the same lines in calibrated deflection (m)
        results[name].attrs["units"] = "1" if name.endswith("slope") else "m"
    picked = raw.select(results, model, [1])
    assert picked.deflection_units == "m"
    np.testing.assert_allclose(picked.deflection[0], model.deflection.values[1] * INVOLS)
    zp = raw.tip_sample_distance(picked.piezo[0], picked.deflection[0], truth["contact"][1],
                                 results.baseline_slope.values[1], results.baseline_offset.values[1], INVOLS, "m")
    free = picked.piezo[0] > truth["contact"][1]
    np.testing.assert_allclose(zp[~free], 0.0, atol=1e-15)
    np.testing.assert_allclose(zp[free], picked.piezo[0][free] - truth["contact"][1], atol=1e-15)


# ---------------------------------------------------------------------------------------------- page
def _images(text):
    return re.findall(r"<img[^>]*src=\"([^\"]*)\"", text)


def test_html_is_self_contained_and_complete(built):
    results, _, _, out, html = built
    text = Path(html).read_text(encoding="utf-8")
    sources = _images(text)
    assert len(sources) == 7 + 1 + 1  # 7 result figures, 4 sampled ramps, 3 flagged ramps
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"(?i)(https?:|ftp:|//[a-z0-9.-]+\.[a-z]{2,}/|<link|<script|@import|url\()", text)
    assert "0.005-0.5V: no ramps." in text
    assert "0.5-1.0V: one ramp: no confidence interval." in text
    assert "dither_amplitude = 1e-09" in text  # the calibration TOML
    assert "calibration file fixture.toml" in text  # value sources
    assert "r_g not given" in text  # the processing's warning
    for name in ("profiles_G", "profiles_E", "kde", "violins", "map_contact", "map_sei", "cv", "diagnostics_sample",
                 "diagnostics_flagged_01"):
        assert (out / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000


def test_html_renders_with_every_image_in_headless_chromium(built, tmp_path):
    _, _, _, _, html = built
    assert images_in_chromium(html, tmp_path) == (9, 9)


def test_report_without_raw_data_or_windows_says_so(tmp_path):
    results, _, _ = make_results(per_window=(4, 0, 0, 0), windows=False)
    html = nrm.report(results, tmp_path, formats=("png",), dpi=60)
    text = html.read_text(encoding="utf-8")
    assert "raw data unavailable: source file(s) not found: /data/run/fixture.3ds" in text
    assert "No windows" in text
    assert len(_images(text)) == 7  # the diagnostics are described, not drawn
    assert not (tmp_path / "figures" / "diagnostics_sample.png").exists()
    assert pd.read_csv(tmp_path / "tables" / "profiles.csv").empty


def test_report_of_results_without_per_ramp_profiles(tmp_path):
    results, _, _ = make_results()
    results = results.drop_vars(["E_storage", "E_loss"]).assign_attrs(profiles="omitted")
    html = nrm.report(results, tmp_path, formats=("png",), dpi=40, reopen=False)
    assert "omitted from the results" in html.read_text(encoding="utf-8")
    df = pd.read_csv(tmp_path / "tables" / "sublayers.csv")
    skin = df[(df.window == LABELS[0]) & (df.change == "modulus rises with z_p")]
    assert len(skin) == 1 and skin.z_m.item() == pytest.approx(16e-9, abs=1e-9)  # σ_D from the CI alone


def test_flagged_ramps_are_capped(tmp_path):
    results, model, _ = make_results(per_window=(3, 0, 0, 0))
    results["ok"][:] = False
    results["flag"][:] = "no contact: test"
    html = nrm.report(results, tmp_path, model=model, max_flagged=2, sample=4, formats=("png",), dpi=50)
    text = html.read_text(encoding="utf-8")
    assert f"{results.sizes['ramp'] - 2} more flagged ramps are not drawn" in text
    assert "flagged ramps 1–2 of the 2 drawn (7 flagged)" in text


def test_flagged_ramps_drawn_take_every_reason_in_turn():
    from nrm_plugins.reporting import choose_flagged

    ok = np.array([False] * 6 + [True] * 4)
    flag = np.array(["no contact: a"] * 5 + ["clipped: b"] + ["", "", "noisy: c", "noisy: d"])
    flagged, drawn = choose_flagged(ok, flag, 4)
    assert list(flagged) == [0, 1, 2, 3, 4, 5, 8, 9]
    assert list(drawn) == [0, 1, 5, 8]  # no contact, clipped, noisy, then no contact again
    assert list(choose_flagged(ok, flag, 20)[1]) == list(flagged)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_report(tmp_path, capsys):
    from nrm_plugins.cli import main

    results, model, _ = make_results(per_window=(3, 2, 0, 0))
    nrm.save(results, tmp_path / "results.nc")
    nrm.save(model, tmp_path / "raw.nc")
    code = main(["report", str(tmp_path / "results.nc"), "-o", str(tmp_path / "rep"), "--data",
                 str(tmp_path / "raw.nc"), "--formats", "png", "--dpi", "50"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip() == str(tmp_path / "rep" / "report.html")
    assert "nrm report: figure kde" in captured.err
    text = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert len(_images(text)) == 7 + 1 + 1
    # without --data: the source file is found by its name beside the results file
    results.attrs["source_files"] = ["/elsewhere/raw.nc"]
    nrm.save(results, tmp_path / "results.nc")
    assert main(["report", str(tmp_path / "results.nc"), "-o", str(tmp_path / "rep2"), "-q", "--formats", "png",
                 "--dpi", "50"]) == 0
    assert len(_images((tmp_path / "rep2" / "report.html").read_text(encoding="utf-8"))) == 7 + 1 + 1
    html = nrm.report(tmp_path / "results.nc", tmp_path / "rep3", formats=("png",), dpi=40)  # the API takes a path
    assert len(_images(html.read_text(encoding="utf-8"))) == 7 + 1 + 1
    with pytest.raises(SystemExit) as exc:
        main(["report", "--help"])
    assert exc.value.code == 0
    assert "--data" in capsys.readouterr().out
