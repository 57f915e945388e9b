/*
 * test_sync_queue.c -- weft_queue: FIFO/LIFO/priority order (stable among
 * equals), bounded and unbounded, backpressure, hand-offs, task_done and
 * join, Python 3.13's shutdown (graceful and immediate) with waiters on
 * both sides, cancellation, deadlines, 1,000 producers and consumers over
 * a capacity-1 queue, free with waiters.
 */
#include "helpers.h"

typedef struct {
  weft_queue *q;
  int rc[32];
  long got[64];
  int ngot;
  tlog log;
  weft_task *t[16];
} qstate;

typedef struct {
  qstate *s;
  int id;
  long v;
} qarg;

/* ---------------------------------------------------------------- */
/* Order and queries                                                  */
/* ---------------------------------------------------------------- */

static int fifo_main(void *arg) {
  qstate *s = arg;
  for (long i = 0; i < 3; i++) s->rc[i] = weft_queue_put(s->q, &i);
  long four = 3;
  s->rc[3] = weft_queue_try_put(s->q, &four);  /* full: capacity 3 */
  s->rc[4] = weft_queue_full(s->q);
  s->rc[5] = (int)weft_queue_size(s->q);
  for (int i = 0; i < 3; i++) weft_queue_get(s->q, &s->got[s->ngot++]);
  s->rc[6] = weft_queue_empty(s->q);
  long x = -1;
  s->rc[7] = weft_queue_try_get(s->q, &x); /* empty */
  s->rc[8] = (int)x;
  /* Wrap around the ring many times. */
  for (long i = 0; i < 100; i++) {
    weft_queue_put(s->q, &i);
    long v;
    weft_queue_get(s->q, &v);
    if (v != i) s->rc[9] = -EPROTO;
  }
  return 0;
}

Test(sync_queue, fifo, .timeout = 10) {
  qstate s = {.q = weft_queue_new(3, sizeof(long))};
  cr_assert_not_null(s.q);
  cr_assert_eq(weft_queue_capacity(s.q), 3);
  cr_assert(weft_queue_empty(s.q));
  cr_assert_not(weft_queue_full(s.q));
  cr_assert_eq(weft_run(fifo_main, &s), 0);
  for (int i = 0; i < 3; i++) cr_assert_eq(s.rc[i], 0);
  cr_assert_eq(s.rc[3], -EAGAIN);
  cr_assert_eq(s.rc[4], 1);
  cr_assert_eq(s.rc[5], 3);
  cr_assert_eq(s.rc[6], 1);
  cr_assert_eq(s.rc[7], -EAGAIN);
  cr_assert_eq(s.rc[8], -1); /* untouched */
  cr_assert_eq(s.rc[9], 0);
  for (int i = 0; i < 3; i++) cr_assert_eq(s.got[i], i);
  cr_assert_eq(weft_queue_free(s.q), 0);
}

/* LIFO, filled before the loop from a thread with no loop (try_put
 * needs no task), drained inside it. */
static int lifo_main(void *arg) {
  qstate *s = arg;
  long v;
  while (weft_queue_try_get(s->q, &v) == 0) s->got[s->ngot++] = v;
  return 0;
}

Test(sync_queue, lifo, .timeout = 10) {
  qstate s = {.q = weft_queue_new_lifo(0, sizeof(long))};
  cr_assert_eq(weft_queue_capacity(s.q), 0);
  for (long i = 0; i < 40; i++) cr_assert_eq(weft_queue_try_put(s.q, &i), 0);
  cr_assert_not(weft_queue_full(s.q)); /* unbounded: never full */
  cr_assert_eq(weft_run(lifo_main, &s), 0);
  cr_assert_eq(s.ngot, 40);
  for (int i = 0; i < 40; i++) cr_assert_eq(s.got[i], 39 - i);
  weft_queue_free(s.q);
}

typedef struct {
  int prio;
  int id;
} pitem;

static int by_prio(const void *a, const void *b) {
  const pitem *x = a, *y = b;
  return (x->prio > y->prio) - (x->prio < y->prio);
}

/* asyncio-style priority order, with equal priorities in the order they
 * were put (FIFO among equals, which heapq alone does not give). */
Test(sync_queue, priority_stable, .timeout = 10) {
  weft_queue *q = weft_queue_new_priority(0, sizeof(pitem), by_prio);
  cr_assert_not_null(q);
  /* 300 items, priorities 0..4 pseudo-randomly, ids in put order. */
  uint32_t x = 12345;
  int count[5] = {0};
  for (int i = 0; i < 300; i++) {
    x = x * 1103515245u + 12345u;
    pitem it = {(int)((x >> 16) % 5), i};
    count[it.prio]++;
    cr_assert_eq(weft_queue_try_put(q, &it), 0);
  }
  cr_assert_eq(weft_queue_size(q), 300);
  pitem prev = {-1, -1};
  for (int i = 0; i < 300; i++) {
    pitem it;
    cr_assert_eq(weft_queue_try_get(q, &it), 0);
    cr_assert(it.prio > prev.prio || (it.prio == prev.prio && it.id > prev.id),
              "item %d: (%d,%d) after (%d,%d)", i, it.prio, it.id, prev.prio,
              prev.id);
    prev = it;
  }
  pitem none;
  cr_assert_eq(weft_queue_try_get(q, &none), -EAGAIN);
  weft_queue_free(q);
}

/* Equal priorities only: exactly FIFO, also across interleaved gets. */
Test(sync_queue, priority_all_equal, .timeout = 10) {
  weft_queue *q = weft_queue_new_priority(8, sizeof(pitem), by_prio);
  int next_out = 0, next_in = 0;
  for (int round = 0; round < 50; round++) {
    for (int k = 0; k < 5; k++) {
      pitem it = {7, next_in++};
      cr_assert_eq(weft_queue_try_put(q, &it), 0);
    }
    for (int k = 0; k < 5; k++) {
      pitem it;
      cr_assert_eq(weft_queue_try_get(q, &it), 0);
      cr_assert_eq(it.id, next_out++);
    }
  }
  weft_queue_free(q);
}

/* Large items (not 4 or 8 bytes) through an unbounded FIFO that grows
 * while wrapped. */
typedef struct {
  char name[40];
  long n;
} big;

Test(sync_queue, big_items_grow_wrapped, .timeout = 10) {
  weft_queue *q = weft_queue_new(0, sizeof(big));
  long in = 0, out = 0;
  for (int round = 0; round < 20; round++) {
    for (int k = 0; k < 100; k++) {
      big b;
      snprintf(b.name, sizeof b.name, "item %ld", in);
      b.n = in++;
      cr_assert_eq(weft_queue_try_put(q, &b), 0);
    }
    for (int k = 0; k < 60; k++) {
      big b;
      cr_assert_eq(weft_queue_try_get(q, &b), 0);
      char want[40];
      snprintf(want, sizeof want, "item %ld", out);
      cr_assert_str_eq(b.name, want);
      cr_assert_eq(b.n, out++);
    }
  }
  cr_assert_eq(weft_queue_size(q), (size_t)(in - out));
  weft_queue_free(q);
}

/* ---------------------------------------------------------------- */
/* Blocking, hand-offs                                                */
/* ---------------------------------------------------------------- */

static int producer(void *arg) {
  qarg *a = arg;
  for (long i = 0; i < 20; i++) {
    int rc = weft_queue_put(a->s->q, &i);
    if (rc) return rc;
    /* Backpressure: never more than the capacity inside. */
    if (weft_queue_size(a->s->q) > 2) return -EPROTO;
  }
  return 0;
}

static int consumer(void *arg) {
  qarg *a = arg;
  for (int i = 0; i < 20; i++) {
    long v;
    int rc = weft_queue_get(a->s->q, &v);
    if (rc) return rc;
    a->s->got[a->s->ngot++ % 64] = v;
    if (v != i) return -EPROTO;
    if (i % 3 == 0) weft_sleep(WEFT_US(100)); /* slower than the producer */
  }
  return 0;
}

static int pc_main(void *arg) {
  qstate *s = arg;
  qarg a = {s, 0, 0};
  weft_task *p = weft_spawn(producer, &a, NULL);
  weft_task *c = weft_spawn(consumer, &a, NULL);
  s->rc[0] = weft_join(p);
  s->rc[1] = weft_join(c);
  return 0;
}

/* put waits while full, get while empty; order is kept. */
Test(sync_queue, backpressure, .timeout = 10) {
  qstate s = {.q = weft_queue_new(2, sizeof(long))};
  cr_assert_eq(weft_run(pc_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[1], 0);
  cr_assert_eq(s.ngot, 20);
  weft_queue_free(s.q);
}

static int getter(void *arg) {
  qarg *a = arg;
  a->s->rc[a->id] = weft_queue_get(a->s->q, &a->v);
  log_add(&a->s->log, a->id);
  /* a cancellation shows at the next checkpoint */
  a->s->rc[16 + a->id] = weft_yield();
  return 0;
}

static int handoff_main(void *arg) {
  qstate *s = arg;
  qarg a[3] = {{s, 1, -1}, {s, 2, -1}, {s, 3, -1}};
  for (int i = 0; i < 3; i++) s->t[i] = weft_spawn(getter, &a[i], NULL);
  weft_yield();
  long v = 10;
  weft_queue_put(s->q, &v); /* straight to getter 1 ... */
  weft_cancel(s->t[0]);     /* ... which is cancelled before it runs */
  weft_cancel(s->t[1]);     /* getter 2, still waiting, leaves */
  weft_yield();
  v = 11;
  weft_queue_put(s->q, &v); /* to getter 3 */
  s->rc[0] = (int)weft_queue_size(s->q);
  for (int i = 0; i < 3; i++) weft_join(s->t[i]);
  s->got[0] = a[0].v;
  s->got[1] = a[1].v;
  s->got[2] = a[2].v;
  return 0;
}

/* A put while getters wait goes straight to the first (the queue stays
 * empty). An item handed to a getter is its own even if it is cancelled
 * before it runs; a getter cancelled while waiting takes nothing. */
Test(sync_queue, handoff_and_cancel, .timeout = 10) {
  qstate s = {.q = weft_queue_new(4, sizeof(long))};
  cr_assert_eq(weft_run(handoff_main, &s), 0);
  cr_assert_eq(s.rc[1], 0);
  cr_assert_eq(s.got[0], 10);
  cr_assert_eq(s.rc[17], -ECANCELED);
  cr_assert_eq(s.rc[2], -ECANCELED);
  cr_assert_eq(s.got[1], -1);
  cr_assert_eq(s.rc[3], 0);
  cr_assert_eq(s.got[2], 11);
  cr_assert_eq(s.rc[0], 0);
  weft_queue_free(s.q);
}

static int putter(void *arg) {
  qarg *a = arg;
  a->s->rc[a->id] = weft_queue_put(a->s->q, &a->v);
  log_add(&a->s->log, a->id);
  return 0;
}

static int putters_main(void *arg) {
  qstate *s = arg;
  long v = 0;
  weft_queue_put(s->q, &v); /* full (capacity 1) */
  qarg a[3] = {{s, 1, 1}, {s, 2, 2}, {s, 3, 3}};
  for (int i = 0; i < 3; i++) s->t[i] = weft_spawn(putter, &a[i], NULL);
  weft_yield();
  weft_cancel(s->t[1]); /* putter 2 leaves: its item never goes in */
  weft_yield();
  for (int i = 0; i < 3; i++) {
    long x;
    weft_queue_get(s->q, &x); /* each get lets the next putter in */
    s->got[s->ngot++] = x;
  }
  s->rc[0] = (int)weft_queue_size(s->q);
  for (int i = 0; i < 3; i++) weft_join(s->t[i]);
  return 0;
}

/* A get from a full queue moves the first waiting putter's item in at
 * once (FIFO); a putter cancelled while waiting adds nothing. */
Test(sync_queue, waiting_putters, .timeout = 10) {
  qstate s = {.q = weft_queue_new(1, sizeof(long))};
  cr_assert_eq(weft_run(putters_main, &s), 0);
  cr_assert_eq(s.rc[1], 0);
  cr_assert_eq(s.rc[2], -ECANCELED);
  cr_assert_eq(s.rc[3], 0);
  cr_assert_eq(s.got[0], 0);
  cr_assert_eq(s.got[1], 1);
  cr_assert_eq(s.got[2], 3);
  cr_assert_eq(s.rc[0], 0);
  weft_queue_free(s.q);
}

static int deadline_main(void *arg) {
  qstate *s = arg;
  weft_scope sc;
  long v = 1;
  weft_scope_open_after(&sc, WEFT_MS(10));
  s->rc[0] = weft_queue_get(s->q, &v);
  s->rc[1] = weft_scope_close(&sc);
  weft_queue_put(s->q, &v);
  weft_scope_open_after(&sc, WEFT_MS(10));
  s->rc[2] = weft_queue_put(s->q, &v); /* full */
  s->rc[3] = weft_scope_close(&sc);
  s->rc[4] = (int)weft_queue_size(s->q);
  weft_cancel(weft_current());
  s->rc[5] = weft_queue_get(s->q, &v); /* an item is there, but cancelled */
  s->rc[6] = weft_queue_try_get(s->q, &v); /* not a checkpoint */
  s->rc[7] = weft_queue_join(s->q);
  return 0;
}

Test(sync_queue, deadlines_and_cancelled_entry, .timeout = 10) {
  qstate s = {.q = weft_queue_new(1, sizeof(long))};
  cr_assert_eq(weft_run(deadline_main, &s), 0);
  cr_assert_eq(s.rc[0], -ECANCELED);
  cr_assert_eq(s.rc[1], -ETIMEDOUT);
  cr_assert_eq(s.rc[2], -ECANCELED);
  cr_assert_eq(s.rc[3], -ETIMEDOUT);
  cr_assert_eq(s.rc[4], 1);
  cr_assert_eq(s.rc[5], -ECANCELED);
  cr_assert_eq(s.rc[6], 0);
  cr_assert_eq(s.rc[7], -ECANCELED);
  weft_queue_free(s.q);
}

/* ---------------------------------------------------------------- */
/* task_done and join                                                 */
/* ---------------------------------------------------------------- */

static int worker(void *arg) {
  qarg *a = arg;
  for (;;) {
    long v;
    int rc = weft_queue_get(a->s->q, &v);
    if (rc) return rc == WEFT_EEND ? 0 : rc;
    weft_sleep(WEFT_US(200));
    log_add(&a->s->log, (int)v);
    weft_queue_task_done(a->s->q);
  }
}

static int join_main(void *arg) {
  qstate *s = arg;
  qarg a = {s, 0, 0};
  s->rc[0] = weft_queue_join(s->q); /* nothing put: at once */
  weft_task *w = weft_spawn(worker, &a, NULL);
  for (long i = 0; i < 5; i++) weft_queue_put(s->q, &i);
  s->rc[1] = weft_queue_join(s->q);
  s->rc[2] = s->log.n; /* every item processed by then */
  s->rc[3] = weft_queue_task_done(s->q); /* one too many */
  weft_queue_shutdown(s->q, false);
  s->rc[4] = weft_join(w);
  return 0;
}

Test(sync_queue, task_done_join, .timeout = 10) {
  qstate s = {.q = weft_queue_new(2, sizeof(long))};
  cr_assert_eq(weft_run(join_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[1], 0);
  cr_assert_eq(s.rc[2], 5);
  cr_assert_eq(s.rc[3], -EOVERFLOW);
  cr_assert_eq(s.rc[4], 0);
  int want[] = {0, 1, 2, 3, 4};
  log_expect(&s.log, want, 5);
  weft_queue_free(s.q);
}

/* ---------------------------------------------------------------- */
/* Shutdown (Python 3.13)                                             */
/* ---------------------------------------------------------------- */

static int shut_graceful_main(void *arg) {
  qstate *s = arg;
  long v;
  /* Getters waiting on the empty queue ... */
  qarg g[2] = {{s, 1, -1}, {s, 2, -1}};
  s->t[0] = weft_spawn(getter, &g[0], NULL);
  s->t[1] = weft_spawn(getter, &g[1], NULL);
  weft_yield();
  /* ... get one item each, then the queue fills and putters wait. */
  for (v = 10; v < 14; v++) weft_queue_put(s->q, &v);
  qarg p[2] = {{s, 3, 14}, {s, 4, 15}};
  s->t[2] = weft_spawn(putter, &p[0], NULL);
  s->t[3] = weft_spawn(putter, &p[1], NULL);
  weft_yield();
  weft_yield();
  s->rc[5] = (int)weft_queue_size(s->q);
  s->rc[6] = weft_queue_shutdown(s->q, false);
  s->rc[7] = weft_queue_put(s->q, &v);
  s->rc[8] = weft_queue_try_put(s->q, &v);
  for (int i = 0; i < 4; i++) weft_join(s->t[i]);
  /* The two items left drain, then WEFT_EEND. */
  for (int i = 0; i < 3; i++) s->rc[9 + i] = weft_queue_get(s->q, &s->got[i]);
  s->rc[12] = weft_queue_try_get(s->q, &v);
  s->got[4] = g[0].v;
  s->got[5] = g[1].v;
  return 0;
}

/* Graceful shutdown with getters served and putters waiting: the
 * putters fail at once (-ESHUTDOWN, items not added), later puts too, and
 * gets drain what is left, then say WEFT_EEND: the end, not an error. */
Test(sync_queue, shutdown_graceful, .timeout = 10) {
  qstate s = {.q = weft_queue_new(2, sizeof(long))};
  cr_assert_eq(weft_run(shut_graceful_main, &s), 0);
  cr_assert_eq(s.rc[1], 0);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.got[4], 10);
  cr_assert_eq(s.got[5], 11);
  cr_assert_eq(s.rc[5], 2);
  cr_assert_eq(s.rc[6], 0);
  cr_assert_eq(s.rc[3], -ESHUTDOWN);
  cr_assert_eq(s.rc[4], -ESHUTDOWN);
  cr_assert_eq(s.rc[7], -ESHUTDOWN);
  cr_assert_eq(s.rc[8], -ESHUTDOWN);
  cr_assert_eq(s.rc[9], 0);
  cr_assert_eq(s.rc[10], 0);
  cr_assert_eq(s.got[0], 12);
  cr_assert_eq(s.got[1], 13);
  cr_assert_eq(s.rc[11], WEFT_EEND);
  cr_assert_eq(s.rc[12], WEFT_EEND);
  weft_queue_free(s.q);
}

static int shut_getters_main(void *arg) {
  qstate *s = arg;
  qarg g[3] = {{s, 1, -1}, {s, 2, -1}, {s, 3, -1}};
  for (int i = 0; i < 3; i++) s->t[i] = weft_spawn(getter, &g[i], NULL);
  weft_yield();
  s->rc[0] = weft_queue_shutdown(s->q, false);
  for (int i = 0; i < 3; i++) weft_join(s->t[i]);
  return 0;
}

/* Getters waiting on an empty queue all wake with WEFT_EEND. */
Test(sync_queue, shutdown_wakes_getters, .timeout = 10) {
  qstate s = {.q = weft_queue_new(0, sizeof(long))};
  cr_assert_eq(weft_run(shut_getters_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  for (int i = 1; i <= 3; i++) cr_assert_eq(s.rc[i], WEFT_EEND);
  weft_queue_free(s.q);
}

static int joiner(void *arg) {
  qarg *a = arg;
  a->s->rc[a->id] = weft_queue_join(a->s->q);
  log_add(&a->s->log, a->id);
  return 0;
}

static int shut_immediate_main(void *arg) {
  qstate *s = arg;
  long v;
  for (v = 0; v < 3; v++) weft_queue_put(s->q, &v); /* full */
  qarg p[2] = {{s, 1, 3}, {s, 2, 4}};
  s->t[0] = weft_spawn(putter, &p[0], NULL);
  s->t[1] = weft_spawn(putter, &p[1], NULL);
  qarg j = {s, 3, 0};
  s->t[2] = weft_spawn(joiner, &j, NULL);
  weft_yield();
  weft_queue_get(s->q, &v); /* one item taken, not done; putter 1 in */
  weft_yield();
  s->rc[4] = (int)weft_queue_size(s->q);
  s->rc[5] = weft_queue_shutdown(s->q, true);
  s->rc[6] = (int)weft_queue_size(s->q);
  s->rc[7] = weft_queue_get(s->q, &v);
  weft_yield();
  weft_yield();
  log_add(&s->log, 0); /* the joiner still waits for our task_done */
  s->rc[8] = weft_queue_task_done(s->q);
  for (int i = 0; i < 3; i++) weft_join(s->t[i]);
  s->rc[9] = weft_queue_task_done(s->q);
  s->rc[10] = weft_queue_join(s->q);
  return 0;
}

/* Immediate shutdown: the items left are dropped and counted as done, the
 * waiting putter wakes with -ESHUTDOWN, get says WEFT_EEND at once; join returns
 * once the one item taken before is marked done (Python 3.13's
 * join-after-shutdown(immediate=True)). */
Test(sync_queue, shutdown_immediate_join, .timeout = 10) {
  qstate s = {.q = weft_queue_new(3, sizeof(long))};
  cr_assert_eq(weft_run(shut_immediate_main, &s), 0);
  cr_assert_eq(s.rc[1], 0);          /* got in when we took one */
  cr_assert_eq(s.rc[2], -ESHUTDOWN); /* still waiting at shutdown */
  cr_assert_eq(s.rc[4], 3);
  cr_assert_eq(s.rc[5], 0);
  cr_assert_eq(s.rc[6], 0);
  cr_assert_eq(s.rc[7], WEFT_EEND);
  cr_assert_eq(s.rc[8], 0);
  cr_assert_eq(s.rc[3], 0);
  cr_assert_eq(s.rc[9], -EOVERFLOW);
  cr_assert_eq(s.rc[10], 0);
  int want[] = {1, 2, 0, 3}; /* putters, us, then the joiner */
  log_expect(&s.log, want, 4);
  weft_queue_free(s.q);
}

static int shut_join_at_once_main(void *arg) {
  qstate *s = arg;
  long v;
  for (v = 0; v < 5; v++) weft_queue_put(s->q, &v);
  qarg j[2] = {{s, 1, 0}, {s, 2, 0}};
  s->t[0] = weft_spawn(joiner, &j[0], NULL);
  s->t[1] = weft_spawn(joiner, &j[1], NULL);
  qarg g = {s, 3, -1};
  weft_yield();
  s->rc[0] = weft_queue_shutdown(s->q, false); /* graceful: join waits */
  weft_yield();
  s->rc[4] = s->log.n;
  s->rc[5] = weft_queue_shutdown(s->q, true); /* then immediate */
  s->t[2] = weft_spawn(getter, &g, NULL);
  for (int i = 0; i < 3; i++) weft_join(s->t[i]);
  return 0;
}

/* graceful, then immediate: the joiners, waiting on 5 unfinished items,
 * return when the immediate shutdown drops them; a getter after it gets
 * WEFT_EEND at once. */
Test(sync_queue, shutdown_graceful_then_immediate, .timeout = 10) {
  qstate s = {.q = weft_queue_new(0, sizeof(long))};
  cr_assert_eq(weft_run(shut_join_at_once_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[4], 0);
  cr_assert_eq(s.rc[5], 0);
  cr_assert_eq(s.rc[1], 0);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.rc[3], WEFT_EEND);
  weft_queue_free(s.q);
}

/* ---------------------------------------------------------------- */
/* 1,000 producers and 1,000 consumers over a capacity-1 queue        */
/* ---------------------------------------------------------------- */

enum { NPROD = 1000, PER = 3 };

typedef struct {
  weft_queue *q;
  unsigned char seen[NPROD * PER];
  int dup, bad;
} many_state;

typedef struct {
  many_state *m;
  long base;
} prod_arg;

static int prod(void *arg) {
  prod_arg *p = arg;
  for (long k = 0; k < PER; k++) {
    long v = p->base * PER + k;
    int rc = weft_queue_put(p->m->q, &v);
    if (rc) return rc;
  }
  return 0;
}

static int cons(void *arg) {
  many_state *m = arg;
  for (int k = 0; k < PER; k++) {
    long v;
    int rc = weft_queue_get(m->q, &v);
    if (rc) return rc;
    if (v < 0 || v >= NPROD * PER) {
      m->bad++;
      continue;
    }
    if (m->seen[v]++) m->dup++;
  }
  return 0;
}

static int many_main(void *arg) {
  many_state *m = arg;
  static prod_arg pa[NPROD];
  weft_group *g = weft_group_open();
  for (long i = 0; i < NPROD; i++) {
    /* interleave: producers and consumers alternate in spawn order */
    pa[i] = (prod_arg){m, i};
    if (i & 1) {
      weft_group_spawn(g, cons, m, NULL);
      weft_group_spawn(g, prod, &pa[i], NULL);
    } else {
      weft_group_spawn(g, prod, &pa[i], NULL);
      weft_group_spawn(g, cons, m, NULL);
    }
  }
  return weft_group_close(g, NULL);
}

/* Every item arrives exactly once; nobody is left waiting. */
Test(sync_queue, thousand_producers_consumers_capacity_1, .timeout = 10) {
  static many_state m;
  memset(&m, 0, sizeof m);
  m.q = weft_queue_new(1, sizeof(long));
  cr_assert_eq(weft_run(many_main, &m), 0);
  cr_assert_eq(m.dup, 0);
  cr_assert_eq(m.bad, 0);
  for (int i = 0; i < NPROD * PER; i++) cr_assert_eq(m.seen[i], 1, "item %d", i);
  cr_assert(weft_queue_empty(m.q));
  weft_queue_free(m.q);
}

/* ---------------------------------------------------------------- */
/* Free with waiters, bad arguments                                   */
/* ---------------------------------------------------------------- */

static int free_main(void *arg) {
  qstate *s = arg;
  long v = 0;
  weft_queue *full = weft_queue_new(1, sizeof(long));
  weft_queue_put(full, &v);
  qstate other = {.q = full};
  qarg g = {s, 5, -1}, p = {&other, 6, 5}, j = {&other, 7, 0};
  s->t[0] = weft_spawn(getter, &g, NULL);
  s->t[1] = weft_spawn(putter, &p, NULL);
  s->t[2] = weft_spawn(joiner, &j, NULL);
  weft_yield();
  s->rc[0] = weft_queue_free(s->q);
  s->rc[1] = weft_queue_free(full);
  for (int i = 0; i < 3; i++) weft_join(s->t[i]);
  s->rc[6] = other.rc[6];
  s->rc[7] = other.rc[7];
  return 0;
}

/* Freeing queues with a getter, a putter and a joiner waiting: each
 * wakes with -EIDRM; the items are dropped with the queue. */
Test(sync_queue, free_with_waiters, .timeout = 10) {
  qstate s = {.q = weft_queue_new(0, sizeof(long))};
  cr_assert_eq(weft_run(free_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[1], 0);
  cr_assert_eq(s.rc[5], -EIDRM);
  cr_assert_eq(s.rc[6], -EIDRM);
  cr_assert_eq(s.rc[7], -EIDRM);
}

static int fifo_getter_rc(void *arg) {
  qstate *s = arg;
  long v;
  s->rc[1] = weft_queue_get(s->q, &v);
  return 0;
}

static int free_getter_main(void *arg) {
  qstate *s = arg;
  weft_task *t = weft_spawn(fifo_getter_rc, s, NULL);
  weft_yield();
  s->rc[0] = weft_queue_free(s->q);
  weft_join(t);
  return 0;
}

Test(sync_queue, free_with_getter, .timeout = 10) {
  qstate s = {.q = weft_queue_new(4, sizeof(long))};
  cr_assert_eq(weft_run(free_getter_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[1], -EIDRM);
}

static int cmp_any(const void *a, const void *b) {
  (void)a;
  (void)b;
  return 0;
}

/* Constructors: element size 0, capacity * element size overflowing, a
 * priority queue without a comparator. */
Test(sync_queue, bad_constructors, .timeout = 10) {
  errno = 0;
  cr_assert_null(weft_queue_new(4, 0));
  cr_assert_eq(errno, EINVAL);
  errno = 0;
  cr_assert_null(weft_queue_new_lifo(0, 0));
  cr_assert_eq(errno, EINVAL);
  errno = 0;
  cr_assert_null(weft_queue_new(SIZE_MAX / 4, 8));
  cr_assert_eq(errno, EOVERFLOW);
  errno = 0;
  cr_assert_null(weft_queue_new_priority(SIZE_MAX / 2, 16, cmp_any));
  cr_assert_eq(errno, EOVERFLOW);
  errno = 0; /* SIZE_MAX is a capacity like any other for a queue */
  cr_assert_null(weft_queue_new_lifo(SIZE_MAX, 8));
  cr_assert_eq(errno, EOVERFLOW);
  errno = 0;
  cr_assert_null(weft_queue_new_priority(4, 8, NULL));
  cr_assert_eq(errno, EINVAL);
  /* A large capacity that does not overflow allocates lazily. */
  weft_queue *q = weft_queue_new(SIZE_MAX / 64, 8);
  cr_assert_not_null(q);
  weft_queue_free(q);
}
