"""Calibration TOML: contract keys, validation, file-attribute defaults and provenance."""
from __future__ import annotations

import subprocess
import sys

import pytest

from nrm_plugins import CalibrationError
from nrm_plugins.calibration import Calibration, parse_windows
from nrm_plugins.model import ramps_dataset

from conftest import SHARED

EXAMPLE = SHARED / "examples" / "calibration.toml"


def example():
    if not EXAMPLE.exists():
        pytest.skip(f"{EXAMPLE} absent (../shared not beside the project)")
    return Calibration.from_toml(EXAMPLE)


def test_contract_example_reads_with_its_values():
    cal = example()
    assert cal["lateral", "dither_amplitude"] == 1.0e-9
    assert cal["lockin", "phase"] == 12.0 and cal["lockin", "offset"] == [0.0, 0.0]
    assert cal["channels", "lateral_y"] == "Input 4 (V)"
    assert cal.sources["normal.invols"] == "calibration file calibration.toml"


@pytest.mark.parametrize("text, match", [
    ("[lateral]\ndither_amplitud = 1e-9\n", r"\[lateral\] dither_amplitud: unknown key"),
    ("[lateralx]\n", r"unknown section \[lateralx\]"),
    ("[lockin]\nsignal = \"outptu\"\n", "expected one of"),
    ("[lockin]\nphase = \"automatic\"\n", "a number in degrees or \"auto\""),
    ("[normal]\nspring_constant = -1.0\n", "must be > 0"),
    ("[normal]\nspring_constant = \"0.5\"\n", "wrong type"),
    ("[processing]\nwindows = [[2.0, 1.5]]\n", "lo < hi"),
    ("normal = 3\n", "must be a \\[section\\]"),
    ("[normal\n", "not valid TOML"),
])
def test_bad_calibration_is_an_error_naming_file_and_key(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=match) as err:
        Calibration.from_toml(path)
    assert "bad.toml" in str(err.value)


def test_values_from_the_data_file_fill_gaps_and_are_recorded():
    cal = Calibration({"lateral": {"dither_amplitude": 1e-9}})
    ds = ramps_dataset({"deflection": (__import__("numpy").zeros((1, 2)), "V", "d")},
                       attrs={"lockin_sensitivity": 0.02, "lockin_frequency": 1234.0, "spring_constant": 0.3})
    res = cal.resolve(ds)
    assert res["lockin", "sensitivity"] == 0.02 and res["lateral", "dither_frequency"] == 1234.0
    assert res.sources["lockin.sensitivity"] == "data file attribute lockin_sensitivity"
    assert res.sources["lockin.expand"] == "default"
    assert res["model", "r_g"] == 1.25 and any("r_g" in w for w in res.warnings)
    # a value in the TOML wins over the file
    cal.set("lockin", "sensitivity", 0.1, "calibration file")
    assert cal.resolve(ds)["lockin", "sensitivity"] == 0.1
    with pytest.raises(CalibrationError, match=r"\[normal\] invols"):
        res.require("normal", "invols")


def test_toml_round_trip_and_contract_checker(tmp_path):
    cal = example()
    path = tmp_path / "written.toml"
    cal.to_toml(path, with_defaults=True)
    again = Calibration.from_toml(path)
    assert again.to_dict() == cal.to_dict(with_defaults=True)
    checker = SHARED / "tools" / "check_contracts.py"
    out = subprocess.run([sys.executable, str(checker), "calibration", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_discovery_rule(tmp_path):
    data = tmp_path / "grid.3ds"
    data.write_bytes(b"")
    assert Calibration.discover(data) is None
    (tmp_path / "calibration.toml").write_text("")
    assert Calibration.discover(data) == tmp_path / "calibration.toml"
    (tmp_path / "grid.nrm.toml").write_text("")
    assert Calibration.discover(data) == tmp_path / "grid.nrm.toml"


def test_parse_windows():
    assert parse_windows("1.5:2.0, 1.0:1.5") == [[1.5, 2.0], [1.0, 1.5]]
    with pytest.raises(CalibrationError, match="not lo:hi"):
        parse_windows("1.5-2.0")


def test_lockin_signal_recorded_by_the_reader_is_used_unless_given():
    import numpy as np

    ds = ramps_dataset({"lateral_x": (np.zeros((1, 2)), "V", "LI Demod 1 X (V)")})
    ds["lateral_x"].attrs["lockin_signal"] = "input"
    res = Calibration().resolve(ds)
    assert res["lockin", "signal"] == "input" and "lockin_signal" in res.sources["lockin.signal"]
    assert Calibration({"lockin": {"signal": "output"}}).resolve(ds)["lockin", "signal"] == "output"
    assert Calibration().resolve(ds.drop_vars("lateral_x"))["lockin", "signal"] == "output"
