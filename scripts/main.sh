#!/usr/bin/env bash
# The README's first command: install what is missing, build the release
# preset, run the main job: the benchmark suite in quick mode (progress on
# stderr, then one table of shmkit against its baselines). Arguments go to
# the suite, e.g. --full --out run.json --markdown BENCHMARKS.md --plots bench/plots.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
exec build/release/shmkit bench "$@"
