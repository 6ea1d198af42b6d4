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


def images_in_chromium(html, tmp_path) -> tuple[int, int]:
    """Open ``html`` in real headless Chromium; return (images loaded with a width, images on the page).

    Skips with the reason when the Debian ``chromium`` program is absent (CI installs it).
    """
    import re
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium binary on PATH (Debian package 'chromium')")
    check = ("<script>window.addEventListener('load',function(){var im=document.images,n=0;for(var i=0;i<im.length;"
             "i++){if(im[i].complete&&im[i].naturalWidth>0)n++;}document.body.dataset.imagesLoaded=n;"
             "document.body.dataset.imagesTotal=im.length;});</script>")
    page = Path(tmp_path) / "page.html"
    page.write_text(Path(html).read_text(encoding="utf-8").replace("</body>", check + "</body>"), encoding="utf-8")
    run = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={Path(tmp_path) / 'profile'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", run.stdout)
    assert body, run.stderr[-2000:]
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(0))
    total = re.search(r'data-images-total="(\d+)"', body.group(0))
    assert loaded and total, body.group(0)
    return int(loaded.group(1)), int(total.group(1))


def assert_each_raises_reader_error(tmp_path, cases: dict) -> None:
    """Write each ``{file name: bytes}`` and check ``nrm.open`` raises a ReaderError naming that file."""
    import nrm_plugins as nrm

    for name, content in cases.items():
        path = Path(tmp_path) / name
        path.write_bytes(content)
        with pytest.raises(nrm.ReaderError) as info:
            nrm.open(path)
        assert name in str(info.value)
