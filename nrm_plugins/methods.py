"""Self-describing processing methods (nanite's idea: identifier, name, parameters, citation).

A processing plugin returns :class:`Method` objects from ``nrm_contact_methods``,
``nrm_derivative_methods`` or ``nrm_analyses``.  The pipeline looks methods up by ``name``; ``nrm
plugins`` lists them with their parameters.  Unlike nanite, a method that cannot do its job says so per
ramp (flag + reason) instead of silently falling back to something else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Parameter:
    """One tunable parameter of a method."""

    name: str
    default: Any
    unit: str = ""
    doc: str = ""


@dataclass(frozen=True)
class Method:
    """A processing step a plugin provides.

    ``function`` is called with the batch of ramps and the parameters as keyword arguments; what it
    receives and returns depends on ``kind`` (documented in :mod:`nrm_plugins.hookspecs`).
    """

    name: str
    title: str
    kind: str  # "contact", "derivative" or "analysis"
    function: Callable
    parameters: tuple[Parameter, ...] = field(default_factory=tuple)
    citation: str = ""
    description: str = ""

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.parameters}

    def resolve(self, **given) -> dict:
        """The parameters with ``given`` values applied; an unknown name is an error."""
        from .errors import CalibrationError

        known = self.defaults()
        unknown = set(given) - set(known)
        if unknown:
            raise CalibrationError(
                f"method '{self.name}' has no parameter(s) {sorted(unknown)}; it has {sorted(known)}"
            )
        known.update({k: v for k, v in given.items() if v is not None})
        return known
