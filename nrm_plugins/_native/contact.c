/* Two-line contact point: placeholder until the port of contact.py lands (contact.py runs in numpy). */
#include "kernels.h"

int nrm_two_line(int64_t n, int64_t m, const float *x, const float *y, const float *w, const double *par,
                 double *out)
{
    (void)n; (void)m; (void)x; (void)y; (void)w; (void)par; (void)out;
    return -2;
}
