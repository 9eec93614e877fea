/*
 * Shared by the demo agents: I/O without stdio (keeps modules small), fatal errors and a
 * growable output buffer. Include after <errno.h>, <stddef.h>, <stdint.h>, <stdlib.h>,
 * <string.h> and <unistd.h>, with AGENT_NAME (the stderr prefix) and MAX_INPUT (the most
 * stdin bytes accepted) defined.
 */
#ifndef ZS_AGENT_H
#define ZS_AGENT_H

static inline void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            _Exit(1);
        }
        p += (size_t)w;
        n -= (size_t)w;
    }
}

static inline _Noreturn void die(int code, const char *msg) {
    write_all(2, AGENT_NAME ": ", sizeof(AGENT_NAME ": ") - 1);
    write_all(2, msg, strlen(msg));
    write_all(2, "\n", 1);
    exit(code);
}

static inline void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die(1, "out of memory");
    return p;
}

static inline void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) die(1, "out of memory");
    return q;
}

/* Reads all of stdin; dies with status 2 if it is unreadable or too big. */
static inline uint8_t *read_stdin(size_t *out_len) {
    size_t cap = 64 * 1024, len = 0;
    uint8_t *buf = xmalloc(cap);
    for (;;) {
        if (len == cap) {
            size_t ncap = cap * 2;
            if (ncap > MAX_INPUT + 1) ncap = MAX_INPUT + 1;
            buf = xrealloc(buf, ncap);
            cap = ncap;
        }
        ssize_t r = read(0, buf + len, cap - len);
        if (r < 0) {
            if (errno == EINTR) continue;
            die(2, "cannot read input from stdin");
        }
        if (r == 0) break;
        len += (size_t)r;
        if (len > MAX_INPUT) die(2, "input too large (limit is 4 MiB)");
    }
    *out_len = len;
    return buf;
}

/* Growable output buffer. */
typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static inline void buf_put(Buf *b, const void *s, size_t n) {
    if (b->cap - b->len < n) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap - b->len < n) ncap *= 2;
        b->p = xrealloc(b->p, ncap);
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static inline void buf_puts(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static inline void buf_u64(Buf *b, uint64_t v) {
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_put(b, tmp + i, sizeof(tmp) - i);
}

/* Writes num / 10^decimals as a fixed-point decimal, e.g. (413, 2) -> 4.13. */
static inline void buf_fixed(Buf *b, int64_t num, unsigned decimals) {
    uint64_t scale = 1, mag;
    for (unsigned k = 0; k < decimals; k++) scale *= 10;
    if (num < 0) {
        buf_put(b, "-", 1);
        mag = (uint64_t)0 - (uint64_t)num;
    } else {
        mag = (uint64_t)num;
    }
    buf_u64(b, mag / scale);
    if (decimals) {
        char frac[20];
        uint64_t f = mag % scale;
        for (unsigned k = decimals; k > 0; k--) {
            frac[k - 1] = (char)('0' + f % 10);
            f /= 10;
        }
        buf_put(b, ".", 1);
        buf_put(b, frac, decimals);
    }
}

/* ------------------------------------------------------------------------ */
/* UTF-8                                                                    */

#define UTF8_INVALID 0x110000u

/* Decodes one code point at s[i]; returns its length in bytes (>= 1).
 * An invalid sequence yields UTF8_INVALID and consumes its maximal valid
 * prefix (at least one byte), as recommended by Unicode; it counts as one
 * character and is written out as U+FFFD. */
static inline size_t utf8_next(const uint8_t *s, size_t n, size_t i, uint32_t *cp) {
    uint8_t c = s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t need;
    uint32_t v;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *cp = UTF8_INVALID;
        return 1;
    }
    size_t k = 1;
    for (; k <= need; k++) {
        if (i + k >= n) break;
        uint8_t d = s[i + k];
        if (d < lo || d > hi) break;
        v = (v << 6) | (d & 0x3F);
        lo = 0x80;
        hi = 0xBF;
    }
    if (k <= need) {
        *cp = UTF8_INVALID;
        return k;
    }
    *cp = v;
    return need + 1;
}

/* Appends s as a JSON string literal; invalid UTF-8 becomes U+FFFD. */
static inline void buf_json_str(Buf *b, const uint8_t *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    buf_put(b, "\"", 1);
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = utf8_next(s, n, i, &cp);
        if (cp == UTF8_INVALID) {
            buf_put(b, "\xEF\xBF\xBD", 3);
        } else if (cp == '"') {
            buf_put(b, "\\\"", 2);
        } else if (cp == '\\') {
            buf_put(b, "\\\\", 2);
        } else if (cp < 0x20) {
            switch (cp) {
            case '\b': buf_put(b, "\\b", 2); break;
            case '\f': buf_put(b, "\\f", 2); break;
            case '\n': buf_put(b, "\\n", 2); break;
            case '\r': buf_put(b, "\\r", 2); break;
            case '\t': buf_put(b, "\\t", 2); break;
            default: {
                char e[6] = {'\\', 'u', '0', '0', hex[cp >> 4], hex[cp & 15]};
                buf_put(b, e, 6);
            }
            }
        } else {
            buf_put(b, s + i, len);
        }
        i += len;
    }
    buf_put(b, "\"", 1);
}

#endif
