#!/usr/bin/env bash
# Builds (once per machine, backend and flag set) the llama-cpp-python wheel and prints
# its path. The backend comes from scripts/llama-backend.sh (OLLM_LLAMA_BACKEND overrides).
#
# pip's own wheel cache ignores CMAKE_ARGS, so a wheel built with other flags could be
# reused silently; this cache is keyed by the version, the backend and the flags instead.
# If an accelerated build fails, the CPU build is made instead and the reason is printed:
# a server that runs on the CPU beats an install that stops, or one that half works.
set -euo pipefail
python=${1:?usage: llama-wheel.sh PYTHON VERSION}
version=${2:?usage: llama-wheel.sh PYTHON VERSION}
here=$(cd "$(dirname "$0")" && pwd)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/ollm/wheels"
py_version=$("$python" -c 'import sys; print(sys.version)')

build() {  # build BACKEND: print the wheel's path, or fail
  local backend=$1 cmake_args key dir wheel
  cmake_args=$("$here/llama-cmake-args.sh" "$backend")
  key=$(printf '%s %s %s' "$version" "$cmake_args" "$py_version" | sha256sum | cut -c1-16)
  dir="$cache/llama-cpp-python-$version-$backend-$key"
  wheel=$(ls "$dir"/llama_cpp_python-*.whl 2>/dev/null | head -1 || true)
  if [[ -z "$wheel" ]]; then
    echo "Compiling llama-cpp-python $version for $backend (a few minutes, once per machine) with: $cmake_args" >&2
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    if ! CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      "$python" -m pip wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
      "llama-cpp-python==$version" -w "$dir.tmp" >&2; then
      rm -rf "$dir.tmp"
      return 1
    fi
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    wheel=$(ls "$dir"/llama_cpp_python-*.whl | head -1)
  fi
  echo "$wheel"
}

backend=$("$here/llama-backend.sh")
if ! build "$backend"; then
  if [[ "$backend" == cpu ]]; then
    echo "llama-cpp-python failed to build for the CPU; see the compiler output above" >&2
    exit 1
  fi
  echo "llama-cpp-python failed to build for $backend (see the compiler output above);" \
    "building for the CPU instead. Fix the toolkit and rerun, or set OLLM_LLAMA_BACKEND=cpu." >&2
  build cpu
fi
