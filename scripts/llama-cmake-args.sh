#!/usr/bin/env bash
# Prints the CMAKE_ARGS used to compile llama-cpp-python on this machine.
#
# Why not GGML_NATIVE: on CPUs that report AMX (Sapphire Rapids and later) -march=native
# turns on ggml's AMX kernels, and inside this kind of VM they crash in
# ggml_backend_amx_mul_mat. So we name the instruction sets ourselves: AVX2/FMA/F16C
# everywhere on x86-64, AVX-512 (+VNNI/VBMI/BF16) when the CPU has it, never AMX.
set -euo pipefail
if [[ "$(uname -m)" != "x86_64" ]]; then
  echo "-DGGML_NATIVE=ON"
  exit 0
fi
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { for f in "$@"; do [[ " $flags " == *" $f "* ]] || return 1; done; }
args="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
args+=" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
if has avx512f avx512cd avx512vl avx512dq avx512bw; then
  args+=" -DGGML_AVX512=ON"
  has avx512_vnni && args+=" -DGGML_AVX512_VNNI=ON"
  has avx512vbmi && args+=" -DGGML_AVX512_VBMI=ON"
  has avx512_bf16 && args+=" -DGGML_AVX512_BF16=ON"
fi
has avx_vnni && args+=" -DGGML_AVX_VNNI=ON"
echo "$args"
