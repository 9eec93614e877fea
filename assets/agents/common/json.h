/*
 * Reading JSON values for the agents that take structured input, on the primitives of
 * text.h. Every malformed input dies with status 1 and the reason. Include after text.h and
 * <math.h>.
 */
#ifndef ZS_JSON_H
#define ZS_JSON_H

/* Dies: the input is not what the agent takes. */
static inline _Noreturn void bad(const char *why) { die(1, why); }

/* A decoded JSON string, NUL-terminated (a NUL inside it is refused). */
static inline char *string(Json *j) {
    size_t len = 0, at = j->i;
    if (!j_string(j, NULL, 0, &len)) bad("expected a JSON string");
    char *out = xmalloc(len + 1);
    j->i = at;
    j_string(j, (uint8_t *)out, len, &len);
    if (memchr(out, '\0', len)) bad("a name holds a NUL character");
    out[len] = '\0';
    return out;
}

static inline double number(Json *j) {
    size_t start = j->i;
    if (!j_number(j)) bad("expected a number");
    size_t len = j->i - start;
    char *text = xmalloc(len + 1);
    memcpy(text, j->s + start, len);
    text[len] = '\0';
    double v = strtod(text, NULL);
    free(text);
    if (!isfinite(v)) bad("a number is too large");
    return v;
}

/* Calls `member(j, key, ctx)` with j at each member's value of the object at j. */
static inline void object(Json *j, void (*member)(Json *, const char *, void *), void *ctx) {
    j_ws(j);
    if (j->i >= j->n || j->s[j->i] != '{') bad("expected a JSON object");
    j->i++;
    j_ws(j);
    if (j->i < j->n && j->s[j->i] == '}') {
        j->i++;
        return;
    }
    for (;;) {
        j_ws(j);
        char *key = string(j);
        j_ws(j);
        if (j->i >= j->n || j->s[j->i] != ':') bad("expected ':' in an object");
        j->i++;
        j_ws(j);
        member(j, key, ctx);
        free(key);
        j_ws(j);
        if (j->i < j->n && j->s[j->i] == ',') {
            j->i++;
            continue;
        }
        if (j->i < j->n && j->s[j->i] == '}') {
            j->i++;
            return;
        }
        bad("expected ',' or '}' in an object");
    }
}

/* A growable array of numbers. */
typedef struct {
    double *v;
    size_t len, cap;
} Numbers;

static inline void numbers_push(Numbers *n, double v) {
    if (n->len == n->cap) {
        n->cap = n->cap ? n->cap * 2 : 16;
        n->v = xrealloc(n->v, n->cap * sizeof(double));
    }
    n->v[n->len++] = v;
}

/* A JSON array of numbers; `what` names it in the error ("a vector", "\"series\""). */
static inline Numbers numbers(Json *j, const char *what) {
    Numbers out = {0};
    j_ws(j);
    if (j->i < j->n && j->s[j->i] == '[') {
        j->i++;
        j_ws(j);
        if (j->i < j->n && j->s[j->i] == ']') {
            j->i++;
            return out;
        }
        for (;;) {
            j_ws(j);
            numbers_push(&out, number(j));
            j_ws(j);
            if (j->i < j->n && j->s[j->i] == ',') {
                j->i++;
                continue;
            }
            if (j->i < j->n && j->s[j->i] == ']') {
                j->i++;
                return out;
            }
            break;
        }
    }
    Buf msg = {0};
    buf_puts(&msg, what);
    buf_puts(&msg, " must be an array of numbers");
    buf_put(&msg, "", 1);
    bad(msg.p);
}

#endif
