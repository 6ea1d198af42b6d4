/* Two-line contact point (contact.py two_line, same algorithm, one ramp at a time).
 *
 * A direct per-row translation of the vectorized numpy code (block sums, pooled moments, noise, contact
 * region, local baseline lines (_free_region), grown global baseline line (_grown_region), curved/straight
 * choice, final fits, flags, intersection).  Everything is computed in double precision (numpy keeps the
 * block sums and a few comparisons in float32), so results agree with numpy to rounding; NaN semantics
 * follow numpy's (comparisons with NaN are false, np.maximum propagates NaN, np.fmin ignores it, argmax of
 * an all-false row is 0).  Scratch is allocated per call (sized by the number of blocks) and reused for
 * every row: no global state, safe to call from several threads at once. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

enum { O_POS, O_UNC, O_BSLOPE, O_BOFF, O_CSLOPE, O_COFF, O_FREE, O_CSTART, O_NOISE, O_FLAGS };
enum { NO_BASELINE = 1, NO_CONTACT = 2, STARTS_IN_CONTACT = 4 };
enum { MIN_FREE_BLOCKS = 4, MIN_CONTACT_BLOCKS = 3, MIN_BASELINE_BLOCKS = 6, GROW_STEPS = 8 };
#define CURVED_BASELINE 2.0
#define QUARTILE_NORMAL 1.150 /* upper quartile of |N(0, 1)| */

/* np.maximum: NaN when either is NaN */
static inline double nmax(double a, double b) { return (isnan(a) || isnan(b)) ? NAN : (a > b ? a : b); }

/* np.nan_to_num of a float32 value */
static inline double nan_to_num32(double v)
{
    if (isnan(v)) return 0.0;
    if (isinf(v)) return v > 0 ? (double)FLT_MAX : -(double)FLT_MAX;
    return v;
}

static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

/* Python's a // b (rounds towards minus infinity), b > 0 */
static inline int64_t floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* max(1, ceil(f * len)) as numpy computes it (float64, then int64) */
static inline int64_t margin_of(double f, int64_t len)
{
    double v = ceil(f * (double)len);
    return v > 1.0 ? (v < 4.0e18 ? (int64_t)v : (int64_t)4.0e18) : 1; /* (1 for NaN: no undefined cast) */
}

/* k-th smallest (0 <= k < n) of a[0..n) (no NaN), which is left as it is; buf: scratch of 3 n values.
 * Quickselect with out-of-place, branch-free three-way partitions (no slow case for repeated values: the
 * noise variances of noise-free data are all 0, the unusable blocks' are all +inf). */
static double kth_smallest(const double *a, int64_t n, int64_t k, double *buf)
{
    double *part[3] = {buf, buf + n, buf + 2 * n};
    const double *src = a;
    int s = -1; /* which part src is (-1: a) */
    while (n > 1) { /* each step drops at least the pivot's value */
        double p0 = src[0], p1 = src[n / 2], p2 = src[n - 1]; /* median of three */
        double p = p0 < p1 ? (p1 < p2 ? p1 : (p0 < p2 ? p2 : p0)) : (p0 < p2 ? p0 : (p1 < p2 ? p2 : p1));
        int il = s == 0 ? 1 : 0, ig = s == 2 ? 1 : 2; /* the two parts other than src */
        double *dl = part[il], *dg = part[ig];
        int64_t nl = 0, ng = 0;
        for (int64_t i = 0; i < n; i++) {
            double v = src[i];
            dl[nl] = v;
            nl += v < p;
            dg[ng] = v;
            ng += v > p;
        }
        if (k < nl) {
            src = dl;
            s = il;
            n = nl;
        } else if (k >= n - ng) {
            k -= n - ng;
            src = dg;
            s = ig;
            n = ng;
        } else {
            return p;
        }
    }
    return src[0];
}

/* contact.py _row_quantile of the count (>= 1) non-NaN values sqrt(a[0..count)) (given as squares, a >= 0);
 * buf: scratch of 3 count */
static double row_quantile(const double *a, int64_t count, double q, double *buf)
{
    double pos = q * (double)(count - 1);
    int64_t i0 = (int64_t)floor(pos);
    if (i0 < 0) i0 = 0;
    if (i0 > count - 1) i0 = count - 1;
    int64_t i1 = imin(i0 + 1, count - 1);
    double v0 = kth_smallest(a, count, i0, buf), v1 = v0;
    if (i1 > i0) { /* the next value: v0 again when repeated, else the smallest one above it */
        int64_t below = 0;
        double above = INFINITY;
        for (int64_t k = 0; k < count; k++) {
            below += a[k] <= v0;
            double t = a[k] > v0 ? a[k] : INFINITY;
            above = t < above ? t : above;
        }
        v1 = below > i1 ? v0 : above;
    }
    v0 = sqrt(v0);
    v1 = sqrt(v1);
    return v0 + (pos - (double)i0) * (v1 - v0);
}

typedef struct {
    double s, x0, a, n, sxx, var;
} line_t;

/* pooled moments of the row (contact.py _Lines): mom[q * nb + k], q = count, c xm, c ym, c xm^2 + sxx,
 * c xm ym + sxy; syy: c ym^2 + syy */
typedef struct {
    int64_t nb;
    const double *mom, *syy;
    int finite; /* every moment finite: the blocks left out add exactly 0 and are skipped */
} moments_t;

/* _Lines.fit: the line over the blocks with inc[k], all of them in [lo, hi).  numpy's einsum adds every
 * block's moments times 0 or 1: with finite moments the blocks outside [lo, hi) add exact zeros (two partial
 * sums per moment, even and odd blocks, halve the chains of additions); otherwise every block, literally
 * (a NaN anywhere makes the line NaN, as in numpy). */
static line_t fit(const moments_t *M, const unsigned char *inc, int64_t lo, int64_t hi, int final)
{
    int64_t nb = M->nb;
    const double *m0 = M->mom, *m1 = m0 + nb, *m2 = m1 + nb, *m3 = m2 + nb, *m4 = m3 + nb, *m5 = M->syy;
    double a[2][6] = {{0, 0, 0, 0, 0, 0}, {0, 0, 0, 0, 0, 0}};
    if (!M->finite) {
        lo = 0;
        hi = nb;
    }
    lo = imax(lo, 0);
    hi = imin(hi, nb);
    int64_t k = lo;
    for (; k + 1 < hi; k += 2)
        for (int j = 0; j < 2; j++) {
            double f = inc[k + j] ? 1.0 : 0.0;
            a[j][0] += f * m0[k + j];
            a[j][1] += f * m1[k + j];
            a[j][2] += f * m2[k + j];
            a[j][3] += f * m3[k + j];
            a[j][4] += f * m4[k + j];
            if (final) a[j][5] += f * m5[k + j];
        }
    if (k < hi) {
        double f = inc[k] ? 1.0 : 0.0;
        a[0][0] += f * m0[k];
        a[0][1] += f * m1[k];
        a[0][2] += f * m2[k];
        a[0][3] += f * m3[k];
        a[0][4] += f * m4[k];
        if (final) a[0][5] += f * m5[k];
    }
    double n = a[0][0] + a[1][0], sx = a[0][1] + a[1][1], sy = a[0][2] + a[1][2];
    double sxx = a[0][3] + a[1][3], sxy = a[0][4] + a[1][4];
    line_t L;
    double x0 = sx / n, y0 = sy / n, cxx = sxx - sx * x0, cxy = sxy - sx * y0, s = cxy / cxx;
    L.s = s;
    L.x0 = x0;
    L.a = y0;
    L.n = n;
    L.sxx = cxx;
    L.var = NAN;
    if (final) {
        double cyy = (a[0][5] + a[1][5]) - sy * y0;
        L.var = nmax(cyy - s * cxy, 0.0) / (n - 2.0);
    }
    return L;
}

/* the local line over the window [a_e, e) of _free_region (from the cumulative moments); the reciprocals
 * of the count and of the centred sum of squares are kept (no division per block afterwards) */
typedef struct {
    double inv_cnt, x0, y0, inv_cxx, slope;
    int64_t nwin;
} wline_t;

typedef struct {
    int64_t nb, first, window;
    const double *cm; /* 5 x (nb + 1) cumulative moments */
    const int64_t *cb; /* nb + 1 cumulative usable blocks */
    const double *xm, *ym, *invc;
    const unsigned char *vb;
    double sig2;
} local_t;

static wline_t local_line(const local_t *F, int64_t e)
{
    int64_t a = imin(imax(F->first, e - F->window), e), nb1 = F->nb + 1;
    const double *c = F->cm;
    double cnt = c[e] - c[a], sx = c[nb1 + e] - c[nb1 + a], sy = c[2 * nb1 + e] - c[2 * nb1 + a];
    double sxx = c[3 * nb1 + e] - c[3 * nb1 + a], sxy = c[4 * nb1 + e] - c[4 * nb1 + a];
    wline_t W;
    W.inv_cnt = 1.0 / cnt;
    W.x0 = sx * W.inv_cnt;
    W.y0 = sy * W.inv_cnt;
    W.inv_cxx = 1.0 / (sxx - sx * W.x0);
    W.slope = (sxy - sx * W.y0) * W.inv_cxx;
    W.nwin = F->cb[e] - F->cb[a];
    return W;
}

/* residual r and its variance v of block j from the local line W; false where numpy's `standardized`
 * puts NaN regardless of the values (block unusable or beyond the row, fewer than 3 blocks in the line) */
static inline int residual(const local_t *F, const wline_t *W, int64_t j, double *r, double *v)
{
    if (j >= F->nb || !F->vb[j] || W->nwin < 3) return 0;
    double dx = F->xm[j] - W->x0;
    *r = F->ym[j] - (W->y0 + W->slope * dx);
    *v = F->sig2 * (F->invc[j] + W->inv_cnt + dx * dx * W->inv_cxx);
    return 1;
}

/* standardized residual of block j from the local line W (NaN where numpy's `standardized` puts NaN) */
static double standardized(const local_t *F, const wline_t *W, int64_t j)
{
    double r, v;
    return residual(F, W, j, &r, &v) ? r / sqrt(v) : NAN;
}

/* sign (+1, -1) of the standardized residual z = r / sqrt(v) of block j when |z| > thr (thr >= 0), else 0:
 * r^2 > thr^2 v, without the square root and the division (v >= 0 excludes the NaN of sqrt(v < 0) and a
 * NaN v; v = inf, where z = 0 or NaN, fails r^2 > thr^2 v) */
static inline int beyond(const local_t *F, const wline_t *W, int64_t j, double thr2)
{
    double r, v;
    if (!residual(F, W, j, &r, &v) || !(v >= 0.0) || !(r * r > thr2 * v)) return 0;
    return r > 0 ? 1 : (r < 0 ? -1 : 0);
}

/* contact.py _free_region for one row: inc (out), returns free_end; *scale_out the misfit scale.
 * lines: scratch of nb + 1 local lines */
static int64_t free_region(const local_t *F, int64_t kc, double threshold, double region_threshold,
                           double baseline_margin, double *tmp, double *sel, wline_t *lines, unsigned char *out,
                           unsigned char *off, unsigned char *inc, double *scale_out)
{
    int64_t nb = F->nb, first = F->first, window = F->window;
    int64_t e_lo = imax(first + MIN_FREE_BLOCKS, 0), e_hi = imin(kc, nb - 1);
    int64_t far_hi = imin(e_hi, floordiv(first + kc, 2));
    /* misfit scale: upper quartile of |z2| over the far half of the candidates */
    int64_t count = 0;
    int anyfinite = 0;
    for (int64_t e = e_lo; e <= far_hi; e++) {
        wline_t *W = &lines[e];
        *W = local_line(F, e);
        double r, v;
        if (W->nwin < MIN_FREE_BLOCKS || !residual(F, W, e + 2, &r, &v) || !(v >= 0.0)) continue; /* z2 NaN */
        double z2sq = r * r / v; /* z2^2: NaN where z2 is (0 / 0, inf / inf) */
        if (isnan(z2sq)) continue;
        tmp[count++] = z2sq;
        if (isfinite(z2sq)) anyfinite = 1;
    }
    double scale = 1.0;
    if (anyfinite) { /* the quantile of |z2| = sqrt(z2^2): the same order, interpolated between roots */
        double q = row_quantile(tmp, count, 0.75, sel) / QUARTILE_NORMAL;
        scale = isfinite(q) ? nmax(q, 1.0) : 1.0;
    }
    *scale_out = scale;
    /* the first rise: three blocks on the same side of the local line, all beyond the threshold */
    double thr = region_threshold * scale, thr2 = thr * thr;
    int64_t free_end = kc;
    for (int64_t e = e_lo; e <= e_hi; e++) {
        wline_t Wn, *W = &lines[e];
        if (e > far_hi) {
            Wn = local_line(F, e);
            W = &Wn;
        }
        if (W->nwin < MIN_FREE_BLOCKS) continue;
        int rise;
        if (thr >= 0) {
            int s0 = beyond(F, W, e, thr2);
            rise = s0 != 0 && beyond(F, W, e + 1, thr2) == s0 && beyond(F, W, e + 2, thr2) == s0;
        } else { /* a negative (or NaN) threshold: literally */
            double z0 = standardized(F, W, e), z1 = standardized(F, W, e + 1), z2 = standardized(F, W, e + 2);
            int same = (z0 > 0 && z1 > 0 && z2 > 0) || (z0 < 0 && z1 < 0 && z2 < 0);
            rise = same && fmin(fmin(fabs(z0), fabs(z1)), fabs(z2)) > thr;
        }
        if (rise) {
            free_end = e;
            break;
        }
    }
    free_end = imin(free_end, kc);
    int64_t length = imin(free_end - first, window);
    int64_t end_b = imax(free_end - margin_of(baseline_margin, length), first + 2);
    int64_t start_b = imax(first, end_b - window);
    /* outlier blocks off the line of the window before end_b (needed from `first`, the first usable block,
     * to end_b: the region and the extension below) */
    int64_t eb = imin(end_b, nb);
    wline_t W = local_line(F, eb);
    double t_out = (threshold * scale) * (threshold * scale), t_off = region_threshold * region_threshold;
    for (int64_t k = first; k < eb; k++) {
        double dx = F->xm[k] - W.x0;
        double r = F->ym[k] - (W.y0 + W.slope * dx);
        double var = F->sig2 * (F->invc[k] + W.inv_cnt + dx * dx * W.inv_cxx);
        double r2 = r * r;
        out[k] = r2 > t_out * var;
        off[k] = F->vb[k] & (r2 > t_off * var);
    }
    /* extend back over the earlier blocks the line still predicts (two consecutive blocks off end it) */
    int64_t back = first;
    for (int64_t k = imin(nb - 2, start_b - 2); k >= first; k--)
        if (off[k] && off[k + 1]) {
            back = k + 2;
            break;
        }
    start_b = imin(imax(back, first), start_b);
    int64_t kept = 0;
    memset(inc, 0, (size_t)nb);
    for (int64_t k = start_b; k < eb; k++) {
        inc[k] = F->vb[k];
        kept += inc[k] & !out[k];
    }
    if (kept >= 2)
        for (int64_t k = start_b; k < eb; k++) inc[k] &= !out[k];
    return free_end;
}

/* contact.py _grown_region for one row: inc (out), returns free_end */
static int64_t grown_region(const moments_t *M, const double *xm, const double *ym, const double *invc,
                            const unsigned char *vb, double sig2, int64_t first, int64_t last, int64_t kc,
                            double threshold, double region_threshold, double baseline_margin,
                            unsigned char *inc, unsigned char *inc_new, unsigned char *out)
{
    int64_t nb = M->nb, n0 = imax(3, floordiv(kc - first, 2)), cur = -1;
    for (int64_t k = 0; k < nb; k++) {
        inc[k] = vb[k] & (k >= first) & (k < first + n0);
        cur = inc[k] ? k : cur;
    }
    cur = cur < 0 ? nb : cur + 1; /* end of the current region (nb when empty, as numpy's argmax) */
    int64_t free_end = nb;
    double t1 = threshold * threshold, t2 = region_threshold * region_threshold;
    for (int step = 0; step < GROW_STEPS; step++) {
        line_t L = fit(M, inc, first, cur, 0);
        double inv_n = 1.0 / L.n, inv_s = 1.0 / L.sxx;
        /* blocks off the line from `first` on: `out` (threshold) and the first run of three beyond
         * region_threshold; a run starting at kc or later ends the region at kc as none does, so the scan
         * stops there, and the region below needs `out` only below the run */
        int64_t fe = last + 1, run = 0, stop = imin(nb, kc + 2);
        for (int64_t k = first; k < stop; k++) {
            double dx = xm[k] - L.x0;
            double r = ym[k] - (L.a + L.s * dx);
            double var = sig2 * (invc[k] + inv_n + dx * dx * inv_s);
            double r2 = r * r;
            out[k] = vb[k] & (r2 > t1 * var);
            run = (vb[k] & (r2 > t2 * var)) ? run + 1 : 0;
            if (run == 3) {
                fe = k - 2;
                break;
            }
        }
        fe = imin(fe, kc);
        fe = imin(fe, cur + imax(cur - first, 3) + 1);
        free_end = fe;
        int64_t end = imin(fe - margin_of(baseline_margin, fe - first), nb), count = 0, cur_new = -1;
        memset(inc_new, 0, (size_t)nb);
        for (int64_t k = first; k < end; k++) {
            inc_new[k] = vb[k] & !out[k];
            count += inc_new[k];
            cur_new = inc_new[k] ? k : cur_new;
        }
        if (count < 2 || memcmp(inc_new, inc, (size_t)nb) == 0) break; /* final: the region did not change */
        memcpy(inc, inc_new, (size_t)nb);
        cur = cur_new + 1;
    }
    return free_end;
}

/* the local slope over blocks k, k+1 is off the contact slope s_ref (beyond its tolerance, or NaN) */
static inline int pair_off(const double *mom, int64_t nb, const unsigned char *vb, int64_t k, double s_ref,
                           double tol_rel, double tol_abs)
{
    if (!vb[k] || !vb[k + 1]) return 0;
    const double *m0 = mom, *m1 = m0 + nb, *m2 = m1 + nb, *m3 = m2 + nb, *m4 = m3 + nb;
    double pn = m0[k] + m0[k + 1], psx = m1[k] + m1[k + 1], psy = m2[k] + m2[k + 1];
    double psxx = m3[k] + m3[k + 1], psxy = m4[k] + m4[k + 1];
    double inv_pn = 1.0 / pn, pcxx = psxx - psx * psx * inv_pn;
    double ps = (psxy - psx * psy * inv_pn) / pcxx;
    double tol = nmax(tol_rel, tol_abs / sqrt(pcxx));
    return !(fabs(ps - s_ref) <= tol);
}

/* block_sums of one whole block without weights: the means (*mx, *my) and the centred sums, in one pass
 * about the block's first sample (a shift within the block keeps the one-pass sums accurate in double) */
static inline void block_plain(const float *x, const float *y, int64_t B, double *mx, double *my, double *sxx,
                               double *sxy, double *syy)
{
    double x0 = x[0], y0 = y[0], su = 0, sv = 0, suu = 0, suv = 0, svv = 0;
    for (int64_t i = 1; i < B; i++) {
        double u = x[i] - x0, v = y[i] - y0;
        su += u;
        sv += v;
        suu += u * u;
        suv += u * v;
        svv += v * v;
    }
    double inv = 1.0 / (double)B, mu = su * inv, mv = sv * inv;
    *mx = x0 + mu;
    *my = y0 + mv;
    *sxx = suu - su * mu;
    *sxy = suv - su * mv;
    *syy = svv - sv * mv;
}

/* kernels.h; also returns -2 for block < 1 or m < 1 (contact.py does not call it then) */
int nrm_two_line(int64_t n, int64_t m, const float *x, const float *y, const float *w, const double *par,
                 double *out)
{
    nrm_enter();
    if (n <= 0) return 0;
    int64_t block = (int64_t)par[0];
    if (block < 1 || m < 1) return -2;
    double threshold = par[1], region_threshold = par[2], baseline_margin = par[3], slope_lo = par[4];
    double slope_hi = par[5], tolerance = par[6], noise_floor = par[7], baseline_window = par[8];
    int64_t nb = (m + block - 1) / block;
    double vmin = (double)imax(3, block / 2);

    /* scratch: per block the count, raw means and within-block sums, relative means, 1/c, 5 moments + syy,
     * noise variances, 3 nb for the selections; cumulative moments and counts, local lines (nb + 1); flags
     * per block (usable, regions, outliers) */
    size_t nd = (size_t)nb * 19 + 5 * (size_t)(nb + 1), nu = (size_t)nb * 8;
    double *dbuf = malloc(nd * sizeof(double));
    int64_t *cb = malloc((size_t)(nb + 1) * sizeof(int64_t));
    unsigned char *ubuf = malloc(nu);
    wline_t *lines = malloc((size_t)(nb + 1) * sizeof(wline_t));
    if (!dbuf || !cb || !ubuf || !lines) {
        free(dbuf);
        free(cb);
        free(ubuf);
        free(lines);
        return -1;
    }
    double *c = dbuf, *bxm = c + nb, *bym = bxm + nb, *bsxx = bym + nb, *bsxy = bsxx + nb, *bsyy = bsxy + nb;
    double *xm = bsyy + nb, *ym = xm + nb, *invc = ym + nb, *mom = invc + nb, *msyy = mom + 5 * nb;
    double *tmp = msyy + nb, *sel = tmp + nb, *cm = sel + 3 * nb; /* sel: 3 nb, cm: 5 x (nb + 1) */
    unsigned char *vb = ubuf, *inc_c = vb + nb, *inc_b = inc_c + nb, *inc_loc = inc_b + nb;
    unsigned char *inc_new = inc_loc + nb, *bout = inc_new + nb, *off = bout + nb, *inc = off + nb;
    moments_t M = {nb, mom, msyy, 1};

    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * m, *yr = y + r * m, *wr = w ? w + r * m : NULL;

        /* ---- block sums (contact.py block_sums; the last block padded with its edge value, weight 0) */
        for (int64_t k = 0; k < nb; k++) {
            int64_t j0 = k * block;
            if (!wr && j0 + block <= m) { /* a whole block, no weights */
                if (block == 8) /* the default: a constant trip count, unrolled */
                    block_plain(xr + j0, yr + j0, 8, &bxm[k], &bym[k], &bsxx[k], &bsxy[k], &bsyy[k]);
                else
                    block_plain(xr + j0, yr + j0, block, &bxm[k], &bym[k], &bsxx[k], &bsxy[k], &bsyy[k]);
                c[k] = (double)block;
            } else {
                double sw = 0, sx = 0, sy = 0;
                for (int64_t i = 0; i < block; i++) {
                    int64_t j = j0 + i, jj = j < m ? j : m - 1;
                    double wv = j < m ? (wr ? (double)wr[j] : 1.0) : 0.0;
                    sw += wv;
                    sx += wv * xr[jj];
                    sy += wv * yr[jj];
                }
                double mx = sx / sw, my = sy / sw, cx = nan_to_num32(mx), cy = nan_to_num32(my);
                double sxx = 0, sxy = 0, syy = 0;
                for (int64_t i = 0; i < block; i++) {
                    int64_t j = j0 + i, jj = j < m ? j : m - 1;
                    double wv = j < m ? (wr ? (double)wr[j] : 1.0) : 0.0;
                    double u = xr[jj] - cx, v = yr[jj] - cy, wu = wv * u;
                    sxx += wu * u;
                    sxy += wu * v;
                    syy += (wv * v) * v;
                }
                c[k] = sw;
                bxm[k] = mx;
                bym[k] = my;
                bsxx[k] = sxx;
                bsxy[k] = sxy;
                bsyy[k] = syy;
            }
        }

        /* ---- usable blocks, row reference, pooled moments (_Lines) */
        double sc = 0, sxr = 0, syr = 0;
        int64_t nvalid = 0, first = -1, last = -1;
        for (int64_t k = 0; k < nb; k++) {
            vb[k] = c[k] >= vmin;
            double cu = vb[k] ? c[k] : 0.0;
            sc += cu;
            sxr += (vb[k] ? bxm[k] : 0.0) * cu;
            syr += (vb[k] ? bym[k] : 0.0) * cu;
            if (vb[k]) {
                nvalid++;
                if (first < 0) first = k;
                last = k;
            }
        }
        if (first < 0) { /* argmax of an all-false row */
            first = 0;
            last = nb - 1;
        }
        double xref = nan_to_num32(sxr / sc), yref = nan_to_num32(syr / sc);
        double *m0 = mom, *m1 = m0 + nb, *m2 = m1 + nb, *m3 = m2 + nb, *m4 = m3 + nb;
        double ymax = -INFINITY, ymin = INFINITY, c_prev = NAN, inv_c = 0.0, inv_c2 = 0.0, probe = 0.0;
        for (int64_t k = 0; k < nb; k++) {
            int u = vb[k];
            double cu = u ? c[k] : 0.0, xk = u ? bxm[k] - xref : 0.0, yk = u ? bym[k] - yref : 0.0;
            double sxx = u ? bsxx[k] : 0.0, sxy = u ? bsxy[k] : 0.0, syy = u ? bsyy[k] : 0.0;
            xm[k] = xk;
            ym[k] = yk;
            m0[k] = cu;
            m1[k] = cu * xk;
            m2[k] = cu * yk;
            m3[k] = cu * xk * xk + sxx;
            m4[k] = cu * xk * yk + sxy;
            msyy[k] = cu * yk * yk + syy;
            probe += ((m0[k] + m1[k]) + (m2[k] + m3[k])) + (m4[k] + msyy[k]); /* NaN or inf when one is */
            ymax = yk > ymax ? yk : ymax; /* over every block (0 where unusable), as numpy */
            ymin = yk < ymin ? yk : ymin;
            if (u && c[k] != c_prev) { /* 1 / c in float32, as numpy; 1 / (c - 2) of the noise */
                c_prev = c[k];
                inv_c = (double)(float)(1.0 / (c[k] > 1.0 ? c[k] : 1.0));
                inv_c2 = 1.0 / (c[k] - 2.0);
            }
            invc[k] = u ? inv_c : 0.0;
            /* 1. noise: the within-block residual variance about a line (+inf where unusable or not finite) */
            double v = u ? nmax(bsyy[k] - bsxy[k] * bsxy[k] / bsxx[k], 0.0) * inv_c2 : INFINITY;
            tmp[k] = isfinite(v) ? v : INFINITY;
        }
        int ynan = 0;
        M.finite = isfinite(probe);
        if (!M.finite) { /* rare: which moments are not finite (probe may also have overflowed) */
            int fin = 1;
            for (int64_t k = 0; k < nb; k++) {
                fin = fin && isfinite(m0[k]) && isfinite(m1[k]) && isfinite(m2[k]) && isfinite(m3[k])
                      && isfinite(m4[k]) && isfinite(msyy[k]);
                ynan = ynan || isnan(ym[k]);
            }
            M.finite = fin;
        }

        /* ---- 1. noise: the median (numpy.partition's k = nb // 2) of the within-block variances */
        double sig2 = kth_smallest(tmp, nb, nb / 2, sel);
        double floor_ = noise_floor + 1e-6 * (ynan ? NAN : ymax - ymin);
        sig2 = isfinite(sig2) ? nmax(sig2, floor_ * floor_) : floor_ * floor_;
        double sigma = sqrt(sig2);
        int enough = nvalid >= MIN_FREE_BLOCKS + MIN_CONTACT_BLOCKS;

        /* ---- 2. constant-compliance region */
        for (int64_t k = 0; k < nb; k++) inc[k] = vb[k] & (k >= last - 2);
        double s_ref = fit(&M, inc, last - 2, nb, 0).s;
        /* the last kink before `last`: pair slopes (blocks k, k+1) evaluated from the end, as needed */
        double tol_rel = tolerance * fabs(s_ref), tol_abs = 4.0 * sigma;
        int64_t k_off = first - 2, k = imin(nb - 2, last - 1);
        if (k >= 1) {
            int off_hi = pair_off(mom, nb, vb, k, s_ref, tol_rel, tol_abs);
            for (; k >= 1; k--) {
                int off_lo = pair_off(mom, nb, vb, k - 1, s_ref, tol_rel, tol_abs);
                if (off_hi && off_lo) { /* pair slopes k and k-1 both off: the kink in block k */
                    k_off = k;
                    break;
                }
                off_hi = off_lo;
            }
        }
        int64_t start = imin(k_off + 2, last - (MIN_CONTACT_BLOCKS - 1));
        for (int64_t k = 0; k < nb; k++) inc_c[k] = vb[k] & (k >= start) & (k <= last);

        /* ---- 3. free baseline */
        int64_t n0 = imax(3, floordiv(start - first, 2));
        double travel = fabs(xm[last] - xm[first]) / (double)imax(last - first, 1);
        double wd = ceil(baseline_window / travel);
        if (isnan(wd)) wd = (double)nb;
        else if (isinf(wd)) wd = wd > 0 ? (double)nb : -DBL_MAX;
        wd = wd > MIN_BASELINE_BLOCKS ? wd : MIN_BASELINE_BLOCKS; /* np.clip: maximum, then minimum */
        wd = wd < (double)nb ? wd : (double)nb;
        int64_t window = (int64_t)wd;

        cb[0] = 0;
        for (int q = 0; q < 5; q++) cm[q * (nb + 1)] = 0.0;
        for (int64_t k = 0; k < nb; k++) {
            for (int q = 0; q < 5; q++) cm[q * (nb + 1) + k + 1] = cm[q * (nb + 1) + k] + mom[q * nb + k];
            cb[k + 1] = cb[k] + vb[k];
        }
        local_t F = {nb, first, window, cm, cb, xm, ym, invc, vb, sig2};
        double misfit;
        int64_t end_loc = free_region(&F, start, threshold, region_threshold, baseline_margin, tmp, sel, lines,
                                      bout, off, inc_loc, &misfit);
        int64_t free_end = grown_region(&M, xm, ym, invc, vb, sig2, first, last, start, threshold,
                                        region_threshold, baseline_margin, inc_b, inc_new, bout);
        if (misfit > CURVED_BASELINE || free_end < end_loc - window) {
            memcpy(inc_b, inc_loc, (size_t)nb);
            free_end = end_loc;
        }

        line_t lb = fit(&M, inc_b, first, nb, 1), lc = fit(&M, inc_c, start, nb, 1);
        int bad_contact = !(lc.s >= slope_lo && lc.s <= slope_hi) || !enough;
        int64_t nfree = 0;
        for (int64_t k = 0; k < nb; k++) nfree += inc_b[k];
        int bad_free = nfree < MIN_FREE_BLOCKS;
        int steep = fabs(lb.s) > 0.5 * fabs(isfinite(lc.s) ? lc.s : -1.0);
        int starts = steep && (free_end - first <= n0 + 1) && !bad_contact;
        int64_t flags = 0;
        if (starts) flags |= STARTS_IN_CONTACT;
        if ((bad_free || (steep && !bad_contact)) && !starts) flags |= NO_BASELINE;
        if (bad_contact) flags |= NO_CONTACT;

        /* ---- 4. intersection and its uncertainty */
        double sb = lb.s, sc_ = lc.s, ds = sb - sc_;
        double xs = (lc.a - lb.a + sb * lb.x0 - sc_ * lc.x0) / ds;
        double var = (lb.var / lb.n + lc.var / lc.n + (xs - lb.x0) * (xs - lb.x0) * lb.var / lb.sxx
                      + (xs - lc.x0) * (xs - lc.x0) * lc.var / lc.sxx) / (ds * ds);
        if (!isfinite(xs) && flags == 0) flags |= NO_CONTACT;

        out[O_POS * n + r] = xs + xref;
        out[O_UNC * n + r] = sqrt(var);
        out[O_BSLOPE * n + r] = sb;
        out[O_BOFF * n + r] = yref + lb.a - sb * (xref + lb.x0);
        out[O_CSLOPE * n + r] = sc_;
        out[O_COFF * n + r] = yref + lc.a - sc_ * (xref + lc.x0);
        out[O_FREE * n + r] = (double)imin(free_end * block, m);
        out[O_CSTART * n + r] = (double)imin(start * block, m);
        out[O_NOISE * n + r] = sigma;
        out[O_FLAGS * n + r] = (double)flags;
    }
    free(dbuf);
    free(cb);
    free(ubuf);
    free(lines);
    return 0;
}
