// The guest side of alterhost's ABI alter/v1 for AssemblyScript plugins.
//
// A tool is an exported function () => i32 that returns what handle() or
// handleJSON() returns:
//
//   import { handleJSON, Result, Value } from "@alterhost/alter";
//
//   function greetImpl(args: Value): Result {
//     return Result.text("hello " + args.getString("name"));
//   }
//   export function greet(): i32 { return handleJSON(greetImpl); }
//
// The module imports nothing but the Extism kernel (extism:host/env) and
// the host's alter_request (extism:host/user); see README.md for the build.

import { Buf, decodeUTF8, encodeUTF8 } from "./bytes";
import { ParseResult, Value, parse } from "./json";
import {
  kConfigGet, kErrorSet, kFree, kLogDebug, kLogError, kLogInfo, kLogWarn, kOutputSet,
  readBlock, readInput, writeBlock,
} from "./kernel";
import { AlterError } from "./request";

export { Base64Result, Buf, base64Decode, base64DecodeBytes, base64Encode, decodeUTF8, encodeUTF8, validUTF8 } from "./bytes";
export {
  CompactResult, FirstResult, Kind, ParseResult, Value, compact, compareCodePoints, formatNumber, parse, parseFirst,
  parseString, quote, stringify, writeString, writeStringBytes,
} from "./json";
export { AlterError, Code, Reply, Request, Response, get, parseReply, request } from "./request";

// ---- Input ---------------------------------------------------------------

/** input returns the call's input: for a tool, its arguments as JSON. */
export function input(): Uint8Array {
  return readInput();
}

/** inputString returns the call's input as a string; invalid UTF-8 reads as U+FFFD. */
export function inputString(): string {
  return decodeUTF8(readInput());
}

/**
 * inputJSON parses the call's input. An empty input is an empty object, so
 * a tool without arguments may be called with none.
 */
export function inputJSON(): ParseResult {
  const b = readInput();
  if (b.length == 0) return new ParseResult(Value.newObject(), "");
  return parse(b);
}

// ---- Output and errors ---------------------------------------------------

/** output sets the call's output to b, replacing any set before. */
export function output(b: Uint8Array): void {
  setOutput(b);
}

// setOutput reports false when the kernel had no room for b.
function setOutput(b: Uint8Array): bool {
  const off = writeBlock(b);
  if (off == 0 && b.length > 0) return false;
  kOutputSet(off, <u64>b.length);
  return true;
}

/** outputString sets the call's output to s in UTF-8. */
export function outputString(s: string): void {
  output(encodeUTF8(s));
}

/** outputJSON sets the call's output to v as compact JSON. */
export function outputJSON(v: Value): void {
  output(v.encode());
}

/**
 * setError makes the call fail with message; the host reports it as the
 * tool's error. The export should then return non-zero, as handle() does.
 */
export function setError(message: string): void {
  // An empty message would read as "no error".
  kErrorSet(writeBlock(encodeUTF8(message.length > 0 ? message : "tool failed")));
}

/**
 * Result is what a tool returns to handle(): output bytes, or the message
 * the call fails with.
 */
export class Result {
  private constructor(public output: Uint8Array, public error: string, public failed: bool) {}

  /** bytes succeeds with b as the output. */
  static bytes(b: Uint8Array): Result {
    return new Result(b, "", false);
  }

  /** text succeeds with s, in UTF-8, as the output. */
  static text(s: string): Result {
    return new Result(encodeUTF8(s), "", false);
  }

  /** json succeeds with v, as compact JSON, as the output. */
  static json(v: Value): Result {
    return new Result(v.encode(), "", false);
  }

  /**
   * mcpText succeeds with an MCP result holding one text content, for a
   * tool whose manifest says "result": "mcp".
   */
  static mcpText(text: string, isError: bool = false): Result {
    const item = Value.newObject().setString("type", "text").setString("text", text);
    return Result.mcp(Value.newArray().push(item), null, isError);
  }

  /**
   * mcp succeeds with an MCP result: content (a list of content items),
   * structuredContent if not null, and isError if set.
   */
  static mcp(content: Value, structuredContent: Value | null = null, isError: bool = false): Result {
    const res = Value.newObject().set("content", content);
    if (structuredContent) res.set("structuredContent", structuredContent);
    if (isError) res.setBool("isError", true);
    return Result.json(res);
  }

  /** fail makes the call fail with message. */
  static fail(message: string): Result {
    return new Result(new Uint8Array(0), message, true);
  }

  /**
   * fromError makes the call fail with an alter_request error as
   * "code: message"; the host recognises it and shows its Connect URL.
   */
  static fromError(e: AlterError): Result {
    return Result.fail(e.toString());
  }
}

/**
 * handle runs one tool call on raw bytes: it passes the input to fn and
 * sets fn's output, or its error as the call's error. Return its result
 * from the exported function: 0 on success, 1 on error.
 *
 * It also frees what the call allocated (the minimal runtime collects only
 * when told to), so an instance serving many calls does not grow.
 */
export function handle(fn: (input: Uint8Array) => Result): i32 {
  const rc = finish(fn(readInput()));
  __collect();
  return rc;
}

/**
 * handleJSON runs one tool call on JSON arguments: an empty input is an
 * empty object; input that is not JSON fails the call with "invalid
 * arguments: ...".
 */
export function handleJSON(fn: (args: Value) => Result): i32 {
  let rc: i32;
  const parsed = inputJSON();
  const args = parsed.value;
  if (args) rc = finish(fn(args));
  else rc = finish(Result.fail("invalid arguments: " + parsed.error));
  __collect();
  return rc;
}

function finish(r: Result): i32 {
  if (r.failed) {
    setError(r.error);
    return 1;
  }
  if (!setOutput(r.output)) {
    setError("the output (" + r.output.length.toString() + " bytes) does not fit in the host's memory");
    return 1;
  }
  return 0;
}

// ---- Logging -------------------------------------------------------------

/** The severity of a log line, lowest first. */
export enum Level {
  Debug = 0,
  Info = 1,
  Warn = 2,
  Error = 3,
}

/**
 * log writes message to the host's log at level, tagged with the plugin.
 * The host drops lines below its own level, so debug lines cost little.
 */
export function log(level: Level, message: string): void {
  // The kernel has no empty blocks, and the host cannot read offset 0.
  if (message.length == 0) return;
  const off = writeBlock(encodeUTF8(message)); // the host frees it
  if (off == 0) return;
  if (level == Level.Debug) kLogDebug(off);
  else if (level == Level.Info) kLogInfo(off);
  else if (level == Level.Warn) kLogWarn(off);
  else kLogError(off);
}

export function logDebug(message: string): void { log(Level.Debug, message); }
export function logInfo(message: string): void { log(Level.Info, message); }
export function logWarn(message: string): void { log(Level.Warn, message); }
export function logError(message: string): void { log(Level.Error, message); }

// ---- Settings ------------------------------------------------------------

/**
 * setting returns the value of the plugin setting key: the operator's
 * NAME.config.json, else the default the manifest's "config" declares; null
 * for a setting with neither. Settings are never secrets: credentials stay
 * with the host.
 */
export function setting(key: string): string | null {
  if (key.length == 0) return null;
  const k = writeBlock(encodeUTF8(key));
  if (k == 0) return null;
  const off = kConfigGet(k);
  kFree(k); // config_get reads the key block but leaves it to us
  if (off == 0) return null;
  const b = readBlock(off);
  kFree(off);
  return decodeUTF8(b);
}

// ---- AssemblyScript's own imports ------------------------------------------

// The build points AssemblyScript's env.abort, env.trace and env.seed at
// these (--use abort=...), since alterhost refuses imports from "env".

/**
 * alterAbort is where a failed assertion, a bounds check or a `throw` lands. It
 * sets the call's error, logs it, and traps: the instance is thrown away.
 */
export function alterAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  const b = new Buf(64);
  b.string("abort: ");
  b.string(message != null ? message : "(no message)");
  if (fileName != null) {
    b.string(" at ");
    b.string(fileName);
    b.string(":" + line.toString() + ":" + column.toString());
  }
  const msg = b.toBytes();
  kErrorSet(writeBlock(msg));
  const off = writeBlock(msg);
  if (off != 0) kLogError(off);
  unreachable();
}

/** alterTrace logs a message and up to five numbers at debug level. */
export function alterTrace(message: string, n: i32 = 0, a0: f64 = 0, a1: f64 = 0, a2: f64 = 0, a3: f64 = 0, a4: f64 = 0): void {
  let s = "trace: " + message;
  if (n > 0) s += " " + a0.toString();
  if (n > 1) s += ", " + a1.toString();
  if (n > 2) s += ", " + a2.toString();
  if (n > 3) s += ", " + a3.toString();
  if (n > 4) s += ", " + a4.toString();
  logDebug(s);
}

// random_get is WASI preview 1's, which alterhost provides with
// cryptographic randomness. It is imported only by a plugin that uses
// Math.random, through alterSeed.
@external("wasi_snapshot_preview1", "random_get")
declare function wasiRandomGet(buf: usize, len: usize): u16;

/** alterSeed seeds Math.random with 8 random bytes from the host. */
export function alterSeed(): f64 {
  const b = new Uint8Array(8);
  wasiRandomGet(b.dataStart, 8); // on failure the zeros left make Math.random pick its own seed
  // Math.random takes the seed's bits, not its value.
  return reinterpret<f64>(load<u64>(b.dataStart));
}
