/*
 * Anomaly-Detector agent for ZeroState.
 *
 * A WASI preview1 command. Reads a numeric series from stdin, in any of:
 *   - a JSON object {"series": [numbers], "threshold": number?} (other members are ignored);
 *   - a JSON array of numbers;
 *   - plain text: numbers separated by whitespace, commas or semicolons.
 * Writes one JSON object plus a newline to stdout and exits 0:
 *   {"count", "mean", "stddev" (sample), "median", "mad", "method", "threshold",
 *    "anomalies": [{"index", "value", "score"}]}
 *
 * Method: the modified z-score of Iglewicz and Hoaglin, 0.6745 * (x - median) / MAD, where MAD
 * is the median absolute deviation; a point is an anomaly when |score| > threshold (default
 * 3.5). When more than half the points are equal (MAD = 0) the mean absolute deviation stands
 * in: (x - median) / (1.253314 * meanAD). A constant series has no anomalies. Figures are
 * rounded to 6 significant digits.
 *
 * Errors (message on stderr): input that is not such a series, or holds a non-finite number,
 * exits 1; unreadable stdin or input over 4 MiB exits 2.
 *
 * Build: clang --target=wasm32-wasi -O2 -s -Wall -Wextra -o agent.wasm agent.c
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define AGENT_NAME "anomaly-detector"
#define MAX_INPUT ((size_t)4 * 1024 * 1024)
#define MAX_DEPTH 64
#define DEFAULT_THRESHOLD 3.5

#include "../common/agent.h"
#include "../common/num.h"

/* ------------------------------------------------------------------------ */
/* Input: a cursor over the text.                                           */

typedef struct {
    const char *s;
    size_t i, n;
} Cursor;

static char peek(const Cursor *c) { return c->i < c->n ? c->s[c->i] : '\0'; }

static void skip_ws(Cursor *c) {
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' ||
                           c->s[c->i] == '\r'))
        c->i++;
}

static _Noreturn void bad_input(const char *why) { die(1, why); }

/* A number in JSON syntax (also the plain-text form); dies unless finite. */
static double number(Cursor *c) {
    size_t start = c->i;
    if (peek(c) == '-') c->i++;
    if (peek(c) == '0') {
        c->i++;
    } else if (peek(c) >= '1' && peek(c) <= '9') {
        while (peek(c) >= '0' && peek(c) <= '9') c->i++;
    } else {
        bad_input("expected a number");
    }
    if (peek(c) == '.') {
        c->i++;
        if (!(peek(c) >= '0' && peek(c) <= '9')) bad_input("expected digits after '.'");
        while (peek(c) >= '0' && peek(c) <= '9') c->i++;
    }
    if (peek(c) == 'e' || peek(c) == 'E') {
        c->i++;
        if (peek(c) == '+' || peek(c) == '-') c->i++;
        if (!(peek(c) >= '0' && peek(c) <= '9')) bad_input("expected digits in the exponent");
        while (peek(c) >= '0' && peek(c) <= '9') c->i++;
    }
    /* strtod needs a terminated copy: the input is not NUL-terminated. */
    char tmp[64];
    size_t len = c->i - start;
    char *text = len < sizeof(tmp) ? tmp : xmalloc(len + 1);
    memcpy(text, c->s + start, len);
    text[len] = '\0';
    double v = strtod(text, NULL);
    if (text != tmp) free(text);
    if (!isfinite(v)) bad_input("a number is too large");
    return v;
}

/* Skips a JSON string; returns whether it equals `key` (compared unescaped bytes only). */
static int string_is(Cursor *c, const char *key) {
    if (peek(c) != '"') bad_input("expected a string");
    c->i++;
    size_t start = c->i;
    int escaped = 0;
    for (;;) {
        if (c->i >= c->n) bad_input("unterminated string");
        char ch = c->s[c->i++];
        if (ch == '"') break;
        if (ch == '\\') {
            escaped = 1;
            if (c->i >= c->n) bad_input("unterminated string");
            c->i++;
        } else if ((unsigned char)ch < 0x20) {
            bad_input("control character in a string");
        }
    }
    size_t len = c->i - 1 - start;
    return !escaped && len == strlen(key) && memcmp(c->s + start, key, len) == 0;
}

static void skip_value(Cursor *c, int depth);

static void skip_literal(Cursor *c, const char *word) {
    size_t len = strlen(word);
    if (c->n - c->i < len || memcmp(c->s + c->i, word, len) != 0) bad_input("invalid JSON");
    c->i += len;
}

/* Skips any JSON value. */
static void skip_value(Cursor *c, int depth) {
    if (depth > MAX_DEPTH) bad_input("JSON nested too deeply");
    skip_ws(c);
    char ch = peek(c);
    if (ch == '{' || ch == '[') {
        char close = ch == '{' ? '}' : ']';
        c->i++;
        skip_ws(c);
        if (peek(c) == close) {
            c->i++;
            return;
        }
        for (;;) {
            if (close == '}') {
                skip_ws(c);
                string_is(c, "");
                skip_ws(c);
                if (peek(c) != ':') bad_input("expected ':'");
                c->i++;
            }
            skip_value(c, depth + 1);
            skip_ws(c);
            if (peek(c) == ',') {
                c->i++;
                continue;
            }
            if (peek(c) != close) bad_input("invalid JSON");
            c->i++;
            return;
        }
    }
    if (ch == '"') {
        string_is(c, "");
    } else if (ch == 't') {
        skip_literal(c, "true");
    } else if (ch == 'f') {
        skip_literal(c, "false");
    } else if (ch == 'n') {
        skip_literal(c, "null");
    } else {
        number(c);
    }
}

typedef struct {
    double *v;
    size_t len, cap;
} Series;

static void push(Series *s, double v) {
    if (s->len == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->v = xrealloc(s->v, s->cap * sizeof(double));
    }
    s->v[s->len++] = v;
}

/* A JSON array of numbers. */
static void json_series(Cursor *c, Series *out) {
    skip_ws(c);
    if (peek(c) != '[') bad_input("\"series\" must be an array of numbers");
    c->i++;
    skip_ws(c);
    if (peek(c) == ']') {
        c->i++;
        return;
    }
    for (;;) {
        skip_ws(c);
        push(out, number(c));
        skip_ws(c);
        if (peek(c) == ',') {
            c->i++;
            continue;
        }
        if (peek(c) != ']') bad_input("\"series\" must be an array of numbers");
        c->i++;
        return;
    }
}

/* {"series": [...], "threshold": n, ...} */
static void json_object(Cursor *c, Series *out, double *threshold) {
    int seen = 0;
    c->i++;
    skip_ws(c);
    if (peek(c) == '}') bad_input("the object has no \"series\"");
    for (;;) {
        skip_ws(c);
        int is_series = 0, is_threshold = 0;
        size_t key = c->i;
        is_series = string_is(c, "series");
        if (!is_series) {
            c->i = key;
            is_threshold = string_is(c, "threshold");
        }
        skip_ws(c);
        if (peek(c) != ':') bad_input("expected ':'");
        c->i++;
        skip_ws(c);
        if (is_series) {
            out->len = 0; /* the last one wins, as in most JSON readers */
            json_series(c, out);
            seen = 1;
        } else if (is_threshold) {
            *threshold = number(c);
            if (*threshold <= 0) bad_input("\"threshold\" must be positive");
        } else {
            skip_value(c, 1);
        }
        skip_ws(c);
        if (peek(c) == ',') {
            c->i++;
            continue;
        }
        if (peek(c) != '}') bad_input("invalid JSON object");
        c->i++;
        break;
    }
    if (!seen) bad_input("the object has no \"series\"");
}

/* Numbers separated by whitespace, commas or semicolons. */
static void text_series(Cursor *c, Series *out) {
    for (;;) {
        while (c->i < c->n && strchr(" \t\r\n,;", c->s[c->i])) c->i++;
        if (c->i >= c->n) return;
        push(out, number(c));
        if (c->i < c->n && !strchr(" \t\r\n,;", c->s[c->i]))
            bad_input("expected numbers separated by spaces, commas or semicolons");
    }
}

/* ------------------------------------------------------------------------ */
/* Statistics                                                               */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n); sorts v. n > 0. */
static double median(double *v, size_t n) {
    qsort(v, n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(void) {
    size_t len;
    const char *input = (const char *)read_stdin(&len);
    Cursor c = {input, 0, len};
    Series s = {0};
    double threshold = DEFAULT_THRESHOLD;

    if (len >= 3 && memcmp(input, "\xEF\xBB\xBF", 3) == 0) c.i = 3;
    skip_ws(&c);
    if (peek(&c) == '{') {
        json_object(&c, &s, &threshold);
    } else if (peek(&c) == '[') {
        json_series(&c, &s);
    } else {
        text_series(&c, &s);
    }
    skip_ws(&c);
    if (c.i != c.n) bad_input("unexpected text after the series");
    if (s.len == 0) bad_input("the series is empty");

    size_t n = s.len;
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += s.v[i];
    double mean = sum / (double)n;
    double sq = 0;
    for (size_t i = 0; i < n; i++) sq += (s.v[i] - mean) * (s.v[i] - mean);
    double stddev = n > 1 ? sqrt(sq / (double)(n - 1)) : 0;

    double *work = xmalloc(n * sizeof(double));
    memcpy(work, s.v, n * sizeof(double));
    double med = median(work, n);
    double mean_ad = 0;
    for (size_t i = 0; i < n; i++) {
        work[i] = fabs(s.v[i] - med);
        mean_ad += work[i];
    }
    mean_ad /= (double)n;
    double mad = median(work, n);

    /* score = (x - median) / scale */
    double scale = mad > 0 ? mad / 0.6745 : 1.253314 * mean_ad;

    Buf out = {0};
    buf_puts(&out, "{\"count\":");
    buf_u64(&out, n);
    buf_puts(&out, ",\"mean\":");
    buf_num(&out, mean);
    buf_puts(&out, ",\"stddev\":");
    buf_num(&out, stddev);
    buf_puts(&out, ",\"median\":");
    buf_num(&out, med);
    buf_puts(&out, ",\"mad\":");
    buf_num(&out, mad);
    buf_puts(&out, mad > 0 ? ",\"method\":\"modified_z_mad\"" : ",\"method\":\"modified_z_meanad\"");
    buf_puts(&out, ",\"threshold\":");
    buf_num(&out, threshold);
    buf_puts(&out, ",\"anomalies\":[");
    int first = 1;
    for (size_t i = 0; scale > 0 && i < n; i++) {
        double score = (s.v[i] - med) / scale;
        if (fabs(score) <= threshold) continue;
        if (!first) buf_puts(&out, ",");
        first = 0;
        buf_puts(&out, "{\"index\":");
        buf_u64(&out, i);
        buf_puts(&out, ",\"value\":");
        buf_num(&out, s.v[i]);
        buf_puts(&out, ",\"score\":");
        buf_num(&out, score);
        buf_puts(&out, "}");
    }
    buf_puts(&out, "]}\n");
    write_all(1, out.p, out.len);
    return 0;
}
