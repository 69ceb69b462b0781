"""The compiled part of sklmm: the Schur update's level-by-level kernel (the rest of the
package's metadata is in pyproject.toml). It uses Python's C API only (no numpy headers), so
installing from source needs a C compiler and Python's headers."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sklmm._engine._schur_kernel",
            sources=["sklmm/_engine/_schur_kernel.c"],
            extra_compile_args=["-O3"],
        )
    ]
)
