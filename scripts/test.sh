#!/usr/bin/env bash
# The README's second command: install what is missing, then build and run
# the whole test suite: the release preset, the ASan+UBSan (debug) preset,
# the TSan preset (thread-mode tests, label "threads"), and each libFuzzer
# target for a bounded time; first, every C++ source is checked against
# .clang-format (scripts/check-format.sh); last, the aarch64 cross build and
# its C++ tests under qemu-user (scripts/cross-aarch64.sh: portability only,
# not weak-memory behaviour).
#   SHMKIT_TEST_PRESETS="release debug tsan"   which presets to build and test
#   SHMKIT_TEST_CROSS=aarch64             the cross build (empty: skip it)
#   SHMKIT_FUZZ_SECONDS=20                seconds per fuzz target (0: skip)
#   SHMKIT_STORM_ROUNDS=100               rounds of each random-SIGKILL storm
# `scripts/test.sh --nightly` is the nightly size: 1000 storm rounds and
# 10 minutes per fuzz target (each still overridable by the variables).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} == --nightly ]]; then
  export SHMKIT_STORM_ROUNDS=${SHMKIT_STORM_ROUNDS:-1000}
  export SHMKIT_FUZZ_SECONDS=${SHMKIT_FUZZ_SECONDS:-600}
  export SHMKIT_TEST_TIMEOUT=${SHMKIT_TEST_TIMEOUT:-540}  # per-test watchdog (s)
elif [[ $# -gt 0 ]]; then
  echo "usage: scripts/test.sh [--nightly]" >&2
  exit 2
fi
export SHMKIT_STORM_ROUNDS=${SHMKIT_STORM_ROUNDS:-100}
scripts/install-deps.sh

jobs=$(nproc)

echo "=== format: .clang-format on every C++ source"
scripts/check-format.sh
presets=${SHMKIT_TEST_PRESETS:-release debug tsan}
fuzz_seconds=${SHMKIT_FUZZ_SECONDS:-20}

if ((fuzz_seconds > 0)); then
  echo "=== fuzz: build"
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz -j "$jobs"
  # Every tests/fuzz/fuzz_*.cpp must have given its binary: a target that
  # was not built (or a renamed build directory) is an error, not a fuzz
  # run of nothing.
  fuzzed=0
  for src in tests/fuzz/fuzz_*.cpp; do
    t=$(basename "$src" .cpp)
    f=build/fuzz/tests/fuzz/$t
    if [[ ! -x $f ]]; then
      echo "scripts/test.sh: fuzz target $t was not built ($f is missing)" >&2
      exit 1
    fi
    corpus=$(mktemp -d)
    [[ -d tests/fuzz/corpus/$t ]] && cp -r tests/fuzz/corpus/"$t"/. "$corpus"/
    echo "=== fuzz: $t for ${fuzz_seconds}s"
    # A crash fails the run with the fuzzer's report (the stack, the input
    # in base64); a clean run prints its last lines.
    log=$(mktemp)
    if ! "$f" -max_total_time="$fuzz_seconds" -print_final_stats=0 -artifact_prefix="$corpus/" \
      "$corpus" >"$log" 2>&1; then
      tail -n 60 "$log"
      echo "scripts/test.sh: fuzz target $t failed (input above in base64)" >&2
      rm -rf "$corpus" "$log"
      exit 1
    fi
    tail -n 3 "$log"
    rm -rf "$corpus" "$log"
    fuzzed=$((fuzzed + 1))
  done
  if ((fuzzed == 0)); then
    echo "scripts/test.sh: no fuzz target ran (tests/fuzz/fuzz_*.cpp)" >&2
    exit 1
  fi
  echo "=== fuzz: $fuzzed target(s) ran"
fi

for p in $presets; do
  echo "=== $p: configure and build"
  cmake --preset "$p" >/dev/null
  cmake --build --preset "$p" -j "$jobs"
done
for p in $presets; do
  echo "=== $p: test"
  ctest --preset "$p" -j "$jobs"
done

if [[ ${SHMKIT_TEST_CROSS-aarch64} == *aarch64* ]]; then
  scripts/cross-aarch64.sh --no-deps
fi
