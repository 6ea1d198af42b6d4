"""Normal channel: cantilever deflection δ along a ramp (DESIGN.md §1.1, §1.3).

Force balance on the cantilever (stiffness k_c), tip–electrode distance ``z_p = x + δ`` with
``x = s − c`` the true piezo position ``s`` relative to the electrode ``c`` (larger = farther)::

    k_c δ = F(z_p),   F(z) = c_n I'(z)                           for z ≥ 0 (layer repulsion)
                      F(z) = c_n I'(0) + (4/3) E_r √R d^{3/2}     for z = −d < 0 (Hertz, hard contact)

``I'`` is the integral of the storage modulus above z (sample.py) and ``c_n`` (m) the normal coupling,
so the layer pushes the cantilever by ``δ_0 = c_n I'(0)/k_c`` (≈ 0.1–2 nm) before hard contact.
``F`` falls with z, so the root is unique: in the layer it is found by Newton's method on δ (first step
from ``δ = max(0, −x)``, iterates kept inside the bracket ``[max(0, −x), c_n I'(max(x, 0))/k_c]``), each
point until its next step is below 1e-15 m (the reported δ is the last point where the force was
evaluated, so force and deflection are consistent to that); in hard contact
(``x < −δ_0``) by Newton's method on ``u = √d`` of ``κ u³ + k_c u² = k_c(−x) − c_n I'(0)``
(κ = (4/3) E_r √R), started above its root.  Above the SEI (``x > b_K + 8 w``) δ = 0 exactly.
"""
from __future__ import annotations

import numpy as np

from . import sample

#: Newton steps stop once a point's step is below this (m); the layer solve allows at most MAX_ITERATIONS
TOLERANCE = 1e-15
MAX_ITERATIONS = 12
CONTACT_ITERATIONS = 8
#: above b_K + FREE_MARGIN * w the layer force is taken as exactly zero (its size there is < 1e-15 of F_0)
FREE_MARGIN = 8.0


def solve(x, tops, steps_storage, steps_loss, params):
    """Deflection δ (m), z_p (m), I'(z_p), I''(z_p) and hard-contact indentation ``d`` (m) of every point
    below the free region; free points (δ = 0, z_p = x, no force) are left out.

    :param x: true piezo position relative to the electrode, (R, n)
    :param tops, steps_storage, steps_loss: per-ramp layer tops and modulus steps (R, K)
    :returns: dict of arrays over the points ``index`` (flat indices into ``x``; ``row`` = their ramp):
        ``delta``, ``z``,
        ``int_storage``, ``int_loss``, ``depth``, ``hard`` (z_p <= 0); and ``force0`` per ramp (N)
    """
    w = params.transition_width
    k_c = params.spring_constant
    c_n = params.normal_coupling
    e0, i0_storage, i0_loss = sample.evaluate(np.zeros(len(tops)), tops, steps_storage, steps_loss, w)
    force0 = c_n * i0_storage  # layer force at z_p = 0, per ramp (N)
    threshold = -force0 / k_c
    n = x.shape[1]
    below = np.flatnonzero(x <= (tops[:, -1] + FREE_MARGIN * w)[:, None])
    x = x.reshape(-1)
    is_hard = x[below] < threshold[below // n]
    hard_idx = below[is_hard]
    layer_idx = below[~is_hard]

    # ---- inside the layer: Newton on g(δ) = k_c δ − c_n I'(x + δ), g' = k_c + c_n E'(x + δ), kept in
    # the bracket [max(0, −x), c_n I'(max(x, 0))/k_c]; the first step starts from δ = max(0, −x).
    layer_row = layer_idx // n
    r = layer_row
    xl = x[layer_idx]
    n_layer = xl.size
    delta = np.empty(n_layer)
    int_storage = np.empty(n_layer)
    int_loss = np.empty(n_layer)
    lower = np.maximum(0.0, -xl)
    upper = np.where(xl > 0, 0.0, force0[r] / k_c)
    above = np.flatnonzero(xl > 0)
    if above.size:
        e_s, i_s, _ = sample.evaluate(xl[above], tops[r[above]], steps_storage[r[above]], None, w, need_loss=False)
        upper[above] = c_n * i_s / k_c
        start = c_n * i_s / (k_c + c_n * e_s)
    below = np.flatnonzero(xl <= 0)
    d = np.empty(n_layer)
    if above.size:
        d[above] = start
    rb = r[below]
    d[below] = lower[below] + (force0[rb] - k_c * lower[below]) / (k_c + c_n * e0[rb])
    active = np.arange(n_layer)
    for _ in range(MAX_ITERATIONS):
        da = np.clip(d[active], lower[active], upper[active])
        ra = r[active]
        e_s, i_s, i_l = sample.evaluate(xl[active] + da, tops[ra], steps_storage[ra], steps_loss[ra], w)
        step = (k_c * da - c_n * i_s) / (k_c + c_n * e_s)
        delta[active], int_storage[active], int_loss[active] = da, i_s, i_l
        d[active] = da - step
        done = np.abs(step) <= TOLERANCE
        active = active[~done]
        if not active.size:
            break

    # ---- hard contact: κ u³ + k_c u² = R, u = √d
    hard_row = hard_idx // n
    r = hard_row
    kappa = 4.0 / 3.0 * params.electrode_modulus * np.sqrt(params.tip_radius)
    rhs = k_c * (-x[hard_idx]) - force0[r]
    u = np.minimum(np.sqrt(rhs / k_c), np.cbrt(rhs / kappa))
    for _ in range(CONTACT_ITERATIONS):
        u = u - (kappa * u ** 3 + k_c * u ** 2 - rhs) / (3 * kappa * u ** 2 + 2 * k_c * u + 1e-300)
    depth = u * u

    n_hard = hard_idx.size
    return {"index": np.concatenate([layer_idx, hard_idx]), "row": np.concatenate([layer_row, hard_row]),
            "delta": np.concatenate([delta, -x[hard_idx] - depth]),
            "z": np.concatenate([xl + delta, -depth]),
            "int_storage": np.concatenate([int_storage, i0_storage[r]]),
            "int_loss": np.concatenate([int_loss, i0_loss[r]]),
            "depth": np.concatenate([np.zeros(n_layer), depth]),
            "hard": np.concatenate([np.zeros(n_layer, bool), np.ones(n_hard, bool)]),
            "force0": force0}


def ideal_intersection(rows, piezo, delta, contact):
    """The noise-free two-line intersection (m, piezo coordinates) of each ramp: ``truth.contact_ideal``.

    Baseline line: δ = 0 (the noise-free free part; adding the recorded baseline offset and tilt, a linear
    function of the piezo, to both lines leaves the intersection where it is).  Contact line: least-squares
    line δ = a·piezo + b through the noise-free δ of every sample in hard contact (z_p ≤ 0).
    Intersection: piezo = −b/a.  NaN when a ramp has fewer than 3 hard-contact samples.

    :param rows: ramp (0 … R−1) of each hard-contact sample; ``piezo``, ``delta``: its recorded piezo
        position and noise-free δ (m)
    :param contact: (R,) true contact in piezo coordinates, used only to centre the fit
    """
    n_rows = len(contact)
    xc = piezo - contact[rows]
    n = np.bincount(rows, minlength=n_rows).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.bincount(rows, xc, n_rows) / n
        my = np.bincount(rows, delta, n_rows) / n
        dx = xc - mx[rows]
        slope = np.bincount(rows, dx * delta, n_rows) / np.bincount(rows, dx * dx, n_rows)
        out = contact - (my - slope * mx) / slope
    return np.where(n >= 3, out, np.nan)
