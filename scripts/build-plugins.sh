#!/usr/bin/env bash
# build-plugins.sh builds the bundled plugins, the examples that plugins/
# serves out of the box, into one plugin file each: OUTDIR/NAME.wasm, the
# module with its alter.json manifest embedded.
#
#   usage: scripts/build-plugins.sh [OUTDIR]   (default: plugins/ at the repo root)
#
# examples/go/NAME is built with Go (GOOS=wasip1, c-shared); examples/c/NAME
# with clang and wasm-ld, which scripts/setup.sh installs. NAME, the folder's
# name, is the manifest's "name". The other examples (the sandbox ported to
# other languages, github) would clash with these by tool name; `alterhost
# plugin build` and internal/pluginbuild's tests build them.
set -euo pipefail

die() { echo "build-plugins: $*" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
outdir="${1:-$root/plugins}"
mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"

command -v go >/dev/null 2>&1 || die "go not found; install Go 1.26 or later (https://go.dev/dl/)"
for tool in clang wasm-ld; do
	command -v "$tool" >/dev/null 2>&1 ||
		die "$tool not found; run scripts/setup.sh to install clang, lld and wabt"
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cd "$root"
# The embedder is built for this machine, whatever GOOS the caller exported.
env -u GOOS -u GOARCH go build -o "$tmp/alterhost" ./cmd/alterhost

# embed NAME DIR: validate DIR/alter.json, store it in the module and put the
# plugin in place; the module is only replaced once the embed succeeded.
embed() {
	"$tmp/alterhost" plugin pack -o "$tmp/$1.plugin.wasm" "$tmp/$1.wasm" "$2/alter.json" >/dev/null
	mv -f "$tmp/$1.plugin.wasm" "$outdir/$1.wasm"
	echo "built $outdir/$1.wasm ($(wc -c <"$outdir/$1.wasm") bytes)"
}

bundled_go=(sandbox web)
bundled_c=(text)

for name in "${bundled_go[@]}"; do
	dir="examples/go/$name/"
	# -trimpath, no VCS stamp and no build ID: the same sources give the
	# same bytes, so committed plugins only change when their code does.
	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -buildvcs=false \
		-ldflags=-buildid= -o "$tmp/$name.wasm" "./$dir"
	embed "$name" "$dir"
done

for name in "${bundled_c[@]}"; do
	dir="examples/c/$name/"
	# Freestanding: no libc, no WASI; tools export themselves by export_name.
	clang --target=wasm32 -nostdlib -O2 -Wall -Wextra -I abi/c \
		-Wl,--no-entry -o "$tmp/$name.wasm" "$dir"*.c
	embed "$name" "$dir"
done
