/* The dense factorization's update in one call: M = Lambda' A Lambda + I_q, then its Cholesky.
 *
 * A is the m x m symmetric system [Z X y]'[Z X y] (row-major, both triangles), Lambda the m x m
 * block-diagonal relative covariance factor (row-major; identity on the last m - q columns), whose
 * column j has its nonzero entries in the rows lo[j] <= r < hi[j]. The product is formed through
 * those rows only (O(m nnz(Lambda)) instead of two dense O(m^3) products), into the lower triangle
 * of the column-major m x m array out, which LAPACK's dpotrf then factors in place: out holds the
 * lower Cholesky factor L, column-major, with its strict upper triangle zeroed. Returned: the
 * profiled criterion's parts (log|L_Z|^2 over the first q diagonal entries, log|R_X|^2 over the
 * next m - q - 1, and the penalized residual sum of squares, the last diagonal entry squared), or
 * None when M is not positive definite.
 *
 * dpotrf is scipy's (scipy.linalg.cython_lapack, handed over once by set_dpotrf), so the BLAS and
 * its thread limits are those of the rest of the package. Python (sklmm._engine.factor_dense)
 * keeps the buffers; for a sleepstudy-sized model (m = 39) a call replaces some ten numpy and
 * LAPACK calls of Python overhead each.
 *
 * Part of sklmm (BSD-3-Clause).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(_MSC_VER)
#define RESTRICT __restrict
#else
#define RESTRICT restrict
#endif

typedef void (*dpotrf_t)(char *uplo, int *n, double *a, int *lda, int *info);
static dpotrf_t dpotrf_ptr = NULL;

static PyObject *
set_dpotrf(PyObject *self, PyObject *capsule)
{
    (void)self;
    if (!PyCapsule_CheckExact(capsule)) {
        PyErr_SetString(PyExc_TypeError, "set_dpotrf: expected scipy's dpotrf capsule");
        return NULL;
    }
    /* LAPACK's dpotrf with int (LP64) arguments, as scipy.linalg.cython_lapack declares it */
    const char *name = PyCapsule_GetName(capsule);
    if (name == NULL || strncmp(name, "void (char *, int *, ", 21) != 0 || strstr(name, "_d *, int *, int *)") == NULL) {
        PyErr_Format(PyExc_TypeError, "set_dpotrf: scipy's dpotrf has the signature '%s', not "
                     "LAPACK's with int arguments", name ? name : "?");
        return NULL;
    }
    void *ptr = PyCapsule_GetPointer(capsule, name);
    if (ptr == NULL) return NULL;
    dpotrf_ptr = (dpotrf_t)ptr;
    Py_RETURN_NONE;
}

/* work = Lambda' A (row-major), then the lower triangle of (Lambda' A) Lambda + I_q into out
   (column-major) */
static void
sandwich(const double *RESTRICT A, const double *RESTRICT lam, const int64_t *RESTRICT lo,
         const int64_t *RESTRICT hi, Py_ssize_t m, Py_ssize_t q, double *RESTRICT work,
         double *RESTRICT out)
{
    for (Py_ssize_t j = 0; j < m; j++) { /* row j of Lambda' A: sum_r lam[r, j] A[r, :] */
        double *RESTRICT w = work + j * m;
        const Py_ssize_t r0 = (Py_ssize_t)lo[j], r1 = (Py_ssize_t)hi[j];
        const double l0 = lam[r0 * m + j];
        const double *RESTRICT a = A + r0 * m;
        for (Py_ssize_t c = 0; c < m; c++) w[c] = l0 * a[c];
        for (Py_ssize_t r = r0 + 1; r < r1; r++) {
            const double l = lam[r * m + j];
            if (l == 0.0) continue;
            a = A + r * m;
            for (Py_ssize_t c = 0; c < m; c++) w[c] += l * a[c];
        }
    }
    for (Py_ssize_t j = 0; j < m; j++) { /* out[i, j] = sum_r work[i, r] lam[r, j], i >= j */
        const Py_ssize_t r0 = (Py_ssize_t)lo[j], len = (Py_ssize_t)hi[j] - r0;
        const double *RESTRICT l = lam + r0 * m + j; /* column j from row r0, stride m */
        double *RESTRICT o = out + j * m;
        if (len == 1) {
            const double l0 = l[0];
            for (Py_ssize_t i = j; i < m; i++) o[i] = work[i * m + r0] * l0;
        } else {
            for (Py_ssize_t i = j; i < m; i++) {
                const double *RESTRICT w = work + i * m + r0;
                double acc = 0.0;
                for (Py_ssize_t k = 0; k < len; k++) acc += w[k] * l[k * m];
                o[i] = acc;
            }
        }
        if (j < q) o[j] += 1.0;
    }
}

static PyObject *
dense_update(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer A, lam, lo, hi, work, out;
    Py_ssize_t m, q;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*y*y*y*nnw*w*", &A, &lam, &lo, &hi, &m, &q, &work, &out))
        return NULL;
    if (dpotrf_ptr == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dense_update: set_dpotrf was not called");
        goto done;
    }
    if (m < 1 || q < 0 || q >= m || m > INT32_MAX || A.len < m * m * 8 || lam.len < m * m * 8 ||
        lo.len < m * 8 || hi.len < m * 8 || work.len < m * m * 8 || out.len < m * m * 8) {
        PyErr_SetString(PyExc_ValueError, "dense_update: inconsistent sizes");
        goto done;
    }
    {
        const int64_t *l = lo.buf, *h = hi.buf;
        for (Py_ssize_t j = 0; j < m; j++)
            if (l[j] < 0 || h[j] <= l[j] || h[j] > m) {
                PyErr_SetString(PyExc_ValueError, "dense_update: a column's rows out of range");
                goto done;
            }
    }
    double *o = out.buf;
    int n = (int)m, info = 0;
    char uplo = 'L';
    Py_BEGIN_ALLOW_THREADS
    sandwich(A.buf, lam.buf, lo.buf, hi.buf, m, q, work.buf, o);
    dpotrf_ptr(&uplo, &n, o, &n, &info);
    Py_END_ALLOW_THREADS
    if (info < 0) {
        PyErr_Format(PyExc_ValueError, "dense_update: dpotrf argument %d is invalid", -info);
        goto done;
    }
    if (info > 0) { /* not positive definite */
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    double ld_z = 0.0, ld_x = 0.0;
    for (Py_ssize_t j = 0; j < m; j++) {
        for (Py_ssize_t i = 0; i < j; i++) o[i + j * m] = 0.0; /* the strict upper triangle */
        if (j < q)
            ld_z += log(o[j * (m + 1)]);
        else if (j < m - 1)
            ld_x += log(o[j * (m + 1)]);
    }
    const double last = o[(m - 1) * (m + 1)];
    result = Py_BuildValue("(ddd)", 2.0 * ld_z, 2.0 * ld_x, last * last);
done:
    PyBuffer_Release(&A);
    PyBuffer_Release(&lam);
    PyBuffer_Release(&lo);
    PyBuffer_Release(&hi);
    PyBuffer_Release(&work);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"set_dpotrf", set_dpotrf, METH_O,
     "set_dpotrf(capsule): the LAPACK dpotrf to call (scipy.linalg.cython_lapack's)."},
    {"dense_update", dense_update, METH_VARARGS,
     "dense_update(A, lam, lo, hi, m, q, work, out): out = chol(Lambda' A Lambda + I_q) (lower, "
     "column-major); returns (log|L_Z|^2, log|R_X|^2, r^2), or None if not positive definite."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_dense_kernel",
    "The dense factorization's update in one call (see factor_dense).", -1, methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC
PyInit__dense_kernel(void)
{
    return PyModule_Create(&module);
}
