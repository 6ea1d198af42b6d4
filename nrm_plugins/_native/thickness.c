/* SEI thickness of each ramp (thickness.py sei_thickness, same criterion, one row at a time): the first
 * grid point from which |U| stays above threshold x sigma over p grid points (a run cut short by the end of
 * the data counts), plus the secant extrapolation over q points; 0 without a run when the data reach the
 * electrode, NaN otherwise and NaN (at_top) when the run starts at the top of the data. */
#include <math.h>
#include <stdlib.h>

#include "kernels.h"

int nrm_sei_thickness(int64_t n, int64_t g, const float *values, const double *sigma, double top, double step,
                      int64_t p, int64_t q, double rel_floor, double threshold, double bottom_reach,
                      double *thick, uint8_t *at_top)
{
    nrm_enter();
    float *mag = malloc(sizeof(float) * (size_t)(g > 0 ? g : 1));
    if (!mag) return -1;
    for (int64_t r = 0; r < n; r++) {
        const float *v = values + 2 * r * g;
        float peak = 0.0f;
        int64_t first = -1, count = 0;
        for (int64_t j = 0; j < g; j++) {
            const float re = v[2 * j], im = v[2 * j + 1];
            float a = sqrtf(re * re + im * im); /* |U| (no overflow: lock-in volts) */
            mag[j] = a;
            if (isfinite(a)) {
                if (first < 0) first = j;
                count++;
                if (a > peak) peak = a;
            }
        }
        if (first < 0) first = 0;
        const int64_t stop = first + count;
        float sg = (float)sigma[r], fl = (float)rel_floor * peak;
        if (!(sg >= fl) && !isnan(sg)) sg = fl; /* np.maximum: NaN stays */
        const float lim = (float)threshold * sg;
        int64_t k = -1;
        for (int64_t j = 0; j < g && k < 0; j++) {
            if (!(isfinite(mag[j]) && mag[j] > lim)) continue;
            int run = 1;
            for (int64_t s = 1; s < p && j + s < g; s++) {
                int64_t t = j + s;
                if (!((isfinite(mag[t]) && mag[t] > lim) || t >= stop)) {
                    run = 0;
                    break;
                }
            }
            if (run) k = j;
        }
        double th;
        at_top[r] = k >= 0 && k <= first;
        if (k >= 0) {
            int64_t kq = k + q < g - 1 ? k + q : g - 1;
            double m0 = mag[k];
            double slope = (double)(float)(mag[kq] - mag[k]) / ((double)(kq - k) * step);
            double extra = (slope > 0 && isfinite(slope)) ? m0 / slope : 0.0;
            if (!(extra >= 0.0)) extra = 0.0;
            if (extra > (double)q * step) extra = (double)q * step;
            th = top - (double)k * step + extra;
        } else {
            double bottom = top - (double)(stop - 1) * step;
            th = bottom > bottom_reach ? NAN : 0.0;
        }
        thick[r] = at_top[r] ? NAN : th;
    }
    free(mag);
    return 0;
}
