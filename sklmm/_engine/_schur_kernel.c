/* The Schur update of the blocked factorization, level by level, without stored products.
 *
 * For the levels j in [lo, hi) of the first random-effect term, with C_j the cross-products of
 * everything else (the other terms, X, y) with level j (L_j nonzero rows, p columns, rows
 * sorted) and W_j a symmetric p x p weight, subtracts the upper triangle of S C_j W_j C_j' S
 * from a dense m x m array (row-major), S = diag(s) a scale of the rows (Lambda_R where the
 * later terms are scalar; ones otherwise):
 *
 *     out[r_a * m + r_b] -= s_{r_a} c_a' W_j c_b s_{r_b}      for a <= b (so r_a <= r_b),
 *
 * c_a the a-th nonzero row of C_j and r_a its row. Python (sklmm._engine.factor_schur) keeps
 * the inputs in the layout below and splits the levels between threads (the first subtracts from
 * the dense block itself, the others into zeroed arrays of their own); the loop runs without
 * the GIL.
 *
 * Part of sklmm (BSD-3-Clause).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(_MSC_VER)
#define RESTRICT __restrict
#define ALWAYS_INLINE static __forceinline
#else
#define RESTRICT restrict
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#endif

/* pairs (a <= b) of one level: out[R[a] * m + R[b]] -= V_a . g_b, four rows a at a time (they
   share each load of R[b] and g_b); P is a constant where the caller passes one */
ALWAYS_INLINE void
level_pairs(const Py_ssize_t P, const int32_t *RESTRICT R, const double *RESTRICT V,
            const double *RESTRICT g, const int64_t len, const Py_ssize_t m, double *RESTRICT out)
{
    int64_t a = 0;
    for (; a + 4 <= len; a += 4) {
        double *o[4];
        for (int k = 0; k < 4; k++) o[k] = out + (int64_t)R[a + k] * m;
        for (int k = 0; k < 4; k++)  /* the pairs among the four */
            for (int l = k; l < 4; l++) {
                double acc = 0.0;
                for (Py_ssize_t x = 0; x < P; x++) acc += V[(a + k) * P + x] * g[(a + l) * P + x];
                o[k][R[a + l]] -= acc;
            }
        double *const o0 = o[0], *const o1 = o[1], *const o2 = o[2], *const o3 = o[3];
        const double *const v = V + a * P;
        for (int64_t b = a + 4; b < len; b++) {
            const int32_t r = R[b];
            const double *const gb = g + b * P;
            double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
            for (Py_ssize_t x = 0; x < P; x++) {
                s0 += v[x] * gb[x];
                s1 += v[P + x] * gb[x];
                s2 += v[2 * P + x] * gb[x];
                s3 += v[3 * P + x] * gb[x];
            }
            o0[r] -= s0;
            o1[r] -= s1;
            o2[r] -= s2;
            o3[r] -= s3;
        }
    }
    for (; a < len; a++) {
        double *orow = out + (int64_t)R[a] * m;
        for (int64_t b = a; b < len; b++) {
            double acc = 0.0;
            for (Py_ssize_t x = 0; x < P; x++) acc += V[a * P + x] * g[b * P + x];
            orow[R[b]] -= acc;
        }
    }
}

static int
accumulate(const int32_t *RESTRICT rows, const int64_t *indptr, const double *RESTRICT values,
           const double *weights, const double *RESTRICT scale, Py_ssize_t p, Py_ssize_t lo,
           Py_ssize_t hi, Py_ssize_t m, double *RESTRICT out)
{
    int64_t max_len = 0;
    for (Py_ssize_t j = lo; j < hi; j++) {
        int64_t len = indptr[j + 1] - indptr[j];
        if (len > max_len) max_len = len;
    }
    if (max_len == 0) return 0;
    /* per level: g_b = s_b W_j c_b and v_a = s_a c_a (s the rows' scale) */
    double *g = malloc(sizeof(double) * (size_t)(2 * max_len * p));
    if (g == NULL) return -1;
    double *v = g + max_len * p;
    for (Py_ssize_t j = lo; j < hi; j++) {
        const int64_t s = indptr[j], len = indptr[j + 1] - s;
        if (len == 0) continue;
        const double *W = weights + j * p * p;
        const double *V = values + s * p;
        const int32_t *R = rows + s;
        for (int64_t b = 0; b < len; b++) {
            const double sb = scale[R[b]];
            for (Py_ssize_t x = 0; x < p; x++) {
                double acc = 0.0;
                for (Py_ssize_t y = 0; y < p; y++) acc += W[x * p + y] * V[b * p + y];
                g[b * p + x] = sb * acc;
                v[b * p + x] = sb * V[b * p + x];
            }
        }
        if (p == 1) /* constant P: the inner products unrolled (InstEval, crossed designs) */
            level_pairs(1, R, v, g, len, m, out);
        else if (p == 2)
            level_pairs(2, R, v, g, len, m, out);
        else
            level_pairs(p, R, v, g, len, m, out);
    }
    free(g);
    return 0;
}

/* Whether the levels lo..hi-1 of a kernel's entries are consistent with the buffers: indptr
   holds hi + 1 offsets, ascending from a non-negative one, and rows and values (p each) hold
   the entries up to indptr[hi]. */
/* The end of every entry point: its n buffers released; None where it succeeded, else NULL
   (with the error set). */
static PyObject *
finish(int ok, Py_buffer *const *held, int n)
{
    for (int i = 0; i < n; i++) PyBuffer_Release(held[i]);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

static int
levels_consistent(const Py_buffer *rows, const Py_buffer *indptr, const Py_buffer *values,
                  Py_ssize_t p, Py_ssize_t lo, Py_ssize_t hi)
{
    if (p < 1 || lo < 0 || hi < lo || indptr->len < (hi + 1) * 8) return 0;
    const int64_t *ip = indptr->buf;
    const int64_t end = ip[hi];
    return ip[lo] >= 0 && end >= ip[lo] && rows->len >= end * 4 && values->len >= end * p * 8;
}

static PyObject *
schur_accumulate(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer rows, indptr, values, weights, scale, out;
    Py_ssize_t p, lo, hi, m;
    int done_ok = 0;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*nnnnw*", &rows, &indptr, &values, &weights, &scale,
                          &p, &lo, &hi, &m, &out))
        return NULL;
    const int64_t *ip = indptr.buf;
    if (m < 1 || !levels_consistent(&rows, &indptr, &values, p, lo, hi) ||
        weights.len < hi * p * p * 8 || scale.len < m * 8 || out.len < m * m * 8) {
        PyErr_SetString(PyExc_ValueError, "schur_accumulate: inconsistent sizes");
        goto done;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = accumulate(rows.buf, ip, values.buf, weights.buf, scale.buf, p, lo, hi, m, out.buf);
    Py_END_ALLOW_THREADS
    if (status != 0) {
        PyErr_NoMemory();
        goto done;
    }
    done_ok = 1;
done:;
    Py_buffer *const held[] = {&rows, &indptr, &values, &weights, &scale, &out};
    return finish(done_ok, held, 6);
}

/* The Schur update's adjoint, for the gradient: for each entry a of the levels j in [lo, hi)
 * (row r_a, values c_a), the product of row r_a of a dense symmetric n x n array B with the
 * level's rows of C:
 *
 *     out[a] = sum_b B[r_a, r_b] c_b      over the entries b of a's level,
 *
 * p values each (out is indexed by entry, like values). Only B[r_a * n + r_b] with r_a <= r_b is
 * read (the upper triangle of a row-major B), each pair once, four rows a at a time as in the
 * update. Rows at or past n are rows and columns of zeros (the dense block's y row; ML's X
 * rows): out[a] = 0 there. Levels write disjoint entries, so threads may share out; the loop
 * runs without the GIL. */
ALWAYS_INLINE void
level_gather(const Py_ssize_t P, const int32_t *RESTRICT R, const double *RESTRICT c,
             const int64_t len, const double *RESTRICT B, const Py_ssize_t n, double *RESTRICT o)
{
    int64_t a = 0;
    for (; a + 4 <= len; a += 4) {
        const double *bk[4];
        for (int k = 0; k < 4; k++) bk[k] = B + (int64_t)R[a + k] * n;
        for (int k = 0; k < 4; k++) /* the pairs among the four */
            for (int l = k; l < 4; l++) {
                const double w = bk[k][R[a + l]];
                for (Py_ssize_t x = 0; x < P; x++) o[(a + k) * P + x] += w * c[(a + l) * P + x];
                if (l != k)
                    for (Py_ssize_t x = 0; x < P; x++) o[(a + l) * P + x] += w * c[(a + k) * P + x];
            }
        const double *const b0 = bk[0], *const b1 = bk[1], *const b2 = bk[2], *const b3 = bk[3];
        double *const oa = o + a * P;
        const double *const ca = c + a * P;
        for (int64_t b = a + 4; b < len; b++) {
            const int32_t r = R[b];
            const double w0 = b0[r], w1 = b1[r], w2 = b2[r], w3 = b3[r];
            const double *const cb = c + b * P;
            double *const ob = o + b * P;
            for (Py_ssize_t x = 0; x < P; x++) {
                oa[x] += w0 * cb[x];
                oa[P + x] += w1 * cb[x];
                oa[2 * P + x] += w2 * cb[x];
                oa[3 * P + x] += w3 * cb[x];
                ob[x] += w0 * ca[x] + w1 * ca[P + x] + w2 * ca[2 * P + x] + w3 * ca[3 * P + x];
            }
        }
    }
    for (; a < len; a++) {
        const double *brow = B + (int64_t)R[a] * n;
        for (int64_t b = a; b < len; b++) {
            const double w = brow[R[b]];
            for (Py_ssize_t x = 0; x < P; x++) o[a * P + x] += w * c[b * P + x];
            if (b != a)
                for (Py_ssize_t x = 0; x < P; x++) o[b * P + x] += w * c[a * P + x];
        }
    }
}

static void
gather(const int32_t *RESTRICT rows, const int64_t *indptr, const double *RESTRICT values,
       const double *RESTRICT B, Py_ssize_t p, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t n,
       double *RESTRICT out)
{
    for (int64_t a = indptr[lo]; a < indptr[hi]; a++)
        for (Py_ssize_t x = 0; x < p; x++) out[a * p + x] = 0.0;
    for (Py_ssize_t j = lo; j < hi; j++) {
        const int64_t s = indptr[j], e = indptr[j + 1];
        int64_t end = s; /* rows ascend within a level: those below n come first */
        while (end < e && rows[end] < n) end++;
        const int64_t len = end - s;
        if (p == 1)
            level_gather(1, rows + s, values + s, len, B, n, out + s);
        else if (p == 2)
            level_gather(2, rows + s, values + s * 2, len, B, n, out + s * 2);
        else
            level_gather(p, rows + s, values + s * p, len, B, n, out + s * p);
    }
}

static PyObject *
schur_gather(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer rows, indptr, values, B, out;
    Py_ssize_t p, lo, hi, n;
    int done_ok = 0;
    if (!PyArg_ParseTuple(args, "y*y*y*y*nnnnw*", &rows, &indptr, &values, &B, &p, &lo, &hi, &n,
                          &out))
        return NULL;
    const int64_t *ip = indptr.buf;
    int ok = n >= 0 && levels_consistent(&rows, &indptr, &values, p, lo, hi) && B.len >= n * n * 8 &&
             out.len >= ip[hi] * p * 8;
    for (int64_t a = ok ? ip[lo] : 0; ok && a < ip[hi]; a++) ok = ((const int32_t *)rows.buf)[a] >= 0;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "schur_gather: inconsistent sizes");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    gather(rows.buf, ip, values.buf, B.buf, p, lo, hi, n, out.buf);
    Py_END_ALLOW_THREADS
    done_ok = 1;
done:;
    Py_buffer *const held[] = {&rows, &indptr, &values, &B, &out};
    return finish(done_ok, held, 5);
}

/* Two products of the gradient through the kernel's pattern (BlockedGradient._kernel_blocks in
 * sklmm._engine.gradient), over groups of r entries: a later term's r rows of one level block
 * within one level of the first term, idx[g * r + x] the entry of row x of group g (entries have
 * p values each, row-major).
 *
 * group_rows_product: out[idx[g, x]] = sum_y T[y, x] values[idx[g, y]], the group's rows times
 * the later term's T' (r x r, row-major); entries in no group are left as they are (out is
 * another array than values: the caller passes a copy).
 *
 * group_block_products: out[block[g]] -= U_g C_g', with U_g = V_g M_first[g] (r x p), V_g and
 * C_g the group's rows of V and C, M (n1 x p x p) and out (n_out x r x r), all row-major.
 *
 * Both run without the GIL. */
static int
groups_valid(const Py_buffer *idx, Py_ssize_t r, Py_ssize_t g, Py_ssize_t n_entries)
{
    if (r < 1 || g < 0 || idx->len < g * r * 8) return 0;
    const int64_t *ix = idx->buf;
    for (Py_ssize_t a = 0; a < g * r; a++)
        if (ix[a] < 0 || ix[a] >= n_entries) return 0;
    return 1;
}

/* the loop of group_rows_product (out and values distinct); P and R constants where the caller
   passes them */
ALWAYS_INLINE void
rows_product(const Py_ssize_t P, const Py_ssize_t R, const double *RESTRICT v,
             const int64_t *RESTRICT ix, const double *RESTRICT t, const Py_ssize_t g,
             double *RESTRICT o)
{
    for (Py_ssize_t k = 0; k < g; k++) {
        const int64_t *e = ix + k * R;
        for (Py_ssize_t x = 0; x < R; x++) {
            double *ox = o + e[x] * P;
            for (Py_ssize_t c = 0; c < P; c++) ox[c] = 0.0;
            for (Py_ssize_t y = 0; y < R; y++) {
                const double w = t[y * R + x];
                const double *vy = v + e[y] * P;
                for (Py_ssize_t c = 0; c < P; c++) ox[c] += w * vy[c];
            }
        }
    }
}

static PyObject *
group_rows_product(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer values, idx, T, out;
    Py_ssize_t p, r, g;
    int done_ok = 0;
    if (!PyArg_ParseTuple(args, "y*y*y*nnnw*", &values, &idx, &T, &p, &r, &g, &out))
        return NULL;
    const Py_ssize_t n_entries = p > 0 ? values.len / (p * 8) : 0;
    if (p < 1 || T.len < r * r * 8 || out.len < values.len || !groups_valid(&idx, r, g, n_entries)) {
        PyErr_SetString(PyExc_ValueError, "group_rows_product: inconsistent sizes");
        goto done;
    }
    const double *RESTRICT v = values.buf, *RESTRICT t = T.buf;
    const int64_t *RESTRICT ix = idx.buf;
    double *RESTRICT o = out.buf;
    Py_BEGIN_ALLOW_THREADS
    if (p == 1 && r == 1)
        rows_product(1, 1, v, ix, t, g, o);
    else if (p == 2 && r == 2)
        rows_product(2, 2, v, ix, t, g, o);
    else if (p == 3 && r == 3)
        rows_product(3, 3, v, ix, t, g, o);
    else if (p == 4 && r == 4)
        rows_product(4, 4, v, ix, t, g, o);
    else
        rows_product(p, r, v, ix, t, g, o);
    Py_END_ALLOW_THREADS
    done_ok = 1;
done:;
    Py_buffer *const held[] = {&values, &idx, &T, &out};
    return finish(done_ok, held, 4);
}

/* the loop of group_block_products; P and R are constants where the caller passes them */
ALWAYS_INLINE void
block_products(const Py_ssize_t P, const Py_ssize_t R, const double *RESTRICT v,
               const double *RESTRICT c, const int64_t *RESTRICT ix, const int64_t *RESTRICT fi,
               const int64_t *RESTRICT bl, const double *RESTRICT m, const Py_ssize_t g,
               double *RESTRICT u, double *RESTRICT o)
{
    for (Py_ssize_t k = 0; k < g; k++) {
        const int64_t *e = ix + k * R;
        const double *ml = m + fi[k] * P * P;
        for (Py_ssize_t x = 0; x < R; x++) { /* u_x = V[e_x] M_l */
            const double *vx = v + e[x] * P;
            double *ux = u + x * P;
            for (Py_ssize_t b = 0; b < P; b++) ux[b] = 0.0;
            for (Py_ssize_t a = 0; a < P; a++) {
                const double w = vx[a];
                for (Py_ssize_t b = 0; b < P; b++) ux[b] += w * ml[a * P + b];
            }
        }
        double *ob = o + bl[k] * R * R;
        for (Py_ssize_t x = 0; x < R; x++)
            for (Py_ssize_t y = 0; y < R; y++) {
                const double *cy = c + e[y] * P, *ux = u + x * P;
                double sum = 0.0;
                for (Py_ssize_t b = 0; b < P; b++) sum += ux[b] * cy[b];
                ob[x * R + y] -= sum;
            }
    }
}

static PyObject *
group_block_products(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer V, C, idx, first, block, M, out;
    Py_ssize_t p, r, g, n1, n_out;
    int done_ok = 0;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*nnnnnw*", &V, &C, &idx, &first, &block, &M, &p, &r, &g,
                          &n1, &n_out, &out))
        return NULL;
    const Py_ssize_t n_entries = p > 0 ? V.len / (p * 8) : 0;
    int ok = p >= 1 && C.len >= V.len && first.len >= g * 8 && block.len >= g * 8 && n1 >= 0 &&
             M.len >= n1 * p * p * 8 && n_out >= 0 && out.len >= n_out * r * r * 8 &&
             groups_valid(&idx, r, g, n_entries);
    const int64_t *RESTRICT fi = first.buf, *RESTRICT bl = block.buf;
    for (Py_ssize_t k = 0; ok && k < g; k++) ok = fi[k] >= 0 && fi[k] < n1 && bl[k] >= 0 && bl[k] < n_out;
    double *u = ok ? malloc((size_t)(r * p) * sizeof(double)) : NULL;
    if (!ok || u == NULL) {
        if (ok) PyErr_NoMemory();
        else PyErr_SetString(PyExc_ValueError, "group_block_products: inconsistent sizes");
        goto done;
    }
    const double *RESTRICT v = V.buf, *RESTRICT c = C.buf, *RESTRICT m = M.buf;
    const int64_t *RESTRICT ix = idx.buf;
    double *RESTRICT o = out.buf;
    Py_BEGIN_ALLOW_THREADS
    if (p == 1 && r == 1)
        block_products(1, 1, v, c, ix, fi, bl, m, g, u, o);
    else if (p == 2 && r == 2)
        block_products(2, 2, v, c, ix, fi, bl, m, g, u, o);
    else if (p == 3 && r == 3)
        block_products(3, 3, v, c, ix, fi, bl, m, g, u, o);
    else if (p == 4 && r == 4)
        block_products(4, 4, v, c, ix, fi, bl, m, g, u, o);
    else
        block_products(p, r, v, c, ix, fi, bl, m, g, u, o);
    Py_END_ALLOW_THREADS
    free(u);
    done_ok = 1;
done:;
    Py_buffer *const held[] = {&V, &C, &idx, &first, &block, &M, &out};
    return finish(done_ok, held, 7);
}

/* out = C blockdiag(G): for each of the rows of a row-major C (rows x n1 p), its run of p values
 * in level l's columns times G_l (p x p, row-major, G n1 x p x p). The blocked factor's scaled
 * products C_z G and the gradient's K Q: numpy's batched product over the levels needs transposed
 * copies of C. Runs without the GIL. */
ALWAYS_INLINE void
runs_times(const Py_ssize_t P, const double *RESTRICT c, const double *RESTRICT g,
           const Py_ssize_t rows, const Py_ssize_t n1, double *RESTRICT o)
{
    for (Py_ssize_t i = 0; i < rows; i++)
        for (Py_ssize_t l = 0; l < n1; l++) {
            const double *ci = c + (i * n1 + l) * P, *gl = g + l * P * P;
            double *oi = o + (i * n1 + l) * P;
            for (Py_ssize_t b = 0; b < P; b++) oi[b] = 0.0;
            for (Py_ssize_t a = 0; a < P; a++) {
                const double w = ci[a];
                for (Py_ssize_t b = 0; b < P; b++) oi[b] += w * gl[a * P + b];
            }
        }
}

static PyObject *
level_runs_product(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer C, G, out;
    Py_ssize_t rows, n1, p;
    int done_ok = 0;
    if (!PyArg_ParseTuple(args, "y*y*nnnw*", &C, &G, &rows, &n1, &p, &out))
        return NULL;
    if (rows < 0 || n1 < 0 || p < 1 || C.len < rows * n1 * p * 8 || G.len < n1 * p * p * 8 ||
        out.len < rows * n1 * p * 8) {
        PyErr_SetString(PyExc_ValueError, "level_runs_product: inconsistent sizes");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (p == 2)
        runs_times(2, C.buf, G.buf, rows, n1, out.buf);
    else if (p == 3)
        runs_times(3, C.buf, G.buf, rows, n1, out.buf);
    else if (p == 4)
        runs_times(4, C.buf, G.buf, rows, n1, out.buf);
    else
        runs_times(p, C.buf, G.buf, rows, n1, out.buf);
    Py_END_ALLOW_THREADS
    done_ok = 1;
done:;
    Py_buffer *const held[] = {&C, &G, &out};
    return finish(done_ok, held, 3);
}

/* out[i, j] = s_i a_k s_j at the entries k = (rows[k], cols[k]) (rows[k] <= cols[k]) of a sparse
   upper triangle, zeros elsewhere on the upper triangle of the m x m row-major out: the dense
   block's start scaled by Lambda_R where the later terms are scalar, without reading a dense
   copy of it (InstEval's holds 5,700 nonzeros among 656,000 entries). The lower triangle,
   which LAPACK does not read, is left as it is. */
static PyObject *
scaled_upper_fill(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer rows, cols, vals, scale, out;
    Py_ssize_t m;
    int done_ok = 0;
    if (!PyArg_ParseTuple(args, "y*y*y*y*nw*", &rows, &cols, &vals, &scale, &m, &out))
        return NULL;
    const Py_ssize_t nnz = vals.len / 8;
    const int32_t *RESTRICT r = rows.buf, *RESTRICT c = cols.buf;
    int ok = m >= 0 && rows.len >= nnz * 4 && cols.len >= nnz * 4 && scale.len >= m * 8 &&
             out.len >= m * m * 8;
    for (Py_ssize_t k = 0; ok && k < nnz; k++) ok = 0 <= r[k] && r[k] <= c[k] && c[k] < m;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "scaled_upper_fill: inconsistent sizes");
        goto done;
    }
    const double *RESTRICT a = vals.buf, *RESTRICT s = scale.buf;
    double *RESTRICT o = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < m; i++) memset(o + i * m + i, 0, sizeof(double) * (size_t)(m - i));
    for (Py_ssize_t k = 0; k < nnz; k++) o[(int64_t)r[k] * m + c[k]] = s[r[k]] * a[k] * s[c[k]];
    Py_END_ALLOW_THREADS
    done_ok = 1;
done:;
    Py_buffer *const held[] = {&rows, &cols, &vals, &scale, &out};
    return finish(done_ok, held, 5);
}

static PyMethodDef methods[] = {
    {"schur_accumulate", schur_accumulate, METH_VARARGS,
     "schur_accumulate(rows, indptr, values, weights, scale, p, lo, hi, m, out): subtracts the "
     "upper triangle of S C_j W_j C_j' S over levels lo..hi-1 from out (m x m, row-major), "
     "S = diag(scale)."},
    {"schur_gather", schur_gather, METH_VARARGS,
     "schur_gather(rows, indptr, values, B, p, lo, hi, n, out): out[a] = sum over the entries b "
     "of a's level of B[rows[a], rows[b]] values[b] (B n x n, symmetric: its upper triangle is "
     "read, row-major; rows past n are zeros), "
     "for the entries of levels lo..hi-1."},
    {"group_rows_product", group_rows_product, METH_VARARGS,
     "group_rows_product(values, idx, T, p, r, g, out): out[idx[g, x]] = sum_y T[y, x] "
     "values[idx[g, y]] for the g groups of r entries (p values each)."},
    {"group_block_products", group_block_products, METH_VARARGS,
     "group_block_products(V, C, idx, first, block, M, p, r, g, n1, n_out, out): out[block[k]] "
     "-= V_k M[first[k]] C_k' for the g groups of r entries, V_k and C_k their rows."},
    {"level_runs_product", level_runs_product, METH_VARARGS,
     "level_runs_product(C, G, rows, n1, p, out): out = C blockdiag(G) for a row-major C of "
     "rows x n1 p and G of n1 x p x p."},
    {"scaled_upper_fill", scaled_upper_fill, METH_VARARGS,
     "scaled_upper_fill(rows, cols, vals, scale, m, out): the upper triangle of out = S A S for the "
     "sparse upper triangle A (its entries' rows <= cols), zeros elsewhere, S = diag(scale)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_schur_kernel",
    "The Schur update's level-by-level kernel (see factor_schur).", -1, methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC
PyInit__schur_kernel(void)
{
    return PyModule_Create(&module);
}
