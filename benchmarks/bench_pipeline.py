"""Speed of the 1D-NRM pipeline (a benchmark, not a test): prints tables for docs/pipeline.md.

    python benchmarks/bench_pipeline.py                 # in-memory stages + nanite comparison
    python benchmarks/bench_pipeline.py --e2e           # also: 16 384 x 1024 grid file, nrm process end to end

1. In memory, realistic simulated ramps of 1024 samples: the contact method alone, and contact + depth +
   lateral + derivative + moduli + SEI thickness (the pipeline's per-chunk work), 1 and 2 threads, without
   and with the lock-in lag correction; throughput against the chunk size.
2. Where the time of one thread goes: each stage's functions timed inside the pipeline's own chunks.
3. nanite's contact-point methods (``fit_constant_line``, ``deviation_from_baseline``) on the same ramps,
   one call per ramp: speed and accuracy against the simulator's ideal two-line intersection.
4. ``nrm process`` on a 16 384-ramp Nanonis grid file: wall time and peak RSS against the file size.

Every time is the best of a few repetitions (the machine is shared: the load average is printed).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def best_of(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ramps", type=int, default=8192, help="ramps for the in-memory benchmark")
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--nanite", type=int, default=300, help="ramps for nanite's fit_constant_line (slow)")
    ap.add_argument("--e2e", action="store_true", help="also the 16 384 x 1024 file end to end")
    args = ap.parse_args()

    from nrm_plugins import native, pipeline, simulate
    from nrm_plugins.pipeline import contact

    proc = sys.modules[pipeline.__name__ + ".process"]  # the module (the package exports the function)
    nx = 128
    ny = max(1, args.ramps // nx)
    sim = simulate.simulate("realistic", nx=nx, ny=ny, seed=1, windows=[[0.005, 2.0]])
    ds = sim.model.load()
    n = ds.sizes["ramp"]
    S_lag = proc._settings(ds, sim.calibration.resolve(ds), {}, [])  # the simulator's lock-in tau: corrected
    cal = sim.calibration.copy()
    cal.set("lockin", "time_constant", 0.0)  # the optional lag correction is benchmarked apart
    cal = cal.resolve(ds)
    S = proc._settings(ds, cal, {}, [])
    arr = proc._load(ds)

    def split(size):
        return [slice(s, min(n, s + size)) for s in range(0, n, size)]

    chunks = split(args.chunk)
    print(f"{n} realistic ramps x {ds.sizes['sample']} samples; chunks of {args.chunk}; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}\n")

    # oriented nm arrays for the contact method alone
    x = ((arr["piezo"] - arr["piezo"][:, :1]) * 1e9).astype(np.float32)
    y = arr["deflection"] * np.float32(S.deflection_scale)

    def run_all(one, workers, parts=None):
        parts = chunks if parts is None else parts
        if workers == 1:
            for sl in parts:
                one(sl)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(one, parts))

    def contact_all(workers):
        run_all(lambda sl: contact.two_line(x[sl], y[sl]), workers)

    # the speed goal: contact + depth + derivative + moduli (the pipeline's own functions, on the
    # background-free lateral signal prepared once)
    from nrm_plugins.pipeline import derivative as deriv, moduli

    U = np.empty(x.shape, np.complex64)
    U.real = arr["lateral_x"] - arr["lateral_x"][:, :64].mean(1, keepdims=True)
    U.imag = arr["lateral_y"] - arr["lateral_y"][:, :64].mean(1, keepdims=True)
    e_scale = complex(moduli.modulus_scale(S.factor, S.r_g, S.amplitude)) * -1e9

    def core(sl):
        res = S.contact.function(x[sl], y[sl], None, **S.contact_params)
        z, _, lo, hi = proc._depth(x[sl], y[sl], res, S)
        ok = hi - lo >= 2
        lo, hi = np.where(ok, lo, 0), np.where(ok, hi, 2)
        # work arrays as the pipeline uses them: per-thread scratch, and a recycled buffer for the moduli
        k = len(lo)
        grid = deriv.resample(z, U[sl], lo, hi, S.top, S.step, S.n_grid,
                              out=native.scratch("grid", (k, S.n_grid), np.complex64))
        d = S.derivative.function(grid, S.step, S.window, **S.derivative_params,
                                  out=native.scratch("d", grid.shape, np.complex64))
        return proc._to_output(d, S, scale=e_scale, out=native.scratch("E", (k, S.n_z), np.complex64))

    def core_all(workers):
        run_all(core, workers)

    def pipeline_all(workers, settings=S, parts=None):
        run_all(lambda sl: proc._chunk({k: v[sl] for k, v in arr.items()}, settings), workers, parts)

    rows = []
    for name, fn in (("contact point (two-line)", contact_all),
                     ("contact + depth + derivative + moduli", core_all),
                     ("whole chunk (+ checks, lateral, background, SEI)", pipeline_all),
                     ("... with the lock-in lag correction", lambda w: pipeline_all(w, S_lag))):
        for w in (1, 2):
            t = best_of(lambda: fn(w))
            rows.append((name, w, n / t, t / n * 1e6))
    print(f"compiled kernels: {'yes' if native.available() else 'no (' + str(native.reason) + ')'}")
    print(f"{'stage':<50} {'threads':>7} {'ramps/s':>10} {'us/ramp':>9}")
    for name, w, rate, us in rows:
        print(f"{name:<50} {w:>7} {rate:>10.0f} {us:>9.1f}")

    print(f"\n{'chunk (ramps)':<14} {'1 thread':>10} {'2 threads':>10}   (ramps/s, whole chunk, no lag correction)")
    for size in (128, 256, 512, 1024):
        rates = [n / best_of(lambda: pipeline_all(w, S, split(size))) for w in (1, 2)]
        print(f"{size:<14} {rates[0]:>10.0f} {rates[1]:>10.0f}")

    print(f"\nwhere one thread's time goes (chunks of {args.chunk}; us per ramp):")
    for label, settings in (("no lag correction", S), ("with the lag correction", S_lag)):
        times, total = stage_times(proc, lambda: pipeline_all(1, settings), settings)
        print(f"  {label}: {total / n * 1e6:.1f} us per ramp")
        for stage, t in times:
            print(f"    {stage:<52} {t / n * 1e6:>6.1f}  {t / total:>4.0%}")

    # ---- nanite on the same ramps
    print()
    try:
        from nanite import poc as npoc
    except ImportError:
        print("nanite not installed: comparison skipped")
    else:
        truth = sim.truth.contact_ideal.values
        piezo = arr["piezo"]
        force = arr["deflection"].astype(np.float64) * cal.get("normal", "invols") * cal.get("normal", "spring_constant")
        ours = np.concatenate([contact.two_line(x[sl], y[sl])["position"] for sl in chunks])
        ours_err = np.abs(ours * 1e-9 + piezo[:, 0] - truth) * 1e9
        t_ours = best_of(lambda: contact_all(1))
        print(f"{'contact method':<34} {'ramps':>6} {'ramps/s':>10} {'vs two-line':>12} {'median |err|':>13} {'p95 |err|':>10}")
        print(f"{'two-line (this pipeline, 1 thread)':<34} {n:>6} {n / t_ours:>10.0f} {'1':>12} "
              f"{np.median(ours_err):>10.3f} nm {np.percentile(ours_err, 95):>7.3f} nm")
        for name, fn, m in (("nanite deviation_from_baseline", npoc.poc_deviation_from_baseline, min(n, 4096)),
                            ("nanite fit_constant_line", npoc.poc_fit_constant_line, min(n, args.nanite))):
            idx = np.empty(m)
            t = time.perf_counter()
            for i in range(m):
                idx[i] = fn(force[i])
            dt = time.perf_counter() - t
            ok = np.isfinite(idx)
            pos = np.full(m, np.nan)
            pos[ok] = piezo[np.flatnonzero(ok), idx[ok].astype(int)]
            err = np.abs(pos - truth[:m]) * 1e9
            rate = m / dt
            print(f"{name:<34} {m:>6} {rate:>10.0f} {rate / (n / t_ours):>12.2g} "
                  f"{np.nanmedian(err):>10.3f} nm {np.nanpercentile(err, 95):>7.3f} nm   ({(~ok).sum()} failed)")

    if args.e2e:
        end_to_end()


def stage_times(proc, run, settings):
    """Run ``run`` once with the pipeline's stage functions wrapped by timers: [(stage, seconds)], total."""
    from nrm_plugins.pipeline import thickness

    spent = defaultdict(float)

    def timed(stage, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[stage] += time.perf_counter() - t
        return wrapper

    patches = [(proc, "_background", "background: means, halves, trend lines"),
               (proc, "_lag_correct", "lock-in lag correction"),
               (proc, "resample", "resampling onto the depth grid"),
               (proc, "_to_output", "moduli onto the results' grid"),
               (thickness, "sei_thickness", "SEI thickness")]
    # kernels that _chunk calls directly (the others run inside the wrapped functions above)
    from nrm_plugins import native

    direct = {"nrm_prepare": "first pass: validity statistics, oriented copies (kernel)",
              "nrm_despike": "deflection spikes (kernel)",
              "nrm_masks": "sample masks: NaN, clipping, rail (kernel)",
              "nrm_depth": "depth z_p and contact index (kernel)",
              "nrm_lateral_checks": "profile and background sample checks (kernel)",
              "nrm_resample_xy": "resampling onto the depth grid"}

    class TimedLib:
        def __init__(self, lib):
            self._lib = lib

        def __getattr__(self, name):
            fn = getattr(self._lib, name)
            return timed(direct[name], fn) if name in direct else fn

    saved = [(mod, attr, getattr(mod, attr)) for mod, attr, _ in patches] + [(native, "lib", native.lib)]
    if native.available():
        real_lib = native.lib
        native.lib = lambda: TimedLib(real_lib())
    # the methods are frozen dataclasses held by the settings: wrapped copies, restored below
    methods = (settings.contact, settings.derivative)
    settings.contact = dataclasses.replace(methods[0], function=timed(
        "contact point (block sums, lines, regions)", methods[0].function))
    settings.derivative = dataclasses.replace(methods[1], function=timed(
        "derivative (local polynomial)", methods[1].function))
    for mod, attr, stage in patches:
        setattr(mod, attr, timed(stage, getattr(mod, attr)))
    try:
        run()  # warm-up
        spent.clear()
        t = time.perf_counter()
        run()
        total = time.perf_counter() - t
    finally:
        for mod, attr, fn in saved:
            setattr(mod, attr, fn)
        settings.contact, settings.derivative = methods
    rest = total - sum(spent.values())
    rows = sorted(((k, v) for k, v in spent.items() if v > 0), key=lambda kv: -kv[1])
    rows.append(("rest (numpy: masks, flags, trend, copies)", rest))
    return rows, total


def end_to_end():
    """16 384 x 1024 Nanonis grid written by the simulator, then `nrm process` in a fresh interpreter."""
    from nrm_plugins import simulate

    print()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sim = simulate.simulate("realistic", nx=128, ny=128, seed=2, windows=[[0.005, 2.0]])
        paths = sim.write(tmp)
        del sim
        size = paths["data"].stat().st_size
        out = tmp / "results.nc"
        cmd = [sys.executable, "-m", "nrm_plugins", "process", str(paths["data"]), "--windows",
               "1.5:2.0,1.0:1.5,0.5:1.0,0.005:0.5", "-o", str(out), "--quiet"]
        import psutil

        t = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        watch = psutil.Process(child.pid)
        rss = 0
        while child.poll() is None:  # peak resident memory of the child (interpreter included)
            try:
                rss = max(rss, watch.memory_info().rss)
            except psutil.Error:
                break
            time.sleep(0.005)
        wall = time.perf_counter() - t
        stdout, stderr = child.communicate()
        if child.returncode:
            print(stdout, stderr)
            raise SystemExit("nrm process failed")
        print(stdout.strip().splitlines()[0])
        print(f"{'end to end (read, process, write)':<36} {'file':>9} {'wall':>7} {'peak RSS':>9} {'RSS/file':>9}")
        print(f"{'16 384 x 1024 grid (.3ds)':<36} {size / 2**20:>6.0f} MiB {wall:>5.2f} s {rss / 2**20:>5.0f} MiB "
              f"{rss / size:>9.2f}")
        print(f"{'results':<36} {out.stat().st_size / 2**20:>6.0f} MiB")


if __name__ == "__main__":
    main()
