"""Benchmark: the simulator (``nrm_plugins.simulate``) on a 16 384-ramp × 1024-sample experiment.

    python benchmarks/bench_simulate.py [--grid 64] [--samples 1024] [--repeat 2] [--presets clean,realistic]

4 potential windows × grid² locations = 16 384 ramps by default.  Times, per preset: generating the model
(``simulate``), the truth (``sim.truth``: per-ramp E*(z) on 1001 depths and the window means) and writing
the ``.3ds`` grid; reports the CPU time too (the machine may be shared) and the peak RSS of this process
(interpreter included).  Goal (issue [simulator]): 16 384 × 1024 ramps generated in a few seconds.
The numbers go into docs/simulator.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from nrm_plugins.simulate import simulate


def _timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    value = function()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=64, help="locations per side per window (default 64)")
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--presets", default="clean,realistic")
    parser.add_argument("--no-write", action="store_true", help="skip the .3ds write")
    args = parser.parse_args(argv)
    n_ramps = 4 * args.grid ** 2
    print(f"{n_ramps} ramps x {args.samples} samples ({n_ramps * args.samples / 1e6:.1f} M samples per channel)\n")
    print(f"{'preset':<10} {'step':<9} {'wall s':>8} {'cpu s':>8} {'ramps/s':>10}")
    for preset in args.presets.split(","):
        for _ in range(args.repeat):
            sim, wall, cpu = _timed(lambda: simulate(preset, nx=args.grid, ny=args.grid, n_samples=args.samples,
                                                     seed=0))
            print(f"{preset:<10} {'model':<9} {wall:8.2f} {cpu:8.2f} {n_ramps / wall:10.0f}")
        _, wall, cpu = _timed(lambda: sim.truth)
        print(f"{preset:<10} {'truth':<9} {wall:8.2f} {cpu:8.2f} {n_ramps / wall:10.0f}")
        if not args.no_write:
            with tempfile.TemporaryDirectory() as folder:
                from nrm_plugins import save

                path = Path(folder) / "bench.3ds"
                _, wall, cpu = _timed(lambda: save(sim.model, path))
                size = path.stat().st_size / 1e6
                print(f"{preset:<10} {'.3ds':<9} {wall:8.2f} {cpu:8.2f} {n_ramps / wall:10.0f}   ({size:.0f} MB)")
        del sim
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()[0]
    print(f"\npeak RSS {peak:.0f} MB; machine: {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{load:.1f}; python {platform.python_version()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
