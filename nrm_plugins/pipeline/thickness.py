"""SEI thickness per ramp: where the lateral response rises above the free-liquid background.

Criterion (noise-aware, documented in docs/pipeline.md):

1. ``σ`` = the standard deviation of the recorded lateral signal (per component, background removed)
   over the background region of the ramp (the far part of the free liquid, see
   :mod:`nrm_plugins.pipeline.process`), at least :data:`RELATIVE_FLOOR` of the ramp's largest response
   (for noise-free data).
2. Going down from the top of the depth profile, the first grid depth ``z_c`` from which the magnitude
   of the background-free response ``|U(z_p)|`` stays above ``k σ`` (``k`` = :data:`THRESHOLD`; for
   Gaussian noise the magnitude exceeds 5 σ with probability e^{−12.5} ≈ 4·10⁻⁶ per sample) over
   :data:`PERSISTENCE` (m) of depth (longer than the correlation length of lock-in-filtered noise).
3. The response grows linearly with the embedded length just below the top of the layer
   (F* ≈ 4 r_g A_l E*_top (h − z_p)), so the crossing lies ``k σ / slope`` below the top; the
   thickness is ``z_c`` plus that distance, with the slope the secant of |U| over the next
   :data:`SECANT` (m) below ``z_c`` (the correction is limited to that length).

No crossing: thickness 0 (no layer response above the noise) when the profile reaches within
:data:`BOTTOM_REACH` of the electrode, else NaN.  A persistent run cut short by the deep end of the
data (retract ramps lose their deepest samples to the lock-in's memory of the hard contact) counts.  A crossing at the top of the profile
(the response has not returned to the background within the profile): NaN and a warning.
"""
from __future__ import annotations

import numpy as np

from .. import native

THRESHOLD = 5.0
#: noise floor relative to the largest response of the ramp (noise-free data)
RELATIVE_FLOOR = 1e-4
PERSISTENCE = 1.0e-9  # m
SECANT = 1.0e-9  # m
BOTTOM_REACH = 0.5e-9  # m: a profile must reach this close to the electrode to report "no SEI" (0)


def sei_thickness(values, sigma, grid_top: float, step: float):
    """Thickness (nm) from the background-free response on a falling-z grid (see the module docstring).

    :param values: (ramps, grid) complex, NaN outside each ramp's data; grid z = grid_top - k·step (nm)
    :param sigma: (ramps,) noise of each component (same units as ``values``)
    :returns: (thickness (nm, NaN where undetermined), at_top (bool: response above noise at the top))

    Runs the compiled kernel when it is built; :func:`_sei_thickness_numpy` is its reference.
    """
    n, g = values.shape
    p = max(1, int(round(PERSISTENCE * 1e9 / step)))
    q = max(1, int(round(SECANT * 1e9 / step)))
    if native.available() and g > 0:
        thick = np.empty(n)
        at_top = np.empty(n, np.uint8)
        if native.lib().nrm_sei_thickness(n, g, np.ascontiguousarray(values, np.complex64),
                                          np.ascontiguousarray(sigma, np.float64), grid_top, step, p, q,
                                          RELATIVE_FLOOR, THRESHOLD, BOTTOM_REACH * 1e9, thick, at_top):
            raise MemoryError("sei_thickness: out of memory")
        return thick, at_top.view(bool)
    return _sei_thickness_numpy(values, sigma, grid_top, step)


def _sei_thickness_numpy(values, sigma, grid_top: float, step: float):
    n, g = values.shape
    mag = np.abs(values)
    finite = np.isfinite(mag)
    peak = np.max(np.where(finite, mag, 0), axis=1)
    sigma = np.maximum(np.asarray(sigma, np.float32), RELATIVE_FLOOR * peak)
    above = finite & (mag > THRESHOLD * sigma[:, None])
    p = max(1, int(round(PERSISTENCE * 1e9 / step)))
    first = np.argmax(finite, axis=1)
    stop = first + finite.sum(1)  # one past the deepest grid point with data
    # a run cut short by the end of the data (a retract ramp trimmed near the electrode) still counts
    past = np.arange(g)[None, :] >= stop[:, None]
    ok_run = above | past
    run = above.copy()
    for s in range(1, p):
        run[:, :-s] &= ok_run[:, s:]
    anyrun = run.any(1)
    k = np.argmax(run, axis=1)
    at_top = anyrun & (k <= first)
    q = max(1, int(round(SECANT * 1e9 / step)))
    rows = np.arange(n)
    kq = np.minimum(k + q, g - 1)
    m0 = mag[rows, k]
    m1 = mag[rows, kq]
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (m1 - m0) / ((kq - k) * step)
        extra = np.where((slope > 0) & np.isfinite(slope), m0 / slope, 0.0)
    extra = np.clip(extra, 0.0, q * step)
    thickness = np.where(anyrun, grid_top - k * step + extra, 0.0)
    # no response above the noise: 0 if the data reach the electrode, else unknown
    bottom = grid_top - (stop - 1) * step
    thickness = np.where(~anyrun & (bottom > BOTTOM_REACH * 1e9), np.nan, thickness)
    thickness = np.where(at_top, np.nan, thickness)
    return thickness, at_top
