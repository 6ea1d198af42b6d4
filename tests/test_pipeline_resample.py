"""Resampling onto the depth grid where noise makes z_p step back at the deep end of a profile."""
from __future__ import annotations

import numpy as np

from nrm_plugins.pipeline import derivative


def _ramps():
    """Two rows of z_p (nm) every 0.15 nm; in row 0 the second-to-last sample lies deeper than the last."""
    z = np.arange(21.0, 0.4, -0.15).astype(np.float32)[None, :].repeat(2, 0)
    z[0, -2:] = [0.45, 0.62]
    values = (1.5 * z + 1j * z).astype(np.complex64)
    m = z.shape[1]
    return z, values, np.zeros(2, np.int64), np.full(2, m)


def test_profile_ends_at_the_last_sample_when_z_steps_back():
    z, values, lo, hi = _ramps()
    top, step, n_grid = 20.0, 0.2, 120
    grid, position = derivative.resample(z, values, lo, hi, top, step, n_grid, positions=True)
    zg = top - step * np.arange(n_grid)
    for r in range(2):
        data = np.flatnonzero(np.isfinite(grid[r].real))
        assert data[0] == 0 and np.all(np.diff(data) == 1)  # one run: no isolated value beyond the data
        assert zg[data[-1]] >= z[r, -1] - step - 1e-5  # at most one grid point beyond the last sample
        # the values follow the linear data (within the step-back of the noise: 0.17 nm x 1.5)
        np.testing.assert_allclose(grid[r, data].real, 1.5 * zg[data], atol=0.26)
    # a quantity linear in the sample index resamples to the same line of the positions
    index = np.broadcast_to(np.arange(z.shape[1], dtype=np.float32), z.shape)
    line = derivative.resample(z, (0.25 * index + 2j).astype(np.complex64), lo, hi, top, step, n_grid)
    np.testing.assert_allclose(line, 0.25 * position + 2j, rtol=1e-5, atol=1e-4)
    assert np.array_equal(np.isnan(position), np.isnan(grid.real))
    # the derivative is defined exactly where the resampled profile is
    d = derivative.local_polynomial(grid, step, 2.0)
    assert np.array_equal(np.isfinite(d.real), np.isfinite(grid.real))
