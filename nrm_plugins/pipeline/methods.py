"""The built-in processing methods, registered as a plugin (entry point ``pipeline`` of the group
``nrm_plugins``) exactly as a third-party package registers its own.

Interfaces (lengths in nanometres, float32 arrays, for speed; the pipeline converts from and to SI):

contact methods
    ``function(x, y, weight=None, **parameters) -> dict`` with ``x`` the piezo position and ``y`` the
    deflection, (ramps, samples), each row ordered from the far end towards the surface (the pipeline
    reverses retract ramps), ``weight`` an optional 0/1 array of usable samples.  The dict holds
    (ramps,) arrays ``position``, ``uncertainty`` (1 σ), ``baseline_slope``, ``baseline_offset``,
    ``contact_slope``, ``contact_offset`` (deflection = offset + slope · x), ``free_end`` and
    ``contact_start`` (sample indices), ``noise`` (deflection noise per sample) and ``flags`` (bit mask
    of :data:`nrm_plugins.pipeline.contact.FLAGS`).
derivative methods
    ``function(values, step, window, **parameters) -> array``: the derivative along axis 1 (per nm) of
    complex profiles sampled every ``step`` nm, NaN outside one contiguous run per row, returning NaN
    exactly where ``values`` is NaN.
analyses
    ``function(...)`` documented per method.
"""
from __future__ import annotations

import numpy as np

from ..hookspecs import hookimpl
from ..methods import Method, Parameter
from . import contact, derivative, statistics, thickness

PAPER = ("1D nanorheology microscopy (1D-NRM): depth-resolved storage and loss moduli of the SEI from "
         "lateral lock-in force ramps (Eqs. 1, 2, 5, 6, 7)")


def central_difference(values, step: float, window: float = 0.0):
    """Plain central differences of the resampled profile (no regularization; for comparison)."""
    out = np.full(values.shape, np.nan, np.complex64)
    out[:, 1:-1] = (values[:, 2:] - values[:, :-2]) / np.float32(2 * step)
    return out


@hookimpl
def nrm_contact_methods():
    return [Method(
        name="two-line",
        title="Two-line intersection (robust baseline × constant-compliance line)",
        kind="contact",
        function=contact.two_line,
        parameters=(
            Parameter("block", 8, "samples", "samples per block (the unit of the robust line fits; halved for "
                      "ramps with a short hard-contact part)"),
            Parameter("threshold", 4.0, "sigma", "outlier threshold, in standard deviations of a block mean"),
            Parameter("region_threshold", 3.0, "sigma", "deviation that ends the free / contact regions"),
            Parameter("baseline_margin", 0.1, "", "fraction of the free region left out at its end"),
            Parameter("contact_slope_range", (-2.0, -0.5), "m/m", "accepted constant-compliance slope"),
            Parameter("noise_floor", 1e-4, "nm", "smallest deflection noise assumed"),
            Parameter("baseline_window", 50.0, "nm", "piezo travel of the local baseline line (curved baselines)"),
        ),
        citation=PAPER + "; DESIGN.md §1.3",
        description=contact.__doc__.strip().splitlines()[0],
    )]


@hookimpl
def nrm_derivative_methods():
    return [
        Method(
            name="local-polynomial",
            title="Local quadratic (Savitzky–Golay) derivative on the resampled depth grid",
            kind="derivative",
            function=derivative.local_polynomial,
            parameters=(Parameter("window", derivative.DEFAULT_WINDOW, "m",
                                  "full width of the local fit ([processing] derivative_window)"),),
            citation="A. Savitzky, M. J. E. Golay, Anal. Chem. 36, 1627 (1964)",
            description=derivative.__doc__.strip().splitlines()[0],
        ),
        Method(
            name="central-difference",
            title="Central differences on the resampled grid (unregularized, for comparison)",
            kind="derivative",
            function=central_difference,
            parameters=(Parameter("window", 0.0, "m", "ignored"),),
            description="dF/dz = (F[k+1] - F[k-1]) / (2 dz); noisy, use only to inspect raw data",
        ),
    ]


@hookimpl
def nrm_analyses():
    return [
        Method(
            name="sei-thickness",
            title="SEI thickness: lateral response above k σ of the liquid background",
            kind="analysis",
            function=thickness.sei_thickness,
            parameters=(
                Parameter("threshold", thickness.THRESHOLD, "sigma", "k of the noise criterion"),
                Parameter("persistence", thickness.PERSISTENCE, "m", "depth over which it must hold"),
                Parameter("secant", thickness.SECANT, "m", "secant length of the linear extrapolation"),
            ),
            description=thickness.__doc__.strip().splitlines()[0],
        ),
        Method(
            name="window-statistics",
            title="Mean profile ± 95 % CI per potential window, |G*| per depth interval, KDE of log10 |G*|",
            kind="analysis",
            function=statistics.t_interval,
            parameters=(
                Parameter("ci_method", "t", "", "'t' or 'bootstrap'"),
                Parameter("bootstrap_samples", 1000, "", "resamples of the bootstrap"),
            ),
            citation=PAPER + " (Fig. 4)",
            description=statistics.__doc__.strip().splitlines()[0],
        ),
    ]
