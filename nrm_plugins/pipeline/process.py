"""The 1D-NRM pipeline (DESIGN.md §1): calibration → contact point → depth → derivative → moduli →
SEI thickness → window statistics, chunked over ramps, vectorized inside each chunk.

Per ramp (all ramps of a chunk at once; DESIGN.md §1 numbers the steps):

1. Units: deflection in nm (InvOLS applied only to volts), piezo in nm relative to the ramp's first
   sample; retract ramps are reversed so that every row runs from the far end to the surface.
2. Contact point by the registered contact method (default "two-line", :mod:`.contact`).
3. Depth ``z_p = (d_s − d_contact) + δ`` with ``δ`` the deflection minus the ramp's fitted baseline line.
   The hard-contact part is cut by *position*: the contact index is the first sample from which the
   4-sample running mean of z_p is within half a noise standard deviation of zero; that sample and all
   later ones are never part of the profile, whatever their z_p.
4. Lateral: recorded X + iY minus the liquid background (mean over the background region, the far half
   of the free part of the ramp, or ``background_region`` above the first deflection rise); clipped
   samples are masked.  Resampled on a grid of step ``derivative_window/10`` rounded to a multiple of
   ``z_step`` and differentiated by the registered derivative method (default "local-polynomial").
5. Moduli E* (Eq. 5, :mod:`.moduli`), optionally with the tip-compliance inverse, interpolated onto the
   results' grid; SEI thickness (:mod:`.thickness`); |G*| per depth interval.

Ramp-level problems never stop the run: each ramp gets ``ok`` and a ``flag`` text (reasons joined by
"; ").  A NaN run in the deflection or lateral signals is tolerated (flag "NaN in ramp", still ok) when it
lies outside the samples the profile and the background use and the two lines can still be fitted;
inside the profile the ramp is rejected.  Clipped lock-in samples inside the profile reject the ramp
("clipped"); clipped samples in the background region are left out of the mean; clipping in hard contact
(beyond the contact index) is ignored.  A saturated deflection (the ramp's largest value repeated exactly in
at least three samples: the photodiode or the ADC at its rail in deep hard contact) is left out of the
contact line like a missing sample.
"""
from __future__ import annotations

import math
import os
import warnings
import contextlib
import inspect
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .._version import __version__
from .. import native
from ..calibration import SCHEMA, Calibration
from ..errors import CalibrationError, ModelError
from ..model import ROLES, assign_roles, validate
from . import contact, lateral, moduli, statistics, thickness
from .contact import FLAGS as CONTACT_FLAGS
from .derivative import DEFAULT_WINDOW, resample

# pipeline flag bits (contact methods use 1, 2, 4)
NAN_REJECT, NAN_WARN, CLIP_REJECT, CLIP_WARN, NO_PROFILE, SEI_TOP, BG_DRIFT = 8, 16, 32, 64, 128, 256, 512
REJECT_MASK = 1 | 2 | 4 | NAN_REJECT | CLIP_REJECT | NO_PROFILE
REASONS = {**CONTACT_FLAGS, NAN_REJECT: "NaN in ramp", NAN_WARN: "NaN in ramp", CLIP_REJECT: "clipped",
           CLIP_WARN: "clipped", NO_PROFILE: "no profile", SEI_TOP: "SEI above the profile",
           BG_DRIFT: "lateral background drifts"}
#: order of the reasons in a flag text
REASON_ORDER = ("NaN in ramp", "clipped", "starts in contact", "no free baseline", "no hard contact",
                "no profile", "SEI above the profile", "lateral background drifts")
MIN_BACKGROUND = 16  # samples
MIN_FREE_TRAVEL = 10e-9  # m of piezo travel before the first deflection rise
#: clipped/NaN samples right before the contact index are the hard-contact onset when the shallowest of
#: them is this close to the electrode (m); ONSET_SCAN: the longest such run looked at (samples)
ONSET_DEPTH = 1.0e-9
ONSET_SCAN = 64
#: the halves of the background region may differ by this many standard errors (free liquid check)
BACKGROUND_DRIFT = 15.0
#: ... and by more than this fraction of the ramp's largest layer response
BACKGROUND_STEP = 0.01
#: a deflection sample farther than this many noise standard deviations (at least DESPIKE_FLOOR, m) from the
#: median of itself and its neighbours is a spike and takes that median
DESPIKE_FACTOR = 8.0
DESPIKE_FLOOR = 0.02e-9
DESPIKE_STRIDE = 8  # the robust noise from every 8th second difference (must equal the kernel's)
#: a changing background within this angle (deg) of the layer's response direction is the layer itself
LAYER_ANGLE = 30.0
#: time constants (one filter stage) after which the lock-in's memory of the hard contact is below 1e-6
LAG_DECAY = 14.0
OPTIONS = ("progress", "keep_profiles", "keep_forces", "chunk_size", "workers", "executor", "clip_level",
           "time_constant_correction", "bootstrap_samples", "seed", "base_dir", "source_files")
PROCESSING_KEYS = ("z_max", "z_step", "contact_method", "derivative_method", "derivative_window",
                   "background_region", "tip_compliance_correction", "windows", "group_by", "ci_method",
                   "depth_intervals")
PROFILE_MEMORY_LIMIT = 2 * 1024 ** 3  # bytes of per-ramp profiles kept in the results by default


@dataclass
class Settings:
    """Everything a chunk needs, resolved once from the calibration and the options."""

    deflection_scale: float  # nm per recorded deflection unit
    factor: complex  # F* (N) = factor * U (V)
    amplitude: float
    r_g: float
    poisson: float
    frequency: float
    lateral_stiffness: float | None
    z_step: float  # nm
    z_max: float  # nm
    n_z: int
    step: float  # nm, internal grid
    window: float  # nm
    top: float  # nm, first internal grid point
    n_grid: int
    out_j0: np.ndarray = field(repr=False, default=None)  # int64: internal point below each output point
    out_w: np.ndarray = field(repr=False, default=None)  # float32: its interpolation weight
    background_region: float | None = None  # nm; None = auto
    clip: float = math.inf
    time_constant: float = 0.0
    filter_slope: int = 24
    sample_interval: float | None = None
    lag_samples: int = 0
    contact: object = None
    contact_params: dict = field(default_factory=dict)
    derivative: object = None
    derivative_params: dict = field(default_factory=dict)
    derivative_out: bool = False  # the derivative function takes out= (a complex64 array of its input's shape)
    keep_forces: bool = False
    intervals: list = field(default_factory=list)


# ================================================================================================ API
def process(ds: xr.Dataset, calibration=None, **options) -> xr.Dataset:
    """Run the 1D-NRM pipeline on the ramps of ``ds`` (the common model) → results (DESIGN.md §3).

    :param calibration: :class:`~nrm_plugins.calibration.Calibration`, dict, TOML path or None
    :param options: any ``[processing]`` key (``windows=[[1.5, 2.0], ...]``, ``z_max``, ``group_by``,
        ``ci_method``, ``derivative_window``, ``tip_compliance_correction``, ...) and
        ``progress`` (bool or callable(done, total)), ``keep_profiles`` (bool, default: unless the
        profiles would exceed 2 GiB), ``keep_forces`` (add F_storage, F_loss), ``chunk_size`` (ramps,
        default 256), ``workers`` (threads, default 2), ``clip_level`` (V),
        ``time_constant_correction`` (None: on when the calibration gives ``[lockin] time_constant`` > 0;
        True: also with the file's τ; False: off; see :func:`.moduli.undo_output_filter`), ``bootstrap_samples``, ``seed``, ``base_dir`` (for a
        relative ``[cv] file``), ``source_files`` (list, recorded in the attributes).
    :returns: the results Dataset; ``results.attrs["counts"]`` has the accepted/rejected ramps by reason.
    """
    unknown = set(options) - set(OPTIONS) - set(PROCESSING_KEYS)
    if unknown:
        raise CalibrationError(f"nrm.process: unknown option(s) {sorted(unknown)}; options are "
                               f"{sorted(PROCESSING_KEYS)} and {sorted(OPTIONS)}")
    cal = Calibration.coerce(calibration)
    for key in PROCESSING_KEYS:
        if options.get(key) is not None:
            value = options[key]
            if key in ("windows", "depth_intervals"):
                value = [list(map(float, w)) for w in value]
            elif key in ("z_max", "z_step", "derivative_window", "background_region") and not isinstance(value, str):
                value = float(value)
            cal.set("processing", key, value, origin="option")
    mapping = {r: cal.get("channels", r) for r in ROLES if cal.get("channels", r)}
    if mapping:
        ds = assign_roles(ds, mapping)
    validate(ds, require=["piezo", "deflection", "lateral_x", "lateral_y"])
    if ds.sizes.get("ramp", 0) == 0 or ds.sizes.get("sample", 0) == 0:
        src = ds.attrs.get("source_file") or "the data"
        raise ModelError(f"{src}: nothing to process ({ds.sizes.get('ramp', 0)} ramps of "
                         f"{ds.sizes.get('sample', 0)} samples)")
    cal = cal.resolve(ds)
    warn = list(cal.warnings)
    S = _settings(ds, cal, options, warn)
    n_ramps = ds.sizes["ramp"]

    # ramp coordinates, potentials from the CV, groups
    coords = {c: np.asarray(ds[c].values) for c in ("x", "y", "time", "potential", "source", "index", "direction")
              if c in ds.coords}
    potential_source = "data"
    if cal.values.get("cv"):
        pot = np.asarray(coords.get("potential", np.full(n_ramps, np.nan)), np.float64)
        missing = ~np.isfinite(pot)
        if missing.any():  # the [cv] section is read only when needed (its sweep model imports scipy.signal)
            cvp = statistics.cv_potentials(coords.get("time", np.full(n_ramps, np.nan)), cal, options.get("base_dir"))
            pot = np.where(missing, cvp, pot)
            potential_source = "[cv] section" if missing.all() else "data, missing ones from the [cv] section"
        coords["potential"] = pot
    windows = cal.get("processing", "windows")
    group_by = cal.get("processing", "group_by")
    units = ds[group_by].attrs.get("units", "") if group_by in ds.coords else ""
    grouping = (statistics.groups(coords, group_by, windows, units, warn)
                if (windows or group_by != "potential") else None)

    # automatic instrumental phase: a first pass over up to 2048 ramps
    phase_info = {}
    if isinstance(cal.get("lockin", "phase"), str):
        S.factor = lateral.force_factor(cal, phase_deg=0.0)
        pick = np.unique(np.linspace(0, n_ramps - 1, min(n_ramps, 2048)).astype(np.int64))
        sub = _load(ds.isel(ramp=pick))
        out = _chunk(sub, S, want_slope=True)
        ok = out["flags"] & REJECT_MASK == 0
        phase, spread = lateral.estimate_phase(out["slope"].real, out["slope"].imag, ok)
        S.factor = lateral.force_factor(cal, phase_deg=phase)
        phase_info = {"lockin_phase_estimate": phase, "lockin_phase_spread": spread}
        warn.append(f"[lockin] phase = \"auto\": estimated {phase:.2f} deg (spread {spread:.2f} deg over "
                    f"{int(ok.sum())} ramps) assuming the stiffest part of each profile is elastic; "
                    "loss moduli are lower bounds")
        cal.set("lockin", "phase", float(phase), origin="estimated from the data (auto)")

    keep_profiles = options.get("keep_profiles")
    if keep_profiles is None:
        keep_profiles = n_ramps * S.n_z * 8 <= PROFILE_MEMORY_LIMIT
        if not keep_profiles:
            warn.append(f"per-ramp profiles omitted ({n_ramps} ramps × {S.n_z} depths): only window "
                        "statistics, G_abs_interval and G_abs_kde are kept")
    ci_method = cal.get("processing", "ci_method")
    hold_profiles = keep_profiles or (ci_method == "bootstrap" and grouping is not None)

    # output arrays
    per_ramp = {k: np.full(n_ramps, np.nan) for k in (
        "contact_position", "contact_uncertainty", "sei_thickness", "baseline_slope", "baseline_offset",
        "contact_slope", "contact_offset", "deflection_noise", "lateral_noise")}
    contact_index = np.full(n_ramps, -1, np.int64)
    flags = np.zeros(n_ramps, np.int64)
    intervals = S.intervals
    g_interval = np.full((n_ramps, len(intervals)), np.nan, np.float32)
    e_storage = np.full((n_ramps, S.n_z), np.nan, np.float32) if hold_profiles else None
    e_loss = np.full((n_ramps, S.n_z), np.nan, np.float32) if hold_profiles else None
    forces = (np.full((n_ramps, S.n_z), np.nan, np.complex64) if S.keep_forces else None)
    # the KDE histogram streams only when the profiles are not kept (else it comes from them at the end)
    acc = (statistics.WindowAccumulator(grouping["member"], S.n_z, kde=not hold_profiles)
           if grouping is not None else None)
    z_out = np.arange(S.n_z) * S.z_step
    z_out_m = z_out * 1e-9
    shear = moduli.shear_factor(S.poisson)

    chunk = int(options.get("chunk_size") or 256)
    workers = int(options.get("workers") or min(2, os.cpu_count() or 1))
    progress = options.get("progress")
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_ramps, desc="nrm process", unit="ramp", file=None, leave=False)

    def collect(rows, out):
        for k in per_ramp:
            if k in out:
                per_ramp[k][rows] = out[k]
        contact_index[rows] = out["contact_index"]
        flags[rows] = out["flags"]
        e = out["E"]
        ok = (out["flags"] & REJECT_MASK) == 0
        gabs = np.abs(e) * np.float32(shear)
        g_interval[rows] = statistics.interval_means(gabs, z_out_m, intervals)
        if hold_profiles:
            e_storage[rows] = e.real
            e_loss[rows] = e.imag
        if forces is not None:
            forces[rows] = out["F"]
        if acc is not None:
            acc.add(rows, ok, e.real, e.imag, gabs)
        if bar is not None:
            bar.update(rows.stop - rows.start)
        elif callable(progress):
            progress(rows.stop, n_ramps)

    starts = list(range(0, n_ramps, chunk))
    executor = options.get("executor")  # any concurrent.futures.Executor, e.g. dask's client.get_executor()
    if executor is None and (workers <= 1 or len(starts) <= 1):
        e_buffer = np.empty((min(chunk, n_ramps), S.n_z), np.complex64)
        for s in starts:
            rows = slice(s, min(n_ramps, s + chunk))
            collect(rows, _chunk(_load(ds.isel(ramp=rows)), S, e_buffer=e_buffer))
    else:
        workers = max(workers, 2) if executor is not None else workers
        # the moduli of the chunks in flight go into a few recycled buffers (threads only: a remote worker
        # sends its result back anyway)
        buffers = ([np.empty((chunk, S.n_z), np.complex64) for _ in range(workers + 1)]
                   if executor is None else None)
        with (contextlib.nullcontext(executor) if executor is not None else ThreadPoolExecutor(workers)) as pool:
            pending = []
            for s in starts:
                rows = slice(s, min(n_ramps, s + chunk))
                buf = buffers.pop() if buffers else None
                pending.append((rows, buf, pool.submit(_chunk, _load(ds.isel(ramp=rows)), S, False, buf)))
                while len(pending) > workers:
                    r, b, fut = pending.pop(0)
                    collect(r, fut.result())
                    if b is not None:
                        buffers.append(b)
            for r, b, fut in pending:
                collect(r, fut.result())
    if bar is not None:
        bar.close()

    ok = (flags & REJECT_MASK) == 0
    flag_text, counts = _flag_texts(flags, ok)
    sei_top = int(((flags & SEI_TOP) != 0).sum())
    if sei_top:
        warn.append(f"{sei_top} ramp(s): lateral response above the noise at the top of the profile "
                    f"(z_max = {S.z_max:g} nm); their SEI thickness is NaN")
    _check_invols(per_ramp, ok, S, warn)

    return _assemble(ds, cal, S, options, coords, grouping, acc, per_ramp, contact_index, ok, flag_text,
                     counts, g_interval, e_storage if keep_profiles else None,
                     e_loss if keep_profiles else None, e_storage, e_loss, forces, warn, phase_info,
                     potential_source, ci_method)


def derive(results: xr.Dataset, name: str) -> xr.DataArray:
    """A derived quantity (S_*, G_*, G_abs, viscosity) from results; see :func:`.moduli.derive`."""
    return moduli.derive(results, name)


# ================================================================================================ settings
def _settings(ds, cal, options, warn) -> Settings:
    from ..plugins import get_plugin_manager

    units = ds["deflection"].attrs.get("units")
    needed = [("lateral", k) for k in ("dither_amplitude", "torsion_sensitivity", "torsional_stiffness", "tip_length")]
    if units == "V":
        needed.insert(0, ("normal", "invols"))
    if cal.get("lockin", "signal") == "output":
        needed.append(("lockin", "sensitivity"))
    missing = [f"[{sec}] {key} ({SCHEMA[sec][key][3]}, {SCHEMA[sec][key][2]})" for sec, key in needed
               if cal.get(sec, key) is None]
    if missing:
        raise CalibrationError("calibration needs " + "; ".join(missing))
    if units == "V":
        scale = cal.require("normal", "invols") * 1e9
    elif units == "m":
        scale = 1e9
    else:
        raise ModelError(f"deflection has units '{units}', expected V or m")
    phase = cal.get("lockin", "phase")
    factor = lateral.force_factor(cal, phase_deg=0.0 if isinstance(phase, str) else None)
    amplitude = cal.require("lateral", "dither_amplitude")
    frequency = cal.get("lateral", "dither_frequency")
    if frequency is None:
        frequency = math.nan
        warn.append("[lateral] dither_frequency unknown (and no lockin_frequency in the file): viscosity is NaN")
    k_lat = None
    if cal.get("processing", "tip_compliance_correction"):
        k_lat = cal.require("lateral", "torsional_stiffness") / cal.require("lateral", "tip_length") ** 2
    z_step = cal.get("processing", "z_step") * 1e9
    z_max = cal.get("processing", "z_max") * 1e9
    n_z = int(round(z_max / z_step)) + 1
    z_max = (n_z - 1) * z_step
    dwin = cal.get("processing", "derivative_window")
    window = (DEFAULT_WINDOW if dwin == "auto" else float(dwin)) * 1e9
    ratio = max(1, int(window / (10 * z_step) + 1e-9))
    step = ratio * z_step
    h = max(1, int(round(window / (2 * step))))
    window = 2 * h * step
    big_h = h + 1
    k_top = int(math.ceil(z_max / step - 1e-9))
    top = (k_top + big_h) * step
    n_grid = k_top + 2 * big_h + 1
    pos = (top - np.arange(n_z) * z_step) / step
    j0 = np.floor(pos + 1e-6).astype(np.int64)
    w = np.clip(pos - j0, 0.0, 1.0).astype(np.float32)
    j0 = np.minimum(j0, n_grid - 2)
    bg = cal.get("processing", "background_region")
    pm = get_plugin_manager()
    cm = pm.method("contact", cal.get("processing", "contact_method"))
    dm = pm.method("derivative", cal.get("processing", "derivative_method"))
    clip = options.get("clip_level")
    clip = lateral.clip_level(cal) if clip is None else float(clip)
    # lock-in time constant: only when the calibration gives it (or the option asks for the file's)
    tcc = options.get("time_constant_correction")
    if tcc not in (None, True, False):
        raise CalibrationError(f"time_constant_correction = {tcc!r}: True, False or None (default: on when the "
                               "calibration gives [lockin] time_constant > 0)")
    tau = float(cal.get("lockin", "time_constant") or 0.0) if cal.has("lockin", "time_constant") else 0.0
    slope = int(cal.get("lockin", "filter_slope"))
    if tcc is True and tau <= 0:
        tau = float(ds.attrs.get("lockin_time_constant", 0.0) or 0.0)
        if not cal.has("lockin", "filter_slope") and "lockin_filter_slope" in ds.attrs:
            slope = int(ds.attrs["lockin_filter_slope"])
        if tau <= 0:
            raise CalibrationError("time_constant_correction: no [lockin] time_constant in the calibration "
                                   "and none recorded in the file")
    if tcc is False:
        tau = 0.0
    dt = None
    if tau > 0:
        dt = _sample_interval(ds)
    # the lock-in's memory of the hard contact on retract ramps (whether or not the lag is corrected)
    tau_known = tau if tau > 0 else float(ds.attrs.get("lockin_time_constant", 0.0) or 0.0)
    lag_samples = 0
    if tau_known > 0:
        stages = (slope if tau > 0 else int(ds.attrs.get("lockin_filter_slope", slope))) // 6
        try:
            dt_known = dt or _sample_interval(ds)
            lag_samples = int(math.ceil((LAG_DECAY + 3 * (stages - 1)) * tau_known / dt_known))
        except CalibrationError:
            warn.append(f"lock-in time constant {tau_known:g} s but no time along the ramps: the lag of the "
                        "hard contact into retract ramps cannot be trimmed")
    intervals = [list(map(float, w_)) for w_ in cal.get("processing", "depth_intervals")]
    return Settings(
        deflection_scale=scale, factor=factor, amplitude=amplitude, r_g=cal.get("model", "r_g"),
        poisson=cal.get("model", "poisson"), frequency=frequency, lateral_stiffness=k_lat,
        z_step=z_step, z_max=z_max, n_z=n_z, step=step, window=window, top=top, n_grid=n_grid,
        out_j0=j0, out_w=w, background_region=None if bg == "auto" else float(bg) * 1e9, clip=clip,
        time_constant=tau, filter_slope=slope, sample_interval=dt,
        lag_samples=lag_samples, contact=cm,
        contact_params=cm.resolve(), derivative=dm,
        derivative_params={k: v for k, v in dm.resolve().items() if k != "window"},
        derivative_out="out" in inspect.signature(dm.function).parameters,
        keep_forces=bool(options.get("keep_forces")), intervals=intervals)


def _sample_interval(ds) -> float:
    """Sample interval (s) along the ramps: time_in_ramp, else the file's sample_interval/ramp_duration."""
    if "time_in_ramp" in ds.data_vars:
        t = np.asarray(ds["time_in_ramp"].isel(ramp=0).values, np.float64)
        d = np.diff(t[np.isfinite(t)])
        if d.size and np.median(d) > 0:
            return float(np.median(d))
    if "sample_interval" in ds.attrs:
        return float(ds.attrs["sample_interval"])
    if "ramp_duration" in ds.attrs:
        return float(ds.attrs["ramp_duration"]) / (ds.sizes["sample"] - 1)
    raise CalibrationError("lock-in time-constant correction needs the time along each ramp: a time_in_ramp "
                           "channel or the file attribute sample_interval / ramp_duration")


def _load(sub: xr.Dataset) -> dict:
    """The chunk's arrays as numpy (loads lazily read files chunk by chunk)."""
    out = {"piezo": np.asarray(sub["piezo"].values)}
    for name in ("deflection", "lateral_x", "lateral_y"):
        a = np.asarray(sub[name].values)
        out[name] = a if a.dtype == np.float32 else a.astype(np.float32)
    return out


# ================================================================================================ one chunk
def _orient(a, reverse, length, m):
    """Rows of ``a`` with ``reverse`` are reversed within their first ``length`` samples (in place)."""
    rows = np.flatnonzero(reverse)
    if not rows.size:
        return a
    full = rows[length[rows] == m]
    if full.size:
        a[full] = a[full, ::-1]
    part = rows[length[rows] < m]
    if part.size:
        j = np.arange(m)[None, :]
        ln = length[part][:, None]
        idx = np.where(j < ln, ln - 1 - j, j)
        a[part] = np.take_along_axis(a[part], idx, 1)
    return a


def _ffill(a, valid):
    """Replace invalid entries by the previous valid one (the first valid one at the start); in place."""
    n, m = a.shape
    idx = np.where(valid, np.arange(m)[None, :], -1)
    np.maximum.accumulate(idx, axis=1, out=idx)
    first = np.argmax(valid, axis=1)
    idx = np.where(idx < 0, first[:, None], idx)
    return np.take_along_axis(a, idx, 1)


def _chunk(arr: dict, S: Settings, want_slope: bool = False, e_buffer=None) -> dict:
    """Process the ramps of one chunk (see the module docstring).

    ``e_buffer``: an optional (≥ ramps, n_z) complex64 C-contiguous array the moduli are written into (the
    caller recycles a few of them instead of page-faulting a fresh array per chunk); ``out["E"]`` is then a
    view of it."""
    piezo = arr["piezo"]
    defl, lx, ly = arr["deflection"], arr["lateral_x"], arr["lateral_y"]
    n, m = piezo.shape
    flags = np.zeros(n, np.int64)
    j = np.arange(m)[None, :]

    # ---- valid length, NaN and clipping (cheap row tests first), and the oriented working arrays: every
    # row from the far end to the surface, x = piezo (nm) from its first sample, y = deflection (nm)
    rows_n = np.arange(n)
    compiled = native.available()
    if compiled:
        piezo64, defl32, lx32, ly32 = (np.ascontiguousarray(piezo, np.float64), native.f32(defl), native.f32(lx),
                                       native.f32(ly))
        x, y, X, Y = (native.scratch(k, (n, m), np.float32) for k in ("x", "y", "X", "Y"))
        st = np.empty((12, n))
        native.lib().nrm_prepare(n, m, piezo64, defl32, lx32, ly32, S.deflection_scale, x, y, X, Y, st)
        length = st[0].astype(np.int64)
        p_first, p_last, reverse = st[2], st[3], st[4] > 0
        nan_p, nan_d, nan_l = st[5] > 0, st[6] > 0, st[7] > 0
        tops = st[8].astype(np.float32), st[9].astype(np.float32)
        dmax = st[10].astype(np.float32)
        rail_d = st[11] >= lateral.RAIL_SAMPLES
        ref = np.where(np.isfinite(p_first), p_first, 0.0)
    else:
        fin_p = np.isfinite(piezo)
        length = np.where(fin_p.any(1), m - np.argmax(fin_p[:, ::-1], axis=1), 0)
        nan_p = ~np.isfinite(piezo.sum(1))
        nan_d = ~np.isfinite(defl.sum(1))
        nan_l = ~np.isfinite(lx.sum(1) + ly.sum(1))
        tops = tuple(np.fmax(np.fmax.reduce(a, axis=1), -np.fmin.reduce(a, axis=1)) for a in (lx, ly))
        # a saturated photodiode/ADC in deep hard contact: the ramp's largest deflection repeated exactly
        dmax = np.fmax.reduce(defl, axis=1)
        with np.errstate(invalid="ignore"):
            rail_d = (defl >= dmax[:, None]).sum(1) >= lateral.RAIL_SAMPLES
        p_first = piezo[rows_n, np.argmax(fin_p, axis=1)]
        p_last = piezo[rows_n, np.maximum(length - 1, 0)]
        reverse = p_first < p_last
        ref = np.where(np.isfinite(p_first), p_first, 0.0)
        x = ((piezo - ref[:, None]) * 1e9).astype(np.float32)
        y = defl * np.float32(S.deflection_scale)
        X = lx.astype(np.float32, copy=True)
        Y = ly.astype(np.float32, copy=True)
        if reverse.any():
            for a in (x, y, X, Y):
                _orient(a, reverse, length, m)
    row_nan = nan_p | nan_d | nan_l
    amax = np.fmax(*tops)
    clip_row = lateral.saturation_level(lx, ly, S.clip, tops=tops)  # S.clip, or a lower rail (ADC saturation)
    row_clip = amax >= clip_row
    special = row_nan | row_clip | (length < m) | rail_d
    special_d = nan_p | nan_d | (length < m) | rail_d  # the contact fit needs weights
    # sample masks, oriented as the working arrays (only when some ramp needs them)
    valid_d = valid_l = None
    if special.any() and compiled:
        u8 = np.uint8
        valid_d, valid_l = native.scratch("valid_d", (n, m), u8), native.scratch("valid_l", (n, m), u8)
        nan_in, nvalid_d = np.empty(n, u8), np.empty(n, np.int64)
        native.lib().nrm_masks(n, m, piezo64, defl32, lx32, ly32, length, reverse.astype(u8), native.f32(clip_row),
                               rail_d.astype(u8), native.f32(dmax), valid_d, valid_l, nan_in, nvalid_d)
        valid_d, valid_l, nan_in = valid_d.view(bool), valid_l.view(bool), nan_in.view(bool)
    elif special.any():
        inlen = j < length[:, None]
        valid_d = fin_p & np.isfinite(defl) & inlen
        valid_l = np.isfinite(lx) & np.isfinite(ly) & inlen
        nan_in = (inlen & ~(valid_d & valid_l)).any(1)
        if row_clip.any():
            with np.errstate(invalid="ignore"):
                clipped = (np.abs(lx) >= clip_row[:, None]) | (np.abs(ly) >= clip_row[:, None])
            valid_l &= ~clipped
        if rail_d.any():
            with np.errstate(invalid="ignore"):
                at_dmax = defl >= dmax[:, None]
            valid_d &= ~(at_dmax & rail_d[:, None])  # left out of the contact line, like missing samples
        nvalid_d = valid_d.sum(1)
        if reverse.any():
            _orient(valid_d, reverse, length, m)
            _orient(valid_l, reverse, length, m)
    too_short = length < 32
    if valid_d is not None:
        flags[nan_in] |= NAN_WARN
        too_short |= nvalid_d < 32
    flags[too_short] |= NAN_REJECT

    # ---- single-sample deflection spikes (glitches of the photodiode or the ADC), before any fit
    _despike(y, length)

    # ---- contact point
    res = _contact(x, y, valid_d, special_d & ~too_short, S)
    flags |= res["flags"]
    flags[too_short] &= ~(1 | 2 | 4)
    xs = res["position"]
    bslope, boff = res["baseline_slope"], res["baseline_offset"]
    bad_contact = ~np.isfinite(xs)
    flags[bad_contact & ((flags & REJECT_MASK) == 0)] |= 2
    noise = res["noise"]

    # ---- depth z_p (nm) and the contact index (by position)
    z, cidx, lo, hi = _depth(x, y, res, S)

    # ---- lateral: the deep end of the profile, validity, lock-in lag, background
    # clipped samples right before the contact are the hard-contact onset (approach) or, on a retract,
    # the lock-in's memory of the hard contact (its output filter runs forward in time): trimmed when
    # the run is short; on a retract with a known time constant, the samples within the filter's memory
    # after the hard contact are left out too (S.lag_samples)
    # ... and so is a longer run whose shallowest sample is within ONSET_DEPTH of the electrode (the contact
    # index found a few samples late: those samples are hard contact, not layer)
    allow = np.where(reverse, max(3, S.lag_samples), 3)
    if valid_l is not None:
        tail = np.zeros(n, np.int64)
        for s in range(1, max(int(allow.max()) + 2, ONSET_SCAN)):
            col = np.clip(hi - s, 0, m - 1)
            still = ~valid_l[rows_n, col] & (tail == s - 1) & (hi - s >= lo)
            if not still.any():
                break
            tail = np.where(still, s, tail)
        onset = z[rows_n, np.clip(hi - tail, 0, m - 1)] <= np.float32(ONSET_DEPTH * 1e9)
        hi = np.where((tail <= allow) | onset, hi - tail, hi)
    if S.lag_samples:
        hi = np.where(reverse, np.maximum(hi - S.lag_samples, lo), hi)
    # the checks of the lateral samples in one kernel pass (the lag correction, below, needs the numpy order)
    fused = valid_l is not None and compiled and not S.time_constant > 0
    if fused:
        i_bg = _background_end(x, res["free_end"], S)
        nan_prof, clip_prof, masked_bg, clipped_bg = (np.empty(n, np.uint8) for _ in range(4))
        native.lib().nrm_lateral_checks(n, m, X, Y, valid_d.view(np.uint8), valid_l.view(np.uint8), lo, hi, i_bg, 0,
                                        nan_prof, clip_prof, masked_bg, clipped_bg)
        masked_bg, clipped_bg = masked_bg.view(bool), clipped_bg.view(bool)
        flags[nan_prof.view(bool)] |= NAN_REJECT
        flags[clip_prof.view(bool)] |= CLIP_REJECT
    elif valid_l is not None:
        in_prof = (j >= lo[:, None]) & (j < hi[:, None])
        finite_l = np.isfinite(X) & np.isfinite(Y)
        nan_prof = (in_prof & (~valid_d | ~finite_l)).any(1)
        clip_prof = (in_prof & ~valid_l & finite_l).any(1)
        flags[nan_prof] |= NAN_REJECT
        flags[clip_prof] |= CLIP_REJECT
    edge = 0
    if S.time_constant > 0:
        fix = np.flatnonzero((flags & REJECT_MASK) == 0)
        if fix.size:
            X[fix], Y[fix], extra = _lag_correct(X[fix], Y[fix], None if valid_l is None else valid_l[fix],
                                                 reverse[fix], hi[fix], S)
            if extra is not None:
                valid_l[fix] &= ~extra
            # the far end of every row (the first samples in time of an approach, the last of a retract)
            # keeps the deconvolution's amplified noise: the smoother cannot average it with neighbours there
            stages = S.filter_slope // 6
            edge = max(1, int(round(stages * S.time_constant / S.sample_interval))) + 2 * stages
            lo = np.where((flags & REJECT_MASK) == 0, np.minimum(np.maximum(lo, edge), hi), lo)
    free_end = res["free_end"]
    # the free part must be long enough to be free liquid (a ramp started inside the layer is not)
    x_end = np.take_along_axis(x, np.clip(free_end - 1, 0, m - 1)[:, None], 1)[:, 0]
    short_free = np.abs(x[:, 0] - x_end) < np.float32(MIN_FREE_TRAVEL * 1e9)
    flags[short_free & ((flags & REJECT_MASK) == 0)] |= 1
    if not fused:
        i_bg = _background_end(x, free_end, S)
    bg_start = np.full(n, edge, np.int64)
    if valid_l is not None and not fused:
        masked = (j < i_bg[:, None]) & (j >= edge) & ~valid_l
        masked_bg = masked.any(1)
        clipped_bg = (masked & np.isfinite(X) & np.isfinite(Y)).any(1)
        X = np.where(valid_l, X, 0.0).astype(np.float32)
        Y = np.where(valid_l, Y, 0.0).astype(np.float32)
    # the background region must be free liquid: its two halves agree within the noise (a ramp that
    # starts inside a soft layer shows the layer response changing there)
    parts = _background(X, Y, valid_l, bg_start, i_bg, i_bg // 2)
    bg, bg1, bg2 = parts["all"], parts["first"], parts["second"]
    with np.errstate(invalid="ignore", divide="ignore"):
        n1, n2 = bg1["n"], bg2["n"]
        sig = np.minimum(bg1["sigma"], bg2["sigma"])  # a trend inflates the spread of the whole region
        step_bg = np.hypot(bg2["x"] - bg1["x"], bg2["y"] - bg1["y"])
        drift = step_bg / (sig * np.sqrt(1 / n1 + 1 / n2))
    not_free = (drift > BACKGROUND_DRIFT) & (n1 >= 8) & (n2 >= 8)
    # ... and by a fraction of the layer response that matters (a slow drift of the lock-in output or a
    # weak distance-dependent liquid background is significant over hundreds of samples, not a layer)
    rows_nf = np.flatnonzero(not_free)
    layer_like = np.zeros(n, bool)
    if rows_nf.size:
        in_prof = (j >= lo[rows_nf, None]) & (j < hi[rows_nf, None])
        dx, dy = X[rows_nf] - bg["x"][rows_nf, None], Y[rows_nf] - bg["y"][rows_nf, None]
        resp = np.where(in_prof, np.hypot(dx, dy), 0.0)
        k = np.argmax(resp, axis=1)
        amp = resp[np.arange(rows_nf.size), k]
        not_free[rows_nf] = step_bg[rows_nf] > BACKGROUND_STEP * amp
        # a ramp that starts inside a soft layer: its background grows toward the surface along the layer's
        # response (within LAYER_ANGLE); a drifting lock-in output or liquid background points anywhere
        sx = (bg2["x"] - bg1["x"])[rows_nf]
        sy = (bg2["y"] - bg1["y"])[rows_nf]
        lx_, ly_ = dx[np.arange(rows_nf.size), k], dy[np.arange(rows_nf.size), k]
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = (sx * lx_ + sy * ly_) / (np.hypot(sx, sy) * np.hypot(lx_, ly_))
        layer_like[rows_nf] = cos > math.cos(math.radians(LAYER_ANGLE))
    live = (flags & REJECT_MASK) == 0
    flags[not_free & layer_like & live] |= 1  # no free liquid before the layer
    flags[not_free & ~layer_like & live] |= BG_DRIFT  # a warning: the moduli use the derivative, not the level
    few_bg = bg["n"] < MIN_BACKGROUND
    if valid_l is not None:
        flags[clipped_bg] |= CLIP_WARN
        flags[few_bg & clipped_bg & ((flags & REJECT_MASK) == 0)] |= CLIP_REJECT
        flags[few_bg & masked_bg & ((flags & REJECT_MASK) == 0)] |= NAN_REJECT
    flags[few_bg & ((flags & REJECT_MASK) == 0)] |= 1
    short = (hi - lo) < 2
    flags[short & ((flags & REJECT_MASK) == 0)] |= NO_PROFILE

    # ---- resample, differentiate, moduli (only the ramps still accepted)
    ok = (flags & REJECT_MASK) == 0
    all_ok = bool(ok.all())
    if e_buffer is not None:
        E = e_buffer[:n]
        if not all_ok:
            E.fill(np.nan)
    else:
        E = np.empty((n, S.n_z), np.complex64) if all_ok else np.full((n, S.n_z), np.nan, np.complex64)
    F = np.full((n, S.n_z), np.nan, np.complex64) if S.keep_forces else None
    sei = np.full(n, np.nan)
    slope_out = np.full((n, S.n_grid), np.nan, np.complex64) if want_slope else None
    rows_ok = np.flatnonzero(ok)
    if rows_ok.size:
        sel = slice(None) if all_ok else rows_ok
        if compiled:  # the background-free signal of the accepted rows, resampled in one pass
            k = len(rows_ok)
            grid = native.scratch("grid", (k, S.n_grid), np.complex64)
            position = native.scratch("position", (k, S.n_grid), np.float32)
            if native.lib().nrm_resample_xy(k, rows_ok.astype(np.int64), m, z, X, Y, native.f32(bg["x"]),
                                            native.f32(bg["y"]), lo, hi, S.top, S.step, S.n_grid, grid,
                                            position.ctypes.data):
                raise MemoryError("resampling: out of memory")
        else:
            U = np.empty((len(rows_ok), m), np.complex64)
            U.real = X[sel] - bg["x"][sel, None]
            U.imag = Y[sel] - bg["y"][sel, None]
            grid, position = resample(z[sel], U, lo[sel], hi[sel], S.top, S.step, S.n_grid, positions=True)
        if S.derivative_out:  # the method can write into a work array of this thread
            d = S.derivative.function(grid, S.step, S.window, **S.derivative_params,
                                      out=native.scratch("d", grid.shape, np.complex64))
        else:
            d = S.derivative.function(grid, S.step, S.window, **S.derivative_params)
        if want_slope:
            slope_out[sel] = -d
        force = grid * np.complex64(S.factor) if (S.lateral_stiffness or S.keep_forces) else None
        if S.lateral_stiffness:
            e_int, e_scale = moduli.modulus(d * np.complex64(-1e9), force, S.factor, S.r_g, S.amplitude,
                                            S.lateral_stiffness), 1.0
        else:  # Eq. 5 is a constant factor: folded into the interpolation onto the results' grid
            e_int, e_scale = d, complex(moduli.modulus_scale(S.factor, S.r_g, S.amplitude)) * -1e9
        if all_ok:
            e_out = _to_output(e_int, S, out=E, scale=e_scale)
        else:
            e_out = _to_output(e_int, S, scale=e_scale)
            E[sel] = e_out
        if F is not None:
            F[sel] = _to_output(force, S)
        # the SEI criterion compares with the background *trend* of the background region (a slow drift of
        # the lock-in output, a weak distance-dependent liquid background), extrapolated along the ramp
        trend = {k: v[sel] for k, v in parts["trend"].items()}
        grid_sei = grid
        span = np.abs(trend["slope"]) * np.abs(hi[sel] - trend["jbar"])
        rr = np.flatnonzero(span > 0.5 * trend["sigma"])
        if rr.size:  # the trend is linear in the sample index: on the grid, slope * (position - jbar)
            grid_sei = grid.copy()
            trend_grid = trend["slope"][rr, None] * (position[rr] - trend["jbar"][rr, None])
            grid_sei[rr] -= trend_grid.astype(np.complex64)
        t_nm, at_top = thickness.sei_thickness(grid_sei, trend["sigma"], S.top, S.step)
        sei[sel] = t_nm * 1e-9
        flags[rows_ok[at_top]] |= SEI_TOP
        empty = ~np.isfinite(e_out.real).any(1)
        # a dead lateral channel (X and Y exactly constant: no noise in the background, no response in the
        # profile) is no measurement, not a layer of zero modulus
        level = np.maximum(np.abs(bg["x"][rows_ok]), np.abs(bg["y"][rows_ok])).astype(np.float64)
        flat = rows_ok[bg["sigma"][rows_ok] <= 1e-6 * level]
        if flat.size:
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
                dead = ((np.nanmax(lx[flat], 1) == np.nanmin(lx[flat], 1))
                        & (np.nanmax(ly[flat], 1) == np.nanmin(ly[flat], 1)))
            empty[np.searchsorted(rows_ok, flat[dead])] = True
            sei[rows_ok[empty]] = np.nan
        flags[rows_ok[empty]] |= NO_PROFILE
        E[rows_ok[empty]] = np.nan

    # ---- back to the file's units and sample order
    ok = (flags & REJECT_MASK) == 0
    scale = S.deflection_scale
    cs, co = res["contact_slope"], res["contact_offset"]
    out = {
        "contact_position": np.where(np.isfinite(xs), xs * 1e-9 + ref, np.nan),
        "contact_uncertainty": res["uncertainty"] * 1e-9,
        "baseline_slope": bslope * 1e9 / scale,
        "baseline_offset": (boff - bslope * ref * 1e9) / scale,
        "contact_slope": cs * 1e9 / scale,
        "contact_offset": (co - cs * ref * 1e9) / scale,
        "deflection_noise": noise * 1e-9,
        "lateral_noise": bg["sigma"],
        "contact_index": np.where(reverse, length - 1 - cidx, cidx),
        "sei_thickness": np.where(ok, sei, np.nan),
        "flags": flags,
        "E": E,  # NaN in every rejected ramp's row
    }
    if F is not None:
        out["F"] = F
    if want_slope:
        out["slope"] = slope_out
    return out


def _despike(y, length):
    """Replace single-sample outliers of the oriented deflection ``y`` (nm), in place, within each row's
    first ``length`` samples: a sample farther than max(DESPIKE_FACTOR σ, DESPIKE_FLOOR) from the median of
    the five samples around it (three at either end of the row) takes that median (σ: the row's robust
    noise, 1.4826 × median |second difference| / √6 over every 8th sample).  A monotone window is never
    changed (its median is its middle sample), so straight lines, the kink at the contact and saturated
    plateaus stay as they are; five, so that a good sample between two spikes keeps its value.  Windows with
    a non-finite member are left alone.  Returns the count per row."""
    n, m = y.shape
    count = np.zeros(n, np.int64)
    if m < 5 or n == 0:
        return count
    length = np.ascontiguousarray(length, np.int64)
    if native.available() and y.flags.c_contiguous and y.dtype == np.float32:
        if native.lib().nrm_despike(n, m, y, length, DESPIKE_FACTOR, DESPIKE_FLOOR * 1e9, count):
            raise MemoryError("despike: out of memory")
        return count
    idx = np.arange(1, m - 1)[None, :]  # the samples 1 .. m-2 (columns of the arrays below)
    a, b, c = y[:, :-2], y[:, 1:-1], y[:, 2:]
    fin = np.isfinite(y)
    med = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    ok = fin[:, :-2] & fin[:, 1:-1] & fin[:, 2:]
    five = (idx >= 2) & (idx + 2 < length[:, None])
    win = np.stack([y[:, :-4], y[:, 1:-3], y[:, 2:-2], y[:, 3:-1], y[:, 4:]])
    med5 = np.sort(win, axis=0)[2]
    ok5 = fin[:, :-4] & fin[:, 1:-3] & fin[:, 2:-2] & fin[:, 3:-1] & fin[:, 4:]
    med[:, 1:-1] = np.where(five[:, 1:-1], med5, med[:, 1:-1])
    ok[:, 1:-1] = np.where(five[:, 1:-1], ok5, ok[:, 1:-1])
    inside = (idx + 1) < length[:, None]
    with np.errstate(invalid="ignore"):
        d2 = np.abs(a - 2 * b + c)
        usable = np.isfinite(d2) & inside
        sub = usable[:, ::DESPIKE_STRIDE]  # the noise from every 8th second difference (as the kernel)
        q = contact._row_quantile(np.where(sub, d2[:, ::DESPIKE_STRIDE], np.nan), 0.5)
        sigma = 1.4826 * q / math.sqrt(6.0)
        thr = np.maximum(DESPIKE_FACTOR * sigma, DESPIKE_FLOOR * 1e9)
        spike = ok & inside & (np.abs(b - med).astype(np.float64) > thr[:, None]) & (sub.sum(1) >= 8)[:, None]
    b[spike] = med[spike]
    return spike.sum(1)


def _background_end(x, free_end, S):
    """One past the last sample of each row's background region: the far half of the free part, or the samples
    more than ``background_region`` above the first deflection rise."""
    if S.background_region is None:
        return free_end // 2
    m = x.shape[1]
    x_rise = np.take_along_axis(x, np.clip(free_end, 0, m - 1)[:, None], 1)[:, 0]
    i_bg = (x - x_rise[:, None] > np.float32(S.background_region)).sum(1)
    return np.minimum(i_bg, free_end)


def _depth(x, y, res, S):
    """Depth z_p (nm), the contact index (the first hard-contact sample, by position) and the profile's
    sample range [lo, hi) of oriented rows, from the contact method's lines (compiled kernel, or numpy)."""
    n, m = x.shape
    if native.available():
        z = native.scratch("z", (n, m), np.float32)  # private: _chunk's callers never see it
        cidx, lo, hi = (np.empty(n, np.int64) for _ in range(3))
        c64 = [np.ascontiguousarray(res[k], np.float64) for k in
               ("position", "baseline_slope", "baseline_offset", "contact_slope", "contact_offset", "noise")]
        native.lib().nrm_depth(n, m, native.f32(x), native.f32(y), *c64,
                               np.ascontiguousarray(res["contact_start"], np.int64), S.top, z, cidx, lo, hi)
        return z, cidx, lo, hi
    xs = res["position"]
    bslope, boff = res["baseline_slope"], res["baseline_offset"]
    xs_f = np.where(np.isfinite(xs), xs, 0.0).astype(np.float32)
    z = (x - xs_f[:, None]) + (y - (boff.astype(np.float32)[:, None] + bslope.astype(np.float32)[:, None] * x))
    noise = res["noise"]
    thr = np.maximum(0.5 * noise, 0.01).astype(np.float32)
    # distance above the constant-compliance line, in z_p units (the layer lies above the line, hard
    # contact on it): hard contact begins where its 4-sample mean falls to half a noise standard deviation
    cs32 = res["contact_slope"].astype(np.float32)[:, None]
    gap = (y - (res["contact_offset"].astype(np.float32)[:, None] + cs32 * x)) / \
        (bslope.astype(np.float32)[:, None] - cs32)
    run = gap[:, :-3] + gap[:, 1:-2] + gap[:, 2:-1] + gap[:, 3:]
    # ... or, within 0.3 nm of the line, where it stops falling (the curvature of the Hertz contact
    # keeps noise-free data a few hundredths of a nm above the fitted line)
    step = np.abs(x[:, -1] - x[:, 0]) / max(m - 1, 1)
    flat = (gap[:, :-3] - gap[:, 3:]) <= np.float32(3 * 0.1) * step[:, None]
    reach = (run <= 4 * thr[:, None]) | ((run <= np.float32(4 * 0.3)) & flat)
    has = reach.any(1)
    first = np.argmax(reach, axis=1) if reach.shape[1] else np.zeros(n, np.int64)  # (ramps of < 4 samples)
    cidx = np.where(has, first, res["contact_start"])
    cidx = np.minimum(cidx, res["contact_start"] + 8)
    hi = np.maximum(cidx - 1, 0)  # one sample of margin before the hard contact
    # profile starts one sample above the internal grid's top
    above = (x - xs_f[:, None]) > np.float32(S.top + 1.0)
    lo = np.maximum(above.sum(1) - 1, 0)
    lo = np.minimum(lo, hi)
    return z, cidx, lo, hi


def _contact(x, y, valid, weighted_rows, S):
    """Run the contact method, with weights only for the rows that need them."""
    fn, params = S.contact.function, S.contact_params
    n = x.shape[0]
    if valid is None or not weighted_rows.any():
        return fn(x, y, None, **params)
    rows_w = np.flatnonzero(weighted_rows)
    rows_f = np.flatnonzero(~weighted_rows)
    xw = _ffill(x[rows_w], np.isfinite(x[rows_w]))
    yw = _ffill(y[rows_w], valid[rows_w])
    res_w = fn(xw, yw, valid[rows_w].astype(np.float32), **params)
    res_f = fn(x[rows_f], y[rows_f], None, **params) if rows_f.size else None
    out = {}
    for k, v in res_w.items():
        arr = np.empty(n, dtype=v.dtype)
        arr[rows_w] = v
        if res_f is not None:
            arr[rows_f] = res_f[k]
        out[k] = arr
    return out


_BG_PARTS = ("all", "first", "second")


def _background(X, Y, valid, start, stop, half):
    """Mean and noise of X, Y over the samples ``start <= j < stop`` of each row that are ``valid`` (None:
    all), and over its two parts ``j < half`` and ``j >= half``, and the least-squares lines of X and Y
    against the sample index over them (``trend``: complex ``slope`` per sample, the mean index ``jbar``,
    the noise ``sigma`` about the lines, per component).  The compiled kernel computes it in double
    precision; :func:`_background_numpy` is its reference."""
    if not native.available():
        j = np.arange(X.shape[1])[None, :]
        w = (j >= start[:, None]) & (j < stop[:, None])
        if valid is not None:
            w &= valid
        return _background_numpy(X, Y, w, j < half[:, None])
    n, m = X.shape
    out = np.empty((16, n))
    v = None if valid is None else np.ascontiguousarray(valid, bool).view(np.uint8)
    native.lib().nrm_background(n, m, native.f32(X), native.f32(Y), native.ptr(v), np.ascontiguousarray(start, np.int64),
                                np.ascontiguousarray(stop, np.int64), np.ascontiguousarray(half, np.int64), out)
    res = {}
    for p, key in enumerate(_BG_PARTS):
        res[key] = {"x": out[4 * p].astype(np.float32), "y": out[4 * p + 1].astype(np.float32),
                    "sigma": out[4 * p + 2], "n": out[4 * p + 3]}
    res["trend"] = {"slope": out[12] + 1j * out[13], "jbar": out[14], "sigma": out[15]}
    return res


def _background_numpy(X, Y, w, half):
    """Numpy reference of :func:`_background` with the boolean masks ``w`` and ``half``: float32 products
    over the columns the weights use, summed per row; the values are centred on their mean (a first pass)
    and the index on the middle column, for precision."""
    n, m = X.shape
    used = w.any(0)
    width = max(1, m - int(np.argmax(used[::-1]))) if used.any() else 1
    wf = w[:, :width].astype(np.float32)
    hf = wf * half[:, :width]
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.einsum("ij,kij->ki", wf, np.stack([X[:, :width], Y[:, :width]])) / wf.sum(1)
    x0, y0 = np.nan_to_num(centre)[:, :, None]
    v = np.empty((4, n, width), np.float32)
    np.subtract(X[:, :width], x0, out=v[0])
    np.subtract(Y[:, :width], y0, out=v[1])
    np.multiply(v[0], v[0], out=v[2])
    np.multiply(v[1], v[1], out=v[3])
    mid = np.float32(width // 2)
    jc = np.arange(width, dtype=np.float32) - mid
    wj = wf * jc
    sums_all = np.einsum("ij,kij->ki", wf, v).astype(np.float64)
    sums_first = np.einsum("ij,kij->ki", hf, v).astype(np.float64)
    s_jx, s_jy = np.einsum("ij,kij->ki", wj, v[:2]).astype(np.float64)
    n_all = wf.sum(1, dtype=np.float64)
    n_first = hf.sum(1, dtype=np.float64)
    s_j = wj.sum(1, dtype=np.float64)
    s_jj = np.einsum("ij,j->i", wj, jc).astype(np.float64)
    sums = {"all": (n_all, *sums_all), "first": (n_first, *sums_first)}
    sums["second"] = tuple(a - b for a, b in zip(sums["all"], sums["first"]))
    out = {}
    for key, (cnt, sx, sy, sxx, syy) in sums.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            mx, my = sx / cnt, sy / cnt
            vx = (sxx - sx * mx) / (cnt - 1)
            vy = (syy - sy * my) / (cnt - 1)
        out[key] = {"x": (mx + x0[:, 0]).astype(np.float32), "y": (my + y0[:, 0]).astype(np.float32),
                    "sigma": np.sqrt(np.maximum(0.5 * (vx + vy), 0.0)), "n": cnt}
    # lines against the sample index
    cnt, sx, sy, sxx, syy = sums["all"]
    with np.errstate(invalid="ignore", divide="ignore"):
        jbar = s_j / cnt
        cjj = s_jj - s_j * jbar
        bx = (s_jx - jbar * sx) / cjj
        by = (s_jy - jbar * sy) / cjj
        var = (np.maximum(sxx - sx * sx / cnt - bx * bx * cjj, 0.0)
               + np.maximum(syy - sy * sy / cnt - by * by * cjj, 0.0)) / (cnt - 2)
    out["trend"] = {"slope": np.nan_to_num(bx + 1j * by), "jbar": jbar + mid, "sigma": np.sqrt(0.5 * var)}
    return out


def _lag_correct(X, Y, valid, reverse, hi, S):
    """Correct the lock-in output-filter lag of oriented rows (see :func:`.moduli.undo_output_filter`).

    The filter runs in time: along the rows for approach ramps, backwards for the reversed retract ramps.
    The hard-contact samples (from ``hi`` on) are replaced by the straight continuation of the last profile
    samples first, so that the correction never carries the (usually clipped) hard-contact signal into the
    layer and its smoother does not bend the deepest samples.  Masked samples
    are filled from their neighbours and the samples within the filter's reach of them are returned as
    ``extra`` (to be masked)."""
    n, m = X.shape
    j = np.arange(m)[None, :]
    beyond = j >= hi[:, None]
    last_col = np.clip(hi - 1, 0, m - 1)[:, None]
    extra = None
    rows = np.zeros(0, np.int64)
    if valid is not None:
        bad = ~valid & ~beyond
        rows = np.flatnonzero(bad.any(1))
        if rows.size:
            reach = max(1, S.lag_samples)
            extra = np.zeros((n, m), bool)
            spread = bad[rows].copy()
            for s_ in range(1, reach + 1):
                spread[:, s_:] |= bad[rows, :-s_]
                spread[:, :-s_] |= bad[rows, s_:]
            extra[rows] = spread
    # X and Y stacked (rows n..2n-1 are Y): every step below treats both at once
    a = np.concatenate([X, Y]).astype(np.float32, copy=False)
    last_col = np.concatenate([last_col, last_col])
    beyond = np.concatenate([beyond, beyond])
    # continued as a straight line (the slope of the last four profile samples): the zero-phase smoother
    # of the correction then leaves the deepest samples unbiased (a constant continuation bends them)
    last_v = np.take_along_axis(a, last_col, 1)
    prev_v = np.take_along_axis(a, np.clip(last_col - 4, 0, m - 1), 1)
    slope = np.nan_to_num((last_v - prev_v) / np.float32(4))
    ahead = np.arange(m, dtype=np.float32)[None, :] - last_col.astype(np.float32)  # samples past the last
    np.copyto(a, last_v + slope * ahead, where=beyond)
    if rows.size:
        both = np.concatenate([rows, rows + n])
        a[both] = _ffill(a[both], np.concatenate([~bad[rows], ~bad[rows]]))
    reverse = np.concatenate([reverse, reverse])
    if reverse.any():
        a[reverse] = a[reverse, ::-1]
    a = moduli.undo_output_filter(a, S.sample_interval, S.time_constant, S.filter_slope)
    if reverse.any():
        a[reverse] = a[reverse, ::-1]
    return a[:n], a[n:], extra


def _to_output(a, S, out=None, scale=1.0):
    """Internal (falling) grid → the results' grid (rising z, step z_step) by linear interpolation, times
    ``scale`` (complex).

    The compiled kernel interpolates row by row; in numpy, the output points of one phase (k mod ratio)
    take consecutive internal points in reverse order with one weight, so each phase is two strided views
    of ``a`` (no gather), written into ``out`` (new when None)."""
    n = a.shape[0]
    if out is None:
        out = np.empty((n, S.n_z), a.dtype)
    if native.available() and a.dtype == np.complex64 and out.flags.c_contiguous:
        scale = complex(scale)
        native.lib().nrm_to_output(n, a.shape[1], np.ascontiguousarray(a), S.n_z, S.out_j0, S.out_w,
                                   scale.real, scale.imag, out)
        return out
    _to_output_numpy(a, S, out)
    if scale != 1.0:
        out *= np.complex64(scale)
    return out


def _to_output_numpy(a, S, out):
    ratio = max(1, int(round(S.step / S.z_step)))

    def rev(first, count):  # internal points first, first-1, ..., count of them
        stop = first - count
        return a[:, first:(stop if stop >= 0 else None):-1]

    for p in range(ratio):
        j0 = S.out_j0[p::ratio]
        if len(j0) == 0:
            continue
        if np.any(np.diff(j0) != -1):  # not the regular layout: gather
            w = S.out_w[p::ratio]
            out[:, p::ratio] = np.take(a, j0, axis=1) * (1 - w) + np.take(a, j0 + 1, axis=1) * w
            continue
        w = float(S.out_w[p])
        lower = rev(int(j0[0]), len(j0))
        dst = out[:, p::ratio]
        if w == 0:
            dst[...] = lower
        else:
            np.multiply(lower, np.float32(1 - w), out=dst)
            dst += rev(int(j0[0]) + 1, len(j0)) * np.float32(w)
    return out


# ================================================================================================ results
def _flag_texts(flags, ok):
    n = len(flags)
    text = np.full(n, "", dtype=object)
    counts_flag = {}
    counts_reject = {}
    for f in np.unique(flags):
        if f == 0:
            continue
        names = {REASONS[b] for b in REASONS if f & b}
        t = "; ".join(r for r in REASON_ORDER if r in names)
        sel = flags == f
        text[sel] = t
        for r in names:
            counts_flag[r] = counts_flag.get(r, 0) + int(sel.sum())
            counts_reject[r] = counts_reject.get(r, 0) + int((sel & ~ok).sum())
    counts = {"read": int(n), "accepted": int(ok.sum()), "rejected": int((~ok).sum()),
              "flagged": {r: counts_flag[r] for r in REASON_ORDER if r in counts_flag},
              "rejected_by_reason": {r: counts_reject[r] for r in REASON_ORDER if counts_reject.get(r)}}
    return text, counts


def _check_invols(per_ramp, ok, S, warn):
    """Warn when the constant-compliance slope is not -1 m/m (InvOLS inconsistent with the data)."""
    if not ok.any():
        return
    s = (per_ramp["contact_slope"] - per_ramp["baseline_slope"])[ok] * S.deflection_scale * 1e-9
    med = float(np.nanmedian(s))
    if math.isfinite(med) and abs(-med - 1) > 0.1:
        warn.append(f"the constant-compliance slope is {-med:.3f} m/m instead of 1 (median over accepted "
                    "ramps): InvOLS may be off by that factor; depths in soft layers scale with it")


def _assemble(ds, cal, S, options, coords, grouping, acc, per_ramp, contact_index, ok, flag_text, counts,
              g_interval, e_storage_out, e_loss_out, e_storage, e_loss, forces, warn, phase_info,
              potential_source, ci_method):
    z = np.arange(S.n_z) * S.z_step * 1e-9
    ramp_coords = {}
    for c in ("x", "y", "time", "potential", "source", "index", "direction"):
        if c in coords:
            attrs = dict(ds[c].attrs) if c in ds.coords else {}
            if c == "potential":
                attrs.setdefault("units", "V")
            ramp_coords[c] = ("ramp", coords[c], attrs)
    labels_int = statistics.interval_labels(S.intervals)
    out = {
        "contact_position": ("ramp", per_ramp["contact_position"],
                             {"units": "m", "long_name": "contact point d_contact (two-line intersection, piezo "
                                                         "coordinate)"}),
        "contact_uncertainty": ("ramp", per_ramp["contact_uncertainty"], {"units": "m", "long_name": "1 sigma"}),
        "ok": ("ramp", ok, {"long_name": "ramp accepted"}),
        "flag": ("ramp", flag_text, {"long_name": "reasons (rejected when ok is false, warnings otherwise)"}),
        "sei_thickness": ("ramp", per_ramp["sei_thickness"],
                          {"units": "m", "long_name": "SEI thickness (lateral response above the background)"}),
        "baseline_slope": ("ramp", per_ramp["baseline_slope"],
                           {"units": f"{ds['deflection'].attrs.get('units')}/m",
                            "long_name": "fitted baseline: deflection = baseline_offset + baseline_slope * piezo"}),
        "baseline_offset": ("ramp", per_ramp["baseline_offset"], {"units": ds["deflection"].attrs.get("units")}),
        "contact_slope": ("ramp", per_ramp["contact_slope"],
                          {"units": f"{ds['deflection'].attrs.get('units')}/m",
                           "long_name": "constant-compliance line: deflection = contact_offset + contact_slope * "
                                        "piezo"}),
        "contact_offset": ("ramp", per_ramp["contact_offset"], {"units": ds["deflection"].attrs.get("units")}),
        "contact_index": ("ramp", contact_index,
                          {"long_name": "sample (file order) where hard contact begins (approach) / ends "
                                        "(retract); samples beyond it are not used for the profile"}),
        "deflection_noise": ("ramp", per_ramp["deflection_noise"], {"units": "m", "long_name": "per sample, rms"}),
        "G_abs_interval": (("ramp", "interval"), g_interval,
                           {"units": "Pa", "long_name": "mean |G*| of each ramp over each depth interval"}),
    }
    if e_storage_out is not None:
        out["E_storage"] = (("ramp", "z"), e_storage_out, {"units": "Pa", "long_name": "storage modulus E'"})
        out["E_loss"] = (("ramp", "z"), e_loss_out, {"units": "Pa", "long_name": "loss modulus E''"})
    if forces is not None:
        out["F_storage"] = (("ramp", "z"), forces.real.astype(np.float32),
                            {"units": "N", "long_name": "lateral force F' (background removed)"})
        out["F_loss"] = (("ramp", "z"), forces.imag.astype(np.float32),
                         {"units": "N", "long_name": "lateral force F'' (background removed)"})
    crd = dict(ramp_coords)
    crd["z"] = ("z", z, {"units": "m", "long_name": "tip-electrode distance z_p"})
    crd["interval"] = ("interval", np.array(labels_int, dtype=object))
    crd["interval_low"] = ("interval", np.array([w[0] for w in S.intervals]), {"units": "m"})
    crd["interval_high"] = ("interval", np.array([w[1] for w in S.intervals]), {"units": "m"})
    shear = moduli.shear_factor(S.poisson)
    omega = 2 * math.pi * S.frequency
    window_labels = []
    if grouping is not None:
        member = grouping["member"] & ok[None, :]
        window_labels = list(grouping["labels"])
        crd["window"] = ("window", np.array(window_labels, dtype=object))
        crd["window_low"] = ("window", grouping["low"], {"units": "V" if grouping["key"] == "potential" else ""})
        crd["window_high"] = ("window", grouping["high"], {"units": "V" if grouping["key"] == "potential" else ""})
        if ci_method == "bootstrap":
            seed = int(options.get("seed") or 0)
            nb = int(options.get("bootstrap_samples") or 1000)
            gabs = np.hypot(e_storage, e_loss) * np.float32(shear)
            stats_e = {
                "E_storage": statistics.bootstrap_interval(e_storage, member, nb, seed=seed),
                "E_loss": statistics.bootstrap_interval(e_loss, member, nb, seed=seed + 1),
                "G_abs": statistics.bootstrap_interval(gabs, member, nb, seed=seed + 2),
            }
        else:
            stats_e = {q: acc.t_stats(q) for q in ("E_storage", "E_loss", "G_abs")}
        derived = {
            "E_storage": (stats_e["E_storage"], 1.0, "Pa"), "E_loss": (stats_e["E_loss"], 1.0, "Pa"),
            "G_storage": (stats_e["E_storage"], shear, "Pa"), "G_loss": (stats_e["E_loss"], shear, "Pa"),
            "G_abs": (stats_e["G_abs"], 1.0, "Pa"), "viscosity": (stats_e["E_loss"], shear / omega, "Pa s"),
        }
        for q, ((mean, lo, hi, cnt), k, unit) in derived.items():
            out[f"{q}_mean"] = (("window", "z"), mean * k, {"units": unit, "long_name": f"window mean of {q}"})
            out[f"{q}_ci_low"] = (("window", "z"), lo * k, {"units": unit, "long_name": f"95 % CI of the mean of {q}"})
            out[f"{q}_ci_high"] = (("window", "z"), hi * k, {"units": unit})
            out[f"{q}_n"] = (("window", "z"), cnt.astype(np.int64), {"long_name": "ramps contributing"})
        sei = per_ramp["sei_thickness"]
        if ci_method == "bootstrap":
            m_, l_, h_, c_ = statistics.bootstrap_interval(sei, member, int(options.get("bootstrap_samples") or 1000),
                                                           seed=int(options.get("seed") or 0) + 3)
            m_, l_, h_, c_ = m_[:, 0], l_[:, 0], h_[:, 0], c_[:, 0]
        else:
            fin = np.isfinite(sei)
            hm = member.astype(np.float64)
            s0 = np.where(fin, sei, 0.0)
            m_, l_, h_, c_ = statistics.t_interval(hm @ fin, hm @ s0, hm @ (s0 * s0))
        out["sei_thickness_mean"] = ("window", m_, {"units": "m"})
        out["sei_thickness_ci_low"] = ("window", l_, {"units": "m"})
        out["sei_thickness_ci_high"] = ("window", h_, {"units": "m"})
        out["sei_thickness_n"] = ("window", c_.astype(np.int64), {})
        if e_storage is not None:
            g, dens, bw = statistics.density_from_profiles(e_storage, e_loss, shear, member)
        else:
            g, dens, bw = acc.density()
        crd["g"] = ("g", g, {"units": "log10(Pa)", "long_name": "log10 |G*|"})
        out["G_abs_kde"] = (("window", "z", "g"), dens,
                            {"units": "1/log10(Pa)", "long_name": "kernel density of log10 |G*| per window and depth",
                             "bandwidth": "Scott 1.06 sd n^-1/5, binned Gaussian KDE"})
        empty = [lab for lab, c in zip(window_labels, member.sum(1)) if c == 0]
        if empty:
            warn.append(f"window(s) with no accepted ramp: {', '.join(empty)}")
    res = xr.Dataset(out, coords=crd)
    attrs = {
        "nrm_version": __version__,
        "title": "1D-NRM results",
        "calibration": cal.to_toml(with_defaults=True),
        "calibration_sources": dict(cal.sources),
        "warnings": list(warn),
        "counts": counts,
        "source_files": list(options.get("source_files") or _sources(ds)),
        "r_g": float(S.r_g),
        "poisson": float(S.poisson),
        "dither_frequency": float(S.frequency),
        "dither_amplitude": float(S.amplitude),
        "window_labels": window_labels,
        "group_by": grouping["key"] if grouping is not None else "",
        "ci_method": ci_method,
        "contact_method": S.contact.name,
        "derivative_method": S.derivative.name,
        "derivative_window": S.window * 1e-9,
        "tip_compliance_correction": bool(S.lateral_stiffness),
        "time_constant_correction": (f"tau = {S.time_constant:g} s, {S.filter_slope} dB/oct"
                                     if S.time_constant > 0 else "none"),
        "potential_source": potential_source,
        "profiles": "kept" if e_storage_out is not None else "omitted",
        "sei_thickness_criterion": f"|F* - background| > {thickness.THRESHOLD} sigma over "
                                   f"{thickness.PERSISTENCE * 1e9:g} nm, extrapolated to zero",
        **phase_info,
    }
    res.attrs = attrs
    return res


def _sources(ds):
    if "source" in ds.coords:
        vals = [v for v in dict.fromkeys(np.asarray(ds["source"].values).astype(str).tolist()) if v]
        if len(vals) <= 100:
            return vals
    src = ds.attrs.get("source_file")
    return [str(src)] if src else []
