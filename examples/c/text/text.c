/*
 * text - an example alterhost plugin in freestanding C: word_count and
 * reverse, each taking {"text": "..."}. No libc, no WASI, no network.
 *
 * Build: scripts/build-plugins.sh (see README.md).
 */
#include "alter.h"

/* Buffers live in static memory: the module has no allocator, and the
 * instance is reused across calls. Arguments longer than this are refused. */
#define MAX_INPUT (1 << 20)

static char input[MAX_INPUT];
static char text[MAX_INPUT]; /* decoded text: never longer than its JSON */
static char out[MAX_INPUT];

/* ---- Minimal JSON: find the string member "text" of the top object ---- */

typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hex4(cursor *c, alter_u32 *v) {
    if (c->end - c->p < 4) return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char h = *c->p++;
        int d = h >= '0' && h <= '9'   ? h - '0'
                : h >= 'a' && h <= 'f' ? h - 'a' + 10
                : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        *v = *v << 4 | (alter_u32)d;
    }
    return 0;
}

/* put writes byte b at dst[*n] if there is room, and counts it either way. */
static void put(char *dst, alter_size cap, alter_size *n, alter_u32 b) {
    if (*n < cap) dst[*n] = (char)b;
    (*n)++;
}

static void put_utf8(char *dst, alter_size cap, alter_size *n, alter_u32 r) {
    if (r < 0x80) {
        put(dst, cap, n, r);
    } else if (r < 0x800) {
        put(dst, cap, n, 0xC0 | r >> 6);
        put(dst, cap, n, 0x80 | (r & 0x3F));
    } else if (r < 0x10000) {
        put(dst, cap, n, 0xE0 | r >> 12);
        put(dst, cap, n, 0x80 | (r >> 6 & 0x3F));
        put(dst, cap, n, 0x80 | (r & 0x3F));
    } else {
        put(dst, cap, n, 0xF0 | r >> 18);
        put(dst, cap, n, 0x80 | (r >> 12 & 0x3F));
        put(dst, cap, n, 0x80 | (r >> 6 & 0x3F));
        put(dst, cap, n, 0x80 | (r & 0x3F));
    }
}

/* parse_string decodes the JSON string at c (which starts at its opening
 * quote) into dst, writing at most cap bytes, and sets *len to its full
 * decoded length. Surrogate pairs join; a lone surrogate becomes U+FFFD. */
static int parse_string(cursor *c, char *dst, alter_size cap, alter_size *len) {
    alter_size n = 0;
    if (c->p >= c->end || *c->p != '"') return -1;
    c->p++;
    for (;;) {
        if (c->p >= c->end) return -1;
        unsigned char ch = (unsigned char)*c->p++;
        if (ch == '"') break;
        if (ch < 0x20) return -1; /* control characters must be escaped */
        if (ch != '\\') {
            put(dst, cap, &n, ch);
            continue;
        }
        if (c->p >= c->end) return -1;
        switch (*c->p++) {
        case '"': put(dst, cap, &n, '"'); break;
        case '\\': put(dst, cap, &n, '\\'); break;
        case '/': put(dst, cap, &n, '/'); break;
        case 'b': put(dst, cap, &n, '\b'); break;
        case 'f': put(dst, cap, &n, '\f'); break;
        case 'n': put(dst, cap, &n, '\n'); break;
        case 'r': put(dst, cap, &n, '\r'); break;
        case 't': put(dst, cap, &n, '\t'); break;
        case 'u': {
            alter_u32 r;
            if (hex4(c, &r)) return -1;
            if (r >= 0xD800 && r < 0xDC00) {
                /* A high surrogate needs a low one right after it. */
                cursor look = *c;
                alter_u32 lo;
                if (look.end - look.p >= 6 && look.p[0] == '\\' && look.p[1] == 'u' &&
                    (look.p += 2, !hex4(&look, &lo)) && lo >= 0xDC00 && lo < 0xE000) {
                    r = 0x10000 + ((r - 0xD800) << 10) + (lo - 0xDC00);
                    *c = look;
                } else {
                    r = 0xFFFD;
                }
            } else if (r >= 0xDC00 && r < 0xE000) {
                r = 0xFFFD;
            }
            put_utf8(dst, cap, &n, r);
            break;
        }
        default: return -1;
        }
    }
    *len = n;
    return 0;
}

/* skip_value steps over one JSON value of any kind. depth bounds nesting,
 * since the stack is small. */
static int skip_value(cursor *c, int depth) {
    alter_size n;
    skip_ws(c);
    if (c->p >= c->end) return -1;
    char open = *c->p;
    if (open == '"') return parse_string(c, 0, 0, &n);
    if (open == '{' || open == '[') {
        char close = open == '{' ? '}' : ']';
        if (depth == 0) return -1;
        c->p++;
        skip_ws(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return 0;
        }
        for (;;) {
            if (open == '{') {
                skip_ws(c);
                if (parse_string(c, 0, 0, &n)) return -1;
                skip_ws(c);
                if (c->p >= c->end || *c->p++ != ':') return -1;
            }
            if (skip_value(c, depth - 1)) return -1;
            skip_ws(c);
            if (c->p >= c->end) return -1;
            char ch = *c->p++;
            if (ch == close) return 0;
            if (ch != ',') return -1;
        }
    }
    /* A number, true, false or null: everything up to the next delimiter. */
    const char *start = c->p;
    while (c->p < c->end && *c->p != ',' && *c->p != '}' && *c->p != ']' && *c->p != ' ' &&
           *c->p != '\t' && *c->p != '\n' && *c->p != '\r')
        c->p++;
    return c->p == start ? -1 : 0;
}

/* read_text reads the call's input, {"text": "...", ...}, and decodes the
 * text into text[]. On failure it sets the call's error and returns -1. */
static long long read_text(void) {
    alter_size n = alter_input(input, MAX_INPUT);
    if (n > MAX_INPUT) {
        alter_set_error("arguments are larger than 1 MiB");
        return -1;
    }
    cursor c = {input, input + n};
    long long found = -1;
    skip_ws(&c);
    if (c.p >= c.end || *c.p++ != '{') goto bad;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}') {
        c.p++;
    } else {
        for (;;) {
            char key[8];
            alter_size klen, tlen;
            skip_ws(&c);
            if (parse_string(&c, key, sizeof key, &klen)) goto bad;
            skip_ws(&c);
            if (c.p >= c.end || *c.p++ != ':') goto bad;
            skip_ws(&c);
            if (klen == 4 && alter_memeq(key, "text", 4) && c.p < c.end && *c.p == '"') {
                if (parse_string(&c, text, sizeof text, &tlen)) goto bad;
                found = (long long)tlen;
            } else if (skip_value(&c, 32)) {
                goto bad;
            }
            skip_ws(&c);
            if (c.p >= c.end) goto bad;
            char ch = *c.p++;
            if (ch == '}') break;
            if (ch != ',') goto bad;
        }
    }
    skip_ws(&c);
    if (c.p != c.end) goto bad;
    if (found < 0) alter_set_error("missing string argument \"text\"");
    return found;
bad:
    alter_set_error("arguments are not a valid JSON object");
    return -1;
}

/* ---- UTF-8 ---------------------------------------------------------- */

/* next_rune decodes the code point at s[*i] and advances *i past it. A byte
 * that does not start a valid sequence counts as one U+FFFD. */
static alter_u32 next_rune(const char *s, alter_size n, alter_size *i) {
    const unsigned char *u = (const unsigned char *)s + *i;
    alter_size left = n - *i;
    alter_u32 b = u[0], r, min;
    int len;
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
    if (left < (alter_size)len) goto invalid;
    for (int k = 1; k < len; k++) {
        if ((u[k] & 0xC0) != 0x80) goto invalid;
        r = r << 6 | (u[k] & 0x3F);
    }
    if (r < min || r > 0x10FFFF || (r >= 0xD800 && r < 0xE000)) goto invalid;
    *i += (alter_size)len;
    return r;
invalid:
    *i += 1;
    return 0xFFFD;
}

/* is_space reports whether r has the Unicode White_Space property. */
static int is_space(alter_u32 r) {
    return (r >= 0x09 && r <= 0x0D) || r == 0x20 || r == 0x85 || r == 0xA0 || r == 0x1680 ||
           (r >= 0x2000 && r <= 0x200A) || r == 0x2028 || r == 0x2029 || r == 0x202F ||
           r == 0x205F || r == 0x3000;
}

/* ---- Tools ---------------------------------------------------------- */

/* append copies the NUL-terminated s to out[o] and returns the new end. */
static alter_size append(alter_size o, const char *s) {
    alter_size n = alter_strlen(s);
    alter_memcpy(out + o, s, n);
    return o + n;
}

/* word_count: {"words": N, "chars": N, "lines": N}. Words are runs of
 * non-white-space; chars are code points; lines are ended by "\n" or by the
 * end of a non-empty text. */
ALTER_EXPORT("word_count") int word_count(void) {
    long long tn = read_text();
    if (tn < 0) return 1;
    alter_size n = (alter_size)tn, i = 0;
    alter_u64 words = 0, chars = 0, lines = 0;
    int in_word = 0;
    while (i < n) {
        alter_u32 r = next_rune(text, n, &i);
        chars++;
        if (r == '\n') lines++;
        if (is_space(r)) {
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            words++;
        }
    }
    if (n > 0 && text[n - 1] != '\n') lines++;

    alter_size o = 0;
    o = append(o, "{\"words\":");
    o += alter_utoa(words, out + o);
    o = append(o, ",\"chars\":");
    o += alter_utoa(chars, out + o);
    o = append(o, ",\"lines\":");
    o += alter_utoa(lines, out + o);
    o = append(o, "}");
    alter_output(out, o);
    return 0;
}

/* reverse: the text with its code points in reverse order. Each code
 * point's bytes keep their order, so the result stays valid UTF-8. */
ALTER_EXPORT("reverse") int reverse(void) {
    long long tn = read_text();
    if (tn < 0) return 1;
    alter_size n = (alter_size)tn, i = 0;
    while (i < n) {
        alter_size start = i;
        next_rune(text, n, &i);
        alter_memcpy(out + (n - i), text + start, i - start);
    }
    alter_output(out, n);
    return 0;
}
