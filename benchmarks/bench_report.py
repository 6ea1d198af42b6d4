"""Benchmark: the report (``nrm_plugins.reporting.report``) of a 16 384-ramp results set.

    python benchmarks/bench_report.py [--source simulate|fixture] [--ramps 16384] [--repeat 1]

``simulate`` (default): the realistic preset on a 64 × 64 grid scanned in 4 potential windows (16 384 ramps
of 1 024 samples, 60 of them defective, so the flagged diagnostics reach their cap) through ``nrm.process``.  ``fixture``: the
test fixture's ``make_results`` (tests/test_report.py: known profiles, statistics, |G*| density, raw ramps
of 256 samples).  Building the results is not timed; then the whole report (figures PNG + PDF, CSV tables,
HTML, diagnostics of 4 sampled and up to 30 flagged ramps) and each stage are.
Target (issue [report]): ≤ 30 s.  Prints a table; the number goes into docs/report.md.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_report import make_results  # noqa: E402

import nrm_plugins as nrm  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("simulate", "fixture"), default="simulate")
    parser.add_argument("--ramps", type=int, default=16384)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.source == "simulate":
        from nrm_plugins import simulate

        side = int(round((args.ramps / 4) ** 0.5))
        # defects so that the flagged-ramp diagnostics reach their cap (the worst case)
        sim = simulate.simulate("realistic", nx=side, ny=side, seed=0,
                                defects={"no_contact": 20, "clipped": 20, "nan_ramp": 10, "starts_in_contact": 10})
        model = sim.model
        results = nrm.process(model, sim.calibration)
    else:
        per = args.ramps // 4
        sizes = (per, per, per, args.ramps - 3 * per - 4)  # + 2 rejected, 1 warned, 1 outside: 4 extra ramps
        results, model, _ = make_results(per_window=sizes, grid=64)
    build = time.perf_counter() - t0
    flagged = int(((~results.ok.values) | (results.flag.values.astype(str) != "")).sum())
    print(f"results ({args.source}): {results.sizes['ramp']} ramps x {results.sizes['z']} depths, "
          f"{results.sizes['window']} windows, {flagged} flagged (built in {build:.1f} s, not timed)")
    rows = []
    for i in range(args.repeat):
        stages = []
        last = [time.perf_counter()]

        def progress(text):
            now = time.perf_counter()
            stages.append((text, now - last[0]))
            last[0] = now

        with tempfile.TemporaryDirectory() as out:
            wall, cpu = time.perf_counter(), time.process_time()
            nrm.report(results, out, model=model, progress=progress)
            rows.append((time.perf_counter() - wall, time.process_time() - cpu))
        if i == 0:
            print(f"{'stage (time until the next one)':<40} {'s':>7}")
            for (name, _), (_, dt) in zip(stages, stages[1:] + [("", 0.0)]):
                print(f"{name:<40} {dt:7.2f}")
    print(f"\n{'run':<6} {'wall s':>8} {'cpu s':>8}")
    for i, (wall, cpu) in enumerate(rows):
        print(f"{i:<6} {wall:8.2f} {cpu:8.2f}")
    print(f"\nmachine: {platform.processor() or platform.machine()}, python {platform.python_version()}; "
          f"target <= 30 s: {'met' if min(r[0] for r in rows) <= 30 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
