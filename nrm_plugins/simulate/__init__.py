"""Forward model of a 1D-NRM experiment: force ramps with lateral lock-in channels during an operando CV.

>>> from nrm_plugins import simulate
>>> sim = simulate.simulate("realistic", nx=20, ny=20, n_samples=1024, seed=0)
>>> sim.model          # common-model Dataset (ramp, sample): piezo, deflection, lateral_x, lateral_y
>>> sim.calibration    # the Calibration that inverts it (normal, lateral, lockin, model, processing, cv)
>>> sim.truth          # contact points, SEI thickness, layers, E*(z) per ramp, population means per window
>>> sim.write("out")   # out/sim.3ds (Nanonis grid), out/calibration.toml, out/truth.nc

Timing: the grid of ``nx × ny`` locations is scanned once per potential window while the CV sweeps through
it; the ramps of a window are evenly spread over the time the potential spends in the window.  Ramp
``i``'s ``time`` is its start (s since the CV start) and ``potential`` the CV potential then.

Physics: sample.py (electrode, layered SEI), normal.py (deflection), lateral.py (lateral force, tip
compliance, background), lockin.py (SR830 outputs), cv.py (potential), defects.py.  All of it is
vectorized over ramps (blocks of :data:`BLOCK` ramps); per-sample noise of block ``b`` comes from its own
random stream ``SeedSequence([seed, 1]).spawn(...)[b]``, everything else from ``SeedSequence([seed, 0])``,
so a seed gives the same data on every machine.
"""
from __future__ import annotations

import math
import warnings
from functools import cached_property
from pathlib import Path

import numpy as np
import xarray as xr

from .._version import __version__
from ..calibration import Calibration
from ..model import ramps_dataset
from . import defects as _defects
from . import lateral, lockin, normal, sample
from .cv import cv_potential, window_interval
from .defects import KINDS as DEFECT_KINDS
from .defects import truncate_file, truncate_grid
from .presets import DEFAULT_WINDOWS, PRESETS, SEI_LAYERS, SKIN, Layer, Parameters, parameters

__all__ = ["simulate", "Simulation", "Parameters", "Layer", "PRESETS", "DEFAULT_WINDOWS", "SEI_LAYERS", "SKIN",
           "DEFECT_KINDS", "cv_potential", "window_interval", "truncate_file", "truncate_grid", "parameters"]

#: ramps per generation block (the unit of the per-sample noise streams)
BLOCK = 512
DIRECTIONS = ("approach", "retract", "both")
#: vendor names of the simulated channels: the photodiode and the SR830's X, Y analog outputs recorded on
#: controller inputs (Nanonis "LI Demod" names would mean its internal lock-in, volts at the input)
CHANNEL_NAMES = {"piezo": "Z (m)", "deflection": "Input 2 (V)", "lateral_x": "Input 3 (V)",
                 "lateral_y": "Input 4 (V)", "time_in_ramp": "Ramp time (s)"}


def simulate(preset: str = "realistic", nx: int = 20, ny: int = 20, n_samples: int = 1024, windows=None,
             seed: int = 0, direction: str = "approach", defects: dict | None = None, progress=False,
             **overrides) -> "Simulation":
    """Simulate a grid of ``nx × ny`` locations scanned once per potential window.

    :param preset: "clean", "noisy", "realistic" or "rough" (see :data:`PRESETS`, docs/simulator.md)
    :param n_samples: samples per ramp
    :param windows: potential windows ``[[lo, hi], ...]`` (V); default :data:`DEFAULT_WINDOWS`
    :param direction: "approach", "retract" or "both" (each location gives an approach and a retract ramp)
    :param defects: ``{kind: count}`` with kinds from :data:`DEFECT_KINDS`
    :param progress: show a tqdm bar on stderr
    :param overrides: any :class:`Parameters` field, e.g. ``roughness=1e-6``, ``skin=True``
    """
    return Simulation(parameters(preset, **overrides), nx=nx, ny=ny, n_samples=n_samples, windows=windows,
                      seed=seed, direction=direction, defects=defects, progress=progress, preset=preset)


class Simulation:
    """One simulated experiment: ``model``, ``calibration``, ``truth`` (computed on first use), ``write``."""

    def __init__(self, params: Parameters, nx: int = 20, ny: int = 20, n_samples: int = 1024, windows=None,
                 seed: int = 0, direction: str = "approach", defects=None, progress=False, preset: str = ""):
        if direction not in DIRECTIONS:
            raise ValueError(f"direction = {direction!r}: one of {DIRECTIONS}")
        if nx < 1 or ny < 1 or n_samples < 16:
            raise ValueError(f"need nx, ny >= 1 and n_samples >= 16, got {nx}, {ny}, {n_samples}")
        self.params = params
        self.preset = preset
        self.nx, self.ny, self.n_samples = int(nx), int(ny), int(n_samples)
        self.seed = int(seed)
        self.direction = direction
        self.windows = [sorted(map(float, w)) for w in (DEFAULT_WINDOWS if windows is None else windows)]
        if not self.windows or any(lo >= hi for lo, hi in self.windows):
            raise ValueError(f"windows = {windows!r}: expected [[lo, hi], ...] with lo < hi (V)")
        self.defects_requested = dict(defects or {})
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, 0])))
        self._schedule()
        self._draw(rng)
        self.model = self._generate(progress)
        self.calibration = self._calibration()

    # ------------------------------------------------------------------ timing
    def _schedule(self) -> None:
        p = self.params
        n_loc = self.nx * self.ny
        per_loc = 2 if self.direction == "both" else 1
        intervals = [window_interval(w, p.start_potential, p.scan_rate, p.vertices, p.cv_start_time)
                     for w in self.windows]
        periods = [(t1 - t0) / n_loc for t0, t1 in intervals]
        duration = p.ramp_duration if p.ramp_duration is not None else min(1.0, 0.9 * min(periods) / per_loc)
        if duration * per_loc > min(periods):
            raise ValueError(f"ramp_duration = {duration} s: {per_loc} ramp(s) per location do not fit the "
                             f"{min(periods):.4g} s each location gets in the shortest window")
        self.ramp_duration = float(duration)
        loc = np.arange(n_loc)
        times, window, location, direction = [], [], [], []
        for w, ((t0, _), period) in enumerate(zip(intervals, periods)):
            start = t0 + loc * period + (period - per_loc * duration) / 2
            for d in range(per_loc):
                times.append(start + d * duration)
                window.append(np.full(n_loc, w))
                location.append(loc)
                name = "retract" if self.direction == "retract" or d == 1 else "approach"
                direction.append(np.full(n_loc, name, dtype=object))
        order = np.lexsort((np.concatenate([np.full(n_loc, d) for d in range(per_loc)] * len(intervals)),
                            np.concatenate(location), np.concatenate(window)))
        self.time = np.concatenate(times)[order].astype(np.float32).astype(np.float64)
        self.window_index = np.concatenate(window)[order]
        self.location = np.concatenate(location)[order]
        self.ramp_direction = np.concatenate(direction)[order]
        self.potential = cv_potential(self.time, p.start_potential, p.scan_rate, p.vertices,
                                      p.cv_start_time).astype(np.float32).astype(np.float64)
        self.n_ramps = len(self.time)
        self.x = ((self.location % self.nx) * p.grid_step).astype(np.float32).astype(np.float64)
        self.y = ((self.location // self.nx) * p.grid_step).astype(np.float32).astype(np.float64)

    # ------------------------------------------------------------------ per-ramp parameters
    def _draw(self, rng) -> None:
        p, n = self.params, self.n_ramps
        field = sample.electrode_field(p, self.nx, self.ny, rng).ravel()
        factors = sample.location_factors(p, self.nx * self.ny, rng)
        self.factors = {k: v[self.location] for k, v in factors.items()}
        jitter, lengths, fractions, creep, offset, tilt, bg_s, bg_l = (
            rng.standard_normal(n), rng.random(n), rng.random(n), np.abs(rng.standard_normal(n)),
            rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(n))
        if self.direction == "both":  # the retract retraces its approach: same position and range
            for a in (jitter, lengths, fractions):
                a[1::2] = a[0::2]
        self.electrode = field[self.location] + p.position_jitter * jitter + p.position_drift * self.time
        self.layers = sample.ramp_layers(p, self.potential, self.factors)
        self.steps_storage = sample.steps(self.layers["storage"])
        self.steps_loss = sample.steps(self.layers["loss"])
        top = self.layers["top"][:, -1]
        length = p.ramp_length[0] + (p.ramp_length[1] - p.ramp_length[0]) * lengths
        depth = length * (p.contact_fraction[0] + (p.contact_fraction[1] - p.contact_fraction[0]) * fractions)
        low = self.electrode - depth
        high = low + length
        self.defect = _defects.choose(self.defects_requested, n, rng)
        u1, u2, half = rng.random(n), rng.random(n), rng.random(n) < 0.5
        nc = self.defect == "no_contact"
        low = np.where(nc, self.electrode + 0.5e-9 + (0.3 + 0.7 * u1) * top, low)
        high = np.where(nc, low + length, high)
        sic = self.defect == "starts_in_contact"
        high = np.where(sic & half, self.electrode - (1e-9 + 4e-9 * u2), high)
        high = np.where(sic & ~half, self.electrode + (0.2 + 0.6 * u2) * top, high)
        low = np.where(sic, np.minimum(low, high - depth), low)
        self.piezo_low = low.astype(np.float32).astype(np.float64)
        self.piezo_high = high.astype(np.float32).astype(np.float64)
        self.nan_start, self.nan_stop = _defects.nan_runs(self.defect, self.n_samples, rng)
        self.creep = p.creep * creep
        self.baseline_offset = p.baseline_offset[0] + p.baseline_offset[1] * offset
        self.baseline_slope = p.baseline_tilt * tilt / p.invols  # V per m of piezo
        self.background = p.dither_amplitude * (p.background[0] * (1 + p.background_spread * bg_s)
                                                + 1j * p.background[1] * (1 + p.background_spread * bg_l))
        # the recorded piezo coordinate at which the true position reaches the electrode (creep included)
        self.contact_position = self.electrode.copy()
        for _ in range(6):
            self.contact_position = self.electrode - self._creep_offset(self.contact_position)

    def _creep_shape(self, k):
        """Creep along one ramp as a function of the fraction k of its duration (0 → 1)."""
        f = self.params.creep_time
        return -np.expm1(-np.asarray(k) / f) / -math.expm1(-1 / f)

    def _creep_offset(self, piezo):
        """True minus recorded piezo position (m) at recorded ``piezo`` (one value per ramp): creep goes
        along the motion (down on approach, up on retract)."""
        low, high = self.piezo_low, self.piezo_high
        approach = self.ramp_direction == "approach"
        span = np.where(high > low, high - low, 1.0)
        k = np.where(approach, (high - piezo) / span, (piezo - low) / span)
        return np.where(approach, -1.0, 1.0) * self.creep * self._creep_shape(k)

    # ------------------------------------------------------------------ generation
    def _physics(self, rows, piezo=None):
        """Noise-free ramps ``rows`` (slice or indices): recorded piezo (R, n) (into ``piezo`` when given),
        x = s − c (R, n), and over the points below the free region (flat ``index``, ramp ``row``): δ, z_p,
        hard mask, force F*."""
        p, n = self.params, self.n_samples
        approach = self.ramp_direction[rows] == "approach"
        start = np.where(approach, self.piezo_high[rows], self.piezo_low[rows])
        end = np.where(approach, self.piezo_low[rows], self.piezo_high[rows])
        step = (end - start) / (n - 1)
        if piezo is None:
            piezo = np.empty((len(start), n))
        np.multiply(np.arange(n), step[:, None], out=piezo)
        piezo += start[:, None]
        piezo[:, -1] = end
        sign = np.where(approach, -1.0, 1.0) * self.creep[rows]
        x = piezo - self.electrode[rows][:, None]
        if np.any(sign):
            x += sign[:, None] * self._creep_shape(np.arange(n) / (n - 1))
        sol = normal.solve(x, self.layers["top"][rows], self.steps_storage[rows], self.steps_loss[rows], p)
        k = lateral.stiffness(sol["int_storage"], sol["int_loss"], sol["depth"], sol["hard"], p)
        sol["force"] = lateral.force(k, p)
        sol.update(piezo=piezo, x=x, approach=approach, step=step)
        return sol

    def _generate(self, progress) -> xr.Dataset:
        p, n, n_ramps = self.params, self.n_samples, self.n_ramps
        deflection = np.empty((n_ramps, n), np.float32)
        lat_x = np.empty((n_ramps, n), np.float32)
        lat_y = np.empty((n_ramps, n), np.float32)
        piezo = np.empty((n_ramps, n), np.float64)
        self.contact_ideal = np.empty(n_ramps)
        self.deflection_at_contact = np.empty(n_ramps)
        dt = self.ramp_duration / (n - 1)
        volts_per_newton = p.tip_length / (p.torsional_stiffness * p.torsion_sensitivity)
        rotation = lockin.rotation(p) * volts_per_newton  # analog-output volts per newton of F*
        sample_index = np.arange(n, dtype=np.float32)
        n_blocks = -(-n_ramps // BLOCK)
        streams = np.random.SeedSequence([self.seed, 1]).spawn(n_blocks)
        bar = _progress(progress, n_ramps, "simulate")
        for b in range(n_blocks):
            rows = slice(b * BLOCK, min(n_ramps, (b + 1) * BLOCK))
            r = rows.stop - rows.start
            rng = np.random.Generator(np.random.PCG64(streams[b]))
            ph = self._physics(rows, piezo[rows])
            idx, row, hard = ph["index"], ph["row"], ph["hard"]
            self.contact_ideal[rows] = normal.ideal_intersection(
                row[hard], ph["piezo"].ravel()[idx[hard]], ph["delta"][hard], self.contact_position[rows])
            self.deflection_at_contact[rows] = ph["force0"] / p.spring_constant
            # deflection (V): baseline offset + tilt (zero at the far end) + δ / InvOLS + noise
            far_to_start = np.where(ph["approach"], 0.0, self.piezo_low[rows] - self.piezo_high[rows])
            slope = self.baseline_slope[rows]
            volts = deflection[rows]
            volts[...] = (self.baseline_offset[rows] + slope * far_to_start).astype(np.float32)[:, None] \
                + (slope * ph["step"]).astype(np.float32)[:, None] * sample_index
            flat = volts.reshape(-1)
            flat[idx] += ph["delta"] / p.invols
            if p.deflection_noise > 0:
                noise = rng.standard_normal(volts.shape, np.float32)
                noise *= np.float32(p.deflection_noise / p.invols)
                volts += noise
            # lateral: liquid background + sample force, through the lock-in
            self._clip_background(rows, ph, rotation)
            level = self.background[rows] * rotation + complex(*p.offset)
            xs, ys = lat_x[rows], lat_y[rows]
            xs[...] = level.real.astype(np.float32)[:, None]
            ys[...] = level.imag.astype(np.float32)[:, None]
            signal = ph["force"] * rotation
            if p.background_slope != (0.0, 0.0):
                z = ph["x"].copy()
                z.reshape(-1)[idx] = ph["z"]
                extra = complex(*p.background_slope) * rotation * np.maximum(z, 0.0)
                xs += extra.real
                ys += extra.imag
                span = (np.zeros(r, int), np.full(r, n))
            else:
                count = np.bincount(row, minlength=r)
                span = (np.where(ph["approach"], n - count, 0), np.where(ph["approach"], n, count))
            xs.reshape(-1)[idx] += signal.real
            ys.reshape(-1)[idx] += signal.imag
            lockin.finish(xs, ys, p, dt, rng, span)
            bar.update(r)
        bar.close()
        for kind in ("nan_ramp", "nan_run"):
            for i in np.flatnonzero(self.defect == kind):  # only the few labelled ramps
                cut = slice(None) if kind == "nan_ramp" else slice(self.nan_start[i], self.nan_stop[i])
                for a in (deflection, lat_x, lat_y):
                    a[i, cut] = np.nan
        time_in_ramp = np.broadcast_to((np.arange(n) * dt).astype(np.float32), (n_ramps, n))
        channels = {name: (data, units, CHANNEL_NAMES[name]) for name, data, units in (
            ("piezo", piezo, "m"), ("deflection", deflection, "V"), ("lateral_x", lat_x, "V"),
            ("lateral_y", lat_y, "V"), ("time_in_ramp", time_in_ramp, "s"))}
        coords = {"x": self.x, "y": self.y, "time": self.time, "potential": self.potential,
                  "source": f"simulate:{self.preset or 'custom'}:seed={self.seed}", "index": np.arange(n_ramps),
                  "direction": self.ramp_direction}
        attrs = {"spring_constant": p.spring_constant, "invols": p.invols, "lockin_sensitivity": p.sensitivity,
                 "lockin_frequency": p.dither_frequency, "lockin_time_constant": p.time_constant,
                 "lockin_filter_slope": p.filter_slope, "lockin_expand": p.expand,
                 "ramp_duration": self.ramp_duration, "sample_interval": dt,
                 "grid_size": [self.nx, self.ny], "grid_step": p.grid_step,
                 "simulator": f"nrm_plugins.simulate {__version__}, preset '{self.preset}', seed {self.seed}"}
        return ramps_dataset(channels, coords, attrs)

    def _clip_background(self, rows, ph, rotation) -> None:
        """For ``clipped`` ramps: add a background that puts the X output 0.4 of the layer response below
        the clip level at the free end, so the deeper part of the layer response is clipped."""
        ramps = np.arange(self.n_ramps)[rows]
        local = np.flatnonzero(self.defect[ramps] == "clipped")
        if not local.size:
            return
        p = self.params
        layer = ~ph["hard"]
        u = (ph["force"][layer] * rotation).real
        layer_max = np.zeros(len(ramps))
        np.maximum.at(layer_max, ph["row"][layer], u)
        level = (self.background[ramps[local]] * rotation).real + p.offset[0]
        shift = p.clip - 0.4 * layer_max[local] - level
        self.background[ramps[local]] += shift / rotation

    # ------------------------------------------------------------------ calibration
    def _calibration(self) -> Calibration:
        p = self.params
        values = {
            "normal": {"spring_constant": p.spring_constant, "invols": p.invols},
            "lateral": {"dither_amplitude": p.dither_amplitude, "dither_frequency": p.dither_frequency,
                        "torsion_sensitivity": p.torsion_sensitivity,
                        "torsional_stiffness": p.torsional_stiffness, "tip_length": p.tip_length},
            "lockin": {"signal": "output", "sensitivity": p.sensitivity, "expand": p.expand,
                       "time_constant": p.time_constant, "filter_slope": p.filter_slope, "phase": p.phase,
                       "offset": [float(p.offset[0]), float(p.offset[1])], "amplitude": "rms"},
            "model": {"r_g": p.r_g, "r_g_source": "simulator ground truth (nrm_plugins.simulate)",
                      "poisson": 0.5},
            "processing": {"windows": [list(w) for w in self.windows]},
            "cv": {"start_potential": p.start_potential, "scan_rate": p.scan_rate,
                   "vertices": [float(v) for v in p.vertices], "start_time": p.cv_start_time},
            "channels": {role: CHANNEL_NAMES[role] for role in ("deflection", "lateral_x", "lateral_y")},
        }
        return Calibration(values, origin="simulator")

    # ------------------------------------------------------------------ truth
    @cached_property
    def truth(self) -> xr.Dataset:
        """The exact truth (module docstrings give every definition); computed on first use."""
        p = self.params
        z_max, z_step = 100e-9, 0.1e-9
        z = np.arange(int(round(z_max / z_step)) + 1) * z_step
        names = [la.name for la in p.all_layers]
        n = self.n_ramps
        e_storage = np.empty((n, len(z)), np.float32)
        e_loss = np.empty((n, len(z)), np.float32)
        for b in range(0, n, BLOCK):
            rows = slice(b, min(n, b + BLOCK))
            e_storage[rows], e_loss[rows] = sample.grid_profiles(z_step, len(z), self.layers["top"][rows],
                                                                 p.transition_width, self.steps_storage[rows],
                                                                 self.steps_loss[rows])
        labels = [f"{lo}-{hi}V" for lo, hi in self.windows]
        n_win = len(self.windows)
        mean_s = np.zeros((n_win, len(z)))
        mean_l = np.zeros((n_win, len(z)))
        sei_mean, top_mean, es_mean, el_mean, counts = (np.zeros(n_win), np.zeros((n_win, len(names))),
                                                        np.zeros((n_win, len(names))),
                                                        np.zeros((n_win, len(names))), np.zeros(n_win, int))
        for w in range(n_win):
            pot = self.potential[self.window_index == w]
            counts[w] = len(pot)
            for b in range(0, len(pot), BLOCK):
                s, l_ = sample.mean_profile(p, pot[b:b + BLOCK], z_step, len(z))
                mean_s[w] += s.sum(0) / len(pot)
                mean_l[w] += l_.sum(0) / len(pot)
            thickness, storage, tan_delta = sample.median_layers(p, pot)
            tops = np.cumsum(thickness, -1)
            sei_mean[w] = tops[:, -1].mean()
            top_mean[w], es_mean[w], el_mean[w] = tops.mean(0), storage.mean(0), (storage * tan_delta).mean(0)
        ramp = ("ramp",)
        m = self.model
        coords = {c: m[c].variable for c in ("x", "y", "time", "potential", "source", "index", "direction")}
        coords.update(z=("z", z, {"units": "m", "long_name": "tip-electrode distance z_p"}),
                      layer=("layer", np.array(names, dtype=object)),
                      window=("window", np.array(labels, dtype=object)),
                      window_low=("window", [w[0] for w in self.windows], {"units": "V"}),
                      window_high=("window", [w[1] for w in self.windows], {"units": "V"}))

        def v(dims, data, units, doc):
            return (dims, data, {"units": units, "long_name": doc})

        data = {
            "contact_position": v(ramp, self.contact_position, "m",
                                  "true electrode surface in recorded piezo coordinates (creep included)"),
            "contact_ideal": v(ramp, self.contact_ideal, "m",
                               "noise-free two-line intersection (baseline delta=0, line fitted to hard contact)"),
            "electrode_position": v(ramp, self.electrode, "m", "electrode surface in true piezo coordinates"),
            "sei_thickness": v(ramp, self.layers["top"][:, -1], "m", "top boundary b_K of the SEI (erf midpoint)"),
            "deflection_at_contact": v(ramp, self.deflection_at_contact, "m",
                                       "cantilever deflection by the layer at z_p = 0"),
            "defect": v(ramp, self.defect.astype(str).astype(object), "", "injected defect ('' = good ramp)"),
            "window_index": v(ramp, self.window_index, "", "index of the window whose scan holds the ramp"),
            "layer_top": v(("ramp", "layer"), self.layers["top"], "m", "upper boundary of each layer"),
            "layer_E_storage": v(("ramp", "layer"), self.layers["storage"], "Pa", "storage modulus per layer"),
            "layer_E_loss": v(("ramp", "layer"), self.layers["loss"], "Pa", "loss modulus per layer"),
            "background_storage": v(ramp, self.background.real, "N", "liquid background, real part of F*"),
            "background_loss": v(ramp, self.background.imag, "N", "liquid background, imaginary part of F*"),
            "baseline_offset": v(ramp, self.baseline_offset, "V", "deflection baseline at the far end"),
            "baseline_slope": v(ramp, self.baseline_slope, "V/m", "deflection baseline slope per m of piezo"),
            "creep": v(ramp, self.creep, "m", "piezo creep accumulated over the ramp (along the motion)"),
            "E_storage": v(("ramp", "z"), e_storage, "Pa", "storage modulus E' at z_p"),
            "E_loss": v(("ramp", "z"), e_loss, "Pa", "loss modulus E'' at z_p"),
            "E_storage_mean": v(("window", "z"), mean_s, "Pa", "population mean of E' over the window"),
            "E_loss_mean": v(("window", "z"), mean_l, "Pa", "population mean of E'' over the window"),
            "sei_thickness_mean": v(("window",), sei_mean, "m", "population mean SEI thickness"),
            "layer_top_mean": v(("window", "layer"), top_mean, "m", "mean upper boundary of each layer"),
            "layer_E_storage_mean": v(("window", "layer"), es_mean, "Pa", "mean storage modulus per layer"),
            "layer_E_loss_mean": v(("window", "layer"), el_mean, "Pa", "mean loss modulus per layer"),
            "ramps_in_window": v(("window",), counts, "", "ramps of the window's scan"),
        }
        attrs = {"r_g": p.r_g, "dither_amplitude": p.dither_amplitude, "dither_frequency": p.dither_frequency,
                 "poisson": 0.5, "lateral_stiffness": p.lateral_stiffness, "spring_constant": p.spring_constant,
                 "transition_width": p.transition_width, "preset": self.preset, "seed": self.seed,
                 "direction": self.direction, "ramp_duration": self.ramp_duration,
                 "window_labels": labels,
                 "mean_method": "exact closed form: expectation over the per-location factors (erf steps "
                                "with Gaussian boundaries, lognormal moduli of mean 1), averaged over the "
                                "potentials of the window's ramps",
                 "simulator": self.model.attrs["simulator"]}
        return xr.Dataset(data, coords=coords, attrs=attrs)

    # ------------------------------------------------------------------ noise-free view
    def ideal(self, ramps=None) -> xr.Dataset:
        """Noise-free per-sample physics of ``ramps`` (indices; default all): z_p, δ, sample force F*."""
        idx = np.arange(self.n_ramps) if ramps is None else np.atleast_1d(np.asarray(ramps))
        ph = self._physics(idx)
        shape = ph["piezo"].shape
        z = ph["x"].copy()
        delta, hard, force = np.zeros(shape), np.zeros(shape, bool), np.zeros(shape, complex)
        for dense, sparse in ((z, ph["z"]), (delta, ph["delta"]), (hard, ph["hard"]), (force, ph["force"])):
            dense.reshape(-1)[ph["index"]] = sparse
        dims = ("ramp", "sample")
        return xr.Dataset(
            {"piezo": (dims, ph["piezo"], {"units": "m"}),
             "z": (dims, z, {"units": "m", "long_name": "tip-electrode distance z_p"}),
             "deflection": (dims, delta, {"units": "m", "long_name": "cantilever deflection delta"}),
             "hard": (dims, hard, {"long_name": "hard contact (z_p <= 0)"}),
             "F_storage": (dims, force.real, {"units": "N", "long_name": "sample force F* (no background)"}),
             "F_loss": (dims, force.imag, {"units": "N"})},
            coords={"ramp": idx})

    # ------------------------------------------------------------------ files
    def write(self, folder, name: str = "sim", format: str | None = None) -> dict:
        """Write ``{name}.3ds`` (the Nanonis writer, via ``nrm.save``), ``calibration.toml`` and ``truth.nc``.

        :param format: writer format name; default the Nanonis ``.3ds`` writer, else NetCDF with a warning
        :returns: ``{"data": path, "calibration": path, "truth": path}``
        """
        from .. import save
        from ..plugins import get_plugin_manager
        from ..storage import save_netcdf

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        formats = get_plugin_manager().write_formats()
        if format is None:
            grid = [f for f in formats if ".3ds" in f.get("suffixes", [])]
            if grid:
                format, suffix = grid[0]["name"], ".3ds"
            else:
                warnings.warn("no .3ds writer is registered (nrm plugins): writing NetCDF instead", stacklevel=2)
                format, suffix = "netcdf", ".nc"
        else:
            known = {f["name"]: f for f in formats}
            suffix = (known.get(format, {}).get("suffixes") or [""])[0]
        data = save(self.model, folder / f"{name}{suffix}", format=format)
        n_lost = int(np.sum(self.defect == "truncated"))
        if n_lost:
            if suffix != ".3ds":
                raise ValueError("the 'truncated' defect needs the .3ds writer")
            truncate_grid(data, self.n_ramps, n_lost)
        calibration = folder / "calibration.toml"
        self.calibration.to_toml(calibration, with_defaults=True)
        truth = folder / "truth.nc"
        save_netcdf(self.truth, truth)
        return {"data": Path(data), "calibration": calibration, "truth": truth}

    def __repr__(self) -> str:
        return (f"<Simulation preset={self.preset!r} {self.nx}x{self.ny} grid, {self.n_ramps} ramps x "
                f"{self.n_samples} samples, {len(self.windows)} windows, seed={self.seed}>")


def _progress(progress, total, desc):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ramp", disable=not progress, leave=False)
