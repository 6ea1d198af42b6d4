"""The forward-model simulator (nrm_plugins.simulate): its numbers against the physics it claims."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import special

import nrm_plugins as nrm
from nrm_plugins.calibration import Calibration
from nrm_plugins.errors import ReaderError
from nrm_plugins.plugins import get_plugin_manager
from nrm_plugins.simulate import cv_potential, lockin, sample, simulate, window_interval
from nrm_plugins.simulate.presets import parameters

CHECKER = Path(__file__).resolve().parents[2] / "shared" / "tools" / "check_contracts.py"


@pytest.fixture(scope="module")
def clean():
    return simulate("clean", nx=6, ny=6, n_samples=1024, seed=3)


@pytest.fixture(scope="module")
def realistic():
    return simulate("realistic", nx=6, ny=6, n_samples=1024, seed=4)


def _has_3ds_writer() -> bool:
    return any(".3ds" in f.get("suffixes", []) for f in get_plugin_manager().write_formats())


needs_3ds = pytest.mark.skipif(not _has_3ds_writer(), reason="no .3ds writer registered (nrm plugins)")


# ----------------------------------------------------------------------------------------------- CV
def test_cv_potential_at_vertices_and_holds():
    t = [-5.0, 0.0, 500.0, 1995.0, 1995.0 + 995.0, 1995.0 + 1995.0, 5000.0]
    u = cv_potential(t, 2.0, -1e-3, [0.005, 2.0])
    np.testing.assert_allclose(u, [2.0, 2.0, 1.5, 0.005, 1.0, 2.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(cv_potential([10.0, 110.0], 1.0, 2e-3, [], start_time=10.0), [1.0, 1.2])
    assert cv_potential(np.zeros((2, 3)), 2.0, -1e-3, [0.005]).shape == (2, 3)


def test_cv_sign_and_windows():
    with pytest.raises(ValueError, match="first vertex"):
        cv_potential([0.0], 2.0, 1e-3, [0.005])
    t0, t1 = window_interval([1.0, 1.5], 2.0, -1e-3, [0.005])
    assert (t0, t1) == pytest.approx((500.0, 1000.0))
    t0, t1 = window_interval([1.0, 1.5], 0.5, 1e-3, [2.0, 0.0], start_time=100.0)  # on the way up
    assert (t0, t1) == pytest.approx((600.0, 1100.0))
    with pytest.raises(ValueError, match="never reaches"):
        window_interval([3.0, 4.0], 2.0, -1e-3, [0.005])


def test_ramps_fill_each_window_once(clean):
    tr = clean.truth
    u = clean.model.potential.values
    for w, (lo, hi) in enumerate(clean.windows):
        inside = tr.window_index.values == w
        assert inside.sum() == 36
        assert np.all((u[inside] >= lo) & (u[inside] < hi))
        xy = set(zip(clean.model.x.values[inside], clean.model.y.values[inside]))
        assert len(xy) == 36
    np.testing.assert_allclose(u, cv_potential(clean.model.time.values, 2.0, -1e-3, [0.005]), atol=1e-6)


# ------------------------------------------------------------------------------------- the SEI model
def test_integral_derivative_is_minus_modulus():
    p = parameters("realistic")
    thickness, storage, tan_delta = sample.median_layers(p, np.array([0.3]))
    top, steps = np.cumsum(thickness, -1), sample.steps(storage)
    z = np.linspace(0, 45e-9, 901)
    h = 1e-12
    derivative = (sample.integral(z - h, top, steps, p.transition_width)
                  - sample.integral(z + h, top, steps, p.transition_width)) / (2 * h)
    modulus = sample.modulus(z, top, steps, p.transition_width)
    np.testing.assert_allclose(derivative, modulus, rtol=1e-5, atol=1e-6 * storage.max())
    # inside each layer thicker than 10 w the modulus is the layer's own (the 1-nm skin is all transition)
    bottom = np.concatenate([[0.0], top[0, :-1]])
    thick = thickness[0] > 10 * p.transition_width
    mid = ((bottom + top[0]) / 2)[thick]
    np.testing.assert_allclose(sample.modulus(mid, top, steps, p.transition_width), storage[0][thick], rtol=1e-4)


def test_grid_profiles_equal_the_direct_formula():
    p = parameters("realistic")
    thickness, storage, tan_delta = sample.median_layers(p, np.array([1.9, 0.7, 0.01]))
    top = np.cumsum(thickness, -1)
    width = p.transition_width * np.array([1.0, 3.0, 0.5, 1.0])
    s_steps, l_steps = sample.steps(storage), sample.steps(storage * tan_delta)
    grid_s, grid_l = sample.grid_profiles(0.1e-9, 501, top, width, s_steps, l_steps)
    z = np.arange(501) * 0.1e-9
    direct = np.sum(s_steps[:, None, :] * special.ndtr((top[:, None, :] - z[None, :, None]) / width), -1)
    np.testing.assert_allclose(grid_s, direct, rtol=1e-12, atol=1e-13 * storage.max())
    direct = np.sum(l_steps[:, None, :] * special.ndtr((top[:, None, :] - z[None, :, None]) / width), -1)
    np.testing.assert_allclose(grid_l, direct, rtol=1e-12, atol=1e-13 * storage.max())


def test_population_mean_is_the_expectation():
    """The closed-form mean profile against 40 000 drawn locations (fixed seed): within 4 standard errors."""
    p = parameters("realistic")
    rng = np.random.default_rng(11)
    n = 40_000
    factors = sample.location_factors(p, n, rng)
    layers = sample.ramp_layers(p, np.full(n, 0.25), factors)
    z = np.arange(46) * 1e-9
    draws = sample.modulus(z[None, :], layers["top"][:, None, :], sample.steps(layers["storage"])[:, None, :],
                           p.transition_width)
    mean_storage, _ = sample.mean_profile(p, [0.25], 1e-9, 46)
    se = draws.std(0) / math.sqrt(n)
    assert np.all(np.abs(draws.mean(0) - mean_storage[0]) < 4 * se + 1e-9 * mean_storage.max())


def test_window_mean_without_spread_is_the_average_profile(clean):
    tr = clean.truth
    for w in range(len(clean.windows)):
        inside = tr.window_index.values == w
        np.testing.assert_allclose(tr.E_storage_mean[w], tr.E_storage.values[inside].mean(0), rtol=1e-5, atol=1)
        np.testing.assert_allclose(tr.E_loss_mean[w], tr.E_loss.values[inside].mean(0), rtol=1e-5, atol=1)
        assert tr.sei_thickness_mean[w] == pytest.approx(tr.sei_thickness.values[inside].mean(), rel=1e-12)
    thickness = tr.sei_thickness_mean.values
    assert np.all(np.diff(thickness) > 0) and 3e-9 < thickness[0] < 6e-9 and 30e-9 < thickness[-1] < 40e-9


# ------------------------------------------------------------------------------------ normal channel
def test_force_balance_and_layer_push(realistic):
    p = realistic.params
    rows = np.arange(0, realistic.n_ramps, 7)
    ideal = realistic.ideal(rows)
    z, delta, hard = ideal.z.values, ideal.deflection.values, ideal.hard.values
    top = realistic.layers["top"][rows]
    steps = realistic.steps_storage[rows]
    layer = ~hard & (z < top[:, -1:] + 8 * p.transition_width)
    r = np.nonzero(layer)[0]
    force = p.normal_coupling * sample.integral(z[layer], top[r], steps[r], p.transition_width)
    np.testing.assert_allclose(p.spring_constant * delta[layer], force, rtol=0, atol=3e-15 * p.spring_constant)  # δ to 3e-15 m
    # hard contact: k_c δ = F_0 + (4/3) E_r √R d^{3/2}
    r = np.nonzero(hard)[0]
    force0 = p.normal_coupling * sample.integral(np.zeros(len(r)), top[r], steps[r], p.transition_width)
    hertz = 4 / 3 * p.electrode_modulus * math.sqrt(p.tip_radius) * (-z[hard]) ** 1.5
    np.testing.assert_allclose(p.spring_constant * delta[hard], force0 + hertz, rtol=1e-9)
    # δ at contact of order 0.1-2 nm, and z_p = x + δ is monotone along each ramp
    d0 = realistic.truth.deflection_at_contact.values
    assert 0.1e-9 < np.median(d0) < 2e-9
    assert np.all(np.diff(z, axis=1) < 0)


def test_ideal_intersection_within_0p1nm(clean, realistic):
    error = clean.truth.contact_ideal - clean.truth.contact_position
    assert np.abs(error).max() < 0.1e-9
    assert np.abs(realistic.truth.contact_ideal - realistic.truth.contact_position).max() < 0.2e-9
    # the definition: intersection of δ = 0 with the least-squares line through the hard-contact part
    ideal = clean.ideal([5])
    hard = ideal.hard.values[0]
    a, b = np.polyfit(ideal.piezo.values[0][hard], ideal.deflection.values[0][hard], 1)
    assert -b / a == pytest.approx(clean.truth.contact_ideal.values[5], abs=1e-15)


def test_deflection_volts(clean):
    p = clean.params
    ideal = clean.ideal([2])
    volts = clean.model.deflection.values[2]
    np.testing.assert_allclose(volts, ideal.deflection.values[0] / p.invols + p.baseline_offset[0], rtol=1e-6)


# ----------------------------------------------------------------------------------- lateral channel
def _away_from_boundaries(z, top, width, margin=5.0):
    return (z > margin * width) & np.all(np.abs(z[..., None] - top) > margin * width, axis=-1)


def test_lateral_derivative_is_4_rg_Al_E(clean):
    """k_lat → ∞ (clean): −dF*/dz_p = 4 r_g A_l E*(z_p) within 0.1 % (finite differences between samples)."""
    p = clean.params
    assert p.lateral_stiffness >= 1e7
    rows = np.arange(clean.n_ramps)
    ideal = clean.ideal(rows)
    z = ideal.z.values
    force = ideal.F_storage.values + 1j * ideal.F_loss.values
    dz = np.diff(z, axis=1)
    derivative = -np.diff(force, axis=1) / dz
    zm = (z[:, 1:] + z[:, :-1]) / 2
    top = clean.layers["top"][:, None, :]
    ok = _away_from_boundaries(zm, top, p.transition_width) & (zm < top[..., -1] - 5 * p.transition_width)
    e_s = sample.modulus(zm, top, clean.steps_storage[:, None, :], p.transition_width)
    e_l = sample.modulus(zm, top, clean.steps_loss[:, None, :], p.transition_width)
    expected = 4 * p.r_g * p.dither_amplitude * (e_s + 1j * e_l)
    assert ok.sum() > 2000
    np.testing.assert_allclose(derivative.real[ok], expected.real[ok], rtol=1e-3)
    np.testing.assert_allclose(derivative.imag[ok], expected.imag[ok], rtol=1e-3)


def test_tip_compliance_series_inverts_exactly(realistic):
    """Finite k_lat: the DESIGN.md §1 exact inverse E* = −A_l F*'/(4 r_g (A_l − F*/k_lat)²) gives E*."""
    p = realistic.params
    assert 10 <= p.lateral_stiffness <= 1000
    ideal = realistic.ideal(np.arange(realistic.n_ramps))
    z = ideal.z.values
    force = ideal.F_storage.values + 1j * ideal.F_loss.values
    zm = (z[:, 1:] + z[:, :-1]) / 2
    fm = (force[:, 1:] + force[:, :-1]) / 2
    derivative = np.diff(force, axis=1) / np.diff(z, axis=1)
    a_l = p.dither_amplitude
    estimate = -a_l * derivative / (4 * p.r_g * (a_l - fm / p.lateral_stiffness) ** 2)
    top = realistic.layers["top"][:, None, :]
    ok = _away_from_boundaries(zm, top, p.transition_width) & (zm < top[..., -1] - 5 * p.transition_width)
    e_s = sample.modulus(zm, top, realistic.steps_storage[:, None, :], p.transition_width)
    np.testing.assert_allclose(estimate.real[ok], e_s[ok], rtol=1e-3)
    naive = -derivative.real / (4 * p.r_g * a_l)  # Eq. 5 without the correction is measurably low at depth
    deep = ok & (zm < 3e-9)
    assert deep.sum() > 50 and np.median(naive[deep] / e_s[deep]) < 0.995
    # hard contact saturates towards the series limit A_l k_lat
    assert np.abs(force[ideal.hard.values]).max() < a_l * p.lateral_stiffness


def test_lockin_outputs_invert_with_the_design_formula():
    """DESIGN.md §3: U = ((X+iY) − offset) e^{−iφ}; V* = U sens/(10 expand); peak √2 V*; θ = S_lat V*;
    F* = θ k_t / l_t — gives back the simulated force (sample + liquid background) exactly."""
    sim = simulate("realistic", nx=4, ny=4, n_samples=512, seed=5, output_noise=0.0, time_constant=0.0,
                   expand=10, sensitivity=20e-3)
    cal = sim.calibration
    m = sim.model
    offset = complex(*cal["lockin", "offset"])
    u = (m.lateral_x.values + 1j * m.lateral_y.values - offset) * np.exp(-1j * math.radians(cal["lockin", "phase"]))
    v = u * cal["lockin", "sensitivity"] / (10 * cal["lockin", "expand"]) * math.sqrt(2)
    force = cal["lateral", "torsion_sensitivity"] * v * cal["lateral", "torsional_stiffness"] / cal["lateral", "tip_length"]
    ideal = sim.ideal()
    expected = ideal.F_storage.values + 1j * ideal.F_loss.values \
        + (sim.truth.background_storage.values + 1j * sim.truth.background_loss.values)[:, None]
    unclipped = (np.abs(m.lateral_x.values) < 10.5) & (np.abs(m.lateral_y.values) < 10.5)
    assert unclipped.mean() > 0.5
    scale = np.abs(expected[unclipped]).max()
    np.testing.assert_allclose(force[unclipped], expected[unclipped], rtol=1e-5, atol=1e-6 * scale)
    # clipping happens only in hard contact
    assert not np.any(~unclipped & ~ideal.hard.values)


def test_output_filter_lag_and_partial_filtering():
    dt, tau = 1e-3, 2e-3
    t = np.arange(2000) * dt
    ramp = np.where(t > 0.5, t - 0.5, 0.0)[None, :] * np.ones((2, 1))
    for slope in (6, 12, 24):
        out = lockin.output_filter(ramp.copy(), dt, tau, slope)
        lag = slope // 6 * tau
        late = t > 0.5 + 60 * lag
        np.testing.assert_allclose(out[0, late], ramp[0, late] - lag, rtol=0, atol=1e-12)
        partial = lockin.output_filter(ramp.copy(), dt, tau, slope, span=(np.array([400, 500]), np.array([2000, 2000])))
        np.testing.assert_allclose(partial, out, rtol=0, atol=1e-15)
    # a signal that changes only at the start (retract-like): filtering stops once it has settled
    head = np.where(t < 0.2, 1.0 - t, 0.8)[None, :]
    full = lockin.output_filter(head.copy(), dt, tau, 24)
    partial = lockin.output_filter(head.copy(), dt, tau, 24, span=(np.array([0]), np.array([200])))
    np.testing.assert_allclose(partial, full, rtol=0, atol=1e-14)


def test_lateral_outputs_equal_the_fully_filtered_ideal_force():
    """Approach and retract ramps with a time constant: the outputs equal the whole-ramp filter of the
    noise-free force (the generator filters only the part of each ramp that changes)."""
    sim = simulate("realistic", nx=3, ny=3, n_samples=512, seed=4, direction="both", output_noise=0.0,
                   time_constant=3e-3, filter_slope=24)
    p = sim.params
    ideal = sim.ideal()
    force = ideal.F_storage.values + 1j * ideal.F_loss.values \
        + (sim.truth.background_storage.values + 1j * sim.truth.background_loss.values)[:, None]
    u = force * lockin.rotation(p) * p.tip_length / (p.torsional_stiffness * p.torsion_sensitivity)
    dt = sim.ramp_duration / (sim.n_samples - 1)
    x = np.clip(lockin.output_filter(u.real + p.offset[0], dt, p.time_constant, 24), -10.5, 10.5)
    y = np.clip(lockin.output_filter(u.imag + p.offset[1], dt, p.time_constant, 24), -10.5, 10.5)
    np.testing.assert_allclose(sim.model.lateral_x.values, x, rtol=1e-6, atol=2e-6)
    np.testing.assert_allclose(sim.model.lateral_y.values, y, rtol=1e-6, atol=2e-6)


def test_time_constant_delays_the_lateral_signal():
    base = dict(nx=3, ny=3, n_samples=1024, seed=2, output_noise=0.0)
    fast = simulate("clean", **base)
    slow = simulate("clean", time_constant=5e-3, filter_slope=12, **base)
    shift = 2 * 5e-3 / (fast.ramp_duration / 1023)  # samples
    x0, x1 = fast.model.lateral_x.values[-1], slow.model.lateral_x.values[-1]
    level = 0.1  # V: inside the soft outer layer of the thick SEI, where the signal changes slowly
    # approach: the signal grows with the sample index; the filtered copy reaches the level later
    crossing = [np.argmax(x > level) for x in (x0, x1)]
    assert crossing[1] - crossing[0] == pytest.approx(shift, abs=1.5)


# ------------------------------------------------------------------------- determinism, presets, API
def test_deterministic_with_a_seed():
    a = simulate("realistic", nx=4, ny=4, n_samples=256, seed=9, defects={"nan_run": 2})
    b = simulate("realistic", nx=4, ny=4, n_samples=256, seed=9, defects={"nan_run": 2})
    c = simulate("realistic", nx=4, ny=4, n_samples=256, seed=10, defects={"nan_run": 2})
    for v in ("piezo", "deflection", "lateral_x", "lateral_y"):
        assert np.array_equal(a.model[v].values, b.model[v].values, equal_nan=True)
    assert not np.array_equal(a.model.deflection.values, c.model.deflection.values, equal_nan=True)
    assert np.array_equal(a.truth.defect.values, b.truth.defect.values)


def test_presets_and_errors():
    with pytest.raises(ValueError, match="unknown simulator preset"):
        simulate("fancy")
    with pytest.raises(ValueError, match="unknown simulator parameter"):
        simulate("clean", rougness=1e-6)
    with pytest.raises(ValueError, match="unknown defect"):
        simulate("clean", nx=2, ny=2, defects={"spikes": 1})
    with pytest.raises(ValueError, match="direction"):
        simulate("clean", nx=2, ny=2, direction="sideways")
    rough = simulate("rough", nx=12, ny=12, n_samples=256, windows=[[1.0, 2.0]], seed=1)
    span = np.ptp(rough.truth.electrode_position.values)
    assert 0.5e-6 < span < 3e-6  # micrometre roughness
    assert rough.truth.contact_ideal.notnull().all()
    lengths = np.abs(rough.model.piezo[:, 0] - rough.model.piezo[:, -1]).values
    assert lengths.min() >= 150e-9 - 1e-12 and lengths.max() <= 250e-9 + 1e-12


def test_retract_and_both():
    sim = simulate("noisy", nx=3, ny=3, n_samples=512, direction="both", seed=8)
    d = sim.model.direction.values
    assert list(d[:4]) == ["approach", "retract", "approach", "retract"] and sim.n_ramps == 72
    piezo = sim.model.piezo.values
    assert np.all(piezo[d == "approach", 0] > piezo[d == "approach", -1])
    assert np.all(piezo[d == "retract", 0] < piezo[d == "retract", -1])
    np.testing.assert_array_equal(sim.model.x.values[0::2], sim.model.x.values[1::2])
    np.testing.assert_allclose(piezo[1::2, ::-1], piezo[0::2], rtol=0, atol=1e-15)  # retraces the approach
    assert np.all(sim.model.time.values[1::2] > sim.model.time.values[0::2])
    assert np.abs(sim.truth.contact_ideal - sim.truth.contact_position).max() < 0.2e-9
    retract = simulate("clean", nx=2, ny=2, n_samples=512, direction="retract", seed=8)
    assert set(retract.model.direction.values) == {"retract"}
    assert np.all(retract.ideal().hard.values[:, 0])


def test_defects_are_labelled_exactly():
    counts = {"nan_ramp": 3, "nan_run": 4, "no_contact": 5, "starts_in_contact": 6, "clipped": 3}
    sim = simulate("realistic", nx=8, ny=8, n_samples=512, windows=[[0.005, 0.5]], seed=12, defects=counts)
    label = sim.truth.defect.values
    assert {k: int((label == k).sum()) for k in counts} == counts
    assert int((label == "").sum()) == 64 - sum(counts.values())
    nan = np.isnan(sim.model.deflection.values)
    assert np.array_equal(nan.all(1), label == "nan_ramp")
    assert np.array_equal(nan.any(1) & ~nan.all(1), label == "nan_run")
    assert np.array_equal(np.isnan(sim.model.lateral_x.values).any(1), nan.any(1))
    ideal = sim.ideal()
    reaches = ideal.hard.values.any(1)
    assert np.array_equal(~reaches, label == "no_contact")
    top = sim.truth.sei_thickness.values
    starts_inside = ideal.z.values[:, 0] < top + 4 * sim.params.transition_width
    assert np.array_equal(starts_inside, label == "starts_in_contact")
    x, y = sim.model.lateral_x.values, sim.model.lateral_y.values
    clipped = ((np.abs(x) >= 10.5) | (np.abs(y) >= 10.5)) & ~ideal.hard.values
    assert np.array_equal(clipped.any(1), label == "clipped")


# --------------------------------------------------------------------------------------------- files
def test_write_calibration_and_truth(tmp_path):
    sim = simulate("realistic", nx=3, ny=3, n_samples=256, seed=1, windows=[[1.0, 2.0], [0.005, 1.0]])
    paths = sim.write(tmp_path, name="run")
    assert paths["calibration"].name == "calibration.toml" and paths["truth"].name == "truth.nc"
    cal = Calibration.from_toml(paths["calibration"])
    assert cal["lockin", "phase"] == 12.0 and cal["processing", "windows"] == [[1.0, 2.0], [0.005, 1.0]]
    assert cal["lateral", "torsional_stiffness"] / cal["lateral", "tip_length"] ** 2 == pytest.approx(100.0)
    if CHECKER.exists():
        out = subprocess.run([sys.executable, str(CHECKER), "calibration", str(paths["calibration"])],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stdout
    truth = nrm.open(paths["truth"])
    np.testing.assert_allclose(truth.E_storage_mean.values, sim.truth.E_storage_mean.values)
    assert list(truth.window.values) == ["1.0-2.0V", "0.005-1.0V"]


@needs_3ds
def test_3ds_round_trip_is_exact_and_nanonispy_loads_it(tmp_path):
    import nanonispy

    sim = simulate("realistic", nx=4, ny=4, n_samples=512, seed=6, defects={"nan_run": 1})
    paths = sim.write(tmp_path)
    assert paths["data"].suffix == ".3ds"
    back = nrm.open(paths["data"])
    for v in ("deflection", "lateral_x", "lateral_y"):
        assert back[v].dtype == np.float32
        assert np.array_equal(back[v].values, sim.model[v].values, equal_nan=True)
    np.testing.assert_allclose(back.piezo.values, sim.model.piezo.values, rtol=0, atol=1e-12)
    for c in ("x", "y", "time", "potential"):
        np.testing.assert_array_equal(back[c].values, sim.model[c].values)
    grid = nanonispy.read.Grid(str(paths["data"]))
    np.testing.assert_array_equal(grid.signals["Input 3 (V)"].reshape(-1, 512), sim.model.lateral_x.values)
    cal = Calibration.discover(paths["data"])
    assert cal == paths["calibration"]


@needs_3ds
def test_truncated_file_is_an_error_or_partial(tmp_path):
    sim = simulate("clean", nx=3, ny=3, n_samples=256, seed=6, windows=[[1.0, 2.0]], defects={"truncated": 2})
    assert list(sim.truth.defect.values[-2:]) == ["truncated", "truncated"]
    paths = sim.write(tmp_path)
    try:
        ds = nrm.open(paths["data"])
    except ReaderError as exc:
        assert "truncat" in str(exc)
    else:  # a reader that opens the complete records must not give the cut ones
        assert ds.sizes["ramp"] <= 7
        assert np.array_equal(ds.deflection.values[:7], sim.model.deflection.values[:7], equal_nan=True)
