"""The pipeline on data it was not tuned to: an independent forward model (tests/independent_sim.py, written
from DESIGN.md alone) with gradual / single / thin / thick / step layers, curved and tilted baselines,
drift, per-ramp sweep ranges, µm roughness, lock-in phase anywhere, offsets, lag, rms and peak, input and
output volts, clipping of the lateral outputs and of the deflection, short free baselines and defective
ramps — end to end through ``nrm process`` on Nanonis files and through the API on NetCDF and in memory.

Each scenario asserts numbers against that model's truth: contact points against its noise-free two-line
intersection, window means of E' and E'' (10 % / 15 %) where the results resolve them (95 % CI half-width
<= 5 % of the value) at least 2 nm from any layer boundary, SEI thickness, every defect rejected with a
sensible reason and no good ramp rejected, no NaN inside an accepted profile, and the contract checker.
Bad input (truncated file, malformed calibration, missing channels, windows without ramps, missing or
empty files) gives one line naming the problem and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nrm_plugins as nrm
from independent_sim import WINDOWS, Scenario, score, simulate

CHECKER = Path(__file__).resolve().parents[2] / "shared" / "tools" / "check_contracts.py"
WINDOWS_ARG = ",".join(f"{lo}:{hi}" for lo, hi in WINDOWS)
DEFECTS = {"nan_ramp": 2, "nan_run": 2, "no_contact": 2, "starts_in_contact": 3, "clipped": 2, "short_ramp": 2}
#: the reasons that may reject each kind of defect (any one of them)
REASONS = {
    "nan_ramp": {"NaN in ramp"},
    "nan_run": {"NaN in ramp"},
    "no_contact": {"no hard contact"},
    "short_ramp": {"no hard contact", "NaN in ramp"},
    # a ramp that starts in hard contact has its lateral outputs on the rail from its first sample
    "starts_in_contact": {"starts in contact", "no free baseline", "clipped"},
    "clipped": {"clipped"},
}


def nrm_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nrm_plugins", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def check_flags(sim, res):
    """Every defect rejected with a sensible reason; no good ramp rejected; counts consistent."""
    defect = sim.truth["defect"].values
    ok = res["ok"].values.astype(bool)
    flags = res["flag"].values.astype(str)
    for i in np.flatnonzero(defect != ""):
        if defect[i] == "either":
            continue
        reasons = set(flags[i].split("; "))
        assert not ok[i], f"ramp {i} ({defect[i]}) accepted"
        assert reasons & REASONS[defect[i]], f"ramp {i} ({defect[i]}) rejected for {flags[i]!r}"
    good = defect == ""
    assert ok[good].all(), [(int(i), flags[i]) for i in np.flatnonzero(good & ~ok)]
    c = res.attrs["counts"]
    assert c["read"] == len(ok) and c["accepted"] == int(ok.sum()) and c["rejected"] == int((~ok).sum())
    for reason, k in c["rejected_by_reason"].items():
        assert k == int(np.sum([reason in f.split("; ") for f in flags[~ok]]))


def check_numbers(s, contact=(0.1e-9, 0.4e-9), sei=(0.6e-9, 1.2e-9), e_tol=(0.10, 0.15), min_depths=100):
    """Contact median / p95, SEI median / p95 |error|, resolved window means, no holes in profiles.
    ``min_depths``: least number of (window, depth) points resolved, for E' and E'' (or one for both)."""
    min_depths = tuple(np.broadcast_to(min_depths, 2))
    assert s["contact_median"] < contact[0], s["contact_median"]
    assert s["contact_p95"] < contact[1], s["contact_p95"]
    assert abs(s["sei_median"]) < sei[0], s["sei_median"]
    assert s["sei_p95"] < sei[1], s["sei_p95"]
    assert s["sei_nan"] == 0
    assert s["profiles_with_holes"] == 0 and s["profiles_empty"] == 0
    for q, tol, k in zip(("E_storage", "E_loss"), e_tol, min_depths):
        assert s[q + "_resolved_depths"] >= k, (q, s[q + "_resolved_depths"])
        assert s[q + "_resolved_err"] < tol, (q, s["windows"])


# ============================================================================================ scenarios
@pytest.fixture(scope="module")
def realistic_cli(tmp_path_factory):
    """Gradual (log-linear) moduli, a foreign .3ds (no roles header: [channels] in the calibration),
    phase -137°, offsets, outputs clipped at a ±10 V input, a weak distance-dependent background, a
    drifting lock-in output, the defects, through ``nrm process``."""
    sc = Scenario(name="realistic", profile="exponential", locations_per_window=20, phase_deg=-137.0,
                  offset=(0.3, -0.2), full_scale=0.5, hydrodynamic=5e-4, lateral_drift=0.01, defects=DEFECTS)
    sim = simulate(sc, seed=21)
    folder = tmp_path_factory.mktemp("realistic")
    paths = sim.write(folder, fmt="3ds", foreign=True)
    run = nrm_cli("process", paths["data"], "--calibration", paths["calibration"], "--windows", WINDOWS_ARG,
                  "-o", folder / "results.nc", "--quiet")
    res = nrm.open(folder / "results.nc").load()
    return sim, res, run, folder / "results.nc"


def test_realistic_through_the_cli(realistic_cli):
    sim, res, run, path = realistic_cli
    assert run.returncode == 0, run.stderr
    c = res.attrs["counts"]
    assert run.stdout.splitlines()[0].endswith(f"{c['read']} ramps read, {c['accepted']} accepted, "
                                               f"{c['rejected']} rejected")
    assert c["read"] == 80 and c["rejected"] == sum(DEFECTS.values())
    assert "rejected: " in run.stdout
    check = subprocess.run([sys.executable, str(CHECKER), "results", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    check_flags(sim, res)
    check_numbers(score(sim, res), contact=(0.1e-9, 0.4e-9), sei=(0.5e-9, 1.2e-9))


@pytest.fixture(scope="module")
def retract_input(tmp_path_factory):
    """A single homogeneous layer, retract ramps of 2048 samples, X/Y in input volts (peak), a stiff
    cantilever (3 N/m), phase 170°, InvOLS 25 nm/V, written as NetCDF and processed through the API."""
    sc = Scenario(name="retract-input", profile="single", direction="retract", n_samples=2048, signal="input",
                  amplitude="peak", spring_constant=3.0, phase_deg=170.0, invols=25e-9, locations_per_window=15)
    sim = simulate(sc, seed=22)
    folder = tmp_path_factory.mktemp("retract")
    paths = sim.write(folder, fmt="nc")
    res = nrm.process(nrm.open(paths["data"]), paths["calibration"], windows=WINDOWS)
    return sim, res


def test_retract_input_volts_peak(retract_input):
    sim, res = retract_input
    check_flags(sim, res)
    check_numbers(score(sim, res), contact=(0.1e-9, 0.4e-9), sei=(0.5e-9, 1.0e-9))


@pytest.fixture(scope="module")
def both_thick(tmp_path_factory):
    """A thick (45-60 nm) layer, soft and graded outside a stiff inner part, approach and retract at each
    location (paired points of one .3ds), a soft cantilever (0.1 N/m), 1024 samples."""
    sc = Scenario(name="thick-both", profile="thick", direction="both", spring_constant=0.1, phase_deg=65.0,
                  locations_per_window=10, input_noise=3e-4)
    sim = simulate(sc, seed=23)
    folder = tmp_path_factory.mktemp("thick")
    paths = sim.write(folder, fmt="3ds")
    ds = nrm.open(paths["data"])
    assert ds.sizes["ramp"] == 80 and set(ds["direction"].values) == {"approach", "retract"}
    return sim, nrm.process(ds, paths["calibration"], windows=WINDOWS)


def test_thick_layer_approach_and_retract(both_thick):
    sim, res = both_thick
    check_flags(sim, res)
    # a curved baseline is extrapolated over the whole 60 nm layer: contact errors grow with its square
    check_numbers(score(sim, res), contact=(0.3e-9, 0.8e-9), sei=(1.5e-9, 3.0e-9))


def test_thin_layer():
    """A 3 nm stiff layer, 2048 samples: the SEI thickness and the modulus inside it."""
    sc = Scenario(name="thin", profile="thin", n_samples=2048, locations_per_window=10, free_range=(80e-9, 200e-9))
    sim = simulate(sc, seed=24)
    res = nrm.process(sim.model, sim.calibration, windows=WINDOWS)
    check_flags(sim, res)
    # the 2 nm derivative window reaches the top from 1 nm below it (plus the thickness spread); the deepest
    # nm is left out: deflection noise (0.05 nm, above the sample spacing) biases it low (see docs)
    s = score(sim, res, margin=1.3e-9, bottom=1.0e-9)
    check_numbers(s, contact=(0.1e-9, 0.3e-9), sei=(0.4e-9, 0.6e-9), min_depths=12)


def test_lockin_lag():
    """The layer response at 5 % of full scale with expand 10, a declared lock-in time constant of two
    samples at 24 dB/oct (corrected), outputs drifting by 1 % of the response over a ramp."""
    sc = Scenario(name="lag", profile="single", full_scale=0.05, expand=10, time_constant_samples=2.0,
                  filter_slope=24, lateral_drift=0.01, locations_per_window=15, phase_deg=-60.0)
    sim = simulate(sc, seed=25)
    res = nrm.process(sim.model, sim.calibration, windows=WINDOWS)
    assert "tau = " in res.attrs["time_constant_correction"]
    check_flags(sim, res)
    check_numbers(score(sim, res), contact=(0.1e-9, 0.3e-9), sei=(1.0e-9, 1.5e-9), min_depths=(300, 200))


def test_one_percent_of_full_scale():
    """The layer response at 1 % of full scale (a few hundred ADC steps): E' still resolved everywhere in
    the layer; E'' (a quarter of E') only where its noise allows."""
    sc = Scenario(name="1%", profile="single", full_scale=0.01, locations_per_window=15, phase_deg=33.0)
    sim = simulate(sc, seed=28)
    res = nrm.process(sim.model, sim.calibration, windows=WINDOWS)
    check_flags(sim, res)
    check_numbers(score(sim, res), contact=(0.1e-9, 0.3e-9), sei=(0.5e-9, 0.8e-9), min_depths=(300, 10))


def test_saturation_short_baselines_and_curvature():
    """512 samples; the photodiode saturates 15-40 nm into hard contact; a quarter of the ramps have only
    15-20 nm of free baseline; strong optical interference and curvature; the layer response at 90 % of
    full scale, so the stiffest locations clip inside the layer (those must be rejected, the rest kept)."""
    sc = Scenario(name="saturation", profile="single", n_samples=512, invols=10e-9, deflection_bias=7.0,
                  short_free_fraction=0.25, interference=0.4e-9, curvature=0.5e-9, full_scale=0.9,
                  locations_per_window=15)
    sim = simulate(sc, seed=26)
    res = nrm.process(sim.model, sim.calibration, windows=WINDOWS)
    defect = sim.truth["defect"].values
    assert (defect == "clipped").sum() >= 3  # the scenario does clip some layers
    check_flags(sim, res)
    check_numbers(score(sim, res), contact=(0.15e-9, 0.6e-9), sei=(0.6e-9, 1.2e-9), min_depths=100)


@pytest.mark.parametrize("direction", ["approach", "retract"])
def test_nan_padded_ramps(direction):
    """Every other ramp recorded 6 % shorter (NaN padding at the end of its row, as a reader pads ramps of
    different lengths): processed like the rest."""
    sc = Scenario(name="padded", profile="single", locations_per_window=10, contact_range=(60e-9, 80e-9),
                  direction=direction)
    sim = simulate(sc, seed=5)
    ds = sim.model.copy(deep=True)
    m = ds.sizes["sample"]
    cut = int(0.06 * m)
    for v in ("piezo", "deflection", "lateral_x", "lateral_y"):
        a = ds[v].values
        # approach: the deep end is missing; retract: the (time-first) deep end is missing
        a[::2] = np.concatenate([a[::2, cut:], np.full((a[::2].shape[0], cut), np.nan)], 1) \
            if direction == "retract" else np.where(np.arange(m) < m - cut, a[::2], np.nan)
    res = nrm.process(ds, sim.calibration, windows=WINDOWS)
    check_flags(sim, res)
    check_numbers(score(sim, res), contact=(0.1e-9, 0.4e-9), sei=(0.5e-9, 0.8e-9), min_depths=200)
    assert not any("NaN" in f for f in res["flag"].values.astype(str))


# ============================================================================================ bad input
@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    sc = Scenario(name="small", profile="single", locations_per_window=4, defects={"nan_ramp": 1})
    sim = simulate(sc, seed=27)
    folder = tmp_path_factory.mktemp("bad")
    paths = sim.write(folder, fmt="3ds", foreign=True)
    return sim, folder, paths


def one_line_error(run, *words):
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nrm: error: "), run.stderr
    assert "Traceback" not in run.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def test_truncated_file(small_files):
    sim, folder, paths = small_files
    raw = paths["data"].read_bytes()
    cut = folder / "cut.3ds"
    cut.write_bytes(raw[:len(raw) - 5000])
    one_line_error(nrm_cli("process", cut, "--calibration", paths["calibration"], "-o", folder / "c.nc"),
                   "cut.3ds", "truncated", "--allow-truncated")
    assert not (folder / "c.nc").exists()
    run = nrm_cli("process", cut, "--calibration", paths["calibration"], "-o", folder / "c.nc", "--quiet",
                  "--allow-truncated")
    assert run.returncode == 0, run.stderr
    res = nrm.open(folder / "c.nc").load()
    n = res.sizes["ramp"]
    assert 0 < n < sim.model.sizes["ramp"]
    assert any("truncated" in w for w in res.attrs["warnings"]) and "warning: " in run.stdout
    # the complete ramps are the first ones, processed as in the full file
    full = nrm.process(sim.model.isel(ramp=slice(0, n)), sim.calibration)
    np.testing.assert_array_equal(res["ok"].values, full["ok"].values)
    np.testing.assert_allclose(res["contact_position"].values, full["contact_position"].values, rtol=0, atol=1e-12)


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace("[lateral]", "[lateral"), ("not valid TOML",)),
    (lambda t: t.replace("invols = ", "invols = 'sixty' #"), ("invols", "wrong type")),
    (lambda t: t.replace("[model]", "[model]\nrg = 1.2"), ("rg", "unknown key")),
    (lambda t: t.replace('lateral_x = "Input 3 (V)"', 'lateral_x = "Input 9 (V)"'), ("Input 9 (V)", "Input 3 (V)")),
    (lambda t: t[:t.index("[channels]")], ("missing role", "[channels]")),
    (lambda t: "\n".join(line for line in t.splitlines() if not line.startswith("dither_amplitude")),
     ("dither_amplitude",)),
])
def test_malformed_calibration(small_files, edit, words):
    sim, folder, paths = small_files
    bad = folder / "bad.toml"
    bad.write_text(edit(paths["calibration"].read_text()))
    one_line_error(nrm_cli("process", paths["data"], "--calibration", bad, "-o", folder / "b.nc"), *words)
    assert not (folder / "b.nc").exists()


def test_missing_lateral_channels(small_files, tmp_path):
    sim, folder, paths = small_files
    nrm.save(sim.model.drop_vars(["lateral_x", "lateral_y"]), tmp_path / "nolat.3ds")
    one_line_error(nrm_cli("process", tmp_path / "nolat.3ds", "--calibration", paths["calibration"],
                           "-o", tmp_path / "r.nc"), "no such channel", "Input 2 (V)")


def test_windows_without_ramps(small_files):
    sim, folder, paths = small_files
    line = one_line_error(nrm_cli("process", paths["data"], "--calibration", paths["calibration"],
                                  "--windows", "5:6,7:8", "-o", folder / "w.nc"), "no ramp falls in any window")
    assert "5.0-6.0V" in line and "spans" in line
    # some empty windows: a result, with a warning naming them
    run = nrm_cli("process", paths["data"], "--calibration", paths["calibration"], "--windows", "5:6,0:2",
                  "-o", folder / "w2.nc", "--quiet")
    assert run.returncode == 0 and "5.0-6.0V (0 ramps)" in run.stdout and "no accepted ramp: 5.0-6.0V" in run.stdout


@pytest.mark.parametrize("name, content, words", [
    ("absent.3ds", None, ("absent.3ds", "no such file")),
    ("empty.3ds", b"", ("empty.3ds", "empty")),
    ("noise.3ds", bytes(range(256)) * 40, ("noise.3ds",)),
])
def test_unreadable_files(small_files, tmp_path, name, content, words):
    sim, folder, paths = small_files
    if content is not None:
        (tmp_path / name).write_bytes(content)
    one_line_error(nrm_cli("process", tmp_path / name, "--calibration", paths["calibration"],
                           "-o", tmp_path / "r.nc"), *words)


def test_one_bad_ramp_among_many(small_files, tmp_path):
    """A NaN ramp is rejected with its reason; the rest are processed; the summary counts it."""
    sim, folder, paths = small_files
    run = nrm_cli("process", paths["data"], "--calibration", paths["calibration"], "-o", tmp_path / "r.nc",
                  "--quiet")
    assert run.returncode == 0, run.stderr
    n = sim.model.sizes["ramp"]
    assert f"{n} ramps read, {n - 1} accepted, 1 rejected" in run.stdout
    assert "rejected: NaN in ramp: 1" in run.stdout
    res = nrm.open(tmp_path / "r.nc").load()
    check_flags(sim, res)


def test_drifting_lockin_output_kept_with_a_warning():
    """A lock-in output drifting by 5 % of the layer response over each ramp: the background halves differ
    far beyond the noise, but the change does not point along the layer's response, so the ramp is kept with
    the warning "lateral background drifts" (only drifts within 30° of the response direction, ~1/6 of
    them, are taken for a ramp that starts inside a layer); moduli and SEI thickness stay accurate."""
    sc = Scenario(name="drift5", profile="single", locations_per_window=20, lateral_drift=0.05, defects=DEFECTS)
    sim = simulate(sc, seed=5)
    res = nrm.process(sim.model, sim.calibration, windows=WINDOWS)
    defect = sim.truth["defect"].values
    good = defect == ""
    ok = res["ok"].values.astype(bool)
    flags = res["flag"].values.astype(str)
    assert not ok[~good].any()  # every defect still rejected
    assert ok[good].mean() >= 0.75, ok[good].mean()
    warned = np.array(["lateral background drifts" in f for f in flags])
    assert warned[good & ok].mean() > 0.5  # the drift is seen and reported on the kept ramps
    assert set(flags[good & ~ok]) <= {"no free baseline"}
    s = score(sim, res)
    assert s["E_storage_resolved_err"] < 0.10 and s["E_loss_resolved_err"] < 0.15, s["windows"]
    assert abs(s["sei_median"]) < 0.6e-9


def test_deflection_spikes_removed():
    """Single-sample deflection glitches of 2-6 nm in 0.2 % of the samples: removed before the fits, so the
    contact points stay as accurate as without them (before the despiking: p95 0.74 nm, 7 of 67 good ramps
    rejected "no free baseline")."""
    sc = Scenario(name="spikes", profile="single", locations_per_window=20, spikes=0.002, defects=DEFECTS)
    sim = simulate(sc, seed=1)
    res = nrm.process(sim.model, sim.calibration, windows=WINDOWS)
    good = sim.truth["defect"].values == ""
    ok = res["ok"].values.astype(bool)
    assert not ok[~good].any()
    assert ok[good].sum() >= good.sum() - 1
    s = score(sim, res)
    assert s["contact_median"] < 0.1e-9 and s["contact_p95"] < 0.4e-9, (s["contact_median"], s["contact_p95"])
    assert s["E_storage_resolved_err"] < 0.10 and s["E_loss_resolved_err"] < 0.15, s["windows"]
