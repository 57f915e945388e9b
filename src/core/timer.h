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

#include <stdbool.h>
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
  int64_t pass_now;     /* `now` of the pass of pop_due under way */
  bool in_pass;         /* a pass is under way (see pop_due) */
  uint64_t gen;         /* this heap's generation (weft__timers_gen); 0:
                           none asked for yet */
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
/* Pops the earliest timer if it is due at `now`, else returns NULL, which
 * ends the pass. A pass is the calls from the first after a NULL up to the
 * next NULL, all with the same `now`: call it until it returns NULL
 * (fire_timers in loop.c does). A timer armed or moved during a pass (by
 * the fire function of a timer it popped) with a deadline already due is
 * keyed at now + 1 in the heap: it waits for the next pass, after the
 * timers due at now + 1 armed before it, so a fire function that re-arms
 * its own timer in the past cannot keep a pass going, nor hold up the
 * other due timers (timer callbacks, call.c). Its t->when is unchanged. */
weft__timer *weft__timers_pop_due(weft__timers *h, int64_t now);
/* Frees the arrays; the timers still armed are dropped without being
 * touched (their nodes may be gone already). */
void weft__timers_free(weft__timers *h);

/* True if t is armed in h. Exact even when t holds stale contents (a
 * weft_call_handle copied, or not zeroed before its first use): it trusts
 * nothing in t but checks that h's own arrays name t. Reads only h's
 * arrays and t->id. */
static inline bool weft__timers_holds(const weft__timers *h,
                                      const weft__timer *t) {
  uint32_t id = t->id;
  if (id >= h->nids || h->node[id] != t) return false;
  uint32_t p = h->pos[id]; /* for a free id: a free-list link */
  return p < h->n && h->heap[p].id == id;
}

/* Generations: a number per heap, given on first request and never given
 * again in the process, so a timer callback handle can tell its own
 * loop's heap from another's, and a live loop from one that has ended
 * (calls pending at the end of a loop are dropped, their handles keep the
 * old number). weft__timers_gen returns h's, 0 if no memory;
 * weft__timers_gen_live whether gen belongs to a heap not yet freed, on
 * any thread. Both take a process-wide lock: weft__timers_gen only the
 * first time for a heap; weft__timers_gen_live is for the rare paths
 * (misuse checks). */
uint64_t weft__timers_gen(weft__timers *h);
bool weft__timers_gen_live(uint64_t gen);

#endif
