/* First pass over each ramp (process.py _chunk, "valid length, NaN and clipping" and "orientation"; the
 * same definitions as the numpy code): per-row statistics, then the oriented working arrays.
 *
 * stats (12, n) doubles: length (one past the last finite piezo sample, 0 without one), first finite piezo
 * index, p_first, p_last (piezo there and at length - 1), reverse (p_first < p_last: a retract, reversed
 * within its first `length` samples), any non-finite piezo, deflection, lateral (X or Y) sample, max |X|,
 * max |Y| (NaN ignored; NaN without values), the largest deflection and the number of samples at it.
 * x = (piezo - p_first) * 1e9 (nm, float32; p_first = 0 when not finite), y = deflection * scale, X, Y. */
#include <math.h>
#include <string.h>

#include "kernels.h"

enum { S_LEN, S_FIRST, S_PFIRST, S_PLAST, S_REV, S_NANP, S_NAND, S_NANL, S_TOPX, S_TOPY, S_DMAX, S_NDMAX };

/* The scans below work on the bit patterns (integer operations the compiler vectorizes; float reductions
 * in a fixed order it cannot): see NRM_EXP32 in kernels.h; for |a| (sign bit cleared) the unsigned order of
 * the bits is the order of the values. */

/* max |a| with NaN ignored (np.fmax.reduce of |a|), NaN when every value is NaN */
static float nanmax_abs(const float *a, int64_t m)
{
    /* signed 32-bit integers: with the sign bit cleared the order is the same, and SSE2/AVX2 compare signed */
    int32_t top = 0, seen = 0;
    const int32_t *u = (const int32_t *)a;
    for (int64_t i = 0; i < m; i++) {
        int32_t b = u[i] & 0x7fffffff;
        int32_t ok = b <= (int32_t)NRM_EXP32; /* not NaN (inf included) */
        seen |= ok;
        b = ok ? b : 0;
        top = b > top ? b : top;
    }
    if (!seen) return NAN;
    float t;
    memcpy(&t, &top, 4);
    return t;
}

static int any_nonfinite(const float *a, int64_t m)
{
    uint32_t bad = 0;
    const uint32_t *u = (const uint32_t *)a;
    for (int64_t i = 0; i < m; i++) bad |= (u[i] & NRM_EXP32) == NRM_EXP32;
    return bad != 0;
}

/* the largest value with NaN ignored (np.fmax.reduce), NaN when every value is NaN; four running maxima
 * so that the comparisons do not wait on each other */
static float nanmax(const float *a, int64_t m)
{
    float acc[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    uint32_t seen = 0;
    int64_t i = 0;
    for (; i + 4 <= m; i += 4)
        for (int k = 0; k < 4; k++) {
            float v = a[i + k];
            seen |= (nrm_bits32(v) & 0x7fffffffu) <= NRM_EXP32;
            acc[k] = v > acc[k] ? v : acc[k];
        }
    for (; i < m; i++) {
        float v = a[i];
        seen |= (nrm_bits32(v) & 0x7fffffffu) <= NRM_EXP32;
        acc[0] = v > acc[0] ? v : acc[0];
    }
    if (!seen) return NAN;
    float t = acc[0];
    for (int k = 1; k < 4; k++) t = acc[k] > t ? acc[k] : t;
    return t;
}

NRM_VECTOR void nrm_prepare(int64_t n, int64_t m, const double *piezo, const float *defl, const float *lx, const float *ly,
                 double scale, float *x, float *y, float *X, float *Y, double *stats)
{
    nrm_enter();
    const float sc = (float)scale;
    for (int64_t r = 0; r < n; r++) {
        const double *p = piezo + r * m;
        const float *d = defl + r * m, *a = lx + r * m, *b = ly + r * m;
        float *xr = x + r * m, *yr = y + r * m, *Xr = X + r * m, *Yr = Y + r * m;
        const uint64_t *pu = (const uint64_t *)p;
        uint64_t bad = 0;
        for (int64_t i = 0; i < m; i++) bad |= (pu[i] & NRM_EXP64) == NRM_EXP64;
        int nan_p = bad != 0;
        int64_t first = -1, last = -1;
        if (!nan_p) {
            first = m > 0 ? 0 : -1;
            last = m - 1;
        } else {
            for (int64_t i = 0; i < m; i++)
                if (isfinite(p[i])) {
                    first = i;
                    break;
                }
            for (int64_t i = m - 1; i >= 0; i--)
                if (isfinite(p[i])) {
                    last = i;
                    break;
                }
        }
        int64_t length = last + 1;
        double p_first = first >= 0 ? p[first] : p[0];
        double p_last = p[length > 0 ? length - 1 : 0];
        int reverse = p_first < p_last;
        double ref = isfinite(p_first) ? p_first : 0.0;
        float dmax = nanmax(d, m);
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
        for (int64_t i = 0; i < L; i++) {
            int64_t s = L - 1 - i;
            xr[i] = (float)((p[s] - ref) * 1e9);
            yr[i] = d[s] * sc;
            Xr[i] = a[s];
            Yr[i] = b[s];
        }
        for (int64_t i = L; i < m; i++) xr[i] = (float)((p[i] - ref) * 1e9);
        for (int64_t i = L; i < m; i++) yr[i] = d[i] * sc;
        memcpy(Xr + L, a + L, sizeof(float) * (size_t)(m - L));
        memcpy(Yr + L, b + L, sizeof(float) * (size_t)(m - L));
    }
}

/* Sample masks of the ramps that need them (process.py _chunk, "valid length, NaN and clipping"), oriented as
 * nrm_prepare orients the data: valid_d (piezo and deflection finite, inside the ramp's length, not at a
 * saturated deflection rail when rail[r]), valid_l (X and Y finite, inside the length, |X| and |Y| below the
 * row's clip level); nan_in: a sample inside the length lacks a finite value; nvalid_d: count of valid_d. */
NRM_VECTOR void nrm_masks(int64_t n, int64_t m, const double *piezo, const float *defl, const float *lx, const float *ly,
               const int64_t *length, const uint8_t *reverse, const float *clip, const uint8_t *rail,
               const float *dmax, uint8_t *valid_d, uint8_t *valid_l, uint8_t *nan_in, int64_t *nvalid_d)
{
    nrm_enter();
    for (int64_t r = 0; r < n; r++) {
        const double *p = piezo + r * m;
        const float *d = defl + r * m, *a = lx + r * m, *b = ly + r * m;
        uint8_t *vd = valid_d + r * m, *vl = valid_l + r * m;
        const int64_t len = length[r], L = reverse[r] ? len : 0;
        const float cl = clip[r], dm = dmax[r];
        const int rl = rail[r] != 0;
        int missing = 0;
        int64_t count = 0;
        /* sample s of the file is sample i of the oriented row: reversed within the first L, then in place
         * (two loops without a branch on the index; the finite tests on the bit patterns) */
#define NRM_MASK_SAMPLE(i, s)                                                                                      \
    do {                                                                                                           \
        const int in = (s) < len;                                                                                  \
        const int okd = in & ((pu[s] & NRM_EXP64) != NRM_EXP64) & ((du[s] & NRM_EXP32) != NRM_EXP32);              \
        const int okl = in & ((au[s] & NRM_EXP32) != NRM_EXP32) & ((bu[s] & NRM_EXP32) != NRM_EXP32);              \
        missing |= in & !(okd & okl);                                                                              \
        const int dv = okd & !(rl & (d[s] >= dm));                                                                 \
        vd[i] = (uint8_t)dv;                                                                                       \
        vl[i] = (uint8_t)(okl & !((fabsf(a[s]) >= cl) | (fabsf(b[s]) >= cl)));                                     \
        count += dv;                                                                                               \
    } while (0)
        const uint64_t *pu = (const uint64_t *)p;
        const uint32_t *du = (const uint32_t *)d, *au = (const uint32_t *)a, *bu = (const uint32_t *)b;
        for (int64_t i = 0; i < L; i++) NRM_MASK_SAMPLE(i, L - 1 - i);
        for (int64_t i = L; i < m; i++) NRM_MASK_SAMPLE(i, i);
#undef NRM_MASK_SAMPLE
        nan_in[r] = (uint8_t)missing;
        nvalid_d[r] = count;
    }
}

/* Checks of the lateral samples once the profile [lo, hi) and the background region [edge, i_bg) of each row
 * are known (process.py _chunk): nan_prof: a profile sample lacks a valid deflection or a finite X, Y;
 * clip_prof: a finite profile sample is masked (clipped); masked_bg: a background sample is masked;
 * clipped_bg: ... while finite.  Then X and Y are set to 0 wherever valid_l is not set (in place). */
NRM_VECTOR void nrm_lateral_checks(int64_t n, int64_t m, float *X, float *Y, const uint8_t *valid_d, const uint8_t *valid_l,
                        const int64_t *lo, const int64_t *hi, const int64_t *i_bg, int64_t edge, uint8_t *nan_prof,
                        uint8_t *clip_prof, uint8_t *masked_bg, uint8_t *clipped_bg)
{
    nrm_enter();
    for (int64_t r = 0; r < n; r++) {
        float *a = X + r * m, *b = Y + r * m;
        const uint8_t *vd = valid_d + r * m, *vl = valid_l + r * m;
        int np_ = 0, cp = 0, mb = 0, cb = 0;
        const int64_t l = lo[r] < 0 ? 0 : lo[r], h = hi[r] > m ? m : hi[r];
        for (int64_t i = l; i < h; i++) {
            const int fin = isfinite(a[i]) && isfinite(b[i]);
            np_ |= !vd[i] || !fin;
            cp |= !vl[i] && fin;
        }
        const int64_t e = edge < 0 ? 0 : edge, g = i_bg[r] > m ? m : i_bg[r];
        for (int64_t i = e; i < g; i++) {
            if (vl[i]) continue;
            mb = 1;
            cb |= isfinite(a[i]) && isfinite(b[i]);
        }
        for (int64_t i = 0; i < m; i++) {
            a[i] = vl[i] ? a[i] : 0.0f;
            b[i] = vl[i] ? b[i] : 0.0f;
        }
        nan_prof[r] = (uint8_t)np_;
        clip_prof[r] = (uint8_t)cp;
        masked_bg[r] = (uint8_t)mb;
        clipped_bg[r] = (uint8_t)cb;
    }
}
