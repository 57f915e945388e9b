/*
 * Timers: a 4-ary min-heap ordered by (when, seq), so equal deadlines fire
 * in the order they were armed. Cancelling is O(log n); removing the
 * last-armed timer (a timeout scope closed before anything else was
 * armed) is O(1). Timeout scopes arm their node lazily (see scope.c), so
 * a scope opened and closed without suspending never touches the heap.
 *
 * The nodes live in task stacks all over memory, and touching one costs a
 * cache and often a TLB miss. So a sift touches none: the heap holds the
 * keys and a small id per timer, and the id's heap position and node are
 * in two dense side arrays (see timer.c).
 */
#ifndef WEFT_TIMER_H
#define WEFT_TIMER_H

#include <stddef.h>
#include <stdint.h>

typedef struct weft__timer {
  int64_t when;
  uint32_t id; /* slot in the side arrays; WEFT__TIMER_IDLE when not armed */
  void (*fire)(struct weft__timer *t);
} weft__timer;

typedef struct weft__heap_slot {
  int64_t when;
  uint64_t seq;
  uint32_t id;
} weft__heap_slot;

typedef struct weft__timers {
  weft__heap_slot *heap;
  size_t n, cap;
  uint64_t seq;
  uint32_t *pos;        /* by id: heap position (armed), or 1 + the next
                           free id (0: none) */
  weft__timer **node;   /* by id: the timer */
  uint32_t nids, ids_cap;
  uint32_t free1;       /* 1 + the first free id; 0: none (all zero is an
                           empty heap) */
} weft__timers;

#define WEFT__TIMER_IDLE UINT32_MAX

static inline void weft__timer_init(weft__timer *t, void (*fire)(weft__timer *)) {
  t->id = WEFT__TIMER_IDLE;
  t->fire = fire;
  t->when = INT64_MAX;
}
static inline int weft__timer_armed(const weft__timer *t) {
  return t->id != WEFT__TIMER_IDLE;
}
/* Arms t at t->when. 0 or -ENOMEM. */
int weft__timers_add(weft__timers *h, weft__timer *t);
/* Disarms t if armed. */
void weft__timers_del(weft__timers *h, weft__timer *t);
/* Re-arms an armed t at a new deadline (keeps FIFO position semantics of
 * a fresh arm: it goes after equal deadlines already armed). */
void weft__timers_move(weft__timers *h, weft__timer *t, int64_t when);
/* Earliest deadline, or INT64_MAX. */
static inline int64_t weft__timers_next(const weft__timers *h) {
  return h->n ? h->heap[0].when : INT64_MAX;
}
/* Pops the earliest timer if it is due at `now`, else NULL. */
weft__timer *weft__timers_pop_due(weft__timers *h, int64_t now);
void weft__timers_free(weft__timers *h);

#endif
