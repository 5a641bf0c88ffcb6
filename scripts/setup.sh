#!/usr/bin/env bash
# Install everything relgen needs on a Debian machine, extract the upstream tree and fetch
# the parser's public corpus.
# Idempotent: a second run checks stamps and does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

TARBALL=/usr/src/linux-source-6.1.tar.xz
CACHE=.cache
TREE="$CACHE/linux-source-6.1"
VENV=.venv
PY=${PYTHON:-python3}

need_apt=()
command -v ia64-linux-gnu-as >/dev/null 2>&1 || need_apt+=(binutils-ia64-linux-gnu)
[ -f "$TARBALL" ] || need_apt+=(linux-source-6.1)
command -v cpp >/dev/null 2>&1 || need_apt+=(cpp)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
command -v perl >/dev/null 2>&1 || need_apt+=(perl)
command -v git >/dev/null 2>&1 || need_apt+=(git)
# dpkg-deb, tar and xz unpack the corpus packages (scripts/fetch-corpus.sh)
command -v xz >/dev/null 2>&1 || need_apt+=(xz-utils)
# rsvg-convert: a test holds the pictures' text-width model against a real SVG renderer.
command -v rsvg-convert >/dev/null 2>&1 || need_apt+=(librsvg2-bin)
# The kernel checks: Kbuild (make, flex, bison, bc), sparse and Coccinelle.
for tool in make flex bison bc sparse; do
    command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
command -v spatch >/dev/null 2>&1 || need_apt+=(coccinelle)
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need_apt[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Python: a project venv, so nothing depends on the system's site-packages.
stamp="$VENV/.relgen-installed"
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: pip install -e .[test]"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e ".[test]"
    echo "$want" > "$stamp"
fi

# Wheels of what relgen needs to be built and installed (its dependencies and its build
# backend), so that a test can install relgen the ordinary ways, `pip install .` and the
# built wheel, into a fresh venv without the network.
WHEELS="$CACHE/wheels"
wstamp="$WHEELS/.relgen-stamp"
if [ "$(cat "$wstamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: pip wheel of relgen's dependencies into $WHEELS"
    rm -rf "$WHEELS"
    mapfile -t requirements < <("$VENV/bin/python" -c '
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))
print("\n".join(project["build-system"]["requires"] + project["project"]["dependencies"]))')
    "$VENV/bin/python" -m pip wheel -q -w "$WHEELS" "${requirements[@]}"
    echo "$want" > "$wstamp"
fi

# Upstream: the whole tree, into the ignored cache. Kbuild (defconfig, prepare and the
# kernel checks) needs all of it; the rest of relgen reads arch/ia64, include and scripts.
# The stamp holds the tarball's size and time and the extraction's version ("full"), so a
# cache from the older partial extraction is replaced once.
tstamp="$TREE/.relgen-extracted"
tsum="full $(stat -c '%s %Y' "$TARBALL")"
if [ "$(cat "$tstamp" 2>/dev/null)" != "$tsum" ]; then
    echo "setup: extracting $TARBALL into $TREE"
    SECONDS=0
    rm -rf "$TREE.tmp" "$TREE"
    mkdir -p "$TREE.tmp"
    tar -xJf "$TARBALL" -C "$TREE.tmp" --strip-components=1
    echo "$tsum" > "$TREE.tmp/.relgen-extracted"
    mv "$TREE.tmp" "$TREE"
    echo "setup: extracted in ${SECONDS} s"
fi
# The parser's public corpus (issue 21): the ia64 assembly of Debian's binutils, glibc and
# gcc sources, into the ignored cache; the script keeps its own stamp. CI must have it;
# elsewhere (no network, say) its tests skip.
if ! bash scripts/fetch-corpus.sh; then
    [ "${CI:-}" != true ] || exit 1
    echo "setup: could not fetch the public corpus; tests/test_corpus.py will skip"
fi
echo "setup: ready (venv $VENV, upstream tree $TREE, corpus $CACHE/corpus)"
