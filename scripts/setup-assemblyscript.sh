#!/usr/bin/env bash
# setup-assemblyscript.sh installs what AssemblyScript plugin builds need
# (internal/pluginbuild, abi/assemblyscript): Node.js and npm, with apt, if
# node is missing, and the AssemblyScript compiler exactly as
# abi/assemblyscript/package-lock.json pins it, if
# abi/assemblyscript/node_modules is missing or older than the lockfile.
# setup.sh runs it; it is quick and quiet to re-run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pkg="$here/../abi/assemblyscript"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "setup-assemblyscript: please install Node.js (20 or later) and npm with your package manager" >&2
		exit 1
	fi
	sudo=()
	if [ "$(id -u)" != 0 ]; then
		sudo=(sudo)
	fi
	echo "setup-assemblyscript: installing nodejs npm" >&2
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# npm ci rewrites node_modules/.package-lock.json, so its time says when
# node_modules was last installed.
stamp="$pkg/node_modules/.package-lock.json"
if [ ! -e "$stamp" ] || [ "$pkg/package-lock.json" -nt "$stamp" ]; then
	echo "setup-assemblyscript: installing the AssemblyScript compiler (npm ci in abi/assemblyscript)" >&2
	if ! out="$(npm ci --prefix "$pkg" --no-audit --no-fund --loglevel=error 2>&1)"; then
		printf '%s\n' "$out" >&2
		exit 1
	fi
fi
