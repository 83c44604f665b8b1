/*
 * harness - exports that put alter.h's pieces under test from Go
 * (abi/c/alter_test.go): each reads its input, runs one part of the
 * binding, and writes what it got as output.
 */
#include "alter.h"

static char in[1 << 16];
static char out[1 << 18];
static char buf[1 << 16];

static alter_size input(void) {
    alter_size n = alter_input(in, sizeof in);
    return n > sizeof in ? sizeof in : n;
}

/* valid: "1" if the input is one JSON value, else "0". */
ALTER_EXPORT("valid") int valid(void) {
    alter_json v;
    alter_output_str(alter_json_parse(in, input(), &v) ? "0" : "1");
    return 0;
}

/* decode: the input is a JSON string; the output its decoded bytes. */
ALTER_EXPORT("decode") int decode(void) {
    alter_json v;
    if (alter_json_parse(in, input(), &v)) return alter_set_error("invalid"), 1;
    long long n = alter_json_str(v, out, sizeof out);
    if (n < 0 || n >= (long long)sizeof out) return alter_set_error("not a string"), 1;
    alter_output(out, (alter_size)n);
    return 0;
}

/* quote: the input's bytes as a JSON string. */
ALTER_EXPORT("quote") int quote(void) {
    alter_jw w;
    alter_jw_init(&w, out, sizeof out);
    alter_jw_strn(&w, in, input());
    return alter_output_jw(&w);
}

/* reencode: the input JSON value written again by alter_jw_value. */
ALTER_EXPORT("reencode") int reencode(void) {
    alter_json v;
    alter_jw w;
    if (alter_json_parse(in, input(), &v)) return alter_set_error("invalid"), 1;
    alter_jw_init(&w, out, sizeof out);
    alter_jw_value(&w, v);
    return alter_output_jw(&w);
}

/* compact: the input JSON without insignificant white space, in place. */
ALTER_EXPORT("compact") int compact(void) {
    alter_json v;
    if (alter_json_parse(in, input(), &v)) return alter_set_error("invalid"), 1;
    alter_output(in, alter_json_compact(v, in));
    return 0;
}

/* args: the members "text" (string), "n" (integer) and "b" (boolean) of
 * the arguments, and the elements of "list", one per line. */
ALTER_EXPORT("args") int args(void) {
    alter_json a, v, e;
    alter_buf b = alter_buf_make(out, sizeof out);
    long long n;
    int flag;
    if (alter_args(in, sizeof in, &a)) return 1;
    if (alter_json_get(a, "text", &v) && alter_json_str_buf(v, &b) == 0) alter_buf_addc(&b, '\n');
    else alter_buf_str(&b, "-\n");
    if (alter_json_get(a, "n", &v) && alter_json_int(v, &n)) alter_buf_int(&b, n);
    else alter_buf_str(&b, "-");
    alter_buf_addc(&b, '\n');
    if (alter_json_get(a, "b", &v) && alter_json_bool(v, &flag)) alter_buf_str(&b, flag ? "true" : "false");
    else alter_buf_str(&b, "-");
    alter_buf_addc(&b, '\n');
    alter_json_get(a, "list", &v);
    alter_json_iter it = alter_json_items(v);
    while (alter_json_next(&it, 0, &e)) {
        alter_buf_add(&b, e.p, e.n);
        alter_buf_addc(&b, '\n');
    }
    alter_output(out, b.n);
    return 0;
}

/* request: sends a fixed request whose body is the input, and reports the
 * response or error as JSON. */
ALTER_EXPORT("request") int request(void) {
    alter_size n = input();
    static const alter_param q[] = {{"label", "bug"}, {"per_page", "50"}, {"label", "p1 & <p2>"}};
    static const alter_param h[] = {{"Accept", "application/json"}, {"X-Note", "h\xc3\xa9llo"}};
    alter_req req = {.method = "POST", .url = "https://api.example.com/items?a=1", .query = q, .nquery = 3,
                     .headers = h, .nheaders = 2, .body = in, .body_len = n};
    alter_response r;
    alter_code code = alter_do(&req, buf, sizeof buf, &r);
    alter_jw w;
    char ct[64];
    alter_jw_init(&w, out, sizeof out);
    alter_jw_object_begin(&w);
    alter_jw_key(&w, "code");
    alter_jw_int(&w, code);
    if (code != ALTER_OK) {
        alter_jw_key(&w, "name");
        alter_jw_str(&w, r.err.code_name);
        alter_jw_key(&w, "message");
        alter_jw_str(&w, r.err.message);
        alter_jw_key(&w, "connect_url");
        alter_jw_str(&w, r.err.connect_url);
        alter_jw_key(&w, "missing_scopes");
        alter_jw_array_begin(&w);
        for (int i = 0; i < r.err.n_missing_scopes; i++) alter_jw_str(&w, r.err.missing_scopes[i]);
        alter_jw_array_end(&w);
    } else {
        alter_jw_key(&w, "status");
        alter_jw_int(&w, r.status);
        alter_jw_key(&w, "body");
        alter_jw_array_begin(&w);
        for (alter_size i = 0; i < r.body_len; i++) alter_jw_int(&w, (unsigned char)r.body[i]);
        alter_jw_array_end(&w);
        long long cn = alter_header(&r, "content-type", ct, sizeof ct);
        alter_jw_key(&w, "content_type");
        if (cn < 0) alter_jw_null(&w);
        else alter_jw_strn(&w, ct, (alter_size)cn);
    }
    alter_jw_object_end(&w);
    return alter_output_jw(&w);
}

/* fail: sends a GET and passes any error on with alter_fail. */
ALTER_EXPORT("fail") int fail(void) {
    alter_response r;
    if (alter_get("https://api.example.com/", buf, sizeof buf, &r)) return alter_fail(&r);
    alter_output_str("ok");
    return 0;
}

/* mcp: an MCP result with two text items, structured content and isError. */
ALTER_EXPORT("mcp") int mcp(void) {
    alter_jw w;
    alter_jw_init(&w, out, sizeof out);
    alter_mcp_begin(&w);
    alter_mcp_textn(&w, in, input());
    alter_mcp_text(&w, "<second>");
    alter_mcp_content_end(&w);
    alter_jw_key(&w, "structuredContent");
    alter_jw_object_begin(&w);
    alter_jw_key(&w, "n");
    alter_jw_int(&w, -9223372036854775807LL - 1);
    alter_jw_key(&w, "ok");
    alter_jw_bool(&w, 0);
    alter_jw_object_end(&w);
    alter_mcp_end(&w, 1);
    return alter_output_jw(&w);
}

/* setting: the value of the setting named by the input, or "(none)". */
ALTER_EXPORT("setting") int setting(void) {
    in[input()] = 0;
    long long n = alter_setting(in, out, sizeof out);
    if (n < 0) alter_output_str("(none)");
    else alter_output(out, (alter_size)n);
    alter_log(ALTER_INFO, "setting read");
    return 0;
}

/* tiny: a JSON writer too small for its output. */
ALTER_EXPORT("tiny") int tiny(void) {
    char small[4];
    alter_jw w;
    alter_jw_init(&w, small, sizeof small);
    alter_jw_str(&w, "longer than four");
    return alter_output_jw(&w);
}
