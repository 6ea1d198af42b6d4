"""Calibration and run settings (DESIGN.md §3): the TOML file, its defaults, and where each value came from.

>>> cal = Calibration.from_toml("calibration.toml")
>>> cal = cal.resolve(ds)                  # fill values the file carries (lock-in sensitivity, frequency...)
>>> cal["lateral", "dither_amplitude"]
1e-09
>>> cal.sources["lockin.sensitivity"]
'data file attribute lockin_sensitivity'

Unknown sections or keys are an error: a typo must not silently fall back to a default.
"""
from __future__ import annotations

import math
import tomllib
from copy import deepcopy
from pathlib import Path

from .errors import CalibrationError

REQUIRED = object()  # no default: the step that needs the value says so
FROM_FILE = object()  # default taken from the data file's attributes when present

_NUM = (int, float)

#: section -> key -> (accepted types, default, unit, doc)
SCHEMA: dict[str, dict[str, tuple]] = {
    "normal": {
        "spring_constant": (_NUM, FROM_FILE, "N/m", "k_c, cantilever normal spring constant"),
        "invols": (_NUM, FROM_FILE, "m/V", "inverse optical lever sensitivity, applied when deflection is in V"),
    },
    "lateral": {
        "dither_amplitude": (_NUM, REQUIRED, "m", "A_l, zero-to-peak lateral dither amplitude"),
        "dither_frequency": (_NUM, FROM_FILE, "Hz", "f, dither frequency (default: the file's lock-in frequency)"),
        "torsion_sensitivity": (_NUM, REQUIRED, "rad/V", "S_lat, torsion angle per volt of lateral signal"),
        "torsional_stiffness": (_NUM, REQUIRED, "N m/rad", "k_t, torsional stiffness"),
        "tip_length": (_NUM, REQUIRED, "m", "l_t, tip length"),
    },
    "lockin": {
        "signal": (str, "output", "", "'output' (analog outputs, 10 V full scale) or 'input' (volts at the input)"),
        "sensitivity": (_NUM, FROM_FILE, "V", "full-scale sensitivity, used when signal = 'output'"),
        "expand": (_NUM, 1, "", "output expand factor (1, 10 or 100)"),
        "time_constant": (_NUM, 0.0, "s", "output filter time constant for lag correction (0: none)"),
        "filter_slope": (_NUM, 24, "dB/oct", "output filter slope (6, 12, 18, 24)"),
        "phase": ((_NUM, str), 0.0, "deg", "instrumental phase removed by rotating X+iY, or 'auto'"),
        "offset": (list, [0.0, 0.0], "V", "X and Y offsets in the recorded units"),
        "amplitude": (str, "rms", "", "'rms' (SR830) or 'peak'"),
    },
    "model": {
        "r_g": (_NUM, 1.25, "", "geometry coefficient of Eq. 5 (default: the paper's 1.25, with a warning)"),
        "r_g_source": (str, "", "", "where the r_g value came from"),
        "poisson": (_NUM, 0.5, "", "Poisson ratio nu; G* = E*/(2(1+nu))"),
    },
    "processing": {
        "z_max": (_NUM, 100e-9, "m", "end of the results' depth grid"),
        "z_step": (_NUM, 0.1e-9, "m", "step of the results' depth grid"),
        "contact_method": (str, "two-line", "", "registered contact-point method"),
        "derivative_method": (str, "local-polynomial", "", "registered derivative method"),
        "derivative_window": ((_NUM, str), "auto", "m", "width of the local fit along z_p"),
        "background_region": ((_NUM, str), "auto", "m", "free part used for the liquid background"),
        "tip_compliance_correction": (bool, False, "", "DESIGN §1 exact inverse with k_lat = k_t/l_t^2"),
        "windows": (list, [], "V", "potential windows [[lo, hi], ...], [lo, hi)"),
        "group_by": (str, "potential", "", "ramp coordinate to group by"),
        "ci_method": (str, "t", "", "'t' or 'bootstrap'"),
        "depth_intervals": (list, [[0.0, 5e-9], [5e-9, 10e-9], [10e-9, 20e-9]], "m", "violin/interval statistics"),
    },
    "cv": {
        "start_potential": (_NUM, REQUIRED, "V", "potential at start_time"),
        "scan_rate": (_NUM, REQUIRED, "V/s", "signed scan rate"),
        "vertices": (list, [], "V", "turning potentials, in order"),
        "start_time": (_NUM, 0.0, "s", "CV start on the ramps' time clock"),
        "file": (str, "", "", "CSV with columns time_s, potential_V"),
    },
    "channels": {role: (str, None, "", f"vendor channel playing the role '{role}'") for role in
                 ("piezo", "deflection", "lateral_x", "lateral_y", "lateral_r", "lateral_theta", "time_in_ramp")},
}

CHOICES = {
    ("lockin", "signal"): ("output", "input"),
    ("lockin", "amplitude"): ("rms", "peak"),
    ("lockin", "expand"): (1, 10, 100),
    ("lockin", "filter_slope"): (6, 12, 18, 24),
    ("processing", "ci_method"): ("t", "bootstrap"),
}
POSITIVE = {("normal", "spring_constant"), ("normal", "invols"), ("lateral", "dither_amplitude"),
            ("lateral", "dither_frequency"), ("lateral", "torsion_sensitivity"),
            ("lateral", "torsional_stiffness"), ("lateral", "tip_length"), ("lockin", "sensitivity"),
            ("model", "r_g"), ("processing", "z_max"), ("processing", "z_step")}
#: data-file attribute that supplies a FROM_FILE value
FILE_ATTRS = {("normal", "spring_constant"): "spring_constant", ("normal", "invols"): "invols",
              ("lateral", "dither_frequency"): "lockin_frequency",
              ("lockin", "sensitivity"): "lockin_sensitivity"}


class Calibration:
    """Validated calibration/settings with the origin of each value (``sources``)."""

    def __init__(self, values: dict | None = None, origin: str = "given", path: Path | None = None):
        self.path = Path(path) if path else None
        self.values: dict[str, dict] = {}
        self.sources: dict[str, str] = {}
        self.warnings: list[str] = []
        values = values or {}
        where = f"{self.path}: " if self.path else ""
        if not isinstance(values, dict):
            raise CalibrationError(f"{where}calibration must be a table of [sections]")
        for section, table in values.items():
            if section not in SCHEMA:
                raise CalibrationError(f"{where}unknown section [{section}]; known: {', '.join(SCHEMA)}")
            if not isinstance(table, dict):
                raise CalibrationError(f"{where}'{section}' must be a [section], not a value")
            for key, value in table.items():
                self.set(section, key, value, origin)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_toml(cls, path) -> "Calibration":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CalibrationError(f"{path}: cannot read the calibration file ({exc.strerror})") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CalibrationError(f"{path}: not valid TOML: {exc}") from None
        return cls(data, origin=f"calibration file {path.name}", path=path)

    @classmethod
    def coerce(cls, calibration) -> "Calibration":
        """A Calibration from a Calibration, a dict, a path to TOML, or None (all defaults)."""
        if isinstance(calibration, Calibration):
            return calibration.copy()
        if calibration is None:
            return cls()
        if isinstance(calibration, dict):
            return cls(calibration)
        return cls.from_toml(calibration)

    @staticmethod
    def discover(data_path) -> Path | None:
        """DESIGN.md §3: ``<stem>.nrm.toml`` beside the file, else ``calibration.toml`` in its folder."""
        data_path = Path(data_path)
        for candidate in (data_path.with_name(data_path.stem + ".nrm.toml"), data_path.parent / "calibration.toml"):
            if candidate.is_file():
                return candidate
        return None

    def copy(self) -> "Calibration":
        new = Calibration.__new__(Calibration)
        new.path, new.values, new.sources = self.path, deepcopy(self.values), dict(self.sources)
        new.warnings = list(self.warnings)
        return new

    # ------------------------------------------------------------------ values
    def set(self, section: str, key: str, value, origin: str = "option") -> None:
        where = f"{self.path}: " if self.path else ""
        if section not in SCHEMA:
            raise CalibrationError(f"{where}unknown section [{section}]; known: {', '.join(SCHEMA)}")
        if key not in SCHEMA[section]:
            raise CalibrationError(f"{where}[{section}] {key}: unknown key; known: {', '.join(SCHEMA[section])}")
        types, _, unit, _ = SCHEMA[section][key]
        if isinstance(value, bool) and types is not bool:
            raise CalibrationError(f"{where}[{section}] {key} = {value!r}: expected a number or text, not a bool")
        if not isinstance(value, types):
            raise CalibrationError(f"{where}[{section}] {key} = {value!r}: wrong type "
                                   f"(expected {_type_name(types)}{', in ' + unit if unit else ''})")
        if isinstance(value, float) and not math.isfinite(value):
            raise CalibrationError(f"{where}[{section}] {key} = {value!r}: must be finite")
        if (section, key) in CHOICES and value not in CHOICES[section, key]:
            raise CalibrationError(f"{where}[{section}] {key} = {value!r}: expected one of {CHOICES[section, key]}")
        if section == "lockin" and key == "phase" and isinstance(value, str) and value != "auto":
            raise CalibrationError(f"{where}[lockin] phase = {value!r}: a number in degrees or \"auto\"")
        if section == "processing" and key in ("derivative_window", "background_region") and \
                isinstance(value, str) and value != "auto":
            raise CalibrationError(f"{where}[processing] {key} = {value!r}: a length in m or \"auto\"")
        if (section, key) in POSITIVE and value <= 0:
            raise CalibrationError(f"{where}[{section}] {key} = {value!r}: must be > 0 ({unit})")
        if section == "lockin" and key == "offset" and (len(value) != 2 or not all(isinstance(v, _NUM) for v in value)):
            raise CalibrationError(f"{where}[lockin] offset = {value!r}: expected [x_offset, y_offset] in V")
        if key in ("windows", "depth_intervals"):
            value = [list(map(float, _pair(where, section, key, w))) for w in value]
        self.values.setdefault(section, {})[key] = value
        self.sources[f"{section}.{key}"] = origin

    def has(self, section: str, key: str) -> bool:
        return key in self.values.get(section, {})

    def get(self, section: str, key: str, default=None):
        """The value, else the schema default (``default`` when there is none)."""
        if self.has(section, key):
            return self.values[section][key]
        d = SCHEMA[section][key][1]
        if d is REQUIRED or d is FROM_FILE or d is None:
            return default
        return deepcopy(d)

    def __getitem__(self, item):
        section, key = item
        return self.get(section, key)

    def require(self, section: str, key: str):
        """The value, or a CalibrationError saying what to add to the TOML."""
        value = self.get(section, key)
        if value is None:
            unit = SCHEMA[section][key][2]
            hint = f" (or a data file that records '{FILE_ATTRS[section, key]}')" if (section, key) in FILE_ATTRS else ""
            raise CalibrationError(f"calibration needs [{section}] {key} ({SCHEMA[section][key][3]}"
                                   f"{', in ' + unit if unit else ''}){hint}")
        return value

    def resolve(self, ds) -> "Calibration":
        """Fill values the TOML leaves out from the data file's attributes; record defaults used."""
        new = self.copy()
        for (section, key), attr in FILE_ATTRS.items():
            if not new.has(section, key) and attr in ds.attrs:
                try:
                    value = float(ds.attrs[attr])
                except (TypeError, ValueError):
                    continue
                if math.isfinite(value) and value > 0:
                    new.set(section, key, value, origin=f"data file attribute {attr}")
        # a lateral channel that says where its volts are measured (e.g. Nanonis' internal demodulator)
        lateral = ds.data_vars.get("lateral_x") if hasattr(ds, "data_vars") else None
        recorded = lateral.attrs.get("lockin_signal") if lateral is not None else None
        if not new.has("lockin", "signal") and recorded in CHOICES["lockin", "signal"]:
            new.set("lockin", "signal", recorded, origin="data file (lateral_x attribute lockin_signal)")
        for section, keys in SCHEMA.items():
            for key, (_, default, _, _) in keys.items():
                if not new.has(section, key) and default not in (REQUIRED, FROM_FILE, None):
                    new.sources.setdefault(f"{section}.{key}", "default")
        if not new.has("model", "r_g"):
            new.warnings.append("[model] r_g not given: the paper's 1.25 is used; r_g depends on tip shape, "
                                "layer thickness and depth (see docs), calibrate it for quantitative moduli")
        return new

    def to_dict(self, with_defaults: bool = False) -> dict:
        out = deepcopy(self.values)
        if with_defaults:
            for section, keys in SCHEMA.items():
                for key in keys:
                    v = self.get(section, key)
                    if v is not None and not (section == "cv" and not self.values.get("cv")):
                        out.setdefault(section, {}).setdefault(key, v)
        return {s: t for s, t in out.items() if t}

    def to_toml(self, path=None, with_defaults: bool = False) -> str:
        text = dumps_toml(self.to_dict(with_defaults))
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


def _pair(where, section, key, w):
    if not isinstance(w, (list, tuple)) or len(w) != 2 or not all(isinstance(v, _NUM) for v in w) or w[0] >= w[1]:
        raise CalibrationError(f"{where}[{section}] {key}: each entry must be [lo, hi] with lo < hi, got {w!r}")
    return w


def _type_name(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    flat = []
    for t in types:
        flat.extend(t if isinstance(t, tuple) else (t,))
    names = {int: "number", float: "number", str: "text", list: "list", bool: "true/false"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in flat))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, int) else repr(float(v))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise CalibrationError(f"cannot write {v!r} to TOML")


def dumps_toml(data: dict) -> str:
    """Write a {section: {key: value}} table as TOML (the subset the calibration uses)."""
    lines = []
    for section, table in data.items():
        lines.append(f"[{section}]")
        for key, value in table.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def parse_windows(text: str) -> list[list[float]]:
    """``"1.5:2.0,1.0:1.5"`` → [[1.5, 2.0], [1.0, 1.5]] (the CLI's ``--windows``)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            lo, hi = (float(x) for x in part.split(":"))
        except ValueError:
            raise CalibrationError(f"--windows: '{part}' is not lo:hi (volts), e.g. 1.5:2.0") from None
        if lo > hi:
            lo, hi = hi, lo
        if lo == hi:
            raise CalibrationError(f"--windows: '{part}' is an empty window")
        out.append([lo, hi])
    return out
