/*
 * A CSV reader (RFC 4180) for the demo agents: fields separated by commas, records by LF or
 * CRLF, double-quoted fields may hold commas, newlines and "" for a quote. Blank lines are
 * skipped. Include after agent.h.
 */
#ifndef ZS_CSV_H
#define ZS_CSV_H

typedef struct {
    const uint8_t *s;
    size_t n, i;
    /* Line being read, from 1, and the line the last record started on. */
    size_t line, record_line;
} Csv;

/* One record's fields, unquoted: field k is bytes [start[k], start[k] + len[k]) of `text`. */
typedef struct {
    Buf text;
    size_t *start, *len;
    size_t count, cap;
} Record;

static inline void record_push(Record *r, size_t start, size_t len) {
    if (r->count == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->start = xrealloc(r->start, r->cap * sizeof(size_t));
        r->len = xrealloc(r->len, r->cap * sizeof(size_t));
    }
    r->start[r->count] = start;
    r->len[r->count] = len;
    r->count++;
}

static inline _Noreturn void csv_error(const Csv *c, const char *what) {
    Buf msg = {0};
    buf_puts(&msg, what);
    buf_puts(&msg, " on line ");
    buf_u64(&msg, c->line);
    buf_put(&msg, "", 1);
    die(1, msg.p);
}

/* Reads the next record into `r` (replacing its contents); 0 at the end of the input. */
static inline int csv_record(Csv *c, Record *r) {
    r->text.len = 0;
    r->count = 0;
    /* Blank lines between records. */
    while (c->i < c->n && (c->s[c->i] == '\n' || c->s[c->i] == '\r')) {
        if (c->s[c->i] == '\n') c->line++;
        c->i++;
    }
    if (c->i >= c->n) return 0;
    c->record_line = c->line;
    for (;;) {
        size_t start = r->text.len;
        if (c->i < c->n && c->s[c->i] == '"') {
            size_t opened = c->line;
            c->i++;
            for (;;) {
                if (c->i >= c->n) {
                    c->line = opened;
                    csv_error(c, "unterminated quoted field");
                }
                uint8_t ch = c->s[c->i++];
                if (ch == '"') {
                    if (c->i < c->n && c->s[c->i] == '"') {
                        buf_put(&r->text, "\"", 1);
                        c->i++;
                        continue;
                    }
                    break;
                }
                if (ch == '\n') c->line++;
                buf_put(&r->text, &ch, 1);
            }
            if (c->i < c->n && c->s[c->i] != ',' && c->s[c->i] != '\n' && c->s[c->i] != '\r')
                csv_error(c, "unexpected text after a quoted field");
        } else {
            size_t from = c->i;
            while (c->i < c->n && c->s[c->i] != ',' && c->s[c->i] != '\n' && c->s[c->i] != '\r')
                c->i++;
            buf_put(&r->text, c->s + from, c->i - from);
        }
        record_push(r, start, r->text.len - start);
        if (c->i < c->n && c->s[c->i] == ',') {
            c->i++;
            continue;
        }
        if (c->i < c->n && c->s[c->i] == '\r') c->i++;
        if (c->i < c->n && c->s[c->i] == '\n') {
            c->i++;
            c->line++;
        }
        return 1;
    }
}

/* Field k of `r`. */
static inline const uint8_t *field(const Record *r, size_t k) {
    return (const uint8_t *)r->text.p + r->start[k];
}

/* Whether the bytes are a number in JSON syntax (so they can be written out as they are). */
static inline int is_json_number(const uint8_t *s, size_t n) {
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i < n && s[i] == '0') {
        i++;
    } else if (i < n && s[i] >= '1' && s[i] <= '9') {
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    } else {
        return 0;
    }
    if (i < n && s[i] == '.') {
        i++;
        if (!(i < n && s[i] >= '0' && s[i] <= '9')) return 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (!(i < n && s[i] >= '0' && s[i] <= '9')) return 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    return i == n;
}

/* Dies: the last record has `got` fields where the header has `want`. */
static inline _Noreturn void csv_ragged(const Csv *c, size_t got, size_t want) {
    Buf msg = {0};
    buf_puts(&msg, "line ");
    buf_u64(&msg, c->record_line);
    buf_puts(&msg, " has ");
    buf_u64(&msg, got);
    buf_puts(&msg, got == 1 ? " field" : " fields");
    buf_puts(&msg, ", the header has ");
    buf_u64(&msg, want);
    buf_put(&msg, "", 1);
    die(1, msg.p);
}

/* Reads stdin (a leading UTF-8 BOM skipped) as CSV, its first record into `header`; dies on
 * empty input. */
static inline Csv csv_stdin(Record *header) {
    size_t len;
    const uint8_t *input = read_stdin(&len);
    Csv c = {input, len, 0, 1, 1};
    if (len >= 3 && memcmp(input, "\xEF\xBB\xBF", 3) == 0) c.i = 3;
    if (!csv_record(&c, header)) die(1, "the input is empty; expected CSV with a header row");
    return c;
}

#endif
