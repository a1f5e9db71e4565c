#!/usr/bin/env bash
# Prints the CMAKE_ARGS used to compile llama-cpp-python for BACKEND (default: cpu; see
# scripts/llama-backend.sh) on this machine.
#
# Why not GGML_NATIVE: on CPUs that report AMX (Sapphire Rapids and later) -march=native
# turns on ggml's AMX kernels, and inside this kind of VM they crash in
# ggml_backend_amx_mul_mat. So we name the instruction sets ourselves: AVX2/FMA/F16C
# everywhere on x86-64, AVX-512 (+VNNI/VBMI/BF16) when the CPU has it, never AMX. Every
# accelerated build keeps these CPU flags: layers that do not fit on the device run there.
set -euo pipefail
backend=${1:-cpu}
cpuinfo=${OLLM_CPUINFO:-/proc/cpuinfo}  # tests point this at a fake
if [[ "$(uname -m)" != "x86_64" ]]; then
  args="-DGGML_NATIVE=ON"
else
  flags=$(grep -m1 '^flags' "$cpuinfo" 2>/dev/null || true)
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
fi
case "$backend" in
  cpu) ;;
  cuda)
    # The GPUs present, as CMake wants them ("9.0" -> 90); none visible: the common ones
    # from Turing to Hopper, so a forced build still runs on most cards.
    archs=$( (nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null || true) \
      | tr -d ' .' | { grep -E '^[0-9]+$' || true; } | sort -u | paste -sd';' -)
    args+=" -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=${archs:-75;80;86;89;90}"
    ;;
  metal) args+=" -DGGML_METAL=ON" ;;
  vulkan) args+=" -DGGML_VULKAN=ON" ;;
  hip)
    targets=$( (rocminfo 2>/dev/null || true) | { grep -o 'gfx[0-9a-f]*' || true; } \
      | { grep -v '^gfx000$' || true; } | sort -u | paste -sd';' -)
    args+=" -DGGML_HIP=ON${targets:+ -DAMDGPU_TARGETS=$targets}"
    ;;
  *) echo "unknown backend '$backend'" >&2; exit 2 ;;
esac
echo "$args"
