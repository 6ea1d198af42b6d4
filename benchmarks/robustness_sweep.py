"""Robustness sweep (a benchmark, not a test): the pipeline against the independent forward model of
tests/independent_sim.py over many parameter combinations; prints one Markdown table row per scenario.

    python benchmarks/robustness_sweep.py              # the whole sweep (~2 min on 2 cores)
    python benchmarks/robustness_sweep.py --quick      # one row per group
    python benchmarks/robustness_sweep.py --only tau   # scenarios whose name contains "tau"

Columns: good ramps accepted; defects rejected (with a sensible reason: see tests/test_robustness.py);
contact error median / p95 against the model's noise-free two-line intersection; window means of E' / E''
— the largest relative error over the depths at least 2 nm from every layer boundary where the
measurement resolves the mean (2 standard errors of estimate − truth <= 5 % of the truth), and how many
(window, depth) points that is; SEI thickness error median / p95 of |error|; seconds (simulate + process).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import nrm_plugins as nrm  # noqa: E402
from independent_sim import WINDOWS, Scenario, score, simulate  # noqa: E402

DEFECTS = {"nan_ramp": 2, "nan_run": 2, "no_contact": 2, "starts_in_contact": 3, "clipped": 2, "short_ramp": 2}
REASONS = {"nan_ramp": {"NaN in ramp"}, "nan_run": {"NaN in ramp"}, "no_contact": {"no hard contact"},
           "short_ramp": {"no hard contact", "NaN in ramp"},
           "starts_in_contact": {"starts in contact", "no free baseline", "clipped"},
           "clipped": {"clipped"}}


def scenarios():
    """(group, name, Scenario) of the sweep."""
    out = []
    base = Scenario(locations_per_window=20, defects=DEFECTS)
    for prof in ("exponential", "single", "thin", "thick", "bilayer"):
        for direction in ("approach", "retract", "both"):
            extra = {"locations_per_window": 10} if direction == "both" else {}
            out.append(("profiles", f"{prof}, {direction}", base.with_(profile=prof, direction=direction, **extra)))
    single = base.with_(profile="single")
    variants = {
        "samples": [("256 samples", dict(n_samples=256)), ("512 samples", dict(n_samples=512)),
                    ("2048 samples", dict(n_samples=2048))],
        "cantilever": [("k_c 0.1 N/m", dict(spring_constant=0.1)), ("k_c 3 N/m", dict(spring_constant=3.0)),
                       ("InvOLS 20 nm/V", dict(invols=20e-9)), ("InvOLS 5 % off", dict(invols_error=0.05))],
        "baseline": [("straight baseline", dict(interference=0, curvature=0)),
                     ("strong interference 0.5 nm", dict(interference=0.5e-9)),
                     ("strong curvature 1 nm", dict(curvature=1e-9)), ("tilt 0.1", dict(tilt=0.1)),
                     ("drift 10 nm/ramp", dict(drift=10e-9)),
                     ("short free baselines (30 %)", dict(short_free_fraction=0.3)),
                     ("deflection spikes", dict(spikes=0.002)),
                     ("hard contact 4–8 nm (low setpoint)", dict(contact_range=(4e-9, 8e-9))),
                     ("free travel 40–80 nm", dict(free_range=(4e-8, 8e-8))),
                     ("deflection noise 0.2 nm", dict(deflection_noise=2e-10)),
                     ("deflection rail in contact", dict(invols=10e-9, deflection_bias=7.0))],
        "lock-in": [("phase -170°", dict(phase_deg=-170.0)), ("phase 95°", dict(phase_deg=95.0)),
                    ("input volts, peak", dict(signal="input", amplitude="peak")),
                    ("expand 10", dict(expand=10)), ("full scale 1 %", dict(full_scale=0.01)),
                    ("full scale 90 % (clips)", dict(full_scale=0.9)), ("rail 10.5 V", dict(clip_level=10.5)),
                    ("tau 1 sample", dict(time_constant_samples=1.0)),
                    ("tau 3 samples", dict(time_constant_samples=3.0)),
                    ("tau 3 samples, not declared", dict(time_constant_samples=3.0, declare_time_constant=False)),
                    ("tau 1, filter at sample rate", dict(time_constant_samples=1.0, lockin_updates=1)),
                    ("tau 1 sample, retract", dict(time_constant_samples=1.0, direction="retract")),
                    ("tau 3 samples, retract", dict(time_constant_samples=3.0, direction="retract"))],
        "background": [("output drift 1 %", dict(lateral_drift=0.01)), ("output drift 5 %", dict(lateral_drift=0.05)),
                       ("hydrodynamic 0.05 %", dict(hydrodynamic=5e-4)), ("hydrodynamic 2 %", dict(hydrodynamic=0.02)),
                       ("liquid background 50 %", dict(background=0.5)),
                       ("lateral noise x3", dict(input_noise=0.003))],
        "tip": [("compliant tip, corrected", dict(lateral_compliance=True))],
    }
    for group, items in variants.items():
        for name, kw in items:
            out.append((group, name, single.with_(**kw)))
    return out


def row(name, sim, res, seconds):
    s = score(sim, res)
    defect = sim.truth["defect"].values
    ok = res["ok"].values.astype(bool)
    flags = res["flag"].values.astype(str)
    kinds = [(i, d) for i, d in enumerate(defect) if d not in ("", "either")]
    caught = sum(1 for i, d in kinds if not ok[i] and set(flags[i].split("; ")) & REASONS[d])

    def pct(v):
        return "–" if not np.isfinite(v) else f"{100 * v:.1f} %"

    def nm(v):
        return "–" if not np.isfinite(v) else f"{v * 1e9:.2f}"

    return (f"| {name} | {s['accepted_good']}/{s['good']} | {caught}/{len(kinds)} | "
            f"{nm(s['contact_median'])} / {nm(s['contact_p95'])} | "
            f"{pct(s['E_storage_resolved_err'])} / {pct(s['E_loss_resolved_err'])} | "
            f"{s['E_storage_resolved_depths']} / {s['E_loss_resolved_depths']} | "
            f"{nm(s['sei_median'])} / {nm(s['sei_p95'])} | {seconds:.1f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the first scenario of each group only")
    ap.add_argument("--only", default="", help="scenarios whose name contains this text")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    print("| scenario | good accepted | defects rejected | contact median / p95 (nm) | E' / E'' max error "
          "(resolved) | resolved points E' / E'' | SEI error median / p95 (nm) | s |")
    print("|---|---|---|---|---|---|---|---|")
    seen = set()
    for group, name, sc in scenarios():
        if args.quick and group in seen:
            continue
        if args.only and args.only not in name:
            continue
        seen.add(group)
        t = time.perf_counter()
        sim = simulate(sc.with_(name=name), seed=args.seed)
        res = nrm.process(sim.model, sim.calibration, windows=WINDOWS)
        print(row(name, sim, res, time.perf_counter() - t), flush=True)


if __name__ == "__main__":
    main()
