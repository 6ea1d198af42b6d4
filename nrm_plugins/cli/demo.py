"""``nrm demo [OUT]``: simulate a small operando experiment, write it as vendor files, process and report it.

The data come from :mod:`nrm_plugins.simulate` (preset "realistic": 4 potential windows × 20×20 ramps of
1024 samples), are written as a Nanonis ``.3ds`` grid with ``calibration.toml`` and ``truth.nc`` beside it,
read back through the Nanonis reader, processed by the pipeline and reported — each step as far as it is
installed.  The summary compares the window means with the simulator's truth.
"""
from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

#: depths (m) at which the summary compares the moduli with the truth when the truth has no layer tops
DEPTHS = (2e-9, 8e-9)


def summary_depths(truth, w) -> tuple[float, float]:
    """Two depths (m) for window ``w``, shallow first: the middles of its two thickest layers (from the
    truth's mean layer tops), where the 2 nm derivative window does not straddle a layer boundary."""
    import numpy as np

    if "layer_top_mean" not in truth:
        return DEPTHS
    tops = np.asarray(truth["layer_top_mean"].isel(window=w).values, float)
    tops = tops[np.isfinite(tops)]
    bottoms = np.concatenate([[0.0], tops[:-1]])
    order = np.argsort(tops - bottoms)[::-1][:2]
    middles = sorted(round(float((tops[i] + bottoms[i]) / 2) / 1e-10) * 1e-10 for i in order)
    return tuple(middles) if len(middles) == 2 else DEPTHS


def add_parser(sub, common):
    p = sub.add_parser("demo", parents=[common], help="simulate, process and report a demo experiment",
                       description="Make the embedded demo data set (a simulated operando CV: 4 potential "
                                   "windows x 20x20 ramps with lateral lock-in channels), write it as a "
                                   "Nanonis .3ds grid with calibration.toml and the simulator's truth.nc, then "
                                   "run the pipeline and the report on it and compare the results with the "
                                   "truth.")
    p.add_argument("output", nargs="?", default="nrm-demo", metavar="OUT",
                   help="output folder (default: ./nrm-demo); demo files in it are replaced")
    p.add_argument("--grid", default="20x20", metavar="NXxNY", help="locations per window (default 20x20)")
    p.add_argument("--samples", type=int, default=1024, help="samples per ramp (default 1024)")
    p.add_argument("--preset", default="realistic", help="simulator preset (clean, noisy, realistic, rough)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=run)


def _grid(text: str) -> tuple[int, int]:
    from ..errors import NRMError

    try:
        nx, ny = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise NRMError(f"--grid {text!r}: expected NXxNY, e.g. 20x20") from None
    if nx < 1 or ny < 1:
        raise NRMError(f"--grid {text!r}: both sizes must be >= 1")
    return nx, ny


def _say(text: str) -> None:
    print(f"nrm demo: {text}", file=sys.stderr, flush=True)


def _optional(module: str, name: str):
    """``module.name`` when that part of the toolkit is installed, else None."""
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise
    except AttributeError:
        return None


def run(args) -> int:
    import nrm_plugins as nrm

    from ..calibration import Calibration
    from ..errors import NRMError
    from ..simulate import simulate

    nx, ny = _grid(args.grid)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise NRMError(f"{out}: exists and is not a folder")
    started = time.perf_counter()
    _say(f"simulating preset '{args.preset}': {nx}x{ny} locations x 4 windows, {args.samples} samples per ramp")
    try:
        sim = simulate(args.preset, nx=nx, ny=ny, n_samples=args.samples, seed=args.seed, progress=True)
    except ValueError as exc:
        raise NRMError(str(exc)) from None
    _say(f"writing into {out}/")
    paths = sim.write(out, name="demo")
    truth = sim.truth
    steps = {"data": paths["data"], "calibration": paths["calibration"], "truth": paths["truth"]}

    results = None
    process = _optional("nrm_plugins.pipeline", "process")
    if process is None:
        _say("the pipeline (nrm_plugins.pipeline) is not available yet: processing skipped")
    else:
        _say(f"reading {paths['data'].name} back through the reader and processing it")
        model = nrm.open(paths["data"])
        results = process(model, Calibration.from_toml(paths["calibration"]), progress=True)
        steps["results"] = nrm.save(results, out / "results.nc")
        report = _optional("nrm_plugins.reporting", "report")
        if report is None:
            _say("the report (nrm_plugins.reporting) is not available yet: report skipped")
        else:
            _say("writing the report")
            steps["report"] = Path(report(results, out / "report", model=model, progress=True))
    elapsed = time.perf_counter() - started

    print(f"nrm demo: {sim.n_ramps} simulated ramps ({nx}x{ny} locations x {len(sim.windows)} potential windows), "
          f"done in {elapsed:.1f} s")
    for key, path in steps.items():
        print(f"  {key:<12} {path}")
    print()
    print(summary(truth, results))
    return 0


def _window_results(results, truth):
    """Per truth window: (accepted, total, results window index or None)."""
    import numpy as np

    labels = [str(v) for v in results["window"].values] if results is not None and "window" in results.dims else []
    potential = np.asarray(results["potential"].values, float) if results is not None else None
    ok = np.asarray(results["ok"].values, bool) if results is not None and "ok" in results else None
    out = []
    for w, label in enumerate(truth["window"].values):
        lo, hi = float(truth["window_low"][w]), float(truth["window_high"][w])
        index = labels.index(str(label)) if str(label) in labels else (w if w < len(labels) else None)
        if potential is None:
            out.append((None, int(truth["ramps_in_window"][w]), None))
            continue
        inside = (potential >= lo) & (potential < hi)
        accepted = int((inside & ok).sum()) if ok is not None else None
        out.append((accepted, int(inside.sum()), index))
    return out


def _value(results, name, w, depth=None):
    import numpy as np

    if results is None or w is None or name not in results:
        return np.nan
    var = results[name].isel(window=w)
    if depth is not None:
        var = var.sel(z=depth, method="nearest")
    return float(var)


def summary(truth, results=None) -> str:
    """The demo's table: per window, ramps accepted, SEI thickness and moduli at :data:`DEPTHS`,
    measured (when ``results`` are given) next to the simulator's truth in parentheses."""
    import numpy as np

    def pair(measured, true, scale, digits=2):
        m = "—" if not np.isfinite(measured) else f"{measured / scale:.{digits}f}"
        return f"{m} ({true / scale:.{digits}f})"

    header = ["window", "ramps ok/all", "SEI nm"]
    for k in ("1", "2"):
        header += [f"z{k} nm", f"E' z{k} MPa", f"E'' z{k} MPa"]
    rows = [header]
    for w, (accepted, total, index) in enumerate(_window_results(results, truth)):
        row = [str(truth["window"].values[w]), f"{'—' if accepted is None else accepted}/{total}",
               pair(_value(results, "sei_thickness_mean", index), float(truth["sei_thickness_mean"][w]), 1e-9, 1)]
        for depth in summary_depths(truth, w):
            row.append(f"{depth * 1e9:.1f}")
            for q in ("E_storage", "E_loss"):
                true = float(truth[f"{q}_mean"].isel(window=w).sel(z=depth, method="nearest"))
                row.append(pair(_value(results, f"{q}_mean", index, depth), true, 1e6))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in
                       enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    note = "measured (truth: the simulator's population mean); z1, z2: middles of the window's two thickest layers"\
        if results is not None else \
        "— = not measured (pipeline not available); in parentheses: the simulator's truth"
    return "\n".join(lines + [note])
