#!/usr/bin/env bash
# Builds (once per machine and flag set) the llama-cpp-python wheel and prints its path.
#
# pip's own wheel cache ignores CMAKE_ARGS, so a wheel built with other flags could be
# reused silently; this cache is keyed by the version and the flags instead.
set -euo pipefail
python=${1:?usage: llama-wheel.sh PYTHON VERSION}
version=${2:?usage: llama-wheel.sh PYTHON VERSION}
here=$(cd "$(dirname "$0")" && pwd)
cmake_args=$("$here/llama-cmake-args.sh")
key=$(printf '%s %s %s' "$version" "$cmake_args" "$("$python" -c 'import sys; print(sys.version)')" | sha256sum | cut -c1-16)
dir="${XDG_CACHE_HOME:-$HOME/.cache}/ollm/wheels/llama-cpp-python-$version-$key"
wheel=$(ls "$dir"/llama_cpp_python-*.whl 2>/dev/null | head -1 || true)
if [[ -z "$wheel" ]]; then
  echo "Compiling llama-cpp-python $version (a few minutes, once per machine) with: $cmake_args" >&2
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$python" -m pip wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
    "llama-cpp-python==$version" -w "$dir.tmp" >&2
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  wheel=$(ls "$dir"/llama_cpp_python-*.whl | head -1)
fi
echo "$wheel"
