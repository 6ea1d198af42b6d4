"""Moduli from the depth derivative of the lateral force, quantities derived from them, and the
optional corrections beyond the 1D-NRM paper (DESIGN.md §1.5).

Eq. 5 of the paper with the sign convention of DESIGN.md §1 (z_p grows away from the electrode,
dz_l = −dz_p)::

    E*(z_p) = −(1 / (4 r_g A_l)) dF*/dz_p          storage E' = Re E*, loss E'' = Im E*

Tip compliance (``tip_compliance_correction``): the cantilever's lateral stiffness at the tip
``k_lat = k_t / l_t²`` is in series with the layer, the tip–sample amplitude is ``A_l − F*/k_lat``, and
the exact inverse is ``E* = −A_l (dF*/dz_p) / (4 r_g (A_l − F*/k_lat)²)``.

Derived (``nrm.derive``): ``S* = 4 r_g E*`` (Eq. 2, the paper's lateral sample compliance, Pa),
``G* = E* / (2 (1 + ν))`` (Eq. 6), ``G_abs = |G*|`` and ``viscosity η = G'' / (2 π f)`` (Eq. 7).

Lock-in time constant (``[lockin] time_constant`` > 0, :func:`undo_output_filter`): the output filter of
the lock-in is ``filter_slope / 6`` cascaded first-order stages ``τ y' = x − y``; a profile recorded
along the ramp is delayed by ``(filter_slope/6) τ`` and smeared, which shifts approach against retract.
The correction inverts each stage exactly and regularizes the result with a short zero-phase smoother
(:func:`undo_output_filter`).
"""
from __future__ import annotations

import math

import numpy as np
import xarray as xr

from .. import native
from ..errors import NRMError

DERIVED = {
    "S_storage": ("Pa", "lateral sample compliance S' = 4 r_g E' (Eq. 2)"),
    "S_loss": ("Pa", "lateral sample compliance S'' = 4 r_g E'' (Eq. 2)"),
    "G_storage": ("Pa", "shear storage modulus G' = E'/(2(1+nu)) (Eq. 6)"),
    "G_loss": ("Pa", "shear loss modulus G'' = E''/(2(1+nu)) (Eq. 6)"),
    "G_abs": ("Pa", "|G*| = |E*|/(2(1+nu))"),
    "viscosity": ("Pa s", "eta = G''/(2 pi f) (Eq. 7)"),
}


def modulus(slope, force, factor: complex, r_g: float, amplitude: float, lateral_stiffness: float | None = None):
    """E* (Pa, complex64) from the derivative of the recorded lateral signal.

    :param slope: dU/dz_p of the background-free recorded signal U = X + iY (V per m), complex
    :param force: F* at the same depths (N, background-free), used only with ``lateral_stiffness``
    :param factor: F* = factor · U (see :func:`nrm_plugins.pipeline.lateral.force_factor`)
    :param r_g: geometry coefficient of Eq. 5
    :param amplitude: A_l (m)
    :param lateral_stiffness: k_lat (N/m) for the tip-compliance inverse; None: Eq. 5 as in the paper
    """
    scale = np.complex64(modulus_scale(factor, r_g, amplitude))
    e = slope * scale
    if lateral_stiffness is not None:
        tip = (1.0 - force * np.complex64(1.0 / (amplitude * lateral_stiffness)))
        with np.errstate(invalid="ignore", divide="ignore"):
            e = e / (tip * tip)
    return e


def modulus_scale(factor: complex, r_g: float, amplitude: float) -> complex:
    """E* = this × dU/dz_p (Eq. 5 without the tip-compliance correction)."""
    return -factor / (4.0 * r_g * amplitude)


def shear_factor(poisson: float) -> float:
    """G* = E* × this (Eq. 6)."""
    return 1.0 / (2.0 * (1.0 + poisson))


def derive(results: xr.Dataset, name: str) -> xr.DataArray:
    """A quantity computed from the per-ramp moduli of ``results`` (see :data:`DERIVED`).

    ``E_storage`` / ``E_loss`` are returned as they are; the others are computed on demand.
    :raises NRMError: for an unknown name, or when the per-ramp profiles were omitted.
    """
    if name in ("E_storage", "E_loss"):
        return results[name]
    if name not in DERIVED:
        raise NRMError(f"nrm.derive: unknown quantity '{name}'; known: E_storage, E_loss, {', '.join(DERIVED)}")
    if "E_storage" not in results or "E_loss" not in results:
        raise NRMError(f"nrm.derive('{name}'): the results have no per-ramp profiles E_storage/E_loss "
                       f"(profiles = {results.attrs.get('profiles', 'absent')!r}); process with keep_profiles=True")
    r_g = float(results.attrs.get("r_g", 1.25))
    nu = float(results.attrs.get("poisson", 0.5))
    f = float(results.attrs.get("dither_frequency", math.nan))
    es = results["E_storage"].astype(np.float64)
    el = results["E_loss"].astype(np.float64)
    g = shear_factor(nu)
    if name == "S_storage":
        out = 4 * r_g * es
    elif name == "S_loss":
        out = 4 * r_g * el
    elif name == "G_storage":
        out = g * es
    elif name == "G_loss":
        out = g * el
    elif name == "G_abs":
        out = g * np.hypot(es, el)
    else:
        if not (math.isfinite(f) and f > 0):
            raise NRMError("nrm.derive('viscosity'): the results carry no dither_frequency attribute")
        out = g * el / (2 * math.pi * f)
    units, doc = DERIVED[name]
    out = out.astype(np.float32)
    out.name = name
    out.attrs = {"units": units, "long_name": doc}
    return out


def output_filter_coefficients(dt: float, time_constant: float):
    """(b, a) = ([b0, b1], [1, −e]) of one first-order stage discretised with a first-order hold (as the
    simulator and a digital lock-in do): ``y[n] = e y[n−1] + b0 x[n] + b1 x[n−1]``."""
    e = math.exp(-dt / time_constant)
    c = -math.expm1(-dt / time_constant) * time_constant / dt
    return [1.0 - c, c - e], [1.0, -e]


def undo_output_filter(values, dt: float, time_constant: float, slope: int):
    """Undo the lag of the lock-in's cascaded first-order output filter along axis 1 (time order).

    Each stage is inverted exactly (``x[n] = (y[n] − e y[n−1] − b1 x[n−1]) / b0``, causal: it needs no
    sample later than ``n``, so it works up to the last sample before hard contact); the inverse
    amplifies white noise most near the Nyquist frequency, so a zero-phase binomial smoother
    ``[1, 2, 1]/4`` is then applied ``m = max(1, round(stages · τ/Δt))`` times (rms width ``√(m/2)``
    samples, no delay) — the regularization of the deconvolution.

    :param values: (ramps, samples) recorded X, Y or X + iY, ordered in time, finite
    :param dt: sample interval (s); :param time_constant: τ (s); :param slope: dB/oct (6 per stage)
    :returns: float32 (or complex64) array
    """
    if time_constant <= 0:
        return values
    stages = int(slope) // 6
    out = np.asarray(values)
    if np.iscomplexobj(out):
        return (undo_output_filter(out.real, dt, time_constant, slope)
                + 1j * undo_output_filter(out.imag, dt, time_constant, slope))
    out = out.astype(np.float32)
    (b0, b1), (_, minus_e) = output_filter_coefficients(dt, time_constant)
    passes = max(1, int(round(stages * time_constant / dt)))
    if native.available() and out.ndim == 2:  # the compiled kernel: the same, row by row
        out = np.ascontiguousarray(out)
        if native.lib().nrm_undo_output_filter(out.shape[0], out.shape[1], out, b0, b1, minus_e, stages, passes):
            raise MemoryError("undo_output_filter: out of memory")
        return out
    for _ in range(stages):
        # x[n] = (y[n] - e y[n-1] - b1 x[n-1]) / b0, started in steady state (x = y before the first sample)
        w = out.copy()
        w[:, 1:] += np.float32(minus_e) * out[:, :-1]
        w[:, 0] += np.float32(minus_e) * out[:, 0]
        w *= np.float32(1 / b0)
        out = _first_order_recursion(w, -b1 / b0, out[:, 0])
    for _ in range(passes):
        inner = out[:, :-2] + out[:, 2:]
        inner += 2 * out[:, 1:-1]
        inner *= np.float32(0.25)
        out[:, 1:-1] = inner
    return out


def _first_order_recursion(u, a: float, initial):
    """x[n] = a x[n-1] + u[n] along axis 1 with x[-1] = ``initial`` (|a| < 1), by a parallel prefix scan:
    vectorized doubling steps, stopped once |a|^(2^k) < 1e-9 (the rest of the sum is negligible).  A
    float32 ``u`` is overwritten with x."""
    x = np.asarray(u, dtype=np.float32)
    m = x.shape[1]
    shift, ak = 1, a
    while shift < m and abs(ak) > 1e-9:
        x[:, shift:] += np.float32(ak) * x[:, :-shift]
        ak *= ak
        shift *= 2
    powers = a ** np.arange(1, m + 1)
    k = int(np.searchsorted(-np.abs(powers), -1e-9))  # the initial condition matters for k samples
    if k:
        x[:, :k] += (np.asarray(initial, np.float64)[:, None] * powers[None, :k]).astype(np.float32)
    return x
