/* Calling conventions of the compiled kernels (nrm_plugins/native.py declares the same with ctypes).
 * Arrays are C-contiguous, row-major (ramps, samples); every function handles rows independently. */
#ifndef NRM_KERNELS_H
#define NRM_KERNELS_H
#include <stdint.h>
#include <string.h>

/* Every kernel starts with nrm_enter(): where the CPU has AVX, the caller (the interpreter, libffi, numpy)
 * may leave the upper halves of the vector registers dirty, and then every SSE instruction of this code
 * waits on them (measured: the same kernel 4x slower when called from Python than from C).  vzeroupper
 * clears that state; it is only executed where the CPU supports it, so the build needs no -mavx. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
__attribute__((target("avx"))) static void nrm_clear_upper_(void) { __builtin_ia32_vzeroupper(); }
static inline void nrm_enter(void)
{
    if (__builtin_cpu_supports("avx")) nrm_clear_upper_();
}
#else
static inline void nrm_enter(void) {}
#endif

/* A float (double) is NaN or inf when all its exponent bits are set: tests on the bit pattern are integer
 * operations that vectorize (reads through integer pointers: the build uses -fno-strict-aliasing). */
#define NRM_EXP32 0x7f800000u
#define NRM_EXP64 0x7ff0000000000000ull

static inline uint32_t nrm_bits32(float v)
{
    uint32_t b;
    memcpy(&b, &v, 4);
    return b;
}

/* NRM_VECTOR on a kernel whose loops are integer scans or gathers: GCC builds an AVX2 version beside the
 * baseline one and picks it at load time where the CPU has AVX2 (SSE2 has no 32-bit unsigned max and no
 * 64-bit compare, so those loops stay scalar there).  Same IEEE operations, so the same results. */
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define NRM_VECTOR __attribute__((target_clones("avx2", "default")))
#else
#define NRM_VECTOR
#endif

/* bump when a signature below changes: native.py refuses a shared object of another version */
#define NRM_KERNELS_ABI 1

/* Two-line contact point (nrm_plugins/pipeline/contact.py two_line, same algorithm, per row).
 * x, y: (n, m) float32; w: (n, m) float32 0/1 weights or NULL.  par: block, threshold, region_threshold,
 * baseline_margin, slope_lo, slope_hi, slope_tolerance, noise_floor, baseline_window (9 doubles).
 * out: (10, n) doubles: position, uncertainty, baseline_slope, baseline_offset, contact_slope,
 * contact_offset, free_end, contact_start, noise, flags.  Returns 0, or -1 when out of memory. */
int nrm_two_line(int64_t n, int64_t m, const float *x, const float *y, const float *w, const double *par,
                 double *out);

/* Resample (derivative.py resample): z (n, m) float32, values (n, m) complex64 as float pairs,
 * lo/hi (n) int64; grid top, step, n_grid; out (n, n_grid) complex64, pos (n, n_grid) float32 or NULL. */
int nrm_resample(int64_t n, int64_t m, const float *z, const float *values, const int64_t *lo,
                 const int64_t *hi, double top, double step, int64_t n_grid, float *out, float *pos);

/* Savitzky-Golay derivative (derivative.py local_polynomial): values, out (n, g) complex64 as float pairs;
 * h points each side; step in the grid's unit. */
int nrm_local_polynomial(int64_t n, int64_t g, const float *values, int64_t h, double step, float *out);

/* Liquid background (process.py _background): X, Y (n, m) float32, valid (n, m) uint8 or NULL; the samples
 * start <= j < stop, first part j < half.  out (16, n) doubles: mean x, mean y, sigma, count of all, of the
 * first part and of the second; trend slope (re, im, per sample), its mean index jbar, its sigma. */
int nrm_background(int64_t n, int64_t m, const float *X, const float *Y, const uint8_t *valid,
                   const int64_t *start, const int64_t *stop, const int64_t *half, double *out);

/* Internal grid -> results' grid times a complex factor (process.py _to_output): a (n, g), out (n, nz)
 * complex64; j0 (nz) int64, w (nz) float32 interpolation weights. */
int nrm_to_output(int64_t n, int64_t g, const float *a, int64_t nz, const int64_t *j0, const float *w,
                  double f_re, double f_im, float *out);

/* Depth z_p (n, m float32 out), contact index, profile bounds lo/hi (process.py _chunk): x, y (n, m)
 * float32 oriented nm; xs, baseline and contact lines, noise (n) doubles; contact_start (n) int64. */
void nrm_depth(int64_t n, int64_t m, const float *x, const float *y, const double *xs, const double *bslope,
               const double *boff, const double *cslope, const double *coff, const double *noise,
               const int64_t *contact_start, double top, float *z, int64_t *cidx, int64_t *lo, int64_t *hi);

/* First pass (process.py _chunk): piezo (n, m) double, deflection/X/Y float32 in; per-row stats (12, n)
 * doubles and the oriented x (nm), y (deflection * scale), X, Y (n, m) float32 out. */
void nrm_prepare(int64_t n, int64_t m, const double *piezo, const float *defl, const float *lx, const float *ly,
                 double scale, float *x, float *y, float *X, float *Y, double *stats);

/* SEI thickness (thickness.py): values (n, g) complex64, sigma (n); grid top, step (nm); p, q grid points of
 * persistence and secant; out thickness (n, nm, NaN undetermined), at_top (n) uint8. */
int nrm_sei_thickness(int64_t n, int64_t g, const float *values, const double *sigma, double top, double step,
                      int64_t p, int64_t q, double rel_floor, double threshold, double bottom_reach,
                      double *thick, uint8_t *at_top);

/* Undo the lock-in output filter (moduli.py undo_output_filter), in place on (n, m) float32 rows in time
 * order: one stage's coefficients b0, b1, minus_e; the number of stages and of smoothing passes. */
int nrm_undo_output_filter(int64_t n, int64_t m, float *values, double b0, double b1, double minus_e,
                           int64_t stages, int64_t passes);

/* Oriented sample masks (process.py _chunk) of the rows of a chunk: valid_d, valid_l (n, m) uint8 out; per
 * row length, reverse, clip level, rail flag and largest deflection in; nan_in (n) uint8, nvalid_d (n) out. */
void nrm_masks(int64_t n, int64_t m, const double *piezo, const float *defl, const float *lx, const float *ly,
               const int64_t *length, const uint8_t *reverse, const float *clip, const uint8_t *rail,
               const float *dmax, uint8_t *valid_d, uint8_t *valid_l, uint8_t *nan_in, int64_t *nvalid_d);

/* Profile and background checks of the lateral samples, and X, Y zeroed where not valid (process.py _chunk):
 * X, Y (n, m) float32 in place; valid_d, valid_l (n, m) uint8; lo, hi, i_bg (n) int64; four (n) uint8 out. */
void nrm_lateral_checks(int64_t n, int64_t m, float *X, float *Y, const uint8_t *valid_d, const uint8_t *valid_l,
                        const int64_t *lo, const int64_t *hi, const int64_t *i_bg, int64_t edge, uint8_t *nan_prof,
                        uint8_t *clip_prof, uint8_t *masked_bg, uint8_t *clipped_bg);

/* Resample the rows `rows` (k of them) of the background-free lateral signal (X - off_x) + i (Y - off_y):
 * X, Y, z (n, m) float32; off_x, off_y, lo, hi per row of the chunk; out (k, n_grid) complex64, pos or NULL. */
int nrm_resample_xy(int64_t k, const int64_t *rows, int64_t m, const float *z, const float *X, const float *Y,
                    const float *off_x, const float *off_y, const int64_t *lo, const int64_t *hi, double top,
                    double step, int64_t n_grid, float *out, float *pos);

/* Deflection spikes (process.py _despike): y (n, m) float32 in place within the first length[r] samples;
 * threshold max(factor x robust noise, floor); count (n) samples replaced. */
int nrm_despike(int64_t n, int64_t m, float *y, const int64_t *length, double factor, double floor_,
                int64_t *count);

#endif
