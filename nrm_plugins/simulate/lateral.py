"""Lateral channel: the complex lateral force on the dithered tip (DESIGN.md §1.2, §1.4–1.5).

The sample is dithered by ``A_l`` (zero-to-peak).  The layer above the tip (tip–electrode distance z_p,
embedded length ``z_l = h − z_p``) resists with stiffness (Eq. 5 of the 1D-NRM paper, integrated)::

    K(z_p) = 4 r_g ∫_{z_p}^{∞} E*(z) dz = 4 r_g (I'(z_p) + i I''(z_p))       (z_p ≥ 0)
    K(z_p) = 4 r_g (I'(0) + i I''(0)) + 8 G_c √(R d)                       (hard contact, z_p = −d)

(the second term is Mindlin's tangential stiffness of the tip–electrode contact).  The cantilever's own
lateral stiffness ``k_lat = k_t / l_t²`` is in series: the tip–sample amplitude is ``A_l − F*/k_lat``, so
``F* = (A_l − F*/k_lat) K``, solved exactly::

    F*(z_p) = A_l K / (1 + K / k_lat)

so ``−dF*/dz_p = 4 r_g A_l E*(z_p)`` when k_lat → ∞, and in hard contact F* saturates at A_l k_lat.
The liquid adds a complex background per ramp, ``F_bg = B + β max(z_p, 0)`` (β = ``background_slope``,
zero in every preset).  Torsion ``θ* = F* l_t / k_t`` (Eq. 1 inverted).
"""
from __future__ import annotations

import numpy as np


def stiffness(int_storage, int_loss, depth, hard, params):
    """Complex layer(+contact) stiffness K (N/m) from the modulus integrals and the Hertz indentation."""
    k = 4 * params.r_g * (int_storage + 1j * int_loss)
    if np.any(hard):
        k = k + np.where(hard, 8 * params.contact_shear_modulus * np.sqrt(params.tip_radius * depth), 0.0)
    return k


def force(k, params):
    """F* = A_l K / (1 + K/k_lat) (N), the series solution of DESIGN.md §1 (tip compliance)."""
    return params.dither_amplitude * k / (1 + k / params.lateral_stiffness)


def torsion(f, params):
    """θ* = F* l_t / k_t (rad)."""
    return f * (params.tip_length / params.torsional_stiffness)
