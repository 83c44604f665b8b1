#!/usr/bin/env bash
# setup.sh installs what alterhost's tests and plugin builds need beyond Go:
# clang and lld (C plugins, wasm32), wasi-libc and the wasm32 compiler-rt
# (C plugins that use libc), wabt (wat2wasm for the hostile-module
# fixtures), then runs the other setup-*.sh scripts beside it (browser and
# Node.js test clients). It installs only what is missing, so it is quick
# to re-run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
command -v wasm-ld >/dev/null 2>&1 || need+=(lld)
command -v wat2wasm >/dev/null 2>&1 || need+=(wabt)
[ -f /usr/include/wasm32-wasi/string.h ] || need+=(wasi-libc)
compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null || need+=(libclang-rt-14-dev-wasm32)
run_others() {
	for extra in "$here"/setup-*.sh; do
		[ -e "$extra" ] && bash "$extra"
	done
	return 0
}
if ((${#need[@]} == 0)); then
	run_others
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "setup: please install ${need[*]} with your package manager (clang with the wasm32 target, lld, wasi-libc, wasm32 compiler-rt, wabt)" >&2
	exit 1
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
	sudo=(sudo)
fi
echo "setup: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
run_others
