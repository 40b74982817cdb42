#!/usr/bin/env bash
# Installs, from Debian's packages only, whatever shmkit needs that this
# machine lacks. A no-op (no apt-get at all) when everything is present.
#   SHMKIT_TEST_CROSS=aarch64   also the aarch64 cross build's toolchain,
#                               qemu-user and arm64 multiarch libraries
#                               (the default; empty: none of them)
set -euo pipefail

pkgs=(
  g++ cmake ninja-build pkg-config clang-format
  libgtest-dev libgmock-dev libbenchmark-dev
  libboost-atomic-dev libboost-dev
  libtbb-dev libssl-dev
  python3 python3-numpy python3-matplotlib   # interop tests; BENCHMARKS.md plots
  python3-dev python3-pytest libpython3.11-testsuite   # the Python package: build, pytest, CPython's own tests
  python3-hypothesis                                # property-based tests of the Python API
  python3-mypy python3-build python3-venv python3-pip   # type checks (python_mypy); the wheel and its venv
  clang libclang-rt-dev            # libFuzzer targets
  libreaderwriterqueue-dev libconcurrentqueue-dev   # bench-only baselines
  libopenmpi-dev openmpi-bin python3-mpi4py         # optional shmkit::mpi (found by CMake)
)
# The aarch64 cross build (preset aarch64, scripts/cross-aarch64.sh): only
# what the library, its C++ tests, tools and examples link (no Python, MPI
# or benchmarks there); the arm64 libc and libstdc++ under / are also what
# qemu-user loads the programs with.
if [[ ${SHMKIT_TEST_CROSS-aarch64} == *aarch64* ]]; then
  pkgs+=(
    g++-aarch64-linux-gnu qemu-user-static
    libc6:arm64 libstdc++6:arm64
    libgtest-dev:arm64 libgmock-dev:arm64
    libboost-atomic-dev:arm64 libboost-dev:arm64
    libssl-dev:arm64 libtbb-dev:arm64
  )
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: need root to install packages (run as root, or install them yourself)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# arm64 packages need the architecture enabled (multiarch) before the update.
if [[ " ${missing[*]}" == *:arm64* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
