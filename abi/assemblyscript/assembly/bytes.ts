// Bytes and UTF-8. Everything that crosses into the host is UTF-8 bytes,
// while AssemblyScript strings are UTF-16, so conversions live here, with
// the same rules as Go's unicode/utf8: an invalid byte decodes to U+FFFD
// on its own, and an unpaired surrogate encodes as U+FFFD.

/** Buf is a growable byte buffer for building output and messages. */
export class Buf {
  private data: Uint8Array;
  length: i32 = 0;

  constructor(capacity: i32 = 64) {
    this.data = new Uint8Array(capacity < 16 ? 16 : capacity);
  }

  private grow(extra: i32): void {
    const need = this.length + extra;
    if (need <= this.data.length) return;
    let cap = this.data.length << 1;
    if (cap < need) cap = need;
    const next = new Uint8Array(cap);
    memory.copy(next.dataStart, this.data.dataStart, <usize>this.length);
    this.data = next;
  }

  /** byte appends one byte. */
  byte(b: u32): void {
    this.grow(1);
    store<u8>(this.data.dataStart + <usize>this.length, <u8>b);
    this.length++;
  }

  /** raw appends n bytes starting at the address p. */
  raw(p: usize, n: i32): void {
    if (n <= 0) return;
    this.grow(n);
    memory.copy(this.data.dataStart + <usize>this.length, p, <usize>n);
    this.length += n;
  }

  /** bytes appends b[start:end] (all of b by default). */
  bytes(b: Uint8Array, start: i32 = 0, end: i32 = -1): void {
    if (end < 0) end = b.length;
    this.raw(b.dataStart + <usize>start, end - start);
  }

  /** string appends s as UTF-8. */
  string(s: string): void {
    const n = String.UTF8.byteLength(s);
    this.grow(n);
    String.UTF8.encodeUnsafe(changetype<usize>(s), s.length,
      this.data.dataStart + <usize>this.length, false, String.UTF8.ErrorMode.REPLACE);
    this.length += n;
  }

  /** toBytes returns a copy of the bytes appended so far. */
  toBytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    memory.copy(out.dataStart, this.data.dataStart, <usize>this.length);
    return out;
  }

  /** toString decodes the bytes appended so far as UTF-8. */
  toString(): string {
    return decodeUTF8(this.data, 0, this.length);
  }
}

/** encodeUTF8 returns s as UTF-8; unpaired surrogates become U+FFFD. */
export function encodeUTF8(s: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(s, false, String.UTF8.ErrorMode.REPLACE));
}

/**
 * decodeRune decodes the UTF-8 sequence at b[i:end] like Go's
 * utf8.DecodeRune: it returns (rune << 3) | width, with rune 0xFFFD and
 * width 1 for an invalid or truncated sequence.
 */
export function decodeRune(p: usize, i: i32, end: i32): u32 {
  const c0 = <u32>load<u8>(p + <usize>i);
  if (c0 < 0x80) return (c0 << 3) | 1;
  const bad: u32 = (0xFFFD << 3) | 1;
  const left = end - i;
  if (c0 < 0xC2 || c0 > 0xF4 || left < 2) return bad;
  const c1 = <u32>load<u8>(p + <usize>i + 1);
  // The second byte's range depends on the first, which rules out
  // overlong forms, surrogates and code points past U+10FFFF.
  let lo: u32 = 0x80, hi: u32 = 0xBF;
  if (c0 == 0xE0) lo = 0xA0;
  else if (c0 == 0xED) hi = 0x9F;
  else if (c0 == 0xF0) lo = 0x90;
  else if (c0 == 0xF4) hi = 0x8F;
  if (c1 < lo || c1 > hi) return bad;
  if (c0 < 0xE0) return ((((c0 & 0x1F) << 6) | (c1 & 0x3F)) << 3) | 2;
  if (left < 3) return bad;
  const c2 = <u32>load<u8>(p + <usize>i + 2);
  if ((c2 & 0xC0) != 0x80) return bad;
  if (c0 < 0xF0) return ((((c0 & 0x0F) << 12) | ((c1 & 0x3F) << 6) | (c2 & 0x3F)) << 3) | 3;
  if (left < 4) return bad;
  const c3 = <u32>load<u8>(p + <usize>i + 3);
  if ((c3 & 0xC0) != 0x80) return bad;
  return ((((c0 & 0x07) << 18) | ((c1 & 0x3F) << 12) | ((c2 & 0x3F) << 6) | (c3 & 0x3F)) << 3) | 4;
}

/** validUTF8 reports whether b[start:end] is valid UTF-8. */
export function validUTF8(b: Uint8Array, start: i32 = 0, end: i32 = -1): bool {
  if (end < 0) end = b.length;
  const p = b.dataStart;
  let i = start;
  while (i < end) {
    // Skip ASCII 8 bytes at a time: it is most of what flows through.
    if (i + 8 <= end && (load<u64>(p + <usize>i) & 0x8080808080808080) == 0) {
      i += 8;
      continue;
    }
    const r = decodeRune(p, i, end);
    if ((r & 7) == 1 && (r >> 3) == 0xFFFD) return false;
    i += <i32>(r & 7);
  }
  return true;
}

/** U16 collects UTF-16 code units and turns them into a string. */
export class U16 {
  private data: Uint16Array = new Uint16Array(32);
  length: i32 = 0;

  reset(): void {
    this.length = 0;
  }

  unit(c: u32): void {
    if (this.length == this.data.length) {
      const next = new Uint16Array(this.data.length << 1);
      memory.copy(next.dataStart, this.data.dataStart, <usize>this.length << 1);
      this.data = next;
    }
    store<u16>(this.data.dataStart + (<usize>this.length << 1), <u16>c);
    this.length++;
  }

  /** rune appends the code point r, as a surrogate pair above U+FFFF. */
  rune(r: u32): void {
    if (r < 0x10000) {
      this.unit(r);
    } else {
      r -= 0x10000;
      this.unit(0xD800 | (r >> 10));
      this.unit(0xDC00 | (r & 0x3FF));
    }
  }

  toString(): string {
    return String.UTF16.decodeUnsafe(this.data.dataStart, <usize>this.length << 1);
  }
}

/** decodeUTF8 decodes b[start:end]; each invalid byte becomes U+FFFD. */
export function decodeUTF8(b: Uint8Array, start: i32 = 0, end: i32 = -1): string {
  if (end < 0) end = b.length;
  const p = b.dataStart;
  const u = new U16();
  let i = start;
  while (i < end) {
    const c = <u32>load<u8>(p + <usize>i);
    if (c < 0x80) {
      u.unit(c);
      i++;
      continue;
    }
    const r = decodeRune(p, i, end);
    u.rune(r >> 3);
    i += <i32>(r & 7);
  }
  return u.toString();
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** base64Encode encodes b with the standard alphabet and padding. */
export function base64Encode(b: Uint8Array): string {
  const n = b.length;
  const out = new Buf(((n + 2) / 3) * 4);
  const p = b.dataStart;
  let i = 0;
  for (; i + 3 <= n; i += 3) {
    const v = (<u32>load<u8>(p + <usize>i) << 16) | (<u32>load<u8>(p + <usize>i + 1) << 8) | <u32>load<u8>(p + <usize>i + 2);
    out.byte(B64.charCodeAt(v >> 18));
    out.byte(B64.charCodeAt((v >> 12) & 63));
    out.byte(B64.charCodeAt((v >> 6) & 63));
    out.byte(B64.charCodeAt(v & 63));
  }
  const rest = n - i;
  if (rest > 0) {
    let v = <u32>load<u8>(p + <usize>i) << 16;
    if (rest == 2) v |= <u32>load<u8>(p + <usize>i + 1) << 8;
    out.byte(B64.charCodeAt(v >> 18));
    out.byte(B64.charCodeAt((v >> 12) & 63));
    out.byte(rest == 2 ? B64.charCodeAt((v >> 6) & 63) : 0x3D);
    out.byte(0x3D);
  }
  return out.toString();
}

function b64Value(c: u32): i32 {
  if (c >= 0x41 && c <= 0x5A) return <i32>c - 0x41;
  if (c >= 0x61 && c <= 0x7A) return <i32>c - 0x61 + 26;
  if (c >= 0x30 && c <= 0x39) return <i32>c - 0x30 + 52;
  if (c == 0x2B) return 62;
  if (c == 0x2F) return 63;
  return -1;
}

/** Base64Result is decoded bytes, or where the input stopped being base64. */
export class Base64Result {
  constructor(public bytes: Uint8Array, public badOffset: i32) {}
  get ok(): bool { return this.badOffset < 0; }
}

/**
 * base64DecodeBytes decodes standard, padded base64 exactly as Go's
 * base64.StdEncoding does: line breaks are skipped, the bits a final group
 * leaves unused are ignored, and an error names the same input byte as
 * Go's "illegal base64 data at input byte N".
 */
export function base64DecodeBytes(src: Uint8Array): Base64Result {
  const n = src.length;
  const p = src.dataStart;
  const out = new Buf((n / 4) * 3 + 3);
  let si = 0;
  while (si < n) {
    // One quantum: four symbols, or fewer before padding.
    let d0: u32 = 0, d1: u32 = 0, d2: u32 = 0, d3: u32 = 0;
    let dlen = 4, j = 0, trailing = -1;
    while (j < 4) {
      if (si == n) {
        if (j == 0) return new Base64Result(out.toBytes(), -1);
        return new Base64Result(new Uint8Array(0), si - j);
      }
      const c = <u32>load<u8>(p + <usize>si);
      si++;
      const v = b64Value(c);
      if (v >= 0) {
        if (j == 0) d0 = <u32>v;
        else if (j == 1) d1 = <u32>v;
        else if (j == 2) d2 = <u32>v;
        else d3 = <u32>v;
        j++;
        continue;
      }
      if (c == 0x0A || c == 0x0D) continue;
      if (c != 0x3D || j < 2) return new Base64Result(new Uint8Array(0), si - 1);
      if (j == 2) {
        // "==" is needed; the first "=" is read.
        while (si < n && (load<u8>(p + <usize>si) == 0x0A || load<u8>(p + <usize>si) == 0x0D)) si++;
        if (si == n) return new Base64Result(new Uint8Array(0), n);
        if (load<u8>(p + <usize>si) != 0x3D) return new Base64Result(new Uint8Array(0), si - 1);
        si++;
      }
      while (si < n && (load<u8>(p + <usize>si) == 0x0A || load<u8>(p + <usize>si) == 0x0D)) si++;
      if (si < n) trailing = si;
      dlen = j;
      break;
    }
    const val = (d0 << 18) | (d1 << 12) | (d2 << 6) | d3;
    out.byte(val >> 16);
    if (dlen >= 3) out.byte((val >> 8) & 0xFF);
    if (dlen == 4) out.byte(val & 0xFF);
    if (trailing >= 0) return new Base64Result(new Uint8Array(0), trailing);
  }
  return new Base64Result(out.toBytes(), -1);
}

/** base64Decode decodes s as base64DecodeBytes does, or returns null. */
export function base64Decode(s: string): Uint8Array | null {
  const r = base64DecodeBytes(encodeUTF8(s));
  return r.ok ? r.bytes : null;
}
