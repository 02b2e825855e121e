"""CMake flags for building llama-cpp-python on this machine: `python bentos/llm/build_flags.py`.

A native build (`-march=native`, llama.cpp's default) is 1.6-2x faster here than a portable one,
but on CPUs with AMX (Intel Sapphire Rapids and later) it compiles llama.cpp's AMX kernels, and in
the virtual machines we run on those crash (SIGSEGV in `ggml_backend_amx_mul_mat`) on the first
batch of prompt tokens: the CPU advertises AMX, the hypervisor does not keep its tile state. There
we build for the CPU's own vector extensions (AVX2, AVX-512, VNNI...) and leave AMX out. Elsewhere
the flags are empty and the build stays native. Container images set their own, portable, flags.

Runs with any Python 3 and no packages: the Makefile calls it before the environment exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

# llama.cpp's CMake option -> the /proc/cpuinfo flags it needs.
_EXTENSIONS = {
    "GGML_AVX": {"avx"},
    "GGML_AVX2": {"avx2"},
    "GGML_FMA": {"fma"},
    "GGML_F16C": {"f16c"},
    "GGML_BMI2": {"bmi2"},
    "GGML_AVX_VNNI": {"avx_vnni"},
    "GGML_AVX512": {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"},
    "GGML_AVX512_VBMI": {"avx512vbmi"},
    "GGML_AVX512_VNNI": {"avx512_vnni"},
    "GGML_AVX512_BF16": {"avx512_bf16"},
}


def cpu_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cmake_args(flags: set[str]) -> str:
    """Empty (a native build) unless the CPU has AMX; then native minus AMX, spelled out."""
    if not any(flag.startswith("amx") for flag in flags):
        return ""
    enabled = [option for option, needs in _EXTENSIONS.items() if needs <= flags]
    return " ".join(["-DGGML_NATIVE=OFF", *(f"-D{option}=ON" for option in enabled)])


if __name__ == "__main__":
    cpuinfo = Path("/proc/cpuinfo")
    print(cmake_args(cpu_flags(cpuinfo.read_text()) if cpuinfo.exists() else set()))
    sys.exit(0)
