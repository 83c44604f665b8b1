/*
 * sandbox - an example alterhost plugin in freestanding C for the built-in
 * sandbox provider (alterhost --dev): whoami, list_notes and add_note. It
 * calls the sandbox API as the signed-in person; the host adds the
 * person's access token to each request, so the plugin never sees it.
 *
 * It is the port of examples/go/sandbox and answers byte for byte as the
 * Go plugin does (internal/pluginbuild's differential test holds it to
 * that): the API's JSON compacted as Go's json.Compact does, API errors in
 * the Go plugin's words, alter_request errors as "code: message".
 *
 * Build: alterhost plugin build examples/c/sandbox, or see README.md.
 */
#include "alter.h"

/* The sandbox API, on a virtual host the host serves in-process. */
#define API "https://sandbox.alterhost.test/api/"

/* Static buffers: the module has no allocator, and the instance is reused
 * across calls. The reply buffer holds the largest answer the sandbox
 * gives (1000 notes of 2000 characters) with its JSON escaping. */
static char in[256 << 10];
static char text[256 << 10];
static char body[1536 << 10];
static char reply[12 << 20];
static char msg[64 << 10];

/* key_is reports whether the member name k matches name as Go's
 * encoding/json matches struct fields: without regard to case, where
 * U+017F (long s) counts as an s. name is lower-case ASCII. */
static int key_is(alter_json k, const char *name) {
    char key[64];
    long long n = alter_json_str(k, key, sizeof key);
    if (n < 0 || n >= (long long)sizeof key) return 0;
    for (long long i = 0; i < n; i++, name++) {
        unsigned char c = (unsigned char)key[i];
        if (c == 0xC5 && i + 1 < n && (unsigned char)key[i + 1] == 0xBF) { /* ſ */
            c = 's';
            i++;
        } else if (c >= 'A' && c <= 'Z') {
            c = (unsigned char)(c + 32);
        }
        if (*name == 0 || c != (unsigned char)*name) return 0;
    }
    return *name == 0;
}

/* api_error describes a refused API call from its status and OAuth error,
 * as the Go plugin's apiError does, and sets it as the call's error. */
static int api_error(const alter_response *r) {
    alter_buf m = alter_buf_make(msg, sizeof msg);
    alter_json doc, k, v, err = {0, 0}, desc = {0, 0};
    char auth[4096];
    alter_buf_str(&m, "the sandbox API answered ");
    alter_buf_int(&m, r->status);
    /* Go's json.Unmarshal into a struct: the last string member of each
     * name counts; members of other types, and bodies that are not JSON
     * objects, leave the field empty. */
    if (alter_json_parse(r->body, r->body_len, &doc) == 0) {
        alter_json_iter it = alter_json_items(doc);
        while (alter_json_type_of(doc) == ALTER_JSON_OBJECT && alter_json_next(&it, &k, &v)) {
            if (alter_json_type_of(v) != ALTER_JSON_STRING) continue;
            if (key_is(k, "error")) err = v;
            if (key_is(k, "error_description")) desc = v;
        }
    }
    alter_size at = m.n;
    alter_buf_str(&m, ": ");
    if (err.n == 0 || alter_json_str_buf(err, &m) || m.n == at + 2) m.n = at;
    at = m.n;
    alter_buf_str(&m, " (");
    if (desc.n == 0 || alter_json_str_buf(desc, &m) || m.n == at + 2) {
        m.n = at;
    } else {
        alter_buf_addc(&m, ')');
    }
    long long an = alter_header(r, "www-authenticate", auth, sizeof auth);
    if (an > 0) {
        alter_buf_str(&m, "; WWW-Authenticate: ");
        alter_buf_add(&m, auth, (alter_size)an < sizeof auth ? (alter_size)an : sizeof auth);
    }
    alter_set_error_n(msg, m.n < m.cap ? m.n : m.cap);
    return 1;
}

/* call makes one request to the sandbox API and outputs its answer, which
 * must be a JSON object, compacted. It returns the tool's return code. */
static int call(const char *method, const char *url, const char *json, alter_size json_len) {
    alter_param h[] = {{"Accept", "application/json"}};
    alter_req req = {.method = method, .url = url, .headers = h, .nheaders = 1, .json = json, .json_len = json_len};
    alter_response r;
    if (alter_do(&req, reply, sizeof reply, &r) != ALTER_OK) {
        /* Passed on as is: a grant_not_found or scope_reauth_required error
         * carries the connect URL the host shows the person. */
        return alter_fail(&r);
    }
    if (r.status / 100 != 2) return api_error(&r);
    alter_json doc;
    if (alter_json_parse(r.body, r.body_len, &doc) || alter_json_type_of(doc) != ALTER_JSON_OBJECT) {
        alter_buf m = alter_buf_make(msg, sizeof msg);
        alter_buf_str(&m, "the sandbox API answered ");
        alter_buf_int(&m, r.status);
        alter_buf_str(&m, " with something that is not a JSON object");
        alter_set_error_n(msg, m.n);
        return 1;
    }
    /* The body lives in reply[], ours to overwrite. */
    alter_output(doc.p, alter_json_compact(doc, (char *)doc.p));
    return 0;
}

ALTER_EXPORT("whoami") int whoami(void) { return call("GET", API "whoami", 0, 0); }

ALTER_EXPORT("list_notes") int list_notes(void) { return call("GET", API "notes", 0, 0); }

/* add_note: {"text": "..."} goes to the API as Go's json.Marshal writes it. */
ALTER_EXPORT("add_note") int add_note(void) {
    alter_json args, v;
    alter_size n = alter_input(in, sizeof in);
    if (n > sizeof in) {
        alter_set_error("invalid arguments: larger than this plugin takes");
        return 1;
    }
    if (alter_json_parse(in, n, &args) || alter_json_type_of(args) != ALTER_JSON_OBJECT) {
        alter_set_error("invalid arguments: not a JSON object");
        return 1;
    }
    long long tn = 0;
    if (alter_json_get(args, "text", &v) && alter_json_type_of(v) != ALTER_JSON_NULL) {
        tn = alter_json_str(v, text, sizeof text);
        if (tn < 0) {
            alter_set_error("invalid arguments: \"text\" is not a string");
            return 1;
        }
        if (tn > (long long)sizeof text) {
            alter_set_error("invalid arguments: larger than this plugin takes");
            return 1;
        }
    }
    alter_jw w;
    alter_jw_init(&w, body, sizeof body);
    alter_jw_object_begin(&w);
    alter_jw_key(&w, "text");
    alter_jw_strn(&w, text, (alter_size)tn);
    alter_jw_object_end(&w);
    if (!alter_jw_ok(&w)) {
        alter_set_error("invalid arguments: larger than this plugin takes");
        return 1;
    }
    return call("POST", API "notes", body, alter_jw_len(&w));
}
