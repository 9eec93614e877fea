/*
 * Document-Parser agent for ZeroState: CSV in, JSON out.
 *
 * A WASI preview1 command. Reads CSV (RFC 4180; the first record names the columns) from
 * stdin and writes one JSON object plus a newline to stdout:
 *   {"columns": [names], "rows": [{name: value}], "row_count": n}
 * A value that is a number in JSON syntax becomes a number, an empty field null, anything
 * else a string (invalid UTF-8 becomes U+FFFD).
 *
 * Errors (message on stderr, exit 1): empty input, a column without a name or two with the
 * same name, a row whose field count differs from the header's, a malformed quoted field.
 * Unreadable stdin or input over 4 MiB exits 2.
 *
 * Build: clang --target=wasm32-wasi -O2 -s -Wall -Wextra -o agent.wasm agent.c
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define AGENT_NAME "document-parser"
#define MAX_INPUT ((size_t)4 * 1024 * 1024)

#include "../common/agent.h"
#include "../common/csv.h"

int main(void) {
    Record header = {0}, row = {0};
    Csv c = csv_stdin(&header);
    for (size_t k = 0; k < header.count; k++) {
        if (header.len[k] == 0) die(1, "a column has no name");
        for (size_t j = 0; j < k; j++)
            if (header.len[j] == header.len[k] &&
                memcmp(field(&header, j), field(&header, k), header.len[k]) == 0)
                die(1, "two columns have the same name");
    }

    Buf out = {0};
    buf_puts(&out, "{\"columns\":[");
    for (size_t k = 0; k < header.count; k++) {
        if (k) buf_puts(&out, ",");
        buf_json_str(&out, field(&header, k), header.len[k]);
    }
    buf_puts(&out, "],\"rows\":[");
    uint64_t rows = 0;
    while (csv_record(&c, &row)) {
        if (row.count != header.count) csv_ragged(&c, row.count, header.count);
        buf_puts(&out, rows ? ",{" : "{");
        for (size_t k = 0; k < row.count; k++) {
            if (k) buf_puts(&out, ",");
            buf_json_str(&out, field(&header, k), header.len[k]);
            buf_puts(&out, ":");
            const uint8_t *v = field(&row, k);
            if (row.len[k] == 0) {
                buf_puts(&out, "null");
            } else if (is_json_number(v, row.len[k])) {
                buf_put(&out, v, row.len[k]);
            } else {
                buf_json_str(&out, v, row.len[k]);
            }
        }
        buf_puts(&out, "}");
        rows++;
    }
    buf_puts(&out, "],\"row_count\":");
    buf_u64(&out, rows);
    buf_puts(&out, "}\n");
    write_all(1, out.p, out.len);
    return 0;
}
