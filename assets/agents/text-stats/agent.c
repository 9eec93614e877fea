/*
 * Text-Statistics agent for ZeroState.
 *
 * A WASI preview1 command: reads the task input from stdin (raw text, a JSON
 * string, or a JSON object with a string field "text"), writes exactly one
 * JSON object plus a newline to stdout and exits 0.  Input larger than 4 MiB
 * or an unreadable stdin is reported on stderr with exit status 2.
 *
 * Build: clang --target=wasm32-wasi -O2 -s -Wall -Wextra -o agent.wasm agent.c
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define AGENT_NAME "text-stats"
#define MAX_INPUT ((size_t)4 * 1024 * 1024)
#define JSON_MAX_DEPTH 64

#include "../common/agent.h"

static size_t utf8_count(const uint8_t *s, size_t n) {
    size_t i = 0, count = 0;
    uint32_t cp;
    while (i < n) {
        i += utf8_next(s, n, i, &cp);
        count++;
    }
    return count;
}

#include "../common/text.h"

/* ------------------------------------------------------------------------ */
/* Text statistics                                                          */

static int is_word_byte(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '\'' || c >= 0x80;
}

static int is_ascii_alnum(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int is_blank_byte(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static const char *const STOP_WORDS[] = {
    "a",     "about", "after", "all",   "also",  "am",    "an",    "and",   "any",
    "are",   "as",    "at",    "be",    "been",  "but",   "by",    "can",   "could",
    "did",   "do",    "does",  "for",   "from",  "had",   "has",   "have",  "he",
    "her",   "his",   "i",     "if",    "in",    "into",  "is",    "it",    "it's",
    "its",   "just",  "me",    "my",    "no",    "not",   "of",    "on",    "or",
    "our",   "she",   "so",    "than",  "that",  "the",   "their", "them",  "then",
    "there", "these", "they",  "this",  "those", "to",    "too",   "us",    "was",
    "we",    "were",  "what",  "when",  "which", "who",   "will",  "with",  "would",
    "you",   "your",
};

static int is_stop_word(const uint8_t *w, size_t len) {
    for (size_t k = 0; k < sizeof(STOP_WORDS) / sizeof(STOP_WORDS[0]); k++) {
        if (strlen(STOP_WORDS[k]) == len && memcmp(STOP_WORDS[k], w, len) == 0) return 1;
    }
    return 0;
}

/* Numbers such as "2024" are counted as words but are not "top words". */
static int has_letter(const uint8_t *w, size_t len) {
    for (size_t k = 0; k < len; k++) {
        uint8_t c = w[k];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return 1;
    }
    return 0;
}

typedef struct {
    uint32_t off, len, count, hash; /* count == 0: empty slot */
    int stop;                       /* excluded from top_words */
} Entry;

typedef struct {
    Entry *slots;
    size_t cap, used;
} Table;

static uint32_t fnv1a(const uint8_t *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t k = 0; k < n; k++) {
        h ^= s[k];
        h *= 16777619u;
    }
    return h;
}

static void table_grow(Table *t) {
    size_t ncap = t->cap ? t->cap * 2 : 1024;
    Entry *ns = xmalloc(ncap * sizeof(Entry));
    memset(ns, 0, ncap * sizeof(Entry));
    for (size_t k = 0; k < t->cap; k++) {
        Entry *e = &t->slots[k];
        if (!e->count) continue;
        size_t p = e->hash & (ncap - 1);
        while (ns[p].count) p = (p + 1) & (ncap - 1);
        ns[p] = *e;
    }
    free(t->slots);
    t->slots = ns;
    t->cap = ncap;
}

static void table_add(Table *t, const uint8_t *text, size_t off, size_t len) {
    if ((t->used + 1) * 2 > t->cap) table_grow(t);
    uint32_t h = fnv1a(text + off, len);
    size_t p = h & (t->cap - 1);
    for (;;) {
        Entry *e = &t->slots[p];
        if (!e->count) {
            e->off = (uint32_t)off;
            e->len = (uint32_t)len;
            e->hash = h;
            e->count = 1;
            e->stop = is_stop_word(text + off, len) || !has_letter(text + off, len);
            t->used++;
            return;
        }
        if (e->hash == h && e->len == len && memcmp(text + e->off, text + off, len) == 0) {
            e->count++;
            return;
        }
        p = (p + 1) & (t->cap - 1);
    }
}

/* Ordering for top words: higher count first, then bytewise alphabetical. */
static int ranks_before(const uint8_t *text, const Entry *a, const Entry *b) {
    if (a->count != b->count) return a->count > b->count;
    size_t m = a->len < b->len ? a->len : b->len;
    int c = memcmp(text + a->off, text + b->off, m);
    if (c != 0) return c < 0;
    return a->len < b->len;
}

#define TOP_N 5

int main(void) {
    size_t raw_len, n;
    uint8_t *raw = read_stdin(&raw_len);
    const uint8_t *orig = task_text(raw, raw_len, &n);

    /* Work on an ASCII-lowercased copy; no count depends on letter case. */
    uint8_t *t = xmalloc(n);
    for (size_t k = 0; k < n; k++) {
        uint8_t c = orig[k];
        t[k] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
    }

    uint64_t characters = utf8_count(t, n);
    uint64_t words = 0, word_chars = 0, sentences = 0, lines = 0, paragraphs = 0;

    /* Lines: every '\n', plus a final line without a terminator.
     * Paragraphs: runs of non-blank lines separated by blank lines. */
    if (n > 0 && t[n - 1] != '\n') lines++;
    int prev_blank = 1, blank = 1;
    for (size_t k = 0; k <= n; k++) {
        if (k == n || t[k] == '\n') {
            if (k < n) lines++;
            if (!blank && prev_blank) paragraphs++;
            prev_blank = blank;
            blank = 1;
        } else if (!is_blank_byte(t[k])) {
            blank = 0;
        }
    }

    /* Words, sentences and word frequencies. */
    Table table = {0};
    int word_since_terminator = 0;
    size_t i = 0;
    while (i < n) {
        uint8_t c = t[i];
        if (is_word_byte(c)) {
            size_t j = i;
            while (j < n && is_word_byte(t[j])) j++;
            size_t s = i, e = j;
            while (s < e && t[s] == '\'') s++; /* quotes are not part of words */
            while (e > s && t[e - 1] == '\'') e--;
            if (s < e) {
                words++;
                word_chars += utf8_count(t + s, e - s);
                word_since_terminator = 1;
                table_add(&table, t, s, e - s);
            }
            i = j;
        } else if (c == '.' || c == '!' || c == '?') {
            size_t j = i;
            while (j < n && (t[j] == '.' || t[j] == '!' || t[j] == '?')) j++;
            /* "2.5" or "example.com" do not end a sentence. */
            int inside_token = j < n && is_ascii_alnum(t[j]);
            if (word_since_terminator && !inside_token) {
                sentences++;
                word_since_terminator = 0;
            }
            i = j;
        } else {
            i++;
        }
    }
    if (word_since_terminator) sentences++;

    /* Top words. */
    const Entry *top[TOP_N];
    size_t ntop = 0;
    for (size_t k = 0; k < table.cap; k++) {
        const Entry *e = &table.slots[k];
        if (!e->count || e->stop) continue;
        size_t pos = ntop;
        while (pos > 0 && ranks_before(t, e, top[pos - 1])) pos--;
        if (pos >= TOP_N) continue;
        size_t last = ntop < TOP_N ? ntop : TOP_N - 1;
        for (size_t m = last; m > pos; m--) top[m] = top[m - 1];
        top[pos] = e;
        if (ntop < TOP_N) ntop++;
    }

    /* avg_word_length rounded half-up to 2 decimals, in hundredths. */
    int64_t avg100 = words ? (int64_t)((200 * word_chars + words) / (2 * words)) : 0;
    uint64_t reading_time = (words * 60 + 237) / 238; /* ceil(words / 238 * 60) */

    Buf out = {0};
    buf_puts(&out, "{\"characters\":");
    buf_u64(&out, characters);
    buf_puts(&out, ",\"bytes\":");
    buf_u64(&out, n);
    buf_puts(&out, ",\"words\":");
    buf_u64(&out, words);
    buf_puts(&out, ",\"sentences\":");
    buf_u64(&out, sentences);
    buf_puts(&out, ",\"lines\":");
    buf_u64(&out, lines);
    buf_puts(&out, ",\"paragraphs\":");
    buf_u64(&out, paragraphs);
    buf_puts(&out, ",\"avg_word_length\":");
    buf_fixed(&out, avg100, 2);
    buf_puts(&out, ",\"reading_time_s\":");
    buf_u64(&out, reading_time);
    buf_puts(&out, ",\"top_words\":[");
    for (size_t k = 0; k < ntop; k++) {
        if (k) buf_puts(&out, ",");
        buf_puts(&out, "{\"word\":");
        buf_json_str(&out, t + top[k]->off, top[k]->len);
        buf_puts(&out, ",\"count\":");
        buf_u64(&out, top[k]->count);
        buf_puts(&out, "}");
    }
    buf_puts(&out, "]}\n");
    write_all(1, out.p, out.len);
    return 0;
}
