#!/usr/bin/env bash
# setup-rust.sh installs what Rust plugins need (abi/rust, examples/rust):
# Debian's rustc and its WebAssembly standard library, with apt, if either
# is missing. Plugin builds call /usr/bin/rustc by full path, because a
# rustup toolchain first on PATH has no Debian wasm32 std. setup.sh runs
# it; it is quick and quiet to re-run.
set -euo pipefail

need=()
[ -x /usr/bin/rustc ] || need+=(rustc)
# The package, not a path: its file layout differs between releases.
dpkg-query -W -f '${Status}' libstd-rust-dev-wasm32 2>/dev/null | grep -q "ok installed" || need+=(libstd-rust-dev-wasm32)
if ((${#need[@]} == 0)); then
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "setup-rust: please install ${need[*]} (Debian's rustc and its wasm32 standard library)" >&2
	exit 1
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
	sudo=(sudo)
fi
echo "setup-rust: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
