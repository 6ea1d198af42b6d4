"""The compiled kernels (nrm_plugins._nrmk) against their numpy reference implementations.

Each kernel computes the same definition as the numpy code it replaces; these tests run both on the same
inputs (random profiles with edge cases, and the whole pipeline on simulated ramps) and assert agreement
to rounding.  The contact kernel has its own module (test_native_contact.py).
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

from nrm_plugins import native, simulate
from nrm_plugins.pipeline import derivative

proc = sys.modules["nrm_plugins.pipeline.process"]

pytestmark = pytest.mark.skipif(not native.available(), reason=f"compiled kernels unavailable: {native.reason}")


def _profiles(seed=0, n=400, m=1024):
    """z_p falling with noisy steps (some stepping back), complex values, per-row lo/hi incl. edge cases."""
    rng = np.random.default_rng(seed)
    z = np.cumsum(-np.abs(rng.normal(0.06, 0.05, (n, m))), axis=1) + rng.uniform(20, 60, (n, 1))
    z = (z + rng.normal(0, 0.02, (n, m))).astype(np.float32)
    v = (rng.normal(size=(n, m)) + 1j * rng.normal(size=(n, m))).astype(np.complex64)
    lo = rng.integers(0, 200, n)
    hi = rng.integers(600, m + 1, n)
    hi[0] = lo[0] + 2  # the shortest profile
    lo[1], hi[1] = 0, m  # the whole row
    return z, v, lo, hi


@pytest.mark.parametrize("positions", [False, True])
def test_resample_matches_numpy(positions):
    z, v, lo, hi = _profiles()
    args = (z, v, lo, hi, 30.0, 0.05, 800, positions)
    a = derivative._resample_native(*args)
    b = derivative._resample_numpy(*args)
    a, b = (a, b) if positions else ((a,), (b,))
    for x, y in zip(a, b):
        assert np.array_equal(np.isnan(x), np.isnan(y))
        assert np.isfinite(x).sum() > 0.5 * x.size
        np.testing.assert_allclose(x[np.isfinite(x)], y[np.isfinite(y)], rtol=0, atol=5e-5)


@pytest.mark.parametrize("h", [1, 5, 10])
def test_local_polynomial_matches_numpy(h):
    rng = np.random.default_rng(h)
    n, g = 300, 600
    v = np.cumsum(rng.normal(size=(n, g)) + 1j * rng.normal(size=(n, g)), axis=1).astype(np.complex64)
    start = rng.integers(0, 100, n)
    stop = rng.integers(100, g + 1, n)
    stop[0] = start[0] + 2 * h  # one point too short: all NaN
    stop[1] = start[1] + 2 * h + 1  # just long enough: edges only
    for r in range(n):
        v[r, :start[r]] = np.nan
        v[r, stop[r]:] = np.nan
    step = 0.05
    a = derivative.local_polynomial(v, step, 2 * h * step)
    b = derivative._local_polynomial_numpy(v, step, h)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.isnan(a[0]).all() and np.isfinite(a[1, start[1]:stop[1]]).all()
    scale = np.nanmax(np.abs(b))
    np.testing.assert_allclose(a[np.isfinite(a)] / scale, b[np.isfinite(b)] / scale, rtol=0, atol=2e-6)
    # and the definition itself: a quadratic's derivative is exact, at the edges too
    k = np.arange(g, dtype=np.float64)
    quad = ((0.3 * k * k - 2 * k + 1) * step ** 2 * (1 + 0.5j)).astype(np.complex64)[None, :]
    d = derivative.local_polynomial(quad, step, 2 * h * step)
    np.testing.assert_allclose(d[0], (0.6 * k - 2) * step * (1 + 0.5j), rtol=2e-4, atol=2e-4)


def test_background_matches_numpy():
    rng = np.random.default_rng(1)
    n, m = 300, 1024
    X = (rng.normal(size=(n, m)) * 0.01 + 0.3 + np.arange(m) * 1e-5).astype(np.float32)
    Y = (rng.normal(size=(n, m)) * 0.01 - 0.2).astype(np.float32)
    valid = rng.random((n, m)) > 0.05
    start = rng.integers(0, 20, n)
    stop = rng.integers(20, 600, n)
    stop[0], stop[1], stop[2] = start[0], start[1] + 1, start[2] + 2  # empty, one and two samples
    half = stop // 2
    a = proc._background(X, Y, valid, start, stop, half)
    j = np.arange(m)[None, :]
    w = ((j >= start[:, None]) & (j < stop[:, None])) & valid
    with np.errstate(invalid="ignore", divide="ignore"):
        b = proc._background_numpy(X, Y, w, j < half[:, None])
    for part in a:
        for key in a[part]:
            x, y = np.asarray(a[part][key]), np.asarray(b[part][key])
            assert np.array_equal(np.isfinite(x), np.isfinite(y)), (part, key)
            ok = np.isfinite(y)
            np.testing.assert_allclose(x[ok], y[ok], rtol=1e-4, atol=1e-9, err_msg=f"{part} {key}")
    assert a["all"]["n"][3] == w[3].sum() and a["first"]["n"][3] == (w[3] & (j[0] < half[3])).sum()


def test_sei_thickness_matches_numpy():
    from nrm_plugins.pipeline import thickness

    rng = np.random.default_rng(0)
    n, g, top, step = 2000, 513, 101.2, 0.2
    depth = top - step * np.arange(g)
    h = rng.uniform(0, 60, n)  # layer thickness (nm): the response rises linearly below its top
    v = (np.clip(h[:, None] - depth[None, :], 0, None) * (1 + 0.3j) * 0.01
         + (rng.normal(size=(n, g)) + 1j * rng.normal(size=(n, g))) * 0.002).astype(np.complex64)
    start, stop = rng.integers(0, 50, n), rng.integers(300, g + 1, n)
    for r in range(n):
        v[r, :start[r]] = np.nan
        v[r, stop[r]:] = np.nan
    sigma = np.full(n, 0.002)
    sigma[:5], sigma[5:10] = np.nan, 0.0
    a, top_a = thickness.sei_thickness(v, sigma, top, step)
    b, top_b = thickness._sei_thickness_numpy(v, sigma, top, step)
    assert np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(top_a, top_b)
    np.testing.assert_allclose(a[np.isfinite(a)], b[np.isfinite(b)], rtol=0, atol=1e-5)
    # and the truth: the layer's top where it lies inside the data (a slope of 5 sigma per nm here: the
    # secant extrapolation over 1 nm of noisy response is good to a few tenths of a nm)
    seen = np.isfinite(a) & (h > 5) & (h < depth[start] - 2) & (h > depth[stop - 1] + 2)
    assert seen.sum() > 500
    err = np.abs(a[seen] - h[seen])
    assert np.median(err) < 0.3 and np.percentile(err, 95) < 0.8, (np.median(err), np.percentile(err, 95))


def test_undo_output_filter_matches_numpy(monkeypatch):
    from nrm_plugins.pipeline import moduli

    rng = np.random.default_rng(0)
    t = np.arange(1024)
    y = (np.sin(t / 60.0)[None, :] * rng.uniform(0.5, 2, (40, 1)) + rng.normal(0, 1e-3, (40, 1024)))
    y = y.astype(np.float32)
    a = moduli.undo_output_filter(y.copy(), 1e-4, 3e-4, 24)
    monkeypatch.setattr(native, "_lib", None)
    b = moduli.undo_output_filter(y.copy(), 1e-4, 3e-4, 24)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())


@pytest.mark.parametrize("preset, direction, defects", [
    ("rough", "approach", None),
    ("realistic", "retract", {"nan_ramp": 6, "nan_run": 12, "no_contact": 6, "starts_in_contact": 6, "clipped": 12}),
])
def test_whole_pipeline_same_with_and_without_kernels(monkeypatch, preset, direction, defects):
    """nrm.process on simulated ramps (rough; retract ramps with every kind of defect, which takes the masked
    path of every check): the same flags and, to rounding, the same results with the numpy stages."""
    import nrm_plugins as nrm

    sim = simulate.simulate(preset, nx=24, ny=12, seed=3, windows=[[0.005, 2.0]], direction=direction,
                            defects=defects)
    opts = dict(progress=False, windows=[[1.0, 2.0], [0.005, 1.0]])
    fast = nrm.process(sim.model, sim.calibration, **opts)
    monkeypatch.setattr(native, "_lib", None)
    ref = nrm.process(sim.model, sim.calibration, **opts)
    assert (fast.flag.values == ref.flag.values).all()
    good = sim.truth["defect"].values == ""
    assert fast.ok.values.sum() == ref.ok.values.sum() >= 0.95 * good.sum()
    assert (fast.flag.values[~good] != "").all()  # every injected defect flagged (some NaN runs stay usable)
    ok = ref.ok.values
    np.testing.assert_allclose(fast.contact_position[ok], ref.contact_position[ok], rtol=0, atol=1e-12)  # < 1 pm
    # a rejected ramp's two lines may be nearly parallel: its position agrees within its (huge) uncertainty
    pa, pb = fast.contact_position.values[~ok], ref.contact_position.values[~ok]
    assert np.array_equal(np.isnan(pa), np.isnan(pb))
    fin = np.isfinite(pb)
    assert (np.abs(pa - pb)[fin] <= 1e-3 * ref.contact_uncertainty.values[~ok][fin] + 1e-12).all()
    for name in ("E_storage", "E_loss", "sei_thickness", "E_storage_mean"):
        x, y = fast[name].values, ref[name].values
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        scale = np.nanmax(np.abs(y))
        diff = np.abs(x[np.isfinite(x)] - y[np.isfinite(y)]) / scale
        # rounding-level differences of the contact point (float32 block sums in numpy, double in C) can move
        # the first sample of a profile by one: the one-sided derivative at that edge then changes a little
        assert np.mean(diff < 5e-5) > 0.9999 and diff.max() < 2e-3, (name, np.mean(diff < 5e-5), diff.max())


def test_damaged_ramps_same_flags_with_and_without_kernels(monkeypatch):
    """Ramps damaged at random (NaN, ±inf and 1e30 runs, constant, zero, noise, reversed or negated rows in
    any channel): the kernels neither crash nor disagree with the numpy stages on any ramp's flag."""
    import warnings

    import nrm_plugins as nrm

    sim = simulate.simulate("realistic", nx=8, ny=8, seed=1)
    base = sim.model.load()
    rng = np.random.default_rng(7)
    n, m = base.sizes["ramp"], base.sizes["sample"]
    damaged = np.zeros(n, bool)
    ds = base.copy(deep=True)
    for name in ("piezo", "deflection", "lateral_x", "lateral_y"):
        a = ds[name].values
        for _ in range(12):
            r, kind = rng.integers(0, n), rng.integers(0, 9)
            i0 = rng.integers(0, m)
            i1 = rng.integers(i0, m + 1)
            damaged[r] = True
            if kind < 3:
                a[r, i0:i1] = (np.nan, np.inf, -np.inf)[kind]
            elif kind == 3:
                a[r] = a[r, 0]
            elif kind == 4:
                a[r, i0:i1] = 1e30
            elif kind == 5:
                a[r] = rng.normal(size=m)
            elif kind == 6:
                a[r] = 0
            elif kind == 7:
                a[r] = a[r, ::-1].copy()
            else:
                a[r, i0:i1] = -a[r, i0:i1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = nrm.process(ds, sim.calibration, progress=False)
        monkeypatch.setattr(native, "_lib", None)
        ref = nrm.process(ds, sim.calibration, progress=False)
    assert (fast.flag.values == ref.flag.values).all()
    assert (fast.ok.values == ref.ok.values).all()
    assert fast.ok.values[~damaged].all()  # the untouched ramps all pass
    assert (~fast.ok.values[damaged]).sum() >= 10
    ok = fast.ok.values
    assert np.isfinite(fast.contact_position.values[ok]).all()


def test_despike_matches_numpy_and_the_truth(monkeypatch):
    """Single-sample spikes on noisy ramps with a kink (free line, then a steep contact line), NaN runs and
    shorter rows: every injected spike is removed, nothing else changes, and C equals numpy bit for bit."""
    rng = np.random.default_rng(3)
    n, m = 300, 1024
    i = np.arange(m)
    kink = rng.integers(500, 900, n)
    clean = np.where(i[None, :] < kink[:, None], 0.002 * i[None, :], 0.002 * kink[:, None]
                     + 0.15 * (i[None, :] - kink[:, None]))
    y = (clean + rng.normal(0, 0.05, (n, m))).astype(np.float32)
    hit = (rng.random((n, m)) < 0.003) & (i[None, :] > 0) & (i[None, :] < m - 1)
    hit[:, 1:] &= ~hit[:, :-1]  # isolated spikes (two in a row are not single-sample outliers)
    y_clean = y.copy()
    y[hit] += (rng.choice([-1, 1], hit.sum()) * rng.uniform(2, 6, hit.sum())).astype(np.float32)
    length = np.full(n, m)
    length[:20] = rng.integers(100, m, 20)
    y[20:30, 100:140] = np.nan
    a, b = y.copy(), y.copy()
    ca = proc._despike(a, length)
    monkeypatch.setattr(native, "_lib", None)
    cb = proc._despike(b, length)
    assert np.array_equal(a, b, equal_nan=True) and np.array_equal(ca, cb)
    inside = i[None, :] < length[:, None] - 1
    fixed = hit & inside & np.isfinite(y_clean)
    fixed[:, 1:] &= np.isfinite(y[:, :-1])
    fixed[:, :-1] &= np.isfinite(y[:, 1:])
    assert np.all(np.abs(a[fixed] - y_clean[fixed]) < 0.5)  # each spike became a neighbour's value
    untouched = ~hit
    changed = (a != y) & untouched & np.isfinite(y)
    assert changed.sum() <= 2, changed.sum()  # 8 sigma: noise alone is (almost) never a spike


@pytest.mark.parametrize("kernels", [True, False])
def test_tiny_ramps_and_all_rejected_chunks(monkeypatch, kernels):
    """Ramps of 1-16 samples (every one rejected "NaN in ramp": too few samples) and chunks in which every
    ramp is rejected before the lock-in lag correction (on here: the simulator declares τ): flags, no crash,
    with and without the kernels."""
    import warnings

    import nrm_plugins as nrm

    if not kernels:
        monkeypatch.setattr(native, "_lib", None)
    sim = simulate.simulate("realistic", nx=2, ny=2, seed=1)
    ds = sim.model.load()
    for m in (1, 3, 8, 16):
        sub = ds.isel(sample=slice(0, None, ds.sizes["sample"] // m)).isel(sample=slice(0, m))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = nrm.process(sub, sim.calibration, progress=False, time_constant_correction=True)
        assert not res.ok.values.any()
        assert set(res.flag.values) == {"NaN in ramp"}, (m, set(res.flag.values))
        assert res.attrs["counts"]["rejected"] == ds.sizes["ramp"]


@pytest.mark.parametrize("kernels", [True, False])
def test_dead_lateral_channel_and_empty_input(monkeypatch, kernels):
    """X and Y exactly constant over a ramp (a disconnected or stuck lock-in output) is no measurement: the
    ramp is rejected "no profile" with a NaN SEI thickness, not accepted as a layer of zero modulus; the
    others are unaffected.  A dataset without ramps is a clear error."""
    import warnings

    import nrm_plugins as nrm

    if not kernels:
        monkeypatch.setattr(native, "_lib", None)
    sim = simulate.simulate("realistic", nx=4, ny=4, seed=1)
    ds = sim.model.load()
    ds["lateral_x"].values[:8] = 0.3
    ds["lateral_y"].values[:8] = -0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = nrm.process(ds, sim.calibration, progress=False, windows=[[0.005, 2.0]])
    assert list(res.flag.values[:8]) == ["no profile"] * 8
    assert np.isnan(res.sei_thickness.values[:8]).all() and np.isnan(res.E_storage.values[:8]).all()
    assert res.ok.values[8:].all()
    with pytest.raises(nrm.errors.ModelError, match="nothing to process"):
        nrm.process(ds.isel(ramp=slice(0, 0)), sim.calibration)
