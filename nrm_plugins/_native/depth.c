/* Depth z_p and the start of hard contact of each ramp (process.py _chunk, "depth z_p and the contact
 * index"; same float32 operations in the same order as the numpy code, so the discrete decisions agree).
 *
 * z = (x - xs) + (y - (boff + bslope x));  gap = (y - (coff + cslope x)) / (bslope - cslope), the distance
 * above the constant-compliance line in z_p units.  Hard contact begins at the first sample whose 4-sample
 * running sum of gap is within 4 thr, or within 4 x 0.3 nm where gap stops falling (gap[i] - gap[i+3] <=
 * 0.3 step, step = mean piezo step); without one, contact_start; at most contact_start + 8.  lo: one
 * sample before the first sample at or below top + 1 nm above the contact (counted over the whole row). */
#include <math.h>

#include "kernels.h"

void nrm_depth(int64_t n, int64_t m, const float *x, const float *y, const double *xs, const double *bslope,
               const double *boff, const double *cslope, const double *coff, const double *noise,
               const int64_t *contact_start, double top, float *z, int64_t *cidx, int64_t *lo, int64_t *hi)
{
    nrm_enter();
    const float top1 = (float)(top + 1.0);
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * m, *yr = y + r * m;
        float *zr = z + r * m;
        const float xsf = isfinite(xs[r]) ? (float)xs[r] : 0.0f;
        const float bs = (float)bslope[r], bo = (float)boff[r], cs = (float)cslope[r], co = (float)coff[r];
        const float den = bs - cs;
        double thr_d = 0.5 * noise[r];
        if (!(thr_d >= 0.01)) thr_d = isnan(thr_d) ? thr_d : 0.01; /* np.maximum(0.5 noise, 0.01) */
        const float thr4 = 4.0f * (float)thr_d;
        const float step = fabsf(xr[m - 1] - xr[0]) / (float)(m > 1 ? m - 1 : 1);
        const float flat_lim = (float)(3 * 0.1) * step;
        int64_t above = 0, c = -1;
        float g0 = 0, g1 = 0, g2 = 0;
        for (int64_t i = 0; i < m; i++) {
            const float xi = xr[i], yi = yr[i];
            const float d = xi - xsf;
            zr[i] = d + (yi - (bo + bs * xi));
            above += d > top1;
            const float g3 = (yi - (co + cs * xi)) / den;
            if (c < 0 && i >= 3) {
                const float run = ((g0 + g1) + g2) + g3;
                if (run <= thr4 || (run <= (float)(4 * 0.3) && (g0 - g3) <= flat_lim)) c = i - 3;
            }
            g0 = g1; g1 = g2; g2 = g3;
        }
        int64_t cs_ = contact_start[r];
        if (c < 0) c = cs_;
        if (c > cs_ + 8) c = cs_ + 8;
        cidx[r] = c;
        int64_t h = c - 1 > 0 ? c - 1 : 0;
        int64_t l = above - 1 > 0 ? above - 1 : 0;
        hi[r] = h;
        lo[r] = l < h ? l : h;
    }
}
