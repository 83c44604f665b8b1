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
static char text[MAX_INPUT]; /* decoded text: no longer than its JSON, if UTF-8 */
static char out[MAX_INPUT];

/* read_text reads the call's input, {"text": "...", ...}, and decodes the
 * text into text[]. On failure it sets the call's error and returns -1. */
static long long read_text(void) {
    alter_json args, v;
    alter_size n = alter_input(input, MAX_INPUT);
    if (n > MAX_INPUT) {
        alter_set_error("arguments are larger than 1 MiB");
        return -1;
    }
    if (alter_json_parse(input, n, &args) || alter_json_type_of(args) != ALTER_JSON_OBJECT) {
        alter_set_error("arguments are not a valid JSON object");
        return -1;
    }
    long long tn = alter_json_get(args, "text", &v) ? alter_json_str(v, text, sizeof text) : -1;
    if (tn < 0) {
        alter_set_error("missing string argument \"text\"");
        return -1;
    }
    if (tn > (long long)sizeof text) { /* only text that is not UTF-8 grows when decoded */
        alter_set_error("arguments are larger than 1 MiB");
        return -1;
    }
    return tn;
}

/* ---- UTF-8 ---------------------------------------------------------- */

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
        alter_u32 r = alter_utf8_next(text, n, &i);
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
        alter_utf8_next(text, n, &i);
        alter_memcpy(out + (n - i), text + start, i - start);
    }
    alter_output(out, n);
    return 0;
}
