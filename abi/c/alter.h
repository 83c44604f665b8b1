/*
 * alter.h - the guest side of alterhost's ABI alter/v1 for C plugins.
 *
 * One header, freestanding: no libc, no wasi-libc. The module it builds
 * imports nothing but the Extism kernel (extism:host/env) and the host's
 * alter_request (extism:host/user), so it needs no WASI at all.
 *
 * Build a plugin (clang and wasm-ld, e.g. Debian's clang and lld):
 *
 *   clang --target=wasm32 -nostdlib -O2 -I abi/c \
 *         -Wl,--no-entry -o NAME.wasm NAME.c
 *   go run ./cmd/alterhost plugin embed NAME.wasm alter.json
 *
 * Mark each tool ALTER_EXPORT("name") (or link with -Wl,--export=name) and
 * make it return 0 on success, non-zero after alter_set_error:
 *
 *   ALTER_EXPORT("hello") int hello(void) {
 *       alter_output_str("hello, world");
 *       return 0;
 *   }
 *
 * The Extism kernel keeps the input, output, errors and alter_request
 * messages in its own memory; the helpers copy between it and your buffers.
 * Copies go 8 bytes per call and the tail byte by byte, since each call
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

/* The host's one door out of the sandbox; see alter_request below. */
__attribute__((import_module("extism:host/user"), import_name("alter_request")))
alter_u64 alter_host_request(alter_u64 request);

/* ---- Freestanding helpers ------------------------------------------- */

/* clang may turn copy and fill loops into calls to memcpy and memset even
 * without libc, so a freestanding module must define them. Weak, so a
 * module that brings its own wins. LLVM never rewrites a function named
 * memcpy or memset into a call to itself. */
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

/* alter__load copies n bytes of kernel block off (off 0: the input) to dst. */
static inline void alter__load(int input, alter_u64 off, char *dst, alter_size n) {
    alter_size i = 0;
    for (; i + 8 <= n; i += 8) {
        alter_u64 v = input ? alter_kernel_input_load_u64(i) : alter_kernel_load_u64(off + i);
        __builtin_memcpy(dst + i, &v, 8); /* wasm is little-endian, as the kernel */
    }
    for (; i < n; i++)
        dst[i] = (char)(input ? alter_kernel_input_load_u8(i) : alter_kernel_load_u8(off + i));
}

/* alter__store copies n bytes into a new kernel block and returns its
 * offset, or 0 for n == 0: the kernel has no empty blocks. */
static inline alter_u64 alter__store(const char *src, alter_size n) {
    if (n == 0) return 0;
    alter_u64 off = alter_kernel_alloc(n);
    alter_size i = 0;
    for (; i + 8 <= n; i += 8) {
        alter_u64 v;
        __builtin_memcpy(&v, src + i, 8);
        alter_kernel_store_u64(off + i, v);
    }
    for (; i < n; i++) alter_kernel_store_u8(off + i, (unsigned char)src[i]);
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

/* alter_output sets the call's output to the n bytes at buf. */
static inline void alter_output(const char *buf, alter_size n) {
    alter_kernel_output_set(alter__store(buf, n), n);
}

/* alter_output_str sets the call's output to the NUL-terminated s. */
static inline void alter_output_str(const char *s) { alter_output(s, alter_strlen(s)); }

/* alter_set_error makes the call fail with the NUL-terminated message msg;
 * the host reports it as the tool's error. Then return non-zero. */
static inline void alter_set_error(const char *msg) {
    if (!*msg) msg = "tool failed"; /* an empty message would read as "no error" */
    alter_kernel_error_set(alter__store(msg, alter_strlen(msg)));
}

/* ---- Settings and logs ---------------------------------------------- */

/* alter_setting copies the value of the plugin setting key (NUL-terminated)
 * into buf and returns its length; if that is more than cap, only cap bytes
 * were copied. It returns -1 for a setting with no value. Settings come
 * from the operator's NAME.config.json over the manifest's defaults; they
 * are never secrets. */
static inline long long alter_setting(const char *key, char *buf, alter_size cap) {
    alter_size klen = alter_strlen(key);
    if (klen == 0) return -1;
    alter_u64 k = alter__store(key, klen);
    alter_u64 off = alter_kernel_config_get(k);
    alter_kernel_free(k);
    if (off == 0) return -1;
    alter_size n = (alter_size)alter_kernel_length(off);
    alter__load(0, off, buf, n < cap ? n : cap);
    alter_kernel_free(off);
    return (long long)n;
}

enum alter_level { ALTER_DEBUG, ALTER_INFO, ALTER_WARN, ALTER_ERROR };

/* alter_log writes the NUL-terminated msg to the host's log at level. */
static inline void alter_log(enum alter_level level, const char *msg) {
    alter_size n = alter_strlen(msg);
    if (n == 0) return;
    alter_u64 off = alter__store(msg, n); /* the host frees it */
    switch (level) {
    case ALTER_DEBUG: alter_kernel_log_debug(off); break;
    case ALTER_INFO: alter_kernel_log_info(off); break;
    case ALTER_WARN: alter_kernel_log_warn(off); break;
    default: alter_kernel_log_error(off); break;
    }
}

/* ---- alter_request -------------------------------------------------- */

/* alter_request asks the host to make one HTTP request and copies the
 * host's reply into reply. It returns the reply's length; if that is more
 * than cap, only cap bytes were copied. It returns -1 if the host gave no
 * reply.
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
 * when the request was refused or failed. Codes: bad_request,
 * host_not_allowed, timeout, too_large, upstream_unreachable, internal,
 * grant_not_found, scope_reauth_required, policy_denied, approval_required.
 * Pass the message on with alter_set_error rather than swallowing it. */
static inline long long alter_request(const char *request, char *reply, alter_size cap) {
    /* The host frees the request block; the reply block is ours to free. */
    alter_u64 off = alter_host_request(alter__store(request, alter_strlen(request)));
    if (off == 0) return -1;
    alter_size n = (alter_size)alter_kernel_length(off);
    alter__load(0, off, reply, n < cap ? n : cap);
    alter_kernel_free(off);
    return (long long)n;
}

#endif /* ALTER_H */
