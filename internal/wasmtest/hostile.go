package wasmtest

// Hostile is a guest body (for [Guest]) of well- and ill-behaved tools: it
// echoes, returns JSON, loops, traps, recurses without end, grows memory
// without end, returns too much or lies about its output's size, sends a
// malformed alter_request, sends its input as a request, and fails after a
// request. The plugin layer's tests and the engines' differential test
// both run it.
const Hostile = `
  (data (i32.const 0) "not json")
  (data (i32.const 16) "{\"ok\":true}")
  (func (export "echo") (result i32)
    (call $output_set (call $input_offset) (call $input_length)) (i32.const 0))
  (func (export "json") (result i32) (call $out (i32.const 16) (i32.const 11)) (i32.const 0))
  (func (export "spin") (result i32) (loop $l (br $l)) (i32.const 0))
  (func (export "trap") (result i32) unreachable)
  (func $recurse (export "recurse") (result i32) (call $recurse))
  (func (export "grow") (result i32)
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable)
  (func (export "huge") (result i32)
    (call $output_set (call $alloc (i64.const 2097152)) (i64.const 2097152)) (i32.const 0))
  (func (export "lying") (result i32)
    (call $output_set (call $alloc (i64.const 8)) (i64.const 1073741824)) (i32.const 0))
  (func (export "malformed_request") (result i32)
    (local $reply i64)
    (local.set $reply (call $alter_request (call $put (i32.const 0) (i32.const 8))))
    (call $output_set (local.get $reply) (call $length (local.get $reply))) (i32.const 0))
  (func (export "request") (result i32)
    (local $reply i64)
    (local.set $reply (call $alter_request (call $input_offset_copy)))
    (call $output_set (local.get $reply) (call $length (local.get $reply))) (i32.const 0))
  (func (export "request_then_fail") (result i32)
    (drop (call $alter_request (call $input_offset_copy))) (i32.const 1))
  (func $input_offset_copy (result i64)
    (local $blk i64) (local $i i64) (local $n i64)
    (local.set $n (call $input_length))
    (local.set $blk (call $alloc (local.get $n)))
    (block $done (loop $next
      (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
      (call $store_u8 (i64.add (local.get $blk) (local.get $i)) (call $input_load_u8 (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $next)))
    (local.get $blk))
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
`
