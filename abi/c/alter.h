/*
 * alter.h - the guest side of alterhost's ABI alter/v1 for C plugins.
 *
 * One header, freestanding: no libc, no wasi-libc, no allocator. The
 * module it builds imports nothing but the Extism kernel (extism:host/env)
 * and the host's alter_request (extism:host/user), so it needs no WASI at
 * all. It also compiles against wasi-libc's headers, for plugins that want
 * libc for their own code.
 *
 * Build a plugin (clang and wasm-ld, e.g. Debian's clang and lld):
 *
 *   clang --target=wasm32 -nostdlib -O2 -Wall -Wextra -I abi/c \
 *         -Wl,--no-entry -o NAME.wasm NAME.c
 *   go run ./cmd/alterhost plugin embed NAME.wasm alter.json
 *
 * Mark each tool ALTER_EXPORT("name") (or link with -Wl,--export=name) and
 * make it return 0 on success, non-zero after setting an error:
 *
 *   ALTER_EXPORT("hello") int hello(void) {
 *       alter_output_str("hello, world");
 *       return 0;
 *   }
 *
 * What is here, by section:
 *   - input, output and errors: alter_input, alter_output, alter_set_error;
 *   - settings and logs: alter_setting, alter_log;
 *   - byte buffers (alter_buf) and UTF-8 (alter_utf8_next);
 *   - a JSON reader (alter_json_parse, alter_json_get, alter_json_next,
 *     alter_json_str, alter_json_int, alter_json_bool) and the tool's
 *     arguments (alter_args);
 *   - a JSON writer (alter_jw_*), escaping exactly as Go's json.Marshal;
 *   - requests: alter_do fills an alter_response (status, body, headers)
 *     or its typed alter_error (alter_code, message, connect_url, missing
 *     scopes); alter_fail passes the error on; alter_request is the raw
 *     JSON form underneath;
 *   - results: alter_output_jw for JSON, alter_mcp_* for MCP results.
 *
 * Memory: every function works in buffers the caller passes (static
 * arrays are simplest, since the module has no allocator and the
 * instance is reused across calls). A function that writes into a buffer
 * of cap bytes never writes past it; like snprintf, it reports the full
 * length, so a result longer than cap is how a too-small buffer shows.
 *
 * The Extism kernel keeps the input, output, errors and alter_request
 * messages in its own memory; the helpers copy between it and your
 * buffers, 8 bytes per call and the tail byte by byte, since each call
 * crosses into the host.
 *
 * Include this header in one translation unit per module, or several: it
 * holds only static inline functions and weak definitions.
 */
#ifndef ALTER_H
#define ALTER_H

typedef __SIZE_TYPE__ alter_size;
typedef unsigned long long alter_u64;
typedef unsigned int alter_u32;

/* ALTER_EXPORT("name") exports the function that follows as tool "name". */
#define ALTER_EXPORT(name) __attribute__((export_name(name), used))

#define ALTER__KERNEL(name) \
    __attribute__((import_module("extism:host/env"), import_name(#name)))

/* The Extism kernel. Offsets are into the kernel's memory, not ours. */
ALTER__KERNEL(input_length) alter_u64 alter_kernel_input_length(void);
ALTER__KERNEL(input_load_u8) alter_u32 alter_kernel_input_load_u8(alter_u64 offset);
ALTER__KERNEL(input_load_u64) alter_u64 alter_kernel_input_load_u64(alter_u64 offset);
ALTER__KERNEL(alloc) alter_u64 alter_kernel_alloc(alter_u64 n);
ALTER__KERNEL(free) void alter_kernel_free(alter_u64 offset);
ALTER__KERNEL(length) alter_u64 alter_kernel_length(alter_u64 offset);
ALTER__KERNEL(load_u8) alter_u32 alter_kernel_load_u8(alter_u64 offset);
ALTER__KERNEL(load_u64) alter_u64 alter_kernel_load_u64(alter_u64 offset);
ALTER__KERNEL(store_u8) void alter_kernel_store_u8(alter_u64 offset, alter_u32 v);
ALTER__KERNEL(store_u64) void alter_kernel_store_u64(alter_u64 offset, alter_u64 v);
ALTER__KERNEL(output_set) void alter_kernel_output_set(alter_u64 offset, alter_u64 n);
ALTER__KERNEL(error_set) void alter_kernel_error_set(alter_u64 offset);
ALTER__KERNEL(config_get) alter_u64 alter_kernel_config_get(alter_u64 key);
ALTER__KERNEL(log_debug) void alter_kernel_log_debug(alter_u64 msg);
ALTER__KERNEL(log_info) void alter_kernel_log_info(alter_u64 msg);
ALTER__KERNEL(log_warn) void alter_kernel_log_warn(alter_u64 msg);
ALTER__KERNEL(log_error) void alter_kernel_log_error(alter_u64 msg);

/* The host's one door out of the sandbox; see alter_do below. */
__attribute__((import_module("extism:host/user"), import_name("alter_request")))
alter_u64 alter_host_request(alter_u64 request);

/* ---- Freestanding helpers ------------------------------------------- */

/* clang may turn copy and fill loops into calls to memcpy and memset even
 * without libc, so a freestanding module must define them. Weak, so a
 * module that brings its own (or links wasi-libc) wins. LLVM never rewrites
 * a function named memcpy or memset into a call to itself. */
__attribute__((weak)) void *memcpy(void *dst, const void *src, alter_size n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

__attribute__((weak)) void *memset(void *dst, int c, alter_size n) {
    unsigned char *d = dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}

/* alter_strlen returns the length of the NUL-terminated string s. */
static inline alter_size alter_strlen(const char *s) {
    alter_size n = 0;
    while (s[n]) n++;
    return n;
}

/* alter_memcpy copies n bytes from src to dst; they must not overlap. */
static inline void *alter_memcpy(void *dst, const void *src, alter_size n) {
    return __builtin_memcpy(dst, src, n);
}

/* alter_memeq reports whether the n bytes at a and b are equal. */
static inline int alter_memeq(const void *a, const void *b, alter_size n) {
    const unsigned char *x = a, *y = b;
    for (alter_size i = 0; i < n; i++)
        if (x[i] != y[i]) return 0;
    return 1;
}

/* alter_streq reports whether the NUL-terminated a and b are equal. */
static inline int alter_streq(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

/* alter_utoa writes v in decimal to buf, which must hold 20 bytes, and
 * returns the number of digits written (no NUL). */
static inline alter_size alter_utoa(alter_u64 v, char *buf) {
    char tmp[20];
    alter_size n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (alter_size i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    return n;
}

/* ---- Kernel memory -------------------------------------------------- */

/* alter__load copies n bytes of kernel block off (input: the call's
 * input instead) to dst. */
static inline void alter__load(int input, alter_u64 off, char *dst, alter_size n) {
    alter_size i = 0;
    for (; i + 8 <= n; i += 8) {
        alter_u64 v = input ? alter_kernel_input_load_u64(i) : alter_kernel_load_u64(off + i);
        __builtin_memcpy(dst + i, &v, 8); /* wasm is little-endian, as the kernel */
    }
    for (; i < n; i++)
        dst[i] = (char)(input ? alter_kernel_input_load_u8(i) : alter_kernel_load_u8(off + i));
}

/* alter__put copies n bytes into kernel block off at position at. */
static inline void alter__put(alter_u64 off, alter_size at, const char *src, alter_size n) {
    alter_size i = 0;
    for (; i + 8 <= n; i += 8) {
        alter_u64 v;
        __builtin_memcpy(&v, src + i, 8);
        alter_kernel_store_u64(off + at + i, v);
    }
    for (; i < n; i++) alter_kernel_store_u8(off + at + i, (unsigned char)src[i]);
}

/* alter__store copies n bytes into a new kernel block and returns its
 * offset, or 0 for n == 0: the kernel has no empty blocks. */
static inline alter_u64 alter__store(const char *src, alter_size n) {
    if (n == 0) return 0;
    alter_u64 off = alter_kernel_alloc(n);
    alter__put(off, 0, src, n);
    return off;
}

/* ---- Input, output, errors ------------------------------------------ */

/* alter_input_length returns the length of the call's input: for a tool,
 * its arguments as a UTF-8 JSON object. */
static inline alter_size alter_input_length(void) {
    return (alter_size)alter_kernel_input_length();
}

/* alter_input copies the call's input into buf and returns its length. If
 * that is more than cap, only cap bytes were copied: check, like snprintf. */
static inline alter_size alter_input(char *buf, alter_size cap) {
    alter_size n = alter_input_length();
    alter__load(1, 0, buf, n < cap ? n : cap);
    return n;
}

/* alter_output sets the call's output to the n bytes at buf, replacing any
 * set before. */
static inline void alter_output(const char *buf, alter_size n) {
    alter_kernel_output_set(alter__store(buf, n), n);
}

/* alter_output_str sets the call's output to the NUL-terminated s: the
 * text of a tool whose manifest says "result": "text". */
static inline void alter_output_str(const char *s) { alter_output(s, alter_strlen(s)); }

/* alter_set_error_n makes the call fail with the n-byte message msg; the
 * host reports it as the tool's error. Then return non-zero. */
static inline void alter_set_error_n(const char *msg, alter_size n) {
    if (n == 0) { /* an empty message would read as "no error" */
        msg = "tool failed";
        n = 11;
    }
    alter_kernel_error_set(alter__store(msg, n));
}

/* alter_set_error makes the call fail with the NUL-terminated message msg;
 * the host reports it as the tool's error. Then return non-zero. */
static inline void alter_set_error(const char *msg) { alter_set_error_n(msg, alter_strlen(msg)); }

/* ---- Settings and logs ---------------------------------------------- */

/* alter_setting copies the value of the plugin setting key (NUL-terminated)
 * into buf and returns its length; if that is more than cap, only cap bytes
 * were copied. A value shorter than cap is NUL-terminated. It returns -1
 * for a setting with no value. Settings come from the operator's
 * NAME.config.json over the manifest's defaults; they are never secrets. */
static inline long long alter_setting(const char *key, char *buf, alter_size cap) {
    alter_size klen = alter_strlen(key);
    if (klen == 0) return -1;
    alter_u64 k = alter__store(key, klen);
    alter_u64 off = alter_kernel_config_get(k);
    alter_kernel_free(k);
    if (off == 0) return -1;
    alter_size n = (alter_size)alter_kernel_length(off);
    alter__load(0, off, buf, n < cap ? n : cap);
    if (n < cap) buf[n] = 0;
    alter_kernel_free(off);
    return (long long)n;
}

enum alter_level { ALTER_DEBUG, ALTER_INFO, ALTER_WARN, ALTER_ERROR };

/* alter_log_n writes the n-byte msg to the host's log at level, tagged
 * with the plugin. The host drops lines below its own level. */
static inline void alter_log_n(enum alter_level level, const char *msg, alter_size n) {
    if (n == 0) return;
    alter_u64 off = alter__store(msg, n); /* the host frees it */
    switch (level) {
    case ALTER_DEBUG: alter_kernel_log_debug(off); break;
    case ALTER_INFO: alter_kernel_log_info(off); break;
    case ALTER_WARN: alter_kernel_log_warn(off); break;
    default: alter_kernel_log_error(off); break;
    }
}

/* alter_log writes the NUL-terminated msg to the host's log at level. */
static inline void alter_log(enum alter_level level, const char *msg) {
    alter_log_n(level, msg, alter_strlen(msg));
}

/* ---- Byte buffers --------------------------------------------------- */

/* alter_buf appends bytes to a caller's buffer p of cap bytes. n counts
 * every byte appended, also those that did not fit, so n > cap says the
 * buffer was too small and by how much. */
typedef struct {
    char *p;
    alter_size cap, n;
} alter_buf;

static inline alter_buf alter_buf_make(char *p, alter_size cap) {
    alter_buf b = {p, cap, 0};
    return b;
}

static inline void alter_buf_addc(alter_buf *b, char c) {
    if (b->n < b->cap) b->p[b->n] = c;
    b->n++;
}

static inline void alter_buf_add(alter_buf *b, const void *s, alter_size n) {
    if (b->n < b->cap) {
        alter_size room = b->cap - b->n;
        __builtin_memcpy(b->p + b->n, s, n < room ? n : room);
    }
    b->n += n;
}

static inline void alter_buf_str(alter_buf *b, const char *s) { alter_buf_add(b, s, alter_strlen(s)); }

/* alter_buf_int appends v in decimal. */
static inline void alter_buf_int(alter_buf *b, long long v) {
    char d[20];
    alter_u64 u = (alter_u64)v;
    if (v < 0) {
        alter_buf_addc(b, '-');
        u = 0 - u; /* also right for the most negative value */
    }
    alter_buf_add(b, d, alter_utoa(u, d));
}

/* alter_buf_ok reports whether everything appended fit. */
static inline int alter_buf_ok(const alter_buf *b) { return b->n <= b->cap; }

/* alter_buf_cstr NUL-terminates the buffer and returns it, or returns 0
 * if the text and its NUL do not fit. */
static inline const char *alter_buf_cstr(alter_buf *b) {
    if (b->n >= b->cap) return 0;
    b->p[b->n] = 0;
    return b->p;
}

/* ---- UTF-8 ---------------------------------------------------------- */

/* alter_utf8_next decodes the code point at s[*i] (of n bytes) and
 * advances *i past it. A byte that does not start a valid, shortest,
 * non-surrogate sequence is one U+FFFD, as in Go and the WHATWG decoder. */
static inline alter_u32 alter_utf8_next(const char *s, alter_size n, alter_size *i) {
    const unsigned char *u = (const unsigned char *)s + *i;
    alter_size left = n - *i;
    alter_u32 b = u[0], r, min;
    alter_size len;
    if (b < 0x80) {
        *i += 1;
        return b;
    } else if (b >= 0xC2 && b < 0xE0) {
        len = 2, r = b & 0x1F, min = 0x80;
    } else if (b >= 0xE0 && b < 0xF0) {
        len = 3, r = b & 0x0F, min = 0x800;
    } else if (b >= 0xF0 && b < 0xF5) {
        len = 4, r = b & 0x07, min = 0x10000;
    } else {
        goto invalid;
    }
    if (left < len) goto invalid;
    for (alter_size k = 1; k < len; k++) {
        if ((u[k] & 0xC0) != 0x80) goto invalid;
        r = r << 6 | (u[k] & 0x3F);
    }
    if (r < min || r > 0x10FFFF || (r >= 0xD800 && r < 0xE000)) goto invalid;
    *i += len;
    return r;
invalid:
    *i += 1;
    return 0xFFFD;
}

/* alter_utf8_encode writes r as UTF-8 to out (4 bytes of room) and
 * returns the number of bytes. */
static inline int alter_utf8_encode(alter_u32 r, unsigned char *out) {
    if (r < 0x80) {
        out[0] = (unsigned char)r;
        return 1;
    }
    if (r < 0x800) {
        out[0] = (unsigned char)(0xC0 | r >> 6);
        out[1] = (unsigned char)(0x80 | (r & 0x3F));
        return 2;
    }
    if (r < 0x10000) {
        out[0] = (unsigned char)(0xE0 | r >> 12);
        out[1] = (unsigned char)(0x80 | (r >> 6 & 0x3F));
        out[2] = (unsigned char)(0x80 | (r & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | r >> 18);
    out[1] = (unsigned char)(0x80 | (r >> 12 & 0x3F));
    out[2] = (unsigned char)(0x80 | (r >> 6 & 0x3F));
    out[3] = (unsigned char)(0x80 | (r & 0x3F));
    return 4;
}

/* alter_utf8_valid reports whether the n bytes at s are valid UTF-8. */
static inline int alter_utf8_valid(const char *s, alter_size n) {
    alter_size i = 0;
    while (i < n) {
        alter_size at = i;
        /* A real U+FFFD takes 3 bytes; a one-byte U+FFFD is a bad byte. */
        if (alter_utf8_next(s, n, &i) == 0xFFFD && i - at == 1) return 0;
    }
    return 1;
}

/* ---- JSON reader ---------------------------------------------------- */

/* alter_json is one JSON value: the span of its text in a buffer the
 * caller keeps, from its first to its last byte. n == 0 is no value.
 * Values come from alter_json_parse, which checks the whole document, and
 * from alter_json_get and alter_json_next on them. Nothing is copied or
 * decoded until asked (alter_json_str, alter_json_int, ...). */
typedef struct {
    const char *p;
    alter_size n;
} alter_json;

typedef enum {
    ALTER_JSON_NONE, /* no value: a member that is not there */
    ALTER_JSON_NULL,
    ALTER_JSON_BOOL,
    ALTER_JSON_NUMBER,
    ALTER_JSON_STRING,
    ALTER_JSON_ARRAY,
    ALTER_JSON_OBJECT
} alter_json_type;

/* Nesting deeper than this is refused, so a hostile document cannot
 * exhaust anything; define it before including alter.h to change it. */
#ifndef ALTER_JSON_MAX_DEPTH
#define ALTER_JSON_MAX_DEPTH 1000
#endif

static inline const char *alter__ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static inline int alter__hexval(char h) {
    return h >= '0' && h <= '9'   ? h - '0'
           : h >= 'a' && h <= 'f' ? h - 'a' + 10
           : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                  : -1;
}

/* alter__hex4 reads four hex digits at p into *v; -1 if there are none. */
static inline int alter__hex4(const char *p, const char *end, alter_u32 *v) {
    if (end - p < 4) return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int d = alter__hexval(p[i]);
        if (d < 0) return -1;
        *v = *v << 4 | (alter_u32)d;
    }
    return 0;
}

/* alter__skip_string steps over the string starting at its quote p and
 * returns the byte after its closing quote, or 0 if it is not valid. */
static inline const char *alter__skip_string(const char *p, const char *end) {
    if (p >= end || *p != '"') return 0;
    for (p++;; p++) {
        if (p >= end) return 0;
        unsigned char c = (unsigned char)*p;
        if (c == '"') return p + 1;
        if (c < 0x20) return 0; /* control characters must be escaped */
        if (c != '\\') continue;
        if (++p >= end) return 0;
        switch (*p) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': break;
        case 'u': {
            alter_u32 v;
            if (alter__hex4(p + 1, end, &v)) return 0;
            p += 4;
            break;
        }
        default: return 0;
        }
    }
}

static inline const char *alter__skip_number(const char *p, const char *end) {
    if (p < end && *p == '-') p++;
    if (p >= end) return 0;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return 0;
    }
    if (p < end && *p == '.') {
        const char *d = ++p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        if (p == d) return 0;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        const char *d = p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        if (p == d) return 0;
    }
    return p;
}

static inline const char *alter__skip_word(const char *p, const char *end, const char *w) {
    for (; *w; w++, p++)
        if (p >= end || *p != *w) return 0;
    return p;
}

/* alter__skip_value steps over one JSON value starting at p (no leading
 * white space) and returns the byte after it, or 0 if it is not valid
 * JSON. It keeps its own stack of open containers, one bit each, so
 * nesting costs no C stack. */
static inline const char *alter__skip_value(const char *p, const char *end) {
    unsigned char stack[(ALTER_JSON_MAX_DEPTH + 7) / 8];
    int depth = 0;
#define ALTER__TOP_IS_OBJECT (stack[(depth - 1) / 8] >> ((depth - 1) % 8) & 1)
value:
    p = alter__ws(p, end);
    if (p >= end) return 0;
    switch (*p) {
    case '{':
    case '[': {
        int obj = *p == '{';
        if (depth == ALTER_JSON_MAX_DEPTH) return 0;
        if (obj)
            stack[depth / 8] |= (unsigned char)(1u << depth % 8);
        else
            stack[depth / 8] &= (unsigned char)~(1u << depth % 8);
        depth++;
        p = alter__ws(p + 1, end);
        if (p < end && *p == (obj ? '}' : ']')) {
            p++;
            depth--;
            goto after;
        }
        if (obj) goto key;
        goto value;
    }
    case '"': p = alter__skip_string(p, end); break;
    case 't': p = alter__skip_word(p, end, "true"); break;
    case 'f': p = alter__skip_word(p, end, "false"); break;
    case 'n': p = alter__skip_word(p, end, "null"); break;
    default: p = alter__skip_number(p, end); break;
    }
    if (!p) return 0;
after:
    if (depth == 0) return p;
    p = alter__ws(p, end);
    if (p >= end) return 0;
    if (*p == ',') {
        p++;
        if (ALTER__TOP_IS_OBJECT) goto key;
        goto value;
    }
    if (*p != (ALTER__TOP_IS_OBJECT ? '}' : ']')) return 0;
    p++;
    depth--;
    goto after;
key:
    p = alter__ws(p, end);
    p = alter__skip_string(p, end);
    if (!p) return 0;
    p = alter__ws(p, end);
    if (p >= end || *p != ':') return 0;
    p++;
    goto value;
#undef ALTER__TOP_IS_OBJECT
}

/* alter_json_parse checks that the n bytes at text are exactly one JSON
 * value (RFC 8259; white space around it is fine) and sets *v to it. It
 * returns 0, or -1 if the text is not valid JSON, leaving *v empty. */
static inline int alter_json_parse(const char *text, alter_size n, alter_json *v) {
    const char *end = text + n, *p = alter__ws(text, end), *q;
    v->p = text, v->n = 0;
    if (p >= end || !(q = alter__skip_value(p, end)) || alter__ws(q, end) != end) return -1;
    v->p = p, v->n = (alter_size)(q - p);
    return 0;
}

/* alter_json_type_of says what kind of value v is. */
static inline alter_json_type alter_json_type_of(alter_json v) {
    if (v.n == 0) return ALTER_JSON_NONE;
    switch (v.p[0]) {
    case 'n': return ALTER_JSON_NULL;
    case 't': case 'f': return ALTER_JSON_BOOL;
    case '"': return ALTER_JSON_STRING;
    case '[': return ALTER_JSON_ARRAY;
    case '{': return ALTER_JSON_OBJECT;
    default: return ALTER_JSON_NUMBER;
    }
}

/* alter_json_iter walks the members of an object or the elements of an
 * array; see alter_json_next. */
typedef struct {
    const char *p, *end;
    int object;
} alter_json_iter;

/* alter_json_items starts a walk over v, an object or an array. Any other
 * value walks as empty. */
static inline alter_json_iter alter_json_items(alter_json v) {
    alter_json_iter it = {v.p + v.n, v.p + v.n, 0};
    alter_json_type t = alter_json_type_of(v);
    if (t == ALTER_JSON_OBJECT || t == ALTER_JSON_ARRAY) {
        it.p = v.p + 1;
        it.end = v.p + v.n - 1; /* the closing bracket */
        it.object = t == ALTER_JSON_OBJECT;
    }
    return it;
}

/* alter_json_next sets *val to the next element, and for an object *key
 * (if key is not 0) to the member's name, a string value; it returns 1,
 * or 0 when there are no more. */
static inline int alter_json_next(alter_json_iter *it, alter_json *key, alter_json *val) {
    const char *p = alter__ws(it->p, it->end), *q;
    if (p < it->end && *p == ',') p = alter__ws(p + 1, it->end);
    if (p >= it->end) return 0;
    if (it->object) {
        if (!(q = alter__skip_string(p, it->end))) goto stop;
        if (key) key->p = p, key->n = (alter_size)(q - p);
        p = alter__ws(q, it->end);
        if (p >= it->end || *p != ':') goto stop;
        p = alter__ws(p + 1, it->end);
    }
    if (!(q = alter__skip_value(p, it->end))) goto stop;
    val->p = p, val->n = (alter_size)(q - p);
    it->p = q;
    return 1;
stop: /* only on a value that alter_json_parse did not check */
    it->p = it->end;
    return 0;
}

/* alter__str_step decodes the next character of a JSON string whose
 * opening quote is behind *pp into out (4 bytes of room) and returns its
 * length, 0 at the closing quote, or -1 if the string is not valid. With
 * fix, invalid UTF-8 becomes U+FFFD, as Go's decoder does; without, bytes
 * pass as they are, so the result is never longer than the JSON text. A
 * \u escape of a lone surrogate is U+FFFD either way. */
static inline int alter__str_step(const char **pp, const char *end, unsigned char *out, int fix) {
    const char *p = *pp;
    if (p >= end) return -1;
    unsigned char c = (unsigned char)*p;
    if (c == '"') {
        *pp = p + 1;
        return 0;
    }
    if (c < 0x20) return -1;
    if (c == '\\') {
        if (++p >= end) return -1;
        char e = *p++;
        *pp = p;
        switch (e) {
        case '"': case '\\': case '/': out[0] = (unsigned char)e; return 1;
        case 'b': out[0] = '\b'; return 1;
        case 'f': out[0] = '\f'; return 1;
        case 'n': out[0] = '\n'; return 1;
        case 'r': out[0] = '\r'; return 1;
        case 't': out[0] = '\t'; return 1;
        case 'u': {
            alter_u32 r, lo;
            if (alter__hex4(p, end, &r)) return -1;
            p += 4;
            if (r >= 0xD800 && r < 0xDC00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
                !alter__hex4(p + 2, end, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                r = 0x10000 + ((r - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (r >= 0xD800 && r < 0xE000) {
                r = 0xFFFD; /* a lone surrogate; what follows is read on its own */
            }
            *pp = p;
            return alter_utf8_encode(r, out);
        }
        default: return -1;
        }
    }
    if (c < 0x80 || !fix) {
        out[0] = c;
        *pp = p + 1;
        return 1;
    }
    alter_size i = 0, n = (alter_size)(end - p);
    alter_u32 r = alter_utf8_next(p, n, &i);
    *pp = p + i;
    if (r == 0xFFFD && i == 1) return alter_utf8_encode(r, out);
    for (alter_size k = 0; k < i; k++) out[k] = (unsigned char)p[k];
    return (int)i;
}

/* alter_json_str decodes the string v into buf (escapes, surrogate pairs,
 * invalid UTF-8 as U+FFFD, as Go does) and returns its length in bytes,
 * or -1 if v is not a string. At most cap bytes are written; a result
 * shorter than cap is NUL-terminated, so "n < 0 || n >= cap" catches both
 * a missing value and one that did not fit. */
static inline long long alter_json_str(alter_json v, char *buf, alter_size cap) {
    if (alter_json_type_of(v) != ALTER_JSON_STRING) return -1;
    const char *p = v.p + 1, *end = v.p + v.n;
    alter_buf b = alter_buf_make(buf, cap);
    unsigned char u[4];
    int k;
    while ((k = alter__str_step(&p, end, u, 1)) > 0) alter_buf_add(&b, u, (alter_size)k);
    if (k < 0) return -1;
    if (b.n < cap) buf[b.n] = 0;
    return (long long)b.n;
}

/* alter_json_str_buf appends the decoded string v to b; it returns 0, or
 * -1 (appending nothing) if v is not a string. */
static inline int alter_json_str_buf(alter_json v, alter_buf *b) {
    if (alter_json_type_of(v) != ALTER_JSON_STRING) return -1;
    const char *p = v.p + 1, *end = v.p + v.n;
    alter_size start = b->n;
    unsigned char u[4];
    int k;
    while ((k = alter__str_step(&p, end, u, 1)) > 0) alter_buf_add(b, u, (alter_size)k);
    if (k < 0) b->n = start;
    return k < 0 ? -1 : 0;
}

/* alter_json_eq reports whether v is a string equal, once decoded, to the
 * NUL-terminated s. */
static inline int alter_json_eq(alter_json v, const char *s) {
    if (alter_json_type_of(v) != ALTER_JSON_STRING) return 0;
    const char *p = v.p + 1, *end = v.p + v.n;
    unsigned char u[4];
    int k;
    while ((k = alter__str_step(&p, end, u, 1)) > 0) {
        for (int i = 0; i < k; i++, s++)
            if (*s == 0 || (unsigned char)*s != u[i]) return 0;
    }
    return k == 0 && *s == 0;
}

/* alter_json_get finds the member name of the object obj and sets *out to
 * its value; it returns 1, or 0 (and *out empty) if obj is not an object
 * or has no such member. Of repeated names the last counts, as in Go and
 * JavaScript. */
static inline int alter_json_get(alter_json obj, const char *name, alter_json *out) {
    alter_json_iter it = alter_json_items(obj);
    alter_json k, v;
    int found = 0;
    out->p = obj.p, out->n = 0;
    if (alter_json_type_of(obj) != ALTER_JSON_OBJECT) return 0;
    while (alter_json_next(&it, &k, &v))
        if (alter_json_eq(k, name)) *out = v, found = 1;
    return found;
}

/* alter_json_int sets *out to the integer v and returns 1, or returns 0 if
 * v is not a number without fraction or exponent that fits in 64 bits. */
static inline int alter_json_int(alter_json v, long long *out) {
    if (alter_json_type_of(v) != ALTER_JSON_NUMBER) return 0;
    const char *p = v.p, *end = v.p + v.n;
    int neg = *p == '-';
    alter_u64 u = 0, limit = neg ? (alter_u64)1 << 63 : ((alter_u64)1 << 63) - 1;
    if (neg) p++;
    if (p == end) return 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9') return 0;
        alter_u64 d = (alter_u64)(*p - '0');
        if (u > (limit - d) / 10) return 0;
        u = u * 10 + d;
    }
    *out = neg ? (long long)(0 - u) : (long long)u;
    return 1;
}

/* alter_json_bool sets *out to 1 or 0 for true or false and returns 1, or
 * returns 0 if v is not a boolean. */
static inline int alter_json_bool(alter_json v, int *out) {
    if (alter_json_type_of(v) != ALTER_JSON_BOOL) return 0;
    *out = v.p[0] == 't';
    return 1;
}

/* alter_json_compact writes v without its insignificant white space to
 * dst, which may be v.p itself, and returns the length: the same bytes
 * Go's json.Compact gives. v must come from alter_json_parse. */
static inline alter_size alter_json_compact(alter_json v, char *dst) {
    alter_size o = 0;
    for (alter_size i = 0; i < v.n; i++) {
        char c = v.p[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
        dst[o++] = c;
        if (c != '"') continue;
        for (i++; i < v.n; i++) { /* a string: copied as it is */
            c = v.p[i];
            dst[o++] = c;
            if (c == '\\') {
                dst[o++] = v.p[++i];
            } else if (c == '"') {
                break;
            }
        }
    }
    return o;
}

/* ---- The tool's arguments ------------------------------------------- */

/* alter_args reads the call's input, the tool's arguments as one JSON
 * object, into buf and sets *args to it. An empty input is the empty
 * object, so a tool without arguments may be called with none. On failure
 * it sets the call's error and returns -1: return 1 from the tool then.
 *
 *   static char in[64 << 10];
 *   alter_json args, v;
 *   char text[256];
 *   if (alter_args(in, sizeof in, &args)) return 1;
 *   alter_json_get(args, "text", &v);           (v is empty if it is missing)
 *   long long n = alter_json_str(v, text, sizeof text);
 *   if (n < 0 || n >= (long long)sizeof text) ... missing, not a string, or too long
 */
static inline int alter_args(char *buf, alter_size cap, alter_json *args) {
    alter_size n = alter_input(buf, cap);
    if (n > cap) {
        alter_set_error("the arguments are larger than this tool's buffer");
        return -1;
    }
    if (n == 0) {
        args->p = "{}", args->n = 2;
        return 0;
    }
    if (alter_json_parse(buf, n, args) || alter_json_type_of(*args) != ALTER_JSON_OBJECT) {
        alter_set_error("the arguments are not a JSON object");
        return -1;
    }
    return 0;
}

/* ---- JSON writer ---------------------------------------------------- */

/* alter_jw writes JSON into a caller's buffer, putting commas and colons
 * where they go. Strings are escaped exactly as Go's json.Marshal does:
 * ", \ and control characters, and also <, > and & (as \u003c, \u003e,
 * \u0026) and U+2028, U+2029, so the JSON is safe inside HTML and
 * JavaScript; invalid UTF-8 becomes \ufffd. Other text passes as UTF-8.
 *
 *   alter_jw w;
 *   alter_jw_init(&w, buf, sizeof buf);
 *   alter_jw_object_begin(&w);
 *   alter_jw_key(&w, "title"); alter_jw_str(&w, title);
 *   alter_jw_key(&w, "count"); alter_jw_int(&w, 3);
 *   alter_jw_object_end(&w);
 *   if (!alter_jw_ok(&w)) ... the buffer was too small; w.b.n says how big
 */
typedef struct {
    alter_buf b;
    int comma; /* a value was written at this level: the next needs a comma */
} alter_jw;

static inline void alter_jw_init(alter_jw *w, char *buf, alter_size cap) {
    w->b = alter_buf_make(buf, cap);
    w->comma = 0;
}

/* alter_jw_ok reports whether everything written fit. */
static inline int alter_jw_ok(const alter_jw *w) { return alter_buf_ok(&w->b); }

/* alter_jw_len returns the length of the JSON written. */
static inline alter_size alter_jw_len(const alter_jw *w) { return w->b.n; }

static inline void alter__jw_pre(alter_jw *w) {
    if (w->comma) alter_buf_addc(&w->b, ',');
    w->comma = 1;
}

static inline void alter_jw_object_begin(alter_jw *w) {
    alter__jw_pre(w);
    alter_buf_addc(&w->b, '{');
    w->comma = 0;
}

static inline void alter_jw_object_end(alter_jw *w) {
    alter_buf_addc(&w->b, '}');
    w->comma = 1;
}

static inline void alter_jw_array_begin(alter_jw *w) {
    alter__jw_pre(w);
    alter_buf_addc(&w->b, '[');
    w->comma = 0;
}

static inline void alter_jw_array_end(alter_jw *w) {
    alter_buf_addc(&w->b, ']');
    w->comma = 1;
}

/* alter_jw_quote_body appends the n bytes at s to b escaped for the
 * inside of a JSON string, without the quotes. */
static inline void alter_jw_quote_body(alter_buf *b, const char *s, alter_size n) {
    static const char hex[] = "0123456789abcdef";
    alter_size i = 0, start = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
                i++;
                continue;
            }
            alter_buf_add(b, s + start, i - start);
            alter_buf_addc(b, '\\');
            switch (c) {
            case '"': case '\\': alter_buf_addc(b, (char)c); break;
            case '\b': alter_buf_addc(b, 'b'); break;
            case '\f': alter_buf_addc(b, 'f'); break;
            case '\n': alter_buf_addc(b, 'n'); break;
            case '\r': alter_buf_addc(b, 'r'); break;
            case '\t': alter_buf_addc(b, 't'); break;
            default:
                alter_buf_str(b, "u00");
                alter_buf_addc(b, hex[c >> 4]);
                alter_buf_addc(b, hex[c & 0xF]);
            }
            start = ++i;
            continue;
        }
        alter_size at = i;
        alter_u32 r = alter_utf8_next(s, n, &i);
        if (r == 0xFFFD && i - at == 1) {
            alter_buf_add(b, s + start, at - start);
            alter_buf_str(b, "\\ufffd");
            start = i;
        } else if (r == 0x2028 || r == 0x2029) {
            alter_buf_add(b, s + start, at - start);
            alter_buf_str(b, r == 0x2028 ? "\\u2028" : "\\u2029");
            start = i;
        }
    }
    alter_buf_add(b, s + start, n - start);
}

/* alter_jw_quote appends the n bytes at s as a JSON string to b. */
static inline void alter_jw_quote(alter_buf *b, const char *s, alter_size n) {
    alter_buf_addc(b, '"');
    alter_jw_quote_body(b, s, n);
    alter_buf_addc(b, '"');
}

/* alter_jw_key writes an object member's name; its value comes next. */
static inline void alter_jw_keyn(alter_jw *w, const char *name, alter_size n) {
    alter__jw_pre(w);
    alter_jw_quote(&w->b, name, n);
    alter_buf_addc(&w->b, ':');
    w->comma = 0;
}

static inline void alter_jw_key(alter_jw *w, const char *name) { alter_jw_keyn(w, name, alter_strlen(name)); }

static inline void alter_jw_strn(alter_jw *w, const char *s, alter_size n) {
    alter__jw_pre(w);
    alter_jw_quote(&w->b, s, n);
}

static inline void alter_jw_str(alter_jw *w, const char *s) { alter_jw_strn(w, s, alter_strlen(s)); }

static inline void alter_jw_int(alter_jw *w, long long v) {
    alter__jw_pre(w);
    alter_buf_int(&w->b, v);
}

static inline void alter_jw_bool(alter_jw *w, int v) {
    alter__jw_pre(w);
    alter_buf_str(&w->b, v ? "true" : "false");
}

static inline void alter_jw_null(alter_jw *w) {
    alter__jw_pre(w);
    alter_buf_str(&w->b, "null");
}

/* alter_jw_raw writes n bytes of JSON that are already one valid value. */
static inline void alter_jw_raw(alter_jw *w, const char *json, alter_size n) {
    alter__jw_pre(w);
    alter_buf_add(&w->b, json, n);
}

/* alter__jw_char appends one decoded character (k bytes of valid UTF-8
 * at u) to b, escaped as alter_jw_quote escapes. */
static inline void alter__jw_char(alter_buf *b, const unsigned char *u, int k) {
    if (k == 1 && (u[0] < 0x20 || u[0] == '"' || u[0] == '\\' || u[0] == '<' || u[0] == '>' || u[0] == '&')) {
        alter_jw_quote_body(b, (const char *)u, 1);
    } else if (k == 3 && u[0] == 0xE2 && u[1] == 0x80 && (u[2] == 0xA8 || u[2] == 0xA9)) {
        alter_buf_str(b, u[2] == 0xA8 ? "\\u2028" : "\\u2029");
    } else {
        alter_buf_add(b, u, (alter_size)k);
    }
}

/* alter__jw_decoded appends the JSON string v, decoded and quoted again. */
static inline void alter__jw_decoded(alter_buf *b, alter_json v) {
    const char *p = v.p + 1, *end = v.p + v.n;
    unsigned char u[4];
    int k;
    alter_buf_addc(b, '"');
    while ((k = alter__str_step(&p, end, u, 1)) > 0) alter__jw_char(b, u, k);
    alter_buf_addc(b, '"');
}

/* alter_jw_value writes a value read with the JSON reader, re-encoded as
 * this writer encodes: strings decoded and escaped again, numbers as
 * written, containers member by member in their order, white space
 * dropped. A missing value (ALTER_JSON_NONE) is written as null. */
static inline void alter_jw_value(alter_jw *w, alter_json v) {
    alter_json_type t = alter_json_type_of(v);
    alter_json_iter it = alter_json_items(v);
    alter_json k, e;
    switch (t) {
    case ALTER_JSON_NONE: alter_jw_null(w); break;
    case ALTER_JSON_STRING:
        alter__jw_pre(w);
        alter__jw_decoded(&w->b, v);
        break;
    case ALTER_JSON_OBJECT:
        alter_jw_object_begin(w);
        while (alter_json_next(&it, &k, &e)) {
            alter__jw_pre(w);
            alter__jw_decoded(&w->b, k);
            alter_buf_addc(&w->b, ':');
            w->comma = 0;
            alter_jw_value(w, e);
        }
        alter_jw_object_end(w);
        break;
    case ALTER_JSON_ARRAY:
        alter_jw_array_begin(w);
        while (alter_json_next(&it, 0, &e)) alter_jw_value(w, e);
        alter_jw_array_end(w);
        break;
    default: alter_jw_raw(w, v.p, v.n); break;
    }
}

/* ---- Base64 --------------------------------------------------------- */

/* alter_base64_encode appends the n bytes at s to b in standard base64
 * with padding. */
static inline void alter_base64_encode(alter_buf *b, const unsigned char *s, alter_size n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (alter_size i = 0; i < n; i += 3) {
        alter_u32 v = (alter_u32)s[i] << 16;
        if (i + 1 < n) v |= (alter_u32)s[i + 1] << 8;
        if (i + 2 < n) v |= s[i + 2];
        alter_buf_addc(b, tab[v >> 18 & 63]);
        alter_buf_addc(b, tab[v >> 12 & 63]);
        alter_buf_addc(b, i + 1 < n ? tab[v >> 6 & 63] : '=');
        alter_buf_addc(b, i + 2 < n ? tab[v & 63] : '=');
    }
}

static inline int alter__b64val(char c) {
    return c >= 'A' && c <= 'Z'   ? c - 'A'
           : c >= 'a' && c <= 'z' ? c - 'a' + 26
           : c >= '0' && c <= '9' ? c - '0' + 52
           : c == '+'             ? 62
           : c == '/'             ? 63
                                  : -1;
}

/* alter_base64_decode decodes the n bytes of padded standard base64 at s
 * into dst, which may be s itself, and returns the decoded length, or -1
 * if s is not valid base64. */
static inline long long alter_base64_decode(const char *s, alter_size n, char *dst) {
    alter_size o = 0;
    if (n % 4) return -1;
    for (alter_size i = 0; i < n; i += 4) {
        int a = alter__b64val(s[i]), b = alter__b64val(s[i + 1]);
        int c = s[i + 2] == '=' ? -2 : alter__b64val(s[i + 2]);
        int d = s[i + 3] == '=' ? -2 : alter__b64val(s[i + 3]);
        int last = i + 4 == n;
        if (a < 0 || b < 0 || c == -1 || d == -1 || (c == -2 && d != -2) || ((c == -2 || d == -2) && !last))
            return -1;
        alter_u32 v = (alter_u32)a << 18 | (alter_u32)b << 12 | (alter_u32)(c < 0 ? 0 : c) << 6 | (alter_u32)(d < 0 ? 0 : d);
        dst[o++] = (char)(v >> 16);
        if (c >= 0) dst[o++] = (char)(v >> 8 & 0xFF);
        if (d >= 0) dst[o++] = (char)(v & 0xFF);
    }
    return (long long)o;
}

/* ---- alter_request -------------------------------------------------- */

/* alter_request is the raw form of a request: it asks the host to make one
 * HTTP request and copies the host's reply into reply. It returns the
 * reply's length; if that is more than cap, only cap bytes were copied. It
 * returns -1 if the host gave no reply. Most plugins want alter_do, which
 * writes the request and reads the reply for them.
 *
 * request is one NUL-terminated JSON object (the host adds credentials;
 * never send any):
 *
 *   {"method": "GET", "url": "https://api.example.com/items",
 *    "query": {"per_page": "50", "label": ["bug", "p1"]},
 *    "headers": {"Accept": "application/json"},
 *    "body": "UTF-8 text" | "body_base64": "AAEC..."}
 *
 * Only "url" is required; it must be absolute http(s) to a host in the
 * manifest's allowed_hosts. The reply is one JSON object, either
 *
 *   {"status": 200, "headers": {"content-type": "..."},
 *    "body": "..." | "body_base64": "..."}
 *
 * for any HTTP status (header names lower case; body_base64 when the body
 * is not UTF-8), or
 *
 *   {"error": {"code": "host_not_allowed", "message": "...",
 *              "connect_url": "...", "missing_scopes": ["..."]}}
 *
 * when the request was refused or failed; see alter_code for the codes. */
static inline long long alter_request(const char *request, char *reply, alter_size cap) {
    /* The host frees the request block; the reply block is ours to free. */
    alter_u64 off = alter_host_request(alter__store(request, alter_strlen(request)));
    if (off == 0) return -1;
    alter_size n = (alter_size)alter_kernel_length(off);
    alter__load(0, off, reply, n < cap ? n : cap);
    alter_kernel_free(off);
    return (long long)n;
}

/* alter_code says why alter_do got no response: every code of ABI v1, as
 * abi/errors.go defines them. Codes are stable: switch on them rather
 * than on messages. */
typedef enum {
    ALTER_OK = 0,                   /* a response, with any HTTP status */
    ALTER_ERR_BAD_REQUEST,          /* the request was malformed (method, URL, header) */
    ALTER_ERR_HOST_NOT_ALLOWED,     /* the URL's host is outside allowed_hosts, also after a redirect */
    ALTER_ERR_TIMEOUT,              /* the upstream did not answer in time */
    ALTER_ERR_TOO_LARGE,            /* a body exceeded the plugin's limits, or a buffer here was too small */
    ALTER_ERR_UPSTREAM_UNREACHABLE, /* the connection to the upstream failed */
    ALTER_ERR_INTERNAL,             /* the host failed, or its reply could not be read */
    ALTER_ERR_GRANT_NOT_FOUND,      /* the person has not connected the provider: see connect_url */
    ALTER_ERR_SCOPE_REAUTH_REQUIRED, /* the grant lacks missing_scopes: see connect_url */
    ALTER_ERR_POLICY_DENIED,        /* a policy forbids this method, host or path */
    ALTER_ERR_APPROVAL_REQUIRED,    /* a person must approve this request first */
    ALTER_ERR_UNKNOWN               /* a code this header does not know yet: see code_name */
} alter_code;

/* alter_code_name returns the wire name of code, e.g. "grant_not_found". */
static inline const char *alter_code_name(alter_code code) {
    switch (code) {
    case ALTER_OK: return "";
    case ALTER_ERR_BAD_REQUEST: return "bad_request";
    case ALTER_ERR_HOST_NOT_ALLOWED: return "host_not_allowed";
    case ALTER_ERR_TIMEOUT: return "timeout";
    case ALTER_ERR_TOO_LARGE: return "too_large";
    case ALTER_ERR_UPSTREAM_UNREACHABLE: return "upstream_unreachable";
    case ALTER_ERR_INTERNAL: return "internal";
    case ALTER_ERR_GRANT_NOT_FOUND: return "grant_not_found";
    case ALTER_ERR_SCOPE_REAUTH_REQUIRED: return "scope_reauth_required";
    case ALTER_ERR_POLICY_DENIED: return "policy_denied";
    case ALTER_ERR_APPROVAL_REQUIRED: return "approval_required";
    default: return "unknown";
    }
}

/* alter_code_of returns the code named name; ALTER_ERR_UNKNOWN for a name
 * this header does not know. */
static inline alter_code alter_code_of(const char *name) {
    for (int c = ALTER_ERR_BAD_REQUEST; c < ALTER_ERR_UNKNOWN; c++)
        if (alter_streq(name, alter_code_name((alter_code)c))) return (alter_code)c;
    return ALTER_ERR_UNKNOWN;
}

/* alter_param is a name and a value: a query parameter or a header. */
typedef struct {
    const char *name, *value;
} alter_param;

/* alter_req is one HTTP request for alter_do. Zero what you do not use:
 *
 *   alter_param q[] = {{"label", "bug"}, {"label", "p1"}, {"per_page", "50"}};
 *   alter_param h[] = {{"Accept", "application/json"}};
 *   alter_req req = {.method = "GET", .url = "https://api.example.com/items",
 *                    .query = q, .nquery = 3, .headers = h, .nheaders = 1};
 */
typedef struct {
    const char *method; /* 0 means GET */
    const char *url;    /* absolute http(s); its host in allowed_hosts */
    /* Added to any query the URL has. Repeat a name for several values. */
    const alter_param *query;
    alter_size nquery;
    /* Sent as given. Leave credentials out: the host adds them. */
    const alter_param *headers;
    alter_size nheaders;
    /* The body, any bytes; it travels as text when it is UTF-8. */
    const char *body;
    alter_size body_len;
    /* Or a JSON body (e.g. from alter_jw), sent with Content-Type
     * application/json unless headers name a Content-Type. */
    const char *json;
    alter_size json_len;
} alter_req;

#ifndef ALTER_MAX_SCOPES
#define ALTER_MAX_SCOPES 16
#endif

/* alter_error is a failed alter_do, as the host reported it. Its strings
 * are NUL-terminated and live in the buffer given to alter_do (or in the
 * alter_response), so they last as long as both. */
typedef struct {
    alter_code code;
    const char *code_name;   /* the code as the host wrote it; "" with ALTER_OK */
    const char *message;     /* a sentence for people; "" with ALTER_OK */
    const char *connect_url; /* with grant_not_found and scope_reauth_required; else "" */
    /* With scope_reauth_required: the scopes the grant lacks (the first
     * ALTER_MAX_SCOPES of n_missing_scopes). */
    const char *missing_scopes[ALTER_MAX_SCOPES];
    int n_missing_scopes;
} alter_error;

/* alter_response is what alter_do got: a response (err.code == ALTER_OK)
 * with any HTTP status, or the error. The body and the header values live
 * in the buffer given to alter_do. */
typedef struct {
    int status;
    const char *body; /* not NUL-terminated: use body_len */
    alter_size body_len;
    alter_error err;
    alter_json headers_; /* private: use alter_header */
    char note_[160];     /* private: messages this header composes */
} alter_response;

/* alter__fail fills r->err with a failure of this side, e.g. an unreadable
 * reply; detail (NUL-terminated, may be 0) and num (if >= 0) are appended
 * to msg. */
static inline alter_code alter__fail(alter_response *r, alter_code code, const char *msg, const char *detail,
                                     long long num) {
    alter_buf b = alter_buf_make(r->note_, sizeof r->note_ - 1);
    alter_buf_str(&b, msg);
    if (detail) alter_buf_str(&b, detail);
    if (num >= 0) alter_buf_int(&b, num);
    r->note_[b.n < b.cap ? b.n : b.cap] = 0;
    r->status = 0;
    r->body = "", r->body_len = 0;
    r->err.code = code;
    r->err.code_name = alter_code_name(code);
    r->err.message = r->note_;
    return code;
}

/* alter__inplace decodes the string v where it stands in the buffer,
 * sets *len to the decoded length if len is not 0, and NUL-terminates it.
 * Bytes pass as they are (no U+FFFD), so the text never grows: it starts
 * where the opening quote was, and the closing quote leaves room for the
 * NUL. */
static inline const char *alter__inplace(alter_json v, alter_size *len) {
    char *dst = (char *)v.p;
    const char *p = v.p + 1, *end = v.p + v.n;
    alter_size n = 0;
    unsigned char u[4];
    int k;
    while ((k = alter__str_step(&p, end, u, 0)) > 0)
        for (int i = 0; i < k; i++) dst[n++] = (char)u[i];
    dst[n] = 0;
    if (len) *len = n;
    return dst;
}

/* alter__read_reply reads the host's reply, n bytes in buf, into r. Every
 * way the reply can be malformed is ALTER_ERR_INTERNAL, naming what. */
static inline alter_code alter__read_reply(char *buf, alter_size n, alter_response *r) {
    alter_json reply, e, v, code, msg, url, scopes, status, body, b64;
    if (alter_json_parse(buf, n, &reply) || alter_json_type_of(reply) != ALTER_JSON_OBJECT)
        return alter__fail(r, ALTER_ERR_INTERNAL, "alter_request reply is not a JSON object", 0, -1);
    if (alter_json_get(reply, "error", &e) && alter_json_type_of(e) != ALTER_JSON_NULL) {
        if (alter_json_type_of(e) != ALTER_JSON_OBJECT)
            return alter__fail(r, ALTER_ERR_INTERNAL, "alter_request reply's \"error\" is not an object", 0, -1);
        if (!alter_json_get(e, "code", &code) || alter_json_type_of(code) != ALTER_JSON_STRING)
            return alter__fail(r, ALTER_ERR_INTERNAL, "alter_request reply's error has no string \"code\"", 0, -1);
        alter_json_get(e, "message", &msg);
        alter_json_get(e, "connect_url", &url);
        alter_json_get(e, "missing_scopes", &scopes);
        alter_json_type mt = alter_json_type_of(msg), ut = alter_json_type_of(url), st = alter_json_type_of(scopes);
        if (mt != ALTER_JSON_NONE && mt != ALTER_JSON_NULL && mt != ALTER_JSON_STRING)
            return alter__fail(r, ALTER_ERR_INTERNAL, "alter_request reply's error \"message\" is not a string", 0, -1);
        if (ut != ALTER_JSON_NONE && ut != ALTER_JSON_NULL && ut != ALTER_JSON_STRING)
            return alter__fail(r, ALTER_ERR_INTERNAL, "alter_request reply's error \"connect_url\" is not a string", 0, -1);
        if (st != ALTER_JSON_NONE && st != ALTER_JSON_NULL && st != ALTER_JSON_ARRAY)
            return alter__fail(r, ALTER_ERR_INTERNAL, "alter_request reply's \"missing_scopes\" is not a list", 0, -1);
        alter_json scope[ALTER_MAX_SCOPES];
        int ns = 0;
        alter_json_iter it = alter_json_items(scopes);
        while (alter_json_next(&it, 0, &v)) {
            if (alter_json_type_of(v) != ALTER_JSON_STRING)
                return alter__fail(r, ALTER_ERR_INTERNAL, "alter_request reply's \"missing_scopes\" holds a non-string", 0, -1);
            if (ns < ALTER_MAX_SCOPES) scope[ns] = v;
            ns++;
        }
        /* Every span is known: decode in place now, which overwrites the
         * JSON text it reads. */
        r->status = 0;
        r->body = "", r->body_len = 0;
        r->err.code_name = alter__inplace(code, 0);
        r->err.code = alter_code_of(r->err.code_name);
        if (r->err.code_name[0] == 0) {
            r->err.code = ALTER_ERR_INTERNAL; /* as the Go binding: no code is the host's failure */
            r->err.code_name = "internal";
        }
        r->err.message = mt == ALTER_JSON_STRING ? alter__inplace(msg, 0) : "";
        r->err.connect_url = ut == ALTER_JSON_STRING ? alter__inplace(url, 0) : "";
        r->err.n_missing_scopes = ns;
        for (int i = 0; i < ns && i < ALTER_MAX_SCOPES; i++) r->err.missing_scopes[i] = alter__inplace(scope[i], 0);
        return r->err.code;
    }
    long long st;
    if (!alter_json_get(reply, "status", &status))
        return alter__fail(r, ALTER_ERR_INTERNAL, "alter_request reply has neither \"status\" nor \"error\"", 0, -1);
    if (!alter_json_int(status, &st) || st < 100 || st > 999)
        return alter__fail(r, ALTER_ERR_INTERNAL, "alter_request reply's \"status\" is not an HTTP status", 0, -1);
    if (alter_json_get(reply, "headers", &r->headers_)) {
        if (alter_json_type_of(r->headers_) != ALTER_JSON_OBJECT)
            return alter__fail(r, ALTER_ERR_INTERNAL, "alter_request reply's \"headers\" is not an object", 0, -1);
        alter_json_iter it = alter_json_items(r->headers_);
        while (alter_json_next(&it, 0, &v))
            if (alter_json_type_of(v) != ALTER_JSON_STRING)
                return alter__fail(r, ALTER_ERR_INTERNAL, "alter_request reply has a header that is not a string", 0, -1);
    } else {
        r->headers_.p = "{}", r->headers_.n = 2;
    }
    int has_body = alter_json_get(reply, "body", &body), has_b64 = alter_json_get(reply, "body_base64", &b64);
    if (has_body && alter_json_type_of(body) != ALTER_JSON_STRING)
        return alter__fail(r, ALTER_ERR_INTERNAL, "alter_request reply's \"body\" is not a string", 0, -1);
    if (has_b64 && alter_json_type_of(b64) != ALTER_JSON_STRING)
        return alter__fail(r, ALTER_ERR_INTERNAL, "alter_request reply's \"body_base64\" is not a string", 0, -1);
    if (has_body && has_b64)
        return alter__fail(r, ALTER_ERR_INTERNAL, "alter_request reply has both \"body\" and \"body_base64\"", 0, -1);
    r->status = (int)st;
    r->body = "", r->body_len = 0;
    if (has_body) {
        /* In place: the body bytes as the host sent them. */
        r->body = alter__inplace(body, &r->body_len);
    } else if (has_b64) {
        long long m = alter_base64_decode(b64.p + 1, b64.n - 2, (char *)b64.p);
        if (m < 0) return alter__fail(r, ALTER_ERR_INTERNAL, "alter_request reply's \"body_base64\" is not valid base64", 0, -1);
        r->body = b64.p, r->body_len = (alter_size)m;
    }
    r->err.code = ALTER_OK;
    r->err.code_name = r->err.message = r->err.connect_url = "";
    r->err.n_missing_scopes = 0;
    return ALTER_OK;
}

/* alter__has_header reports whether hs names header name, in any case. */
static inline int alter__has_header(const alter_param *hs, alter_size n, const char *name) {
    for (alter_size i = 0; i < n; i++) {
        const char *a = hs[i].name, *b = name;
        while (*a && *b && (*a | 0x20) == (*b | 0x20)) a++, b++;
        if (*a == 0 && *b == 0) return 1;
    }
    return 0;
}

/* alter__write_request writes req as the alter_request JSON. */
static inline void alter__write_request(alter_jw *w, const alter_req *req) {
    alter_jw_object_begin(w);
    alter_jw_key(w, "method");
    alter_jw_str(w, req->method && *req->method ? req->method : "GET");
    alter_jw_key(w, "url");
    alter_jw_str(w, req->url ? req->url : "");
    if (req->nquery) {
        /* {"name": ["v1", "v2"], ...}: every value of a name, in order,
         * under its first appearance. */
        alter_jw_key(w, "query");
        alter_jw_object_begin(w);
        for (alter_size i = 0; i < req->nquery; i++) {
            int seen = 0;
            for (alter_size j = 0; j < i && !seen; j++) seen = alter_streq(req->query[j].name, req->query[i].name);
            if (seen) continue;
            alter_jw_key(w, req->query[i].name);
            alter_jw_array_begin(w);
            for (alter_size j = i; j < req->nquery; j++)
                if (alter_streq(req->query[j].name, req->query[i].name)) alter_jw_str(w, req->query[j].value);
            alter_jw_array_end(w);
        }
        alter_jw_object_end(w);
    }
    int json = req->json != 0;
    if (req->nheaders || json) {
        alter_jw_key(w, "headers");
        alter_jw_object_begin(w);
        for (alter_size i = 0; i < req->nheaders; i++) {
            alter_jw_key(w, req->headers[i].name);
            alter_jw_str(w, req->headers[i].value);
        }
        if (json && !alter__has_header(req->headers, req->nheaders, "content-type")) {
            alter_jw_key(w, "Content-Type");
            alter_jw_str(w, "application/json");
        }
        alter_jw_object_end(w);
    }
    const char *body = json ? req->json : req->body;
    alter_size n = json ? req->json_len : req->body_len;
    if (body && n) {
        /* A JSON string carries text, not bytes: other bodies go as base64. */
        if (alter_utf8_valid(body, n)) {
            alter_jw_key(w, "body");
            alter_jw_strn(w, body, n);
        } else {
            alter_jw_key(w, "body_base64");
            alter__jw_pre(w);
            alter_buf_addc(&w->b, '"');
            alter_base64_encode(&w->b, (const unsigned char *)body, n);
            alter_buf_addc(&w->b, '"');
        }
    }
    alter_jw_object_end(w);
}

/* alter_do asks the host to make req and fills *resp. It returns ALTER_OK
 * for a response, whatever its HTTP status (resp->status, resp->body,
 * resp->body_len, alter_header), or the code of the failure, also in
 * resp->err: the request was refused (host_not_allowed, ...), the person
 * must connect an account first (grant_not_found, with connect_url), or
 * the request could not be completed.
 *
 * buf (cap bytes) holds the request JSON on the way out and the reply on
 * the way back; the body and every string of resp point into it, so keep
 * it until you are done with resp. A reply larger than cap is
 * ALTER_ERR_TOO_LARGE: size buf for the largest body you expect plus its
 * JSON escaping (a third more for a body that is not UTF-8). A reply that
 * cannot be read is ALTER_ERR_INTERNAL, with a message that says why.
 *
 *   static char buf[1 << 20];
 *   alter_response r;
 *   alter_req req = {.url = "https://api.example.com/me"};
 *   if (alter_do(&req, buf, sizeof buf, &r)) return alter_fail(&r);
 *   if (r.status != 200) ...
 */
static inline alter_code alter_do(const alter_req *req, char *buf, alter_size cap, alter_response *resp) {
    alter_jw w;
    resp->headers_.p = "{}", resp->headers_.n = 2;
    resp->err.connect_url = "";
    resp->err.n_missing_scopes = 0;
    alter_jw_init(&w, buf, cap);
    alter__write_request(&w, req);
    if (!alter_jw_ok(&w))
        return alter__fail(resp, ALTER_ERR_TOO_LARGE, "the request does not fit in the buffer given to alter_do; it needs ",
                           0, (long long)w.b.n);
    /* The host frees the request block; the reply block is ours to free. */
    alter_u64 off = alter_host_request(alter__store(buf, w.b.n));
    if (off == 0) return alter__fail(resp, ALTER_ERR_INTERNAL, "alter_request returned no reply", 0, -1);
    alter_size n = (alter_size)alter_kernel_length(off);
    if (n > cap) {
        alter_kernel_free(off);
        return alter__fail(resp, ALTER_ERR_TOO_LARGE,
                           "the alter_request reply does not fit in the buffer given to alter_do; it needs ", 0,
                           (long long)n);
    }
    alter__load(0, off, buf, n);
    alter_kernel_free(off);
    return alter__read_reply(buf, n, resp);
}

/* alter_get is alter_do with a GET request for url and no headers. */
static inline alter_code alter_get(const char *url, char *buf, alter_size cap, alter_response *resp) {
    alter_req req = {0};
    req.url = url;
    return alter_do(&req, buf, cap, resp);
}

/* alter_header finds the response header lname (lower case: the host
 * sends header names so, and joins repeated headers with ", ") and decodes
 * its value into out as alter_json_str does: it returns the value's length
 * (NUL-terminated if shorter than cap), or -1 if there is no such header. */
static inline long long alter_header(const alter_response *r, const char *lname, char *out, alter_size cap) {
    alter_json v;
    if (!alter_json_get(r->headers_, lname, &v)) return -1;
    return alter_json_str(v, out, cap);
}

/* alter_set_error_from makes the call fail with e as "code: message", the
 * way the Go binding's errors read. The host also keeps the failed
 * request's own error, so the MCP client still gets the connect URL and
 * the missing scopes. */
static inline void alter_set_error_from(const alter_error *e) {
    alter_size cn = alter_strlen(e->code_name), mn = alter_strlen(e->message);
    alter_u64 off = alter_kernel_alloc(cn + 2 + mn);
    alter__put(off, 0, e->code_name, cn);
    alter__put(off, cn, ": ", 2);
    alter__put(off, cn + 2, e->message, mn);
    alter_kernel_error_set(off);
}

/* alter_fail passes resp's error on as the call's error and returns 1, so
 * a tool can end with "return alter_fail(&resp);". */
static inline int alter_fail(const alter_response *resp) {
    alter_set_error_from(&resp->err);
    return 1;
}

/* ---- Results -------------------------------------------------------- */

/* alter_output_jw sets the call's output to the JSON in w, for a tool
 * whose manifest says "result": "json" (one object) or "mcp". It returns
 * 0, or sets the call's error and returns 1 if w's buffer was too small. */
static inline int alter_output_jw(const alter_jw *w) {
    if (!alter_jw_ok(w)) {
        alter_set_error("the tool's result does not fit in its buffer");
        return 1;
    }
    alter_output(w->b.p, w->b.n);
    return 0;
}

/* An MCP result, for a tool whose manifest says "result": "mcp":
 *
 *   {"content": [{"type": "text", "text": "..."}, ...],
 *    "structuredContent": {...}, "isError": true}
 *
 * Write it with the JSON writer:
 *
 *   alter_mcp_begin(&w);                     the content list opens
 *   alter_mcp_text(&w, "3 items");           any number of text items
 *   alter_mcp_content_end(&w);               the content list closes
 *   alter_jw_key(&w, "structuredContent");   optional: structured content
 *   alter_jw_object_begin(&w); ... alter_jw_object_end(&w);
 *   alter_mcp_end(&w, 0);                    0, or 1 for "isError": true
 *   return alter_output_jw(&w);
 */
static inline void alter_mcp_begin(alter_jw *w) {
    alter_jw_object_begin(w);
    alter_jw_key(w, "content");
    alter_jw_array_begin(w);
}

/* alter_mcp_textn adds a text item of n bytes to the content list. */
static inline void alter_mcp_textn(alter_jw *w, const char *text, alter_size n) {
    alter_jw_object_begin(w);
    alter_jw_key(w, "type");
    alter_jw_str(w, "text");
    alter_jw_key(w, "text");
    alter_jw_strn(w, text, n);
    alter_jw_object_end(w);
}

static inline void alter_mcp_text(alter_jw *w, const char *text) { alter_mcp_textn(w, text, alter_strlen(text)); }

/* alter_mcp_content_end closes the content list. */
static inline void alter_mcp_content_end(alter_jw *w) { alter_jw_array_end(w); }

/* alter_mcp_end closes the result, with "isError": true if is_error. */
static inline void alter_mcp_end(alter_jw *w, int is_error) {
    if (is_error) {
        alter_jw_key(w, "isError");
        alter_jw_bool(w, 1);
    }
    alter_jw_object_end(w);
}

#endif /* ALTER_H */
