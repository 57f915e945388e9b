/*
 * Timers: a binary min-heap of intrusive nodes ordered by (when, seq), so
 * equal deadlines fire in the order they were armed. Each node knows its
 * heap index, so cancelling is O(log n) and removing the last-armed node
 * (a timeout scope closed before anything else was armed) is O(1).
 * Timeout scopes arm their node lazily (see scope.c), so a scope opened and
 * closed without suspending never touches the heap at all.
 */
#ifndef WEFT_TIMER_H
#define WEFT_TIMER_H

#include <stddef.h>
#include <stdint.h>

typedef struct weft__timer {
  int64_t when;
  uint64_t seq;
  size_t idx; /* position in the heap; SIZE_MAX when not armed */
  void (*fire)(struct weft__timer *t);
} weft__timer;

typedef struct weft__heap_slot {
  int64_t when;
  uint64_t seq;
  weft__timer *t;
} weft__heap_slot;

typedef struct weft__timers {
  weft__heap_slot *heap;
  size_t n, cap;
  uint64_t seq;
} weft__timers;

#define WEFT__TIMER_IDLE SIZE_MAX

static inline void weft__timer_init(weft__timer *t, void (*fire)(weft__timer *)) {
  t->idx = WEFT__TIMER_IDLE;
  t->fire = fire;
  t->when = INT64_MAX;
  t->seq = 0;
}
static inline int weft__timer_armed(const weft__timer *t) {
  return t->idx != WEFT__TIMER_IDLE;
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
