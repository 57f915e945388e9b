/*
 * weft/combine.h -- combinators over tasks: gather, wait, as_completed,
 * race, retry, rate limiter. Included by weft.h.
 */
#ifndef WEFT_COMBINE_H
#define WEFT_COMBINE_H
#ifndef WEFT_H
#error "include weft.h, not weft/combine.h"
#endif
#endif
