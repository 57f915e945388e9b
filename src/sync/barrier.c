/*
 * Barrier. The task whose arrival completes the count wakes the others
 * and hands each its arrival index as its wake code; the barrier is empty again at once,
 * so asyncio's "draining" state (waking tasks still inside the barrier's
 * condition) has no counterpart here. Indices are given at release, in
 * arrival order among the tasks still waiting: a party that was
 * cancelled leaves no gap.
 */
#include <limits.h>

#include "sync/sobj.h"

struct weft_barrier {
  weft__sobj h;
  size_t parties;
  bool broken;
  weft__wlist waiters;
};

_Static_assert(offsetof(weft_barrier, h) == 0, "header first");

static void barrier_release(weft__sobj *o) { free(o); }

static int barrier_describe(const weft_task *t, const void *obj, char *buf,
                            size_t n) {
  (void)t;
  const weft_barrier *b = obj;
  return snprintf(buf, n, "%zu of %zu parties waiting", b->waiters.n,
                  b->parties);
}
static const weft__wait_kind barrier_kind = {"barrier", barrier_describe};

static void barrier_kill(weft__sobj *o) {
  wl_wake_all(&((weft_barrier *)o)->waiters, -EIDRM);
}

weft_barrier *weft_barrier_new(size_t parties) {
  if (parties == 0 || parties > INT_MAX) {
    errno = EINVAL;
    return NULL;
  }
  weft_barrier *b = malloc(sizeof *b);
  if (!b) return NULL;
  sobj_init(&b->h, SO_BARRIER, barrier_release);
  b->parties = parties;
  b->broken = false;
  b->waiters = (weft__wlist){0};
  return b;
}

int weft_barrier_free(weft_barrier *b) {
  return sobj_free(SOBJ(b), SO_BARRIER, __func__, barrier_kill);
}

int weft_barrier_wait(weft_barrier *b) {
  weft_loop *L = weft__tls_loop;
  weft_task *t;
  int rc = sobj_check_wait(SOBJ(b), SO_BARRIER, L, &t, __func__);
  if (rc) return rc;
  if (b->broken) return -EPIPE;
  if (b->waiters.n + 1 >= b->parties) {
    int i = 0;
    weft__waiter *w;
    while ((w = wl_pop(&b->waiters)) != NULL) weft__wake(w->task, i++);
    return i;
  }
  return sobj_wait(L, t, &b->waiters, NULL, 0, true, &barrier_kind,
                   b); /* the index */
}

int weft_barrier_abort(weft_barrier *b) {
  int rc = sobj_check(SOBJ(b), SO_BARRIER, weft__tls_loop, __func__);
  if (rc) return rc;
  b->broken = true;
  wl_wake_all(&b->waiters, -EPIPE);
  return 0;
}

int weft_barrier_reset(weft_barrier *b) {
  int rc = sobj_check(SOBJ(b), SO_BARRIER, weft__tls_loop, __func__);
  if (rc) return rc;
  wl_wake_all(&b->waiters, -EPIPE);
  b->broken = false;
  return 0;
}

size_t weft_barrier_parties(const weft_barrier *b) {
  return sobj_live(b, SO_BARRIER) ? b->parties : 0;
}

size_t weft_barrier_n_waiting(const weft_barrier *b) {
  return sobj_live(b, SO_BARRIER) ? b->waiters.n : 0;
}

bool weft_barrier_broken(const weft_barrier *b) {
  return sobj_live(b, SO_BARRIER) && b->broken;
}
