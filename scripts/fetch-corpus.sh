#!/usr/bin/env bash
# The parser's public corpus, into the ignored cache .cache/corpus (never committed): the ia64
# assembly of Debian's source packages, fetched with apt-get download and unpacked with dpkg:
#   binutils/  binutils-source: gas/testsuite/gas/ia64/ (the .s tests, with their .d and .l)
#   glibc/     glibc-source:    every .S file under an ia64 folder
#   gcc/       gcc-12-source:   libgcc/config/ia64/*.S
# Only those files are kept. Idempotent: the stamp names the packages' files; a second run
# with the same versions available does nothing. `make setup` runs it, and so does the
# corpus test when the cache is missing. Needs apt-get, dpkg-deb, tar and xz (Debian).
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS=.cache/corpus
STAMP="$CORPUS/.relgen-corpus"
PACKAGES=(binutils-source glibc-source gcc-12-source)

# The .deb files apt would fetch now, one per line (name, size, checksum): the stamp.
uris() { apt-get download --print-uris "${PACKAGES[@]}" 2>/dev/null; }
if ! wanted="$(uris)" || [ -z "$wanted" ]; then
    echo "corpus: apt knows none of ${PACKAGES[*]}; apt-get update"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    wanted="$(uris)"
fi
wanted="$(printf '%s\n' "$wanted" | awk '{print $2, $3}' | sort)"
if [ "$(cat "$STAMP" 2>/dev/null)" = "$wanted" ]; then
    exit 0
fi

echo "corpus: fetching ${PACKAGES[*]} into $CORPUS"
SECONDS=0
work="$CORPUS.tmp"
rm -rf "$work"
mkdir -p "$work/debs" "$work/src"
# (as root, apt says that it downloads without its sandbox user: true, and no matter here)
(cd "$work/debs" && apt-get download -q "${PACKAGES[@]}" 2>/dev/null)
for deb in "$work"/debs/*.deb; do
    # each source package holds its upstream tarball; gcc's also holds gm2's, not needed
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/src" --wildcards --exclude='*gm2*' \
        './usr/src/*/*.tar.xz'
done
rm -rf "$work/debs"

# from_tarball NAME PATTERN: the files of the tarball NAME-*.tar.xz that match PATTERN
# (GNU tar: * matches /), without the tarball's top folder, into $work/NAME
from_tarball() {
    local tarball
    tarball="$(find "$work/src" -name "$1-[0-9]*.tar.xz" | head -n 1)"
    [ -n "$tarball" ] || { echo "corpus: no $1 tarball in the package" >&2; exit 1; }
    mkdir -p "$work/$1"
    tar -xJf "$tarball" -C "$work/$1" --strip-components=1 --wildcards "$2"
}
from_tarball binutils '*/gas/testsuite/gas/ia64/*'
from_tarball glibc '*/ia64/*.S'
from_tarball gcc '*/libgcc/config/ia64/*.S'
rm -rf "$work/src"

printf '%s\n' "$wanted" > "$work/.relgen-corpus"
rm -rf "$CORPUS"
mv "$work" "$CORPUS"
echo "corpus: $(find "$CORPUS/binutils" -name '*.s' | wc -l) binutils, \
$(find "$CORPUS/glibc" -name '*.S' | wc -l) glibc, $(find "$CORPUS/gcc" -name '*.S' | wc -l) gcc \
files in ${SECONDS} s"
