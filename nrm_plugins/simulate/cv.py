"""Electrode potential during a cyclic voltammogram (CV): time → potential (DESIGN.md §1.7, §3 ``[cv]``).

The potential starts at ``start_potential`` at ``start_time``, sweeps linearly at ``|scan_rate|`` (V/s) to
each of the ``vertices`` in turn (reversing at each), and holds the last vertex afterwards.  Before
``start_time`` it is ``start_potential`` (open-circuit rest).  Without vertices it is one linear sweep
``start_potential + scan_rate (t - start_time)`` for every ``t >= start_time``.

>>> cv_potential([0.0, 500.0, 1995.0, 2500.0], 2.0, -1e-3, [0.005])
array([2.   , 1.5  , 0.005, 0.005])

The pipeline computes the potential of each ramp from the ``[cv]`` section with this same function.
"""
from __future__ import annotations

import math

import numpy as np


def _breakpoints(start_potential: float, scan_rate: float, vertices, start_time: float):
    """Times (s) and potentials (V) of the start and of each vertex (piecewise-linear CV)."""
    if not math.isfinite(scan_rate) or scan_rate == 0:
        raise ValueError(f"[cv] scan_rate = {scan_rate!r}: must be a non-zero number of V/s "
                         "(negative for a cathodic sweep)")
    rate = abs(scan_rate)
    times, potentials = [float(start_time)], [float(start_potential)]
    for i, vertex in enumerate(vertices):
        vertex = float(vertex)
        step = vertex - potentials[-1]
        if i == 0 and step != 0 and math.copysign(1.0, step) != math.copysign(1.0, scan_rate):
            raise ValueError(f"[cv] scan_rate = {scan_rate!r} V/s sweeps {'up' if scan_rate > 0 else 'down'} "
                             f"but the first vertex {vertex} V lies {'below' if step < 0 else 'above'} the "
                             f"start potential {start_potential} V")
        times.append(times[-1] + abs(step) / rate)
        potentials.append(vertex)
    return np.asarray(times), np.asarray(potentials)


def cv_potential(t, start_potential: float, scan_rate: float, vertices=(), start_time: float = 0.0):
    """Electrode potential (V) at times ``t`` (s, on the ramps' clock) of a CV.

    :param t: time(s), any array shape
    :param start_potential: potential at ``start_time`` (V), e.g. the open-circuit voltage
    :param scan_rate: signed sweep rate (V/s), negative for a cathodic first sweep
    :param vertices: turning potentials in order (V); after the last one the potential holds
    :param start_time: CV start on the ramps' time clock (s)
    :returns: float64 array of the shape of ``t``
    """
    t = np.asarray(t, dtype=np.float64)
    if not len(vertices):
        return np.where(t < start_time, float(start_potential),
                        float(start_potential) + scan_rate * (t - start_time))
    times, potentials = _breakpoints(start_potential, scan_rate, vertices, start_time)
    return np.interp(t, times, potentials)


def window_interval(window, start_potential: float, scan_rate: float, vertices=(), start_time: float = 0.0):
    """First time interval ``(t_enter, t_exit)`` (s) during which the CV potential lies in ``[lo, hi)``.

    Only the first sweep segment that crosses the window counts.  :raises ValueError: if the CV never
    reaches the window.
    """
    lo, hi = sorted(float(v) for v in window)
    if vertices:
        times, potentials = _breakpoints(start_potential, scan_rate, vertices, start_time)
    else:  # one endless sweep: a far-away breakpoint in the sweep direction
        span = 1e6 * abs(scan_rate)
        times = np.array([start_time, start_time + 1e6])
        potentials = np.array([start_potential, start_potential + math.copysign(span, scan_rate)])
    for (t0, t1), (u0, u1) in zip(zip(times[:-1], times[1:]), zip(potentials[:-1], potentials[1:])):
        if u0 == u1:
            continue
        a, b = max(lo, min(u0, u1)), min(hi, max(u0, u1))
        if a >= b:
            continue
        ta = t0 + (a - u0) / (u1 - u0) * (t1 - t0)
        tb = t0 + (b - u0) / (u1 - u0) * (t1 - t0)
        return (min(ta, tb), max(ta, tb))
    raise ValueError(f"the CV (start {start_potential} V, vertices {list(vertices)}) never reaches the "
                     f"window [{lo}, {hi}) V")
