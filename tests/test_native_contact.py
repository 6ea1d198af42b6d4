"""The compiled two-line contact kernel (``nrm_two_line``, nrm_plugins/_native/contact.c) against its numpy
reference (:func:`nrm_plugins.pipeline.contact._two_line_numpy`).

The kernel runs the same algorithm one ramp at a time in double precision; numpy keeps the block sums and a
few comparisons in float32.  So results agree to rounding, and a threshold decision may (very rarely) flip:
the tests ask for agreement of the positions within 1e-3 nm on >= 99.5 % of the ramps and of the flags on
>= 99.8 %, on simulated ramps (clean, realistic, rough; approach and reversed retract ramps; NaN defects the
way the pipeline weights them), on the analytic ramps of test_pipeline_units.py and on edge cases.
"""
from __future__ import annotations

import inspect
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from nrm_plugins import native, simulate
from nrm_plugins.pipeline import contact

proc = sys.modules["nrm_plugins.pipeline.process"]

pytestmark = pytest.mark.skipif(not native.available(), reason=f"compiled kernels unavailable: {native.reason}")

FLOATS = ("position", "uncertainty", "baseline_slope", "baseline_offset", "contact_slope", "contact_offset",
          "noise")
INTS = ("free_end", "contact_start", "flags")


_DEFAULTS = {k: v.default for k, v in inspect.signature(contact.two_line).parameters.items()
             if v.default is not inspect.Parameter.empty and k != "weight"}


def _both(x, y, w=None, **kw):
    """One pass with a fixed block size, compiled and numpy (two_line's refinement of short contact parts
    reruns the same pass on some rows: test_refinement_same_with_and_without_kernels)."""
    params = {**_DEFAULTS, **kw}
    block = params.pop("block")
    c = contact._two_line_once(x, y, w, block, params)
    p = contact._two_line_numpy(x, y, w, block=block, **params)
    assert set(c) == set(p)
    for k in c:
        assert c[k].dtype == p[k].dtype, k
        assert c[k].shape == p[k].shape, k
    return c, p


def _close(a, b, rtol, atol):
    """Element-wise agreement, NaN matching NaN (and inf the same inf)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    with np.errstate(invalid="ignore"):
        return (np.abs(a - b) <= atol + rtol * np.abs(b)) | (np.isnan(a) & np.isnan(b)) | (a == b)


def agreement(c, p) -> dict:
    """Fraction of the ramps on which the kernel and numpy agree, per quantity."""
    return {
        "position": _close(c["position"], p["position"], 0, 1e-3).mean(),
        # relative, with a floor for noise-free ramps (there the fit variance is rounding noise: 1e-5 nm in
        # numpy's float32 sums, 1e-6 nm in double)
        "uncertainty": _close(c["uncertainty"], p["uncertainty"], 1e-3, 1e-4).mean(),
        "baseline_slope": _close(c["baseline_slope"], p["baseline_slope"], 1e-3, 1e-7).mean(),
        "contact_slope": _close(c["contact_slope"], p["contact_slope"], 1e-4, 1e-7).mean(),
        "baseline_offset": _close(c["baseline_offset"], p["baseline_offset"], 1e-4, 1e-3).mean(),
        "contact_offset": _close(c["contact_offset"], p["contact_offset"], 1e-4, 1e-3).mean(),
        "noise": _close(c["noise"], p["noise"], 1e-3, 1e-6).mean(),
        "free_end": (c["free_end"] == p["free_end"]).mean(),
        "contact_start": (c["contact_start"] == p["contact_start"]).mean(),
        "flags": (c["flags"] == p["flags"]).mean(),
    }


def assert_agree(c, p, all_ramps=False):
    got = agreement(c, p)
    need = {k: (1.0 if all_ramps else 0.995) for k in got}
    need["flags"] = 1.0 if all_ramps else 0.998
    low = {k: v for k, v in got.items() if v < need[k]}
    assert not low, f"agreement below target: {low} (all: {got})"
    return got


def _sim_xy(preset, nx, ny, seed, direction="approach", defects=None):
    """Oriented (far end first) piezo x (nm from the first sample) and deflection y (nm), as the pipeline."""
    sim = simulate.simulate(preset, nx=nx, ny=ny, seed=seed, direction=direction, defects=defects)
    ds = sim.model
    scale = proc._settings(ds, sim.calibration.resolve(ds), {}, []).deflection_scale
    piezo = ds["piezo"].values
    x = ((piezo - piezo[:, :1]) * 1e9).astype(np.float32)
    y = ds["deflection"].values.astype(np.float32) * np.float32(scale)
    retract = np.asarray(sim.ramp_direction) == "retract"
    x[retract] = x[retract, ::-1]  # process.py _orient on full-length rows
    y[retract] = y[retract, ::-1]
    return sim, x, y


# ---------------------------------------------------------------------------------------------- simulated
@pytest.mark.parametrize("preset, seed", [("clean", 1), ("realistic", 2), ("rough", 3)])
def test_simulated_ramps_match_numpy(preset, seed):
    _, x, y = _sim_xy(preset, 32, 16, seed)  # 2048 approach ramps (4 windows x 512)
    c, p = _both(x, y)
    assert_agree(c, p)
    assert (p["flags"] == 0).mean() > 0.9  # the comparison covers accepted ramps, not only failures


def test_simulated_retract_ramps_match_numpy():
    sim, x, y = _sim_xy("realistic", 16, 16, 4, direction="both")
    assert (np.asarray(sim.ramp_direction) == "retract").sum() >= 512
    c, p = _both(x, y)
    assert_agree(c, p)


def test_simulated_defects_weighted_as_the_pipeline_does():
    """NaN ramps and runs, clipped, truncated, no contact, starting in contact: the rows with NaN get weights
    and forward-filled values (process.py _contact), the others none."""
    defects = {"nan_ramp": 8, "nan_run": 40, "no_contact": 40, "starts_in_contact": 40, "clipped": 20,
               "truncated": 20}
    sim, x, y = _sim_xy("realistic", 16, 16, 5, defects=defects)
    valid = np.isfinite(x) & np.isfinite(y)
    rows = np.flatnonzero(~valid.all(1))
    assert rows.size >= 40
    xw = proc._ffill(x[rows], np.isfinite(x[rows]))
    yw = proc._ffill(y[rows], valid[rows])
    c, p = _both(xw, yw, valid[rows].astype(np.float32))
    assert_agree(c, p)
    good = np.flatnonzero(valid.all(1))
    c, p = _both(x[good], y[good])
    # rejected ramps (4 % here without hard contact, 4 % starting in contact) intersect two nearly parallel
    # lines: their positions (uncertainty 40 to 10^4 nm) agree relative to that uncertainty
    ok = p["flags"] == 0
    assert ok.mean() > 0.85
    assert_agree({k: v[ok] for k, v in c.items()}, {k: v[ok] for k, v in p.items()})
    assert agreement(c, p)["flags"] >= 0.998
    bad = ~ok & (c["flags"] == p["flags"])
    assert _close(c["position"][bad], p["position"][bad], 0, 1e-3 + 1e-3 * p["uncertainty"][bad]).mean() >= 0.99
    defect = sim.truth.defect.values[good]
    assert (c["flags"][defect == "no_contact"] & contact.NO_CONTACT).all()


def test_contact_accuracy_against_truth():
    sim, x, y = _sim_xy("realistic", 32, 16, 6)
    r = contact.two_line(x, y)
    ref = sim.model["piezo"].values[:, 0] * 1e9
    err = np.abs(r["position"] + ref - sim.truth.contact_ideal.values * 1e9)
    good = (sim.truth.defect.values == "") & (r["flags"] == 0)
    assert good.mean() > 0.98
    assert np.median(err[good]) <= 0.1
    assert np.percentile(err[good], 95) <= 0.3


# ---------------------------------------------------------------------------------------------- analytic
def _units_ramps(**kw):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    try:
        from test_pipeline_units import _ramps
    finally:
        sys.path.pop(0)
    return _ramps(**kw)


@pytest.mark.parametrize("noise", [0.0, 0.05, 0.2])
def test_analytic_ramps_match_numpy(noise):
    X, Y, xc = _units_ramps(noise=noise)
    ref = X[:, :1]
    c, p = _both(X - ref, Y)
    assert_agree(c, p, all_ramps=True)
    assert np.abs(c["position"] + ref[:, 0] - xc).max() < (1e-3 if noise == 0 else 1.0)


def test_flag_cases_with_weights_match_numpy():
    """test_pipeline_units.test_two_line_flags: a weighted ramp stopping in the layer, one starting in
    contact, two good ones."""
    from test_pipeline_units import flag_case_ramps

    x, y, w = flag_case_ramps()
    c, p = _both(x, y, w)
    assert_agree(c, p, all_ramps=True)
    assert c["flags"][0] & contact.NO_CONTACT
    assert c["flags"][1] & (contact.STARTS_IN_CONTACT | contact.NO_BASELINE)
    assert (c["flags"][2:] == 0).all()


def test_weighted_rows_with_gaps_match_numpy():
    """Zero weights inside the ramps (finite values there): runs, scattered samples, whole blocks."""
    X, Y, _ = _units_ramps(n=200, noise=0.05, seed=7)
    x, y = X - X[:, :1], Y
    rng = np.random.default_rng(8)
    w = (rng.random(x.shape) > 0.1).astype(np.float32)  # 10 % scattered
    for r in range(0, 200, 3):  # and a run of 20 to 200 samples somewhere
        a = rng.integers(0, 900)
        w[r, a:a + rng.integers(20, 200)] = 0
    w[5] = 1  # some rows with all weights 1
    c, p = _both(x, y, w)
    assert_agree(c, p)
    c1, _ = _both(x[5:6], y[5:6], None)  # weight 1 everywhere = no weights
    assert np.abs(c1["position"] - c["position"][5]) < 1e-6


@pytest.mark.parametrize("m", [1021, 1000, 999])
@pytest.mark.parametrize("weighted", [False, True])
def test_partial_last_block_matches_numpy(m, weighted):
    X, Y, _ = _units_ramps(n=100, noise=0.05, seed=9, m=m)
    w = None
    if weighted:
        w = np.ones(X.shape, np.float32)
        w[::4, -5:] = 0
    c, p = _both(X - X[:, :1], Y, w)
    assert_agree(c, p)


@pytest.mark.parametrize("block", [4, 5, 16])
def test_other_block_sizes_match_numpy(block):
    X, Y, _ = _units_ramps(n=100, noise=0.05, seed=10)
    w = np.ones(X.shape, np.float32)
    w[::3, 300:330] = 0
    for weight in (None, w):
        c, p = _both(X - X[:, :1], Y, weight, block=block)
        assert_agree(c, p)


def test_parameters_reach_the_kernel():
    X, Y, _ = _units_ramps(n=60, noise=0.05, seed=11)
    x, y = X - X[:, :1], Y
    for kw in ({"threshold": 3.0, "region_threshold": 2.5}, {"baseline_margin": 0.3},
               {"contact_slope_range": (-1.2, -0.8)}, {"contact_slope_range": (-0.9, -0.5)},
               {"contact_slope_tolerance": 0.05}, {"noise_floor": 0.5}, {"baseline_window": 10.0}):
        c, p = _both(x, y, **kw)
        assert_agree(c, p)
    c, _ = _both(x, y, contact_slope_range=(-0.9, -0.5))
    assert (c["flags"] & contact.NO_CONTACT).all()  # the slope of -1 is outside


# ---------------------------------------------------------------------------------------------- edge cases
def test_degenerate_rows_match_numpy_on_every_row():
    """Constant rows, zero weights everywhere, a single usable block, too short rows: NaN and flags as numpy."""
    X, Y, _ = _units_ramps(n=8, noise=0.05, seed=12)
    x, y = X - X[:, :1], Y.copy()
    x[0] = 3.0  # x constant
    y[0] = 1.0
    y[1] = 0.5  # y constant, x a ramp
    x[2] = 0.0  # x constant, y a ramp
    w = np.ones(x.shape, np.float32)
    w[3] = 0  # no usable sample
    w[4, 8:] = 0  # one usable block
    w[5, 40:] = 0  # five usable blocks: too few (flags)
    w[6, ::2] = 0  # half of each block: 4 of 8 samples, still usable (>= max(3, block // 2))
    w[7, 1::4] = 0
    w[7, 2::4] = 0  # 4 of 8 samples per block, in another pattern
    c, p = _both(x, y, w)
    got = agreement(c, p)
    assert all(v == 1.0 for v in got.values()), got
    assert (c["flags"][:6] & contact.NO_CONTACT).all()
    assert np.isnan(c["position"][[0, 2, 3, 4]]).all()


@pytest.mark.parametrize("m", [17, 40, 55])
def test_short_rows_are_flagged_as_numpy(m):
    """Fewer than MIN_FREE_BLOCKS + MIN_CONTACT_BLOCKS usable blocks: no hard contact."""
    X, Y, _ = _units_ramps(n=20, noise=0.05, seed=13)
    j = np.linspace(0, 1023, m).astype(int)
    c, p = _both(X[:, j] - X[:, :1], Y[:, j])
    got = agreement(c, p)
    # the noise of so steep blocks (26 nm of piezo travel each) in numpy's float32 (syy - sxy^2 / sxx
    # cancels) is off by up to 0.3 %; the kernel's double precision is the exact value
    assert got.pop("noise") >= 0.5 and _close(c["noise"], p["noise"], 1e-2, 0).all()
    assert all(v == 1.0 for v in got.values()), got
    assert (c["flags"] & contact.NO_CONTACT).all()


def test_one_block_rows():
    """m <= block: the numpy code fails there (an argmax of an empty axis); the kernel flags the ramps."""
    x = np.linspace(0, -10, 8, dtype=np.float32)[None].repeat(3, 0)
    y = np.zeros_like(x)
    r = contact.two_line(x, y)
    assert (r["flags"] & contact.NO_CONTACT).all()
    assert np.isnan(r["position"]).all()
    with pytest.raises(ValueError):
        contact._two_line_numpy(x, y)


def test_single_ramp_and_empty_batch():
    X, Y, _ = _units_ramps(n=3, noise=0.05, seed=14)
    x, y = X - X[:, :1], Y
    c, p = _both(x[1:2], y[1:2])
    assert all(v == 1.0 for v in agreement(c, p).values())
    full = contact.two_line(x, y)
    assert all(np.array_equal(full[k][1:2], c[k]) for k in c)  # rows are independent
    e, q = _both(x[:0], y[:0])
    assert all(v.size == 0 for v in e.values())


def test_nan_where_the_weight_is_zero_propagates_as_numpy():
    """Out of contract (x, y must be finite where the weight is 0): numpy's 0 * NaN poisons the block's sums and
    every line fit of the row (einsum adds all blocks' moments times 0 or 1); the kernel mirrors it."""
    X, Y, _ = _units_ramps(n=6, noise=0.05, seed=15)
    x, y = X - X[:, :1], Y.copy()
    w = np.ones(x.shape, np.float32)
    w[1:, 500:510] = 0
    y[1:3, 500:510] = np.nan
    x[3, 500:510] = np.nan
    y[4, 500:510] = np.inf
    with np.errstate(invalid="ignore"):
        c, p = _both(x, y, w)
    for k in FLOATS + INTS:
        assert np.array_equal(np.isnan(c[k].astype(float)), np.isnan(p[k].astype(float))), k
    assert_agree(c, p, all_ramps=True)


def test_input_conversion_and_shape_check():
    X, Y, _ = _units_ramps(n=10, noise=0.05, seed=16)
    x, y = X - X[:, :1], Y
    ref = contact.two_line(x, y)
    wide = np.zeros((10, 2 * x.shape[1]))  # float64 and strided
    wide[:, ::2] = x
    got = contact.two_line(wide[:, ::2], y.astype(np.float64), np.ones(x.shape, bool))
    assert all(np.array_equal(ref[k], got[k]) for k in ref)
    with pytest.raises(ValueError):
        contact.two_line(x, y[:, :-1])
    with pytest.raises(ValueError):
        contact.two_line(x, y, np.ones((10, 5)))


def test_threads_give_the_same_results():
    """No global state: chunks processed by several threads at once (ctypes releases the GIL)."""
    _, x, y = _sim_xy("realistic", 16, 16, 17)
    ref = contact.two_line(x, y)
    parts = [slice(s, s + 64) for s in range(0, x.shape[0], 64)]
    with ThreadPoolExecutor(4) as pool:
        res = list(pool.map(lambda sl: contact.two_line(x[sl], y[sl]), parts * 3))
    for sl, r in zip(parts * 3, res):
        for k in ref:
            np.testing.assert_array_equal(r[k], ref[k][sl])


def test_pure_python_switch_uses_numpy(monkeypatch):
    X, Y, _ = _units_ramps(n=5, noise=0.05, seed=18)
    x, y = X - X[:, :1], Y
    monkeypatch.setattr(native, "_lib", None)
    r = contact.two_line(x, y)
    p = contact._two_line_numpy(x, y)
    assert all(np.array_equal(r[k], p[k], equal_nan=True) for k in r)


def test_refinement_same_with_and_without_kernels(monkeypatch):
    """two_line as the pipeline calls it (short hard-contact parts refitted with half-size blocks): the
    kernel and the numpy path pick the same rows and agree on them."""
    from test_pipeline_units import short_contact_ramps

    x, y, xc = short_contact_ramps()
    c = contact.two_line(x, y)
    monkeypatch.setattr(native, "_lib", None)
    p = contact.two_line(x, y)
    assert_agree(c, p, all_ramps=True)
