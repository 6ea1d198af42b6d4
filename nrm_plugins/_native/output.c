/* Internal depth grid -> the results' grid (process.py _to_output), times a complex factor (the modulus
 * scale of Eq. 5 folded in): out[k] = f * (a[j0[k]] (1 - w[k]) + a[j0[k] + 1] w[k]), the upper point only
 * where w[k] > 0.  a (n, g) and out (n, nz) complex64 as float pairs. */
#include "kernels.h"

NRM_VECTOR int nrm_to_output(int64_t n, int64_t g, const float *a, int64_t nz, const int64_t *j0, const float *w,
                  double f_re, double f_im, float *out)
{
    nrm_enter();
    const float fr = (float)f_re, fi = (float)f_im;
    for (int64_t r = 0; r < n; r++) {
        const float *ar = a + 2 * r * g;
        float *o = out + 2 * r * nz;
        for (int64_t k = 0; k < nz; k++) {
            const float *lo = ar + 2 * j0[k];
            const float wk = w[k];
            const float *up = lo + (wk > 0.0f ? 2 : 0); /* branch-free: w = 0 reads the lower point twice */
            float re = lo[0], im = lo[1];
            re += wk * (up[0] - re);
            im += wk * (up[1] - im);
            o[2 * k] = fr * re - fi * im;
            o[2 * k + 1] = fr * im + fi * re;
        }
    }
    return 0;
}
