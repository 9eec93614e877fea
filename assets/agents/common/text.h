/*
 * Input decoding for the text agents: the task input is raw text, a JSON string, or a JSON
 * object with a string member "text" (see README.md). Include after agent.h.
 */
#ifndef ZS_TEXT_H
#define ZS_TEXT_H

#ifndef JSON_MAX_DEPTH
#define JSON_MAX_DEPTH 64
#endif

typedef struct {
    const uint8_t *s;
    size_t n, i;
} Json;

static inline void j_ws(Json *j) {
    while (j->i < j->n) {
        uint8_t c = j->s[j->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        j->i++;
    }
}

static inline int hexval(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits at s[at..at+3]; returns 0 if out of range/invalid. */
static inline int j_hex4(const Json *j, size_t at, uint32_t *out) {
    if (at > j->n || j->n - at < 4) return 0;
    uint32_t v = 0;
    for (size_t k = 0; k < 4; k++) {
        int h = hexval(j->s[at + k]);
        if (h < 0) return 0;
        v = (v << 4) | (uint32_t)h;
    }
    *out = v;
    return 1;
}

static inline void emit(uint8_t *out, size_t cap, size_t *len, uint8_t byte) {
    if (out && *len < cap) out[*len] = byte;
    (*len)++;
}

static inline void emit_utf8(uint8_t *out, size_t cap, size_t *len, uint32_t cp) {
    if (cp < 0x80) {
        emit(out, cap, len, (uint8_t)cp);
    } else if (cp < 0x800) {
        emit(out, cap, len, (uint8_t)(0xC0 | (cp >> 6)));
        emit(out, cap, len, (uint8_t)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        emit(out, cap, len, (uint8_t)(0xE0 | (cp >> 12)));
        emit(out, cap, len, (uint8_t)(0x80 | ((cp >> 6) & 0x3F)));
        emit(out, cap, len, (uint8_t)(0x80 | (cp & 0x3F)));
    } else {
        emit(out, cap, len, (uint8_t)(0xF0 | (cp >> 18)));
        emit(out, cap, len, (uint8_t)(0x80 | ((cp >> 12) & 0x3F)));
        emit(out, cap, len, (uint8_t)(0x80 | ((cp >> 6) & 0x3F)));
        emit(out, cap, len, (uint8_t)(0x80 | (cp & 0x3F)));
    }
}

/* Parses the JSON string starting at j->i (which must be '"').  Decoded bytes
 * go to out (at most cap of them; out may be NULL); *out_len receives the
 * full decoded length.  Returns 1 on success, 0 on malformed input. */
static inline int j_string(Json *j, uint8_t *out, size_t cap, size_t *out_len) {
    size_t len = 0;
    if (j->i >= j->n || j->s[j->i] != '"') return 0;
    j->i++;
    for (;;) {
        if (j->i >= j->n) return 0;
        uint8_t c = j->s[j->i];
        if (c == '"') {
            j->i++;
            *out_len = len;
            return 1;
        }
        if (c < 0x20) return 0;
        if (c != '\\') {
            emit(out, cap, &len, c);
            j->i++;
            continue;
        }
        if (j->i + 1 >= j->n) return 0;
        uint8_t e = j->s[j->i + 1];
        uint32_t cp, lo;
        switch (e) {
        case '"': emit(out, cap, &len, '"'); break;
        case '\\': emit(out, cap, &len, '\\'); break;
        case '/': emit(out, cap, &len, '/'); break;
        case 'b': emit(out, cap, &len, '\b'); break;
        case 'f': emit(out, cap, &len, '\f'); break;
        case 'n': emit(out, cap, &len, '\n'); break;
        case 'r': emit(out, cap, &len, '\r'); break;
        case 't': emit(out, cap, &len, '\t'); break;
        case 'u':
            if (!j_hex4(j, j->i + 2, &cp)) return 0;
            j->i += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (j->i + 1 < j->n && j->s[j->i] == '\\' && j->s[j->i + 1] == 'u' &&
                    j_hex4(j, j->i + 2, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    j->i += 6;
                } else {
                    cp = 0xFFFD; /* unpaired high surrogate */
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                cp = 0xFFFD; /* unpaired low surrogate */
            }
            emit_utf8(out, cap, &len, cp);
            continue; /* j->i already advanced */
        default:
            return 0;
        }
        j->i += 2;
    }
}

static inline int j_literal(Json *j, const char *lit) {
    size_t l = strlen(lit);
    if (j->n - j->i < l || memcmp(j->s + j->i, lit, l) != 0) return 0;
    j->i += l;
    return 1;
}

static inline int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

static inline int j_number(Json *j) {
    if (j->i < j->n && j->s[j->i] == '-') j->i++;
    if (j->i >= j->n || !is_digit(j->s[j->i])) return 0;
    if (j->s[j->i] == '0') {
        j->i++;
    } else {
        while (j->i < j->n && is_digit(j->s[j->i])) j->i++;
    }
    if (j->i < j->n && j->s[j->i] == '.') {
        j->i++;
        if (j->i >= j->n || !is_digit(j->s[j->i])) return 0;
        while (j->i < j->n && is_digit(j->s[j->i])) j->i++;
    }
    if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
        j->i++;
        if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-')) j->i++;
        if (j->i >= j->n || !is_digit(j->s[j->i])) return 0;
        while (j->i < j->n && is_digit(j->s[j->i])) j->i++;
    }
    return 1;
}

/* Validates and skips any JSON value (depth-limited). */
static inline int j_value(Json *j, int depth) {
    size_t dummy;
    if (depth > JSON_MAX_DEPTH) return 0;
    j_ws(j);
    if (j->i >= j->n) return 0;
    switch (j->s[j->i]) {
    case '"':
        return j_string(j, NULL, 0, &dummy);
    case '{':
        j->i++;
        j_ws(j);
        if (j->i < j->n && j->s[j->i] == '}') {
            j->i++;
            return 1;
        }
        for (;;) {
            j_ws(j);
            if (!j_string(j, NULL, 0, &dummy)) return 0;
            j_ws(j);
            if (j->i >= j->n || j->s[j->i] != ':') return 0;
            j->i++;
            if (!j_value(j, depth + 1)) return 0;
            j_ws(j);
            if (j->i >= j->n) return 0;
            if (j->s[j->i] == '}') {
                j->i++;
                return 1;
            }
            if (j->s[j->i] != ',') return 0;
            j->i++;
        }
    case '[':
        j->i++;
        j_ws(j);
        if (j->i < j->n && j->s[j->i] == ']') {
            j->i++;
            return 1;
        }
        for (;;) {
            if (!j_value(j, depth + 1)) return 0;
            j_ws(j);
            if (j->i >= j->n) return 0;
            if (j->s[j->i] == ']') {
                j->i++;
                return 1;
            }
            if (j->s[j->i] != ',') return 0;
            j->i++;
        }
    case 't': return j_literal(j, "true");
    case 'f': return j_literal(j, "false");
    case 'n': return j_literal(j, "null");
    default: return j_number(j);
    }
}

/* If the whole input is a JSON string, or a JSON object whose "text" member
 * is a string, decodes that string into out (capacity n, which is always
 * enough) and returns 1.  Otherwise returns 0 (use the raw input). */
static inline int extract_json_text(const uint8_t *s, size_t n, uint8_t *out, size_t *out_len) {
    Json j = {s, n, 0};
    size_t len = 0;
    int found = 0;
    j_ws(&j);
    if (j.i >= n) return 0;
    if (s[j.i] == '"') {
        if (!j_string(&j, out, n, &len)) return 0;
        found = 1;
    } else if (s[j.i] == '{') {
        j.i++;
        j_ws(&j);
        if (j.i < n && s[j.i] == '}') {
            j.i++;
        } else {
            for (;;) {
                uint8_t key[8];
                size_t key_len;
                j_ws(&j);
                if (!j_string(&j, key, sizeof(key), &key_len)) return 0;
                j_ws(&j);
                if (j.i >= n || s[j.i] != ':') return 0;
                j.i++;
                j_ws(&j);
                int is_text = key_len == 4 && memcmp(key, "text", 4) == 0;
                if (is_text && j.i < n && s[j.i] == '"') {
                    /* Last occurrence wins, like most JSON parsers. */
                    if (!j_string(&j, out, n, &len)) return 0;
                    found = 1;
                } else {
                    if (!j_value(&j, 1)) return 0;
                    if (is_text) found = 0;
                }
                j_ws(&j);
                if (j.i >= n) return 0;
                if (s[j.i] == '}') {
                    j.i++;
                    break;
                }
                if (s[j.i] != ',') return 0;
                j.i++;
            }
        }
    } else {
        return 0;
    }
    j_ws(&j);
    if (j.i != n || !found || len > n) return 0;
    *out_len = len;
    return 1;
}

/* Returns the task text (pointer into in or into a new buffer). */
static inline const uint8_t *task_text(uint8_t *in, size_t n, size_t *text_len) {
    /* A leading UTF-8 byte order mark is not part of the text. */
    if (n >= 3 && in[0] == 0xEF && in[1] == 0xBB && in[2] == 0xBF) {
        in += 3;
        n -= 3;
    }
    uint8_t *decoded = xmalloc(n);
    size_t len;
    if (extract_json_text(in, n, decoded, &len)) {
        *text_len = len;
        return decoded;
    }
    free(decoded);
    *text_len = n;
    return in;
}

#endif
