"""Shared test fixtures: where the real vendor files live, temporary outputs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: ../shared beside the project root (override with NRM_SHARED); GPL/AGPL files are read from there.
SHARED = Path(os.environ.get("NRM_SHARED", ROOT.parent / "shared"))
REAL = SHARED / "data" / "real"


def real_file(relative: str) -> Path:
    """A file of ``shared/data/real``; the test is skipped with the reason when the folder is absent."""
    path = REAL / relative
    if not REAL.is_dir():
        pytest.skip(f"shared real-data folder {REAL} is absent (clone with ../shared beside the project)")
    if not path.exists():
        pytest.fail(f"expected real file {path} is missing from {REAL}")
    return path


@pytest.fixture
def real():
    """``real("nanonis/Z-Spectroscopy002.dat")`` → Path, skipping when shared/ is absent."""
    return real_file


def gwyddion_convert(path, out):
    """Gwyddion 2.62's own decode of ``path``: ``gwyddion --convert-to-gwy=out path`` read with gwyfile.

    Skips with the reason when the Debian ``gwyddion`` program is absent (CI installs it).
    """
    import shutil
    import subprocess

    if shutil.which("gwyddion") is None:
        pytest.skip("the gwyddion binary (Debian package gwyddion 2.62) is not installed")
    gwyfile = pytest.importorskip("gwyfile")
    subprocess.run(["gwyddion", f"--convert-to-gwy={out}", str(path)], check=True, capture_output=True, timeout=120)
    return gwyfile.load(str(out))
