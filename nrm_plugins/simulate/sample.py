"""The sample: a rough electrode carrying a layered viscoelastic SEI whose layers depend on the potential.

Layer profile (bottom → top, boundaries ``b_1 < … < b_K``, ``b_K`` = SEI thickness, moduli ``E_k``)::

    E(z)   = Σ_k ΔE_k Φ((b_k − z)/w),        ΔE_k = E_k − E_{k+1},  E_{K+1} = 0
    I(z)   = ∫_z^∞ E(z') dz' = w Σ_k ΔE_k Ψ((b_k − z)/w),   Ψ(v) = v Φ(v) + φ(v)

with Φ, φ the standard normal CDF and density and ``w`` the transition width: each boundary is an erf
step (10–90 % over 2.56 w), there is no step at the electrode (z = 0).  The same formulas give the
storage (E') and loss (E'' = E' tan δ) parts, so E*(z) = E'(z) + i E''(z).  ``dI/dz = −E`` exactly.

Per-location variability: every layer's modulus is multiplied by a lognormal factor
``exp(s_m η − s_m²/2)`` (mean exactly 1), every thickness ``t_k`` by ``1 + s_c ξ_c + s_l ξ_k`` with
standard normal ξ truncated at ±4 (ξ_c common to all layers of a location).  Each boundary ``b_k`` is then
normal with mean ``b̄_k`` and variance ``v_k = s_c² b̄_k² + s_l² Σ_{j≤k} t̄_j²``, so the population mean
profile is exact in closed form (:func:`mean_profile`)::

    E[E(z)] = Σ_k ΔĒ_k Φ((b̄_k − z)/√(w² + v_k))

(the ±4 σ truncation changes it by < 1e-4 relative).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, special

from .presets import Layer, Parameters

_SQRT_2PI = math.sqrt(2 * math.pi)


def _logistic(x):
    return special.expit(x)


def layer_thickness(layer: Layer, potential):
    """Median thickness (m) of ``layer`` at ``potential`` (V)."""
    return layer.t0 + layer.t1 * _logistic((layer.u_c - np.asarray(potential, float)) / layer.u_w)


def layer_storage(layer: Layer, potential):
    """Median storage modulus (Pa) of ``layer`` at ``potential`` (V)."""
    return layer.E0 + (layer.E1 - layer.E0) * _logistic((layer.e_c - np.asarray(potential, float)) / layer.e_w)


def median_layers(params: Parameters, potential):
    """Thickness (…, K) and storage modulus (…, K) of every layer at ``potential``, and tan δ (K,)."""
    layers = params.all_layers
    thickness = np.stack([layer_thickness(la, potential) for la in layers], axis=-1)
    storage = np.stack([layer_storage(la, potential) for la in layers], axis=-1)
    tan_delta = np.array([la.tan_delta for la in layers])
    return thickness, storage, tan_delta


def _truncated_normal(rng, shape, limit=4.0):
    lo = special.ndtr(-limit)
    return special.ndtri(lo + (1 - 2 * lo) * rng.random(shape))


def location_factors(params: Parameters, n_locations: int, rng) -> dict:
    """Per-location random factors: ``modulus`` (n, K) lognormal mean 1, ``thickness`` (n, K)."""
    n_layers = len(params.all_layers)
    s_m = params.modulus_spread
    modulus = np.exp(s_m * rng.standard_normal((n_locations, n_layers)) - s_m ** 2 / 2)
    common = _truncated_normal(rng, (n_locations, 1))
    own = _truncated_normal(rng, (n_locations, n_layers))
    thickness = 1 + params.thickness_spread * common + params.layer_thickness_spread * own
    return {"modulus": modulus, "thickness": thickness}


def ramp_layers(params: Parameters, potential, factors: dict) -> dict:
    """Layer tops ``b`` (n, K) (m), storage and loss moduli (n, K) (Pa) of each ramp."""
    thickness, storage, tan_delta = median_layers(params, potential)
    thickness = thickness * factors["thickness"]
    storage = storage * factors["modulus"]
    return {"top": np.cumsum(thickness, axis=-1), "storage": storage, "loss": storage * tan_delta}


def steps(moduli):
    """ΔE_k = E_k − E_{k+1} (last: E_K) along the last axis."""
    moduli = np.asarray(moduli)
    return moduli - np.concatenate([moduli[..., 1:], np.zeros_like(moduli[..., :1])], axis=-1)


def modulus(z, top, step, width):
    """E(z) (Pa) = Σ_k ΔE_k Φ((b_k − z)/w); ``top``, ``step`` (…, K) broadcast against ``z`` (…)."""
    z = np.asarray(z, float)[..., None]
    return np.sum(step * special.ndtr((top - z) / width), axis=-1)


def _psi(v):
    return v * special.ndtr(v) + np.exp(-0.5 * v * v) / _SQRT_2PI


def integral(z, top, step, width):
    """I(z) = ∫_z^∞ E dz' (N/m) = w Σ_k ΔE_k Ψ((b_k − z)/w)."""
    z = np.asarray(z, float)[..., None]
    return width * np.sum(step * _psi((top - z) / width), axis=-1)


def evaluate(z, tops, steps_storage, steps_loss, width, need_loss=True):
    """E'(z), I'(z) and (optionally) I''(z) at points ``z`` (n,) with per-point layers (n, K).

    One pass over the boundaries; the Newton solve of normal.py and the lateral force use it.
    """
    storage = np.zeros_like(z)
    integral_storage = np.zeros_like(z)
    integral_loss = np.zeros_like(z) if need_loss else None
    for k in range(tops.shape[1]):
        v = (tops[:, k] - z) / width
        cdf = special.ndtr(v)
        psi = v * cdf + np.exp(-0.5 * v * v) / _SQRT_2PI
        storage += steps_storage[:, k] * cdf
        integral_storage += steps_storage[:, k] * psi
        if need_loss:
            integral_loss += steps_loss[:, k] * psi
    integral_storage *= width
    if need_loss:
        integral_loss *= width
    return storage, integral_storage, integral_loss


#: Φ(±CUTOFF) is 0 or 1 to double precision (Φ(−8.5) ≈ 1e-17)
CUTOFF = 8.5


def grid_profiles(z_step: float, n_z: int, top, width, *moduli_steps):
    """Σ_k ΔE_k Φ((b_k − z)/w_k) on the grid z = j·z_step, j = 0 … n_z − 1, for each ``moduli_steps``.

    :param top: boundaries b_k (R, K) (m); ``width``: w, scalar or (R, K) (m)
    :param moduli_steps: arrays ΔE_k (R, K) (e.g. storage and loss) sharing the same Φ values
    :returns: list of (R, n_z) arrays.  Φ is evaluated only within ``CUTOFF`` widths of each boundary; below
        that window it is 1, above 0 (exact to double precision), so the cost is small for any n_z.
    """
    top = np.asarray(top, float)
    n_rows, n_layers = top.shape
    width = np.broadcast_to(np.asarray(width, float), top.shape)
    rows = np.arange(n_rows)
    steps_part = [np.zeros((n_rows, n_z + 1)) for _ in moduli_steps]
    near = [np.zeros((n_rows, n_z)) for _ in moduli_steps]
    for k in range(n_layers):
        half = int(math.ceil(CUTOFF * width[:, k].max() / z_step)) + 1
        first = np.floor(top[:, k] / z_step).astype(np.int64) - half  # Φ = 1 below this index
        j = first[:, None] + np.arange(2 * half + 1)
        inside = (j >= 0) & (j < n_z)
        phi = special.ndtr((top[:, k, None] - j * z_step) / width[:, k, None])
        r, jj = np.nonzero(inside)
        for acc, local, d in zip(steps_part, near, moduli_steps):
            acc[rows, np.clip(first, 0, n_z)] += d[:, k]
            local[r, j[r, jj]] += (d[:, k, None] * phi)[r, jj]
    # Φ = 1 at index i < first_k: the sum of ΔE_k over the boundaries whose window starts above i
    # (a reverse cumulative sum, so that it is exactly 0 above the last window)
    return [np.cumsum(acc[:, ::-1], axis=1)[:, ::-1][:, 1:] + local for acc, local in zip(steps_part, near)]


def mean_profile(params: Parameters, potential, z_step: float, n_z: int):
    """Population mean E'(z), E''(z) (Pa) at each ``potential`` (n,) on the grid z = j·z_step: (n, n_z) each.

    Exact expectation over the per-location variability (module docstring).
    """
    thickness, storage, tan_delta = median_layers(params, np.asarray(potential, float))
    top = np.cumsum(thickness, axis=-1)
    var = (params.thickness_spread * top) ** 2 + params.layer_thickness_spread ** 2 * np.cumsum(thickness ** 2, -1)
    scale = np.sqrt(params.transition_width ** 2 + var)
    return grid_profiles(z_step, n_z, top, scale, steps(storage), steps(storage * tan_delta))


def electrode_field(params: Parameters, nx: int, ny: int, rng):
    """Electrode surface height (m) per location (ny, nx): mean + correlated roughness + tilt.

    Roughness: white noise filtered by a Gaussian of sd ``roughness_length / grid_step`` grid steps,
    scaled to exactly ``roughness`` rms over the grid.
    """
    white = rng.standard_normal((ny, nx))
    field = np.zeros((ny, nx))
    if params.roughness > 0 and nx * ny > 1:
        smooth = ndimage.gaussian_filter(white, params.roughness_length / params.grid_step, mode="reflect")
        smooth -= smooth.mean()
        rms = smooth.std()
        if rms > 0:
            field = smooth * (params.roughness / rms)
    y, x = np.mgrid[0:ny, 0:nx] * params.grid_step
    tilt_x, tilt_y = params.electrode_tilt
    return params.electrode_position + field + tilt_x * x + tilt_y * y
