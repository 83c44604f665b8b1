// The Extism kernel keeps the input, the output, errors, log lines, config
// values and alter_request messages in its own memory, apart from ours;
// offsets below point there. Blocks are copied 8 bytes per host call and the
// tail byte by byte, because every call crosses into the host.

@external("extism:host/env", "input_length")
declare function kInputLength(): u64;
@external("extism:host/env", "input_load_u8")
declare function kInputLoadU8(offset: u64): u32;
@external("extism:host/env", "input_load_u64")
declare function kInputLoadU64(offset: u64): u64;
@external("extism:host/env", "alloc")
declare function kAlloc(n: u64): u64;
@external("extism:host/env", "free")
export declare function kFree(offset: u64): void;
@external("extism:host/env", "length")
declare function kLength(offset: u64): u64;
@external("extism:host/env", "load_u8")
declare function kLoadU8(offset: u64): u32;
@external("extism:host/env", "load_u64")
declare function kLoadU64(offset: u64): u64;
@external("extism:host/env", "store_u8")
declare function kStoreU8(offset: u64, v: u32): void;
@external("extism:host/env", "store_u64")
declare function kStoreU64(offset: u64, v: u64): void;
@external("extism:host/env", "output_set")
export declare function kOutputSet(offset: u64, n: u64): void;
@external("extism:host/env", "error_set")
export declare function kErrorSet(offset: u64): void;
@external("extism:host/env", "config_get")
export declare function kConfigGet(key: u64): u64;
@external("extism:host/env", "log_debug")
export declare function kLogDebug(offset: u64): void;
@external("extism:host/env", "log_info")
export declare function kLogInfo(offset: u64): void;
@external("extism:host/env", "log_warn")
export declare function kLogWarn(offset: u64): void;
@external("extism:host/env", "log_error")
export declare function kLogError(offset: u64): void;

// alter_request takes a block holding the request JSON, which the host
// frees, and returns a new block holding the reply JSON, which we free.
@external("extism:host/user", "alter_request")
export declare function kAlterRequest(request: u64): u64;

/** readInput copies the call's input into a new array. */
export function readInput(): Uint8Array {
  const n = <i32>kInputLength();
  const out = new Uint8Array(n);
  const p = out.dataStart;
  let i = 0;
  for (; i + 8 <= n; i += 8) store<u64>(p + <usize>i, kInputLoadU64(<u64>i));
  for (; i < n; i++) store<u8>(p + <usize>i, <u8>kInputLoadU8(<u64>i));
  return out;
}

/** readBlock copies the kernel block at off; offset 0 is "no block". */
export function readBlock(off: u64): Uint8Array {
  if (off == 0) return new Uint8Array(0);
  const n = <i32>kLength(off);
  const out = new Uint8Array(n);
  const p = out.dataStart;
  let i = 0;
  for (; i + 8 <= n; i += 8) store<u64>(p + <usize>i, kLoadU64(off + <u64>i));
  for (; i < n; i++) store<u8>(p + <usize>i, <u8>kLoadU8(off + <u64>i));
  return out;
}

/**
 * writeBlock copies b into a new kernel block and returns its offset, or 0
 * for an empty b: the kernel has no empty blocks.
 */
export function writeBlock(b: Uint8Array): u64 {
  const n = b.length;
  if (n == 0) return 0;
  const off = kAlloc(<u64>n);
  if (off == 0) return 0; // the kernel is out of memory; callers see "no block"
  const p = b.dataStart;
  let i = 0;
  for (; i + 8 <= n; i += 8) kStoreU64(off + <u64>i, load<u64>(p + <usize>i));
  for (; i < n; i++) kStoreU8(off + <u64>i, <u32>load<u8>(p + <usize>i));
  return off;
}
