#!/usr/bin/env bash
# The main job on the real upstream file: round trip and summary of the parse.
set -euo pipefail
cd "$(dirname "$0")/.."
RELGEN=.venv/bin/relgen
TREE=.cache/linux-source-6.1
$RELGEN parse --check "$TREE/arch/ia64/kernel/relocate_kernel.S"
