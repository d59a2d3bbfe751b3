#!/usr/bin/env bash
# Regenerates the PyTorch-exported ONNX fixtures in tests/fixtures/pytorch/
# (issue 3: a model exported from PyTorch runs in our runtime within 1e-4
# relative error). Installs Debian's python3-torch and python3-onnx when they
# are missing, then runs tests/fixtures/pytorch/make_fixtures.py with Debian's
# own python3 (a pyenv python3 on PATH lacks the Debian modules).
#
# Not part of the test path: the fixtures are committed, and
# tests/pytorch_fixture_test.cc needs neither torch nor onnx to run.
set -euo pipefail
cd "$(dirname "$0")/.."

python=/usr/bin/python3
if ! "$python" -c 'import torch, onnx' 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then apt=(apt-get); else apt=(sudo apt-get); fi
  "${apt[@]}" install -y --no-install-recommends python3-torch python3-onnx
fi
exec "$python" tests/fixtures/pytorch/make_fixtures.py "$@"
