/*
 * weft/thread.h -- blocking code and other threads: thread pool,
 * to_thread, submitting to a loop from any thread, futures, several loops.
 * Included by weft.h.
 */
#ifndef WEFT_THREAD_H
#define WEFT_THREAD_H
#ifndef WEFT_H
#error "include weft.h, not weft/thread.h"
#endif
#endif
