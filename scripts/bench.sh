#!/usr/bin/env bash
# bench.sh runs the host benchmarks (host/bench_test.go) and the vault
# egress benchmarks (vault/egress/bench_test.go) and prints the median of
# each benchmark over the runs, the wasm/native ratio of each pair
# (benchmarks whose names end in /native and /wasm; a /wasm without a
# /native sibling pairs with the nearest /native above it, so
# X/engine=native/c/wasm pairs with X/engine=native/native), and the added cost
# over native of every other sibling of a /native benchmark (e.g.
# AlterRequest/vault - AlterRequest/native). Benchmarks run under both
# engines (X/engine=extism/Y and X/engine=native/Y) also get a table of the
# two side by side.
#
#   usage: scripts/bench.sh [-count N] [-bench REGEXP] [-pkg "PKG..."] [-o RAWFILE]
#          scripts/bench.sh -summarize RAWFILE   (tables of an earlier run)
#
# Defaults: -count 5, -bench ., -pkg "./host/ ./vault/egress/", raw output
# to a new file under $TMPDIR. The example plugins are built by the host
# benchmarks themselves, which needs clang and wasm-ld (scripts/setup.sh).
# Set ALTERHOST_TEST_POSTGRES_URL to also run the vault over PostgreSQL.
# Medians are computed by a small Go program; benchstat is not needed.
set -euo pipefail

die() { echo "bench: $*" >&2; exit 2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
count=5
bench=.
pkgs="./host/ ./vault/egress/"
raw=""
summarize=""
while [[ $# -gt 0 ]]; do
	case "$1" in
	-count) count="${2:?-count needs a number}"; shift 2 ;;
	-bench) bench="${2:?-bench needs a regexp}"; shift 2 ;;
	-pkg) pkgs="${2:?-pkg needs packages}"; shift 2 ;;
	-o) raw="${2:?-o needs a file}"; shift 2 ;;
	-summarize) summarize="${2:?-summarize needs a file}"; shift 2 ;;
	-h | --help) sed -n '2,20p' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
[[ "$count" =~ ^[1-9][0-9]*$ ]] || die "-count must be a positive number, not $count"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [[ -n "$summarize" ]]; then
	[[ -f "$summarize" ]] || die "$summarize: no such file"
	raw="$(cd "$(dirname "$summarize")" && pwd)/$(basename "$summarize")"
else
	if [[ -z "$raw" ]]; then
		raw="${TMPDIR:-/tmp}/alterhost-bench-$(date -u +%Y%m%dT%H%M%SZ).txt"
	fi
	read -r -a pkglist <<<"$pkgs"
	[[ ${#pkglist[@]} -gt 0 ]] || die "-pkg names no package"
	cmd=(go test -run '^$' -bench "$bench" -benchmem -count "$count" "${pkglist[@]}")
	{
		echo "# ${cmd[*]}"
		echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(go version)"
	} >"$raw"
	echo "running: ${cmd[*]}  (raw output: $raw)" >&2
	# The raw output is kept even if a benchmark fails.
	(cd "$root" && "${cmd[@]}") 2>&1 | tee -a "$raw" >&2 || die "go test failed; raw output in $raw"
	echo >&2
fi

cat >"$tmp/median.go" <<'EOF'
// median reads `go test -bench` output and prints, as Markdown tables, the
// median of each metric per benchmark, the wasm/native ratio per pair, and
// the added cost over native of the other siblings of a /native benchmark.
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var procs = regexp.MustCompile(`-\d+$`)

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func dur(ns float64) string {
	switch {
	case ns >= 1e9:
		return fmt.Sprintf("%.2f s", ns/1e9)
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

func num(v float64) string {
	if v >= 1e6 {
		return fmt.Sprintf("%.2fM", v/1e6)
	}
	if v >= 1e4 {
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func main() {
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var order []string
	vals := map[string]map[string][]float64{} // name -> unit -> values
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || !strings.HasPrefix(fs[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(fs[1]); err != nil {
			continue
		}
		name := procs.ReplaceAllString(strings.TrimPrefix(fs[0], "Benchmark"), "")
		if vals[name] == nil {
			vals[name] = map[string][]float64{}
			order = append(order, name)
		}
		for i := 2; i+1 < len(fs); i += 2 {
			v, err := strconv.ParseFloat(fs[i], 64)
			if err == nil {
				vals[name][fs[i+1]] = append(vals[name][fs[i+1]], v)
			}
		}
	}
	if len(order) == 0 {
		fmt.Fprintln(os.Stderr, "no benchmark results in", os.Args[1])
		os.Exit(1)
	}
	med := func(name, unit string) (float64, bool) {
		v := vals[name][unit]
		if len(v) == 0 {
			return 0, false
		}
		return median(v), true
	}
	cell := func(name, unit string, format func(float64) string) string {
		if m, ok := med(name, unit); ok {
			return format(m)
		}
		return "–"
	}

	fmt.Println("Medians per benchmark:")
	fmt.Println()
	fmt.Println("| benchmark | runs | time/op | B/op | allocs/op |")
	fmt.Println("|---|--:|--:|--:|--:|")
	for _, n := range order {
		fmt.Printf("| %s | %d | %s | %s | %s |\n", n, len(vals[n]["ns/op"]),
			cell(n, "ns/op", dur), cell(n, "B/op", num), cell(n, "allocs/op", num))
	}

	var pairs [][2]string // {native, wasm}
	for _, n := range order {
		base, ok := strings.CutSuffix(n, "/wasm")
		if !ok {
			continue
		}
		if native := nearestNative(base, vals); native != "" {
			pairs = append(pairs, [2]string{native, n})
		}
	}
	if len(pairs) > 0 {
		printPairs(pairs, med, cell)
	}
	printAdded(order, med, cell)
	printEngines(order, med, cell)
}

// printEngines prints, for every X/engine=extism/Y with an
// X/engine=native/Y twin (Y not a native baseline), both medians and the
// ratio native engine / Extism engine.
func printEngines(order []string, med func(string, string) (float64, bool), cell func(string, string, func(float64) string) string) {
	const ext, nat = "/engine=extism/", "/engine=native/"
	var rows [][2]string
	for _, n := range order {
		if !strings.Contains(n, ext) || strings.HasSuffix(n, "/native") {
			continue
		}
		twin := strings.Replace(n, ext, nat, 1)
		if slices.Contains(order, twin) {
			rows = append(rows, [2]string{n, twin})
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Println()
	fmt.Println("Engines side by side (medians; ratio = native engine / Extism engine):")
	fmt.Println()
	fmt.Println("| benchmark | extism time/op | native time/op | time ratio | extism B/op | native B/op | extism allocs | native allocs |")
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range rows {
		ratio := "–"
		if a, ok := med(r[0], "ns/op"); ok && a > 0 {
			if b, ok := med(r[1], "ns/op"); ok {
				ratio = fmt.Sprintf("%.2f×", b/a)
			}
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", strings.Replace(r[0], ext, "/engine=*/", 1),
			cell(r[0], "ns/op", dur), cell(r[1], "ns/op", dur), ratio,
			cell(r[0], "B/op", num), cell(r[1], "B/op", num),
			cell(r[0], "allocs/op", num), cell(r[1], "allocs/op", num))
	}
}

// nearestNative returns the native baseline of base/wasm: base/native if
// it exists, else the nearest P/native where P is base with elements taken
// off its end (A/engine=native/c/wasm pairs with A/engine=native/native),
// else "".
func nearestNative(base string, vals map[string]map[string][]float64) string {
	for p := base; ; {
		if vals[p+"/native"] != nil {
			return p + "/native"
		}
		i := strings.LastIndex(p, "/")
		if i < 0 {
			return ""
		}
		p = p[:i]
	}
}

func printPairs(pairs [][2]string, med func(string, string) (float64, bool), cell func(string, string, func(float64) string) string) {
	fmt.Println()
	fmt.Println("Native vs wasm (medians; ratio = wasm / native; a wasm benchmark without a native sibling is")
	fmt.Println("paired with the nearest native one above it):")
	fmt.Println()
	fmt.Println("| pair | native time/op | wasm time/op | time ratio | native B/op | wasm B/op | native allocs | wasm allocs |")
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|--:|")
	for _, pr := range pairs {
		n, w := pr[0], pr[1]
		p := strings.TrimSuffix(w, "/wasm")
		ratio := "–"
		if a, ok := med(n, "ns/op"); ok && a > 0 {
			if b, ok := med(w, "ns/op"); ok {
				ratio = fmt.Sprintf("%.1f×", b/a)
			}
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", p,
			cell(n, "ns/op", dur), cell(w, "ns/op", dur), ratio,
			cell(n, "B/op", num), cell(w, "B/op", num),
			cell(n, "allocs/op", num), cell(w, "allocs/op", num))
	}
}

// printAdded prints, for every benchmark base/X that has a base/native
// sibling (X neither native nor wasm), X's median minus native's: the cost
// X adds to the same work done natively.
func printAdded(order []string, med func(string, string) (float64, bool), cell func(string, string, func(float64) string) string) {
	type row struct{ base, x string }
	var rows []row
	for _, n := range order {
		i := strings.LastIndex(n, "/")
		if i < 0 {
			continue
		}
		base, x := n[:i], n[i+1:]
		if x == "native" || x == "wasm" || !slices.Contains(order, base+"/native") {
			continue
		}
		rows = append(rows, row{base, x})
	}
	if len(rows) == 0 {
		return
	}
	diff := func(a, b string, unit string, format func(float64) string) string {
		x, ok1 := med(a, unit)
		y, ok2 := med(b, unit)
		if !ok1 || !ok2 {
			return "–"
		}
		d := x - y
		if d < 0 {
			return "−" + format(-d)
		}
		return "+" + format(d)
	}
	fmt.Println()
	fmt.Println("Added cost over native (medians; added = X − native, ratio = X / native):")
	fmt.Println()
	fmt.Println("| benchmark | native time/op | X time/op | added time/op | ratio | added B/op | added allocs/op |")
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|")
	for _, r := range rows {
		n, x := r.base+"/native", r.base+"/"+r.x
		ratio := "–"
		if a, ok := med(n, "ns/op"); ok && a > 0 {
			if b, ok := med(x, "ns/op"); ok {
				ratio = fmt.Sprintf("%.2f×", b/a)
			}
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s |\n", x,
			cell(n, "ns/op", dur), cell(x, "ns/op", dur), diff(x, n, "ns/op", dur), ratio,
			diff(x, n, "B/op", num), diff(x, n, "allocs/op", num))
	}
}
EOF

(cd "$tmp" && GOFLAGS= GO111MODULE=off go run median.go "$raw")
