/* 4-ary min-heap of timers; see timer.h.
 *
 * What a sift costs is the memory it touches. The heap array holds the
 * keys (deadline, sequence) and a 32-bit id per timer; moving an entry
 * records its new position in pos[id], a dense array, instead of in the
 * timer node, which lives in some task's stack (a cache and often a TLB
 * miss). Four children per node halve the levels of a binary heap (9
 * instead of 17 with 100,000 timers), the siblings' keys side by side. */
#include "core/timer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#define ARITY 4
#define PARENT(i) (((i) - 1) / ARITY)

static inline int before(const weft__heap_slot *a, const weft__heap_slot *b) {
  return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static inline void put(weft__timers *h, size_t i, weft__heap_slot v) {
  h->heap[i] = v;
  h->pos[v.id] = (uint32_t)i;
}

static void sift_up(weft__timers *h, size_t i) {
  weft__heap_slot v = h->heap[i];
  while (i > 0) {
    size_t p = PARENT(i);
    if (!before(&v, &h->heap[p])) break;
    put(h, i, h->heap[p]);
    i = p;
  }
  put(h, i, v);
}

static void sift_down(weft__timers *h, size_t i) {
  weft__heap_slot v = h->heap[i];
  for (;;) {
    size_t first = ARITY * i + 1;
    if (first >= h->n) break;
    size_t end = first + ARITY < h->n ? first + ARITY : h->n;
    size_t c = first;
    for (size_t k = first + 1; k < end; k++)
      if (before(&h->heap[k], &h->heap[c])) c = k;
    if (!before(&h->heap[c], &v)) break;
    put(h, i, h->heap[c]);
    i = c;
  }
  put(h, i, v);
}

/* Room for one more timer: in the heap and an id. 0 or -ENOMEM. */
static int reserve(weft__timers *h) {
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 64;
    if (cap > UINT32_MAX) return -ENOMEM; /* ids and positions are 32-bit */
    weft__heap_slot *a = realloc(h->heap, cap * sizeof *a);
    if (!a) return -ENOMEM;
    h->heap = a;
    h->cap = cap;
  }
  if (!h->free1 && h->nids == h->ids_cap) {
    uint32_t cap = h->ids_cap ? h->ids_cap * 2 : 64;
    uint32_t *p = realloc(h->pos, cap * sizeof *p);
    if (!p) return -ENOMEM;
    h->pos = p;
    weft__timer **nd = realloc(h->node, cap * sizeof *nd);
    if (!nd) return -ENOMEM;
    h->node = nd;
    h->ids_cap = cap;
  }
  return 0;
}

/* The heap key of a deadline: see weft__timers_pop_due. */
static inline int64_t key_of(const weft__timers *h, int64_t when) {
  return h->in_pass && when <= h->pass_now ? h->pass_now + 1 : when;
}

int weft__timers_add(weft__timers *h, weft__timer *t) {
  if (reserve(h) != 0) return -ENOMEM;
  uint32_t id;
  if (h->free1) {
    id = h->free1 - 1;
    h->free1 = h->pos[id];
  } else {
    id = h->nids++;
  }
  h->node[id] = t;
  t->id = id;
  h->heap[h->n] = (weft__heap_slot){key_of(h, t->when), ++h->seq, id};
  h->pos[id] = (uint32_t)h->n;
  sift_up(h, h->n++);
  return 0;
}

void weft__timers_del(weft__timers *h, weft__timer *t) {
  uint32_t id = t->id;
  if (id == WEFT__TIMER_IDLE) return;
  t->id = WEFT__TIMER_IDLE;
  size_t i = h->pos[id];
  h->pos[id] = h->free1;
  h->free1 = id + 1;
  weft__heap_slot last = h->heap[--h->n];
  if (i == h->n) return;
  put(h, i, last);
  if (i > 0 && before(&last, &h->heap[PARENT(i)]))
    sift_up(h, i);
  else
    sift_down(h, i);
}

void weft__timers_move(weft__timers *h, weft__timer *t, int64_t when) {
  t->when = when;
  size_t i = h->pos[t->id];
  h->heap[i].when = key_of(h, when);
  h->heap[i].seq = ++h->seq;
  if (i > 0 && before(&h->heap[i], &h->heap[PARENT(i)]))
    sift_up(h, i);
  else
    sift_down(h, i);
}

weft__timer *weft__timers_pop_due(weft__timers *h, int64_t now) {
  if (!h->in_pass) { /* a pass begins */
    h->in_pass = true;
    h->pass_now = now;
  }
  if (h->n == 0 || h->heap[0].when > now) {
    h->in_pass = false;
    return NULL;
  }
  weft__timer *t = h->node[h->heap[0].id];
  weft__timers_del(h, t);
  return t;
}

/* ---- generations ------------------------------------------------------ */

/* The generations of the heaps alive, in no order: a handful (one per
 * loop that has used timer callbacks), so a scan is fine. */
static pthread_mutex_t gen_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t gen_last;
static uint64_t *gen_live;
static size_t gen_n, gen_cap;

uint64_t weft__timers_gen(weft__timers *h) {
  if (h->gen) return h->gen;
  pthread_mutex_lock(&gen_mu);
  if (gen_n == gen_cap) {
    size_t cap = gen_cap ? gen_cap * 2 : 8;
    uint64_t *a = realloc(gen_live, cap * sizeof *a);
    if (!a) {
      pthread_mutex_unlock(&gen_mu);
      return 0;
    }
    gen_live = a;
    gen_cap = cap;
  }
  h->gen = ++gen_last;
  gen_live[gen_n++] = h->gen;
  pthread_mutex_unlock(&gen_mu);
  return h->gen;
}

bool weft__timers_gen_live(uint64_t gen) {
  bool live = false;
  if (!gen) return false;
  pthread_mutex_lock(&gen_mu);
  for (size_t i = 0; i < gen_n && !live; i++) live = gen_live[i] == gen;
  pthread_mutex_unlock(&gen_mu);
  return live;
}

static void gen_forget(uint64_t gen) {
  pthread_mutex_lock(&gen_mu);
  for (size_t i = 0; i < gen_n; i++) {
    if (gen_live[i] == gen) {
      gen_live[i] = gen_live[--gen_n];
      break;
    }
  }
  if (!gen_n) { /* nothing left for leak checkers to report */
    free(gen_live);
    gen_live = NULL;
    gen_cap = 0;
  }
  pthread_mutex_unlock(&gen_mu);
}

void weft__timers_free(weft__timers *h) {
  if (h->gen) gen_forget(h->gen);
  free(h->heap);
  free(h->pos);
  free(h->node);
  *h = (weft__timers){0};
}
