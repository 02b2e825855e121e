"""How llama-cpp-python is built for this CPU (bentos/llm/build_flags.py)."""

from bentos.llm.build_flags import cmake_args, cpu_flags

EPYC = "flags\t\t: fpu sse sse2 avx avx2 fma f16c bmi2 avx512f avx512cd avx512vl avx512dq avx512bw\n"
SAPPHIRE_RAPIDS = (
    "flags\t\t: fpu sse sse2 avx avx2 fma f16c bmi2 avx_vnni avx512f avx512cd avx512vl avx512dq "
    "avx512bw avx512vbmi avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n"
)


def test_a_cpu_without_amx_gets_the_native_build():
    assert cmake_args(cpu_flags("processor\t: 0\n" + EPYC)) == ""


def test_a_cpu_with_amx_gets_its_vector_extensions_without_amx():
    args = cmake_args(cpu_flags(SAPPHIRE_RAPIDS)).split()
    assert args[0] == "-DGGML_NATIVE=OFF"
    assert {"-DGGML_AVX2=ON", "-DGGML_AVX512=ON", "-DGGML_AVX512_VNNI=ON", "-DGGML_AVX_VNNI=ON"} <= set(args)
    assert not any("AMX" in a for a in args)


def test_avx512_needs_all_five_foundation_flags():
    flags = cpu_flags(SAPPHIRE_RAPIDS) - {"avx512bw"}
    assert "-DGGML_AVX512=ON" not in cmake_args(flags).split()
