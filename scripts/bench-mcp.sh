#!/usr/bin/env bash
# bench-mcp.sh runs the MCP-level benchmark (issue 6): the real alterhost
# binary serving a tool as a WebAssembly plugin, with each engine, against
# the same tool written in Go and registered directly with the go-sdk
# (cmd/mcpbench serve), all over streamable HTTP on loopback. The load
# generator (cmd/mcpbench load) opens N sessions and makes tools/call back
# to back in each; it prints p50, p99 and calls/s per run, then the medians
# over the runs and each wasm/native ratio as a markdown table.
#
#   usage: scripts/bench-mcp.sh [-runs N] [-calls N] [-sessions "1 16"] [-tools "reverse random_id"]
#                               [-engines "extism native"] [-protocols "2025-11-25"] [-gogc N] [-o RESULTS.jsonl]
#          scripts/bench-mcp.sh -summarize RESULTS.jsonl   (the table of an earlier run)
#
# Defaults: 5 runs; 4000 timed calls per run, shared among the sessions;
# 1 and 16 sessions; reverse (examples/c/text, a C guest) and random_id
# (examples/go/web, a Go guest) from the committed plugins/; both engines;
# protocol 2025-11-25 (sessions; 2026-07-28 is served without them). The
# runs are interleaved (each run measures every server once) so that a
# slow spell on this shared machine hurts every server alike. With two or
# more cores, the servers run on core 0 and the load generator on core 1
# (taskset), so they do not compete. Everything listens on 127.0.0.1 and
# stops by itself; the servers are killed on exit. -gogc sets GOGC for
# every server (not the load generator): the go-sdk server's heap is small,
# so by default it collects garbage more often than alterhost does.
set -euo pipefail

die() { echo "bench-mcp: $*" >&2; exit 2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs=5
calls=4000
sessions="1 16"
tools="reverse random_id"
engines="extism native"
protocols="2025-11-25"
gogc=""
out=""
summarize=""
while [[ $# -gt 0 ]]; do
	case "$1" in
	-runs) runs="${2:?-runs needs a number}"; shift 2 ;;
	-calls) calls="${2:?-calls needs a number}"; shift 2 ;;
	-sessions) sessions="${2:?-sessions needs numbers}"; shift 2 ;;
	-tools) tools="${2:?-tools needs names}"; shift 2 ;;
	-engines) engines="${2:?-engines needs names}"; shift 2 ;;
	-protocols) protocols="${2:?-protocols needs revisions}"; shift 2 ;;
	-gogc) gogc="${2:?-gogc needs a number or off}"; shift 2 ;;
	-o) out="${2:?-o needs a file}"; shift 2 ;;
	-summarize) summarize="${2:?-summarize needs a file}"; shift 2 ;;
	-h | --help) sed -n '2,26p' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "-runs must be a positive number, not $runs"
[[ "$calls" =~ ^[1-9][0-9]*$ ]] || die "-calls must be a positive number, not $calls"

tmp="$(mktemp -d)"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd "$root"
go build -o "$tmp/mcpbench" ./cmd/mcpbench
if [[ -n "$summarize" ]]; then
	"$tmp/mcpbench" summarize -baseline go-sdk "$summarize"
	exit 0
fi
go build -o "$tmp/alterhost" ./cmd/alterhost

pin_server=()
pin_load=()
[[ -n "$gogc" ]] && pin_server=(env "GOGC=$gogc")
if [[ "$(nproc)" -ge 2 ]] && command -v taskset >/dev/null 2>&1; then
	pin_server+=(taskset -c 0)
	pin_load=(taskset -c 1)
	pinning="servers on core 0, load generator on core 1"
else
	pinning="not pinned ($(nproc) core(s) or no taskset): servers and load generator share the CPU"
fi

mkdir "$tmp/plugins"
cp plugins/text.wasm "$tmp/plugins/"
[[ " $tools " == *" random_id "* ]] && cp plugins/web.wasm "$tmp/plugins/"

# start NAME COMMAND...: run a server in the background, wait until its
# log names its URL (up to 60 s), and set url and pid.
start() {
	local name="$1"
	shift
	"${pin_server[@]}" "$@" 2>"$tmp/$name.log" &
	pid=$!
	pids+=("$pid")
	url=""
	for _ in $(seq 600); do
		url="$(grep -o 'url=http://127\.0\.0\.1:[0-9]*/mcp' "$tmp/$name.log" | head -1 | cut -d= -f2 || true)"
		[[ -n "$url" ]] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	cat "$tmp/$name.log" >&2
	die "$name did not start"
}

labels=(go-sdk)
declare -A urls spids
start go-sdk "$tmp/mcpbench" serve -addr 127.0.0.1:0
urls[go-sdk]="$url"
spids[go-sdk]="$pid"
for engine in $engines; do
	label="alterhost-$engine"
	start "$label" "$tmp/alterhost" --no-auth --addr 127.0.0.1:0 --metrics-addr "" --no-watch \
		--engine "$engine" --plugins "$tmp/plugins" --data-dir "$tmp/data-$engine"
	labels+=("$label")
	urls[$label]="$url"
	spids[$label]="$pid"
done

results="${out:-$tmp/results.jsonl}"
: >"$results"
if commit="$(git rev-parse --short HEAD 2>/dev/null)"; then
	git diff --quiet HEAD -- || commit="$commit with uncommitted changes"
else
	commit="unknown (not a git checkout)"
fi
echo "# MCP-level benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit"
echo "# $(nproc) cores, $pinning; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
[[ -n "$gogc" ]] && echo "# servers run with GOGC=$gogc"
echo "# $runs runs x tools ($tools) x sessions ($sessions) x protocols ($protocols), $calls timed calls each"
for run in $(seq "$runs"); do
	for protocol in $protocols; do
		for tool in $tools; do
			for n in $sessions; do
				for label in "${labels[@]}"; do
					# The calls are shared among the sessions, so each run
					# does the same work; the warm-up is about 800 calls.
					"${pin_load[@]}" "$tmp/mcpbench" load -json -label "$label" -url "${urls[$label]}" \
						-server-pid "${spids[$label]}" -tool "$tool" -protocol "$protocol" -sessions "$n" \
						-calls $(((calls + n - 1) / n)) -warmup $(((800 + n - 1) / n)) >>"$results" ||
						die "load on $label failed (server log: $tmp/$label.log)"
					echo "run $run: $(tail -1 "$results")" >&2
				done
			done
		done
	done
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
[[ -n "$out" ]] && echo "# results: $out"
echo
"$tmp/mcpbench" summarize -baseline go-sdk "$results"
