/* Undo the lock-in's cascaded first-order output filter along each row (moduli.py undo_output_filter, same
 * definition, in place): each stage inverted exactly, x[n] = a x[n-1] + (y[n] + minus_e y[n-1]) / b0 with
 * a = -b1/b0, started in steady state (y[-1] = y[0], x[-1] = y[0]); then `passes` zero-phase [1, 2, 1]/4
 * smoothings of the interior samples.  The recursion runs in double precision. */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

int nrm_undo_output_filter(int64_t n, int64_t m, float *values, double b0, double b1, double minus_e,
                           int64_t stages, int64_t passes)
{
    nrm_enter();
    if (m < 1) return 0;
    float *tmp = malloc(sizeof(float) * (size_t)m);
    if (!tmp) return -1;
    const double a = -b1 / b0, inv_b0 = 1.0 / b0;
    for (int64_t r = 0; r < n; r++) {
        float *v = values + r * m;
        for (int64_t s = 0; s < stages; s++) {
            double prev_y = v[0], x = v[0];
            for (int64_t i = 0; i < m; i++) {
                double y = v[i];
                x = a * x + (y + minus_e * prev_y) * inv_b0;
                prev_y = y;
                v[i] = (float)x;
            }
        }
        for (int64_t p = 0; p < passes && m > 2; p++) {
            memcpy(tmp, v, sizeof(float) * (size_t)m);
            for (int64_t i = 1; i < m - 1; i++) v[i] = 0.25f * ((tmp[i - 1] + tmp[i + 1]) + 2.0f * tmp[i]);
        }
    }
    free(tmp);
    return 0;
}
