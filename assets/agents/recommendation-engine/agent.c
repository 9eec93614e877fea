/*
 * Recommendation-Engine agent for ZeroState: nearest items by cosine similarity.
 *
 * A WASI preview1 command. Reads a JSON object from stdin:
 *   {"items": {name: [numbers], ...}, "like": name, "k": 3}
 * or with "vector": [numbers] instead of "like" (other members are ignored), and writes one
 * JSON object plus a newline to stdout:
 *   {"like": name | null, "dimensions": d, "recommendations": [{"item", "similarity"}]}
 * The k (default 3) items most similar to the liked item (itself excluded) or to the vector,
 * best first, ties in byte order of the names; similarities to 6 significant digits.
 *
 * Errors (message on stderr, exit 1): not such an object, vectors of different lengths, an
 * all-zero vector, an unknown "like", k not a whole number of at least 1. Unreadable stdin or
 * input over 4 MiB exits 2.
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

#define AGENT_NAME "recommendation-engine"
#define MAX_INPUT ((size_t)4 * 1024 * 1024)
#define DEFAULT_K 3

#include "../common/agent.h"
#include "../common/num.h"
#include "../common/text.h"
#include "../common/json.h"

typedef struct {
    char *name;
    Numbers v;
    double norm, similarity;
} Item;

typedef struct {
    Item *items;
    size_t count, cap;
    int has_items, has_vector;
    char *like;
    Numbers vector;
    size_t k;
} Request;

static void item_member(Json *j, const char *key, void *ctx) {
    Request *r = ctx;
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(r->items[i].name, key) == 0) bad("two items have the same name");
    if (r->count == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->items = xrealloc(r->items, r->cap * sizeof(Item));
    }
    size_t n = strlen(key);
    r->items[r->count++] = (Item){memcpy(xmalloc(n + 1), key, n + 1), numbers(j, "a vector"), 0, 0};
}

static void request_member(Json *j, const char *key, void *ctx) {
    Request *r = ctx;
    if (strcmp(key, "items") == 0) {
        r->count = 0;
        object(j, item_member, r);
        r->has_items = 1;
    } else if (strcmp(key, "like") == 0) {
        r->like = string(j);
    } else if (strcmp(key, "vector") == 0) {
        r->vector = numbers(j, "a vector");
        r->has_vector = 1;
    } else if (strcmp(key, "k") == 0) {
        double k = number(j);
        if (k < 1 || k != floor(k) || k > 1e9) bad("\"k\" must be a whole number of at least 1");
        r->k = (size_t)k;
    } else if (!j_value(j, 1)) {
        bad("invalid JSON");
    }
}

static double norm(const Numbers *v) {
    double sq = 0;
    for (size_t i = 0; i < v->len; i++) sq += v->v[i] * v->v[i];
    return sqrt(sq);
}

static int cmp_item(const void *a, const void *b) {
    const Item *x = a, *y = b;
    if (x->similarity != y->similarity) return x->similarity < y->similarity ? 1 : -1;
    return strcmp(x->name, y->name);
}

int main(void) {
    size_t len;
    const uint8_t *input = read_stdin(&len);
    Json j = {input, len, 0};
    if (len >= 3 && memcmp(input, "\xEF\xBB\xBF", 3) == 0) j.i = 3;
    Request r = {0};
    r.k = DEFAULT_K;
    object(&j, request_member, &r);
    j_ws(&j);
    if (j.i != j.n) bad("unexpected text after the JSON object");
    if (!r.has_items || r.count == 0) bad("\"items\" must map names to vectors");
    if ((r.like != NULL) == r.has_vector) bad("give either \"like\" (an item name) or \"vector\"");

    size_t dims = r.items[0].v.len;
    if (dims == 0) bad("vectors must not be empty");
    for (size_t i = 0; i < r.count; i++) {
        if (r.items[i].v.len != dims) bad("every vector must have the same length");
        r.items[i].norm = norm(&r.items[i].v);
        if (r.items[i].norm == 0) bad("an item's vector is all zeros");
    }
    const Numbers *query = &r.vector;
    const Item *liked = NULL;
    if (r.like) {
        for (size_t i = 0; i < r.count; i++)
            if (strcmp(r.items[i].name, r.like) == 0) liked = &r.items[i];
        if (!liked) bad("\"like\" names no item");
        query = &liked->v;
    }
    if (query->len != dims) bad("every vector must have the same length");
    double qnorm = norm(query);
    if (qnorm == 0) bad("the vector is all zeros");

    Item *ranked = xmalloc(r.count * sizeof(Item));
    size_t n = 0;
    for (size_t i = 0; i < r.count; i++) {
        if (&r.items[i] == liked) continue;
        double dot = 0;
        for (size_t d = 0; d < dims; d++) dot += query->v[d] * r.items[i].v.v[d];
        ranked[n] = r.items[i];
        ranked[n].similarity = dot / (qnorm * r.items[i].norm);
        n++;
    }
    qsort(ranked, n, sizeof(Item), cmp_item);
    if (r.k < n) n = r.k;

    Buf out = {0};
    buf_puts(&out, "{\"like\":");
    if (r.like) {
        buf_json_str(&out, (const uint8_t *)r.like, strlen(r.like));
    } else {
        buf_puts(&out, "null");
    }
    buf_puts(&out, ",\"dimensions\":");
    buf_u64(&out, dims);
    buf_puts(&out, ",\"recommendations\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) buf_puts(&out, ",");
        buf_puts(&out, "{\"item\":");
        buf_json_str(&out, (const uint8_t *)ranked[i].name, strlen(ranked[i].name));
        buf_puts(&out, ",\"similarity\":");
        buf_num(&out, ranked[i].similarity);
        buf_puts(&out, "}");
    }
    buf_puts(&out, "]}\n");
    write_all(1, out.p, out.len);
    return 0;
}
