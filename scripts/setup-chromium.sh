#!/usr/bin/env bash
# setup-chromium.sh installs Debian's chromium for the headless browser test
# (cmd/alterhost/browser_test.go), only if no chromium binary is present.
# setup.sh runs it. Quiet on success; on failure it prints apt's output.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "setup-chromium: please install chromium with your package manager" >&2
	exit 1
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
	sudo=(sudo)
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
	cat "$log" >&2
	echo "setup-chromium: installing chromium failed" >&2
	exit 1
fi
