"""The report on real pipeline output of simulated data (nrm_plugins.simulate → nrm.process → nrm.report).

The tables must reproduce what the pipeline stored, the counts what it counted, and the sub-layer
boundaries must agree with the ones of the simulator's exact population-mean profile.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nrm_plugins as nrm
from nrm_plugins.reporting import access, layers

from conftest import images_in_chromium

simulate = pytest.importorskip("nrm_plugins.simulate")
pytest.importorskip("nrm_plugins.pipeline.process")

FAST = {"formats": ("png",), "dpi": 60}


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    sim = simulate.simulate("realistic", nx=10, ny=10, seed=0, defects={"no_contact": 2, "nan_ramp": 1})
    results = nrm.process(sim.model, sim.calibration)
    out = tmp_path_factory.mktemp("report_sim")
    html = nrm.report(results, out, model=sim.model)
    return sim, results, out, html


def test_tables_reproduce_the_pipeline_results(realistic):
    sim, results, out, _ = realistic
    profiles = pd.read_csv(out / "tables" / "profiles.csv")
    for q in ("E_storage", "G_loss", "viscosity"):
        for w, label in enumerate(results.window.values):
            part = profiles[(profiles.quantity == q) & (profiles.window == label)]
            np.testing.assert_array_equal(part["mean"].to_numpy(), results[f"{q}_mean"].values[w])
            np.testing.assert_array_equal(part["ci_low"].to_numpy(), results[f"{q}_ci_low"].values[w])
            np.testing.assert_array_equal(part["n"].to_numpy(), results[f"{q}_n"].values[w])
    windows = pd.read_csv(out / "tables" / "windows.csv")
    np.testing.assert_array_equal(windows.sei_thickness_mean_m, results.sei_thickness_mean.values)
    np.testing.assert_array_equal(windows.sei_thickness_n, results.sei_thickness_n.values)
    # the report's own window assignment equals the simulator's schedule: nx * ny locations per window
    assert list(windows.ramps) == [100, 100, 100, 100]
    assert list(windows.accepted) == list(results.sei_thickness_n.values)
    ramps = pd.read_csv(out / "tables" / "ramps.csv", keep_default_na=False)
    assert list(ramps.ok) == list(results.ok.values)


def test_flag_counts_match_the_pipeline_and_the_defects(realistic):
    sim, results, out, html = realistic
    flags = pd.read_csv(out / "tables" / "flags.csv")
    rejected = flags[flags.status == "rejected"].ramps.sum()
    assert rejected == int((~results.ok.values).sum()) == results.attrs["counts"]["rejected"]
    defect = sim.truth.defect.values.astype(str)
    assert rejected >= int((defect != "").sum()) - 1  # every labelled defect rejected (a NaN run may pass)
    text = Path(html).read_text(encoding="utf-8")
    drawn = len(re.findall(r'id="diagnostics_flagged_\d+"', text))
    n_flagged = int(((~results.ok.values) | (results.flag.values.astype(str) != "")).sum())
    assert drawn == -(-n_flagged // 6)


def test_page_renders_in_headless_chromium(realistic, tmp_path):
    _, _, _, html = realistic
    n_images = len(re.findall(r"<img ", Path(html).read_text(encoding="utf-8")))
    assert n_images >= 9 and images_in_chromium(html, tmp_path) == (n_images, n_images)


def test_sublayer_boundaries_agree_with_the_population_mean_profile():
    """Clean preset with a stiff top skin: every boundary found in the measured window means between 2.5 nm
    and 0.8 × the SEI thickness is one of the exact population-mean profile's (same direction, ± 0.5 nm),
    and every strong one of those (modulus ratio < 1/2 or > 2 across it) is found."""
    sim = simulate.simulate("clean", nx=8, ny=8, seed=0, skin=True)
    results = nrm.process(sim.model, sim.calibration)
    found = layers.boundaries(results)
    truth = sim.truth
    z = truth.z.values
    checked = 0
    for i, label in enumerate(truth.window.values):
        exact = truth.E_storage_mean.values[i]
        expected = layers.find_boundaries(z, exact, exact * 0.999, exact * 1.001, np.full(z.size, 100))
        top = 0.8 * float(truth.sei_thickness_mean.values[i])

        def inside(rows):
            return [r for r in rows if 2.5e-9 <= r["z"] <= top]

        mine = inside([r for r in found if r["window"] == label])
        for r in mine:
            assert any(abs(r["z"] - e["z"]) <= 0.5e-9 and r["change"] == e["change"] for e in inside(expected)), \
                (label, r["z"], [e["z"] for e in inside(expected)])
        for e in inside(expected):
            if e["ratio"] < 0.5 or e["ratio"] > 2:
                assert any(abs(r["z"] - e["z"]) <= 0.5e-9 and r["change"] == e["change"] for r in mine), (label, e)
                checked += 1
    assert checked >= 4


def test_empty_and_one_ramp_windows_give_notes(tmp_path):
    sim = simulate.simulate("noisy", nx=4, ny=4, seed=1)
    potential = np.sort(sim.model.potential.values)
    one = [float(potential[-1]) - 1e-6, float(potential[-1]) + 1e-6]  # the highest potential: one ramp
    results = nrm.process(sim.model, sim.calibration, windows=[[1.0, 2.0], one, [2.5, 3.0]])
    counts = access.window_ramp_counts(results)
    assert [c["note"] for c in counts] == ["", "one ramp: no confidence interval", "no ramps"]
    html = nrm.report(results, tmp_path, model=sim.model, **FAST)
    text = html.read_text(encoding="utf-8")
    assert f"{counts[1]['window']}: one ramp: no confidence interval." in text
    assert "2.5-3.0V: no ramps." in text
    df = pd.read_csv(tmp_path / "tables" / "windows.csv", keep_default_na=False)
    assert list(df.ramps) == [int(((potential >= 1.0) & (potential < 2.0)).sum()), 1, 0]


def test_report_from_the_written_results_file_with_the_cli(tmp_path, capsys):
    from nrm_plugins.cli import main

    sim = simulate.simulate("noisy", nx=3, ny=3, seed=2)
    results = nrm.process(sim.model, sim.calibration)
    nrm.save(results, tmp_path / "results.nc")
    nrm.save(sim.model, tmp_path / "raw.nc")
    code = main(["report", str(tmp_path / "results.nc"), "-o", str(tmp_path / "rep"), "--data", str(tmp_path / "raw.nc"),
                 "--formats", "png", "--dpi", "50"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    html = Path(captured.out.strip())
    assert html == tmp_path / "rep" / "report.html" and html.exists()
    assert (tmp_path / "rep" / "figures" / "diagnostics_sample.png").exists()
    assert "raw data unavailable" not in html.read_text(encoding="utf-8")
