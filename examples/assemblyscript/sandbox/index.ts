// sandbox is an example alterhost plugin in AssemblyScript for the
// built-in sandbox provider (alterhost --dev), a port of examples/go/sandbox
// that answers byte for byte what the Go plugin answers. It calls the
// sandbox API as the signed-in person; the host adds the person's access
// token to each request, so the plugin never sees it.
//
// Build: go run ./cmd/alterhost plugin build examples/assemblyscript/sandbox
// (see README.md).

import { Kind, Request, Response, Result, Value, compact, handle, parse, request } from "@alterhost/alter";

// The sandbox API's base URL, on a virtual host the host serves in-process.
const API = "https://sandbox.alterhost.test/api/";

// call makes one request to the sandbox API and returns its answer, which
// must be a JSON object, compacted as Go's json.Compact does.
function call(method: string, path: string, body: Uint8Array | null): Result {
  const req = new Request(method, API + path).setHeader("Accept", "application/json");
  if (body) {
    req.setBody(body);
    req.setHeader("Content-Type", "application/json");
  }
  const reply = request(req);
  const err = reply.error;
  if (err) {
    // Passed on as is: a grant_not_found or scope_reauth_required error
    // carries the connect URL the host shows the person.
    return Result.fromError(err);
  }
  const resp = reply.response!;
  if (resp.status / 100 != 2) return Result.fail(apiError(resp));
  const out = compact(resp.body);
  if (!out.ok || out.bytes.length == 0 || out.bytes[0] != 0x7B) {
    return Result.fail("the sandbox API answered " + resp.status.toString() + " with something that is not a JSON object");
  }
  return Result.bytes(out.bytes);
}

// apiError describes a refused API call from its status and OAuth error.
function apiError(resp: Response): string {
  let error = "", description = "";
  const v = parse(resp.body).value;
  if (v && v.isObject()) {
    for (let i = 0; i < v.length; i++) {
      const val = v.at(i);
      if (!val.isString()) continue; // Go skips a member of the wrong type
      if (goNameMatches(v.keyAt(i), "error")) error = val.asString();
      else if (goNameMatches(v.keyAt(i), "error_description")) description = val.asString();
    }
  }
  let msg = "the sandbox API answered " + resp.status.toString();
  if (error.length > 0) msg += ": " + error;
  if (description.length > 0) msg += " (" + description + ")";
  const h = resp.header("www-authenticate");
  if (h.length > 0) msg += "; WWW-Authenticate: " + h;
  return msg;
}

// goNameMatches reports whether the JSON member name key sets the struct
// field tagged name (lower-case ASCII) in Go's encoding/json: exactly, or
// folding case, where U+017F folds to s and U+212A to k.
function goNameMatches(key: string, name: string): bool {
  if (key.length != name.length) return false;
  for (let i = 0; i < name.length; i++) {
    const c = key.charCodeAt(i), n = name.charCodeAt(i);
    if (c == n) continue;
    if (n >= 0x61 && n <= 0x7A && c == n - 32) continue;
    if (n == 0x73 && c == 0x17F) continue;
    if (n == 0x6B && c == 0x212A) continue;
    return false;
  }
  return true;
}

function kindName(v: Value): string {
  switch (v.kind) {
    case Kind.Bool: return "bool";
    case Kind.Number: return "number";
    case Kind.String: return "string";
    case Kind.Array: return "array";
    default: return "object";
  }
}

function whoamiImpl(_input: Uint8Array): Result {
  return call("GET", "whoami", null);
}

export function whoami(): i32 {
  return handle(whoamiImpl);
}

function listNotesImpl(_input: Uint8Array): Result {
  return call("GET", "notes", null);
}

export function list_notes(): i32 {
  return handle(listNotesImpl);
}

function addNoteImpl(input: Uint8Array): Result {
  // The arguments are read as Go's json.Unmarshal reads them into
  // struct{Text string `json:"text"`}, errors in its words included.
  const parsed = parse(input);
  const args = parsed.value;
  if (!args) return Result.fail("invalid arguments: " + parsed.error);
  let text = "", typeError = "";
  if (args.isObject()) {
    for (let i = 0; i < args.length; i++) {
      if (!goNameMatches(args.keyAt(i), "text")) continue;
      const v = args.at(i);
      if (v.isString()) text = v.asString();
      else if (!v.isNull() && typeError.length == 0) {
        typeError = "json: cannot unmarshal " + kindName(v) + " into Go struct field addNoteArgs.text of type string";
      }
    }
  } else if (!args.isNull()) {
    typeError = "json: cannot unmarshal " + kindName(args) + " into Go value of type main.addNoteArgs";
  }
  if (typeError.length > 0) return Result.fail("invalid arguments: " + typeError);
  return call("POST", "notes", Value.newObject().setString("text", text).encode());
}

export function add_note(): i32 {
  return handle(addNoteImpl);
}
