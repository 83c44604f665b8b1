#!/usr/bin/env bash
# bench-startup.sh measures how long alterhost takes to be ready to serve a
# folder of 20 plugins, four of them Go guests, with a warm on-disk
# compilation cache (and, for context, a cold one), on both engines; and
# what memory an instance and an idle server with those plugins take.
#
#   usage: scripts/bench-startup.sh [-rounds N] [-plugins DIR] [-run REGEXP] [-warm-only]
#
# It builds alterhost and the 20 plugins (10 example sources in Go, C,
# Rust and AssemblyScript, each packed with its manifest renamed, so every
# file is a distinct module with distinct tool names) into a temporary
# folder, or reuses DIR from -plugins (built there if empty), then runs
#   go test -run 'TestStartup|TestInstanceMemory' ./host/plugin/   (in-process)
#   go test -run TestStartupBinary ./cmd/alterhost/   (the real binary)
# with ALTERHOST_STARTUP_PLUGINS, ALTERHOST_STARTUP_BIN and
# ALTERHOST_STARTUP_ROUNDS set, and prints their tables (medians of N
# rounds, default 5). -warm-only leaves out the cold-cache rows, which
# take minutes. Needs the toolchains scripts/setup.sh installs.
set -euo pipefail

die() { echo "bench-startup: $*" >&2; exit 2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds=5
plugins=""
run='TestStartup|TestInstanceMemory'
cold=1
while [[ $# -gt 0 ]]; do
	case "$1" in
	-rounds) rounds="${2:?-rounds needs a number}"; shift 2 ;;
	-plugins) plugins="${2:?-plugins needs a folder}"; shift 2 ;;
	-run) run="${2:?-run needs a regexp}"; shift 2 ;;
	-warm-only) cold=0; shift ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "-rounds must be a positive number, not $rounds"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$root"
env -u GOOS -u GOARCH go build -o "$tmp/alterhost" ./cmd/alterhost

if [[ -z "$plugins" ]]; then
	plugins="$tmp/plugins"
fi
mkdir -p "$plugins"
plugins="$(cd "$plugins" && pwd)"

# Four Go guests (sandbox twice: distinct files, as two teams' plugins
# would be) and sixteen others from seven sources.
set20=(go/sandbox go/web go/github go/sandbox
	c/text c/text c/text c/sandbox c/sandbox c/sandbox c/github c/github
	rust/sandbox rust/sandbox rust/github rust/github
	assemblyscript/sandbox assemblyscript/sandbox assemblyscript/github assemblyscript/github)

if [[ -z "$(ls -A "$plugins")" ]]; then
	mkdir -p "$tmp/src"
	for src in $(printf '%s\n' "${set20[@]}" | sort -u); do
		lang="${src%%/*}" name="${src#*/}"
		echo "building examples/$src" >&2
		"$tmp/alterhost" plugin build --lang "$lang" -o "$tmp/src/$lang-$name.wasm" "$root/examples/$src" >/dev/null
	done
	i=0
	for src in "${set20[@]}"; do
		i=$((i + 1))
		n="$(printf %02d "$i")"
		lang="${src%%/*}" name="${src#*/}"
		# Plugin and tool names get the file's number: no name is served twice.
		sed -E 's/"name": "([^"]*)"/"name": "\1_'"$n"'"/' "examples/$src/alter.json" >"$tmp/manifest-$n.json"
		"$tmp/alterhost" plugin pack -o "$plugins/$n-$lang-$name.wasm" "$tmp/src/$lang-$name.wasm" "$tmp/manifest-$n.json" >/dev/null
	done
fi
[[ "$(ls "$plugins"/*.wasm | wc -l)" -eq 20 ]] || die "$plugins does not hold 20 plugins"
echo "plugins: $plugins ($(du -sh "$plugins" | cut -f1)); $(uptime)" >&2

export ALTERHOST_STARTUP_PLUGINS="$plugins" ALTERHOST_STARTUP_BIN="$tmp/alterhost" ALTERHOST_STARTUP_ROUNDS="$rounds" \
	ALTERHOST_STARTUP_COLD="$cold"
go test -p 1 -count=1 -timeout 60m -run "$run" -v ./host/plugin/ ./cmd/alterhost/ 2>&1 |
	grep -E '^\s+(startup|memory)_?[a-z_]*\.go:[0-9]+: |^(--- |FAIL|ok|PASS)' | sed -E 's/^\s+[a-z_]+\.go:[0-9]+: (startup|memory): //; s/^\s+[a-z_]+\.go:[0-9]+: //'
echo "done; $(uptime)" >&2
