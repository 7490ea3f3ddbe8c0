/* Crop a JPEG frame, decoding only the rows and columns the crop reads.
 *
 * One call per crop: libjpeg-turbo decodes the frame at 1/scale in the DCT domain (scale_denom, the
 * scale PIL's draft picks for the same request), skips the rows above the crop
 * (jpeg_skip_scanlines), crops the columns (jpeg_crop_scanline), stops after the last row the crop
 * reads, and the crop is resampled with the arithmetic of PIL's
 * `Image.transform(size, EXTENT, extent, BILINEAR)` on the full decoded frame (_jpegcrop_bilinear.h):
 * the same sample positions, the same clamping at the frame edge, zero outside the frame, the same
 * truncation to uint8. Samples are computed in full-frame coordinates and only then offset into the
 * decoded region, so the crop is PIL's whenever the decoded pixels are. libjpeg-turbo decodes the
 * same pixels in a region as in the full frame but near the region's edges, which fancy upsampling
 * extrapolates from the region's own chroma samples: the region is decoded two chroma samples wider
 * on each side than the crop reads, and whole rows for samplings other than 1:1 and 2:1 across.
 *
 * Every argument is checked before use (ValueError naming it): the extent finite, ordered and within
 * +-2^26, so no index computation can overflow. Frames over `max_pixels` (PIL's MAX_IMAGE_PIXELS)
 * are refused from the header, before libjpeg allocates anything frame-sized.
 *
 * Requires libjpeg-turbo >= 1.5 (jpeg_skip_scanlines, jpeg_crop_scanline). Any libjpeg error or
 * warning (corrupt data, premature end) raises DecodeError (a ValueError): the Python side then hands
 * the frame to PIL, which accepts or refuses it with its own message.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "_jpegcrop_bilinear.h"

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

/* Source rows, decoded a block at a time: one libjpeg call fills up to BLOCK_ROWS rows, so decoding
 * and resampling take turns once per block, not once per row (each turn evicts the other's data
 * from the L1 cache: measured, the lerps ran 2-4x slower when interleaved row by row). A block's
 * last row is kept as the next block's first: an output row may blend it with the next row. Rows
 * are decoded in order and never past `last`. */
#define BLOCK_ROWS 16

typedef struct {
    j_decompress_ptr cinfo;
    unsigned char *rows; /* BLOCK_ROWS + 1 rows of `stride` bytes */
    size_t stride;
    int base;  /* the source row held in rows[0] */
    int count; /* rows held */
    int last;  /* the last source row the crop reads */
} RowBlock;

static const unsigned char *block_row(RowBlock *b, int r) {
    while (r >= b->base + b->count) {
        if (b->count == BLOCK_ROWS + 1) {
            memcpy(b->rows, b->rows + (size_t)BLOCK_ROWS * b->stride, b->stride);
            b->base += BLOCK_ROWS;
            b->count = 1;
        }
        JSAMPROW dest[BLOCK_ROWS + 1];
        int want = BLOCK_ROWS + 1 - b->count, remaining = b->last + 1 - (b->base + b->count);
        want = want < remaining ? want : remaining;
        for (int i = 0; i < want; i++) {
            dest[i] = b->rows + (size_t)(b->count + i) * b->stride;
        }
        JDIMENSION got = jpeg_read_scanlines(b->cinfo, dest, (JDIMENSION)want);
        if (got == 0) { /* cannot happen with an in-memory source; never loop on it */
            ErrorManager *err = (ErrorManager *)b->cinfo->err;
            snprintf(err->message, sizeof(err->message), "the decoder returned no row");
            longjmp(err->jump, 1);
        }
        b->count += (int)got;
    }
    return b->rows + (size_t)(r - b->base) * b->stride;
}

/* The crop, with PIL's arithmetic in PIL's order: each output value is (v1 + (v2 - v1) * dy) of the
 * horizontal lerps v1, v2 of its two source rows, truncated. The source rows of successive output
 * rows never go back, and the last two rows' lerps are kept, which are all a next output row can
 * share. Rows come from `rows` (the cropped columns, from column `left`). `flip` mirrors the crop
 * left-right (the columns' taps are laid out mirrored). `iwork` holds 5n ints, `work` 7n + 2 doubles. */
static void resample(unsigned char *out, int n, int flip, RowBlock *rows, int left, const Tap *xt,
                     const Tap *yt, int *iwork, double *work) {
    int count = n * 3;
    int *p0 = iwork, *p1 = iwork + n, *truncated = iwork + 2 * n;
    /* The slots hold one padding double each (lerp_row_avx2 writes one past the row). */
    double *dx = work, *slot[2] = {work + n, work + n + count + 1};
    for (int x = 0; x < n; x++) {
        const Tap *tx = &xt[flip ? n - 1 - x : x];
        /* Outside the frame both taps read the row's first pixel with fraction 0 and the value is
         * zeroed below: PIL writes 0 there. */
        p0[x] = tx->inside ? (tx->lo - left) * 3 : 0;
        p1[x] = tx->inside ? (tx->hi - left) * 3 : 0;
        dx[x] = tx->inside ? tx->frac : 0.0;
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
            lerp_row(slot[s], n, block_row(rows, r), p0, p1, dx);
            tag[s] = r;
            have[k] = s;
        }
        lerp_rows(px, count, slot[have[0]], slot[have[1]], ty->hi >= 0 ? ty->frac : 0.0, truncated);
        memset(px, 0, (size_t)lead * 3);
        memset(px + (size_t)(n - trail) * 3, 0, (size_t)trail * 3);
    }
}

/* Frames the decoder will not cut (libjpeg errors and warnings, the pixel limit): inputs/jpeg.py hands
 * them to PIL, which decodes or refuses them. A bad argument raises plain ValueError instead. */
static PyObject *DecodeError;

/* Extent coordinates stay within +-2^26: scaled by up to 8 (pil_draft_scale), every sample position,
 * index and index + 1 still fits an int. */
#define COORD_LIMIT 67108864.0
#define MAX_N 65536

/* 0 when every argument is usable; else -1 with a one-line ValueError naming the first bad one. */
static int check_args(int scale, const double *extent, int n, const Py_buffer *out) {
    static const char *names[4] = {"x0", "y0", "x1", "y1"};
    char text[200];
    text[0] = '\0';
    if (scale != 1 && scale != 2 && scale != 4 && scale != 8) {
        snprintf(text, sizeof(text), "scale=%d is invalid: use 1, 2, 4 or 8", scale);
    } else if (n < 1 || n > MAX_N) {
        snprintf(text, sizeof(text), "n=%d is invalid: the crop side must be 1 to %d pixels", n, MAX_N);
    }
    for (int i = 0; i < 4 && !text[0]; i++) {
        if (!(fabs(extent[i]) <= COORD_LIMIT)) { /* NaN fails too */
            snprintf(text, sizeof(text), "%s=%g is invalid: extent coordinates must be finite and within "
                     "+-2^26 pixels", names[i], extent[i]);
        }
    }
    for (int i = 0; i < 2 && !text[0]; i++) {
        if (!(extent[i + 2] > extent[i])) {
            snprintf(text, sizeof(text), "%s=%g is not greater than %s=%g: the extent must have x0 < x1 and "
                     "y0 < y1", names[i + 2], extent[i + 2], names[i], extent[i]);
        }
    }
    if (!text[0] && (out->len != (Py_ssize_t)n * n * 3 || !PyBuffer_IsContiguous(out, 'C'))) {
        snprintf(text, sizeof(text), "out holds %zd bytes%s: it must be a contiguous n x n x 3 = %lld byte "
                 "buffer", out->len, PyBuffer_IsContiguous(out, 'C') ? "" : ", not contiguous",
                 (long long)n * n * 3);
    }
    if (text[0]) {
        PyErr_SetString(PyExc_ValueError, text);
        return -1;
    }
    return 0;
}

/* The DCT scale PIL's JpegImageFile.draft picks when asked for (w // scale, h // scale), as
 * processing.open_frame asks: for frames under `scale` pixels a side it is smaller than asked (a
 * 7-pixel-wide frame asked for 1/8 gets 1/4, a 1-pixel-high one 1/1), and both decoders must cut
 * the same pixels. */
static int pil_draft_scale(int scale, long w, long h) {
    if (scale == 1) {
        return 1;
    }
    long want_w = w / scale > 1 ? w / scale : 1, want_h = h / scale > 1 ? h / scale : 1;
    long q = w / want_w < h / want_h ? w / want_w : h / want_h;
    return q >= 8 ? 8 : (q >= 4 ? 4 : (q >= 2 ? 2 : 1));
}

/* The columns a cropped decode must add each side of those the crop reads, or -1 for samplings
 * whose cropped rows are not the full rows' (tested: h4 luma sampling differs inside the region).
 * libjpeg-turbo extrapolates a region's edge columns from its own chroma samples: two chroma
 * samples of margin keep every column the crop reads computed from the full rows' samples. */
static int crop_margin(j_decompress_ptr cinfo) {
    int ratio = 1;
    for (int i = 0; i < cinfo->num_components; i++) {
        int h = cinfo->comp_info[i].h_samp_factor;
        if (h < 1 || cinfo->max_h_samp_factor % h != 0 || cinfo->max_h_samp_factor / h > 2) {
            return -1;
        }
        ratio = cinfo->max_h_samp_factor / h > ratio ? cinfo->max_h_samp_factor / h : ratio;
    }
    return 2 * ratio;
}

static PyObject *crop(PyObject *self, PyObject *args) {
    Py_buffer data, target;
    int scale, n, flip = 0;
    double extent[4];
    long long max_pixels;
    if (!PyArg_ParseTuple(args, "y*iddddiw*L|p", &data, &scale, &extent[0], &extent[1], &extent[2],
                          &extent[3], &n, &target, &max_pixels, &flip)) {
        return NULL;
    }
    if (check_args(scale, extent, n, &target) < 0) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&target);
        return NULL;
    }
    struct jpeg_decompress_struct cinfo;
    ErrorManager err;
    Tap *volatile taps = NULL;
    unsigned char *volatile rows = NULL; /* a block of decoded rows of the cropped columns */
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
        PyErr_SetString(DecodeError, err.message);
        goto done;
    }
    jpeg_mem_src(&cinfo, (const unsigned char *)data.buf, (unsigned long)data.len);
    jpeg_read_header(&cinfo, TRUE);
    /* PIL's limit, from the header, before libjpeg allocates anything the size of the frame (a
     * progressive frame's coefficients: ~2 bytes a pixel a component). */
    long long frame_pixels = (long long)cinfo.image_width * cinfo.image_height;
    if (max_pixels >= 0 && frame_pixels > max_pixels) {
        PyErr_Format(DecodeError, "image size %ux%u (%lld pixels) is over the limit of %lld pixels",
                     cinfo.image_width, cinfo.image_height, frame_pixels, max_pixels);
        goto done;
    }
    cinfo.out_color_space = JCS_RGB;
    cinfo.scale_num = 1;
    int decode_scale = pil_draft_scale(scale, (long)cinfo.image_width, (long)cinfo.image_height);
    cinfo.scale_denom = (unsigned int)decode_scale;
    for (int i = 0; i < 4; i++) {
        /* Into the pixels of that scale: a power of two, so exactly PIL's path's extent. */
        extent[i] *= (double)scale / decode_scale;
    }
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_calc_output_dimensions(&cinfo);
    int width = (int)cinfo.output_width, height = (int)cinfo.output_height;

    /* Taps (2n), then the resampler's work space: 5n ints (+1 keeps the doubles aligned), 7n + 2
     * doubles. */
    taps = (Tap *)malloc(sizeof(Tap) * 2 * (size_t)n + (sizeof(int) * 6 + sizeof(double) * 7) * (size_t)n +
                         sizeof(double) * 2);
    if (taps == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Tap *xt = taps, *yt = taps + n;
    /* PIL's EXTENT -> AFFINE conversion: xs = (x1 - x0) / w, ys = (y1 - y0) / h. */
    axis_taps(xt, n, extent[0], (extent[2] - extent[0]) / n, width, 0);
    axis_taps(yt, n, extent[1], (extent[3] - extent[1]) / n, height, 1);
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
    int margin = crop_margin(&cinfo);
    unsigned char *pixels = (unsigned char *)target.buf;
    thread = PyEval_SaveThread();
    if (col_hi < 0 || row_hi < 0) { /* the crop lies wholly outside the frame */
        memset(pixels, 0, (size_t)n * n * 3);
    } else {
        jpeg_start_decompress(&cinfo);
        JDIMENSION left = 0, span = (JDIMENSION)width;
        if (margin >= 0) {
            left = (JDIMENSION)(col_lo > margin ? col_lo - margin : 0);
            span = (JDIMENSION)(col_hi + 1 + margin < width ? col_hi + 1 + margin : width) - left;
        }
        if (span < (JDIMENSION)width) {
            jpeg_crop_scanline(&cinfo, &left, &span); /* moves left to an iMCU boundary */
        }
        /* + 1 byte a row: lerp_row_avx2 reads 4 bytes a pixel. */
        RowBlock block = {&cinfo, NULL, (size_t)span * 3 + 1, row_lo, 0, row_hi};
        rows = (unsigned char *)malloc(block.stride * (BLOCK_ROWS + 1));
        block.rows = rows;
        if (rows == NULL) {
            PyEval_RestoreThread(thread);
            PyErr_NoMemory();
            goto done;
        }
        if (row_lo > 0) {
            jpeg_skip_scanlines(&cinfo, (JDIMENSION)row_lo);
        }
        int *iwork = (int *)(taps + 2 * n);
        double *work = (double *)(iwork + 6 * n);
        resample(pixels, n, flip, &block, (int)left, xt, yt, iwork, work);
    }
    PyEval_RestoreThread(thread);
    result = Py_BuildValue("(ii)", width, height);
done: /* every exit: an error (Python exception set, GIL held) or the result */
    jpeg_destroy_decompress(&cinfo);
    free(taps);
    free(rows);
    PyBuffer_Release(&data);
    PyBuffer_Release(&target);
    return result;
}

/* The horizontal-lerp kernels this CPU runs, fastest (the default) first; found once at import. */
typedef struct {
    const char *name;
    LerpRow fn;
} Kernel;

static Kernel available[2];
static int available_count = 0;

static void find_kernels(void) {
    available_count = 0; /* the module may be initialised again (loaded from a second path) */
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        available[available_count++] = (Kernel){"avx2", lerp_row_avx2};
    }
#endif
    available[available_count++] = (Kernel){"scalar", lerp_row_scalar};
    lerp_row = available[0].fn;
}

/* Their names, the default first: tests run each. */
static PyObject *kernels(PyObject *self, PyObject *unused) {
    PyObject *names = PyTuple_New(available_count);
    for (int i = 0; names != NULL && i < available_count; i++) {
        PyObject *name = PyUnicode_FromString(available[i].name);
        if (name == NULL) {
            Py_CLEAR(names);
            break;
        }
        PyTuple_SET_ITEM(names, i, name);
    }
    return names;
}

static PyObject *set_kernel(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) {
        return NULL;
    }
    for (int i = 0; i < available_count; i++) {
        if (strcmp(name, available[i].name) == 0) {
            lerp_row = available[i].fn;
            Py_RETURN_NONE;
        }
    }
    PyErr_Format(PyExc_ValueError, "kernel %s does not run on this CPU: use one of kernels()", name);
    return NULL;
}

static PyMethodDef methods[] = {
    {"kernels", kernels, METH_NOARGS, "kernels() -> the horizontal-lerp kernels this CPU runs, default first"},
    {"set_kernel", set_kernel, METH_VARARGS, "set_kernel(name): use that kernel (all give the same crops)"},
    {"crop", crop, METH_VARARGS,
     "crop(jpeg_bytes, scale, x0, y0, x1, y1, n, out, max_pixels, flip=False) -> (decoded_w, decoded_h)\n\n"
     "Write into `out` (n * n * 3 bytes) the RGB crop of the extent (x0, y0, x1, y1), in the\n"
     "coordinates of the frame at 1/scale, as PIL's transform(EXTENT, BILINEAR) cuts it from the frame\n"
     "decoded at the scale PIL's draft picks (1/scale but for frames under `scale` pixels a side),\n"
     "mirrored left-right when `flip`. DecodeError on any libjpeg error or warning and for frames\n"
     "over max_pixels (negative: no limit); ValueError on bad arguments."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpegcrop", "Region decode + crop of JPEG frames (libjpeg-turbo).", -1,
    methods,
};

/* Bumped with every change of the interface: inputs/jpeg.py refuses a stale build of an older one. */
#define INTERFACE_VERSION 5

PyMODINIT_FUNC PyInit__jpegcrop(void) {
    find_kernels();
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (DecodeError == NULL) {
        DecodeError = PyErr_NewExceptionWithDoc("_jpegcrop.DecodeError",
                                                "A frame the region decoder will not cut (PIL decides).",
                                                PyExc_ValueError, NULL);
    }
    if (DecodeError == NULL || PyModule_AddIntConstant(m, "INTERFACE_VERSION", INTERFACE_VERSION) < 0 ||
        PyModule_AddObjectRef(m, "DecodeError", DecodeError) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
