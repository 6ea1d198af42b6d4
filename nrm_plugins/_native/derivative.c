/* Savitzky-Golay derivative of complex profiles (derivative.py local_polynomial, same definition, one row
 * at a time): inside the row's data run the slope of the least-squares line over the 2h+1 points around
 * each point; within h points of either end of the run the derivative of the quadratic fitted to the
 * first (last) 2h+1 points.  NaN outside the run and for runs shorter than 2h+1 points. */
#include <math.h>
#include <stdlib.h>

#include "kernels.h"

/* derivative at position q (0..2h) of the least-squares quadratic through f(0..2h), as weights:
 * Gram polynomials on k = 0..K-1 (K = 2h+1), centred c = k - h: P1 = c, P2 = c^2 - h(h+1)/3. */
static void edge_weights(int h, int q, double *wt)
{
    int K = 2 * h + 1;
    double s11 = 0, s22 = 0, a = h * (h + 1) / 3.0;
    for (int k = 0; k < K; k++) {
        double c = k - h, p2 = c * c - a;
        s11 += c * c;
        s22 += p2 * p2;
    }
    double cq = q - h;
    for (int k = 0; k < K; k++) {
        double c = k - h, p2 = c * c - a;
        /* f ~ b0 + b1 P1 + b2 P2, df/dk = b1 + b2 * 2c */
        wt[k] = c / s11 + (p2 / s22) * 2.0 * cq;
    }
}

NRM_VECTOR int nrm_local_polynomial(int64_t n, int64_t g, const float *values, int64_t h, double step, float *out)
{
    nrm_enter();
    const int64_t K = 2 * h + 1;
    float *ker = malloc(sizeof(float) * (size_t)K);
    float *edge = malloc(sizeof(float) * (size_t)(K * K)); /* rows q = 0..2h */
    double *wt = malloc(sizeof(double) * (size_t)K);
    if (!ker || !edge || !wt) {
        free(ker); free(edge); free(wt);
        return -1;
    }
    double s = 0;
    for (int64_t k = -h; k <= h; k++) s += (double)(k * k);
    for (int64_t k = 0; k < K; k++) ker[k] = (float)((k - h) / (s * step));
    for (int q = 0; q < K; q++) {
        edge_weights((int)h, q, wt);
        for (int64_t k = 0; k < K; k++) edge[q * K + k] = (float)(wt[k] / step);
    }
    const float nan_ = NAN;
    for (int64_t r = 0; r < n; r++) {
        const float *v = values + 2 * r * g;
        float *o = out + 2 * r * g;
        int64_t start = -1, count = 0;
        for (int64_t j = 0; j < g; j++) {
            int ok = isfinite(v[2 * j]);
            if (ok) {
                if (start < 0) start = j;
                count++;
            }
            o[2 * j] = o[2 * j + 1] = nan_;
        }
        if (count < K || g < K) continue;
        int64_t stop = start + count;
        /* interior: as a float array (re, im interleaved) o[t] = sum_k ker[k] v[t - 2h + 2k], tap by tap so
         * that the loop over t vectorizes */
        {
            float *ot = o + 2 * (start + h);
            const float *vt = v + 2 * start;
            const int64_t len = 2 * (stop - start - 2 * h);
            for (int64_t t = 0; t < len; t++) ot[t] = ker[0] * vt[t];
            for (int64_t k = 1; k < K; k++) {
                const float kk = ker[k];
                const float *vk = vt + 2 * k;
                for (int64_t t = 0; t < len; t++) ot[t] += kk * vk[t];
            }
        }
        for (int64_t q = 0; q < h; q++) {
            const float *lw = edge + q * K, *uw = edge + (h + 1 + q) * K;
            const float *a = v + 2 * start, *b = v + 2 * (stop - K);
            float re = 0, im = 0, re1 = 0, im1 = 0;
            for (int64_t k = 0; k < K; k++) {
                re += lw[k] * a[2 * k];
                im += lw[k] * a[2 * k + 1];
                re1 += uw[k] * b[2 * k];
                im1 += uw[k] * b[2 * k + 1];
            }
            o[2 * (start + q)] = re;
            o[2 * (start + q) + 1] = im;
            o[2 * (stop - h + q)] = re1;
            o[2 * (stop - h + q) + 1] = im1;
        }
        /* a NaN inside the run (not produced by resample) stays NaN */
        for (int64_t j = start; j < stop; j++)
            if (!isfinite(v[2 * j])) o[2 * j] = o[2 * j + 1] = nan_;
    }
    free(ker); free(edge); free(wt);
    return 0;
}
