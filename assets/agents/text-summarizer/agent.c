/*
 * Text-Summarizer agent for ZeroState: an extractive summary.
 *
 * A WASI preview1 command. Reads text from stdin (raw, a JSON string, or a JSON object with
 * a string member "text") and writes one JSON object plus a newline to stdout:
 *   {"summary": text, "sentence_count": n, "selected": [{"index", "score"}]}
 *
 * Sentences end at '.', '!' or '?' (a run of them counts once) followed by whitespace or the
 * end, or at a blank line. Words are runs of ASCII letters, digits, apostrophes and non-ASCII
 * bytes, lowercased (ASCII only); stopwords (a fixed English list) do not count. A word's
 * weight is its count over the most frequent word's count, and a sentence's score the sum of
 * its words' weights (figures to 6 significant digits). The summary keeps the best
 * ceil(n / 5) sentences (at least 1, at most 5; ties go to the earlier sentence) in their
 * original order, joined by single spaces.
 *
 * Errors: text without a sentence exits 1; unreadable stdin or input over 4 MiB exits 2.
 *
 * Build: clang --target=wasm32-wasi -O2 -s -Wall -Wextra -o agent.wasm agent.c
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define AGENT_NAME "text-summarizer"
#define MAX_INPUT ((size_t)4 * 1024 * 1024)
#define MAX_SELECTED 5

#include "../common/agent.h"
#include "../common/num.h"
#include "../common/text.h"

static const char *const STOPWORDS[] = {
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be",
    "because", "been", "before", "being", "but", "by", "can", "could", "did", "do", "does",
    "for", "from", "had", "has", "have", "he", "her", "him", "his", "how", "i", "if", "in",
    "into", "is", "it", "it's", "its", "just", "many", "may", "me", "more", "most", "my", "no",
    "not", "of", "on", "one", "only", "or", "other", "our", "out", "over", "she", "so", "some",
    "such", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this",
    "those", "to", "too", "up", "us", "very", "was", "we", "were", "what", "when", "where",
    "which", "while", "who", "why", "will", "with", "would", "you", "your",
};

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int is_stopword(const char *w) {
    return bsearch(&w, STOPWORDS, sizeof(STOPWORDS) / sizeof(STOPWORDS[0]), sizeof(char *),
                   cmp_str) != NULL;
}

static int is_word_byte(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '\'' || c >= 0x80;
}

static int is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Distinct content words and their counts (a sorted table, searched by bsearch). */
typedef struct {
    char *word;
    size_t count;
} Word;

typedef struct {
    size_t start, end; /* bytes of the text, trimmed */
    double score;
} Sentence;

static int cmp_word(const void *a, const void *b) {
    return strcmp(((const Word *)a)->word, ((const Word *)b)->word);
}

/* Calls `f(word)` for each content word of text[start, end), lowercased and NUL-terminated. */
static void each_word(const uint8_t *text, size_t start, size_t end, char *scratch,
                      void (*f)(const char *, void *), void *ctx) {
    size_t i = start;
    while (i < end) {
        while (i < end && !is_word_byte(text[i])) i++;
        size_t n = 0;
        while (i < end && is_word_byte(text[i])) {
            uint8_t c = text[i++];
            scratch[n++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        /* Apostrophes at a word's ends are quotes, not part of it. */
        size_t from = 0;
        while (from < n && scratch[from] == '\'') from++;
        while (n > from && scratch[n - 1] == '\'') n--;
        if (n == from) continue;
        scratch[n] = '\0';
        if (!is_stopword(scratch + from)) f(scratch + from, ctx);
    }
}

typedef struct {
    Word *v;
    size_t len, cap;
} Words;

static void collect(const char *w, void *ctx) {
    Words *words = ctx;
    if (words->len == words->cap) {
        words->cap = words->cap ? words->cap * 2 : 256;
        words->v = xrealloc(words->v, words->cap * sizeof(Word));
    }
    size_t n = strlen(w);
    words->v[words->len].word = memcpy(xmalloc(n + 1), w, n + 1);
    words->v[words->len].count = 1;
    words->len++;
}

typedef struct {
    const Words *words;
    double max, sum;
} Scoring;

static void score_word(const char *w, void *ctx) {
    Scoring *s = ctx;
    Word key = {(char *)w, 0};
    const Word *hit = bsearch(&key, s->words->v, s->words->len, sizeof(Word), cmp_word);
    if (hit) s->sum += (double)hit->count / s->max;
}

static const Sentence *ranking;

/* Best first; the earlier sentence wins a tie. */
static int cmp_rank(const void *a, const void *b) {
    const Sentence *x = &ranking[*(const size_t *)a], *y = &ranking[*(const size_t *)b];
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return x < y ? -1 : 1;
}

static int cmp_index(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

int main(void) {
    size_t raw_len, n;
    uint8_t *raw = read_stdin(&raw_len);
    const uint8_t *text = task_text(raw, raw_len, &n);

    /* Sentences. */
    Sentence *sentences = NULL;
    size_t count = 0, cap = 0, i = 0;
    while (i < n) {
        while (i < n && is_space(text[i])) i++;
        if (i >= n) break;
        size_t start = i, end = n;
        while (i < n) {
            uint8_t c = text[i];
            if (c == '.' || c == '!' || c == '?') {
                while (i < n && (text[i] == '.' || text[i] == '!' || text[i] == '?')) i++;
                if (i >= n || is_space(text[i])) {
                    end = i;
                    break;
                }
                continue;
            }
            if (c == '\n') {
                size_t j = i + 1;
                while (j < n && (text[j] == ' ' || text[j] == '\t' || text[j] == '\r')) j++;
                if (j < n && text[j] == '\n') {
                    end = i;
                    break;
                }
            }
            i++;
        }
        while (end > start && is_space(text[end - 1])) end--;
        if (end > start) {
            if (count == cap) {
                cap = cap ? cap * 2 : 64;
                sentences = xrealloc(sentences, cap * sizeof(Sentence));
            }
            sentences[count++] = (Sentence){start, end, 0};
        }
    }
    if (count == 0) die(1, "the text has no sentences");

    /* Word counts over the whole text. */
    char *scratch = xmalloc(n + 1);
    Words words = {0};
    for (size_t k = 0; k < count; k++)
        each_word(text, sentences[k].start, sentences[k].end, scratch, collect, &words);
    qsort(words.v, words.len, sizeof(Word), cmp_word);
    size_t distinct = 0;
    double max = 0;
    for (size_t k = 0; k < words.len; k++) {
        if (distinct > 0 && strcmp(words.v[distinct - 1].word, words.v[k].word) == 0) {
            words.v[distinct - 1].count++;
        } else {
            words.v[distinct++] = words.v[k];
        }
    }
    words.len = distinct;
    for (size_t k = 0; k < words.len; k++)
        if ((double)words.v[k].count > max) max = (double)words.v[k].count;

    for (size_t k = 0; k < count; k++) {
        Scoring s = {&words, max, 0};
        if (max > 0) each_word(text, sentences[k].start, sentences[k].end, scratch, score_word, &s);
        sentences[k].score = s.sum;
    }

    size_t keep = (count + 4) / 5;
    if (keep > MAX_SELECTED) keep = MAX_SELECTED;
    size_t *order = xmalloc(count * sizeof(size_t));
    for (size_t k = 0; k < count; k++) order[k] = k;
    ranking = sentences;
    qsort(order, count, sizeof(size_t), cmp_rank);
    qsort(order, keep, sizeof(size_t), cmp_index);

    Buf summary = {0}, out = {0};
    for (size_t k = 0; k < keep; k++) {
        const Sentence *s = &sentences[order[k]];
        if (k) buf_put(&summary, " ", 1);
        buf_put(&summary, text + s->start, s->end - s->start);
    }
    buf_puts(&out, "{\"summary\":");
    buf_json_str(&out, (const uint8_t *)summary.p, summary.len);
    buf_puts(&out, ",\"sentence_count\":");
    buf_u64(&out, count);
    buf_puts(&out, ",\"selected\":[");
    for (size_t k = 0; k < keep; k++) {
        if (k) buf_puts(&out, ",");
        buf_puts(&out, "{\"index\":");
        buf_u64(&out, order[k]);
        buf_puts(&out, ",\"score\":");
        buf_num(&out, sentences[order[k]].score);
        buf_puts(&out, "}");
    }
    buf_puts(&out, "]}\n");
    write_all(1, out.p, out.len);
    return 0;
}
