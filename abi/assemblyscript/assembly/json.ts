// A small JSON reader and writer: AssemblyScript has none built in, and
// tools, the alter_request wire format and tool output all speak JSON.
//
// It follows Go's encoding/json where the two could disagree, so a plugin
// written with it answers byte for byte what the Go binding would:
// - strings are written as json.Marshal writes them: <, > and & as
//   \u003c, \u003e, \u0026, U+2028 and U+2029 escaped, \b \f \n \r \t
//   short, other control characters as \u00XX, everything else as UTF-8;
// - invalid UTF-8 and unpaired surrogates read and write as U+FFFD;
// - compact() validates and strips whitespace exactly like json.Compact.
// Reading and writing use explicit stacks rather than recursion, so deeply
// nested input is an error (past 10000 levels, Go's limit), never a trap.

import { Buf, U16, decodeRune, encodeUTF8 } from "./bytes";

/** The kind of a JSON value. */
export enum Kind {
  Null = 0,
  Bool = 1,
  Number = 2,
  String = 3,
  Array = 4,
  Object = 5,
}

/**
 * Value is one JSON value. Objects keep their members in order, duplicates
 * included; get() finds the last member with a name, as decoders do.
 * Numbers keep the text they were read from, so they are written back
 * unchanged, however many digits they have.
 */
export class Value {
  readonly kind: Kind;
  private flag: bool = false;
  private num: f64 = 0;
  // The string's value, or the number as written.
  private text: string = "";
  // Array items, or object member values.
  private items: Value[] | null = null;
  // Object member names, parallel to items.
  private names: string[] | null = null;

  constructor(kind: Kind) {
    this.kind = kind;
    if (kind == Kind.Array || kind == Kind.Object) this.items = [];
    if (kind == Kind.Object) this.names = [];
  }

  static newNull(): Value {
    return new Value(Kind.Null);
  }

  static newBool(b: bool): Value {
    const v = new Value(Kind.Bool);
    v.flag = b;
    return v;
  }

  /** newNumber makes a number; NaN and infinities are written as null. */
  static newNumber(n: f64): Value {
    const v = new Value(Kind.Number);
    v.num = n;
    v.text = formatNumber(n);
    return v;
  }

  static newInteger(n: i64): Value {
    const v = new Value(Kind.Number);
    v.num = <f64>n;
    v.text = n.toString();
    return v;
  }

  static newString(s: string): Value {
    const v = new Value(Kind.String);
    v.text = s;
    return v;
  }

  static newArray(): Value {
    return new Value(Kind.Array);
  }

  static newObject(): Value {
    return new Value(Kind.Object);
  }

  /** numberFromText makes a number from JSON number text that is valid. */
  static numberFromText(text: string): Value {
    const v = new Value(Kind.Number);
    v.num = parseFloat(text);
    v.text = text;
    return v;
  }

  isNull(): bool { return this.kind == Kind.Null; }
  isBool(): bool { return this.kind == Kind.Bool; }
  isNumber(): bool { return this.kind == Kind.Number; }
  isString(): bool { return this.kind == Kind.String; }
  isArray(): bool { return this.kind == Kind.Array; }
  isObject(): bool { return this.kind == Kind.Object; }

  /** asBool returns a bool's value, else false. */
  asBool(): bool { return this.kind == Kind.Bool && this.flag; }

  /** asNumber returns a number's value, else 0. */
  asNumber(): f64 { return this.kind == Kind.Number ? this.num : 0; }

  /** asInteger returns a number's value truncated toward zero, else 0. */
  asInteger(): i64 {
    if (this.kind != Kind.Number || !isFinite(this.num)) return 0;
    return <i64>this.num;
  }

  /** isInteger reports whether this is a number without a fraction. */
  isInteger(): bool {
    return this.kind == Kind.Number && isFinite(this.num) && Math.floor(this.num) == this.num;
  }

  /** asString returns a string's value, else "". */
  asString(): string { return this.kind == Kind.String ? this.text : ""; }

  /** numberText returns a number as it was written, else "". */
  numberText(): string { return this.kind == Kind.Number ? this.text : ""; }

  /** length is the number of array items or object members. */
  get length(): i32 {
    const items = this.items;
    return items ? items.length : 0;
  }

  /** at returns array item i, or the value of object member i. */
  at(i: i32): Value {
    return this.items![i];
  }

  /** keyAt returns the name of object member i. */
  keyAt(i: i32): string {
    return this.names![i];
  }

  /** get returns the value of the last member named key, or null. */
  get(key: string): Value | null {
    const names = this.names;
    if (!names) return null;
    for (let i = names.length - 1; i >= 0; i--) {
      if (names[i] == key) return this.items![i];
    }
    return null;
  }

  has(key: string): bool {
    return this.get(key) != null;
  }

  /** getString returns member key if it is a string, else dflt. */
  getString(key: string, dflt: string = ""): string {
    const v = this.get(key);
    return v && v.kind == Kind.String ? v.text : dflt;
  }

  /** getNumber returns member key if it is a number, else dflt. */
  getNumber(key: string, dflt: f64 = 0): f64 {
    const v = this.get(key);
    return v && v.kind == Kind.Number ? v.num : dflt;
  }

  /** getInteger returns member key truncated if it is a number, else dflt. */
  getInteger(key: string, dflt: i64 = 0): i64 {
    const v = this.get(key);
    return v && v.kind == Kind.Number ? v.asInteger() : dflt;
  }

  /** getBool returns member key if it is a bool, else dflt. */
  getBool(key: string, dflt: bool = false): bool {
    const v = this.get(key);
    return v && v.kind == Kind.Bool ? v.flag : dflt;
  }

  /**
   * set makes member key of an object v, replacing the last member of that
   * name or adding one at the end, and returns the object.
   */
  set(key: string, v: Value): Value {
    const names = this.names;
    if (!names) return this;
    for (let i = names.length - 1; i >= 0; i--) {
      if (names[i] == key) {
        this.items![i] = v;
        return this;
      }
    }
    names.push(key);
    this.items!.push(v);
    return this;
  }

  setString(key: string, s: string): Value { return this.set(key, Value.newString(s)); }
  setNumber(key: string, n: f64): Value { return this.set(key, Value.newNumber(n)); }
  setInteger(key: string, n: i64): Value { return this.set(key, Value.newInteger(n)); }
  setBool(key: string, b: bool): Value { return this.set(key, Value.newBool(b)); }

  /** push appends v to an array and returns the array. */
  push(v: Value): Value {
    if (this.kind == Kind.Array) this.items!.push(v);
    return this;
  }

  /** appendMember adds a member without replacing one of the same name. */
  appendMember(key: string, v: Value): void {
    this.names!.push(key);
    this.items!.push(v);
  }

  /**
   * sortKeys sorts the members of this object and of every object in it by
   * name (in UTF-8 byte order), keeping the last of repeated names, and
   * returns this: how Go's encoding/json writes a value it decoded into a
   * map.
   */
  sortKeys(): Value {
    const todo: Value[] = [this];
    while (todo.length > 0) {
      const v = todo.pop();
      const items = v.items;
      if (!items) continue;
      const names = v.names;
      if (names) {
        const last = new Map<string, Value>();
        for (let i = 0; i < names.length; i++) last.set(names[i], items[i]);
        const keys = last.keys();
        keys.sort(compareCodePoints);
        const values = new Array<Value>(keys.length);
        for (let i = 0; i < keys.length; i++) values[i] = last.get(keys[i]);
        v.names = keys;
        v.items = values;
      }
      const kids = v.items!;
      for (let i = 0; i < kids.length; i++) todo.push(kids[i]);
    }
    return this;
  }

  /** encode returns the value as compact JSON in UTF-8. */
  encode(): Uint8Array {
    const out = new Buf(64);
    encodeValue(this, out);
    return out.toBytes();
  }

  /** toString returns the value as compact JSON. */
  toString(): string {
    const out = new Buf(64);
    encodeValue(this, out);
    return out.toString();
  }
}

/** ParseResult is a parsed value, or why the input is not JSON. */
export class ParseResult {
  constructor(public value: Value | null, public error: string) {}
  get ok(): bool { return this.value != null; }
}

/** CompactResult is compacted JSON, or why the input is not JSON. */
export class CompactResult {
  constructor(public bytes: Uint8Array, public error: string) {}
  get ok(): bool { return this.error.length == 0; }
}

/** parse reads one JSON value from UTF-8 bytes. */
export function parse(src: Uint8Array): ParseResult {
  const s = new Scanner(src, true, null);
  const v = s.run();
  if (s.err.length > 0 || !v) return new ParseResult(null, s.err);
  return new ParseResult(v, "");
}

/** FirstResult is the first value of a stream and where it ended. */
export class FirstResult {
  constructor(public value: Value | null, public error: string, public end: i32) {}
  get ok(): bool { return this.value != null; }
}

/**
 * parseFirst reads the first JSON value of src and stops after it, as Go's
 * json.Decoder.Decode does: what follows is left alone, and the errors are
 * the decoder's ("EOF" for no value, "unexpected EOF" for a cut-off one).
 */
export function parseFirst(src: Uint8Array, start: i32 = 0): FirstResult {
  const rest = start > 0 ? src.subarray(start) : src;
  const s = new Scanner(rest, true, null);
  s.stream = true;
  const v = s.run();
  if (s.err.length > 0 || !v) return new FirstResult(null, s.err, start + s.offset);
  return new FirstResult(v, "", start + s.offset);
}

/** parseString reads one JSON value from a string. */
export function parseString(src: string): ParseResult {
  return parse(encodeUTF8(src));
}

/**
 * compact returns src without insignificant whitespace, byte for byte what
 * Go's json.Compact writes, or an error if src is not one JSON value.
 */
export function compact(src: Uint8Array): CompactResult {
  const out = new Buf(src.length);
  const s = new Scanner(src, false, out);
  s.run();
  if (s.err.length > 0) return new CompactResult(new Uint8Array(0), s.err);
  return new CompactResult(out.toBytes(), "");
}

/** stringify returns v as compact JSON text. */
export function stringify(v: Value): string {
  return v.toString();
}

const MAX_DEPTH = 10000;

// codePointAt reads the code point at i, an unpaired surrogate as U+FFFD
// (as it is written); its width in units is (result >> 21) + 1.
function codePointAt(s: string, i: i32): u32 {
  const c = <u32>s.charCodeAt(i);
  if (c < 0xD800 || c >= 0xE000) return c;
  if (c < 0xDC00 && i + 1 < s.length) {
    const d = <u32>s.charCodeAt(i + 1);
    if (d >= 0xDC00 && d < 0xE000) return (0x10000 + ((c - 0xD800) << 10) + (d - 0xDC00)) | (1 << 21);
  }
  return 0xFFFD;
}

/** compareCodePoints orders strings as their UTF-8 bytes order. */
export function compareCodePoints(a: string, b: string): i32 {
  let i = 0, j = 0;
  while (i < a.length && j < b.length) {
    const x = codePointAt(a, i), y = codePointAt(b, j);
    const cx = x & 0x1FFFFF, cy = y & 0x1FFFFF;
    if (cx != cy) return cx < cy ? -1 : 1;
    i += <i32>(x >> 21) + 1;
    j += <i32>(y >> 21) + 1;
  }
  if (i < a.length) return 1;
  if (j < b.length) return -1;
  return 0;
}

function isSpace(c: i32): bool {
  return c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D;
}

function isDigit(c: i32): bool {
  return c >= 0x30 && c <= 0x39;
}

function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/**
 * Scanner reads one JSON value. With build it makes Values; with out it
 * copies every token (and nothing else) to out, which is compaction.
 */
class Scanner {
  private p: usize;
  private end: i32;
  private i: i32 = 0;
  err: string = "";
  private u: U16 = new U16();
  private build: bool;
  private out: Buf | null;
  // stream reads one value and stops after it, as Go's json.Decoder does.
  stream: bool = false;
  // One entry per open container: 0 for an array, 1 for an object.
  private kinds: u8[] = [];
  private containers: Value[] = [];
  private keys: string[] = [];

  constructor(src: Uint8Array, build: bool, out: Buf | null) {
    this.p = src.dataStart;
    this.end = src.length;
    this.build = build;
    this.out = out;
  }

  private peek(): i32 {
    return this.i < this.end ? <i32>load<u8>(this.p + <usize>this.i) : -1;
  }

  private skipSpace(): void {
    while (this.i < this.end && isSpace(<i32>load<u8>(this.p + <usize>this.i))) this.i++;
  }

  private emit(start: i32): void {
    const out = this.out;
    if (out) out.raw(this.p + <usize>start, this.i - start);
  }

  // fail records the first error in Go's words, so a plugin reports what
  // a Go plugin would for the same input. Go ends the input with a space:
  // inside a number, a literal or an escape, that space is the culprit.
  private fail(context: string, inToken: bool = false): void {
    if (this.err.length > 0) return;
    if (this.i >= this.end) {
      if (this.stream) this.err = "unexpected EOF";
      else this.err = inToken ? "invalid character ' ' " + context : "unexpected end of JSON input";
      return;
    }
    this.err = "invalid character " + quoteChar(this.peek()) + " " + context;
  }

  /** end is where reading stopped: after the value, in stream mode. */
  get offset(): i32 {
    return this.i;
  }

  run(): Value | null {
    let result: Value | null = null;
    if (this.stream) {
      this.skipSpace();
      if (this.i >= this.end) {
        this.err = "EOF";
        return null;
      }
    }
    // AssemblyScript has no labelled loops: done ends the outer one.
    let done = false;
    while (!done) {
      // Here a value must begin.
      this.skipSpace();
      const c = this.peek();
      let v: Value | null = null;
      if (c == 0x7B || c == 0x5B) {
        if (this.kinds.length >= MAX_DEPTH) {
          this.fail("exceeded max depth");
          return null;
        }
        const isObject = c == 0x7B;
        this.i++;
        this.emit(this.i - 1);
        this.kinds.push(isObject ? 1 : 0);
        if (this.build) {
          this.containers.push(isObject ? Value.newObject() : Value.newArray());
          this.keys.push("");
        }
        this.skipSpace();
        if (this.peek() == (isObject ? 0x7D : 0x5D)) {
          this.i++;
          this.emit(this.i - 1);
          v = this.pop();
        } else if (isObject) {
          if (!this.key()) return null;
          continue;
        } else {
          continue;
        }
      } else if (c == 0x22) {
        const s = this.string();
        if (this.err.length > 0) return null;
        if (this.build) v = Value.newString(s);
      } else if (c == 0x2D || isDigit(c)) {
        const start = this.i;
        if (!this.number()) return null;
        this.emit(start);
        if (this.build) v = Value.numberFromText(String.UTF8.decodeUnsafe(this.p + <usize>start, <usize>(this.i - start)));
      } else if (c == 0x74) {
        if (!this.literal("true")) return null;
        if (this.build) v = Value.newBool(true);
      } else if (c == 0x66) {
        if (!this.literal("false")) return null;
        if (this.build) v = Value.newBool(false);
      } else if (c == 0x6E) {
        if (!this.literal("null")) return null;
        if (this.build) v = Value.newNull();
      } else {
        this.fail("looking for beginning of value");
        return null;
      }
      // A value is complete: add it to its container, then read what
      // follows it, closing containers as they end.
      while (true) {
        const depth = this.kinds.length;
        if (depth == 0) {
          result = v;
          done = true;
          break;
        }
        const isObject = this.kinds[depth - 1] == 1;
        if (this.build) {
          const top = this.containers[depth - 1];
          if (isObject) top.appendMember(this.keys[depth - 1], v!);
          else top.push(v!);
        }
        this.skipSpace();
        const d = this.peek();
        if (d == 0x2C) {
          this.i++;
          this.emit(this.i - 1);
          if (isObject && !this.key()) return null;
          break; // to the next value
        }
        if (d == (isObject ? 0x7D : 0x5D)) {
          this.i++;
          this.emit(this.i - 1);
          v = this.pop();
          continue;
        }
        this.fail(isObject ? "after object key:value pair" : "after array element");
        return null;
      }
    }
    if (this.stream) return result;
    this.skipSpace();
    if (this.i < this.end) {
      this.fail("after top-level value");
      return null;
    }
    return result;
  }

  private pop(): Value | null {
    this.kinds.pop();
    if (!this.build) return null;
    this.keys.pop();
    return this.containers.pop();
  }

  // key reads an object member's name and its colon.
  private key(): bool {
    this.skipSpace();
    if (this.peek() != 0x22) {
      this.fail("looking for beginning of object key string");
      return false;
    }
    const k = this.string();
    if (this.err.length > 0) return false;
    this.skipSpace();
    if (this.peek() != 0x3A) {
      this.fail("after object key");
      return false;
    }
    this.i++;
    this.emit(this.i - 1);
    if (this.build) this.keys[this.keys.length - 1] = k;
    return true;
  }

  // string reads a string literal, decoding it when building.
  private string(): string {
    const start = this.i;
    this.i++; // the opening quote
    const u = this.u;
    u.reset();
    const p = this.p;
    while (true) {
      if (this.i >= this.end) {
        this.fail("");
        return "";
      }
      const c = <u32>load<u8>(p + <usize>this.i);
      if (c == 0x22) {
        this.i++;
        break;
      }
      if (c < 0x20) {
        this.fail("in string literal");
        return "";
      }
      if (c == 0x5C) {
        this.i++;
        const e = this.peek();
        let r: u32 = 0;
        if (e == 0x22 || e == 0x5C || e == 0x2F) r = <u32>e;
        else if (e == 0x62) r = 0x08;
        else if (e == 0x66) r = 0x0C;
        else if (e == 0x6E) r = 0x0A;
        else if (e == 0x72) r = 0x0D;
        else if (e == 0x74) r = 0x09;
        else if (e == 0x75) {
          const h = this.hex4(this.i + 1);
          if (h < 0) return "";
          this.i += 4;
          r = <u32>h;
          if (r >= 0xD800 && r < 0xE000) {
            // Only a high surrogate followed by an escaped low one makes
            // a pair; anything else is U+FFFD and the next escape is read
            // on its own, as Go does.
            r = 0xFFFD;
            if (h < 0xDC00 && this.i + 6 < this.end &&
                load<u8>(p + <usize>this.i + 1) == 0x5C && load<u8>(p + <usize>this.i + 2) == 0x75) {
              const h2 = this.hexPeek(this.i + 3);
              if (h2 >= 0xDC00 && h2 < 0xE000) {
                r = 0x10000 + (((<u32>h - 0xD800) << 10) | (<u32>h2 - 0xDC00));
                this.i += 6;
              }
            }
          }
        } else {
          this.fail("in string escape code", true);
          return "";
        }
        this.i++;
        if (this.build) u.rune(r);
        continue;
      }
      if (c < 0x80) {
        if (this.build) u.unit(c);
        this.i++;
        continue;
      }
      // Any byte above 0x7F is allowed in a string, as Go's scanner
      // allows it; invalid UTF-8 decodes to U+FFFD byte by byte.
      const r = decodeRune(p, this.i, this.end);
      if (this.build) u.rune(r >> 3);
      this.i += <i32>(r & 7);
    }
    this.emit(start);
    return this.build ? u.toString() : "";
  }

  // hex4 reads the four hex digits at j, failing if they are not.
  private hex4(j: i32): i32 {
    let v = 0;
    for (let k = 0; k < 4; k++) {
      if (j + k >= this.end) {
        this.i = this.end;
        this.fail("in \\u hexadecimal character escape", true);
        return -1;
      }
      const d = hexValue(<i32>load<u8>(this.p + <usize>(j + k)));
      if (d < 0) {
        this.i = j + k;
        this.fail("in \\u hexadecimal character escape");
        return -1;
      }
      v = (v << 4) | d;
    }
    return v;
  }

  // hexPeek reads four hex digits at j without failing: -1 if they are not.
  private hexPeek(j: i32): i32 {
    if (j + 4 > this.end) return -1;
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const d = hexValue(<i32>load<u8>(this.p + <usize>(j + k)));
      if (d < 0) return -1;
      v = (v << 4) | d;
    }
    return v;
  }

  // number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  private number(): bool {
    if (this.peek() == 0x2D) this.i++;
    let c = this.peek();
    if (c == 0x30) {
      this.i++;
    } else if (c >= 0x31 && c <= 0x39) {
      while (isDigit(this.peek())) this.i++;
    } else {
      this.fail("in numeric literal", true);
      return false;
    }
    if (this.peek() == 0x2E) {
      this.i++;
      if (!isDigit(this.peek())) {
        this.fail("after decimal point in numeric literal", true);
        return false;
      }
      while (isDigit(this.peek())) this.i++;
    }
    c = this.peek();
    if (c == 0x65 || c == 0x45) {
      this.i++;
      c = this.peek();
      if (c == 0x2B || c == 0x2D) this.i++;
      if (!isDigit(this.peek())) {
        this.fail("in exponent of numeric literal", true);
        return false;
      }
      while (isDigit(this.peek())) this.i++;
    }
    return true;
  }

  private literal(word: string): bool {
    const start = this.i;
    for (let k = 0; k < word.length; k++) {
      if (this.peek() != word.charCodeAt(k)) {
        this.fail("in literal " + word + " (expecting '" + word.charAt(k) + "')", true);
        return false;
      }
      this.i++;
    }
    this.emit(start);
    return true;
  }
}

const HEX = "0123456789abcdef";

/**
 * quoteChar names byte c as Go's JSON scanner does in its errors: the byte
 * read as a Latin-1 character, quoted like strconv.Quote but in single
 * quotes.
 */
function quoteChar(c: i32): string {
  if (c == 0x27) return "'\\''";
  if (c == 0x22) return "'\"'";
  if (c == 0x5C) return "'\\\\'";
  if (c == 0x07) return "'\\a'";
  if (c == 0x08) return "'\\b'";
  if (c == 0x0C) return "'\\f'";
  if (c == 0x0A) return "'\\n'";
  if (c == 0x0D) return "'\\r'";
  if (c == 0x09) return "'\\t'";
  if (c == 0x0B) return "'\\v'";
  if (c < 0x20 || c == 0x7F) return "'\\x" + HEX.charAt(c >> 4) + HEX.charAt(c & 0xF) + "'";
  // U+0080..U+009F, U+00A0 and U+00AD are not printable.
  if ((c >= 0x80 && c <= 0xA0) || c == 0xAD) return "'\\u00" + HEX.charAt(c >> 4) + HEX.charAt(c & 0xF) + "'";
  return "'" + String.fromCharCode(c) + "'";
}

/**
 * writeStringBytes writes b[start:end], UTF-8 text, as a JSON string
 * literal the way Go's json.Marshal does.
 */
export function writeStringBytes(out: Buf, b: Uint8Array, start: i32 = 0, end: i32 = -1): void {
  if (end < 0) end = b.length;
  const p = b.dataStart;
  out.byte(0x22);
  let from = start;
  let i = start;
  while (i < end) {
    const c = <u32>load<u8>(p + <usize>i);
    if (c < 0x80) {
      if (c >= 0x20 && c != 0x22 && c != 0x5C && c != 0x3C && c != 0x3E && c != 0x26) {
        i++;
        continue;
      }
      out.raw(p + <usize>from, i - from);
      out.byte(0x5C);
      if (c == 0x22 || c == 0x5C) out.byte(c);
      else if (c == 0x08) out.byte(0x62);
      else if (c == 0x0C) out.byte(0x66);
      else if (c == 0x0A) out.byte(0x6E);
      else if (c == 0x0D) out.byte(0x72);
      else if (c == 0x09) out.byte(0x74);
      else {
        out.byte(0x75);
        out.byte(0x30);
        out.byte(0x30);
        out.byte(HEX.charCodeAt(c >> 4));
        out.byte(HEX.charCodeAt(c & 0xF));
      }
      i++;
      from = i;
      continue;
    }
    const r = decodeRune(p, i, end);
    const rune = r >> 3, width = <i32>(r & 7);
    if (width == 1 || rune == 0x2028 || rune == 0x2029) {
      // width 1 above 0x7F is an invalid byte.
      out.raw(p + <usize>from, i - from);
      out.byte(0x5C);
      out.byte(0x75);
      if (width == 1) {
        out.byte(0x66); out.byte(0x66); out.byte(0x66); out.byte(0x64);
      } else {
        out.byte(0x32); out.byte(0x30); out.byte(0x32);
        out.byte(HEX.charCodeAt(rune & 0xF));
      }
      i += width;
      from = i;
      continue;
    }
    i += width;
  }
  out.raw(p + <usize>from, end - from);
  out.byte(0x22);
}

/** writeString writes s as a JSON string literal, as json.Marshal does. */
export function writeString(out: Buf, s: string): void {
  writeStringBytes(out, encodeUTF8(s));
}

/** quote returns s as a JSON string literal, as json.Marshal does. */
export function quote(s: string): string {
  const out = new Buf(s.length + 2);
  writeString(out, s);
  return out.toString();
}

/**
 * formatNumber writes n as Go's json.Marshal writes a float64: integers
 * without a fraction, the shortest text that reads back as n, exponents
 * below 1e-6 and from 1e21. NaN and infinities have no JSON form: null.
 */
export function formatNumber(n: f64): string {
  if (!isFinite(n)) return "null";
  if (n == 0) return 1 / n < 0 ? "-0" : "0";
  if (Math.floor(n) == n && Math.abs(n) < 9.2e18) return (<i64>n).toString();
  let s = n.toString();
  if (s.endsWith(".0")) s = s.substring(0, s.length - 2);
  return s;
}

function encodeValue(root: Value, out: Buf): void {
  const stack: Value[] = [];
  const pos: i32[] = [];
  let next: Value | null = root;
  while (true) {
    if (next) {
      const v: Value = next;
      next = null;
      const kind = v.kind;
      if (kind == Kind.Array || kind == Kind.Object) {
        const isObject = kind == Kind.Object;
        if (v.length == 0) {
          out.byte(isObject ? 0x7B : 0x5B);
          out.byte(isObject ? 0x7D : 0x5D);
        } else {
          out.byte(isObject ? 0x7B : 0x5B);
          stack.push(v);
          pos.push(0);
          if (isObject) {
            writeString(out, v.keyAt(0));
            out.byte(0x3A);
          }
          next = v.at(0);
          continue;
        }
      } else if (kind == Kind.String) {
        writeString(out, v.asString());
      } else if (kind == Kind.Number) {
        out.string(v.numberText());
      } else if (kind == Kind.Bool) {
        out.string(v.asBool() ? "true" : "false");
      } else {
        out.string("null");
      }
    }
    // The value just written is complete: go on with its next sibling,
    // or close its container.
    const depth = stack.length;
    if (depth == 0) return;
    const top = stack[depth - 1];
    const i = pos[depth - 1] + 1;
    const isObject = top.kind == Kind.Object;
    if (i < top.length) {
      pos[depth - 1] = i;
      out.byte(0x2C);
      if (isObject) {
        writeString(out, top.keyAt(i));
        out.byte(0x3A);
      }
      next = top.at(i);
    } else {
      out.byte(isObject ? 0x7D : 0x5D);
      stack.pop();
      pos.pop();
    }
  }
}
