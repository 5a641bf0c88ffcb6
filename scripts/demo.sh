#!/usr/bin/env bash
# The main job on the real upstream file: rewrite, verify with the real toolchain and the
# kernel's own checkers, and take the change with git am, as a maintainer would.
set -euo pipefail
cd "$(dirname "$0")/.."
RELGEN=.venv/bin/relgen
TREE=.cache/linux-source-6.1
SOURCE="$TREE/arch/ia64/kernel/relocate_kernel.S"
AUTHOR=${RELGEN_DEMO_AUTHOR:-"relgen demo <demo@relgen.invalid>"}

echo "== relgen parse --check (lossless round trip of the upstream file)"
$RELGEN parse --check "$SOURCE"
echo
echo "== relgen rewrite -> out/ (rewritten, assembled and checked before anything is written)"
$RELGEN rewrite --kernel-tree "$TREE" -o out --force --from "$AUTHOR"
echo
echo "== the mail: its subject, the notes below its ---, and its diffstat"
grep -m1 '^Subject:' out/relocate_kernel.patch
sed -n '/^---$/,/^diff --git/p' out/relocate_kernel.patch | sed '1d;$d'
echo
echo "== relgen verify out/ (twin objects, execution, patch, sparse + gcc, Coccinelle)"
$RELGEN verify out --kernel-tree "$TREE" --require-kernel-checks
echo
echo "== git am out/relocate_kernel.patch, on a git repository of the tree's four files"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for file in $(sed -n 's|^diff --git a/\([^ ]*\) b/.*|\1|p' out/relocate_kernel.patch); do
    if [ -f "$TREE/$file" ]; then
        mkdir -p "$scratch/$(dirname "$file")"
        cp "$TREE/$file" "$scratch/$file"
    fi
done
git -C "$scratch" init -q
git -C "$scratch" -c user.name=demo -c user.email=demo@relgen.invalid add -A
git -C "$scratch" -c user.name=demo -c user.email=demo@relgen.invalid commit -q -m pristine
git -C "$scratch" -c user.name=demo -c user.email=demo@relgen.invalid am -q \
    "$PWD/out/relocate_kernel.patch"
git -C "$scratch" log --format='applied: %h %s (%an, %ad)' -1
cmp "$scratch/arch/ia64/kernel/relocate_kernel.S" out/relocate_kernel.S
echo "the applied relocate_kernel.S equals out/relocate_kernel.S"
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
