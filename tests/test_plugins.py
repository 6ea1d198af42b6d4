"""The plugin system from outside: a third-party package installed with pip is found through its
entry point (`nrm plugins`, `nrm.open`), and broken plugins are reported and skipped."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nrm_plugins as nrm
from nrm_plugins.plugins import get_plugin_manager

HERE = Path(__file__).parent
TOY = HERE / "plugins" / "nrm-toyvendor"
BROKEN = HERE / "plugins" / "nrm-broken"

TOY_TEXT = """TOYNRM 1
spring_constant 0.5
ramp 0 approach
30 0.0
20 0.1
10 0.5
ramp 1 retract
10 0.4
20 0.05
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """pip-install the example packages into a private folder (not the test environment)."""
    target = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
           "--target", str(target), str(TOY), str(BROKEN)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    get_plugin_manager(reload=True)
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.startswith(("nrm_toyvendor", "nrm_broken"))]:
        del sys.modules[name]
    importlib.invalidate_caches()
    get_plugin_manager(reload=True)


def _nrm(site, *args):
    env = dict(os.environ, PYTHONPATH=str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "nrm_plugins", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_nrm_plugins_lists_builtins_third_party_and_broken(site):
    out = _nrm(site, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["nanonis"]["origin"] == "built-in" and rows["storage"]["origin"] == "built-in"
    assert rows["storage"]["writes"] == ["netcdf", "zarr"]
    toy = rows["toyvendor"]
    assert (toy["origin"], toy["version"], toy["status"]) == ("nrm-toyvendor", "0.2.0", "ok")
    assert {"nrm_read", "nrm_read_identify", "nrm_analyses"} <= set(toy["hooks"])
    assert toy["methods"] == {"analysis": ["toy-max-deflection"]}
    assert rows["broken_import"]["status"] == "broken"
    assert "ModuleNotFoundError" in rows["broken_import"]["error"]
    assert rows["broken_hook"]["status"] == "broken"
    assert "formats exploded" in rows["broken_hook"]["error"]
    text = _nrm(site, "plugins")
    assert text.returncode == 0
    assert "toyvendor" in text.stdout and "nrm-toyvendor" in text.stdout and "skipped:" in text.stdout


def test_third_party_reader_through_nrm_open(site, tmp_path):
    path = tmp_path / "two.toy"
    path.write_text(TOY_TEXT)
    with pytest.warns(RuntimeWarning, match="identify exploded"):
        ds = nrm.open(path)
    assert ds.attrs["reader"] == "toyvendor"
    assert ds.sizes == {"ramp": 2, "sample": 3}
    np.testing.assert_allclose(ds["piezo"].values[0], [30e-9, 20e-9, 10e-9])
    np.testing.assert_allclose(ds["deflection"].values[1, :2], [0.4, 0.05])
    assert np.isnan(ds["deflection"].values[1, 2])  # NaN padding, not zero
    assert list(ds["direction"].values) == ["approach", "retract"]
    method = get_plugin_manager().method("analysis", "toy-max-deflection")
    np.testing.assert_allclose(method.function(ds).values, [0.5, 0.4])
    # the CLI finds it too
    out = _nrm(site, "info", str(path), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)[0]
    assert (info["reader"], info["ramps"], info["samples"]) == ("toyvendor", 2, 3)


def test_broken_plugin_does_not_break_reading_other_files(site, tmp_path):
    ds = nrm.model.ramps_dataset({"deflection": (np.ones((2, 4)), "V", "Input 2 (V)")})
    path = tmp_path / "x.nc"
    nrm.save(ds, path)
    with pytest.warns(RuntimeWarning, match="broken_hook"):
        back = nrm.open(path)
    np.testing.assert_array_equal(back["deflection"].values, 1.0)


def test_unknown_file_names_the_readers_tried(tmp_path):
    path = tmp_path / "mystery.bin"
    path.write_bytes(b"\x00\x01definitely not an AFM file" * 10)
    with pytest.raises(nrm.ReaderError, match="mystery.bin.*no reader recognises"):
        nrm.open(path)
