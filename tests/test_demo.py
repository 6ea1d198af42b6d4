"""``nrm demo``: runs as a command, writes the vendor file, calibration and truth, prints the truth it used."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

import nrm_plugins as nrm
from nrm_plugins.cli.demo import summary, summary_depths


def test_nrm_demo_writes_files_and_summary(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "nrm_plugins", "demo", str(out), "--grid", "4x4",
                           "--samples", "512", "--seed", "3"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("calibration.toml", "truth.nc"):
        assert (out / name).is_file()
    data = [p for p in out.iterdir() if p.stem == "demo"]
    assert len(data) == 1 and data[0].stat().st_size > 0
    ds = nrm.open(data[0])
    assert ds.sizes["ramp"] == 4 * 16 and ds.sizes["sample"] == 512
    assert "simulating" in proc.stderr  # progress goes to stderr
    with xr.open_dataset(out / "truth.nc") as truth:
        labels = [str(v) for v in truth.window.values]
        rows = [line for line in proc.stdout.splitlines() if line.split() and line.split()[0] in labels]
        assert len(rows) == 4
        for w, line in enumerate(rows):
            assert line.split()[0] == str(truth.window.values[w])
            numbers = [float(v) for v in re.findall(r"\(([-0-9.]+)\)", line)]
            assert numbers[0] == pytest.approx(float(truth.sei_thickness_mean[w]) * 1e9, abs=0.051)
            z1 = summary_depths(truth, w)[0]
            tops = truth.layer_top_mean.isel(window=w).values
            assert any(0 < z1 - lo and z1 < hi for lo, hi in zip([0, *tops[:-1]], tops))  # inside a layer
            e_z1 = float(truth.E_storage_mean.isel(window=w).sel(z=z1, method="nearest")) / 1e6
            assert numbers[1] == pytest.approx(e_z1, abs=0.0051)
        if (out / "results.nc").exists():  # the pipeline is installed: measured values are printed
            assert "—/" not in proc.stdout


def test_demo_bad_grid_is_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nrm_plugins", "demo", str(tmp_path / "x"), "--grid", "four"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["nrm: error: --grid 'four': expected NXxNY, e.g. 20x20"]


def test_summary_table_measured_next_to_truth():
    """With results, each cell is 'measured (truth)'; the numbers come from the named variables."""
    windows = ["1.0-2.0V", "0.005-1.0V"]
    z = np.arange(0, 101) * 1e-10
    truth = xr.Dataset(
        {"sei_thickness_mean": ("window", [5e-9, 30e-9]), "ramps_in_window": ("window", [4, 4]),
         "E_storage_mean": (("window", "z"), np.full((2, 101), 2e6)),
         "E_loss_mean": (("window", "z"), np.full((2, 101), 1e6))},
        coords={"window": windows, "window_low": ("window", [1.0, 0.005]), "window_high": ("window", [2.0, 1.0]),
                "z": z})
    results = xr.Dataset(
        {"sei_thickness_mean": ("window", [6e-9, 29e-9]), "ok": ("ramp", [True, True, False, True]),
         "E_storage_mean": (("window", "z"), np.full((2, 101), 2.5e6)),
         "E_loss_mean": (("window", "z"), np.full((2, 101), 0.5e6))},
        coords={"window": windows, "z": z, "potential": ("ramp", [1.5, 1.2, 0.5, 0.1])})
    text = summary(truth, results)
    first = text.splitlines()[2]
    assert first.split()[:4] == ["1.0-2.0V", "2/2", "6.0", "(5.0)"]
    assert "2.50 (2.00)" in first and "0.50 (1.00)" in first
    assert text.splitlines()[3].split()[:2] == ["0.005-1.0V", "1/2"]
