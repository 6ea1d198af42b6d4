"""An SR830-like lock-in: lateral photodiode volts → the X, Y analog outputs as recorded.

Chain (each step the exact inverse of DESIGN.md §3 "Lateral force amplitude")::

    V*   = θ* / S_lat                       peak volts at the lock-in input (complex)
    V_r  = V* / √2                          the SR830 reports rms
    U    = 10 V · expand · V_r e^{+i φ} / sensitivity      analog output, rotated by the instrumental phase φ
    X+iY = filter(U) + offset + noise, each clipped to ±clip (10.5 V)

``filter`` is the output low-pass: ``filter_slope/6`` cascaded first-order stages ``τ y' = x − y`` of time
constant τ along the ramp's time, each integrated exactly for an input linear between samples
(first-order hold, ``e = exp(−Δt/τ)``)::

    y[n] = e y[n−1] + b0 x[n] + b1 x[n−1],   b0 = 1 − τ(1 − e)/Δt,   b1 = τ(1 − e)/Δt − e

started in steady state on the first sample.  A ramp-like signal comes out delayed by exactly
``(filter_slope/6) τ``, as with the instrument's (much faster) internal filter.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import signal


def gain(params) -> float:
    """Analog-output volts per volt of peak lock-in input (rms, 10 V full scale, expand)."""
    return 10.0 * params.expand / (params.sensitivity * math.sqrt(2.0))


def rotation(params) -> complex:
    """Complex analog-output volts per volt of peak input: gain · e^{+i φ}."""
    return gain(params) * complex(math.cos(math.radians(params.phase)), math.sin(math.radians(params.phase)))


#: after this many time constants a stage's response to a step has decayed below double precision
SETTLE = 40.0


def output_filter(values, dt, time_constant, slope, span=None):
    """Cascaded first-order low-pass along the last axis of a real (R, n) array, steady state at the first
    sample.  ``span = (lo, hi)`` per row says where the input departs from a constant (before ``lo`` it
    equals its first sample, from ``hi`` on another constant): only that part plus the settling tail is
    filtered, the rest is the input itself (equal to the filtered value to double precision)."""
    if time_constant <= 0:
        return values
    e = math.exp(-dt / time_constant)
    c = -math.expm1(-dt / time_constant) * time_constant / dt
    b, a = [1.0 - c, c - e], [1.0, -e]
    n = values.shape[-1]
    first, stop = 0, n
    if span is not None and len(span[0]):
        tail = int(math.ceil(SETTLE * (slope // 6) * time_constant / dt))
        first = max(int(np.min(span[0])) - 1, 0)
        stop = min(n, int(np.max(span[1])) + tail)
    if stop <= first:
        return values
    part = values[..., first:stop].astype(np.float64)
    zi = signal.lfilter_zi(b, a)
    for _ in range(slope // 6):
        part, _ = signal.lfilter(b, a, part, axis=-1, zi=zi * part[..., :1])
    values[..., first:stop] = part
    return values


def finish(x, y, params, dt, rng=None, span=None):
    """From the noise-free analog outputs (offsets included; real (R, n) arrays, changed in place): output
    filter (a constant offset passes it unchanged), noise from ``rng``, clipping at ±clip.  Returns (X, Y)."""
    for values in (x, y):
        output_filter(values, dt, params.time_constant, params.filter_slope, span)
        if rng is not None and params.output_noise > 0:
            noise = rng.standard_normal(values.shape, dtype=np.float32)
            noise *= np.float32(params.output_noise)
            values += noise
        np.clip(values, -params.clip, params.clip, out=values)
    return x, y
