/*
 * Data-Analyzer agent for ZeroState: column statistics of a CSV table.
 *
 * A WASI preview1 command. Reads CSV (RFC 4180; the first record names the columns) from
 * stdin and writes one JSON object plus a newline to stdout:
 *   {"rows": n, "columns": [column]}
 * An empty field is missing. A column whose present values are all numbers (JSON syntax) is
 *   {"name", "type": "number", "count", "missing", "min", "max", "mean", "median", "stddev"}
 * (sample standard deviation, 0 for one value; figures to 6 significant digits; without
 * values only name, type, count and missing); any other column is
 *   {"name", "type": "text", "count", "missing", "distinct", "top", "top_count"}
 * where `top` is the most frequent value (the first in byte order on a tie).
 *
 * Errors (message on stderr, exit 1): empty input, a row whose field count differs from the
 * header's, a malformed quoted field. Unreadable stdin or input over 4 MiB exits 2.
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

#define AGENT_NAME "data-analyzer"
#define MAX_INPUT ((size_t)4 * 1024 * 1024)

#include "../common/agent.h"
#include "../common/csv.h"
#include "../common/num.h"

/* One column's present values, each NUL-terminated in `text`. */
typedef struct {
    Buf text;
    size_t *at;
    size_t count, cap, missing;
    int numeric;
} Column;

static void column_add(Column *col, const uint8_t *v, size_t n) {
    if (n == 0) {
        col->missing++;
        return;
    }
    if (!is_json_number(v, n)) col->numeric = 0;
    if (col->count == col->cap) {
        col->cap = col->cap ? col->cap * 2 : 64;
        col->at = xrealloc(col->at, col->cap * sizeof(size_t));
    }
    col->at[col->count++] = col->text.len;
    buf_put(&col->text, v, n);
    buf_put(&col->text, "", 1);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The column whose values `cmp_value` compares (qsort has no context argument). */
static const Column *sorting;

static int cmp_value(const void *a, const void *b) {
    const char *x = sorting->text.p + *(const size_t *)a;
    const char *y = sorting->text.p + *(const size_t *)b;
    return strcmp(x, y);
}

static void number_stats(Buf *out, const Column *col) {
    size_t n = col->count;
    double *v = xmalloc(n * sizeof(double));
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = strtod(col->text.p + col->at[i], NULL);
        if (!isfinite(v[i])) die(1, "a number is too large");
        sum += v[i];
    }
    double mean = sum / (double)n, sq = 0;
    for (size_t i = 0; i < n; i++) sq += (v[i] - mean) * (v[i] - mean);
    qsort(v, n, sizeof(double), cmp_double);
    double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    buf_puts(out, ",\"min\":");
    buf_num(out, v[0]);
    buf_puts(out, ",\"max\":");
    buf_num(out, v[n - 1]);
    buf_puts(out, ",\"mean\":");
    buf_num(out, mean);
    buf_puts(out, ",\"median\":");
    buf_num(out, median);
    buf_puts(out, ",\"stddev\":");
    buf_num(out, n > 1 ? sqrt(sq / (double)(n - 1)) : 0);
    free(v);
}

static void text_stats(Buf *out, Column *col) {
    size_t n = col->count, distinct = 0, top = 0, top_count = 0;
    sorting = col;
    qsort(col->at, n, sizeof(size_t), cmp_value);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && strcmp(col->text.p + col->at[i], col->text.p + col->at[j]) == 0) j++;
        distinct++;
        if (j - i > top_count) {
            top_count = j - i;
            top = i;
        }
        i = j;
    }
    buf_puts(out, ",\"distinct\":");
    buf_u64(out, distinct);
    buf_puts(out, ",\"top\":");
    const char *t = col->text.p + col->at[top];
    buf_json_str(out, (const uint8_t *)t, strlen(t));
    buf_puts(out, ",\"top_count\":");
    buf_u64(out, top_count);
}

int main(void) {
    Record header = {0}, row = {0};
    Csv c = csv_stdin(&header);
    Column *cols = xmalloc(header.count * sizeof(Column));
    memset(cols, 0, header.count * sizeof(Column));
    for (size_t k = 0; k < header.count; k++) cols[k].numeric = 1;
    uint64_t rows = 0;
    while (csv_record(&c, &row)) {
        if (row.count != header.count) csv_ragged(&c, row.count, header.count);
        for (size_t k = 0; k < row.count; k++) column_add(&cols[k], field(&row, k), row.len[k]);
        rows++;
    }

    Buf out = {0};
    buf_puts(&out, "{\"rows\":");
    buf_u64(&out, rows);
    buf_puts(&out, ",\"columns\":[");
    for (size_t k = 0; k < header.count; k++) {
        Column *col = &cols[k];
        if (k) buf_puts(&out, ",");
        buf_puts(&out, "{\"name\":");
        buf_json_str(&out, field(&header, k), header.len[k]);
        buf_puts(&out, col->numeric ? ",\"type\":\"number\"" : ",\"type\":\"text\"");
        buf_puts(&out, ",\"count\":");
        buf_u64(&out, col->count);
        buf_puts(&out, ",\"missing\":");
        buf_u64(&out, col->missing);
        if (col->count > 0) {
            if (col->numeric) {
                number_stats(&out, col);
            } else {
                text_stats(&out, col);
            }
        }
        buf_puts(&out, "}");
    }
    buf_puts(&out, "]}\n");
    write_all(1, out.p, out.len);
    return 0;
}
