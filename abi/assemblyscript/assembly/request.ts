// alter_request: the one door out of the sandbox. The guest sends one
// JSON object (method, url, query, headers, body or body_base64) and gets
// back one JSON object: a response (status, headers, body or body_base64)
// or a typed error. The host adds credentials; a guest never sees them.

import { Buf, base64DecodeBytes, base64Encode, decodeUTF8, encodeUTF8, validUTF8 } from "./bytes";
import { Kind, ParseResult, Value, parse, writeString, writeStringBytes } from "./json";
import { kAlterRequest, kFree, readBlock, writeBlock } from "./kernel";

/**
 * The error codes of ABI v1, as in the host's abi package. Codes are
 * stable: switch on them rather than on messages.
 */
export namespace Code {
  /** The request was malformed (bad method, relative URL, bad header). */
  export const BadRequest = "bad_request";
  /** The URL's scheme or host is outside the plugin's allowed_hosts, including after a redirect. */
  export const HostNotAllowed = "host_not_allowed";
  /** The upstream did not answer in time. */
  export const Timeout = "timeout";
  /** A request or response body exceeded the plugin's limits. */
  export const TooLarge = "too_large";
  /** The connection to the upstream failed. */
  export const UpstreamUnreachable = "upstream_unreachable";
  /** The host failed, or its reply could not be read. */
  export const Internal = "internal";
  /** The person has not connected the tool's provider; connectUrl says where to. */
  export const GrantNotFound = "grant_not_found";
  /** The grant lacks missingScopes; connectUrl asks for them. */
  export const ScopeReauthRequired = "scope_reauth_required";
  /** A policy forbids this method, host or path. */
  export const PolicyDenied = "policy_denied";
  /** A person must approve this request first. */
  export const ApprovalRequired = "approval_required";
}

/**
 * AlterError is a failed alter_request, as the host reported it. Failing a
 * tool with it (Result.fromError) lets the host show the person what to do:
 * connect an account, widen allowed_hosts.
 */
export class AlterError {
  /** connectUrl is set with grant_not_found and scope_reauth_required. */
  connectUrl: string = "";
  /** missingScopes is set with scope_reauth_required. */
  missingScopes: string[] = [];

  constructor(public code: string, public message: string) {}

  /** toString returns "code: message", as the host formats its errors. */
  toString(): string {
    return this.code + ": " + this.message;
  }
}

/**
 * Response is the upstream's answer. Any HTTP status is a Response, not an
 * error: only failing to get an answer at all is an AlterError.
 */
export class Response {
  /** headers has lower-case names; repeated headers are joined with ", ". */
  headers: Map<string, string> = new Map<string, string>();
  body: Uint8Array = new Uint8Array(0);

  constructor(public status: i32) {}

  /** header returns the header name (any case), or "" if absent. */
  header(name: string): string {
    const key = name.toLowerCase();
    return this.headers.has(key) ? this.headers.get(key) : "";
  }

  /** text returns the body as a string (invalid UTF-8 becomes U+FFFD). */
  text(): string {
    return decodeUTF8(this.body);
  }

  /** json parses the body as JSON. */
  json(): ParseResult {
    return parse(this.body);
  }
}

/** Reply is what request() returns: a response, or an error. */
export class Reply {
  constructor(public response: Response | null, public error: AlterError | null) {}

  /** ok reports whether there is a response (of any status). */
  get ok(): bool {
    return this.error == null;
  }
}

/** Request is one HTTP request the host makes on the tool's behalf. */
export class Request {
  /** query is added to any query the URL already has; names may repeat. */
  query: Map<string, string[]> = new Map<string, string[]>();
  /** headers are sent as given; leave credentials out, the host adds them. */
  headers: Map<string, string> = new Map<string, string>();
  /** body is sent as is; null sends none. */
  body: Uint8Array | null = null;

  /**
   * method is the HTTP method ("" means GET); url must be absolute http or
   * https to a host in the manifest's allowed_hosts.
   */
  constructor(public method: string, public url: string) {}

  /** addQuery adds one value of query parameter name. */
  addQuery(name: string, value: string): Request {
    if (this.query.has(name)) this.query.get(name).push(value);
    else this.query.set(name, [value]);
    return this;
  }

  /** setHeader sets header name to value. */
  setHeader(name: string, value: string): Request {
    this.headers.set(name, value);
    return this;
  }

  setBody(body: Uint8Array): Request {
    this.body = body;
    return this;
  }

  /** setText sends s as the UTF-8 body. */
  setText(s: string): Request {
    this.body = encodeUTF8(s);
    return this;
  }

  /** setJSON sends v as the body, with Content-Type application/json unless one is set. */
  setJSON(v: Value): Request {
    this.body = v.encode();
    if (!hasHeader(this.headers, "content-type")) this.headers.set("Content-Type", "application/json");
    return this;
  }

  /**
   * encode returns the request in the wire format. The body travels as
   * "body" when it is valid UTF-8 and as "body_base64" otherwise, because a
   * JSON string cannot carry arbitrary bytes.
   */
  encode(): Uint8Array {
    const out = new Buf(128);
    out.byte(0x7B);
    if (this.method.length > 0) {
      out.string("\"method\":");
      writeString(out, this.method);
      out.byte(0x2C);
    }
    out.string("\"url\":");
    writeString(out, this.url);
    if (this.query.size > 0) {
      out.string(",\"query\":{");
      const names = this.query.keys();
      for (let i = 0; i < names.length; i++) {
        if (i > 0) out.byte(0x2C);
        writeString(out, names[i]);
        out.string(":[");
        const values = this.query.get(names[i]);
        for (let j = 0; j < values.length; j++) {
          if (j > 0) out.byte(0x2C);
          writeString(out, values[j]);
        }
        out.byte(0x5D);
      }
      out.byte(0x7D);
    }
    if (this.headers.size > 0) {
      out.string(",\"headers\":{");
      const names = this.headers.keys();
      for (let i = 0; i < names.length; i++) {
        if (i > 0) out.byte(0x2C);
        writeString(out, names[i]);
        out.byte(0x3A);
        writeString(out, this.headers.get(names[i]));
      }
      out.byte(0x7D);
    }
    const body = this.body;
    if (body && body.length > 0) {
      if (validUTF8(body)) {
        out.string(",\"body\":");
        writeStringBytes(out, body);
      } else {
        out.string(",\"body_base64\":");
        writeString(out, base64Encode(body));
      }
    }
    out.byte(0x7D);
    return out.toBytes();
  }
}

function hasHeader(h: Map<string, string>, lower: string): bool {
  const names = h.keys();
  for (let i = 0; i < names.length; i++) {
    if (names[i].toLowerCase() == lower) return true;
  }
  return false;
}

/**
 * request asks the host to make req and returns the upstream's response,
 * with any HTTP status, or the error that kept it from being made.
 */
export function request(req: Request): Reply {
  const off = kAlterRequest(writeBlock(req.encode()));
  if (off == 0) return failure("alter_request returned no reply");
  const raw = readBlock(off);
  kFree(off);
  return parseReply(raw);
}

/** get is request() with a GET of url. */
export function get(url: string): Reply {
  return request(new Request("GET", url));
}

function failure(message: string): Reply {
  return new Reply(null, new AlterError(Code.Internal, message));
}

function malformed(problem: string): Reply {
  return failure("alter_request reply is malformed: " + problem);
}

/**
 * parseReply decodes the host's reply to alter_request: exactly one of a
 * response and an error. A reply that cannot be read is an internal error
 * naming the problem, so callers deal with one error type and never trap.
 */
export function parseReply(raw: Uint8Array): Reply {
  const parsed = parse(raw);
  const w = parsed.value;
  if (!w) return failure("alter_request reply is not valid JSON: " + parsed.error);
  if (!w.isObject()) return malformed("not a JSON object");
  const e = w.get("error");
  if (e && !e.isNull()) {
    if (!e.isObject()) return malformed("\"error\" is not an object");
    const code = e.get("code");
    const message = e.get("message");
    const connect = e.get("connect_url");
    const scopes = e.get("missing_scopes");
    if (code && !code.isString() && !code.isNull()) return malformed("error \"code\" is not a string");
    if (message && !message.isString() && !message.isNull()) return malformed("error \"message\" is not a string");
    if (connect && !connect.isString() && !connect.isNull()) return malformed("error \"connect_url\" is not a string");
    const err = new AlterError(e.getString("code"), e.getString("message"));
    if (err.code.length == 0) err.code = Code.Internal;
    err.connectUrl = e.getString("connect_url");
    if (scopes && !scopes.isNull()) {
      if (!scopes.isArray()) return malformed("error \"missing_scopes\" is not a list");
      for (let i = 0; i < scopes.length; i++) {
        const s = scopes.at(i);
        if (!s.isString()) return malformed("error \"missing_scopes\" has an item that is not a string");
        err.missingScopes.push(s.asString());
      }
    }
    return new Reply(null, err);
  }
  // The problems the Go binding also names are worded as it words them.
  const status = w.get("status");
  if (!status || status.isNull()) return failure("alter_request reply has neither \"status\" nor \"error\"");
  if (!status.isInteger() || status.asNumber() < 100 || status.asNumber() > 999) {
    return malformed("\"status\" is not an HTTP status code");
  }
  const resp = new Response(<i32>status.asInteger());
  const headers = w.get("headers");
  if (headers && !headers.isNull()) {
    if (!headers.isObject()) return malformed("\"headers\" is not an object");
    for (let i = 0; i < headers.length; i++) {
      const v = headers.at(i);
      if (v.kind != Kind.String) return malformed("header \"" + headers.keyAt(i) + "\" is not a string");
      resp.headers.set(headers.keyAt(i), v.asString());
    }
  }
  const body = w.get("body");
  const b64 = w.get("body_base64");
  const hasBody = body != null && !body.isNull(), hasB64 = b64 != null && !b64.isNull();
  if (hasBody && hasB64) return failure("alter_request reply has both \"body\" and \"body_base64\"");
  if (hasBody) {
    if (!body!.isString()) return malformed("\"body\" is not a string");
    resp.body = encodeUTF8(body!.asString());
  }
  if (hasB64) {
    if (!b64!.isString()) return malformed("\"body_base64\" is not a string");
    const decoded = base64DecodeBytes(encodeUTF8(b64!.asString()));
    if (!decoded.ok) {
      return failure("alter_request reply has invalid body_base64: illegal base64 data at input byte " + decoded.badOffset.toString());
    }
    resp.body = decoded.bytes;
  }
  return new Reply(resp, null);
}
