#!/usr/bin/env bash
# Prints the llama.cpp backend to build for this machine, then (on stderr) why.
#
#   cpu     always works: the fallback, and what a machine without an accelerator gets
#   cuda    NVIDIA: the CUDA toolkit (nvcc) and a GPU that nvidia-smi can see
#   metal   Apple Silicon (macOS on arm64)
#   hip     AMD: ROCm's hipcc and a GPU that rocminfo lists
#   vulkan  the Vulkan headers (pkg-config vulkan, or vulkan/vulkan.h) and glslc
#
# OLLM_LLAMA_BACKEND=cpu|cuda|metal|vulkan|hip overrides the detection. A toolkit alone is
# not enough for auto-detection: CI machines often carry nvcc without a GPU, and a CUDA
# build takes most of an hour on two cores there, only to run on the CPU.
set -euo pipefail
choice=${OLLM_LLAMA_BACKEND:-auto}
case "$choice" in
  auto|cpu|cuda|metal|vulkan|hip) ;;
  *) echo "OLLM_LLAMA_BACKEND must be cpu, cuda, metal, vulkan or hip (not '$choice')" >&2; exit 2 ;;
esac
if [[ "$choice" != auto ]]; then
  echo "llama.cpp backend: $choice (OLLM_LLAMA_BACKEND)" >&2
  echo "$choice"
  exit 0
fi
has() { command -v "$1" >/dev/null 2>&1; }
if [[ "$(uname -s)" == Darwin && "$(uname -m)" == arm64 ]]; then
  echo "llama.cpp backend: metal (Apple Silicon)" >&2
  echo metal
elif has nvcc && has nvidia-smi && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "llama.cpp backend: cuda ($(nvidia-smi -L | head -1 | cut -d'(' -f1 | sed 's/ *$//'))" >&2
  echo cuda
elif has hipcc && has rocminfo && rocminfo 2>/dev/null | grep -q 'gfx[0-9]'; then
  echo "llama.cpp backend: hip ($(rocminfo | grep -o 'gfx[0-9a-f]*' | head -1))" >&2
  echo hip
elif has glslc && { { has pkg-config && pkg-config --exists vulkan; } || [[ -f /usr/include/vulkan/vulkan.h ]]; }; then
  echo "llama.cpp backend: vulkan (Vulkan headers and glslc found)" >&2
  echo vulkan
else
  why="no accelerator toolkit with a device"
  has nvcc && why="nvcc is installed but nvidia-smi sees no GPU"
  echo "llama.cpp backend: cpu ($why; OLLM_LLAMA_BACKEND overrides)" >&2
  echo cpu
fi
