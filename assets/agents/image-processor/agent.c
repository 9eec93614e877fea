/*
 * Image-Processor agent for ZeroState: grayscale images in plain PGM (P2).
 *
 * A WASI preview1 command. Reads from stdin either a plain PGM image (then reports its
 * statistics) or a JSON object
 *   {"pgm": "P2 ...", "operation": "stats" | "invert" | "blur" | "resize",
 *    "width": w, "height": h}      (width and height for resize only)
 * and writes one JSON object plus a newline to stdout:
 *   {"operation", "width", "height", "maxval", "min", "max", "mean", "pgm"?}
 * The figures describe the resulting image (the input for stats); `pgm` is the result of a
 * transform, as plain PGM text. invert maps v to maxval - v; blur is a 3x3 box mean with
 * edges clamped, rounded half up; resize is nearest-neighbour (1 to 4096 pixels a side).
 * The mean has 6 significant digits.
 *
 * Errors (message on stderr, exit 1): malformed PGM (bad magic, sizes, a sample over maxval,
 * too few or too many samples), an unknown operation, resize without a valid size. Unreadable
 * stdin or input over 4 MiB exits 2.
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

#define AGENT_NAME "image-processor"
#define MAX_INPUT ((size_t)4 * 1024 * 1024)
#define MAX_SIDE 4096

#include "../common/agent.h"
#include "../common/num.h"
#include "../common/text.h"
#include "../common/json.h"

typedef struct {
    size_t width, height;
    unsigned maxval;
    uint16_t *px;
} Image;

static void pgm_space(const uint8_t *s, size_t n, size_t *i) {
    for (;;) {
        while (*i < n && (s[*i] == ' ' || s[*i] == '\t' || s[*i] == '\n' || s[*i] == '\r'))
            (*i)++;
        if (*i < n && s[*i] == '#') {
            while (*i < n && s[*i] != '\n') (*i)++;
            continue;
        }
        return;
    }
}

/* A decimal integer of at most `max`. */
static size_t pgm_int(const uint8_t *s, size_t n, size_t *i, size_t max, const char *what) {
    pgm_space(s, n, i);
    if (!(*i < n && s[*i] >= '0' && s[*i] <= '9')) {
        Buf msg = {0};
        buf_puts(&msg, "malformed PGM: expected ");
        buf_puts(&msg, what);
        buf_put(&msg, "", 1);
        bad(msg.p);
    }
    size_t v = 0;
    while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
        v = v * 10 + (size_t)(s[(*i)++] - '0');
        if (v > max) {
            Buf msg = {0};
            buf_puts(&msg, "malformed PGM: ");
            buf_puts(&msg, what);
            buf_puts(&msg, " is over ");
            buf_u64(&msg, max);
            buf_put(&msg, "", 1);
            bad(msg.p);
        }
    }
    return v;
}

static Image pgm_parse(const uint8_t *s, size_t n) {
    size_t i = 0;
    pgm_space(s, n, &i);
    if (!(n - i >= 2 && s[i] == 'P' && s[i + 1] == '2')) bad("malformed PGM: expected \"P2\"");
    i += 2;
    Image img;
    img.width = pgm_int(s, n, &i, MAX_SIDE, "the width");
    img.height = pgm_int(s, n, &i, MAX_SIDE, "the height");
    img.maxval = (unsigned)pgm_int(s, n, &i, 65535, "the maximum value");
    if (img.width == 0 || img.height == 0 || img.maxval == 0)
        bad("malformed PGM: width, height and maximum value must be at least 1");
    size_t count = img.width * img.height;
    img.px = xmalloc(count * sizeof(uint16_t));
    for (size_t k = 0; k < count; k++)
        img.px[k] = (uint16_t)pgm_int(s, n, &i, img.maxval, "a sample");
    pgm_space(s, n, &i);
    if (i != n) bad("malformed PGM: more samples than width x height");
    return img;
}

static Image blank(size_t w, size_t h, unsigned maxval) {
    Image img = {w, h, maxval, xmalloc(w * h * sizeof(uint16_t))};
    return img;
}

static Image invert(const Image *a) {
    Image b = blank(a->width, a->height, a->maxval);
    for (size_t k = 0; k < a->width * a->height; k++) b.px[k] = (uint16_t)(a->maxval - a->px[k]);
    return b;
}

static size_t clamp(long v, size_t n) { return v < 0 ? 0 : (size_t)v >= n ? n - 1 : (size_t)v; }

static Image blur(const Image *a) {
    Image b = blank(a->width, a->height, a->maxval);
    for (size_t y = 0; y < a->height; y++)
        for (size_t x = 0; x < a->width; x++) {
            unsigned sum = 0;
            for (long dy = -1; dy <= 1; dy++)
                for (long dx = -1; dx <= 1; dx++)
                    sum += a->px[clamp((long)y + dy, a->height) * a->width +
                                 clamp((long)x + dx, a->width)];
            b.px[y * a->width + x] = (uint16_t)((sum * 2 + 9) / 18); /* sum / 9, half up */
        }
    return b;
}

static Image resize(const Image *a, size_t w, size_t h) {
    Image b = blank(w, h, a->maxval);
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            size_t sx = (2 * x + 1) * a->width / (2 * w), sy = (2 * y + 1) * a->height / (2 * h);
            b.px[y * w + x] = a->px[sy * a->width + sx];
        }
    return b;
}

static void pgm_write(Buf *out, const Image *img) {
    buf_puts(out, "P2\n");
    buf_u64(out, img->width);
    buf_puts(out, " ");
    buf_u64(out, img->height);
    buf_puts(out, "\n");
    buf_u64(out, img->maxval);
    buf_puts(out, "\n");
    for (size_t y = 0; y < img->height; y++) {
        for (size_t x = 0; x < img->width; x++) {
            if (x) buf_puts(out, " ");
            buf_u64(out, img->px[y * img->width + x]);
        }
        buf_puts(out, "\n");
    }
}

typedef struct {
    char *pgm, *operation;
    double width, height;
} Request;

static void request_member(Json *j, const char *key, void *ctx) {
    Request *r = ctx;
    if (strcmp(key, "pgm") == 0) {
        r->pgm = string(j);
    } else if (strcmp(key, "operation") == 0) {
        r->operation = string(j);
    } else if (strcmp(key, "width") == 0) {
        r->width = number(j);
    } else if (strcmp(key, "height") == 0) {
        r->height = number(j);
    } else if (!j_value(j, 1)) {
        bad("invalid JSON");
    }
}

static size_t side(double v, const char *what) {
    if (!(v >= 1 && v <= MAX_SIDE && v == floor(v))) {
        Buf msg = {0};
        buf_puts(&msg, "resize needs \"");
        buf_puts(&msg, what);
        buf_puts(&msg, "\", a whole number from 1 to 4096");
        buf_put(&msg, "", 1);
        bad(msg.p);
    }
    return (size_t)v;
}

int main(void) {
    size_t len;
    const uint8_t *input = read_stdin(&len);
    Json j = {input, len, 0};
    if (len >= 3 && memcmp(input, "\xEF\xBB\xBF", 3) == 0) j.i = 3;
    j_ws(&j);
    Request r = {NULL, NULL, 0, 0};
    Image img;
    if (j.i < j.n && j.s[j.i] == '{') {
        object(&j, request_member, &r);
        j_ws(&j);
        if (j.i != j.n) bad("unexpected text after the JSON object");
        if (!r.pgm) bad("the object has no \"pgm\" image");
        img = pgm_parse((const uint8_t *)r.pgm, strlen(r.pgm));
    } else {
        img = pgm_parse(input + j.i, len - j.i);
    }
    const char *op = r.operation ? r.operation : "stats";
    Image result;
    if (strcmp(op, "stats") == 0) {
        result = img;
    } else if (strcmp(op, "invert") == 0) {
        result = invert(&img);
    } else if (strcmp(op, "blur") == 0) {
        result = blur(&img);
    } else if (strcmp(op, "resize") == 0) {
        result = resize(&img, side(r.width, "width"), side(r.height, "height"));
    } else {
        bad("unknown operation (stats, invert, blur or resize)");
    }

    size_t count = result.width * result.height;
    unsigned lo = result.px[0], hi = result.px[0];
    double sum = 0;
    for (size_t k = 0; k < count; k++) {
        if (result.px[k] < lo) lo = result.px[k];
        if (result.px[k] > hi) hi = result.px[k];
        sum += result.px[k];
    }
    Buf out = {0}, pgm = {0};
    buf_puts(&out, "{\"operation\":");
    buf_json_str(&out, (const uint8_t *)op, strlen(op));
    buf_puts(&out, ",\"width\":");
    buf_u64(&out, result.width);
    buf_puts(&out, ",\"height\":");
    buf_u64(&out, result.height);
    buf_puts(&out, ",\"maxval\":");
    buf_u64(&out, result.maxval);
    buf_puts(&out, ",\"min\":");
    buf_u64(&out, lo);
    buf_puts(&out, ",\"max\":");
    buf_u64(&out, hi);
    buf_puts(&out, ",\"mean\":");
    buf_num(&out, sum / (double)count);
    if (result.px != img.px) {
        pgm_write(&pgm, &result);
        buf_puts(&out, ",\"pgm\":");
        buf_json_str(&out, (const uint8_t *)pgm.p, pgm.len);
    }
    buf_puts(&out, "}\n");
    write_all(1, out.p, out.len);
    return 0;
}
