/*
 * weft/sync.h -- coordination between tasks of one loop: lock, event,
 * condition, semaphore, barrier, queue, channel. Included by weft.h.
 */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H
#ifndef WEFT_H
#error "include weft.h, not weft/sync.h"
#endif
#endif
