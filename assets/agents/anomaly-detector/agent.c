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
#define DEFAULT_THRESHOLD 3.5

#include "../common/agent.h"
#include "../common/num.h"
#include "../common/text.h"
#include "../common/json.h"

/* ------------------------------------------------------------------------ */
/* Input                                                                    */

typedef struct {
    Numbers *series;
    double *threshold;
    int seen;
} Request;

/* {"series": [...], "threshold": n, ...}; the last "series" wins, as in most JSON readers. */
static void request_member(Json *j, const char *key, void *ctx) {
    Request *r = ctx;
    if (strcmp(key, "series") == 0) {
        free(r->series->v);
        *r->series = numbers(j, "\"series\"");
        r->seen = 1;
    } else if (strcmp(key, "threshold") == 0) {
        *r->threshold = number(j);
        if (*r->threshold <= 0) bad("\"threshold\" must be positive");
    } else if (!j_value(j, 1)) {
        bad("invalid JSON");
    }
}

static int is_separator(uint8_t c) { return c && strchr(" \t\r\n,;", c) != NULL; }

/* Numbers separated by whitespace, commas or semicolons. */
static void text_series(Json *j, Numbers *out) {
    for (;;) {
        while (j->i < j->n && is_separator(j->s[j->i])) j->i++;
        if (j->i >= j->n) return;
        numbers_push(out, number(j));
        if (j->i < j->n && !is_separator(j->s[j->i]))
            bad("expected numbers separated by spaces, commas or semicolons");
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
    const uint8_t *input = read_stdin(&len);
    Json j = {input, len, 0};
    Numbers s = {0};
    double threshold = DEFAULT_THRESHOLD;

    if (len >= 3 && memcmp(input, "\xEF\xBB\xBF", 3) == 0) j.i = 3;
    j_ws(&j);
    if (j.i < j.n && j.s[j.i] == '{') {
        Request r = {&s, &threshold, 0};
        object(&j, request_member, &r);
        if (!r.seen) bad("the object has no \"series\"");
    } else if (j.i < j.n && j.s[j.i] == '[') {
        s = numbers(&j, "\"series\"");
    } else {
        text_series(&j, &s);
    }
    j_ws(&j);
    if (j.i != j.n) bad("unexpected text after the series");
    if (s.len == 0) bad("the series is empty");

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
