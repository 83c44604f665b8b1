#!/usr/bin/env bash
# setup-node.sh installs what the TypeScript SDK client test needs
# (cmd/alterhost/ts_test.go): Node.js and npm, with apt, if node is missing,
# and e2e/ts's packages exactly as its package-lock.json pins them, if
# e2e/ts/node_modules is missing or older than the lockfile. setup.sh runs
# it; it is quick and quiet to re-run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ts="$here/../e2e/ts"

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

# npm ci rewrites node_modules/.package-lock.json, so its time says when
# node_modules was last installed.
stamp="$ts/node_modules/.package-lock.json"
if [ ! -e "$stamp" ] || [ "$ts/package-lock.json" -nt "$stamp" ]; then
	echo "setup-node: installing e2e/ts packages (npm ci)" >&2
	if ! out="$(npm ci --prefix "$ts" --no-audit --no-fund --loglevel=error 2>&1)"; then
		printf '%s\n' "$out" >&2
		exit 1
	fi
fi
