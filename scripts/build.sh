#!/usr/bin/env bash
# Builds the Worker bundle into build/ (index.js + index_bg.wasm).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
worker-build --release
