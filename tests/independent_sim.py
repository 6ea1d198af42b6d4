"""A second, deliberately different forward model of a 1D-NRM measurement, written from DESIGN.md §1 and
§3 alone (it does not import ``nrm_plugins.simulate``), to test that the pipeline is not tuned to our own
simulator.

What differs from ``nrm_plugins.simulate``
------------------------------------------
* **Layer profiles**: gradual moduli (log-linear in depth, with a smooth logistic top), a single
  homogeneous layer, a very thin (3 nm) stiff layer, a thick (≈60 nm) layer with a soft graded outer part
  on a stiff inner part, or a step bilayer.  Each location multiplies the moduli by a lognormal factor and
  the thickness by a normal one.
* **Normal force in the layer**: ``F_n(z) = F_0 ((h − z)/h)²`` (0 ≤ z < h), with ``F_0`` proportional to
  the integral of the storage modulus; hard contact is a linear electrode spring ``k_s`` (no Hertz), so
  the noise-free two-line intersection is exactly ``c + F_0/k_s`` (``c``: electrode surface).  The
  cantilever's equilibrium ``k_c δ = F_n(x + δ)`` is solved by bisection.
* **Lateral force**: ``F*(z_p) = 4 r_g A_l ∫_{z_p}^∞ E*(z) dz`` by cumulative trapezoids on a 0.01 nm grid
  (not closed forms), plus a steep contact stiffness in hard contact, a constant complex liquid background
  per ramp and an optional weak hydrodynamic term ``i c_h R/(z_p + R)`` that varies with distance.
* **Baseline artefacts**: tilt, curvature and an optical-interference sine of the deflection against the
  piezo, linear drift in time, detector offset, ADC quantization and ±10 V clipping of every recorded
  channel; outliers (spikes) in the deflection.
* **Ramps**: per-ramp start heights (free baseline of 100–400 nm, some of only 15–20 nm), per-ramp hard
  contact travel, µm roughness and a tilted sample plane; approach, retract or both.
* **Lock-in**: cascaded first-order output filters as exponential smoothing updated ``lockin_updates``
  times per recorded sample (8: close to a DSP lock-in; 1: smoothing at the sample rate), phase anywhere
  in −180..180°, offsets, rms or peak, analog outputs scaled by ``sensitivity/expand`` (``signal =
  "output"``) or input volts (``"input"``), full-scale use from 1 % to >100 %.

Defect labels come from the data, not only from the plan: a ramp whose layer response itself (before the
lock-in filter) is beyond the output rail more than 3 nm above the electrode is "clipped"; one clipped only
closer to the electrode is "either" (trimming or rejecting are both acceptable).

Truth (per ramp): ``contact_ideal`` (m, piezo coordinate of the noise-free two-line intersection with the
baseline artefacts' local tangent), ``surface`` (m), ``sei_thickness`` (m, where the storage modulus drops
to half its value below the top), ``defect`` ("" for a good ramp), ``window_index``, and per depth ``z``
(0–100 nm, 0.1 nm) the exact local ``E_storage``, ``E_loss`` (Pa); per ramp ``boundaries`` (m, every depth
where the modulus changes abruptly, NaN-padded) for "away from boundaries" comparisons.

>>> sim = simulate(Scenario(profile="exponential"), seed=1)
>>> sim.model, sim.calibration, sim.truth      # common model, calibration dict, truth Dataset
>>> paths = sim.write(tmp_path, fmt="3ds")     # sim.3ds, calibration.toml, truth.nc
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import signal as sps

WINDOWS = [[1.5, 2.0], [1.0, 1.5], [0.5, 1.0], [0.005, 0.5]]
PROFILES = ("exponential", "single", "thin", "thick", "bilayer")
DEFECTS = ("nan_ramp", "nan_run", "no_contact", "starts_in_contact", "clipped", "short_ramp")
Z_GRID = np.round(np.arange(0, 1001) * 0.1, 6) * 1e-9  # the truth's depth grid (m)
ADC_LEVELS = 2 ** 16  # recording ADC over ±ADC_RANGE
ADC_RANGE = 10.0
#: truth label of a ramp that may be accepted or rejected (e.g. clipped only at the deepest nm)
TOLERATED = "either"


@dataclass
class Scenario:
    """Everything that defines one simulated file (SI units)."""

    name: str = "custom"
    profile: str = "exponential"
    locations_per_window: int = 40
    windows: list = field(default_factory=lambda: [list(w) for w in WINDOWS])
    n_samples: int = 1024
    direction: str = "approach"  # approach, retract, both
    # cantilever and optics
    spring_constant: float = 0.5
    invols: float = 60e-9  # true InvOLS (m/V)
    invols_error: float = 0.0  # relative error of the calibrated InvOLS
    electrode_stiffness: float = 200.0  # k_s (N/m)
    normal_coupling: float = 2.5e-9  # F_0 = this × ∫E' dz (m)
    # ramp geometry
    free_range: tuple = (100e-9, 400e-9)  # free travel above the SEI top, per ramp
    short_free_fraction: float = 0.0  # fraction of ramps with only 15–20 nm of free travel
    contact_range: tuple = (25e-9, 60e-9)  # piezo travel beyond the surface
    roughness: float = 1e-6  # rms electrode height between locations (m)
    plane_tilt: float = 0.02  # sample plane slope (m/m) over the grid
    grid_step: float = 50e-9
    ramp_duration: tuple = (0.5, 1.0)  # s
    # deflection artefacts (deflection metres unless said)
    deflection_noise: float = 0.05e-9
    tilt: float = 0.03  # |baseline slope| up to this (m/m)
    curvature: float = 0.3e-9  # sagitta of a parabola over the ramp (m)
    interference: float = 0.2e-9  # amplitude of the sine against the piezo (m)
    interference_period: float = 310e-9
    drift: float = 2e-9  # deflection drift over one ramp, up to (m)
    deflection_offset: float = 0.5  # V, detector offset (per file, ±)
    deflection_bias: float = 0.0  # V, a fixed detector offset (e.g. to saturate the photodiode in hard contact)
    spikes: float = 0.0  # probability of an outlier spike per sample
    # lateral
    dither_amplitude: float = 1.0e-9
    dither_frequency: float = 1370.0
    torsion_sensitivity: float = 2.5e-3
    torsional_stiffness: float = 1.3e-9
    tip_length: float = 1.2e-5
    r_g: float = 1.25
    poisson: float = 0.5
    contact_lateral: float = 3e3  # lateral stiffness per sqrt(m) of indentation in hard contact (N/m^1.5 × 1e-?)
    background: float = 0.1  # liquid background, relative to the largest layer force
    hydrodynamic: float = 0.0  # c_h relative to the largest layer force
    hydrodynamic_radius: float = 30e-9
    # lock-in
    signal: str = "output"
    amplitude: str = "rms"
    expand: int = 1
    phase_deg: float = 12.0
    offset: tuple = (0.02, -0.03)  # V, recorded units
    full_scale: float = 0.3  # median largest layer response / full scale (output)
    time_constant_samples: float = 0.0  # lock-in τ in sample intervals (0: no filter)
    filter_slope: int = 12
    declare_time_constant: bool = True
    lockin_updates: int = 8  # filter updates per recorded sample (1: exponential smoothing at the sample rate)
    input_noise: float = 0.001  # input-referred lateral noise, relative to the median largest response
    output_noise: float = 0.3e-3  # V on the analog outputs
    lateral_drift: float = 0.0  # drift of the outputs over one ramp, relative to the largest layer response
    clip_level: float = 10.0  # V, recorded channels saturate here (Nanonis inputs: 10 V)
    lateral_compliance: bool = False  # finite k_lat = k_t/l_t² (and the calibration asks for the correction)
    defects: dict = field(default_factory=dict)

    def with_(self, **kw) -> "Scenario":
        return replace(self, **kw)


# ================================================================================================ profiles
def _logistic(z, top, width):
    """1 below ``top``, 0 above, smooth over ``width``."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp((z - top) / width))


def _profile_params(sc: Scenario, w_index, rng):
    """Per-ramp layer parameters for the scenario's profile family (window-dependent thickness)."""
    n = len(w_index)
    k = np.asarray(w_index)
    scale = np.exp(0.1 * rng.standard_normal(n))  # per-location modulus factor
    grow = np.clip(1 + 0.04 * rng.standard_normal(n), 0.85, 1.15)  # per-location thickness factor
    p = {"scale": scale, "family": sc.profile}
    if sc.profile == "exponential":
        p["h"] = np.array([12, 18, 24, 30, 30, 30])[k] * 1e-9 * grow
        p["e_bottom"], p["e_top"], p["tan_bottom"], p["tan_top"], p["width"] = 20e6, 0.5e6, 0.05, 0.3, 0.3e-9
    elif sc.profile == "single":
        p["h"] = np.array([10, 15, 20, 25, 25, 25])[k] * 1e-9 * grow
        p["e"], p["tan"], p["width"] = 3e6, 0.25, 0.2e-9
    elif sc.profile == "thin":
        p["h"] = 3e-9 * grow
        p["e"], p["tan"], p["width"] = 30e6, 0.1, 0.1e-9
    elif sc.profile == "thick":
        p["h"] = np.array([45, 52, 60, 60, 60, 60])[k] * 1e-9 * grow
        p["inner"] = 15e-9 * grow
        p["e_inner"], p["tan_inner"], p["e_outer_bottom"], p["e_outer_top"], p["tan_outer"] = 30e6, 0.08, 3e6, 0.3e6, 0.3
        p["width"], p["inner_width"] = 0.4e-9, 0.5e-9
    elif sc.profile == "bilayer":
        p["h"] = np.array([15, 20, 25, 30, 30, 30])[k] * 1e-9 * grow
        p["inner"] = 8e-9 * grow
        p["e_inner"], p["tan_inner"], p["e_outer"], p["tan_outer"], p["width"] = 60e6, 0.05, 1e6, 0.4, 0.2e-9
    else:
        raise ValueError(f"profile {sc.profile!r}: one of {PROFILES}")
    return p


def moduli(z, p, rows=slice(None)):
    """Exact local E', E'' (Pa) at depths ``z`` (m, (ramps, nz) or (nz,)) for the ramps ``rows``."""
    def col(a):
        a = np.asarray(a)
        return a[rows][:, None] if a.ndim else a

    z = np.asarray(z, np.float64)
    h, s, w = col(p["h"]), col(p["scale"]), p["width"]
    zz = np.maximum(z, 0.0)
    f = p["family"]
    if f == "exponential":
        frac = np.clip(zz / h, 0, 1.5)
        e1 = p["e_bottom"] * (p["e_top"] / p["e_bottom"]) ** frac
        tan = p["tan_bottom"] + (p["tan_top"] - p["tan_bottom"]) * np.clip(frac, 0, 1)
    elif f in ("single", "thin"):
        e1 = np.full(np.broadcast_shapes(zz.shape, np.shape(h)), p["e"])
        tan = p["tan"]
    elif f == "thick":
        inner = col(p["inner"])
        frac = np.clip((zz - inner) / (h - inner), 0, 1)
        outer = p["e_outer_bottom"] * (p["e_outer_top"] / p["e_outer_bottom"]) ** frac
        a = _logistic(zz, inner, p["inner_width"])
        e1 = a * p["e_inner"] + (1 - a) * outer
        tan = (a * p["e_inner"] * p["tan_inner"] + (1 - a) * outer * p["tan_outer"]) / e1
    else:  # bilayer
        inner = col(p["inner"])
        a = _logistic(zz, inner, w)
        e1 = a * p["e_inner"] + (1 - a) * p["e_outer"]
        tan = (a * p["e_inner"] * p["tan_inner"] + (1 - a) * p["e_outer"] * p["tan_outer"]) / e1
    e1 = e1 * s * _logistic(zz, h, w)
    return e1, e1 * tan


def boundaries(p):
    """(ramps, k) depths (m) of every abrupt change of the moduli (the top, inner boundaries)."""
    out = [np.asarray(p["h"])]
    if p["family"] in ("thick", "bilayer"):
        out.append(np.asarray(p["inner"]))
    return np.stack(out, 1)


# ================================================================================================ physics
def _integral_table(p, z_top):
    """Cumulative ∫_z^∞ E* dz on a 0.01 nm grid (ramps, nf), trapezoids; and the grid step."""
    dz = 0.01e-9
    zf = np.arange(0.0, z_top + dz, dz)
    e1, e2 = moduli(zf[None, :], p)
    e = e1 + 1j * e2
    seg = 0.5 * (e[:, 1:] + e[:, :-1]) * dz
    tail = np.zeros(e.shape, complex)
    tail[:, :-1] = np.cumsum(seg[:, ::-1], axis=1)[:, ::-1]
    return tail, dz


def _lookup(table, dz, z):
    """Linear interpolation of the per-ramp table at z (m) ≥ 0; 0 beyond the table."""
    n, nf = table.shape
    pos = np.clip(z / dz, 0, nf - 1 - 1e-9)
    i = np.floor(pos).astype(np.int64)
    t = pos - i
    rows = np.arange(n)[:, None]
    v = table[rows, i] * (1 - t) + table[rows, np.minimum(i + 1, nf - 1)] * t
    return np.where(z / dz > nf - 1, 0.0, v)


def _solve_deflection(x, force0, h, k_c, k_s):
    """δ with k_c δ = F(x + δ): F(z) = F0 ((h−z)/h)² for 0 ≤ z < h, 0 above, F0 + k_s(−z) below 0."""
    def force(z):
        inside = np.clip((h - z) / h, 0, 1)
        return np.where(z >= 0, force0 * inside ** 2, force0 + k_s * (-z))

    lo = np.zeros_like(x)
    hi = np.maximum(-x, 0) + force0 / k_c + 1e-12
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        g = k_c * mid - force(x + mid)
        up = g > 0
        hi = np.where(up, mid, hi)
        lo = np.where(up, lo, mid)
    return 0.5 * (lo + hi)


def _zoh_filter(values, a, stages):
    """Cascaded y[n] = a y[n−1] + (1−a) x[n] along axis 1, started in steady state."""
    out = values
    for _ in range(stages):
        zi = sps.lfilter_zi([1 - a], [1, -a])[None, :] * out[:, :1]
        out, _ = sps.lfilter([1 - a], [1, -a], out, axis=1, zi=zi)
    return out


def _lockin_filter(values, tau_samples, stages, internal=1):
    """The lock-in's output filter along axis 1 (time): exponential smoothing at ``internal`` updates per
    recorded sample (1: at the recording rate; a DSP lock-in updates far faster, ~8+ approximates that),
    the input linearly interpolated between recorded samples."""
    if internal <= 1:
        return _zoh_filter(values, math.exp(-1.0 / tau_samples), stages)
    n, m = values.shape
    fine_t = np.arange((m - 1) * internal + 1) / internal
    fine = np.empty((n, fine_t.size))
    i0 = np.minimum(np.floor(fine_t).astype(int), m - 2)
    t = fine_t - i0
    fine[:] = values[:, i0] * (1 - t) + values[:, i0 + 1] * t
    out = _zoh_filter(fine, math.exp(-1.0 / (tau_samples * internal)), stages)
    return out[:, ::internal]


def _adc(v, clip):
    """Quantize to the recording ADC and clip at ±clip (V)."""
    lsb = 2 * ADC_RANGE / ADC_LEVELS
    return np.clip(np.round(v / lsb) * lsb, -clip, clip)


class Simulation:
    """``model`` (common-model Dataset), ``calibration`` (dict of TOML sections), ``truth`` (Dataset)."""

    def __init__(self, model, calibration, truth, scenario):
        self.model, self.calibration, self.truth, self.scenario = model, calibration, truth, scenario

    def write(self, folder, fmt: str = "3ds", name: str = "sim", foreign: bool = False) -> dict:
        """Write the data (``fmt`` "3ds" through ``nrm.save`` or "nc"), ``calibration.toml`` and ``truth.nc``.

        :param foreign: strip the NRM>Roles header entry of a .3ds (as a file from the instrument would
            be) and name the channels in the calibration's ``[channels]`` table instead.
        """
        import nrm_plugins as nrm

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = folder / f"{name}.{fmt}"
        nrm.save(self.model, data)
        cal = {k: dict(v) for k, v in self.calibration.items()}
        if foreign and fmt == "3ds":
            raw = data.read_bytes()
            end = raw.index(b":HEADER_END:")
            head = b"\r\n".join(line for line in raw[:end].split(b"\r\n") if not line.startswith(b"NRM>Roles"))
            data.write_bytes(head + raw[end:])
            cal["channels"] = {r: self.model[r].attrs["long_name"] for r in ("deflection", "lateral_x", "lateral_y")}
        toml = folder / "calibration.toml"
        toml.write_text(to_toml(cal), encoding="utf-8")
        truth = folder / "truth.nc"
        self.truth.to_netcdf(truth)
        return {"data": data, "calibration": toml, "truth": truth}


def to_toml(cal: dict) -> str:
    """A tiny TOML writer (numbers, text, bools, lists) — independent of nrm_plugins.calibration."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(float(v)) if not isinstance(v, int) else str(v)

    lines = []
    for sec, table in cal.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {val(v)}" for k, v in table.items()]
        lines.append("")
    return "\n".join(lines)


# ================================================================================================ simulate
def simulate(sc: Scenario, seed: int = 0) -> Simulation:
    """Simulate the scenario (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_win = len(sc.windows)
    n_loc = sc.locations_per_window * n_win
    per_loc = 2 if sc.direction == "both" else 1
    n = n_loc * per_loc
    m = sc.n_samples
    loc = np.repeat(np.arange(n_loc), per_loc)
    w_loc = np.repeat(np.arange(n_win), sc.locations_per_window)
    w_index = w_loc[loc]
    if sc.direction == "both":
        direction = np.tile(np.array(["approach", "retract"], dtype=object), n_loc)
    else:
        direction = np.full(n, sc.direction, dtype=object)

    # ---- per-location geometry and layers (the two ramps of a location share them)
    side = int(math.ceil(math.sqrt(sc.locations_per_window)))
    gx = (np.arange(n_loc) % sc.locations_per_window) % side * sc.grid_step
    gy = (np.arange(n_loc) % sc.locations_per_window) // side * sc.grid_step
    surface_loc = sc.roughness * rng.standard_normal(n_loc) + sc.plane_tilt * (gx + 0.5 * gy) + 2e-6
    p_loc = _profile_params(sc, w_loc, rng)
    p = {k: (np.asarray(v)[loc] if np.ndim(v) else v) for k, v in p_loc.items()}
    free_loc = rng.uniform(*sc.free_range, n_loc)
    short = rng.random(n_loc) < sc.short_free_fraction
    free_loc[short] = rng.uniform(15e-9, 20e-9, short.sum())
    cdepth_loc = rng.uniform(*sc.contact_range, n_loc)
    surface, free, cdepth = surface_loc[loc], free_loc[loc], cdepth_loc[loc]
    defect = np.full(n, "", dtype=object)
    planned = _plan_defects(sc.defects, n, rng)
    if sc.signal == "input":
        planned[planned == "clipped"] = ""  # input volts (internal demodulator): no analog rail to sit on
    # geometry defects change the ramp's extent
    for i in np.flatnonzero(planned == "no_contact"):
        cdepth[i] = -rng.uniform(0.5, 0.9) * p["h"][i]  # stops inside the layer
    for i in np.flatnonzero(planned == "starts_in_contact"):
        free[i] = -rng.uniform(0.6, 1.0) * p["h"][i] - rng.uniform(0, 10e-9)  # starts in the layer or below
    top = surface + p["h"]
    start = top + free
    end = surface - cdepth
    span = start - end
    u = np.linspace(0.0, 1.0, m)[None, :]
    d_app = start[:, None] - span[:, None] * u  # approach: far → near
    retract = direction == "retract"
    d_s = np.where(retract[:, None], d_app[:, ::-1], d_app)
    duration = np.full(n, rng.uniform(*sc.ramp_duration))  # one sample interval per file (as an instrument)
    dt = duration / (m - 1)
    t_in = u * duration[:, None]

    # ---- normal
    k_c = sc.spring_constant
    z_top = float(np.max(p["h"])) + 12 * p["width"] + 1e-9
    table, dzf = _integral_table(p, z_top)
    force0 = sc.normal_coupling * table[:, 0].real
    x = d_s - surface[:, None]
    delta = _solve_deflection(x, force0[:, None], p["h"][:, None], k_c, sc.electrode_stiffness)
    z_p = x + delta
    contact_ideal = surface + force0 / sc.electrode_stiffness

    # deflection artefacts (functions of the piezo position and of time)
    tilt = rng.uniform(-sc.tilt, sc.tilt, n)
    curv = rng.uniform(-1, 1, n) * sc.curvature
    phi0 = rng.uniform(0, 2 * np.pi, n)
    drift = rng.uniform(-1, 1, n) * sc.drift
    rel = (d_s - end[:, None]) / span[:, None]
    art = (tilt[:, None] * (d_s - end[:, None]) + curv[:, None] * 4 * (rel - 0.5) ** 2
           + sc.interference * np.sin(2 * np.pi * d_s / sc.interference_period + phi0[:, None])
           + drift[:, None] * t_in / duration[:, None])
    noise_d = sc.deflection_noise * rng.standard_normal((n, m))
    if sc.spikes:
        hit = rng.random((n, m)) < sc.spikes
        noise_d += hit * rng.choice([-1, 1], (n, m)) * rng.uniform(2e-9, 6e-9, (n, m))
    defl_offset = rng.uniform(-1, 1) * sc.deflection_offset + sc.deflection_bias
    deflection = _adc((delta + art + noise_d) / sc.invols + defl_offset, sc.clip_level)

    # ---- lateral
    A = sc.dither_amplitude
    K = 4 * sc.r_g * _lookup(table, dzf, np.maximum(z_p, 0.0))
    indent = np.maximum(-z_p, 0.0)
    K = K + sc.contact_lateral * np.sqrt(indent * 1e9) * (1 + 0.05j)
    if sc.lateral_compliance:
        k_lat = sc.torsional_stiffness / sc.tip_length ** 2
        F = A * K / (1 + K / k_lat)
    else:
        F = A * K
    f_layer = np.abs(4 * sc.r_g * A * table[:, 0])  # largest layer force per ramp
    f_ref = float(np.median(f_layer))
    bg = sc.background * f_ref * np.exp(1j * rng.uniform(0, 2 * np.pi)) * (1 + 0.05 * rng.standard_normal(n))
    F = F + bg[:, None]
    if sc.hydrodynamic:
        R = sc.hydrodynamic_radius
        F = F + 1j * sc.hydrodynamic * f_ref * R / (np.maximum(z_p, 0.0) + R)
    theta = F * sc.tip_length / sc.torsional_stiffness
    v_peak = theta / sc.torsion_sensitivity  # input volts, zero-to-peak
    v_ref = f_ref * sc.tip_length / sc.torsional_stiffness / sc.torsion_sensitivity
    v_noise = sc.input_noise * v_ref * (rng.standard_normal((n, m)) + 1j * rng.standard_normal((n, m))) / math.sqrt(2)
    v = (v_peak + v_noise) * np.exp(1j * math.radians(sc.phase_deg))
    if sc.amplitude == "rms":
        v = v / math.sqrt(2)
    v_unfiltered = v
    if sc.time_constant_samples > 0:
        # the filter runs in time: along the rows as recorded (approach and retract alike)
        stages = sc.filter_slope // 6
        v = (_lockin_filter(v.real, sc.time_constant_samples, stages, sc.lockin_updates)
             + 1j * _lockin_filter(v.imag, sc.time_constant_samples, stages, sc.lockin_updates))
    sensitivity = None
    if sc.signal == "output":
        # the median largest layer response (plus background) uses `full_scale` of the 10 V outputs
        peak_layer = np.abs((v_ref * (1 + sc.background)) / (math.sqrt(2) if sc.amplitude == "rms" else 1))
        sensitivity = float(peak_layer * sc.expand / sc.full_scale)
        out = 10.0 * sc.expand * v / sensitivity
        out = out + complex(*sc.offset) + sc.output_noise * (rng.standard_normal((n, m)) + 1j * rng.standard_normal((n, m)))
        drift_v = sc.lateral_drift * 10.0 * sc.full_scale  # relative to the (median) largest layer response
        out = out + drift_v * (t_in / duration[:, None]) * np.exp(1j * rng.uniform(0, 2 * np.pi, n))[:, None]
        lx, ly = _adc(out.real, sc.clip_level), _adc(out.imag, sc.clip_level)
    else:
        out = v + complex(*sc.offset) * 1e-3
        lx, ly = out.real, out.imag

    # ---- which ramps are defective in fact (the noise-free data decide, not only the plan)
    in_layer = (z_p > 0.05e-9) & (z_p < p["h"][:, None])
    if sc.signal == "output":
        # the layer response itself beyond the rail (before the lock-in filter: the filter's memory of a
        # clipped hard contact on a retract is the pipeline's to trim, not a defect of the ramp)
        u = 10.0 * sc.expand * v_unfiltered / sensitivity + complex(*sc.offset)
        beyond = (np.abs(u.real) >= sc.clip_level) | (np.abs(u.imag) >= sc.clip_level)
        # hidden: beyond the rail more than 3 nm above the electrode (a pipeline may trim a few clipped
        # samples at the hard-contact onset instead of rejecting the ramp)
        clipped_layer = (beyond & in_layer & (z_p > 3e-9)).any(1)
        clipped_edge = (beyond & in_layer).any(1) & ~clipped_layer
    else:
        clipped_layer = clipped_edge = np.zeros(n, bool)
    defect[planned != ""] = planned[planned != ""]
    defect[(defect == "") & clipped_layer] = "clipped"
    # clipped only within 3 nm of the electrode: trimming those samples or rejecting the ramp are both fine
    defect[(defect == "") & clipped_edge] = TOLERATED
    for i in np.flatnonzero(planned == "clipped"):
        # a lock-in overload inside the layer: the outputs stick at the clip level over part of the layer
        sel = in_layer[i] & (z_p[i] < 0.7 * p["h"][i])
        lx[i, sel] = np.sign(lx[i, sel] + 1e-30) * sc.clip_level
    pfloat = np.array(d_s, np.float64)
    for i in np.flatnonzero(planned == "nan_ramp"):
        deflection[i] = lx[i] = ly[i] = np.nan
    for i in np.flatnonzero(planned == "nan_run"):
        sel = np.flatnonzero(in_layer[i])
        if sel.size:
            a = sel[len(sel) // 3]
            deflection[i, a:a + max(3, len(sel) // 4)] = np.nan
            lx[i, a:a + max(3, len(sel) // 4)] = np.nan
    for i in np.flatnonzero(planned == "short_ramp"):
        keep = m // 6  # the recording stopped early: only free liquid, NaN-padded
        idx = slice(keep, None) if not retract[i] else slice(0, m - keep)
        deflection[i, idx] = lx[i, idx] = ly[i, idx] = np.nan

    # ---- time, potential
    n_loc_w = sc.locations_per_window
    pot = np.empty(n_loc)
    for k, (lo_, hi_) in enumerate(sc.windows):
        pot[w_loc == k] = np.linspace(hi_ - 0.02 * (hi_ - lo_), lo_ + 0.02 * (hi_ - lo_), n_loc_w)
    potential = pot[loc]
    time = np.cumsum(duration) - duration[0]

    # ---- the model
    import nrm_plugins as nrm  # noqa: F401  (only for the writer / reader; the physics above is our own)
    from nrm_plugins.model import ramps_dataset

    names = {"piezo": "Z (m)", "deflection": "Input 2 (V)", "lateral_x": "Input 3 (V)", "lateral_y": "Input 4 (V)"}
    if sc.signal == "input":
        names.update(lateral_x="LI Demod 1 X (V)", lateral_y="LI Demod 1 Y (V)")
    channels = {
        "piezo": (pfloat, "m", names["piezo"]),
        "deflection": (deflection.astype(np.float32), "V", names["deflection"]),
        "lateral_x": (np.asarray(lx, np.float32), "V", names["lateral_x"]),
        "lateral_y": (np.asarray(ly, np.float32), "V", names["lateral_y"]),
    }
    coords = {"x": gx[loc], "y": gy[loc], "time": time, "potential": potential,
              "source": np.full(n, "independent", dtype=object), "index": np.arange(n), "direction": direction}
    attrs = {"lockin_frequency": sc.dither_frequency, "spring_constant": k_c, "sample_interval": float(np.median(dt))}
    model = ramps_dataset(channels, coords, attrs)

    # ---- calibration (DESIGN.md §3)
    lockin = {"signal": sc.signal, "phase": float(sc.phase_deg), "amplitude": sc.amplitude,
              "offset": [float(sc.offset[0]), float(sc.offset[1])] if sc.signal == "output"
              else [float(sc.offset[0]) * 1e-3, float(sc.offset[1]) * 1e-3]}
    if sc.signal == "output":
        lockin.update(sensitivity=sensitivity, expand=int(sc.expand))
    if sc.time_constant_samples > 0 and sc.declare_time_constant:
        lockin.update(time_constant=float(sc.time_constant_samples * np.median(dt)), filter_slope=int(sc.filter_slope))
    calibration = {
        "normal": {"spring_constant": k_c, "invols": sc.invols * (1 + sc.invols_error)},
        "lateral": {"dither_amplitude": A, "dither_frequency": sc.dither_frequency,
                    "torsion_sensitivity": sc.torsion_sensitivity, "torsional_stiffness": sc.torsional_stiffness,
                    "tip_length": sc.tip_length},
        "lockin": lockin,
        "model": {"r_g": sc.r_g, "poisson": sc.poisson, "r_g_source": "independent simulator"},
    }
    if sc.lateral_compliance:
        calibration["processing"] = {"tip_compliance_correction": True}

    # ---- truth
    e1, e2 = moduli(Z_GRID[None, :], p)
    bnd = boundaries(p)
    sei = p["h"].copy()
    truth = xr.Dataset(
        {
            "contact_ideal": ("ramp", contact_ideal, {"units": "m"}),
            "surface": ("ramp", surface, {"units": "m"}),
            "sei_thickness": ("ramp", sei, {"units": "m"}),
            "free_travel": ("ramp", free, {"units": "m"}),
            "defect": ("ramp", defect.astype(str)),
            "window_index": ("ramp", w_index),
            "boundaries": (("ramp", "boundary"), bnd, {"units": "m"}),
            "E_storage": (("ramp", "z"), e1.astype(np.float32), {"units": "Pa"}),
            "E_loss": (("ramp", "z"), e2.astype(np.float32), {"units": "Pa"}),
            "deflection_at_contact": ("ramp", force0 / k_c, {"units": "m"}),
            "z_true": (("ramp", "sample"), z_p.astype(np.float32), {"units": "m", "long_name": "true z_p"}),
        },
        coords={"z": ("z", Z_GRID, {"units": "m"}), "direction": ("ramp", direction.astype(str))},
        attrs={"scenario": sc.name, "profile": sc.profile, "seed": seed,
               "window_low": [w[0] for w in sc.windows], "window_high": [w[1] for w in sc.windows]},
    )
    return Simulation(model, calibration, truth, sc)


def _plan_defects(defects: dict, n: int, rng) -> np.ndarray:
    plan = np.full(n, "", dtype=object)
    total = sum(defects.values()) if defects else 0
    if not total:
        return plan
    if total > n // 2:
        raise ValueError(f"{total} defects for {n} ramps")
    pick = rng.choice(n, total, replace=False)
    k = 0
    for kind, count in defects.items():
        if kind not in DEFECTS:
            raise ValueError(f"defect {kind!r}: one of {DEFECTS}")
        plan[pick[k:k + count]] = kind
        k += count
    return plan


# ================================================================================================ scoring
def score(sim: Simulation, res: xr.Dataset, margin: float = 2e-9, coverage: float = 0.9,
          resolved: float = 0.05, bottom: float | None = None) -> dict:
    """Errors of results ``res`` against the truth (the numbers the robustness tests and sweep assert).

    * contact: |contact_position − contact_ideal| over good accepted ramps (median, p95, max; m)
    * window means of E', E'': max relative error against the mean of the per-ramp truth over the same
      accepted ramps, at depths ≥ ``margin`` from every boundary (5–95 % range over the window's ramps)
      and from the electrode, where ≥ ``coverage`` of the window's accepted ramps have data; the error is
      relative to the mean truth; ``*_resolved``: the same over the depths where the measurement noise of
      that mean (2 standard errors of the per-ramp estimate − truth) is at most ``resolved`` of the truth
      (the data resolve the modulus there: a bias, not noise, is what exceeds a tolerance of twice that)
    * sei: estimated − true thickness over good accepted ramps (median, p95 of |error|; m)
    * flags: defects not flagged, good ramps rejected (with their flags), NaN inside an accepted profile
    """
    tr = sim.truth
    ok = np.asarray(res["ok"].values, bool)
    defect = tr["defect"].values
    good = defect == ""
    either = defect == TOLERATED
    out = {"n": len(ok), "good": int(good.sum()), "accepted_good": int((ok & good).sum())}
    err = np.abs(res["contact_position"].values - tr["contact_ideal"].values)[ok & good]
    out["contact_median"], out["contact_p95"], out["contact_max"] = (
        (float(np.median(err)), float(np.percentile(err, 95)), float(err.max())) if err.size else (np.nan,) * 3)
    flags = res["flag"].values.astype(str)
    out["missed_defects"] = [(int(i), defect[i]) for i in np.flatnonzero(~good & ~either & ok)]
    out["rejected_good"] = [(int(i), flags[i]) for i in np.flatnonzero(good & ~ok)]
    out["defect_flags"] = {str(k): sorted(set(flags[(defect == k) & ~ok])) for k in set(defect[~good & ~either])}
    out["tolerated"] = int(either.sum())
    sei_err = (res["sei_thickness"].values - tr["sei_thickness"].values)[ok & good]
    fin = np.isfinite(sei_err)
    out["sei_nan"] = int((~fin).sum())
    out["sei_median"] = float(np.median(sei_err[fin])) if fin.any() else np.nan
    out["sei_p95"] = float(np.percentile(np.abs(sei_err[fin]), 95)) if fin.any() else np.nan
    # NaN inside an accepted profile: between its shallowest and deepest finite depth
    if "E_storage" in res:
        es = res["E_storage"].values[ok]
        fin_e = np.isfinite(es)
        first = np.argmax(fin_e, 1)
        last = es.shape[1] - 1 - np.argmax(fin_e[:, ::-1], 1)
        jj = np.arange(es.shape[1])[None, :]
        holes = (~fin_e & (jj > first[:, None]) & (jj < last[:, None])).any(1)
        out["profiles_with_holes"] = int(holes.sum())
        out["profiles_empty"] = int((~fin_e.any(1)).sum())
    rows = []
    if "window" in res.dims:
        z = tr["z"].values
        bnd = tr["boundaries"].values
        for w in range(res.sizes["window"]):
            sel = ok & (tr["window_index"].values == w)
            if sel.sum() < 3:
                continue
            mask = (z >= (margin if bottom is None else bottom))
            for k in range(bnd.shape[1]):
                lo, hi = np.percentile(bnd[sel, k], [5, 95])
                mask &= (z < lo - margin) | (z > hi + margin)
            mask &= z < np.percentile(bnd[sel, 0], 5) - margin
            n_cov = res["E_storage_n"].values[w]
            mask &= n_cov >= coverage * sel.sum()
            row = {"window": w, "n_ramps": int(sel.sum()), "n_z": int(mask.sum())}
            for q in ("E_storage", "E_loss"):
                est = res[f"{q}_mean"].values[w]
                ref = tr[q].values[sel].mean(0)
                # the measurement's own noise: spread over ramps of (estimate - truth), as a 95 % half-width
                diff = res[q].values[sel] - tr[q].values[sel]
                with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    k = np.isfinite(diff).sum(0)
                    half = 2.0 * np.nanstd(diff, axis=0, ddof=1) / np.sqrt(k)
                    rel = np.abs(est - ref) / np.abs(ref)
                    m = mask & (half <= resolved * np.abs(ref))
                row[q] = float(np.max(rel[mask])) if mask.any() else np.nan
                row[q + "_resolved"] = float(np.max(rel[m])) if m.any() else np.nan
                row[q + "_n_resolved"] = int(m.sum())
            rows.append(row)
    out["windows"] = rows
    fin_rows = [r for r in rows if r["n_z"]]
    for q in ("E_storage", "E_loss"):
        out[q + "_err"] = max((r[q] for r in fin_rows), default=np.nan)
        vals = [r[q + "_resolved"] for r in fin_rows if r[q + "_n_resolved"]]
        out[q + "_resolved_err"] = max(vals, default=np.nan)
        out[q + "_resolved_depths"] = sum(r[q + "_n_resolved"] for r in fin_rows)
    return out
