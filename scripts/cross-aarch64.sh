#!/usr/bin/env bash
# The aarch64 cross build: builds the aarch64 preset with Debian's cross
# toolchain (cmake/toolchains/aarch64-linux-gnu.cmake) and runs its C++ test
# suite under qemu-user. scripts/test.sh runs it after the other presets
# (SHMKIT_TEST_CROSS=aarch64, the default); alone it installs what is
# missing first.
#
# It checks portability only: that shmkit builds for a second architecture
# and that its syscalls, struct layouts, type sizes and /proc parsing work
# there. It does NOT check weak-memory behaviour: qemu-user on x86-64 runs
# aarch64's loads and stores with x86's stronger ordering, so a missing
# acquire or release cannot show here; that needs real Arm hardware.
#
# The programs a test starts itself (the tracker's watcher, the exec'd peer,
# the manager) are aarch64 programs too: the kernel hands them to qemu
# through binfmt_misc, which this script registers (root) if no
# qemu-aarch64 entry is there yet.
#   --no-deps   do not run scripts/install-deps.sh first
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} != --no-deps ]]; then
  SHMKIT_TEST_CROSS=aarch64 scripts/install-deps.sh
fi

binfmt=/proc/sys/fs/binfmt_misc
if [[ ! -e $binfmt/qemu-aarch64 ]]; then
  conf=/usr/lib/binfmt.d/qemu-aarch64.conf  # qemu-user-static's entry
  if [[ $(id -u) -ne 0 || ! -r $conf ]]; then
    echo "cross-aarch64: no binfmt_misc entry for aarch64 and cannot register one (need root and $conf)" >&2
    exit 1
  fi
  [[ -e $binfmt/register ]] || mount -t binfmt_misc binfmt_misc "$binfmt"
  # Its flags (OPF): F opens the interpreter now (it works in any mount
  # namespace), so the kernel runs aarch64 programs with qemu from then on.
  cat "$conf" >"$binfmt/register"
  echo "cross-aarch64: registered qemu-aarch64 with binfmt_misc" >&2
fi

jobs=$(nproc)
echo "=== aarch64: configure and build (cross, $(aarch64-linux-gnu-g++ -dumpversion))"
cmake --preset aarch64 >/dev/null
cmake --build --preset aarch64 -j "$jobs"
echo "=== aarch64: test under $(basename "$(grep -Po '(?<=^SHMKIT_QEMU_AARCH64:FILEPATH=).*' build/aarch64/CMakeCache.txt)")"
ctest --preset aarch64 -j "$jobs"
