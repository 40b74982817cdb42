#!/usr/bin/env bash
# The README's first command: install what is missing, build the release
# preset, run the main job (the cross-process demo).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
exec build/release/shmkit demo "$@"
