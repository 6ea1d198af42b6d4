/* First pass over each ramp (process.py _chunk, "valid length, NaN and clipping" and "orientation"; the
 * same definitions as the numpy code): per-row statistics, then the oriented working arrays.
 *
 * stats (12, n) doubles: length (one past the last finite piezo sample, 0 without one), first finite piezo
 * index, p_first, p_last (piezo there and at length - 1), reverse (p_first < p_last: a retract, reversed
 * within its first `length` samples), any non-finite piezo, deflection, lateral (X or Y) sample, max |X|,
 * max |Y| (NaN ignored; NaN without values), the largest deflection and the number of samples at it.
 * x = (piezo - p_first) * 1e9 (nm, float32; p_first = 0 when not finite), y = deflection * scale, X, Y. */
#include <math.h>

#include "kernels.h"

enum { S_LEN, S_FIRST, S_PFIRST, S_PLAST, S_REV, S_NANP, S_NAND, S_NANL, S_TOPX, S_TOPY, S_DMAX, S_NDMAX };

static float nanmax_abs(const float *a, int64_t m)
{
    float t = NAN;
    for (int64_t i = 0; i < m; i++) {
        float v = fabsf(a[i]);
        if (v > t || (isnan(t) && !isnan(v))) t = v;
    }
    return t;
}

static int any_nonfinite(const float *a, int64_t m)
{
    float s = 0.0f;
    for (int64_t i = 0; i < m; i++) s += a[i] * 0.0f; /* NaN or inf -> NaN */
    return isnan(s);
}

void nrm_prepare(int64_t n, int64_t m, const double *piezo, const float *defl, const float *lx, const float *ly,
                 double scale, float *x, float *y, float *X, float *Y, double *stats)
{
    nrm_enter();
    const float sc = (float)scale;
    for (int64_t r = 0; r < n; r++) {
        const double *p = piezo + r * m;
        const float *d = defl + r * m, *a = lx + r * m, *b = ly + r * m;
        float *xr = x + r * m, *yr = y + r * m, *Xr = X + r * m, *Yr = Y + r * m;
        int64_t first = -1, last = -1;
        int nan_p = 0;
        for (int64_t i = 0; i < m; i++) {
            if (isfinite(p[i])) {
                if (first < 0) first = i;
                last = i;
            } else {
                nan_p = 1;
            }
        }
        int64_t length = last + 1;
        double p_first = first >= 0 ? p[first] : p[0];
        double p_last = p[length > 0 ? length - 1 : 0];
        int reverse = p_first < p_last;
        double ref = isfinite(p_first) ? p_first : 0.0;
        float dmax = NAN;
        for (int64_t i = 0; i < m; i++)
            if (d[i] > dmax || (isnan(dmax) && !isnan(d[i]))) dmax = d[i];
        int64_t ndmax = 0;
        for (int64_t i = 0; i < m; i++) ndmax += d[i] >= dmax;
        double *st = stats + r;
        st[S_LEN * n] = (double)length;
        st[S_FIRST * n] = (double)(first >= 0 ? first : 0);
        st[S_PFIRST * n] = p_first;
        st[S_PLAST * n] = p_last;
        st[S_REV * n] = reverse;
        st[S_NANP * n] = nan_p;
        st[S_NAND * n] = any_nonfinite(d, m);
        st[S_NANL * n] = any_nonfinite(a, m) || any_nonfinite(b, m);
        st[S_TOPX * n] = nanmax_abs(a, m);
        st[S_TOPY * n] = nanmax_abs(b, m);
        st[S_DMAX * n] = dmax;
        st[S_NDMAX * n] = (double)ndmax;
        /* oriented copies: a reversed row is reversed within its first `length` samples */
        int64_t L = reverse ? length : 0;
        for (int64_t i = 0; i < m; i++) {
            int64_t s = i < L ? L - 1 - i : i;
            xr[i] = (float)((p[s] - ref) * 1e9);
            yr[i] = d[s] * sc;
            Xr[i] = a[s];
            Yr[i] = b[s];
        }
    }
}
