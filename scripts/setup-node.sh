#!/usr/bin/env bash
# setup-node.sh installs what the npm-based parts need: Node.js and npm,
# with apt, if node is missing; then, exactly as each package-lock.json
# pins them, the packages of
#   abi/assemblyscript  the AssemblyScript compiler (plugin builds, tests)
#   e2e/ts              the TypeScript SDK client (cmd/alterhost/ts_test.go)
# each only if its node_modules is missing or older than its lockfile.
# setup.sh runs it; it is quick and quiet to re-run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "setup-node: please install Node.js (20 or later) and npm with your package manager" >&2
		exit 1
	fi
	sudo=()
	if [ "$(id -u)" != 0 ]; then
		sudo=(sudo)
	fi
	echo "setup-node: installing nodejs npm" >&2
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

for dir in abi/assemblyscript e2e/ts; do
	pkg="$root/$dir"
	# npm ci rewrites node_modules/.package-lock.json, so its time says when
	# node_modules was last installed.
	stamp="$pkg/node_modules/.package-lock.json"
	if [ ! -e "$stamp" ] || [ "$pkg/package-lock.json" -nt "$stamp" ]; then
		echo "setup-node: installing $dir packages (npm ci)" >&2
		if ! out="$(npm ci --prefix "$pkg" --no-audit --no-fund --loglevel=error 2>&1)"; then
			printf '%s\n' "$out" >&2
			exit 1
		fi
	fi
done
