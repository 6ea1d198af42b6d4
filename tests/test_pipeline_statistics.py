"""Window statistics through the pipeline: grouping (potential windows, the [cv] section, other ramp
coordinates), CI coverage against the simulator's population mean, bootstrap CIs."""
from __future__ import annotations

import numpy as np
import pytest

import nrm_plugins as nrm
from nrm_plugins import simulate
from nrm_plugins.pipeline import statistics


@pytest.fixture(scope="module")
def population():
    """200 independent groups of 20 locations (one ramp each) in a narrow potential window at the low
    end of the CV, where the layers no longer change with the potential: each group is one "seed" of
    the coverage experiment.  Clean measurement; the locations differ by lognormal modulus factors
    (modulus_spread 0.1) so that there is something for the interval to cover."""
    sim = simulate.simulate("clean", nx=20, ny=200, seed=7, windows=[[0.005, 0.02]], modulus_spread=0.1)
    y = np.unique(sim.model.y.values)
    step = y[1] - y[0]
    windows = [[float(v - step / 2), float(v + step / 2)] for v in y]
    res = nrm.process(sim.model, sim.calibration, group_by="y", windows=windows)
    return sim, res, windows


def _depths(sim):
    """z (grid index) at least 3 nm from every layer boundary, inside the SEI."""
    tops = sim.truth.layer_top.values
    z = sim.truth.z.values
    bounds = np.concatenate([[0.0], tops.min(0), tops.max(0)])
    ok = (z > 3e-9) & (z < tops[:, -1].min() - 3e-9)
    for b in bounds:
        ok &= np.abs(z - b) > 3e-9
    idx = np.flatnonzero(ok)
    return idx[:: max(1, len(idx) // 6)]


def test_t_interval_coverage_of_the_population_mean(population):
    sim, res, windows = population
    assert res.sizes["window"] == 200 and (res.E_storage_n.values[:, 300] == 20).all()
    for k in _depths(sim):
        for q in ("E_storage", "E_loss"):
            truth = sim.truth[f"{q}_mean"].values[0, k]
            lo, hi = res[f"{q}_ci_low"].values[:, k], res[f"{q}_ci_high"].values[:, k]
            coverage = np.mean((lo <= truth) & (truth <= hi))
            assert 0.92 <= coverage <= 0.98, (q, k, coverage)


def test_bootstrap_interval_coverage(population):
    sim, res, windows = population
    ks = _depths(sim)
    y = res.y.values
    member = np.stack([(y >= a) & (y < b) for a, b in windows]) & res.ok.values[None, :]
    mean, lo, hi, n = statistics.bootstrap_interval(res.E_storage.values[:, ks], member, samples=1000, seed=3)
    np.testing.assert_allclose(mean, res.E_storage_mean.values[:, ks], rtol=1e-5)
    for j, k in enumerate(ks):
        truth = sim.truth.E_storage_mean.values[0, k]
        coverage = np.mean((lo[:, j] <= truth) & (truth <= hi[:, j]))
        assert 0.92 <= coverage <= 0.98, (k, coverage)


def test_bootstrap_option_in_process():
    sim = simulate.simulate("noisy", nx=10, ny=10, seed=8)
    t = nrm.process(sim.model, sim.calibration)
    b = nrm.process(sim.model, sim.calibration, ci_method="bootstrap", bootstrap_samples=500, seed=1)
    assert b.attrs["ci_method"] == "bootstrap"
    np.testing.assert_allclose(b.E_storage_mean.values, t.E_storage_mean.values, rtol=1e-5, atol=1.0,
                               equal_nan=True)
    zin = (t.z.values > 1e-9) & (t.z.values < 3e-9)
    wt = (t.E_storage_ci_high - t.E_storage_ci_low).values[:, zin]
    wb = (b.E_storage_ci_high - b.E_storage_ci_low).values[:, zin]
    assert np.all(np.abs(wb / wt - 1) < 0.25)  # 100 ramps per window: both intervals agree
    assert np.isfinite(b.sei_thickness_ci_low.values).all()


def test_group_by_cv_section_when_the_file_has_only_times():
    sim = simulate.simulate("noisy", nx=6, ny=6, seed=9)
    ds = sim.model.copy()
    ds["potential"] = ("ramp", np.full(ds.sizes["ramp"], np.nan))
    res = nrm.process(ds, sim.calibration)  # the simulator's calibration carries the [cv] section
    assert res.attrs["potential_source"] == "[cv] section"
    np.testing.assert_allclose(res.potential.values, sim.model.potential.values, atol=1e-6)
    assert res.sei_thickness_n.values.tolist() == [36, 36, 36, 36]


def test_group_by_text_and_numeric_coordinates():
    sim = simulate.simulate("noisy", nx=6, ny=6, seed=10, direction="both")
    by_dir = nrm.process(sim.model, sim.calibration, group_by="direction")  # the [processing] windows are ignored
    assert by_dir.window.values.tolist() == ["approach", "retract"]
    assert any("windows" in w and "direction" in w for w in by_dir.attrs["warnings"])
    assert by_dir.E_storage_n.values[:, 100].tolist() == [144, 144]
    x = sim.model.x.values
    half = float(np.median(x))
    by_x = nrm.process(sim.model, sim.calibration, group_by="x", windows=[[-1.0, half], [half, 1.0]])
    assert by_x.window_low.values.tolist() == [-1.0, half]
    assert by_x.sei_thickness_n.values.sum() == by_x.attrs["counts"]["accepted"]
    # approach and retract of the same locations agree inside the layers (no lag in this preset)
    zin = (by_dir.z.values > 2e-9) & (by_dir.z.values < 4e-9)
    a, r = by_dir.E_storage_mean.values[:, zin]
    assert np.all(np.abs(r / a - 1) < 0.05)


def test_empty_window_and_single_ramp_window():
    sim = simulate.simulate("noisy", nx=4, ny=4, seed=11, windows=[[1.5, 2.0]])
    p = sim.model.potential.values
    one = float(np.sort(p)[0])
    res = nrm.process(sim.model, sim.calibration, windows=[[5.0, 6.0], [one - 1e-9, one + 1e-9], [1.5, 2.0]])
    assert res.E_storage_n.values[0].max() == 0 and np.isnan(res.E_storage_mean.values[0]).all()
    n1 = res.E_storage_n.values[1]
    assert n1.max() == 1
    assert np.isfinite(res.E_storage_mean.values[1][n1 == 1]).all()
    assert np.isnan(res.E_storage_ci_low.values[1]).all()
    assert any("no accepted ramp" in w for w in res.attrs["warnings"])


def test_t_interval_coverage_over_200_seeds():
    """The [report] acceptance literally: 200 seeds, each a small window of 20 locations with one ramp each;
    the 95 % t interval of the window mean covers the simulator's population mean in 92–98 % of seeds."""
    covered, truth_k = [], None
    for seed in range(200):
        sim = simulate.simulate("clean", nx=5, ny=4, n_samples=512, seed=1000 + seed, windows=[[0.005, 0.02]],
                                modulus_spread=0.1)
        if truth_k is None:
            k = int(_depths(sim)[len(_depths(sim)) // 2])
            truth_k = k, float(sim.truth.E_storage_mean.values[0, k])
        k, truth = truth_k
        res = nrm.process(sim.model, sim.calibration, workers=1)
        assert int(res.E_storage_n.values[0, k]) == 20
        covered.append(res.E_storage_ci_low.values[0, k] <= truth <= res.E_storage_ci_high.values[0, k])
    assert 0.92 <= np.mean(covered) <= 0.98, np.mean(covered)
