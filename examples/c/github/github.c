/*
 * github - an example alterhost plugin in freestanding C that acts on the
 * signed-in person's GitHub account: list_repos turns its arguments into
 * query parameters and sums up the answer; create_issue sends a JSON body
 * and explains GitHub's refusals. The host adds the person's GitHub token
 * to each request; the plugin never holds it.
 *
 * It is the port of examples/go/github and answers as it does, byte for
 * byte (internal/pluginbuild's differential test holds it to that).
 *
 * Build: alterhost plugin build examples/c/github, or see README.md.
 */
#include "alter.h"

/* Static buffers: the module has no allocator, and the instance is reused
 * across calls. reply holds GitHub's largest answers (100 repositories)
 * with their JSON escaping. */
static char in[512 << 10];
static char title[1024 << 10];
static char body[1536 << 10];
static char json[4 << 20];
static char reply[10 << 20];
static char out[2 << 20];
static char msg[64 << 10];
static char url[8192];

/* github_url writes the "api_base" setting (by default, as the manifest
 * says, https://api.github.com) and path to url[]. */
static const char *github_url(const char *a, const char *b, const char *c, const char *d, const char *e) {
    alter_buf u = alter_buf_make(url, sizeof url);
    long long n = alter_setting("api_base", url, sizeof url);
    if (n <= 0 || n >= (long long)sizeof url) {
        alter_buf_str(&u, "https://api.github.com");
    } else {
        u.n = (alter_size)n;
    }
    const char *parts[] = {a, b, c, d, e};
    for (int i = 0; i < 5; i++)
        if (parts[i]) alter_buf_str(&u, parts[i]);
    return alter_buf_cstr(&u) ? url : "https://api.github.com/url-too-long";
}

/* The headers GitHub asks for, and with a JSON body its Content-Type. */
static const alter_param headers[] = {
    {"Accept", "application/vnd.github+json"},
    {"X-GitHub-Api-Version", "2022-11-28"},
    {"User-Agent", "alterhost-github-example"},
};

/* fail sets the n bytes at msg[] as the call's error. */
static int fail(const alter_buf *m) {
    alter_set_error_n(m->p, m->n < m->cap ? m->n : m->cap);
    return 1;
}

static int fail_str(const char *s) {
    alter_set_error(s);
    return 1;
}

/* underscores_to_spaces rewrites what b got since from. */
static void underscores_to_spaces(alter_buf *b, alter_size from) {
    for (alter_size i = from; i < b->n && i < b->cap; i++)
        if (b->p[i] == '_') b->p[i] = ' ';
}

/* github_message appends GitHub's own explanation of a refusal to m: its
 * "message", then the "errors" list of a validation failure, if any. */
static void github_message(const alter_response *r, alter_buf *m) {
    alter_json v, mv, errs, e, em, ef, ec;
    if (alter_json_parse(r->body, r->body_len, &v)) return;
    if (alter_json_get(v, "message", &mv)) alter_json_str_buf(mv, m);
    alter_json_get(v, "errors", &errs);
    alter_json_iter it = alter_json_items(errs);
    int first = 1;
    while (alter_json_type_of(errs) == ALTER_JSON_ARRAY && alter_json_next(&it, 0, &e)) {
        alter_buf_str(m, first ? " (" : "; ");
        first = 0;
        if (alter_json_str_buf(e, m) == 0) continue;
        /* {"resource":"Issue","field":"title","code":"missing_field"}, or
         * a free-text "message" for code "custom". */
        alter_json_get(e, "message", &em);
        alter_json_get(e, "field", &ef);
        alter_json_get(e, "code", &ec);
        int fs = alter_json_type_of(ef) == ALTER_JSON_STRING, cs = alter_json_type_of(ec) == ALTER_JSON_STRING;
        if (alter_json_str_buf(em, m) == 0) continue;
        alter_size from = m->n;
        if (fs && cs) {
            alter_json_str_buf(ef, m);
            alter_buf_addc(m, ' ');
            from = m->n;
            alter_json_str_buf(ec, m);
        } else if (cs) {
            alter_json_str_buf(ec, m);
        } else {
            alter_jw w;
            alter_jw_init(&w, 0, 0);
            w.b = *m;
            alter_jw_value(&w, e);
            *m = w.b;
            continue;
        }
        underscores_to_spaces(m, from);
    }
    if (!first) alter_buf_addc(m, ')');
}

/* refused explains an unexpected status, in GitHub's words where it gave
 * some. what continues "while trying to ...", in up to four parts. */
static int refused(const alter_response *r, const char *what, const char *o, const char *slash, const char *n) {
    alter_buf m = alter_buf_make(msg, sizeof msg);
    char rem[8], reset[64];
    long long remn = alter_header(r, "x-ratelimit-remaining", rem, sizeof rem);
    if (r->status == 401) {
        alter_buf_str(&m, "GitHub refused the credential while trying to ");
    } else if (r->status == 403 && remn == 1 && rem[0] == '0') {
        long long rn = alter_header(r, "x-ratelimit-reset", reset, sizeof reset);
        alter_buf_str(&m, "GitHub's rate limit is used up; try again after ");
        alter_buf_str(&m, rn > 0 && rn < (long long)sizeof reset ? reset : "a while");
        alter_buf_str(&m, " (Unix time)");
    } else {
        alter_buf_str(&m, "GitHub answered ");
        alter_buf_int(&m, r->status);
        alter_buf_str(&m, " while trying to ");
    }
    if (r->status == 401 || !(r->status == 403 && remn == 1 && rem[0] == '0')) {
        alter_buf_str(&m, what);
        if (o) {
            alter_buf_str(&m, o);
            alter_buf_str(&m, slash);
            alter_buf_str(&m, n);
        }
        if (r->status == 401) alter_buf_str(&m, " (401)");
    }
    alter_size at = m.n;
    alter_buf_str(&m, ": ");
    github_message(r, &m);
    if (m.n == at + 2) m.n = at;
    return fail(&m);
}

/* is_space reports whether r is white space to Go's strings.TrimSpace. */
static int is_space(alter_u32 r) {
    return (r >= 0x09 && r <= 0x0D) || r == 0x20 || r == 0x85 || r == 0xA0 || r == 0x1680 ||
           (r >= 0x2000 && r <= 0x200A) || r == 0x2028 || r == 0x2029 || r == 0x202F ||
           r == 0x205F || r == 0x3000;
}

/* read_args reads the tool's arguments into *args. */
static int read_args(alter_json *args) {
    alter_size n = alter_input(in, sizeof in);
    if (n == 0) {
        args->p = "{}", args->n = 2;
        return 0;
    }
    if (n > sizeof in || alter_json_parse(in, n, args) || alter_json_type_of(*args) != ALTER_JSON_OBJECT) {
        alter_set_error("invalid arguments: not a JSON object");
        return -1;
    }
    return 0;
}

/* path_segment decodes an owner or repository name into dst (256 bytes)
 * and checks it, so it cannot change the URL path. */
static int path_segment(alter_json args, const char *name, char *dst) {
    alter_json v;
    long long n = 0;
    if (alter_json_get(args, name, &v) && alter_json_type_of(v) == ALTER_JSON_STRING) n = alter_json_str(v, dst, 256);
    if (n < 0 || n >= 256) n = 0, dst[0] = 0;
    int ok = n > 0 && n <= 100 && !alter_streq(dst, ".") && !alter_streq(dst, "..");
    for (long long i = 0; ok && i < n; i++) {
        char c = dst[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    }
    if (ok) return 0;
    /* Quoted as Go's strconv.Quote does for printable text. */
    alter_buf m = alter_buf_make(msg, sizeof msg);
    alter_buf_addc(&m, '"');
    for (long long i = 0; i < n && i < 200; i++) {
        if (dst[i] == '"' || dst[i] == '\\') alter_buf_addc(&m, '\\');
        alter_buf_addc(&m, dst[i]);
    }
    alter_buf_str(&m, "\" is not a valid GitHub ");
    alter_buf_str(&m, name);
    alter_buf_str(&m, " name");
    fail(&m);
    return -1;
}

ALTER_EXPORT("list_repos") int list_repos(void) {
    alter_json args, v, list, r;
    char vis[1024], sort[1024], per[24];
    if (read_args(&args)) return 1;
    alter_param q[3];
    alter_size nq = 0;
    long long n;
    if (alter_json_get(args, "visibility", &v) && (n = alter_json_str(v, vis, sizeof vis)) >= 0) {
        if (n >= (long long)sizeof vis) return fail_str("invalid arguments: visibility is too long");
        q[nq++] = (alter_param){"visibility", vis};
    }
    if (alter_json_get(args, "sort", &v) && (n = alter_json_str(v, sort, sizeof sort)) >= 0) {
        if (n >= (long long)sizeof sort) return fail_str("invalid arguments: sort is too long");
        q[nq++] = (alter_param){"sort", sort};
    }
    long long pp = 30;
    if (alter_json_get(args, "per_page", &v) && alter_json_int(v, &pp)) pp = pp < 1 ? 1 : pp > 100 ? 100 : pp;
    alter_buf pb = alter_buf_make(per, sizeof per);
    alter_buf_int(&pb, pp);
    alter_buf_cstr(&pb);
    q[nq++] = (alter_param){"per_page", per};

    alter_req req = {.method = "GET", .url = github_url("/user/repos", 0, 0, 0, 0), .query = q, .nquery = nq,
                     .headers = headers, .nheaders = 3};
    alter_response resp;
    if (alter_do(&req, reply, sizeof reply, &resp)) return alter_fail(&resp); /* grant_not_found carries the Connect URL */
    if (resp.status != 200) return refused(&resp, "list your repositories", 0, 0, 0);
    if (alter_json_parse(resp.body, resp.body_len, &list)) return fail_str("GitHub's repository list is not JSON");
    if (alter_json_type_of(list) != ALTER_JSON_ARRAY) return fail_str("GitHub's repository list is not a list");

    long long count = 0;
    alter_json_iter it = alter_json_items(list);
    while (alter_json_next(&it, 0, &r)) count++;
    alter_jw w;
    alter_jw_init(&w, out, sizeof out);
    alter_jw_object_begin(&w);
    alter_jw_key(&w, "count");
    alter_jw_int(&w, count);
    alter_jw_key(&w, "repos");
    alter_jw_array_begin(&w);
    it = alter_json_items(list);
    while (alter_json_next(&it, 0, &r)) {
        /* Values as GitHub sent them (null when missing), except private. */
        int private = 0;
        alter_jw_object_begin(&w);
        alter_jw_key(&w, "full_name");
        alter_json_get(r, "full_name", &v), alter_jw_value(&w, v);
        alter_jw_key(&w, "private");
        alter_jw_bool(&w, alter_json_get(r, "private", &v) && alter_json_bool(v, &private) && private);
        alter_jw_key(&w, "description");
        alter_json_get(r, "description", &v), alter_jw_value(&w, v);
        alter_jw_key(&w, "html_url");
        alter_json_get(r, "html_url", &v), alter_jw_value(&w, v);
        alter_jw_key(&w, "default_branch");
        alter_json_get(r, "default_branch", &v), alter_jw_value(&w, v);
        alter_jw_key(&w, "stars");
        alter_json_get(r, "stargazers_count", &v), alter_jw_value(&w, v);
        alter_jw_key(&w, "updated_at");
        alter_json_get(r, "updated_at", &v), alter_jw_value(&w, v);
        alter_jw_object_end(&w);
    }
    alter_jw_array_end(&w);
    alter_jw_object_end(&w);

    alter_buf m = alter_buf_make(msg, sizeof msg);
    alter_buf_str(&m, "list_repos: ");
    alter_buf_int(&m, count);
    alter_buf_str(&m, " repositories");
    alter_log_n(ALTER_DEBUG, msg, m.n);
    return alter_output_jw(&w);
}

ALTER_EXPORT("create_issue") int create_issue(void) {
    alter_json args, v, created;
    char owner[256], repo[256];
    if (read_args(&args)) return 1;
    if (path_segment(args, "owner", owner) || path_segment(args, "repo", repo)) return 1;

    long long tn = 0;
    if (alter_json_get(args, "title", &v) && alter_json_type_of(v) == ALTER_JSON_STRING)
        tn = alter_json_str(v, title, sizeof title);
    if (tn < 0 || tn > (long long)sizeof title) return fail_str("invalid arguments: the title is too long");
    int blank = 1;
    for (alter_size i = 0; blank && i < (alter_size)tn;) blank = is_space(alter_utf8_next(title, (alter_size)tn, &i));
    if (blank) return fail_str("an issue needs a title");

    alter_jw w;
    alter_jw_init(&w, json, sizeof json);
    alter_jw_object_begin(&w);
    alter_jw_key(&w, "title");
    alter_jw_strn(&w, title, (alter_size)tn);
    if (alter_json_get(args, "body", &v) && alter_json_type_of(v) == ALTER_JSON_STRING) {
        long long bn = alter_json_str(v, body, sizeof body);
        if (bn < 0 || bn > (long long)sizeof body) return fail_str("invalid arguments: the body is too long");
        alter_jw_key(&w, "body");
        alter_jw_strn(&w, body, (alter_size)bn);
    }
    alter_jw_object_end(&w);
    if (!alter_jw_ok(&w)) return fail_str("invalid arguments: the issue is too long");

    alter_req req = {.method = "POST", .url = github_url("/repos/", owner, "/", repo, "/issues"), .headers = headers,
                     .nheaders = 3, .json = json, .json_len = alter_jw_len(&w)};

    alter_response resp;
    if (alter_do(&req, reply, sizeof reply, &resp)) return alter_fail(&resp);
    alter_buf m = alter_buf_make(msg, sizeof msg);
    switch (resp.status) {
    case 201: break;
    case 404:
        /* GitHub says 404, not 403, for a private repository the token may
         * not see. */
        alter_buf_str(&m, "GitHub found no repository ");
        alter_buf_str(&m, owner);
        alter_buf_addc(&m, '/');
        alter_buf_str(&m, repo);
        alter_buf_str(&m, " that this account can see (404): ");
        github_message(&resp, &m);
        return fail(&m);
    case 410:
        alter_buf_str(&m, "issues are turned off in ");
        alter_buf_str(&m, owner);
        alter_buf_addc(&m, '/');
        alter_buf_str(&m, repo);
        alter_buf_str(&m, " (410)");
        return fail(&m);
    case 422:
        alter_buf_str(&m, "GitHub refused the issue (422): ");
        github_message(&resp, &m);
        return fail(&m);
    default: return refused(&resp, "open an issue in ", owner, "/", repo);
    }
    if (alter_json_parse(resp.body, resp.body_len, &created)) return fail_str("GitHub's answer is not JSON");
    alter_jw_init(&w, out, sizeof out);
    alter_jw_object_begin(&w);
    alter_jw_key(&w, "number");
    alter_json_get(created, "number", &v), alter_jw_value(&w, v);
    alter_jw_key(&w, "html_url");
    alter_json_get(created, "html_url", &v), alter_jw_value(&w, v);
    alter_jw_key(&w, "title");
    alter_json_get(created, "title", &v), alter_jw_value(&w, v);
    alter_jw_key(&w, "state");
    alter_json_get(created, "state", &v), alter_jw_value(&w, v);
    alter_jw_object_end(&w);
    return alter_output_jw(&w);
}
