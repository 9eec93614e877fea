/*
 * Sentiment-Analyzer agent for ZeroState.
 *
 * A WASI preview1 command: reads the task input from stdin (raw text, a JSON
 * string, or a JSON object with a string field "text"), writes exactly one
 * JSON object plus a newline to stdout and exits 0.  Input larger than 4 MiB
 * or an unreadable stdin is reported on stderr with exit status 2.
 *
 * Scoring: an AFINN-style lexicon (-5..5).  A negator flips the sign of the
 * next sentiment word within 3 tokens; an intensifier multiplies the next
 * sentiment word (within 2 tokens) by 1.5.  Clause punctuation (, . ! ? ; :)
 * ends the scope of both.
 *
 * Build: clang --target=wasm32-wasi -O2 -s -Wall -Wextra -o agent.wasm agent.c
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define AGENT_NAME "sentiment"
#define MAX_INPUT ((size_t)4 * 1024 * 1024)
#define JSON_MAX_DEPTH 64

#include "../common/agent.h"
#include "../common/text.h"

/* ------------------------------------------------------------------------ */
/* Sentiment analysis                                                       */

typedef struct {
    const char *word;
    int score;
} LexEntry;

/* AFINN-style lexicon: lowercase ASCII words scored from -5 to 5. */
static LexEntry LEXICON[] = {
    /* positive */
    {"admire", 3}, {"admired", 3}, {"adorable", 3}, {"amazing", 4}, {"appreciate", 2},
    {"appreciated", 2}, {"awesome", 4}, {"beautiful", 3}, {"beautifully", 3}, {"benefit", 2},
    {"best", 3}, {"better", 2}, {"bliss", 3}, {"brilliant", 4}, {"calm", 2},
    {"celebrate", 3}, {"charming", 3}, {"cheerful", 2}, {"clean", 2}, {"clever", 2},
    {"comfortable", 2}, {"confident", 2}, {"convenient", 2}, {"cool", 1}, {"creative", 2},
    {"cute", 2}, {"delicious", 3}, {"delight", 3}, {"delighted", 3}, {"delightful", 3},
    {"easy", 1}, {"effective", 2}, {"efficient", 2}, {"elegant", 2}, {"enjoy", 2},
    {"enjoyable", 2}, {"enjoyed", 2}, {"enthusiastic", 3}, {"excellent", 3}, {"excited", 3},
    {"exciting", 3}, {"fabulous", 4}, {"fair", 2}, {"fantastic", 4}, {"fascinating", 3},
    {"favorite", 2}, {"fine", 2}, {"flawless", 4}, {"fortunate", 2}, {"fresh", 1},
    {"friendly", 2}, {"fun", 3}, {"funny", 3}, {"generous", 2}, {"genius", 4},
    {"gentle", 2}, {"glad", 3}, {"good", 3}, {"gorgeous", 3}, {"grateful", 3},
    {"great", 3}, {"happiness", 3}, {"happy", 3}, {"helpful", 2}, {"honest", 2},
    {"hope", 2}, {"hopeful", 2}, {"ideal", 3}, {"impressed", 3}, {"impressive", 3},
    {"improved", 2}, {"incredible", 3}, {"inspiring", 3}, {"interesting", 2}, {"joy", 3},
    {"joyful", 3}, {"kind", 2}, {"like", 2}, {"liked", 2}, {"likes", 2},
    {"love", 3}, {"loved", 3}, {"lovely", 3}, {"loves", 3}, {"loving", 2},
    {"lucky", 3}, {"magnificent", 3}, {"marvelous", 3}, {"masterpiece", 4}, {"nice", 3},
    {"ok", 1}, {"okay", 1}, {"outstanding", 5}, {"peaceful", 2}, {"perfect", 3},
    {"perfectly", 3}, {"pleasant", 3}, {"pleased", 3}, {"polite", 2}, {"positive", 2},
    {"praise", 3}, {"proud", 2}, {"recommend", 2}, {"recommended", 2}, {"relaxing", 2},
    {"reliable", 2}, {"remarkable", 2}, {"safe", 1}, {"satisfied", 2}, {"smart", 1},
    {"smooth", 2}, {"solid", 2}, {"spectacular", 4}, {"splendid", 3}, {"stunning", 4},
    {"success", 2}, {"successful", 3}, {"superb", 5}, {"superior", 2}, {"supportive", 2},
    {"sweet", 2}, {"tasty", 3}, {"terrific", 4}, {"thank", 2}, {"thanks", 2},
    {"thrilled", 5}, {"triumph", 4}, {"trust", 1}, {"useful", 2}, {"valuable", 2},
    {"victory", 3}, {"welcome", 2}, {"win", 4}, {"wise", 2}, {"wonderful", 4},
    {"worth", 2}, {"wow", 4}, {"yay", 2},
    /* negative */
    {"abandoned", -2}, {"abysmal", -4}, {"afraid", -2}, {"angry", -3}, {"annoyed", -2},
    {"annoying", -2}, {"anxious", -2}, {"ashamed", -2}, {"awful", -3}, {"bad", -3},
    {"bored", -2}, {"boring", -3}, {"broken", -2}, {"buggy", -2}, {"careless", -2},
    {"chaos", -2}, {"cheated", -3}, {"clumsy", -2}, {"complain", -2}, {"complaint", -2},
    {"confused", -2}, {"confusing", -2}, {"crap", -3}, {"crash", -2}, {"crashed", -2},
    {"cruel", -3}, {"damaged", -3}, {"dangerous", -2}, {"dead", -3}, {"depressed", -2},
    {"depressing", -2}, {"difficult", -1}, {"dirty", -2}, {"disappointed", -2},
    {"disappointing", -2}, {"disappointment", -2}, {"disaster", -2}, {"disgusted", -3},
    {"disgusting", -3}, {"dislike", -2}, {"dreadful", -3}, {"dull", -2}, {"error", -2},
    {"errors", -2}, {"evil", -3}, {"expensive", -1}, {"fail", -2}, {"failed", -2},
    {"failure", -2}, {"fake", -3}, {"fear", -2}, {"filthy", -3}, {"fraud", -4},
    {"frustrated", -2}, {"frustrating", -2}, {"garbage", -3}, {"greedy", -2}, {"gross", -2},
    {"guilty", -3}, {"harmful", -2}, {"hate", -3}, {"hated", -3}, {"hates", -3},
    {"helpless", -2}, {"hideous", -3}, {"hopeless", -2}, {"horrible", -3}, {"horrific", -3},
    {"hostile", -2}, {"hurt", -2}, {"idiot", -3}, {"ignored", -2}, {"inadequate", -2},
    {"incompetent", -2}, {"inferior", -2}, {"insult", -2}, {"irritating", -3}, {"lame", -2},
    {"lazy", -1}, {"lie", -2}, {"lost", -3}, {"lousy", -2}, {"mediocre", -3},
    {"mess", -2}, {"messy", -2}, {"miserable", -3}, {"mistake", -2}, {"nasty", -3},
    {"negative", -2}, {"noisy", -1}, {"outrageous", -3}, {"overpriced", -2}, {"pain", -2},
    {"painful", -2}, {"pathetic", -2}, {"poor", -2}, {"poorly", -2}, {"problem", -2},
    {"problems", -2}, {"regret", -2}, {"rude", -2}, {"sad", -2}, {"sadly", -2},
    {"scam", -2}, {"scary", -2}, {"shame", -2}, {"sick", -2}, {"slow", -2},
    {"sorry", -1}, {"stupid", -2}, {"suck", -3}, {"sucks", -3}, {"terrible", -3},
    {"terrifying", -3}, {"tired", -2}, {"toxic", -3}, {"trouble", -2}, {"ugly", -3},
    {"unacceptable", -2}, {"uncomfortable", -2}, {"unfair", -2}, {"unfortunately", -2},
    {"unhappy", -2}, {"unpleasant", -2}, {"unreliable", -2}, {"upset", -2}, {"useless", -2},
    {"vile", -3}, {"waste", -2}, {"wasted", -2}, {"weak", -2}, {"worried", -3},
    {"worse", -3}, {"worst", -3}, {"worthless", -2}, {"wrong", -2},
};
#define LEXICON_SIZE (sizeof(LEXICON) / sizeof(LEXICON[0]))

/* Negators are matched with apostrophes removed ("don't" == "dont"). */
static const char *const NEGATORS[] = {
    "aint",  "arent",   "cannot", "cant",    "couldnt", "didnt", "doesnt",   "dont",
    "hadnt", "hardly",  "hasnt",  "havent",  "isnt",    "neither", "never",  "no",
    "nobody", "nor",    "not",    "nothing", "shouldnt", "wasnt", "werent",  "without",
    "wont",  "wouldnt",
};

static const char *const INTENSIFIERS[] = {
    "absolutely", "extremely", "highly", "incredibly", "really",
    "so",         "super",     "totally", "truly",     "very",
};

#define NEGATION_WINDOW 3 /* a negator affects a sentiment word up to 3 tokens later */
#define INTENSIFIER_WINDOW 2

static int lex_cmp(const void *a, const void *b) {
    return strcmp(((const LexEntry *)a)->word, ((const LexEntry *)b)->word);
}

static int in_list(const char *const *list, size_t count, const char *w) {
    for (size_t k = 0; k < count; k++) {
        if (strcmp(list[k], w) == 0) return 1;
    }
    return 0;
}

static int is_token_byte(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '\'' || c >= 0x80;
}

/* Clause punctuation ends the scope of a negator or an intensifier. */
static int is_clause_break(uint8_t c) {
    return c == '.' || c == ',' || c == '!' || c == '?' || c == ';' || c == ':';
}

int main(void) {
    size_t raw_len, n;
    uint8_t *raw = read_stdin(&raw_len);
    const uint8_t *t = task_text(raw, raw_len, &n);

    qsort(LEXICON, LEXICON_SIZE, sizeof(LexEntry), lex_cmp);

    char *tok = xmalloc(n + 1);     /* lowercased token */
    char *bare = xmalloc(n + 1);    /* same without apostrophes */
    uint8_t seen[LEXICON_SIZE][2];  /* [word][negated] already listed */
    memset(seen, 0, sizeof(seen));
    uint16_t *pos_list = xmalloc(2 * LEXICON_SIZE * sizeof(uint16_t));
    uint16_t *neg_list = xmalloc(2 * LEXICON_SIZE * sizeof(uint16_t));
    size_t npos = 0, nneg = 0;

    uint64_t tokens = 0;
    int64_t score2 = 0; /* score in half points (intensified words score x1.5) */
    int neg_left = 0, int_left = 0;

    size_t i = 0;
    while (i < n) {
        uint8_t c = t[i];
        if (!is_token_byte(c)) {
            if (is_clause_break(c)) neg_left = int_left = 0;
            i++;
            continue;
        }
        /* Collect a token: ASCII letters lowercased; U+2018/U+2019 become '. */
        size_t len = 0;
        while (i < n && is_token_byte(t[i])) {
            uint8_t b = t[i];
            if (b == 0xE2 && i + 2 < n && t[i + 1] == 0x80 && (t[i + 2] == 0x98 || t[i + 2] == 0x99)) {
                tok[len++] = '\'';
                i += 3;
                continue;
            }
            tok[len++] = (char)((b >= 'A' && b <= 'Z') ? b + 32 : b);
            i++;
        }
        size_t s = 0;
        while (s < len && tok[s] == '\'') s++;
        while (len > s && tok[len - 1] == '\'') len--;
        if (s == len) continue;
        char *w = tok + s;
        tok[len] = '\0';
        tokens++;

        LexEntry key = {w, 0};
        const LexEntry *hit = bsearch(&key, LEXICON, LEXICON_SIZE, sizeof(LexEntry), lex_cmp);
        if (hit) {
            int negated = neg_left > 0;
            int64_t v = (int64_t)hit->score * (int_left > 0 ? 3 : 2);
            if (negated) v = -v;
            score2 += v;
            size_t idx = (size_t)(hit - LEXICON);
            if (!seen[idx][negated]) {
                seen[idx][negated] = 1;
                uint16_t item = (uint16_t)(idx * 2 + (size_t)negated);
                if (v > 0) pos_list[npos++] = item;
                else neg_list[nneg++] = item;
            }
            neg_left = int_left = 0;
            continue;
        }

        if (neg_left > 0) neg_left--;
        if (int_left > 0) int_left--;
        size_t bl = 0;
        for (char *p = w; *p; p++) {
            if (*p != '\'') bare[bl++] = *p;
        }
        bare[bl] = '\0';
        if (in_list(NEGATORS, sizeof(NEGATORS) / sizeof(NEGATORS[0]), bare)) {
            neg_left = NEGATION_WINDOW;
        } else if (in_list(INTENSIFIERS, sizeof(INTENSIFIERS) / sizeof(INTENSIFIERS[0]), w)) {
            int_left = INTENSIFIER_WINDOW;
        }
    }

    /* comparative = score / tokens, rounded half away from zero to 4 places. */
    int64_t comp = 0;
    if (tokens) {
        uint64_t mag = (uint64_t)(score2 < 0 ? -score2 : score2) * 10000u;
        uint64_t den = 2 * tokens;
        comp = (int64_t)((2 * mag + den) / (2 * den));
        if (score2 < 0) comp = -comp;
    }
    const char *label = score2 > 1 ? "positive" : score2 < -1 ? "negative" : "neutral";

    Buf out = {0};
    buf_puts(&out, "{\"score\":");
    buf_fixed(&out, score2 * 50, 2); /* half points -> hundredths */
    buf_puts(&out, ",\"comparative\":");
    buf_fixed(&out, comp, 4);
    buf_puts(&out, ",\"label\":\"");
    buf_puts(&out, label);
    buf_puts(&out, "\",\"tokens\":");
    buf_u64(&out, tokens);
    for (int list = 0; list < 2; list++) {
        const uint16_t *items = list == 0 ? pos_list : neg_list;
        size_t count = list == 0 ? npos : nneg;
        buf_puts(&out, list == 0 ? ",\"positive\":[" : "],\"negative\":[");
        for (size_t k = 0; k < count; k++) {
            if (k) buf_puts(&out, ",");
            const char *word = LEXICON[items[k] / 2].word;
            char phrase[64] = "not ";
            size_t off = (items[k] & 1) ? 4 : 0;
            size_t wl = strlen(word);
            memcpy(phrase + off, word, wl);
            buf_json_str(&out, (const uint8_t *)phrase, off + wl);
        }
    }
    buf_puts(&out, "]}\n");
    write_all(1, out.p, out.len);
    return 0;
}
