#!/usr/bin/env bash
# Retrains the reference models with Squeeze's own engine and writes them
# under deploy/models/ (docs/models.md records what this printed).
#   Fashion-MNIST CNN and MLP -> fashion_mnist_{cnn,mlp}.onnx
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
bin="${SQUEEZE_BUILD_DIR:-build}/bin"
"$bin/train_fashion_mnist" --model=mlp --epochs=10 --seed=1 --out=deploy/models/fashion_mnist_mlp.onnx
"$bin/train_fashion_mnist" --model=cnn --epochs=5 --seed=1 --out=deploy/models/fashion_mnist_cnn.onnx
# LLaMA-architecture LM on SOTU + Moby-Dick -> deploy/models/lm/ (HF checkpoint + tokenizer)
"$bin/train_lm" --steps=300 --seed=1 --out=deploy/models/lm
