"""Lateral channel: lock-in X, Y → complex lateral force F* (DESIGN.md §1.2 and §3, Eq. 1 of the paper).

With ``U = ((X + iY) − offset) · exp(−i·phase·π/180)`` the lock-in's input volts are
``V* = U · sensitivity / (10 V · expand)`` (``signal = "output"``, analog outputs) or ``V* = U``
(``signal = "input"``); ``V*·√2`` when the lock-in reports rms (``amplitude = "rms"``); the torsion angle
is ``θ* = S_lat V*`` and the force ``F* = θ* k_t / l_t`` (Eq. 1).  All of this is one complex factor, so
the pipeline keeps the recorded volts, subtracts the per-ramp liquid background from them, resamples and
differentiates them, and multiplies by the factor at the end (linear steps commute).

Clipping: an analog output at or beyond :data:`CLIP_LEVEL` (|X| or |Y|, ``signal = "output"``) is
saturated; such samples are never used.  The recording ADC often saturates lower (a ±10 V controller
input stops at 10.0 V): a ramp whose |X| (or |Y|) reaches the same extreme value in at least
:data:`RAIL_SAMPLES` samples, at :data:`RAIL_MIN` or more, is clipped at that value
(:func:`saturation_level`) — a measured signal does not repeat its extreme value exactly, a rail does.

Automatic phase (``[lockin] phase = "auto"``, :func:`estimate_phase`): the instrumental phase cannot be
separated from the layer's own loss angle without a reference; the estimator assumes that the *stiffest
part of each depth profile* (the inorganic inner SEI, where |dF*/dz_p| is largest) is elastic, i.e. it
rotates the magnitude-weighted mean direction of the steepest part of the response onto the real axis.
The loss modulus of that part then comes out ≈ 0 and the loss moduli elsewhere are lower bounds (the
estimate is reported in the results' attributes); give the measured phase for quantitative loss moduli.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import CalibrationError

#: analog-output level (V) from which an X or Y sample counts as clipped (outputs saturate near ±10.5 V)
CLIP_LEVEL = 10.4
#: a rail: the extreme |X| or |Y| of a ramp repeated in this many samples, at RAIL_MIN volts or more
RAIL_SAMPLES = 3
RAIL_MIN = 5.0


def force_factor(cal, phase_deg: float | None = None) -> complex:
    """The complex factor c with F* (N, zero-to-peak) = c · ((X + iY) − offset) (X, Y in V).

    :param phase_deg: instrumental phase (deg) to use instead of the calibration's (for "auto").
    """
    signal = cal.get("lockin", "signal")
    factor = 1.0
    if signal == "output":
        sensitivity = cal.require("lockin", "sensitivity")
        factor = sensitivity / (10.0 * cal.get("lockin", "expand"))
    if cal.get("lockin", "amplitude") == "rms":
        factor *= math.sqrt(2.0)
    factor *= cal.require("lateral", "torsion_sensitivity")
    factor *= cal.require("lateral", "torsional_stiffness") / cal.require("lateral", "tip_length")
    if phase_deg is None:
        phase = cal.get("lockin", "phase")
        if isinstance(phase, str):
            raise CalibrationError("[lockin] phase = \"auto\" must be estimated first (estimate_phase)")
        phase_deg = float(phase)
    return factor * complex(math.cos(math.radians(phase_deg)), -math.sin(math.radians(phase_deg)))


def clip_level(cal) -> float:
    """Analog-output level of a clipped sample (inf when X, Y are lock-in input volts)."""
    return CLIP_LEVEL if cal.get("lockin", "signal") == "output" else math.inf


def saturation_level(x, y, clip: float, tops=None):
    """Per-ramp level (V) from which |X| or |Y| counts as clipped: ``clip``, or lower where a ramp sits on
    a rail (its extreme |X| or |Y|, at least :data:`RAIL_MIN`, repeated in :data:`RAIL_SAMPLES` samples).

    :param x, y: (ramps, samples) recorded X, Y (V), NaN allowed
    :param clip: the fixed level (inf: no clipping, e.g. ``signal = "input"``)
    :param tops: the rows' max |x| and max |y| (NaN ignored) when the caller has them already
    """
    n = x.shape[0]
    if not math.isfinite(clip):
        return np.full(n, np.inf, np.float32)
    level = np.full(n, clip, np.float32)
    for i, a in enumerate((x, y)):
        if tops is None:
            top = np.fmax(np.fmax.reduce(a, axis=1), -np.fmin.reduce(a, axis=1))  # max |a|, NaN ignored
        else:
            top = np.asarray(tops[i], np.float32)
        edge = (top * np.float32(1 - 1e-6)).astype(np.float32)
        # a rail at or above the level cannot lower it: only the other ramps are counted
        with np.errstate(invalid="ignore"):
            cand = np.flatnonzero((top >= RAIL_MIN) & (edge < level))
            if cand.size:
                rail = (np.abs(a[cand]) >= edge[cand, None]).sum(1) >= RAIL_SAMPLES
                level[cand[rail]] = edge[cand[rail]]
    return level


def estimate_phase(slope_x, slope_y, weight=None) -> tuple[float, float]:
    """Instrumental phase (deg) from unrotated depth derivatives dU/dz_p (see the module docstring).

    :param slope_x, slope_y: (ramps, z) derivatives of the recorded X and Y (background removed) with
        respect to z_p, NaN outside each ramp's data.
    :returns: (phase in degrees, spread: the circular standard deviation over ramps, degrees).
    """
    d = -(np.asarray(slope_x, np.float64) + 1j * np.asarray(slope_y, np.float64))  # ∝ E* e^{i phase}
    mag = np.abs(d)
    mag = np.where(np.isfinite(mag), mag, 0.0)
    peak = mag.max(1, keepdims=True)
    use = (mag >= 0.5 * peak) & (peak > 0)
    if weight is not None:
        use &= np.asarray(weight, bool)[:, None]
    vec = np.where(use, np.nan_to_num(d), 0.0).sum(1)  # magnitude-weighted mean direction per ramp
    good = np.abs(vec) > 0
    if not good.any():
        raise CalibrationError("[lockin] phase = \"auto\": no ramp with a usable lateral layer response to "
                               "estimate the instrumental phase from; give the phase in degrees")
    unit = vec[good] / np.abs(vec[good])
    mean = unit.mean()
    phase = math.degrees(math.atan2(mean.imag, mean.real))
    spread = math.degrees(math.sqrt(max(-2.0 * math.log(max(abs(mean), 1e-300)), 0.0)))
    return phase, spread
