"""``nrm process FILE… [--calibration calib.toml] [--windows lo:hi,…] -o results.nc``: run the pipeline."""
from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub, common):
    p = sub.add_parser(
        "process", parents=[common], help="run the 1D-NRM pipeline on ramps",
        description="Read each FILE (any registered format), compute per-ramp contact points, depth profiles "
                    "of the storage and loss moduli, SEI thicknesses and the window statistics, and write the "
                    "results (NetCDF .nc, or Zarr .zarr for large runs). Several files are processed together "
                    "(their ramps keep their source). Without --calibration the calibration is found beside "
                    "the first file (<stem>.nrm.toml, else calibration.toml).")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="results file (.nc or .zarr)")
    p.add_argument("--calibration", metavar="TOML", help="calibration and settings (DESIGN.md §3)")
    p.add_argument("--windows", metavar="LO:HI,…", help="potential windows in V, e.g. 1.5:2.0,1.0:1.5")
    p.add_argument("--group-by", metavar="COORD", help="ramp coordinate to group by (default: potential)")
    p.add_argument("--ci-method", choices=("t", "bootstrap"), help="confidence interval of window means")
    p.add_argument("--channels", metavar="ROLE=NAME,…", help="role overrides, e.g. deflection='Input 2 (V)'")
    p.add_argument("--no-profiles", action="store_true",
                   help="omit the per-ramp profiles E_storage/E_loss (window statistics, G_abs_interval and "
                        "G_abs_kde are kept)")
    p.add_argument("--allow-truncated", action="store_true",
                   help="a file cut inside a record (an interrupted grid): process its complete ramps, with a "
                        "warning, instead of stopping with an error")
    p.add_argument("--scheduler", metavar="ADDRESS|local:N",
                   help="where the chunks run: local:N = N threads on this machine (default local:2), or the "
                        "address of a dask.distributed scheduler (tcp://host:8786; needs the 'dask' extra)")
    p.add_argument("--force", action="store_true", help="overwrite OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    import xarray as xr

    import nrm_plugins as nrm

    from ..calibration import Calibration, parse_windows
    from ..errors import CalibrationError, WriterError
    from ..model import parse_channels

    out = Path(args.output)
    if out.exists() and not args.force:
        raise WriterError(out, "exists; use --force to overwrite")
    files = [Path(f) for f in args.files]
    cal_path = Path(args.calibration) if args.calibration else Calibration.discover(files[0])
    cal = Calibration.from_toml(cal_path) if cal_path else Calibration()
    if cal_path is None:
        print(f"nrm process: no calibration beside {files[0]} (<stem>.nrm.toml or calibration.toml); "
              "using file values and defaults", file=sys.stderr)
    channels = parse_channels(args.channels)
    if channels:
        for role, name in channels.items():
            cal.set("channels", role, name, origin="--channels")
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        datasets = [_open(nrm, f, args.allow_truncated) for f in files]
    # what the readers warned about (a truncated or unfinished grid...) goes into the results' warnings
    read_warnings = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)))
    if len(datasets) == 1:
        ds = datasets[0]
    else:
        names = [set(np.asarray(d["source"].values).astype(str).tolist()) if "source" in d.coords else set()
                 for d in datasets]
        if any(not n or n == {""} or any(n & m for m in names[:k] + names[k + 1:]) for k, n in enumerate(names)):
            # the readers' source names do not tell the files apart: use the paths as given
            datasets = [d.assign_coords(source=("ramp", np.full(d.sizes["ramp"], str(f), dtype=object)))
                        for f, d in zip(files, datasets)]
        ds = xr.concat(datasets, dim="ramp", data_vars="minimal", coords="minimal", compat="override",
                       combine_attrs="drop_conflicts", join="outer", fill_value=np.nan)
    options = {"progress": not args.quiet, "source_files": [str(f) for f in files],
               "base_dir": str(cal_path.parent) if cal_path else None}
    client = None
    if args.scheduler:
        client = _scheduler(args.scheduler, options)
    if args.windows:
        options["windows"] = parse_windows(args.windows)
    if args.group_by:
        options["group_by"] = args.group_by
    if args.ci_method:
        options["ci_method"] = args.ci_method
    if args.no_profiles:
        options["keep_profiles"] = False
    try:
        results = nrm.process(ds, cal, **options)
    except CalibrationError as exc:
        where = f" ({cal_path})" if cal_path else ""
        raise CalibrationError(f"{exc}{where}") from None
    finally:
        if client is not None:
            client.close()
    if read_warnings:
        results.attrs["warnings"] = read_warnings + list(results.attrs.get("warnings", []))
    if out.exists() and args.force:
        import shutil

        shutil.rmtree(out) if out.is_dir() else out.unlink()
    nrm.save(results, out)
    print(summary(results, out))
    return 0


def _open(nrm, path, allow_truncated: bool):
    """nrm.open; a truncated file's error points to --allow-truncated (the reader's hint names the API option)."""
    from ..errors import ReaderError

    try:
        return nrm.open(path, **({"allow_truncated": True} if allow_truncated else {}))
    except ReaderError as exc:
        if "allow_truncated=True" in exc.problem:
            raise ReaderError(exc.path, exc.problem.replace("pass allow_truncated=True", "use --allow-truncated"),
                              exc.ramp) from None
        raise


def summary(results, out) -> str:
    """The final lines: ramps read / accepted / flagged by reason, windows, warnings."""
    c = results.attrs.get("counts", {})
    lines = [f"{out}: {c.get('read', 0)} ramps read, {c.get('accepted', 0)} accepted, "
             f"{c.get('rejected', 0)} rejected"]
    rej = c.get("rejected_by_reason", {})
    if rej:
        lines.append("  rejected: " + ", ".join(f"{k}: {v}" for k, v in rej.items()))
    flagged = {k: v - rej.get(k, 0) for k, v in c.get("flagged", {}).items() if v - rej.get(k, 0) > 0}
    if flagged:
        lines.append("  accepted with a warning: " + ", ".join(f"{k}: {v}" for k, v in flagged.items()))
    if "window" in results.dims:
        n = results["sei_thickness_n"].values
        lines.append("  windows: " + ", ".join(f"{w} ({k} ramps)" for w, k in
                                               zip(results["window"].values.tolist(), n.tolist())))
    for w in results.attrs.get("warnings", []):
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


def _scheduler(text: str, options: dict):
    """``local:N`` → N worker threads; anything else is a dask.distributed scheduler address, whose
    executor runs the chunks (DESIGN §6: no home-made scheduler).  Returns the client (or None)."""
    from ..errors import NRMError

    if text.startswith("local:"):
        try:
            options["workers"] = int(text.split(":", 1)[1])
        except ValueError:
            raise NRMError(f"--scheduler '{text}': expected local:N with N a number of threads") from None
        if options["workers"] < 1:
            raise NRMError(f"--scheduler '{text}': N must be at least 1")
        return None
    try:
        from dask.distributed import Client
    except ImportError:
        raise NRMError(f"--scheduler {text}: dask.distributed is not installed (pip install 'nrm-plugins[dask]')") from None
    try:
        client = Client(text, timeout=10)
    except (OSError, TimeoutError) as exc:
        raise NRMError(f"--scheduler {text}: cannot reach the dask scheduler ({exc})") from None
    options["executor"] = client.get_executor()
    return client
