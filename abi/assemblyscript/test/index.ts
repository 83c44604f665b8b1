// A test plugin for the binding itself, built and run by
// internal/pluginbuild/assemblyscript_test.go against a fake host: each
// export exercises one part of the binding on the call's input.

import {
  Reply, Request, Result, Value, base64Encode, compact, decodeUTF8, handle, inputString,
  log, Level, outputString, parse, parseFirst, parseReply, request, setting,
} from "@alterhost/alter";

// describe turns a Reply into JSON the test can compare: the response with
// its body in base64, or the error with every field.
function describe(r: Reply): Result {
  const out = Value.newObject();
  const err = r.error;
  if (err) {
    const scopes = Value.newArray();
    for (let i = 0; i < err.missingScopes.length; i++) scopes.push(Value.newString(err.missingScopes[i]));
    out.set("error", Value.newObject()
      .setString("code", err.code)
      .setString("message", err.message)
      .setString("connect_url", err.connectUrl)
      .set("missing_scopes", scopes)
      .setString("string", err.toString()));
    return Result.json(out);
  }
  const resp = r.response!;
  const headers = Value.newObject();
  const names = resp.headers.keys();
  for (let i = 0; i < names.length; i++) headers.setString(names[i], resp.headers.get(names[i]));
  out.setInteger("status", resp.status).set("headers", headers).setString("body_base64", base64Encode(resp.body));
  out.setString("content_type", resp.header("Content-Type"));
  return Result.json(out);
}

function replyImpl(input: Uint8Array): Result {
  return describe(parseReply(input));
}
export function reply(): i32 { return handle(replyImpl); }

// requestImpl builds a request from {method, url, query, headers, body}
// (body as text, or body_bytes as a list of byte values) and sends it.
function requestImpl(input: Uint8Array): Result {
  const spec = parse(input).value!;
  const req = new Request(spec.getString("method"), spec.getString("url"));
  const q = spec.get("query");
  if (q) {
    for (let i = 0; i < q.length; i++) {
      const vs = q.at(i);
      for (let j = 0; j < vs.length; j++) req.addQuery(q.keyAt(i), vs.at(j).asString());
    }
  }
  const h = spec.get("headers");
  if (h) for (let i = 0; i < h.length; i++) req.setHeader(h.keyAt(i), h.at(i).asString());
  if (spec.has("body")) req.setText(spec.getString("body"));
  const bb = spec.get("body_bytes");
  if (bb) {
    const b = new Uint8Array(bb.length);
    for (let i = 0; i < bb.length; i++) b[i] = <u8>bb.at(i).asInteger();
    req.setBody(b);
  }
  const j = spec.get("json");
  if (j) req.setJSON(j);
  return describe(request(req));
}
export function do_request(): i32 { return handle(requestImpl); }

// reencode parses its input and writes it back: the round trip of strings,
// numbers and structure, and Go's wording for a syntax error.
function reencodeImpl(input: Uint8Array): Result {
  const p = parse(input);
  const v = p.value;
  if (!v) return Result.fail(p.error);
  return Result.json(v);
}
export function reencode(): i32 { return handle(reencodeImpl); }

// first reads the first value of its input as json.Decoder does and
// returns it with where it ended, keys sorted as Go writes a decoded map.
function firstImpl(input: Uint8Array): Result {
  const r = parseFirst(input);
  const v = r.value;
  if (!v) return Result.fail(r.error);
  return Result.json(Value.newObject().setInteger("end", r.end).set("value", v.sortKeys()));
}
export function first(): i32 { return handle(firstImpl); }

function compactImpl(input: Uint8Array): Result {
  const c = compact(input);
  if (!c.ok) return Result.fail(c.error);
  return Result.bytes(c.bytes);
}
export function compact_json(): i32 { return handle(compactImpl); }

// numbers formats each number of its input array as a new f64 value.
function numbersImpl(input: Uint8Array): Result {
  const list = parse(input).value!;
  const out = Value.newArray();
  for (let i = 0; i < list.length; i++) out.push(Value.newNumber(list.at(i).asNumber()));
  return Result.json(out);
}
export function numbers(): i32 { return handle(numbersImpl); }

// echo_text decodes its input and sets it back as text, so a wrong UTF-8
// length in the output shows.
export function echo_text(): i32 {
  outputString(inputString());
  return 0;
}

function settingImpl(input: Uint8Array): Result {
  const v = setting(decodeUTF8(input));
  if (v == null) return Result.fail("no setting");
  return Result.text(v);
}
export function get_setting(): i32 { return handle(settingImpl); }

function logImpl(input: Uint8Array): Result {
  const msg = decodeUTF8(input);
  log(Level.Debug, "debug " + msg);
  log(Level.Info, "info " + msg);
  log(Level.Warn, "warn " + msg);
  log(Level.Error, "error " + msg);
  trace("traced", 2, 1.5, -2); // AssemblyScript's own trace, pointed at the binding
  return Result.text("logged");
}
export function log_all(): i32 { return handle(logImpl); }

// out_of_bounds indexes past an array's end: a bounds check aborts.
function outOfBoundsImpl(input: Uint8Array): Result {
  const a = [1, 2, 3];
  return Result.text(a[input.length + 3].toString());
}
export function out_of_bounds(): i32 { return handle(outOfBoundsImpl); }

// churn allocates and drops about 4 MiB per call: without the collection
// after each call, a few dozen calls would exhaust the instance's memory.
function churnImpl(_input: Uint8Array): Result {
  let total = 0;
  for (let i = 0; i < 64; i++) {
    const b = new Uint8Array(65536);
    b[i] = 1;
    total += b.length;
  }
  return Result.text(total.toString());
}
export function churn(): i32 { return handle(churnImpl); }

export function random(): i32 {
  outputString(Math.random().toString());
  return 0;
}

function mcpImpl(input: Uint8Array): Result {
  return Result.mcpText(decodeUTF8(input), true);
}
export function mcp(): i32 { return handle(mcpImpl); }

function failImpl(_input: Uint8Array): Result {
  return Result.fail("");
}
export function fail_empty(): i32 { return handle(failImpl); }
