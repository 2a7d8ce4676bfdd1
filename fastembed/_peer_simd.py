"""The SIMD level each peer library of the report runs on this machine, so that every figure says
which ISA it came from: fastembed's own (``FASTEMBED_SIMD``) caps none of them. numpy dispatches by
CPU feature (``NPY_DISABLE_CPU_FEATURES`` withholds some), its BLAS by its own probe (OpenBLAS:
``OPENBLAS_CORETYPE``; MKL: ``MKL_ENABLE_INSTRUCTIONS``), torch's ATen by ``ATEN_CPU_CAPABILITY``
and its oneDNN by ``ONEDNN_MAX_CPU_ISA``; ONNX Runtime's MLAS picks its kernels by CPUID with no
switch to cap them."""

import os
import sys

_NUMPY_LEVELS = (("AVX512_SKX", "AVX-512"), ("AVX512F", "AVX-512"), ("AVX2", "AVX2"), ("ASIMD", "NEON"))


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (``avx2``, ``avx512f``, ...) as the kernel lists them; empty where
    there is no such file."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def numpy_simd(features=None):
    """The widest SIMD level numpy's own loops dispatch to here ("AVX-512", "AVX2", "NEON" or
    "baseline"); ``features``: numpy's runtime feature table (read from numpy when None)."""
    if features is None:
        try:
            from numpy._core._multiarray_umath import __cpu_features__ as features
        except ImportError:  # numpy 1.x
            from numpy.core._multiarray_umath import __cpu_features__ as features
    return next((label for name, label in _NUMPY_LEVELS if features.get(name)), "baseline")


def blas_libraries(info=None):
    """Each BLAS loaded in this process with what selects its kernels: OpenBLAS's core type, MKL's
    instruction cap when set. ``info``: threadpoolctl's ``threadpool_info()`` (read when None)."""
    if info is None:
        from threadpoolctl import threadpool_info

        info = threadpool_info()
    found = []
    for lib in info:
        if lib.get("user_api") != "blas":
            continue
        name = lib.get("internal_api", "blas")
        if lib.get("architecture"):
            name += f" {lib['architecture']}"
        elif name == "mkl" and os.environ.get("MKL_ENABLE_INSTRUCTIONS"):
            name += f" (MKL_ENABLE_INSTRUCTIONS={os.environ['MKL_ENABLE_INSTRUCTIONS']})"
        if name not in found:
            found.append(name)
    return found


def torch_simd():
    """ATen's CPU capability ("AVX512", "AVX2", ...) when the report loaded torch, else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    label = str(torch.backends.cpu.get_cpu_capability())
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        label += f" (oneDNN capped at {os.environ['ONEDNN_MAX_CPU_ISA']})"
    return label


def onnxruntime_simd(flags):
    """The kernels ONNX Runtime's MLAS takes on a CPU with these ``flags`` when the report loaded
    it (else None): it reads CPUID itself, so no setting caps it."""
    if "onnxruntime" not in sys.modules:
        return None
    if "avx512f" in flags:
        level = "AVX-512"
    elif "avx2" in flags and "fma" in flags:
        level = "AVX2"
    elif "asimd" in flags:
        level = "NEON"
    else:
        level = "SSE or the portable loop"
    return f"{level} (MLAS, by CPUID)"


def peer_simd(flags=None):
    """``{library: SIMD level}`` for numpy, its BLAS, and torch and ONNX Runtime where loaded."""
    flags = cpu_flags() if flags is None else flags
    levels = {"numpy": numpy_simd(), "BLAS": ", ".join(blas_libraries()) or None}
    levels["torch"] = torch_simd()
    levels["onnxruntime"] = onnxruntime_simd(flags)
    return {name: level for name, level in levels.items() if level}


def format_peer_simd(levels):
    """One line for the report: ``peers' SIMD: numpy AVX-512, BLAS openblas Zen, ...``."""
    return "peers' SIMD (FASTEMBED_SIMD caps none of them): " + ", ".join(
        f"{name} {level}" for name, level in levels.items()
    )
