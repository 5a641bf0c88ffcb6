#!/usr/bin/env bash
# The main job on the real upstream file: rewrite, then verify with the real toolchain and the
# kernel's own checkers.
set -euo pipefail
cd "$(dirname "$0")/.."
RELGEN=.venv/bin/relgen
TREE=.cache/linux-source-6.1
SOURCE="$TREE/arch/ia64/kernel/relocate_kernel.S"

echo "== relgen parse --check (lossless round trip of the upstream file)"
$RELGEN parse --check "$SOURCE"
echo
echo "== relgen rewrite -> out/ (rewritten, assembled and checked before anything is written)"
$RELGEN rewrite --kernel-tree "$TREE" -o out --force
echo
echo "== the patch: one commit, the whole change"
sed -n '/^---$/,/^diff --git/p' out/relocate_kernel.patch | sed '1d;$d'
echo
echo "== relgen verify out/ (twin objects, execution, patch, Kbuild + sparse + gcc, Coccinelle)"
$RELGEN verify out --kernel-tree "$TREE" --require-kernel-checks
echo
echo "outputs are in out/: relocate_kernel.S, kexec_control_page.h, relocate_kernel.patch,"
echo "layout.txt, layout.json, layout-before.svg, layout-after.svg"
.venv/bin/python - <<'PY'
import json
data = json.load(open("out/layout.json"))
size = {side: data[side]["region"]["end"] - data[side]["region"]["start"]
        for side in ("before", "after")}
print(f"control page: {size['before']} bytes before, {size['after']} bytes after")
PY
