"""The install's choice of llama.cpp backend, in faked machines.

``scripts/llama-backend.sh`` and ``scripts/llama-cmake-args.sh`` run with a PATH of fake
tools (``nvcc``, ``nvidia-smi``, ``uname``, ``rocminfo``, ...) printing what the real ones
print; ``scripts/llama-wheel.sh`` runs with a fake Python whose ``pip wheel`` fails for
one backend, to show the fallback to the CPU build.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
AVX512_FLAGS = "flags\t\t: fpu avx avx2 fma f16c bmi2 avx512f avx512cd avx512vl avx512dq avx512bw\n"
NVIDIA_SMI = """#!/bin/sh
case "$*" in
  *-L*) printf 'GPU 0: NVIDIA H200 (UUID: GPU-1)\\nGPU 1: NVIDIA RTX A4000 (UUID: GPU-2)\\n' ;;
  *compute_cap*) printf '9.0\\n8.6\\n' ;;
esac
"""
NO_GPU_SMI = """#!/bin/sh
echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2
exit 9
"""
ROCMINFO = """#!/bin/sh
printf '  Name:                    gfx000\\n  Name:                    gfx1100\\n'
"""


# What the scripts use besides the tools being faked.
BASIC_TOOLS = (
    "bash", "sh", "grep", "sed", "cut", "head", "tr", "sort", "paste", "ls", "sha256sum",
    "mkdir", "rm", "mv", "cat", "dirname", "nproc", "printf", "touch",
)  # fmt: skip


class FakeMachine:
    """A bin directory of fake tools; ``run`` puts only it and the basics on PATH."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.cpuinfo = root / "cpuinfo"
        self.cpuinfo.write_text(AVX512_FLAGS)
        for tool in BASIC_TOOLS:
            real = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
            if real:
                (self.bin / tool).symlink_to(real)
        self.tool("uname", '#!/bin/sh\ncase "$1" in -s) echo Linux;; -m) echo x86_64;; esac\n')

    def tool(self, name: str, script: str = "#!/bin/sh\nexit 0\n") -> None:
        path = self.bin / name
        path.unlink(missing_ok=True)
        path.write_text(script)
        path.chmod(0o755)

    def run(self, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environment = {"PATH": str(self.bin), "OLLM_CPUINFO": str(self.cpuinfo), **env}
        environment["HOME"] = env.get("HOME", os.environ.get("HOME", "/tmp"))
        return subprocess.run(
            [str(self.bin / "bash"), str(SCRIPTS / script), *args],
            capture_output=True,
            text=True,
            env=environment,
            timeout=60,
            check=False,
        )

    def backend(self, **env: str) -> tuple[str, str]:
        done = self.run("llama-backend.sh", **env)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip(), done.stderr

    def cmake_args(self, backend: str) -> str:
        done = self.run("llama-cmake-args.sh", backend)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    return FakeMachine(tmp_path)


def test_a_machine_without_accelerators_builds_for_the_cpu(machine: FakeMachine) -> None:
    backend, why = machine.backend()
    assert backend == "cpu" and "no accelerator" in why
    args = machine.cmake_args("cpu")
    assert "-DGGML_AVX512=ON" in args and "-DGGML_AMX_INT8=OFF" in args
    assert "CUDA" not in args


def test_nvidia_gpu_and_toolkit_build_cuda_for_the_gpus_present(machine: FakeMachine) -> None:
    machine.tool("nvcc")
    machine.tool("nvidia-smi", NVIDIA_SMI)
    backend, why = machine.backend()
    assert backend == "cuda" and "NVIDIA H200" in why
    args = machine.cmake_args("cuda")
    assert "-DGGML_CUDA=ON" in args and "-DCMAKE_CUDA_ARCHITECTURES=86;90" in args
    assert "-DGGML_AVX512=ON" in args  # layers left on the CPU still get its fast kernels


def test_a_toolkit_without_a_gpu_stays_on_the_cpu_unless_forced(machine: FakeMachine) -> None:
    machine.tool("nvcc")
    machine.tool("nvidia-smi", NO_GPU_SMI)
    backend, why = machine.backend()
    assert backend == "cpu" and "sees no GPU" in why
    forced, why = machine.backend(OLLM_LLAMA_BACKEND="cuda")
    assert forced == "cuda" and "OLLM_LLAMA_BACKEND" in why
    assert "-DCMAKE_CUDA_ARCHITECTURES=75;80;86;89;90" in machine.cmake_args("cuda")


def test_apple_silicon_builds_metal(machine: FakeMachine) -> None:
    machine.tool("uname", '#!/bin/sh\ncase "$1" in -s) echo Darwin;; -m) echo arm64;; esac\n')
    assert machine.backend()[0] == "metal"
    args = machine.cmake_args("metal")
    assert "-DGGML_METAL=ON" in args and "-DGGML_NATIVE=ON" in args


def test_rocm_builds_hip_for_the_listed_gpu(machine: FakeMachine) -> None:
    machine.tool("hipcc")
    machine.tool("rocminfo", ROCMINFO)
    assert machine.backend()[0] == "hip"
    args = machine.cmake_args("hip")
    assert "-DGGML_HIP=ON -DAMDGPU_TARGETS=gfx1100" in args  # the CPU agent (gfx000) left out


def test_vulkan_needs_its_headers_and_glslc(machine: FakeMachine) -> None:
    machine.tool("glslc")
    assert machine.backend()[0] == "cpu"  # glslc alone: no headers to build against
    machine.tool("pkg-config", '#!/bin/sh\n[ "$1 $2" = "--exists vulkan" ]\n')
    assert machine.backend()[0] == "vulkan"
    assert "-DGGML_VULKAN=ON" in machine.cmake_args("vulkan")


def test_the_override_wins_and_nonsense_is_refused(machine: FakeMachine) -> None:
    machine.tool("nvcc")
    machine.tool("nvidia-smi", NVIDIA_SMI)
    assert machine.backend(OLLM_LLAMA_BACKEND="cpu")[0] == "cpu"
    refused = machine.run("llama-backend.sh", OLLM_LLAMA_BACKEND="tpu")
    assert refused.returncode == 2 and "cpu, cuda, metal, vulkan or hip" in refused.stderr


FAKE_PYTHON = """#!/bin/bash
# A python whose `pip wheel` fails when CMAKE_ARGS asks for CUDA, and counts its builds.
if [ "$1" = "-c" ]; then echo "3.11.7 (fake)"; exit 0; fi
echo "$CMAKE_ARGS" >> "$BUILDS"
case "$CMAKE_ARGS" in
  *GGML_CUDA=ON*) echo "nvcc fatal: unsupported gpu architecture" >&2; exit 1;;
esac
while [ $# -gt 0 ]; do [ "$1" = "-w" ] && out=$2; shift; done
touch "$out/llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
"""


def test_a_failed_accelerated_build_falls_back_to_the_cpu_and_is_cached(
    machine: FakeMachine, tmp_path: Path
) -> None:
    machine.tool("nvcc")
    machine.tool("nvidia-smi", NVIDIA_SMI)
    machine.tool("python", FAKE_PYTHON)
    builds = tmp_path / "builds.txt"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "BUILDS": str(builds)}
    first = machine.run("llama-wheel.sh", str(machine.bin / "python"), "0.3.36", **env)
    assert first.returncode == 0, first.stderr
    wheel = Path(first.stdout.strip())
    assert wheel.is_file() and "-cpu-" in str(wheel.parent.name)
    assert "failed to build for cuda" in first.stderr and "building for the CPU" in first.stderr
    assert [line for line in builds.read_text().splitlines() if "CUDA" in line]  # it tried
    # The next install finds the CPU wheel again, and the CUDA one is retried (nothing cached).
    again = machine.run("llama-wheel.sh", str(machine.bin / "python"), "0.3.36", **env)
    assert again.returncode == 0 and Path(again.stdout.strip()) == wheel
    assert len(builds.read_text().splitlines()) == 3  # cuda, cpu; then cuda again only
