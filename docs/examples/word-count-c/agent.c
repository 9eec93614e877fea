// Word-Count: a complete ZeroState agent in C. Reads the task input on stdin, logs to
// stderr, answers one JSON object on stdout and exits 0. Build: see ../build.sh.
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    size_t words = 0, bytes = 0;
    int c, in_word = 0;
    while ((c = getchar()) != EOF) {
        bytes++;
        if (isspace(c)) {
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            words++;
        }
    }
    const char *task = getenv("ZEROSTATE_TASK_ID");
    fprintf(stderr, "counted %zu words in %zu bytes\n", words, bytes);
    printf("{\"words\":%zu,\"bytes\":%zu,\"task_id\":\"%s\"}\n", words, bytes, task ? task : "");
    return 0;
}
