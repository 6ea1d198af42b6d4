/* Single-sample outliers (spikes) of each ramp's deflection (process.py _despike, same definition, one row
 * at a time, in place): within the first `length` samples, a sample whose distance from the median of the
 * five samples around it (three at either end) exceeds max(factor x sigma, floor) takes that median (five:
 * a good sample between two spikes keeps its value); sigma is the row's robust
 * noise, 1.4826 x median |second difference| / sqrt(6) over every 8th sample (a straight line, a kink
 * between two lines and a monotone run are never changed: the median of a monotone window is its middle
 * sample).  Windows with a non-finite member are left alone.  count: samples replaced per row. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* the noise is estimated from every DESPIKE_STRIDE-th second difference (process.py _despike: the same) */
#define DESPIKE_STRIDE 8

static float med3(float a, float b, float c)
{
    float lo = a < b ? a : b, hi = a < b ? b : a;
    return c < lo ? lo : (c > hi ? hi : c);
}

static float med5(float a, float b, float c, float d, float e)
{
    /* the median of five by a min/max network (7 exchanges) */
#define NRM_SORT2(p, q)                                                                                    \
    do {                                                                                                   \
        float lo_ = p < q ? p : q, hi_ = p < q ? q : p;                                                    \
        p = lo_;                                                                                           \
        q = hi_;                                                                                           \
    } while (0)
    NRM_SORT2(a, b);
    NRM_SORT2(d, e);
    NRM_SORT2(a, d); /* a: not the median (smallest of a, b, d, e) */
    NRM_SORT2(b, e); /* e: not the median (largest of a, b, d, e) */
    NRM_SORT2(b, c);
    NRM_SORT2(c, d); /* now the median is the middle of b, c, d */
    NRM_SORT2(b, c);
#undef NRM_SORT2
    return c;
}

/* k-th smallest of a[0..n) (quickselect, reorders a) */
static float kth(float *a, int64_t n, int64_t k)
{
    int64_t l = 0, r = n - 1;
    while (l < r) {
        float p = a[(l + r) / 2];
        int64_t i = l, j = r;
        while (i <= j) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j) r = j;
        else if (k >= i) l = i;
        else return a[k];
    }
    return a[k];
}

NRM_VECTOR int nrm_despike(int64_t n, int64_t m, float *y, const int64_t *length, double factor, double floor_,
                           int64_t *count)
{
    nrm_enter();
    float *d2 = malloc(sizeof(float) * (size_t)(m > 0 ? m : 1));
    float *med = malloc(sizeof(float) * (size_t)(m > 0 ? m : 1));
    uint8_t *okw = malloc((size_t)(m > 0 ? m : 1));
    if (!d2 || !med || !okw) {
        free(d2);
        free(med);
        free(okw);
        return -1;
    }
    for (int64_t r = 0; r < n; r++) {
        float *v = y + r * m;
        int64_t len = length[r] < m ? length[r] : m, k = 0;
        count[r] = 0;
        for (int64_t i = 1; i + 1 < len; i += DESPIKE_STRIDE) {
            float s = fabsf((v[i - 1] - 2.0f * v[i]) + v[i + 1]);
            if (isfinite(s)) d2[k++] = s;
        }
        if (k < 8) continue;
        /* the median as contact.py _row_quantile computes it: linear between the two middle values */
        double pos = 0.5 * (double)(k - 1);
        int64_t i0 = (int64_t)pos;
        double v0 = kth(d2, k, i0), v1 = v0;
        if (i0 + 1 < k) { /* the next order statistic: the smallest of the part above i0 */
            float mn = d2[i0 + 1];
            for (int64_t i = i0 + 2; i < k; i++) mn = d2[i] < mn ? d2[i] : mn;
            v1 = mn;
        }
        double sigma = 1.4826 * (v0 + (pos - (double)i0) * (v1 - v0)) / sqrt(6.0);
        double thr = factor * sigma > floor_ ? factor * sigma : floor_;
        /* the medians first (from the original samples), then the replacements, both branch-free */
        /* the medians of the five (at both ends: three) samples around each one, from the original samples */
        med[1] = med3(v[0], v[1], v[2]);
        for (int64_t i = 2; i + 2 < len; i++) med[i] = med5(v[i - 2], v[i - 1], v[i], v[i + 1], v[i + 2]);
        med[len - 2] = med3(v[len - 3], v[len - 2], v[len - 1]);
        /* fin[i]: v[i] finite; a window with a non-finite member is left alone */
        uint8_t *fin = (uint8_t *)d2; /* d2 is free again: reused as m bytes */
        for (int64_t i = 0; i < len; i++) fin[i] = (nrm_bits32(v[i]) & NRM_EXP32) != NRM_EXP32;
        /* okw[i]: every member of sample i's window finite */
        okw[1] = fin[0] & fin[1] & fin[2];
        for (int64_t i = 2; i + 2 < len; i++) okw[i] = fin[i - 2] & fin[i - 1] & fin[i] & fin[i + 1] & fin[i + 2];
        okw[len - 2] = fin[len - 3] & fin[len - 2] & fin[len - 1];
        int64_t replaced = 0;
        for (int64_t i = 1; i + 1 < len; i++) {
            const float x = v[i];
            const int spike = okw[i] & ((double)fabsf(x - med[i]) > thr);
            v[i] = spike ? med[i] : x;
            replaced += spike;
        }
        count[r] = replaced;
    }
    free(d2);
    free(med);
    free(okw);
    return 0;
}
