"""``nrm process`` end to end: simulated files written by the Nanonis writer, read back, processed and
written as results that pass the contract checker."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nrm_plugins as nrm
from nrm_plugins import simulate
from nrm_plugins.cli import main

CHECKER = Path(__file__).resolve().parents[2] / "shared" / "tools" / "check_contracts.py"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sims")
    a = simulate.simulate("realistic", nx=6, ny=6, seed=1, defects={"no_contact": 2})
    b = simulate.simulate("realistic", nx=6, ny=6, seed=2)
    pa = a.write(root / "a")
    pb = b.write(root / "b")
    return pa, pb, a, b


def _check(path):
    out = subprocess.run([sys.executable, str(CHECKER), "results", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_process_one_file_with_discovered_calibration(files, tmp_path, capsys):
    pa, _, a, _ = files
    out = tmp_path / "res.nc"
    assert main(["process", str(pa["data"]), "-o", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "144 ramps read, 142 accepted, 2 rejected" in text
    assert "no hard contact: 2" in text
    _check(out)
    res = nrm.open(out)
    assert res.attrs["source_files"] == [str(pa["data"])]
    err = np.abs(res.contact_position.values - a.truth.contact_ideal.values)[res.ok.values] * 1e9
    assert np.median(err) < 0.05
    assert res.window.values.tolist() == ["1.5-2.0V", "1.0-1.5V", "0.5-1.0V", "0.005-0.5V"]


def test_process_several_files_windows_and_no_profiles(files, tmp_path, capsys):
    pa, pb, a, b = files
    out = tmp_path / "both.nc"
    code = main(["process", str(pa["data"]), str(pb["data"]), "--calibration", str(pa["calibration"]),
                 "--windows", "1.0:2.0,0.005:1.0", "--no-profiles", "-o", str(out), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "288 ramps read" in text and "1.0-2.0V" in text
    _check(out)
    res = nrm.open(out)
    assert res.attrs["profiles"] == "omitted" and "E_storage" not in res
    assert len(set(res.source.values.tolist())) == 2
    assert res.sei_thickness_n.values.sum() == res.attrs["counts"]["accepted"]


def test_errors_are_one_line(files, tmp_path, capsys):
    pa, _, _, _ = files
    out = tmp_path / "x.nc"
    out.write_text("occupied")
    assert main(["process", str(pa["data"]), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "exists; use --force" in err and err.count("\n") == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("[lateral]\ndither_amplitude = 1e-9\n")
    assert main(["process", str(pa["data"]), "--calibration", str(bad), "-o", str(tmp_path / "y.nc")]) == 1
    err = capsys.readouterr().err
    assert "calibration needs" in err and "invols" in err and "torsion_sensitivity" in err and "bad.toml" in err
