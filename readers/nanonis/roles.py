"""Default roles (DESIGN.md §3) of Nanonis channels — only where the name makes the meaning certain.

========================================  =====================  ==========================================
Nanonis channel                            role                   why
========================================  =====================  ==========================================
sweep signal ``Z (m)`` / ``Z rel (m)``      ``piezo``              the tip height; larger Z = farther from the
                                                                   surface (Nanonis convention, tested on the
                                                                   tunnelling current of real Z spectra)
``... Deflection (V|m)`` (one channel,      ``deflection``         named so by the user in the Nanonis signal
not lateral/horizontal)                                            configuration (e.g. ``Vert. Deflection (V)``)
``LI Demod [N] X (V)`` / ``... Y (V)``      ``lateral_x/_y``       the internal lock-in's demodulated X / Y, in
                                                                   volts at the lock-in *input*
``LI Demod [N] R (V)`` / ``... Phi (deg)``  ``lateral_r/_theta``   the same demodulator's amplitude and phase
``LockinX (V)`` / ``LockinY (V)``           ``lateral_x/_y``       older name of the lock-in X / Y outputs
========================================  =====================  ==========================================

Never given a role: ``Input N (V)`` (a generic ADC input: it may be the deflection, a lock-in output or
anything else — say so with ``[channels]``), ``LIX 1 omega (A)`` / ``LIY 1 omega (A)`` (a demodulated
*tunnelling current*, not a lateral force), filtered copies ``[filt]``, and any lock-in channel when the
file holds more than one demodulator (which one carries the lateral signal is not certain).
The user's ``[channels]`` table (``nrm.open(path, channels=...)``) overrides all of this.
"""
from __future__ import annotations

import re

from nrm_plugins.model import sanitize

from .common import Signal

_DEMOD = re.compile(r"^LI Demod(?: (\d+))? (X|Y|R|Phi|Theta)$", re.IGNORECASE)
_LOCKIN = re.compile(r"^Lockin ?(X|Y)$", re.IGNORECASE)
_COMPONENT_ROLE = {"x": "lateral_x", "y": "lateral_y", "r": "lateral_r", "phi": "lateral_theta",
                   "theta": "lateral_theta"}
_COMPONENT_UNITS = {"x": ("V",), "y": ("V",), "r": ("V",), "phi": ("deg", "rad"), "theta": ("deg", "rad")}
#: attributes added to a lateral channel that comes from Nanonis' internal demodulator
INPUT_VOLTS_NOTE = {
    "lockin_signal": "input",
    "comment": "demodulated by the Nanonis lock-in module: volts at the lock-in input (DESIGN.md §3 "
               "[lockin] signal = \"input\")",
}


def default_roles(signals: dict[str, Signal]) -> dict[str, str]:
    """``{key: Signal}`` of the (unfiltered, forward) channels → ``{key: role}`` for the certain ones."""
    roles: dict[str, str] = {}
    deflection = [k for k, s in signals.items()
                  if "deflection" in s.base.lower() and s.unit in ("V", "m") and not s.filtered
                  and not re.search(r"lat|horiz|tors", s.base, re.IGNORECASE)]
    if len(deflection) == 1:
        roles[deflection[0]] = "deflection"

    demods: dict[str, dict[str, str]] = {}
    for key, s in signals.items():
        match = _DEMOD.match(s.base)
        if match and not s.filtered and s.unit in _COMPONENT_UNITS[match.group(2).lower()]:
            demods.setdefault(match.group(1) or "", {})[match.group(2).lower()] = key
    if len(demods) == 1:
        (components,) = demods.values()
        if "x" in components and "y" in components:
            for component, key in components.items():
                roles[key] = _COMPONENT_ROLE[component]

    lockin = {}
    for key, s in signals.items():
        match = _LOCKIN.match(s.base)
        if match and s.unit == "V" and not s.filtered:
            lockin[match.group(1).lower()] = key
    if set(lockin) == {"x", "y"} and not demods:
        roles[lockin["x"]] = "lateral_x"
        roles[lockin["y"]] = "lateral_y"
    return roles


def is_internal_demodulator(signal: Signal) -> bool:
    """A ``LI Demod`` channel: Nanonis' own lock-in, so its X/Y are volts at the lock-in input."""
    return bool(_DEMOD.match(signal.base))


def parse_roles_header(text: str) -> dict[str, str]:
    """The ``NRM>Roles`` header entry our writer records: ``"deflection=Input 2 (V);..."`` → dict."""
    out = {}
    for part in (text or "").strip().strip('"').split(";"):
        if "=" in part:
            role, name = part.split("=", 1)
            out[role.strip()] = name.strip()
    return out


def variable_names(signals: dict[str, Signal], roles: dict[str, str]) -> dict[str, str]:
    """Variable name of each channel: its role, else the sanitized vendor name (``_filt`` for filtered
    copies), made unique with ``_2``, ``_3``..."""
    names: dict[str, str] = {}
    taken = set(roles.values())
    for key, s in signals.items():
        if key in roles:
            names[key] = roles[key]
            continue
        base = sanitize(s.plain) + ("_filt" if s.filtered else "")
        name, k = base, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        names[key] = name
    return names


def role_attrs(signal: Signal, role: str | None) -> dict:
    """Extra variable attributes for a channel that got a lateral role from Nanonis' own demodulator."""
    if role in ("lateral_x", "lateral_y", "lateral_r") and is_internal_demodulator(signal):
        return dict(INPUT_VOLTS_NOTE)
    return {}
