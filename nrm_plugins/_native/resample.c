/* Resampling of each ramp's complex lateral signal onto the falling depth grid (derivative.py resample,
 * same definition, one row at a time).
 *
 * Grid point j (z = top - j*step) takes the segment (i, i+1) of the last sample i < hi whose grid position
 * p_i = (top - z_i)/step has ceil(clip(p_i, 0, n_grid)) <= j; from the grid point of the last sample on,
 * the last segment.  The interpolation weight is clipped to [0, 1] (a grid point never leaves its segment
 * where noise makes z step back), except for at most one grid point beyond the last sample, which is
 * extrapolated.  NaN where the segment starts before lo (above the data) or beyond that one point. */
#include <math.h>
#include <stdlib.h>

#include "kernels.h"

int nrm_resample(int64_t n, int64_t m, const float *z, const float *values, const int64_t *lo,
                 const int64_t *hi, double top, double step, int64_t n_grid, float *out, float *pos)
{
    nrm_enter();
    int32_t *seg = malloc(sizeof(int32_t) * (size_t)(n_grid + 1));
    if (!seg) return -1;
    const float top32 = (float)top, inv = (float)(1.0 / step), ng = (float)n_grid;
    const float nanf_ = NAN;
    for (int64_t r = 0; r < n; r++) {
        const float *zr = z + r * m;
        const float *vr = values + 2 * r * m;
        float *o = out + 2 * r * n_grid;
        float *po = pos ? pos + r * n_grid : NULL;
        int64_t l = lo[r], h = hi[r];
        if (h > m) h = m;
        if (h - l < 2 || l < 0) {
            for (int64_t j = 0; j < n_grid; j++) {
                o[2 * j] = o[2 * j + 1] = nanf_;
                if (po) po[j] = nanf_;
            }
            continue;
        }
        for (int64_t j = 0; j <= n_grid; j++) seg[j] = -1;
        int32_t ci_last = 0;
        for (int64_t i = 0; i < h; i++) {
            float p = (top32 - zr[i]) * inv;
            float c = p > 0.0f ? p : 0.0f; /* NaN -> 0, as np.fmax */
            if (c > ng) c = ng;
            int32_t ci = (int32_t)c; /* ceil of c in [0, n_grid] without a libm call (no SSE4.1 baseline) */
            ci += (float)ci < c;
            seg[ci] = (int32_t)i; /* increasing i: the last one wins */
            ci_last = ci;
        }
        const float p_last = (top32 - zr[h - 1]) * inv;
        int32_t run = -1;
        for (int64_t j = 0; j < n_grid; j++) {
            if (seg[j] > run) run = seg[j];
            int32_t s = j >= ci_last ? (int32_t)(h - 1) : run;
            int beyond = s >= h - 1;
            int nodata = s < l || (beyond && (float)j > p_last + 1.0f);
            if (nodata) {
                o[2 * j] = o[2 * j + 1] = nanf_;
                if (po) po[j] = nanf_;
                continue;
            }
            if (s > h - 2) s = (int32_t)(h - 2);
            float p0 = (top32 - zr[s]) * inv;
            float dp = (top32 - zr[s + 1]) * inv - p0;
            float t = dp > 0.0f ? ((float)j - p0) / dp : 0.0f;
            float cap = beyond ? 1e9f : 1.0f;
            if (t > cap) t = cap;
            if (!(t > 0.0f)) t = 0.0f;
            const float *v0 = vr + 2 * s;
            o[2 * j] = v0[0] + t * (v0[2] - v0[0]);
            o[2 * j + 1] = v0[1] + t * (v0[3] - v0[1]);
            if (po) po[j] = t + (float)s;
        }
    }
    free(seg);
    return 0;
}
