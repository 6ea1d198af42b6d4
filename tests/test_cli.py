"""The `nrm` command line: --version, --help everywhere, one-line errors, convert safety."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

import nrm_plugins as nrm
from nrm_plugins.cli import build_parser

from test_model_storage import make_model


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "nrm_plugins", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_version():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"nrm-plugins {nrm.__version__}"


def test_every_command_has_help():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"info", "convert", "plugins"} <= set(commands)
    for name in commands:
        out = run(name, "--help")
        assert out.returncode == 0, (name, out.stderr)
        assert "--debug" in out.stdout and "usage: nrm " + name in out.stdout


def test_error_is_one_line_without_traceback(tmp_path):
    missing = tmp_path / "nope.3ds"
    out = run("info", str(missing))
    assert out.returncode == 1
    assert out.stderr.strip() == f"nrm: error: {missing}: no such file or folder"
    empty = tmp_path / "empty.3ds"
    empty.write_bytes(b"")
    out = run("info", str(empty))
    assert out.returncode == 1 and "empty (0 bytes)" in out.stderr and "Traceback" not in out.stderr
    out = run("info", str(empty), "--debug")
    assert out.returncode == 1 and "Traceback" in out.stderr


def test_convert_never_overwrites_without_force(tmp_path):
    src = tmp_path / "m.nc"
    nrm.save(make_model(), src)
    dst = tmp_path / "copy.zarr"
    assert run("convert", str(src), "-o", str(dst)).returncode == 0
    np.testing.assert_array_equal(nrm.open(dst)["piezo"].values, make_model()["piezo"].values)
    out = run("convert", str(src), "-o", str(dst))
    assert out.returncode == 1 and "exists; use --force" in out.stderr
    assert run("convert", str(src), "-o", str(dst), "--force").returncode == 0
    # several inputs into a folder
    outdir = tmp_path / "many"
    out = run("convert", str(src), str(dst), "-o", str(outdir), "--to", "netcdf")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in outdir.iterdir()) == ["copy.nc", "m.nc"]


def test_info_json_and_channel_override(tmp_path):
    import json

    src = tmp_path / "m.nc"
    nrm.save(make_model(), src)
    out = run("info", str(src), "--json", "--channels", "lateral_x=Input 3 (V),lateral_y=Input 4 (V)")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)[0]
    assert info["roles"] == ["piezo", "deflection", "lateral_x", "lateral_y"]
    assert (info["ramps"], info["samples"]) == (3, 5)
    out = run("info", str(src), "--channels", "lateral_x=Input 7 (V)")
    assert out.returncode == 1 and "no such channel" in out.stderr and "Input 3 (V)" in out.stderr
