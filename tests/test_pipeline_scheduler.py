"""`--scheduler` (DESIGN §3 CLI, §6 scale): the same results on local threads and on a dask.distributed
cluster (a real scheduler process on loopback), and a clear error for an unreachable one."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import nrm_plugins as nrm
from nrm_plugins import simulate


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sched")
    sim = simulate.simulate("noisy", nx=6, ny=6, n_samples=512, seed=5)
    paths = sim.write(folder)
    return paths, sim


def _process(paths, out, *extra):
    return subprocess.run([sys.executable, "-m", "nrm_plugins", "process", str(paths["data"]), "--calibration",
                           str(paths["calibration"]), "-o", str(out), "--quiet", *extra],
                          capture_output=True, text=True, timeout=300)


def test_local_threads_give_the_same_results(written, tmp_path):
    paths, sim = written
    one = _process(paths, tmp_path / "one.nc", "--scheduler", "local:1")
    two = _process(paths, tmp_path / "two.nc", "--scheduler", "local:3")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    a, b = nrm.open(tmp_path / "one.nc").load(), nrm.open(tmp_path / "two.nc").load()
    np.testing.assert_array_equal(a.contact_position.values, b.contact_position.values)
    np.testing.assert_array_equal(a.E_storage.values, b.E_storage.values)
    err = np.abs(a.contact_position.values - sim.truth.contact_ideal.values)
    assert np.median(err) < 0.1e-9


def test_dask_distributed_cluster_gives_the_same_results(written, tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask.distributed not installed (extra 'dask')")
    paths, _ = written
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        out = _process(paths, tmp_path / "dask.nc", "--scheduler", cluster.scheduler_address)
    assert out.returncode == 0, out.stderr
    ref = _process(paths, tmp_path / "ref.nc")
    assert ref.returncode == 0, ref.stderr
    a, b = nrm.open(tmp_path / "dask.nc").load(), nrm.open(tmp_path / "ref.nc").load()
    np.testing.assert_array_equal(a.contact_position.values, b.contact_position.values)
    np.testing.assert_array_equal(a.ok.values, b.ok.values)
    np.testing.assert_allclose(a.E_storage_mean.values, b.E_storage_mean.values, rtol=1e-6, equal_nan=True)


def test_bad_scheduler_is_one_line(written, tmp_path):
    paths, _ = written
    out = _process(paths, tmp_path / "x.nc", "--scheduler", "local:zero")
    assert out.returncode == 1 and out.stderr.strip().startswith("nrm: error: --scheduler 'local:zero'")
    out = _process(paths, tmp_path / "y.nc", "--scheduler", "tcp://127.0.0.1:9")
    assert out.returncode == 1 and "cannot reach the dask scheduler" in out.stderr and "Traceback" not in out.stderr
