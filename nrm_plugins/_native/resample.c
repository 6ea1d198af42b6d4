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

/* one row: values re[i * vs] - ore, im[i * vs] - oim */
static void resample_row(const float *zr, const float *re, const float *im, int64_t vs, float ore, float oim,
                         int64_t m, int64_t l, int64_t h, float top32, float inv, int64_t n_grid, int32_t *seg,
                         float *o, float *po)
{
    const float nanf_ = NAN, ng = (float)n_grid;
    if (h > m) h = m;
    if (h - l < 2 || l < 0) {
        for (int64_t j = 0; j < n_grid; j++) {
            o[2 * j] = o[2 * j + 1] = nanf_;
            if (po) po[j] = nanf_;
        }
        return;
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
        const float r0 = re[s * vs] - ore, r1 = re[(s + 1) * vs] - ore;
        const float i0 = im[s * vs] - oim, i1 = im[(s + 1) * vs] - oim;
        o[2 * j] = r0 + t * (r1 - r0);
        o[2 * j + 1] = i0 + t * (i1 - i0);
        if (po) po[j] = t + (float)s;
    }
}

int nrm_resample(int64_t n, int64_t m, const float *z, const float *values, const int64_t *lo,
                 const int64_t *hi, double top, double step, int64_t n_grid, float *out, float *pos)
{
    nrm_enter();
    int32_t *seg = malloc(sizeof(int32_t) * (size_t)(n_grid + 1));
    if (!seg) return -1;
    for (int64_t r = 0; r < n; r++) {
        const float *vr = values + 2 * r * m;
        resample_row(z + r * m, vr, vr + 1, 2, 0.0f, 0.0f, m, lo[r], hi[r], (float)top, (float)(1.0 / step), n_grid,
                     seg, out + 2 * r * n_grid, pos ? pos + r * n_grid : NULL);
    }
    free(seg);
    return 0;
}

int nrm_resample_xy(int64_t k, const int64_t *rows, int64_t m, const float *z, const float *X, const float *Y,
                    const float *off_x, const float *off_y, const int64_t *lo, const int64_t *hi, double top,
                    double step, int64_t n_grid, float *out, float *pos)
{
    nrm_enter();
    int32_t *seg = malloc(sizeof(int32_t) * (size_t)(n_grid + 1));
    if (!seg) return -1;
    for (int64_t q = 0; q < k; q++) {
        const int64_t r = rows[q];
        resample_row(z + r * m, X + r * m, Y + r * m, 1, off_x[r], off_y[r], m, lo[r], hi[r], (float)top,
                     (float)(1.0 / step), n_grid, seg, out + 2 * q * n_grid, pos ? pos + q * n_grid : NULL);
    }
    free(seg);
    return 0;
}
