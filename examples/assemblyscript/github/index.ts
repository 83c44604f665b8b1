// github is an example alterhost plugin in AssemblyScript that acts on the
// signed-in person's GitHub account: list_repos turns its arguments into
// query parameters and sums up the answer; create_issue sends a JSON body
// and explains GitHub's refusals. The host adds the person's GitHub token to
// each request; the plugin never holds it.
//
// It answers what examples/go/github, the reference, answers, byte for
// byte: JSON is read as Go's json.Decoder reads it and written as
// encoding/json writes it. Build: see README.md.

import {
  FirstResult, Kind, Request, Response, Result, Value, handle, logDebug, parseFirst, request, setting,
} from "@alterhost/alter";

// apiBase is the REST API's base URL: the "api_base" setting, which the
// manifest defaults to https://api.github.com.
function apiBase(): string {
  const v = setting("api_base");
  return v != null && v.length > 0 ? v : "https://api.github.com";
}

// github starts a request to the GitHub REST API with the headers GitHub
// asks for.
function github(method: string, path: string): Request {
  return new Request(method, apiBase() + path)
    .setHeader("Accept", "application/vnd.github+json")
    .setHeader("X-GitHub-Api-Version", "2022-11-28")
    .setHeader("User-Agent", "alterhost-github-example");
}

// decode reads one JSON value as the Go example does: json.Decoder's
// Decode, then a Token() that must fail (end of input, or anything that is
// not the start of another token).
function decode(b: Uint8Array): FirstResult {
  const first = parseFirst(b);
  if (!first.ok) return first;
  let i = first.end;
  while (i < b.length && (b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D)) i++;
  if (i == b.length) return first;
  const c = b[i];
  let more = c == 0x5B || c == 0x7B;
  if (c == 0x22 || c == 0x2D || (c >= 0x30 && c <= 0x39) || c == 0x74 || c == 0x66 || c == 0x6E) more = parseFirst(b, i).ok;
  if (more) return new FirstResult(null, "data after the JSON value", i);
  return first;
}

// member returns the member key of v, or null when v is not an object or
// has no such member.
function member(v: Value, key: string): Value {
  const m = v.isObject() ? v.get(key) : null;
  return m ? m : Value.newNull();
}

// githubMessage is GitHub's own explanation of a refusal: its "message",
// then the "errors" list of a validation failure, if any.
function githubMessage(resp: Response): string {
  const v = decode(resp.body).value;
  if (!v) return "";
  const msg = member(v, "message").asString();
  const errors = member(v, "errors");
  if (!errors.isArray() || errors.length == 0) return msg;
  const details: string[] = [];
  for (let i = 0; i < errors.length; i++) {
    const e = errors.at(i);
    if (e.isString()) {
      details.push(e.asString());
      continue;
    }
    // {"resource":"Issue","field":"title","code":"missing_field"}, or a
    // free-text "message" for code "custom".
    const m = member(e, "message"), f = member(e, "field"), c = member(e, "code");
    if (m.isString()) details.push(m.asString());
    else if (f.isString() && c.isString()) details.push(f.asString() + " " + c.asString().replaceAll("_", " "));
    else if (c.isString()) details.push(c.asString().replaceAll("_", " "));
    else details.push(e.sortKeys().toString());
  }
  return msg + " (" + details.join("; ") + ")";
}

// refused explains an unexpected status, in GitHub's words where it gave
// some.
function refused(what: string, resp: Response): Result {
  let msg: string;
  if (resp.status == 401) {
    msg = "GitHub refused the credential while trying to " + what + " (401)";
  } else if (resp.status == 403 && resp.header("x-ratelimit-remaining") == "0") {
    let reset = resp.header("x-ratelimit-reset");
    if (reset.length == 0) reset = "a while";
    msg = "GitHub's rate limit is used up; try again after " + reset + " (Unix time)";
  } else {
    msg = "GitHub answered " + resp.status.toString() + " while trying to " + what;
  }
  const detail = githubMessage(resp);
  if (detail.length > 0) msg += ": " + detail;
  return Result.fail(msg);
}

// goQuote quotes s as Go's strconv.Quote does for the names that reach it:
// exactly for ASCII, and for the few non-printable code points a name
// could plausibly hold.
function goQuote(s: string): string {
  let out = "\"";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x22) out += "\\\"";
    else if (c == 0x5C) out += "\\\\";
    else if (c == 0x07) out += "\\a";
    else if (c == 0x08) out += "\\b";
    else if (c == 0x0C) out += "\\f";
    else if (c == 0x0A) out += "\\n";
    else if (c == 0x0D) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else if (c == 0x0B) out += "\\v";
    else if (c < 0x20 || c == 0x7F) out += "\\x" + (c < 16 ? "0" : "") + c.toString(16);
    else if ((c >= 0x80 && c <= 0xA0) || c == 0xAD || c == 0x2028 || c == 0x2029 || c == 0xFEFF) {
      out += "\\u" + "0000".substring(0, 4 - c.toString(16).length) + c.toString(16);
    } else out += String.fromCharCode(c);
  }
  return out + "\"";
}

// pathSegment checks an owner or repository name, so it cannot change the
// URL path; it returns "" for a name that is not valid.
function pathSegment(args: Value, name: string): string {
  const s = member(args, name).asString();
  if (s.length == 0 || s.length > 100 || s == "." || s == "..") return "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ok = (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39) ||
      c == 0x2D || c == 0x5F || c == 0x2E;
    if (!ok) return "";
  }
  return s;
}

// arguments decodes the tool's arguments, keeping numbers as written; null
// when they are not a JSON object.
function arguments_(input: Uint8Array): Value | null {
  if (input.length == 0) return Value.newObject();
  const v = decode(input).value;
  return v && v.isObject() ? v : null;
}

// isGoSpace is unicode.IsSpace, which strings.TrimSpace trims.
function isGoSpace(c: i32): bool {
  return c == 0x20 || (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
    (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

function blank(s: string): bool {
  for (let i = 0; i < s.length; i++) if (!isGoSpace(s.charCodeAt(i))) return false;
  return true;
}

// perPage reads per_page as Go's json.Number.Int64 does: an integer
// literal within int64, clamped to 1..100; anything else is 30.
function perPage(args: Value): i64 {
  const v = member(args, "per_page");
  if (v.kind != Kind.Number) return 30;
  const text = v.numberText();
  if (text.includes(".") || text.includes("e") || text.includes("E")) return 30;
  const digits = text.startsWith("-") ? text.substring(1) : text;
  // Past 19 digits, or past int64 at 19, ParseInt fails.
  if (digits.length > 19 || (digits.length == 19 && digits > "9223372036854775807")) {
    if (!(text == "-9223372036854775808")) return 30;
  }
  const n = I64.parseInt(text, 10);
  return n < 1 ? 1 : n > 100 ? 100 : n;
}

// copy returns member key of r as Go writes a value it decoded.
function copy(r: Value, key: string): Value {
  return member(r, key).sortKeys();
}

function listReposImpl(input: Uint8Array): Result {
  const args = arguments_(input);
  if (!args) return Result.fail("invalid arguments: not a JSON object");
  const req = github("GET", "/user/repos");
  const names = ["visibility", "sort"];
  for (let i = 0; i < names.length; i++) {
    const v = member(args, names[i]);
    if (v.isString()) req.addQuery(names[i], v.asString());
  }
  req.addQuery("per_page", perPage(args).toString());
  const reply = request(req);
  const err = reply.error;
  if (err) return Result.fromError(err); // grant_not_found carries the Connect URL
  const resp = reply.response!;
  if (resp.status != 200) return refused("list your repositories", resp);
  const parsed = decode(resp.body);
  const list = parsed.value;
  if (!list) return Result.fail("GitHub's repository list is not JSON: " + parsed.error);
  if (!list.isArray()) return Result.fail("GitHub's repository list is not a list");
  const repos = Value.newArray();
  for (let i = 0; i < list.length; i++) {
    const r = list.at(i);
    repos.push(Value.newObject()
      .set("full_name", copy(r, "full_name"))
      .setBool("private", member(r, "private").asBool())
      .set("description", copy(r, "description"))
      .set("html_url", copy(r, "html_url"))
      .set("default_branch", copy(r, "default_branch"))
      .set("stars", copy(r, "stargazers_count"))
      .set("updated_at", copy(r, "updated_at")));
  }
  logDebug("list_repos: " + repos.length.toString() + " repositories");
  return Result.json(Value.newObject().setInteger("count", list.length).set("repos", repos));
}

export function list_repos(): i32 {
  return handle(listReposImpl);
}

function createIssueImpl(input: Uint8Array): Result {
  const args = arguments_(input);
  if (!args) return Result.fail("invalid arguments: not a JSON object");
  const owner = pathSegment(args, "owner");
  if (owner.length == 0) return Result.fail(goQuote(member(args, "owner").asString()) + " is not a valid GitHub owner name");
  const name = pathSegment(args, "repo");
  if (name.length == 0) return Result.fail(goQuote(member(args, "repo").asString()) + " is not a valid GitHub repo name");
  const title = member(args, "title").asString();
  if (blank(title)) return Result.fail("an issue needs a title");
  const issue = Value.newObject().setString("title", title);
  const body = member(args, "body");
  if (body.isString()) issue.set("body", body);
  const reply = request(github("POST", "/repos/" + owner + "/" + name + "/issues").setJSON(issue));
  const err = reply.error;
  if (err) return Result.fromError(err);
  const resp = reply.response!;
  const where = owner + "/" + name;
  if (resp.status == 404) {
    // GitHub says 404, not 403, for a private repository the token may
    // not see.
    return Result.fail("GitHub found no repository " + where + " that this account can see (404): " + githubMessage(resp));
  }
  if (resp.status == 410) return Result.fail("issues are turned off in " + where + " (410)");
  if (resp.status == 422) return Result.fail("GitHub refused the issue (422): " + githubMessage(resp));
  if (resp.status != 201) return refused("open an issue in " + where, resp);
  const parsed = decode(resp.body);
  const created = parsed.value;
  if (!created) return Result.fail("GitHub's answer is not JSON: " + parsed.error);
  return Result.json(Value.newObject()
    .set("number", copy(created, "number"))
    .set("html_url", copy(created, "html_url"))
    .set("title", copy(created, "title"))
    .set("state", copy(created, "state")));
}

export function create_issue(): i32 {
  return handle(createIssueImpl);
}
