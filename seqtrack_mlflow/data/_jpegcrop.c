/* Crop a JPEG frame, decoding only the rows and columns the crop reads.
 *
 * One call per crop: libjpeg-turbo decodes the frame at 1/scale in the DCT domain (scale_denom),
 * skips the rows above the crop (jpeg_skip_scanlines), crops the columns (jpeg_crop_scanline), stops
 * after the last row the crop reads, and the crop is resampled with the arithmetic of PIL's
 * `Image.transform(size, EXTENT, extent, BILINEAR)` on the full decoded frame: the same sample
 * positions (x + 0.5) * (x1 - x0) / n + x0 in double precision, the same clamping at the frame edge,
 * zero outside the frame, the same truncation to uint8. Samples are computed in full-frame
 * coordinates and only then offset into the decoded region, so the crop is PIL's whenever the
 * decoded pixels are (libjpeg-turbo decodes the same pixels in a region as in the full frame, but
 * for the edge column of a cropped region, which fancy upsampling extrapolates: the region is
 * decoded one column wider on each side than the crop reads).
 *
 * Requires libjpeg-turbo >= 1.5 (jpeg_skip_scanlines, jpeg_crop_scanline). Any libjpeg error or
 * warning (corrupt data, premature end) raises ValueError: the Python side then hands the frame to
 * PIL, which accepts or refuses it with its own message.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} ErrorManager;

static void on_error(j_common_ptr cinfo) {
    ErrorManager *err = (ErrorManager *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    if (level < 0) {
        on_error(cinfo); /* a warning means damaged data: refuse rather than return its pixels */
    }
}

/* PIL's FLOOR for the sample position. */
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

/* PIL's horizontal lerp a + (b - a) * dx of one source row for every output value (pixel and
 * channel), 0 outside the frame: the two source bytes are gathered first, so the arithmetic runs
 * over contiguous arrays. `dx3` holds each column's fraction once per channel (0 outside). */
VECTOR_CLONES
static void lerp_row_scalar(double *h, int count, const unsigned char *src, const int *off0,
                            const int *off1, const double *dx3, double *a, double *b) {
    for (int i = 0; i < count; i++) {
        a[i] = src[off0[i]];
        b[i] = src[off1[i]];
    }
    for (int i = 0; i < count; i++) {
        h[i] = a[i] + (b[i] - a[i]) * dx3[i];
    }
}

#ifdef HAVE_AVX2_PATH
/* The same lerp a pixel at a time: its three bytes (and the next one, ignored) widened to four
 * doubles, one subtract, multiply and add each, as the scalar code: identical values. Gathering whole
 * pixels rather than single bytes is what makes it ~3x faster. Writes h[count] (one padding double)
 * and reads one byte past the last pixel (the row buffer has padding). */
__attribute__((target("avx2"))) static void lerp_row_avx2(double *h, int count,
                                                         const unsigned char *src, const int *off0,
                                                         const int *off1, const double *dx3,
                                                         double *a, double *b) {
    (void)a;
    (void)b;
    for (int i = 0; i < count; i += 3) {
        int wa, wb;
        memcpy(&wa, src + off0[i], 4);
        memcpy(&wb, src + off1[i], 4);
        __m256d va = _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(wa)));
        __m256d vb = _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(wb)));
        __m256d d = _mm256_set1_pd(dx3[i]);
        _mm256_storeu_pd(h + i, _mm256_add_pd(va, _mm256_mul_pd(_mm256_sub_pd(vb, va), d)));
    }
}
#endif

typedef void (*LerpRow)(double *, int, const unsigned char *, const int *, const int *,
                        const double *, double *, double *);

static LerpRow lerp_row = lerp_row_scalar; /* set once at import for the CPU */

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

/* The crop, with PIL's arithmetic in PIL's order: each output value is (v1 + (v2 - v1) * dy) of the
 * horizontal lerps v1, v2 of its two source rows, truncated. Source rows are decoded one at a time,
 * in order, from `first_row` (the decoder's next row) into `row` (one row of the cropped columns,
 * starting at column `left`): the source rows of successive output rows never go back, and the last
 * two rows' lerps are kept, which are all a next output row can share. `flip` mirrors the crop
 * left-right (the columns' taps are laid out mirrored). `iwork` holds 9n ints, `work` 15n + 2 doubles. */
static void resample(unsigned char *out, int n, int flip, j_decompress_ptr cinfo, int first_row,
                     unsigned char *row, int left, const Tap *xt, const Tap *yt, int *iwork,
                     double *work) {
    int count = n * 3;
    int *off0 = iwork, *off1 = iwork + count, *truncated = iwork + 2 * count;
    /* The slots hold one padding double each (lerp_row_avx2 writes one past the row). */
    double *dx3 = work, *slot[2] = {work + count, work + 2 * count + 1};
    double *a = work + 3 * count + 2, *b = work + 4 * count + 2;
    for (int x = 0; x < n; x++) {
        const Tap *tx = &xt[flip ? n - 1 - x : x];
        for (int c = 0; c < 3; c++) {
            int i = x * 3 + c;
            /* Outside the frame both taps read the row's first byte with fraction 0 and the value
             * is zeroed below: PIL writes 0 there. */
            off0[i] = tx->inside ? (tx->lo - left) * 3 + c : 0;
            off1[i] = tx->inside ? (tx->hi - left) * 3 + c : 0;
            dx3[i] = tx->inside ? tx->frac : 0.0;
        }
    }
    /* The columns outside the frame, zeroed in every row: sample positions increase along x, so
     * they are a run at each end of the output row (at least one column is inside). */
    int lead = 0, trail = 0;
    while (!xt[flip ? n - 1 - lead : lead].inside) {
        lead++;
    }
    while (!xt[flip ? trail : n - 1 - trail].inside) {
        trail++;
    }
    int next = first_row; /* the next row the decoder returns */
    int tag[2] = {-1, -1};
    for (int y = 0; y < n; y++) {
        const Tap *ty = &yt[y];
        unsigned char *px = out + (size_t)y * count;
        if (!ty->inside) {
            memset(px, 0, (size_t)count);
            continue;
        }
        /* PIL reuses the first row's value when the second row is past the frame edge. */
        int need[2] = {ty->lo, ty->hi >= 0 ? ty->hi : ty->lo};
        int have[2];
        for (int k = 0; k < 2; k++) {
            int r = need[k];
            have[k] = tag[0] == r ? 0 : (tag[1] == r ? 1 : -1);
            if (have[k] >= 0) {
                continue;
            }
            /* Evict the slot the other needed row is not in. */
            int s = k == 0 ? (tag[0] == need[1] ? 1 : 0) : 1 - have[0];
            while (next <= r) {
                JSAMPROW target = row;
                jpeg_read_scanlines(cinfo, &target, 1);
                next++;
            }
            lerp_row(slot[s], count, row, off0, off1, dx3, a, b);
            tag[s] = r;
            have[k] = s;
        }
        lerp_rows(px, count, slot[have[0]], slot[have[1]], ty->hi >= 0 ? ty->frac : 0.0, truncated);
        memset(px, 0, (size_t)lead * 3);
        memset(px + (size_t)(n - trail) * 3, 0, (size_t)trail * 3);
    }
}

static PyObject *crop(PyObject *self, PyObject *args) {
    Py_buffer data, target;
    int scale, n, flip = 0;
    double x0, y0, x1, y1;
    if (!PyArg_ParseTuple(args, "y*iddddiw*|p", &data, &scale, &x0, &y0, &x1, &y1, &n, &target,
                          &flip)) {
        return NULL;
    }
    if (n < 1 || n > 65536 || (scale != 1 && scale != 2 && scale != 4 && scale != 8) ||
        target.len != (Py_ssize_t)n * n * 3 || !PyBuffer_IsContiguous(&target, 'C')) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&target);
        PyErr_SetString(PyExc_ValueError,
                        "need scale 1, 2, 4 or 8 and a contiguous n x n x 3 byte output buffer");
        return NULL;
    }
    struct jpeg_decompress_struct cinfo;
    ErrorManager err;
    Tap *volatile taps = NULL;
    unsigned char *volatile row = NULL; /* one decoded row of the cropped columns */
    PyThreadState *volatile thread = NULL; /* set while the GIL is released */
    PyObject *result = NULL;

    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error;
    err.pub.emit_message = on_message;
    err.message[0] = '\0';
    jpeg_create_decompress(&cinfo);
    if (setjmp(err.jump)) {
        if (thread != NULL) {
            PyEval_RestoreThread(thread);
        }
        PyErr_SetString(PyExc_ValueError, err.message);
        goto done;
    }
    jpeg_mem_src(&cinfo, (const unsigned char *)data.buf, (unsigned long)data.len);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_RGB;
    cinfo.scale_num = 1;
    cinfo.scale_denom = (unsigned int)scale;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_calc_output_dimensions(&cinfo);
    int width = (int)cinfo.output_width, height = (int)cinfo.output_height;

    /* Taps (2n), then the resampler's work space: 9n ints (+1 keeps the doubles aligned), 15n + 2
     * doubles. */
    taps = (Tap *)malloc(sizeof(Tap) * 2 * (size_t)n + (sizeof(int) * 10 + sizeof(double) * 15) * (size_t)n +
                         sizeof(double) * 2);
    if (taps == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Tap *xt = taps, *yt = taps + n;
    /* PIL's EXTENT -> AFFINE conversion: xs = (x1 - x0) / w, ys = (y1 - y0) / h. */
    axis_taps(xt, n, x0, (x1 - x0) / n, width, 0);
    axis_taps(yt, n, y0, (y1 - y0) / n, height, 1);
    int col_lo = width, col_hi = -1, row_lo = height, row_hi = -1;
    for (int i = 0; i < n; i++) {
        if (xt[i].inside) {
            col_lo = xt[i].lo < col_lo ? xt[i].lo : col_lo;
            col_hi = xt[i].hi > col_hi ? xt[i].hi : col_hi;
        }
        if (yt[i].inside) {
            row_lo = yt[i].lo < row_lo ? yt[i].lo : row_lo;
            int last = yt[i].hi >= 0 ? yt[i].hi : yt[i].lo;
            row_hi = last > row_hi ? last : row_hi;
        }
    }
    unsigned char *pixels = (unsigned char *)target.buf;
    thread = PyEval_SaveThread();
    if (col_hi < 0 || row_hi < 0) { /* the crop lies wholly outside the frame */
        memset(pixels, 0, (size_t)n * n * 3);
    } else {
        jpeg_start_decompress(&cinfo);
        /* One column of margin each side: a cropped region's edge column is extrapolated. */
        JDIMENSION left = (JDIMENSION)(col_lo > 0 ? col_lo - 1 : 0);
        JDIMENSION right = (JDIMENSION)(col_hi + 2 < width ? col_hi + 2 : width);
        JDIMENSION span = right - left;
        if (span < (JDIMENSION)width) {
            jpeg_crop_scanline(&cinfo, &left, &span);
        }
        row = (unsigned char *)malloc((size_t)span * 3 + 1); /* + 1: lerp_row_avx2 reads 4 bytes a pixel */
        if (row == NULL) {
            PyEval_RestoreThread(thread);
            PyErr_NoMemory();
            goto done;
        }
        if (row_lo > 0) {
            jpeg_skip_scanlines(&cinfo, (JDIMENSION)row_lo);
        }
        int *iwork = (int *)(taps + 2 * n);
        double *work = (double *)(iwork + 10 * n);
        resample(pixels, n, flip, &cinfo, row_lo, row, (int)left, xt, yt, iwork, work);
    }
    PyEval_RestoreThread(thread);
    result = Py_BuildValue("(ii)", width, height);
done: /* every exit: an error (Python exception set, GIL held) or the result */
    jpeg_destroy_decompress(&cinfo);
    free(taps);
    free(row);
    PyBuffer_Release(&data);
    PyBuffer_Release(&target);
    return result;
}

static PyMethodDef methods[] = {
    {"crop", crop, METH_VARARGS,
     "crop(jpeg_bytes, scale, x0, y0, x1, y1, n, out, flip=False) -> (decoded_w, decoded_h)\n\n"
     "Write into `out` (n * n * 3 bytes) the RGB crop of the extent (x0, y0, x1, y1), in the\n"
     "coordinates of the frame decoded at 1/scale, as PIL's transform(EXTENT, BILINEAR) cuts it,\n"
     "mirrored left-right when `flip`; raises ValueError on any libjpeg error or warning."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpegcrop", "Region decode + crop of JPEG frames (libjpeg-turbo).", -1,
    methods,
};

/* Bumped with every change of the interface: data/jpeg.py refuses a stale build of an older one. */
#define INTERFACE_VERSION 2

PyMODINIT_FUNC PyInit__jpegcrop(void) {
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        lerp_row = lerp_row_avx2;
    }
#endif
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "INTERFACE_VERSION", INTERFACE_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
