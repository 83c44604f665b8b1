package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/internal/wasmtest"
)

// guests holds one export per behaviour, all in one module.
const guests = `
  (data (i32.const 0) "hello")
  (data (i32.const 16) "custom failure")
  (data (i32.const 64) "not json")
  (func (export "echo") (result i32)
    (call $output_set (call $input_offset) (call $input_length)) (i32.const 0))
  (func (export "hello") (result i32) (call $out (i32.const 0) (i32.const 5)) (i32.const 0))
  (func (export "fail") (result i32)
    (call $error_set (call $put (i32.const 16) (i32.const 14))) (i32.const 3))
  (func (export "spin") (result i32) (loop $l (br $l)) (i32.const 0))
  (func (export "trap") (result i32) unreachable)
  (func (export "say_then_trap") (result i32)
    (call $error_set (call $put (i32.const 16) (i32.const 14))) unreachable)
  (func $recurse (export "recurse") (result i32) (call $recurse))
  (func (export "grow") (result i32)
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable)
  (func (export "kernel_bomb") (result i32)
    (loop $l (drop (call $alloc (i64.const 1048576))) (br $l)) (i32.const 0))
  (func (export "huge") (result i32)
    (call $output_set (call $alloc (i64.const 2097152)) (i64.const 2097152)) (i32.const 0))
  (func (export "lying") (result i32)
    (call $output_set (call $alloc (i64.const 8)) (i64.const 1073741824)) (i32.const 0))
  (func (export "lying_offset") (result i32)
    (call $output_set (i64.const 4000000000) (i64.const 16)) (i32.const 0))
  (func (export "request") (result i32)
    (local $reply i64)
    (local.set $reply (call $alter_request (call $put (i32.const 64) (i32.const 8))))
    (call $output_set (local.get $reply) (call $length (local.get $reply))) (i32.const 0))
  (func (export "bad_request_offset") (result i32)
    (local $reply i64)
    (local.set $reply (call $alter_request (i64.const 123456789)))
    (call $output_set (local.get $reply) (call $length (local.get $reply))) (i32.const 0))
`

func newModule(t *testing.T, wasm []byte, serve engine.RequestFunc, timeout time.Duration) engine.Module {
	t.Helper()
	eng, err := engine.NewExtism(engine.ExtismOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if serve == nil {
		serve = func(ctx context.Context, req []byte) []byte { return append([]byte("got:"), req...) }
	}
	m, err := eng.Compile(context.Background(), wasm, engine.Config{
		MemoryPages: 256, Timeout: timeout, MaxOutputBytes: 1 << 20, Request: serve,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()); eng.Close(context.Background()) })
	return m
}

func call(t *testing.T, m engine.Module, export, input string) (string, error) {
	t.Helper()
	inst, err := m.Instantiate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(context.Background())
	out, err := inst.Call(context.Background(), export, []byte(input))
	return string(out), err
}

func TestCalls(t *testing.T) {
	// Guests that must be stopped run with a short deadline; the others get
	// a long one, so a loaded machine cannot turn their trap into a timeout.
	wasm := wasmtest.Guest(t, guests)
	short, long := newModule(t, wasm, nil, 300*time.Millisecond), newModule(t, wasm, nil, 10*time.Second)
	for _, tc := range []struct {
		export, input string
		want          string
		failure       engine.Failure
		msg           string
	}{
		{export: "echo", input: "ping", want: "ping"},
		{export: "hello", want: "hello"},
		{export: "request", want: "got:not json"},
		{export: "bad_request_offset", want: "got:"},
		{export: "fail", failure: engine.GuestError, msg: "custom failure"},
		{export: "spin", failure: engine.Timeout, msg: "did not finish within 300ms"},
		{export: "trap", failure: engine.Trap, msg: "unreachable"},
		// A guest that says why before it traps (a Rust panic does) is heard.
		{export: "say_then_trap", failure: engine.Trap, msg: "unreachable (the guest said: custom failure)"},
		{export: "recurse", failure: engine.Trap, msg: "stack"},
		{export: "grow", failure: engine.Trap, msg: "unreachable"},
		{export: "kernel_bomb", failure: engine.Timeout, msg: ""},
		{export: "huge", failure: engine.BadOutput, msg: "at most 1048576"},
		// The kernel refuses an output range that is not inside one of its
		// blocks: the host never reads past what the guest owns.
		{export: "lying", want: ""},
		{export: "lying_offset", want: ""},
	} {
		t.Run(tc.export, func(t *testing.T) {
			m := long
			if tc.failure == engine.Timeout {
				m = short
			}
			start := time.Now()
			out, err := call(t, m, tc.export, tc.input)
			t.Logf("%s: out=%.40q err=%v (%s)", tc.export, out, err, time.Since(start))
			if tc.failure == 0 {
				if err != nil || out != tc.want {
					t.Fatalf("got %q, %v; want %q", out, err, tc.want)
				}
				return
			}
			var ce *engine.CallError
			if !errors.As(err, &ce) || ce.Failure != tc.failure {
				t.Fatalf("got %q, %v; want failure %v", out, err, tc.failure)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

const sandbox = `
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_accept" (func $sock_accept (param i32 i32 i32) (result i32)))
  (import "extism:host/env" "http_request" (func $http (param i64 i64) (result i64)))
  (import "extism:host/env" "var_set" (func $var_set (param i64 i64)))
  (data (i32.const 0) "{\"url\":\"http://127.0.0.1:1/\"}")
  (func (export "clock") (result i32)
    (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 256)))
    (call $out (i32.const 256) (i32.const 8)) (i32.const 0))
  (func (export "random") (result i32)
    (drop (call $random (i32.const 256) (i32.const 16)))
    (call $out (i32.const 256) (i32.const 16)) (i32.const 0))
  (func (export "preopens") (result i32)
    (i32.store8 (i32.const 256) (i32.add (i32.const 48) (call $prestat (i32.const 3) (i32.const 300))))
    (call $out (i32.const 256) (i32.const 1)) (i32.const 0))
  (func (export "sockets") (result i32)
    (i32.store8 (i32.const 256) (i32.add (i32.const 48) (call $sock_accept (i32.const 3) (i32.const 0) (i32.const 300))))
    (call $out (i32.const 256) (i32.const 1)) (i32.const 0))
  (func (export "http") (result i32)
    (drop (call $http (call $put (i32.const 0) (i32.const 29)) (i64.const 0))) (i32.const 0))
  (func (export "vars") (result i32)
    (call $var_set (call $put (i32.const 0) (i32.const 3)) (call $put (i32.const 0) (i32.const 3))) (i32.const 0))
`

func TestSandbox(t *testing.T) {
	m := newModule(t, wasmtest.Guest(t, sandbox), nil, 10*time.Second)

	out, err := call(t, m, "clock", "")
	if err != nil {
		t.Fatal(err)
	}
	var ns int64
	for i := 7; i >= 0; i-- {
		ns = ns<<8 | int64(out[i])
	}
	if d := time.Since(time.Unix(0, ns)); d < 0 || d > time.Minute {
		t.Errorf("guest wall clock is %s away from the host's; want the real clock", d)
	}

	a, err1 := call(t, m, "random", "")
	b, err2 := call(t, m, "random", "")
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Errorf("two instances drew the same random bytes %x", a)
	}

	// Errno 8 is EBADF: no directory is preopened, so no file can be opened.
	if out, err := call(t, m, "preopens", ""); err != nil || out != "8" {
		t.Errorf("fd_prestat_get(3) = %q, %v; want errno 8 (no preopened directories)", out, err)
	}
	// Errno 8 again: there is no listening socket to accept from.
	if out, err := call(t, m, "sockets", ""); err != nil || out != "8" {
		t.Errorf("sock_accept(3) = %q, %v; want errno 8 (no sockets)", out, err)
	}
	for _, export := range []string{"http", "vars"} {
		if _, err := call(t, m, export, ""); engine.FailureOf(err) != engine.Trap {
			t.Errorf("%s: err = %v; want the host to refuse with a trap", export, err)
		}
	}
}
