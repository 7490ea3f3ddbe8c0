/* PIL's bilinear arithmetic for _jpegcrop.c: the taps along an axis and the two lerps, with PIL's
 * operations in PIL's order, so the crops equal Image.transform(size, EXTENT, extent, BILINEAR)'s to
 * the bit. Included once, by _jpegcrop.c. */
#ifndef JPEGCROP_BILINEAR_H
#define JPEGCROP_BILINEAR_H

#include <math.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

/* PIL's FLOOR for the sample position (|v| < 2^29: _jpegcrop.c bounds the extent). */
static inline int pil_floor(double v) { return v < 0.0 ? (int)floor(v) : (int)v; }
static inline int clip_index(int v, int size) { return v < 0 ? 0 : (v < size ? v : size - 1); }

/* The bilinear taps along one axis, as PIL's BILINEAR_HEAD/BODY compute them: for output i, whether
 * the sample lies inside the frame, the two source indices (the second -1 along y when it is past
 * the edge, where PIL reuses the first row) and the fraction. */
typedef struct {
    int inside;
    int lo;
    int hi;
    double frac;
} Tap;

static void axis_taps(Tap *taps, int n, double start, double step, int size, int is_y) {
    for (int i = 0; i < n; i++) {
        double in = i + 0.5;
        /* PIL: a0 * xin + a1 * yin + a2 with a1 = 0 (x), or a3 * xin + a4 * yin + a5 with a3 = 0 (y). */
        double pos = is_y ? (0.0 + step * in) + start : (step * in + 0.0) + start;
        Tap *t = &taps[i];
        t->inside = !(pos < 0.0 || pos >= size);
        double p = pos - 0.5;
        int k = pil_floor(p);
        t->frac = p - k;
        t->lo = clip_index(k, size);
        if (is_y) {
            t->hi = (k + 1 >= 0 && k + 1 < size) ? k + 1 : -1;
        } else {
            t->hi = clip_index(k + 1, size);
        }
    }
}

/* The arithmetic loops are compiled twice on x86-64 Linux, for AVX2 and for the baseline, and the
 * loader picks one for the CPU. Vectorising them changes no result: each value is the same IEEE
 * double operations in the same order (and -ffp-contract=off forbids fused multiply-adds). */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* PIL's horizontal lerp a + (b - a) * dx of one source row for every output value, 0 outside the
 * frame: pixel x blends the pixels at byte offsets p0[x] and p1[x] of `src` by dx[x] (outside the
 * frame both offsets are 0 and dx 0; the value is zeroed afterwards). */
VECTOR_CLONES
static void lerp_row_scalar(double *h, int n, const unsigned char *src, const int *p0, const int *p1,
                            const double *dx) {
    for (int x = 0; x < n; x++) {
        for (int c = 0; c < 3; c++) {
            double a = src[p0[x] + c], b = src[p1[x] + c];
            h[3 * x + c] = a + (b - a) * dx[x];
        }
    }
}

#ifdef HAVE_AVX2_PATH
/* The same lerp a pixel at a time: its three bytes (and the next one, ignored) widened to four
 * doubles, one subtract, multiply and add each as the scalar code: identical values, ~3x faster.
 * Writes h[3n] (one padding double) and reads one byte past a row's last pixel (rows are padded). */
__attribute__((target("avx2"))) static void lerp_row_avx2(double *h, int n, const unsigned char *src,
                                                         const int *p0, const int *p1,
                                                         const double *dx) {
    for (int x = 0; x < n; x++) {
        int wa, wb;
        memcpy(&wa, src + p0[x], 4);
        memcpy(&wb, src + p1[x], 4);
        __m256d va = _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(wa)));
        __m256d vb = _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(wb)));
        __m256d d = _mm256_broadcast_sd(dx + x);
        _mm256_storeu_pd(h + 3 * x, _mm256_add_pd(va, _mm256_mul_pd(_mm256_sub_pd(vb, va), d)));
    }
}
#endif

typedef void (*LerpRow)(double *, int, const unsigned char *, const int *, const int *, const double *);

static LerpRow lerp_row = lerp_row_scalar; /* the fastest at import (find_kernels), or set_kernel's */

/* PIL's vertical lerp v1 + (v2 - v1) * dy, truncated to uint8. */
VECTOR_CLONES
static void lerp_rows(unsigned char *out, int count, const double *v1, const double *v2, double dy,
                      int *truncated) {
    for (int i = 0; i < count; i++) {
        truncated[i] = (int)(v1[i] + (v2[i] - v1[i]) * dy); /* in [0, 255]: as PIL's (UINT8) cast */
    }
    for (int i = 0; i < count; i++) {
        out[i] = (unsigned char)truncated[i];
    }
}

#endif
