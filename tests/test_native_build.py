"""The compiled kernels are built and used (outside test_native_kernels.py, whose tests are skipped when
the kernels are unavailable: this one must fail then, or a failed build would pass unnoticed)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nrm_plugins import native


@pytest.mark.skipif(os.environ.get("NRM_PURE_PYTHON", "") not in ("", "0"), reason="NRM_PURE_PYTHON is set")
def test_kernels_are_built():
    """An install with a C compiler builds the kernels; a failed build would silently fall back to numpy."""
    assert native.available(), native.reason
    out = subprocess.run([sys.executable, "-m", "nrm_plugins", "plugins"], capture_output=True, text=True, check=True)
    assert "compiled pipeline kernels: yes" in out.stdout
    off = subprocess.run([sys.executable, "-m", "nrm_plugins", "plugins"], capture_output=True, text=True, check=True,
                         env={**os.environ, "NRM_PURE_PYTHON": "1"})
    assert "compiled pipeline kernels: no (turned off by NRM_PURE_PYTHON)" in off.stdout
