// Package wasmtest builds small WebAssembly guests from WAT text for tests,
// so hostile and edge-case modules live beside the tests that use them.
package wasmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Prelude declares the Extism kernel imports, the alter_request import and
// a one-page guest memory, plus two helpers:
//
//	$put (ptr i32, len i32) -> i64   copies guest bytes into a new kernel block
//	$out (ptr i32, len i32)          makes guest bytes the call's output
//
// Modules built with [Guest] start with it.
const Prelude = `
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "input_offset" (func $input_offset (result i64)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "load_u8" (func $load_u8 (param i64) (result i32)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/env" "error_set" (func $error_set (param i64)))
  (import "extism:host/user" "alter_request" (func $alter_request (param i64) (result i64)))
  (memory (export "memory") 1)
  (func $put (param $ptr i32) (param $len i32) (result i64)
    (local $blk i64) (local $i i32)
    (local.set $blk (call $alloc (i64.extend_i32_u (local.get $len))))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
      (call $store_u8 (i64.add (local.get $blk) (i64.extend_i32_u (local.get $i)))
                      (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $blk))
  (func $out (param $ptr i32) (param $len i32)
    (call $output_set (call $put (local.get $ptr) (local.get $len)) (i64.extend_i32_u (local.get $len))))
`

// Guest wraps body (functions, data, exports) in a module with [Prelude]
// and builds it. Lines of body that start with "(import" go first, as Wasm
// requires imports before definitions.
func Guest(t testing.TB, body string) []byte {
	t.Helper()
	var imports, rest strings.Builder
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "(import") {
			imports.WriteString(line + "\n")
		} else {
			rest.WriteString(line + "\n")
		}
	}
	return Build(t, "(module\n"+imports.String()+Prelude+rest.String()+")")
}

// Build turns WAT text into a binary module with wabt's wat2wasm, which
// scripts/setup.sh installs.
func Build(t testing.TB, wat string) []byte {
	t.Helper()
	tool, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Fatal("wat2wasm not found: run scripts/setup.sh to install the test tools (wabt)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "m.wat")
	if err := os.WriteFile(src, []byte(wat), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "m.wasm")
	if out, err := exec.Command(tool, "-o", dst, src).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s\n--- source ---\n%s", err, out, numbered(wat))
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func numbered(s string) string {
	lines := strings.Split(s, "\n")
	var b strings.Builder
	for i, l := range lines {
		b.WriteString(fmt.Sprintf("%4d  %s\n", i+1, l))
	}
	return b.String()
}
