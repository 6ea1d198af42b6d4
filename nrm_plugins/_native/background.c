/* Liquid background of each ramp's lateral signal (process.py _background, same definition, one row at a
 * time): over the samples start <= j < stop that are valid, the means and noise of X and Y, the same over
 * the first part (j < half) and the rest, and least-squares lines of X and Y against the sample index.
 * Two passes in double precision: the means first, then the sums about them. */
#include <float.h>
#include <math.h>
#include <stddef.h>

#include "kernels.h"

enum { ALL_X, ALL_Y, ALL_S, ALL_N, FIRST_X, FIRST_Y, FIRST_S, FIRST_N, SECOND_X, SECOND_Y, SECOND_S, SECOND_N,
       TREND_RE, TREND_IM, TREND_JBAR, TREND_S, NB_OUT };

static double clamp0(double v) { return isnan(v) ? v : (v > 0.0 ? v : 0.0); } /* np.maximum(v, 0) */

static double finite_or_zero(double v)  /* np.nan_to_num */
{
    if (isnan(v)) return 0.0;
    if (isinf(v)) return v > 0 ? DBL_MAX : -DBL_MAX;
    return v;
}

static void moments(double cnt, double sx, double sy, double sxx, double syy, double cx, double cy,
                    double *o)
{
    double mx = sx / cnt, my = sy / cnt;
    double vx = (sxx - sx * mx) / (cnt - 1.0), vy = (syy - sy * my) / (cnt - 1.0);
    o[0] = (float)(mx + cx);
    o[1] = (float)(my + cy);
    double v = clamp0(0.5 * (vx + vy));
    o[2] = sqrt(v);
    o[3] = cnt;
}

int nrm_background(int64_t n, int64_t m, const float *X, const float *Y, const uint8_t *valid,
                   const int64_t *start, const int64_t *stop, const int64_t *half, double *out)
{
    nrm_enter();
    for (int64_t r = 0; r < n; r++) {
        const float *x = X + r * m, *y = Y + r * m;
        const uint8_t *ok = valid ? valid + r * m : NULL;
        int64_t a = start[r] < 0 ? 0 : start[r], b = stop[r] > m ? m : stop[r], hf = half[r];
        double c = 0, mx = 0, my = 0;
        for (int64_t j = a; j < b; j++) {
            if (ok && !ok[j]) continue;
            c += 1;
            mx += x[j];
            my += y[j];
        }
        double cx = c > 0 ? mx / c : 0.0, cy = c > 0 ? my / c : 0.0;
        double s[2][5] = {{0}}, sj = 0, sjj = 0, sjx = 0, sjy = 0;
        for (int64_t j = a; j < b; j++) {
            if (ok && !ok[j]) continue;
            double u = x[j] - cx, v = y[j] - cy, jc = (double)(j - a);
            double *t = s[j < hf ? 0 : 1];
            t[0] += 1; t[1] += u; t[2] += v; t[3] += u * u; t[4] += v * v;
            sj += jc; sjj += jc * jc; sjx += jc * u; sjy += jc * v;
        }
        double al[5];
        for (int k = 0; k < 5; k++) al[k] = s[0][k] + s[1][k];
        double o[4];
        double *dst[3] = {out + ALL_X * n, out + FIRST_X * n, out + SECOND_X * n};
        double *src[3] = {al, s[0], s[1]};
        for (int p = 0; p < 3; p++) {
            moments(src[p][0], src[p][1], src[p][2], src[p][3], src[p][4], cx, cy, o);
            for (int k = 0; k < 4; k++) dst[p][k * n + r] = o[k];
        }
        double cnt = al[0], sx = al[1], sy = al[2];
        double jbar = sj / cnt, cjj = sjj - sj * jbar;
        double bx = (sjx - jbar * sx) / cjj, by = (sjy - jbar * sy) / cjj;
        double var = (clamp0(al[3] - sx * sx / cnt - bx * bx * cjj) + clamp0(al[4] - sy * sy / cnt - by * by * cjj))
                     / (cnt - 2.0);
        /* np.nan_to_num of the complex slope: each part separately */
        out[TREND_RE * n + r] = finite_or_zero(bx);
        out[TREND_IM * n + r] = finite_or_zero(by);
        out[TREND_JBAR * n + r] = jbar + (double)a;
        out[TREND_S * n + r] = sqrt(0.5 * var);
    }
    return 0;
}
