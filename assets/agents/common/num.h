/*
 * Number output for the demo agents that report figures. Include after agent.h and
 * <stdio.h>.
 */
#ifndef ZS_NUM_H
#define ZS_NUM_H

/* A finite double with 6 significant digits (valid JSON); -0 is written as 0. */
static inline void buf_num(Buf *b, double v) {
    char tmp[32];
    if (v == 0) v = 0;
    int n = snprintf(tmp, sizeof(tmp), "%.6g", v);
    buf_put(b, tmp, (size_t)n);
}

#endif
