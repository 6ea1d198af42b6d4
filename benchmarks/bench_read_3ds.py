"""Benchmark: read a large Nanonis grid (.3ds) with nrm-plugins and with nanonispy, side by side.

    python benchmarks/bench_read_3ds.py [--points 16384] [--samples 1024] [--repeat 3] [--keep DIR]

1. Writes a grid of ``points`` × ``samples`` with 3 channels (deflection, lateral X/Y; ~200 MB at the
   defaults) with our ``.3ds`` writer into a temporary folder.
2. In separate, fresh Python processes (interpreter and imports included), alternating, ``repeat`` times:
   (a) ``nrm.open`` + ``np.nansum`` of every (ramp, sample) variable's ``.values``, one at a time (the
   3 channels and the per-point piezo axis); (b) ``nanonispy.read.Grid`` + ``np.nansum`` of every channel
   and its sweep axis.  Each child reports its own wall time and ``ru_maxrss`` (peak resident memory).
3. Prints the best wall time and the peak RSS of each reader next to the file size, and checks that both
   readers saw the same channel values (sum of the 3 channels).

The file is read from the page cache in every run (it is read once before timing).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OURS = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np
import nrm_plugins as nrm
import dask.array  # xarray imports it on the first Variable it builds (when dask is installed)
t1 = time.perf_counter()
ds = nrm.open(sys.argv[1])
channels = 0.0
for name in ds.data_vars:
    if ds[name].dims == ("ramp", "sample"):
        total = float(np.nansum(ds[name].values, dtype=np.float64))
        if name != "piezo":
            channels += total
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "read_s": t2 - t1, "checksum": channels,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

NANONISPY = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np
import nanonispy as nap
t1 = time.perf_counter()
grid = nap.read.Grid(sys.argv[1])
channels = 0.0
for name in grid.header["channels"]:
    channels += float(np.nansum(grid.signals[name], dtype=np.float64))
np.nansum(grid.signals["sweep_signal"])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "read_s": t2 - t1, "checksum": channels,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def make_grid(path, points: int, samples: int) -> float:
    """Write the test grid with our writer; every point has its own sweep range.  Returns seconds."""
    import nrm_plugins as nrm
    from nrm_plugins.model import ramps_dataset

    rng = np.random.default_rng(0)
    side = int(round(points ** 0.5))
    nx, ny = (side, points // side) if side * (points // side) == points else (points, 1)
    start = rng.uniform(80e-9, 120e-9, points)
    end = rng.uniform(-10e-9, 0.0, points)
    fraction = (np.arange(samples) / (samples - 1)).astype(np.float32)
    piezo = (start[:, None].astype(np.float32) + (end - start)[:, None].astype(np.float32) * fraction)
    channels = {"piezo": (piezo, "m", "Z")}
    for name, long_name in (("deflection", "Input 2 (V)"), ("lateral_x", "LI Demod 1 X (V)"),
                            ("lateral_y", "LI Demod 1 Y (V)")):
        channels[name] = (rng.standard_normal((points, samples), dtype=np.float32), "V", long_name)
    x = np.tile(np.arange(nx) * 20e-9, ny)
    y = np.repeat(np.arange(ny) * 20e-9, nx)
    ds = ramps_dataset(channels, coords={"x": x, "y": y, "time": np.arange(points) * 0.5,
                                         "direction": np.full(points, "approach")})
    t0 = time.perf_counter()
    nrm.save(ds, path)
    return time.perf_counter() - t0


def run_child(code: str, *args) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - t0
    return result


#: the grid is made in a child too: on Linux a child's ru_maxrss starts from its parent's at fork time
MAKE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from bench_read_3ds import make_grid
print(json.dumps({"write_s": make_grid(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=16384)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", metavar="DIR", help="write the grid here instead of a temporary folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "bench.3ds"
        write_s = run_child(MAKE, Path(__file__).parent, path, args.points, args.samples)["write_s"]
        size = path.stat().st_size
        with open(path, "rb") as fh:  # into the page cache for both readers
            while fh.read(1 << 24):
                pass
        runs = {"nrm-plugins": [], "nanonispy": []}
        for _ in range(args.repeat):
            runs["nrm-plugins"].append(run_child(OURS, path))
            runs["nanonispy"].append(run_child(NANONISPY, path))
        sums = {name: r[0]["checksum"] for name, r in runs.items()}
        same = bool(np.isclose(sums["nrm-plugins"], sums["nanonispy"], rtol=1e-9))
        print(f"file: {args.points} points x {args.samples} samples x 3 channels, {size / 1e6:.1f} MB "
              f"(written by nrm-plugins in {write_s:.2f} s); python {sys.version.split()[0]}, numpy {np.__version__}")
        print(f"{'reader':<14}{'read (s)':>10}{'imports (s)':>13}{'process (s)':>13}{'peak RSS (MB)':>15}"
              f"{'RSS / file':>12}")
        for name, results in runs.items():
            best = {k: min(r[k] for r in results) for k in ("read_s", "import_s", "process_s")}
            rss = max(r["maxrss_kb"] for r in results) * 1024
            print(f"{name:<14}{best['read_s']:>10.2f}{best['import_s']:>13.2f}{best['process_s']:>13.2f}"
                  f"{rss / 1e6:>15.0f}{rss / size:>12.2f}")
        print(f"read: open + np.nansum of every value (best of {args.repeat}); imports: numpy + the reader's "
              "package (for nrm-plugins xarray, pandas, dask.array); process: the whole child including the "
              "interpreter start; peak RSS: the largest ru_maxrss of the reading children (interpreter included)")
        print(f"channel sums agree: {same} ({sums['nrm-plugins']:.6g} vs {sums['nanonispy']:.6g})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
