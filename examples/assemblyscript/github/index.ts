// github is an example alterhost plugin in AssemblyScript that acts on the
// signed-in person's GitHub account. list_repos turns its arguments into
// query parameters and sums up the answer; create_issue sends a JSON body
// and explains GitHub's refusals. The host adds the person's GitHub token to
// each request; the plugin never holds it. Build: see README.md.

import { Result, Request, Response, Value, handleJSON, logDebug, quote, request } from "@alterhost/alter";

const API = "https://api.github.com";

// github starts a request to the GitHub REST API with the headers GitHub
// asks for.
function github(method: string, path: string): Request {
  return new Request(method, API + path)
    .setHeader("Accept", "application/vnd.github+json")
    .setHeader("X-GitHub-Api-Version", "2022-11-28")
    .setHeader("User-Agent", "alterhost-github-example");
}

// githubMessage is GitHub's own explanation of a refusal: its "message",
// then the "errors" list of a validation failure, if any.
function githubMessage(resp: Response): string {
  const v = resp.json().value;
  if (!v) return "";
  let msg = v.getString("message");
  const errors = v.get("errors");
  if (errors && errors.isArray() && errors.length > 0) {
    const details: string[] = [];
    for (let i = 0; i < errors.length; i++) {
      const e = errors.at(i);
      if (e.isString()) {
        details.push(e.asString());
        continue;
      }
      // {"resource":"Issue","field":"title","code":"missing_field"}, or a
      // free-text "message" for code "custom".
      const m = e.get("message"), f = e.get("field"), c = e.get("code");
      if (m && m.isString()) details.push(m.asString());
      else if (f && f.isString() && c && c.isString()) details.push(f.asString() + " " + c.asString().replaceAll("_", " "));
      else if ((!f || !f.isString()) && c && c.isString()) details.push(c.asString().replaceAll("_", " "));
      else details.push(e.toString());
    }
    msg += " (" + details.join("; ") + ")";
  }
  return msg;
}

// refused explains an unexpected status, in GitHub's words where it gave some.
function refused(what: string, resp: Response): Result {
  const detail = githubMessage(resp);
  let msg: string;
  if (resp.status == 401) {
    msg = "GitHub refused the credential while trying to " + what + " (401)";
  } else if (resp.status == 403 && resp.header("x-ratelimit-remaining") == "0") {
    const reset = resp.header("x-ratelimit-reset");
    msg = "GitHub's rate limit is used up; try again after " + (reset.length > 0 ? reset : "a while") + " (Unix time)";
  } else {
    msg = "GitHub answered " + resp.status.toString() + " while trying to " + what;
  }
  if (detail.length > 0) msg += ": " + detail;
  return Result.fail(msg);
}

// validSegment reports whether an owner or repository name is safe to put
// in a URL path: it cannot add a segment or a query.
function validSegment(s: string): bool {
  if (s.length == 0 || s.length > 100 || s == "." || s == "..") return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ok = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) ||
      c == 0x2D || c == 0x5F || c == 0x2E;
    if (!ok) return false;
  }
  return true;
}

// copyOr returns r's member key, or null when it has none.
function copyOr(r: Value, key: string): Value {
  const v = r.get(key);
  return v ? v : Value.newNull();
}

function listReposImpl(args: Value): Result {
  const req = github("GET", "/user/repos");
  const names = ["visibility", "sort"];
  for (let i = 0; i < names.length; i++) {
    const v = args.get(names[i]);
    if (v && v.isString()) req.addQuery(names[i], v.asString());
  }
  let perPage = args.getInteger("per_page", 30);
  if (perPage < 1) perPage = 1;
  if (perPage > 100) perPage = 100;
  req.addQuery("per_page", perPage.toString());
  const reply = request(req);
  const err = reply.error;
  if (err) return Result.fromError(err);
  const resp = reply.response!;
  if (resp.status != 200) return refused("list your repositories", resp);
  const parsed = resp.json();
  const repos = parsed.value;
  if (!repos) return Result.fail("GitHub's repository list is not JSON: " + parsed.error);
  if (!repos.isArray()) return Result.fail("GitHub's repository list is not a list");
  const summary = Value.newArray();
  for (let i = 0; i < repos.length; i++) {
    const r = repos.at(i);
    summary.push(Value.newObject()
      .set("full_name", copyOr(r, "full_name"))
      .setBool("private", r.getBool("private"))
      .set("description", copyOr(r, "description"))
      .set("html_url", copyOr(r, "html_url"))
      .set("default_branch", copyOr(r, "default_branch"))
      .set("stars", copyOr(r, "stargazers_count"))
      .set("updated_at", copyOr(r, "updated_at")));
  }
  logDebug("list_repos: " + summary.length.toString() + " repositories");
  return Result.json(Value.newObject().setInteger("count", summary.length).set("repos", summary));
}

export function list_repos(): i32 {
  return handleJSON(listReposImpl);
}

function createIssueImpl(args: Value): Result {
  const owner = args.getString("owner"), repo = args.getString("repo");
  if (!validSegment(owner)) return Result.fail(quote(owner) + " is not a valid GitHub owner name");
  if (!validSegment(repo)) return Result.fail(quote(repo) + " is not a valid GitHub repo name");
  const title = args.getString("title");
  if (title.trim().length == 0) return Result.fail("an issue needs a title");
  const issue = Value.newObject().setString("title", title);
  const body = args.get("body");
  if (body && body.isString()) issue.set("body", body);
  const reply = request(github("POST", "/repos/" + owner + "/" + repo + "/issues").setJSON(issue));
  const err = reply.error;
  if (err) return Result.fromError(err);
  const resp = reply.response!;
  const where = owner + "/" + repo;
  if (resp.status == 404) {
    // GitHub says 404, not 403, for a private repository the token may
    // not see.
    return Result.fail("GitHub found no repository " + where + " that this account can see (404): " + githubMessage(resp));
  }
  if (resp.status == 410) return Result.fail("issues are turned off in " + where + " (410)");
  if (resp.status == 422) return Result.fail("GitHub refused the issue (422): " + githubMessage(resp));
  if (resp.status != 201) return refused("open an issue in " + where, resp);
  const parsed = resp.json();
  const created = parsed.value;
  if (!created) return Result.fail("GitHub's answer is not JSON: " + parsed.error);
  return Result.json(Value.newObject()
    .set("number", copyOr(created, "number"))
    .set("html_url", copyOr(created, "html_url"))
    .set("title", copyOr(created, "title"))
    .set("state", copyOr(created, "state")));
}

export function create_issue(): i32 {
  return handleJSON(createIssueImpl);
}
