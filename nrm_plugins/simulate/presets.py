"""Simulation parameters (SI units) and the presets from "clean" to "rough".

A preset is a set of overrides of :class:`Parameters`; ``simulate(preset, **overrides)`` applies the
preset, then the caller's overrides.  ``docs/simulator.md`` has the same numbers as a table.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Layer:
    """One SEI layer (bottom to top) whose thickness and storage modulus depend on the potential U.

    ``thickness = t0 + t1 * L((u_c - U) / u_w)`` and ``storage = E0 + (E1 - E0) * L((e_c - U) / e_w)``,
    with L the logistic function, so the layer grows (and stiffens or softens) as the potential goes down.
    The loss modulus is ``storage * tan_delta``.
    """

    name: str
    t0: float  # m, thickness at high potential
    t1: float  # m, growth at low potential
    u_c: float  # V, centre of the growth
    u_w: float  # V, width of the growth
    E0: float  # Pa, storage modulus at high potential
    E1: float  # Pa, storage modulus at low potential
    e_c: float  # V
    e_w: float  # V
    tan_delta: float


#: inorganic inner layer, organic intermediate layer, soft outer layer (bottom → top)
SEI_LAYERS = (
    Layer("inner", 1.0e-9, 4.0e-9, 0.8, 0.15, 15e6, 40e6, 0.6, 0.15, 0.08),
    Layer("intermediate", 1.0e-9, 9.0e-9, 1.3, 0.20, 2e6, 4e6, 0.8, 0.20, 0.25),
    Layer("outer", 1.0e-9, 19.0e-9, 0.7, 0.20, 0.5e6, 0.2e6, 0.5, 0.20, 0.5),
)
#: optional thin stiff skin on top of the SEI
SKIN = Layer("skin", 1.0e-9, 0.0, 1.0, 0.2, 8e6, 8e6, 1.0, 0.2, 0.15)

DEFAULT_WINDOWS = ((1.5, 2.0), (1.0, 1.5), (0.5, 1.0), (0.005, 0.5))


@dataclass(frozen=True)
class Parameters:
    """Every knob of the forward model (SI units; the defaults are the "clean" preset)."""

    # --- sample: electrode and SEI (sample.py)
    layers: tuple = SEI_LAYERS
    skin: bool = False  # add SKIN on top of the layers
    transition_width: float = 0.4e-9  # m, Gaussian width of the erf step between layers
    modulus_spread: float = 0.0  # sigma of ln(modulus factor), per location and layer (mean factor = 1)
    thickness_spread: float = 0.0  # relative sd of a thickness factor common to all layers, per location
    layer_thickness_spread: float = 0.0  # relative sd of an extra factor per layer and location
    electrode_position: float = 2.0e-6  # m, mean piezo coordinate of the electrode surface
    roughness: float = 0.0  # m rms of the correlated electrode height field
    roughness_length: float = 200e-9  # m, Gaussian correlation length of that field
    electrode_tilt: tuple = (0.0, 0.0)  # m/m along x and y
    position_jitter: float = 0.0  # m rms, independent per ramp
    position_drift: float = 0.0  # m/s, slow drift of the electrode over the experiment
    grid_step: float = 50e-9  # m between neighbouring locations
    # --- ramps (normal.py)
    ramp_length: tuple = (200e-9, 200e-9)  # m, uniform range of the piezo travel per ramp
    contact_fraction: tuple = (0.15, 0.15)  # part of the travel beyond the electrode surface
    ramp_duration: float | None = None  # s per ramp; None: 1 s, shortened to fit the windows
    creep: float = 0.0  # m rms of the piezo creep accumulated along one ramp (along the motion)
    creep_time: float = 0.3  # creep time constant as a fraction of the ramp duration
    spring_constant: float = 0.5  # k_c, N/m
    invols: float = 60e-9  # m/V
    normal_coupling: float = 4e-9  # m; layer repulsion F = normal_coupling * integral of E' above z_p
    tip_radius: float = 20e-9  # m, for Hertz (normal) and Mindlin (lateral) hard contact
    electrode_modulus: float = 30e9  # Pa, reduced modulus of the tip-electrode Hertz contact
    contact_shear_modulus: float = 10e9  # Pa, reduced shear modulus of the Mindlin contact
    deflection_noise: float = 0.0  # m rms of white deflection noise
    baseline_offset: tuple = (0.2, 0.0)  # V, mean and sd of the photodiode baseline per ramp
    baseline_tilt: float = 0.0  # sd of the baseline slope, m of apparent deflection per m of piezo
    # --- lateral (lateral.py)
    r_g: float = 1.25
    dither_amplitude: float = 1e-9  # A_l, m zero-to-peak
    dither_frequency: float = 1000.0  # f, Hz
    torsional_stiffness: float = 1e-5  # k_t, N m/rad
    tip_length: float = 1e-6  # l_t, m  (k_lat = k_t / l_t^2 = 1e7 N/m: the tip does not bend)
    torsion_sensitivity: float = 2e-7  # S_lat, rad/V
    background: tuple = (0.0, 0.0)  # N/m, mean liquid background per unit A_l (storage, loss)
    background_spread: float = 0.0  # relative sd of the background between ramps
    background_slope: tuple = (0.0, 0.0)  # N/m, weak background trend with z_p (storage, loss)
    # --- lock-in (lockin.py)
    sensitivity: float = 2e-3  # V full scale
    expand: int = 1
    phase: float = 0.0  # deg, instrumental phase: X + iY = V_rms exp(+i phase)
    offset: tuple = (0.0, 0.0)  # V, analog-output offsets of X and Y
    output_noise: float = 0.0  # V rms on each analog output
    clip: float = 10.5  # V, analog outputs saturate at +-clip
    time_constant: float = 0.0  # s, output filter time constant
    filter_slope: int = 24  # dB/oct: cascaded first-order stages (6 dB/oct each)
    # --- electrochemistry (cv.py)
    start_potential: float = 2.0  # V (open circuit)
    scan_rate: float = -1e-3  # V/s
    vertices: tuple = (0.005,)  # V
    cv_start_time: float = 0.0  # s

    @property
    def lateral_stiffness(self) -> float:
        """k_lat = k_t / l_t^2 (N/m), DESIGN.md §1 tip compliance."""
        return self.torsional_stiffness / self.tip_length ** 2

    @property
    def all_layers(self) -> tuple:
        return tuple(self.layers) + ((SKIN,) if self.skin else ())


_REALISTIC_LATERAL = dict(torsional_stiffness=1e-8, tip_length=10e-6, torsion_sensitivity=2e-3)  # k_lat 100 N/m

PRESETS: dict[str, dict] = {
    "clean": {},
    "noisy": dict(ramp_length=(150e-9, 250e-9), contact_fraction=(0.12, 0.2), deflection_noise=0.05e-9,
                  baseline_offset=(0.2, 0.05), baseline_tilt=2e-3, creep=0.3e-9, output_noise=0.25e-3),
    "realistic": dict(ramp_length=(150e-9, 250e-9), contact_fraction=(0.12, 0.2), deflection_noise=0.08e-9,
                      baseline_offset=(0.2, 0.1), baseline_tilt=3e-3, creep=0.5e-9, output_noise=0.5e-3,
                      skin=True, modulus_spread=0.25, thickness_spread=0.08, layer_thickness_spread=0.05,
                      roughness=100e-9, electrode_tilt=(0.02, -0.01), position_jitter=2e-9,
                      position_drift=5e-12, background=(0.01, 0.03), background_spread=0.2,
                      phase=12.0, offset=(0.05, -0.03), time_constant=1e-3, filter_slope=12,
                      **_REALISTIC_LATERAL),
}
PRESETS["rough"] = {**PRESETS["realistic"], "roughness": 300e-9, "roughness_length": 300e-9,
                    "position_jitter": 5e-9}


def parameters(preset: str = "realistic", **overrides) -> Parameters:
    """The :class:`Parameters` of ``preset`` with ``overrides`` applied (unknown names are an error)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown simulator preset '{preset}'; presets: {', '.join(PRESETS)}")
    known = {f.name for f in dataclasses.fields(Parameters)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown simulator parameter(s) {unknown}; known: {', '.join(sorted(known))}")
    params = dataclasses.replace(Parameters(), **{**PRESETS[preset], **overrides})
    _check(params)
    return params


def _check(p: Parameters) -> None:
    positive = ("transition_width", "grid_step", "spring_constant", "invols", "tip_radius", "electrode_modulus",
                "contact_shear_modulus", "r_g", "dither_amplitude", "dither_frequency", "torsional_stiffness",
                "tip_length", "torsion_sensitivity", "sensitivity", "clip", "creep_time", "roughness_length")
    for name in positive:
        if not getattr(p, name) > 0:
            raise ValueError(f"simulator parameter {name} = {getattr(p, name)!r} must be > 0")
    nonneg = ("modulus_spread", "thickness_spread", "layer_thickness_spread", "roughness", "position_jitter",
              "creep", "deflection_noise", "baseline_tilt", "background_spread", "output_noise",
              "time_constant", "normal_coupling")
    for name in nonneg:
        if getattr(p, name) < 0:
            raise ValueError(f"simulator parameter {name} = {getattr(p, name)!r} must be >= 0")
    if p.thickness_spread + p.layer_thickness_spread > 0.2:
        raise ValueError("thickness_spread + layer_thickness_spread must be <= 0.2 (thicknesses stay > 0 "
                         "for the +-4 sigma factors drawn)")
    lo, hi = p.ramp_length
    if not 0 < lo <= hi:
        raise ValueError(f"ramp_length = {p.ramp_length!r}: expected (min, max) with 0 < min <= max (m)")
    lo, hi = p.contact_fraction
    if not 0 < lo <= hi < 0.5:
        raise ValueError(f"contact_fraction = {p.contact_fraction!r}: expected (min, max) in (0, 0.5)")
    if p.filter_slope not in (6, 12, 18, 24):
        raise ValueError(f"filter_slope = {p.filter_slope!r}: one of 6, 12, 18, 24 dB/oct")
    if p.expand not in (1, 10, 100):
        raise ValueError(f"expand = {p.expand!r}: one of 1, 10, 100")
    if not p.layers:
        raise ValueError("layers: at least one SEI layer")
