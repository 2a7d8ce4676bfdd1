"""Build the Cython kernels in kernels/ as fastembed._kernels.*.

OpenMP is used where the compiler accepts -fopenmp (checked by compiling a
tiny program); otherwise the kernels build serial and fastembed warns at run
time. Set FASTEMBED_DISABLE_OPENMP=1 to force a serial build.
"""

import os
import sys
import tempfile
import textwrap

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNEL_MODULES = ["_rows", "_positional", "_project", "_pool", "_wordpiece"]

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return omp_get_max_threads() > 0 && n > 0 ? 0 : 1;
    }
    """
)


def _compiler_has_openmp(compiler):
    if os.environ.get("FASTEMBED_DISABLE_OPENMP") == "1":
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as fh:
            fh.write(OPENMP_PROBE)
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=["-fopenmp"])
        except Exception:
            return False
    return True


class BuildExtWithOpenMP(build_ext):
    def build_extensions(self):
        use_openmp = sys.platform != "win32" and _compiler_has_openmp(self.compiler)
        if not use_openmp:
            print("fastembed: building the kernels WITHOUT OpenMP (serial)", file=sys.stderr)
        for ext in self.extensions:
            if use_openmp:
                ext.extra_compile_args.append("-fopenmp")
                ext.extra_link_args.append("-fopenmp")
        super().build_extensions()


def _extensions():
    from Cython.Build import cythonize

    # -ffp-contract=off: a multiply and an add round separately in every build (and every CPU-specific
    # clone), as in the Numba mirrors; the fused kernel's FMAs are explicit intrinsics.
    compile_args = [] if sys.platform == "win32" else ["-O3", "-fno-math-errno", "-ffp-contract=off"]
    exts = [
        Extension(
            f"fastembed._kernels.{name}",
            [f"kernels/{name}.pyx"],
            extra_compile_args=list(compile_args),
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for name in KERNEL_MODULES
    ]
    return cythonize(
        exts,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
        },
    )


setup(
    packages=["fastembed", "fastembed._kernels"],
    package_dir={"fastembed": "fastembed", "fastembed._kernels": "kernels"},
    package_data={
        "fastembed": ["py.typed", "data/*", "model_configs/*.json", "model_configs/README.md"],
        "fastembed._kernels": ["*.pyi", "*.pyx", "*.pxi"],
    },
    ext_modules=_extensions(),
    cmdclass={"build_ext": BuildExtWithOpenMP},
    zip_safe=False,
)
