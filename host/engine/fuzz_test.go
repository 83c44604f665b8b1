package engine_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/alterhost/alterhost/host/engine"
	"github.com/alterhost/alterhost/internal/wasmtest"
)

// interpreter runs a program of kernel calls given as its input: 17-byte
// steps of an opcode and two u64 operands, a and b. An address operand a
// with its top bit set is used as is (any u64); otherwise it is a small
// signed distance from the last block the program got, so programs probe
// the edges of real blocks as well as random offsets.
const interpreter = `
  (import "extism:host/env" "input_load_u64" (func $input_load_u64 (param i64) (result i64)))
  (import "extism:host/env" "free" (func $free (param i64)))
  (import "extism:host/env" "load_u64" (func $load_u64 (param i64) (result i64)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "config_get" (func $config_get (param i64) (result i64)))
  (import "extism:host/env" "reset" (func $reset))
  (import "extism:host/env" "input_set" (func $input_set (param i64 i64)))
  (import "extism:host/env" "length_unsafe" (func $length_unsafe (param i64) (result i64)))
  (import "extism:host/env" "log_info" (func $log_info (param i64)))
  (func (export "run") (result i32)
    (local $n i64) (local $i i64) (local $pc i32) (local $op i32)
    (local $a i64) (local $b i64) (local $addr i64) (local $last i64) (local $acc i64)
    ;; Copy the program into linear memory at 4096.
    (local.set $n (call $input_length))
    (if (i64.gt_u (local.get $n) (i64.const 60000)) (then (local.set $n (i64.const 60000))))
    (block $done (loop $copy
      (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
      (i32.store8 (i32.add (i32.const 4096) (i32.wrap_i64 (local.get $i))) (call $input_load_u8 (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $copy)))
    (block $end (loop $step
      (br_if $end (i64.gt_u (i64.add (i64.extend_i32_u (local.get $pc)) (i64.const 17)) (local.get $n)))
      (local.set $op (i32.rem_u (i32.load8_u (i32.add (i32.const 4096) (local.get $pc))) (i32.const 16)))
      (local.set $a (i64.load (i32.add (i32.const 4097) (local.get $pc))))
      (local.set $b (i64.load (i32.add (i32.const 4105) (local.get $pc))))
      (local.set $pc (i32.add (local.get $pc) (i32.const 17)))
      (local.set $addr (select (local.get $a)
        (i64.sub (i64.add (local.get $last) (i64.and (local.get $a) (i64.const 0xff))) (i64.const 0x80))
        (i64.lt_s (local.get $a) (i64.const 0))))
      (block $next
        (block $b15 (block $b14 (block $b13 (block $b12 (block $b11 (block $b10 (block $b9 (block $b8
        (block $b7 (block $b6 (block $b5 (block $b4 (block $b3 (block $b2 (block $b1 (block $b0
          (br_table $b0 $b1 $b2 $b3 $b4 $b5 $b6 $b7 $b8 $b9 $b10 $b11 $b12 $b13 $b14 $b15 (local.get $op)))
          (local.set $last (call $alloc (i64.and (local.get $b) (i64.const 0x3ffff)))) (br $next))
          (call $free (local.get $addr)) (br $next))
          (local.set $acc (i64.add (local.get $acc) (i64.extend_i32_u (call $load_u8 (local.get $addr))))) (br $next))
          (local.set $acc (i64.add (local.get $acc) (call $load_u64 (local.get $addr)))) (br $next))
          (call $store_u8 (local.get $addr) (i32.wrap_i64 (local.get $b))) (br $next))
          (call $store_u64 (local.get $addr) (local.get $b)) (br $next))
          (local.set $acc (i64.add (local.get $acc) (call $length (local.get $addr)))) (br $next))
          (call $output_set (local.get $addr) (i64.and (local.get $b) (i64.const 0xfffff))) (br $next))
          (call $error_set (local.get $addr)) (br $next))
          (local.set $acc (i64.add (local.get $acc) (i64.extend_i32_u (call $input_load_u8 (local.get $b))))) (br $next))
          (local.set $acc (i64.add (local.get $acc) (call $input_load_u64 (i64.and (local.get $b) (i64.const 0xffff))))) (br $next))
          (local.set $last (call $config_get (local.get $addr))) (br $next))
          (local.set $last (call $alter_request (local.get $addr))) (br $next))
          (call $reset) (br $next))
          (call $input_set (local.get $addr) (i64.and (local.get $b) (i64.const 0xffff))) (br $next))
        (local.set $acc (i64.add (local.get $acc) (call $length_unsafe (local.get $addr))))
        (call $log_info (local.get $addr)))
      (br $step)))
    (i32.wrap_i64 (i64.and (local.get $acc) (i64.const 1))))
`

// step encodes one interpreter step.
func step(op byte, a, b uint64) []byte {
	s := make([]byte, 17)
	s[0] = op
	binary.LittleEndian.PutUint64(s[1:], a)
	binary.LittleEndian.PutUint64(s[9:], b)
	return s
}

// near is an address operand: distance d from the last block.
func near(d int) uint64 { return uint64(d + 0x80) }

func program(steps ...[]byte) []byte { return bytes.Join(steps, nil) }

const fuzzSecret = "SECRET-held-by-the-other-instance"

// FuzzKernel feeds the native kernel random sequences of kernel calls with
// random and near-miss offsets and lengths. The program runs in instance a
// while instance b holds a secret in its own kernel memory (a runs inside
// b's alter_request). It checks that the host never panics (a Go runtime
// error recovered by wazero counts as one), that every failure is a clean
// trap or guest error, that a never sees b's secret, that b's block is
// intact afterwards, and that a's kernel memory is zero after its call.
//
//	go test -run '^$' -fuzz FuzzKernel ./host/engine/
//
// Known open problem: under -fuzz, after 10^4-10^5 executions the worker
// has twice stalled in the garbage collector's mark termination (waiting
// for a P) with no goroutine in guest code; the same programs pass when
// rerun, and a 45 s loop of them without Memories' 2 MiB copies did not
// stall. It was seen with and without the interrupt instrumentation.
func FuzzKernel(f *testing.F) {
	for _, p := range [][]byte{
		nil,
		program(step(0, 0, 16), step(5, near(0), 42), step(3, near(0), 0), step(7, near(0), 16)),
		program(step(0, 0, 16), step(5, near(8), 1), step(7, near(0), 16)),
		program(step(0, 0, 16), step(2, near(16), 0)),
		program(step(0, 0, 16), step(2, near(-1), 0)),
		program(step(0, 0, 8), step(1, near(0), 0), step(4, near(0), 7)),
		program(step(0, 0, 100), step(8, near(0), 0), step(12, near(0), 0), step(7, near(0), 9)),
		program(step(0, 0, 8), step(4, near(0), 'x'), step(11, near(0), 0), step(6, near(0), 0)),
		program(step(13, 0, 0), step(0, 0, 300000), step(0, 0, 300000), step(0, 0, 300000)),
		program(step(0, 0, 64), step(1, near(0), 0), step(0, 0, 8), step(0, 0, 8), step(3, near(0), 0)),
		program(step(10, 0, 0), step(10, 0, 17), step(9, 0, 1000), step(14, near(0), 3), step(9, 0, 1)),
		program(step(2, 1<<63|kernelTop(), 0)),
		program(step(3, ^uint64(3), 0)),
		program(step(0, 0, 8), step(7, near(0), 1<<40), step(15, near(0), 0)),
		program(step(0, 0, 8), step(15, 1<<63|12345, 0), step(8, 1<<63|99, 0)),
	} {
		f.Add(p)
	}

	var a, b engine.Instance
	var aResult result
	var aKernel []byte
	request := func(ctx context.Context, req []byte) []byte {
		prog, ok := ctx.Value(replyKey{}).([]byte)
		if !ok {
			return []byte("canned reply")
		}
		// b holds the secret: run a's program now.
		out, err := a.Call(context.Background(), "run", prog)
		aResult = resultOf(out, err)
		if mems, err := a.(engine.Inspector).Memories(); err == nil {
			aKernel = mems["kernel"]
		}
		return []byte("done")
	}
	m := nativeModule(f, wasmtest.Guest(f, interpreter+holder), engine.Config{MemoryPages: 32,
		Timeout: 10 * time.Second, MaxOutputBytes: 1 << 20, Request: request,
		Settings: map[string]string{"x": "config value"}})

	f.Fuzz(func(t *testing.T, prog []byte) {
		var err error
		if a, err = m.Instantiate(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer a.Close(context.Background())
		if b, err = m.Instantiate(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer b.Close(context.Background())
		aResult, aKernel = result{}, nil

		out, err := b.Call(context.WithValue(context.Background(), replyKey{}, prog), "hold", []byte(fuzzSecret))
		if err != nil || string(out) != fuzzSecret {
			t.Fatalf("b's block changed while a ran: %q, %v", out, err)
		}
		r := aResult
		switch r.failure {
		case 0, engine.GuestError, engine.BadOutput:
		case engine.Trap:
			if strings.Contains(r.msg, "runtime error") || strings.Contains(r.msg, "recovered by wazero") {
				t.Fatalf("the host failed, not the guest: %s", r.msg)
			}
		default:
			t.Fatalf("a: unexpected %v", r)
		}
		if strings.Contains(r.out, fuzzSecret) || strings.Contains(r.msg, fuzzSecret) {
			t.Fatalf("a saw b's secret: %v", r)
		}
		if bytes.ContainsFunc(aKernel, func(r rune) bool { return r != 0 }) {
			t.Fatalf("a's kernel memory is not zero after its call")
		}
	})
}

// kernelTop is an address just past a small arena.
func kernelTop() uint64 { return 64 + 64<<10 }

// TestInterpreterSeeds checks that the fuzz guest's seed programs do what
// their names say under both engines alike where they stay in bounds.
func TestInterpreterSeeds(t *testing.T) {
	p := compileBoth(t, t.TempDir(), wasmtest.Guest(t, interpreter+holder), diffConfig(10*time.Second))
	for _, prog := range [][]byte{
		program(step(0, 0, 16), step(5, near(0), 0x6161616161616161), step(5, near(8), 0x6262626262626262), step(7, near(0), 16)),
		program(step(0, 0, 5), step(12, near(0), 0), step(7, near(0), 12)),
		program(step(0, 0, 1), step(4, near(0), 'x'), step(11, near(0), 0), step(6, near(0), 0), step(7, near(0), 9)),
		program(step(0, 0, 8), step(8, near(0), 0), step(13, 0, 0)),
	} {
		var r [2]result
		for n, m := range p {
			r[n] = callFresh(t, context.Background(), m, "run", string(prog))
		}
		if !same(r[0], r[1]) || r[0].failure != 0 {
			t.Errorf("program %x: extism %v, native %v", prog, r[0], r[1])
		}
	}
}
