"""The compiled part of sklmm: the Schur update's level-by-level kernel and the dense
factorization's update (the rest of the package's metadata is in pyproject.toml). They use
Python's C API only (no numpy headers, no link to a BLAS: LAPACK is scipy's, handed over at
import), so installing from source needs a C compiler and Python's headers."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sklmm._engine._schur_kernel",
            sources=["sklmm/_engine/_schur_kernel.c"],
            extra_compile_args=["-O3"],
        ),
        Extension(
            "sklmm._engine._dense_kernel",
            sources=["sklmm/_engine/_dense_kernel.c"],
            extra_compile_args=["-O3"],
        ),
    ]
)
