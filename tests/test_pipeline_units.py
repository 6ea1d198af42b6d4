"""Unit tests of the pipeline's building blocks against analytic truths (no simulator)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from nrm_plugins.calibration import Calibration
from nrm_plugins.errors import CalibrationError, NRMError
from nrm_plugins.pipeline import contact, derivative, lateral, moduli, statistics, thickness


# ---------------------------------------------------------------------------------------------- lateral
def test_force_factor_matches_design_formula():
    cal = Calibration({"lateral": {"dither_amplitude": 1e-9, "torsion_sensitivity": 2e-3,
                                   "torsional_stiffness": 1e-9, "tip_length": 1e-5},
                       "lockin": {"sensitivity": 0.05, "expand": 10, "phase": 30.0, "amplitude": "rms"}})
    c = lateral.force_factor(cal)
    # U = (X + iY) e^{-i phase}; V = U sens / (10 V expand); peak = V sqrt2; theta = S V; F = theta k_t / l_t
    expect = 0.05 / (10 * 10) * math.sqrt(2) * 2e-3 * 1e-9 / 1e-5 * np.exp(-1j * math.radians(30))
    assert c == pytest.approx(expect, rel=1e-12)
    cal.set("lockin", "signal", "input")
    cal.set("lockin", "amplitude", "peak")
    assert lateral.force_factor(cal) == pytest.approx(2e-3 * 1e-4 * np.exp(-1j * math.radians(30)), rel=1e-12)
    assert lateral.clip_level(cal) == math.inf
    cal.set("lockin", "phase", "auto")
    with pytest.raises(CalibrationError):
        lateral.force_factor(cal)


def test_estimate_phase_recovers_rotation_of_elastic_part():
    rng = np.random.default_rng(1)
    z = np.linspace(0, 10, 101)
    # derivative of U: stiff elastic part (angle 0) below 3 nm, lossy soft part above; rotated by 20 deg
    e = np.where(z < 3, 40.0, 2.0 * (1 + 0.5j))
    slope = -(e * np.exp(1j * math.radians(20)))[None, :] * (1 + 0.01 * rng.standard_normal((50, 1)))
    phase, spread = lateral.estimate_phase(slope.real, slope.imag)
    assert phase == pytest.approx(20.0, abs=0.2)
    assert spread < 1.0


# ---------------------------------------------------------------------------------------------- derivative
def test_resample_and_local_polynomial_on_a_cubic():
    rng = np.random.default_rng(0)
    n, m = 6, 400
    # samples every 0.15 nm with jitter (the deflection noise makes z step back now and then)
    z = (np.linspace(60, -0.3, m)[None, :] + rng.normal(0, 0.03, (n, m))).astype(np.float32)
    f = (z ** 3 / 300 + 1j * np.sin(z / 5)).astype(np.complex64)
    lo = np.zeros(n, np.int64)
    hi = np.array([m, m, 300, m, 250, m])
    step = 0.2
    grid = derivative.resample(z, f, lo, hi, 50.0, step, 252)
    zg = 50 - step * np.arange(252)
    ok = np.isfinite(grid.real)
    # inside each ramp's data: no NaN, values within the linear-interpolation error of a smooth curve
    for r in range(n):
        rows = np.flatnonzero(ok[r])
        assert rows[0] == 0 and np.all(np.diff(rows) == 1)
        assert zg[rows[-1]] >= z[r, hi[r] - 1] - step - 1e-5  # at most one grid point extrapolated
        assert zg[rows[-1]] <= z[r, hi[r] - 1] + step
    exact = zg ** 3 / 300 + 1j * np.sin(zg / 5)
    assert np.nanmax(np.abs(grid - exact)) < 0.02  # z noise 0.03 nm times |F'| <= 25 N/nm
    d = derivative.local_polynomial(grid, step, 2.0)
    assert np.array_equal(np.isfinite(d.real), ok)
    dexact = -(3 * zg ** 2 / 300 + 1j * np.cos(zg / 5) / 5)  # along the falling grid
    err = np.abs(d - dexact)
    assert np.nanmax(err[:, 5:-5]) < 0.05  # |F'| up to 25: 0.2 %
    assert np.nanmax(err) < 0.2  # one-sided fits at the ends


def test_local_polynomial_is_exact_for_a_quadratic_including_edges():
    g = np.arange(60, dtype=np.float64)
    v = np.full((1, 80), np.nan, np.complex64)
    v[0, 10:70] = (0.5 * g ** 2 - 3 * g) + 1j * g
    d = derivative.local_polynomial(v, 0.1, 1.0)
    expect = (g - 3) / 0.1 + 1j / 0.1
    np.testing.assert_allclose(d[0, 10:70], expect, rtol=2e-4, atol=1e-2)
    assert np.isnan(d[0, :10].real).all() and np.isnan(d[0, 70:].real).all()


# ---------------------------------------------------------------------------------------------- contact
def _ramps(n=300, m=1024, noise=0.05, tilt=2e-3, seed=0, layer=3.0, h=20.0, length=200.0, cfrac=0.15):
    """Analytic approach ramps (nm): baseline, soft layer deflecting the cantilever, hard wall at xc."""
    rng = np.random.default_rng(seed)
    xc = rng.uniform(-50, 50, n)
    zz = np.linspace(300, 0, 20001)
    d = np.where(zz < h, layer * (1 - zz / h) ** 3, 0.0)
    X = np.empty((n, m))
    Y = np.empty((n, m))
    for r in range(n):
        x = np.linspace(xc[r] + length * (1 - cfrac), xc[r] - length * cfrac, m)
        xs = xc[r] + zz - d
        y = np.interp(x, xs[::-1], d[::-1])
        wall = x < xs[-1]
        y[wall] = xc[r] - x[wall]
        X[r] = x
        Y[r] = y + tilt * (x - xc[r]) + 0.3 + rng.normal(0, noise, m)
    return X.astype(np.float32), Y.astype(np.float32), xc


@pytest.mark.parametrize("noise", [0.0, 0.05, 0.2])
def test_two_line_accuracy_and_uncertainty(noise):
    X, Y, xc = _ramps(noise=noise)
    ref = X[:, :1]
    r = contact.two_line(X - ref, Y)
    err = r["position"] + ref[:, 0] - xc
    assert (r["flags"] == 0).all()
    if noise == 0:
        assert np.abs(err).max() < 1e-3
        return
    assert np.median(np.abs(err)) < 0.2 * noise
    assert np.percentile(np.abs(err), 95) < 0.6 * noise
    z = err / r["uncertainty"]
    assert 0.8 < z.std() < 1.25  # the 1-sigma uncertainty is calibrated
    assert np.median(r["noise"]) == pytest.approx(noise, rel=0.1)


def short_contact_ramps(n=64, noise=0.05, seed=5):
    """Ramps of 1024 samples over ~300 nm whose hard-contact part is only 3-8 nm (a low setpoint): a soft
    layer (10 nm, deflecting up to 0.3 nm) above the wall; returns x, y (oriented, nm) and the true contact."""
    rng = np.random.default_rng(seed)
    m = 1024
    x = np.empty((n, m), np.float32)
    y = np.empty((n, m), np.float32)
    xc = np.empty(n)
    for r in range(n):
        travel_c = rng.uniform(3.0, 8.0)  # nm of piezo travel in hard contact
        d = np.linspace(300.0, -travel_c, m)  # piezo (nm), contact at 0
        layer = np.clip(10.0 - d, 0, None) * (d > 0)
        defl = 0.3 * (layer / 10.0) ** 2 + np.where(d < 0, -d, 0.0)
        tilt = rng.uniform(-0.01, 0.01)
        x[r] = d - d[0]
        y[r] = defl + tilt * d + 0.2 + rng.normal(0, noise, m)
        xc[r] = -d[0]  # the contact in the coordinates of x
    return x, y, xc


def test_two_line_short_contact_part():
    """3-8 nm of hard contact (24-64 samples, 3-8 blocks of 8): refitted with blocks of 4, every ramp is
    accepted and the contact point is as accurate as with a long contact part."""
    x, y, xc = short_contact_ramps()
    r = contact.two_line(x, y)
    assert (r["flags"] == 0).all(), r["flags"]
    err = np.abs(r["position"] - xc)
    assert np.median(err) < 0.1 and np.percentile(err, 95) < 0.3, (np.median(err), np.percentile(err, 95))


def flag_case_ramps():
    """Four ramps (x, y, weights): 0 stops in the layer (no hard contact; its tail weighted 0), 1 starts in
    contact (only the wall), 2 and 3 good."""
    X, Y, xc = _ramps(n=4, noise=0.05)
    ref = X[:, :1]
    x, y = X - ref, Y.copy()
    cut = np.searchsorted(-X[0], -(xc[0] + 8))
    x[0, cut:] = x[0, cut - 1]
    y[0, cut:] = y[0, cut - 1]
    w = np.ones_like(x)
    w[0, cut:] = 0
    X2 = np.linspace(xc[1] - 1, xc[1] - 150, 1024).astype(np.float32)
    x[1] = X2 - ref[1, 0]
    y[1] = (xc[1] - X2 + np.random.default_rng(3).normal(0, 0.05, 1024)).astype(np.float32)
    return x, y, w


def test_two_line_flags():
    x, y, w = flag_case_ramps()
    r = contact.two_line(x, y, w)
    assert r["flags"][0] & contact.NO_CONTACT
    assert r["flags"][1] & (contact.STARTS_IN_CONTACT | contact.NO_BASELINE)
    assert (r["flags"][2:] == 0).all()


# ---------------------------------------------------------------------------------------------- moduli
def test_modulus_eq5_and_tip_compliance_inverse():
    r_g, a_l, k_lat = 1.25, 1e-9, 10.0
    e_true = (20e6 + 2e6j)
    z_l = np.linspace(0, 5e-9, 11)
    k = 4 * r_g * e_true * z_l  # layer stiffness, embedded length z_l (z_p falls as z_l grows)
    f = a_l * k / (1 + k / k_lat)  # what the tip feels with a compliant cantilever
    dfdz = -a_l * 4 * r_g * e_true / (1 + k / k_lat) ** 2  # dF/dz_p = -dF/dz_l, exact
    factor = 1.0 + 0j  # U in newtons already
    paper = moduli.modulus(dfdz.astype(np.complex64), None, factor, r_g, a_l)
    assert paper[0] == pytest.approx(e_true, rel=1e-5)  # no force yet: Eq. 5 exact
    assert abs(paper[-1] / e_true - 1) > 0.05  # deep: Eq. 5 is off by (1 + K/k_lat)^2 (~9 % here)
    exact = moduli.modulus(dfdz.astype(np.complex64), f.astype(np.complex64), factor, r_g, a_l, k_lat)
    np.testing.assert_allclose(exact, e_true, rtol=1e-5)


def test_derive():
    es = np.array([[30e6, np.nan]], np.float32)
    el = np.array([[3e6, np.nan]], np.float32)
    res = xr.Dataset({"E_storage": (("ramp", "z"), es), "E_loss": (("ramp", "z"), el)},
                     attrs={"r_g": 1.2, "poisson": 0.5, "dither_frequency": 1000.0})
    assert float(moduli.derive(res, "S_storage")[0, 0]) == pytest.approx(4 * 1.2 * 30e6, rel=1e-6)
    assert float(moduli.derive(res, "G_loss")[0, 0]) == pytest.approx(1e6, rel=1e-6)
    assert float(moduli.derive(res, "G_abs")[0, 0]) == pytest.approx(math.hypot(30e6, 3e6) / 3, rel=1e-6)
    assert float(moduli.derive(res, "viscosity")[0, 0]) == pytest.approx(1e6 / (2 * math.pi * 1000), rel=1e-6)
    assert moduli.derive(res, "viscosity").attrs["units"] == "Pa s"
    assert np.isnan(moduli.derive(res, "G_abs")[0, 1])
    with pytest.raises(NRMError):
        moduli.derive(res, "E_bogus")
    with pytest.raises(NRMError):
        moduli.derive(res.drop_vars("E_loss"), "G_abs")


def test_undo_output_filter_inverts_the_lockin_filter():
    from nrm_plugins.simulate.lockin import output_filter

    t = np.linspace(0, 1, 1024)
    dt = t[1]
    x = np.tanh((t - 0.5) * 20)[None, :] * np.ones((2, 1))
    y = output_filter(x.copy(), dt, 3e-3, 12)
    assert np.abs(y - x).max() > 0.05  # lag: 2 tau = 6 samples
    fixed = moduli.undo_output_filter(y, dt, 3e-3, 12)
    assert np.abs(fixed - x).max() < 0.01


# ---------------------------------------------------------------------------------------------- thickness
def test_sei_thickness_of_a_noisy_hinge():
    rng = np.random.default_rng(2)
    step, top = 0.2, 60.0
    zg = top - step * np.arange(301)
    h = np.array([12.3, 30.0, 5.0])[:, None]
    sigma = 0.01
    clean = np.clip(h - zg[None, :], 0, None) * 0.05 * (1 + 0.3j)
    vals = (clean + sigma * (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape)))
    t, at_top = thickness.sei_thickness(vals.astype(np.complex64), np.full(3, sigma), top, step)
    np.testing.assert_allclose(t, h[:, 0], atol=0.3)
    assert not at_top.any()
    t0, _ = thickness.sei_thickness((0 * vals + sigma).astype(np.complex64), np.full(3, sigma), top, step)
    assert (t0 == 0).all()


# ---------------------------------------------------------------------------------------------- statistics
def test_t_interval_matches_scipy():
    rng = np.random.default_rng(4)
    v = rng.normal(3.0, 2.0, 15)
    mean, lo, hi, n = statistics.t_interval(np.array([15.0]), np.array([v.sum()]), np.array([(v * v).sum()]))
    ref = stats.t.interval(0.95, 14, loc=v.mean(), scale=stats.sem(v))
    assert mean[0] == pytest.approx(v.mean())
    assert (lo[0], hi[0]) == pytest.approx(ref, rel=1e-9)
    m0, l0, h0, n0 = statistics.t_interval(np.array([0.0, 1.0]), np.array([0.0, 2.0]), np.array([0.0, 4.0]))
    assert np.isnan(m0[0]) and m0[1] == 2.0 and np.isnan(l0).all() and np.isnan(h0).all()


def test_bootstrap_interval_close_to_t_for_normal_data():
    rng = np.random.default_rng(5)
    v = rng.normal(10.0, 1.0, (200, 3))
    v[:50, 2] = np.nan  # fewer values in one column
    member = np.ones((1, 200), bool)
    mean, lo, hi, n = statistics.bootstrap_interval(v, member, samples=4000, seed=1)
    assert n[0].tolist() == [200, 200, 150]
    for k in range(3):
        col = v[np.isfinite(v[:, k]), k]
        t_lo, t_hi = stats.t.interval(0.95, len(col) - 1, loc=col.mean(), scale=stats.sem(col))
        assert mean[0, k] == pytest.approx(col.mean())
        assert lo[0, k] == pytest.approx(t_lo, abs=0.03) and hi[0, k] == pytest.approx(t_hi, abs=0.03)


def test_kde_matches_scipy_gaussian_kde():
    rng = np.random.default_rng(6)
    g_abs = 10 ** rng.normal(6.5, 0.3, (400, 2))
    g_abs[:, 1] *= 10
    acc = statistics.WindowAccumulator(np.ones((1, 400), bool), n_z=2)
    zeros = np.zeros((400, 2), np.float32)
    acc.add(slice(0, 400), np.ones(400, bool), zeros, zeros, g_abs.astype(np.float32))
    g, dens, bw = acc.density()
    for k in range(2):
        lg = np.log10(g_abs[:, k])
        ref = stats.gaussian_kde(lg, bw_method=1.06 * lg.std(ddof=1) * 400 ** -0.2 / lg.std(ddof=1))(g)
        assert np.abs(dens[0, k] - ref).max() < 0.02 * ref.max()
        assert np.trapezoid(dens[0, k], g) == pytest.approx(1.0, abs=0.01)


def test_groups_windows_text_and_errors():
    coords = {"potential": np.array([1.7, 1.2, 0.3, np.nan, 1.5]), "source": np.array(["a", "b", "a", "a", "b"],
                                                                                       dtype=object)}
    g = statistics.groups(coords, "potential", [[1.5, 2.0], [1.0, 1.6]])
    assert g["labels"] == ["1.5-2.0V", "1.0-1.6V"]
    assert g["member"].tolist() == [[True, False, False, False, True], [False, True, False, False, True]]
    g2 = statistics.groups(coords, "source", [])
    assert g2["labels"] == ["a", "b"] and g2["member"].sum(1).tolist() == [3, 2]
    with pytest.raises(CalibrationError):
        statistics.groups(coords, "temperature", [[0, 1]])
    with pytest.raises(CalibrationError):
        statistics.groups(coords, "source", [[0, 1]])


def test_cv_potentials_from_section_and_file(tmp_path):
    t = np.array([0.0, 500.0, 1995.0, 2500.0, 4000.0])
    cal = Calibration({"cv": {"start_potential": 2.0, "scan_rate": -1e-3, "vertices": [0.005, 2.0]}})
    np.testing.assert_allclose(statistics.cv_potentials(t, cal), [2.0, 1.5, 0.005, 0.51, 2.0], atol=1e-9)
    csv = tmp_path / "cv.csv"
    csv.write_text("time_s;potential_V;current_A\n0;2.0;0\n100;1.9;0\n200;1.8;1e-6\n", encoding="utf-8")
    cal2 = Calibration({"cv": {"start_potential": 0.0, "scan_rate": 1.0, "file": "cv.csv", "start_time": 10.0}})
    np.testing.assert_allclose(statistics.cv_potentials([5.0, 60.0, 210.0, 300.0], cal2, tmp_path),
                               [np.nan, 1.95, 1.8, np.nan])
    csv.write_text("t,U\n0,1\n", encoding="utf-8")
    with pytest.raises(CalibrationError, match="time_s and potential_V"):
        statistics.cv_potentials([0.0], cal2, tmp_path)
    assert statistics.cv_potentials(t, Calibration()) is None


def test_interval_means_and_labels():
    z = np.arange(0, 21) * 1e-9
    prof = np.tile(z * 1e9, (2, 1)).astype(np.float32)
    prof[1, :6] = np.nan
    out = statistics.interval_means(prof, z, [[0, 5e-9], [5e-9, 10e-9], [10e-9, 20e-9]])
    np.testing.assert_allclose(out[0], [2.0, 7.0, 14.5])
    assert np.isnan(out[1, 0]) and out[1, 1] == pytest.approx(7.5)  # 6, 7, 8, 9
    assert statistics.interval_labels([[0, 5e-9], [5e-9, 10e-9], [10e-9, 20e-9]]) == ["0-5nm", "5-10nm", "10-20nm"]
