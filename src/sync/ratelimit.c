/*
 * Token-bucket rate limiter.
 *
 * The bucket is not refilled by a ticking timer: its level is brought up
 * to date from the clock whenever someone looks (tokens += elapsed *
 * rate, capped at burst). A timer exists only while tasks wait: it is
 * armed for the moment the first waiter's token will be there, and when
 * it fires it hands tokens to waiters in FIFO order (the hand-off rule of
 * sobj.h: a woken waiter already owns its token) and re-arms for the next
 * one. An uncontended acquire is a clock read and a subtraction.
 *
 * The limiter follows the rules of every sync object (weft/sync.h): it
 * binds to the loop that first uses it, and freeing it wakes its waiters
 * with -EIDRM (they never touch it again, so the memory goes at once).
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "sync/sobj.h"

#define SO_LIMITER 0x4c696d69u /* "Limi" */

/* A token is there when the level is within this of 1: the timer is set
 * for the exact moment, and the level is a sum of products in double. */
#define EPS 1e-9

struct weft_limiter {
  weft__sobj o;
  weft__wlist waiters;
  double rate;   /* tokens per nanosecond */
  double burst;  /* bucket size */
  double tokens; /* level at `last` */
  int64_t last;
  weft__timer tm; /* armed exactly while tasks wait */
};

static const weft__wait_kind limiter_kind = {"rate limiter", NULL};

static void refill(weft_limiter *l, int64_t now) {
  if (now <= l->last) return;
  l->tokens += (double)(now - l->last) * l->rate;
  if (l->tokens > l->burst) l->tokens = l->burst;
  l->last = now;
}

static bool take(weft_limiter *l) {
  if (l->tokens < 1.0 - EPS) return false;
  l->tokens -= 1.0;
  return true;
}

/* Arms the timer for when the level reaches 1 (refill was just called). */
static int arm(weft_loop *L, weft_limiter *l) {
  double wait = (1.0 - l->tokens) / l->rate;
  int64_t d = wait >= 0x1.0p62 ? INT64_C(1) << 62 : (int64_t)wait;
  if ((double)d < wait) d++; /* round up: never early (and no libm) */
  l->tm.when = l->last + d;
  return weft__timers_add(&L->timers, &l->tm);
}

static void lim_fire(weft__timer *tm) {
  weft_limiter *l = weft__container_of(tm, weft_limiter, tm);
  refill(l, weft_now());
  while (l->waiters.head && take(l))
    weft__wake(wl_pop(&l->waiters)->task, 0);
  /* The heap just gave this node up, so it has room and cannot fail;
   * were it to, waking everyone beats a silent hang. */
  if (l->waiters.head && arm(l->o.loop, l) != 0)
    wl_wake_all(&l->waiters, -ENOMEM);
}

/* A cancelled waiter leaves the queue; the last one takes the timer, so
 * that an armed timer always means waiters, hence a live loop. */
static void lim_unpark(weft_task *t) {
  weft__waiter *w = task_waiter(t);
  weft__wlist *list = w->list;
  wl_remove(list, w);
  if (!list->head) {
    weft_limiter *l =
        weft__container_of(list, weft_limiter, waiters);
    weft__timers_del(&t->loop->timers, &l->tm);
  }
}

static void lim_release(weft__sobj *o) { free(o); }

weft_limiter *weft_limiter_new(double rate, size_t burst) {
  if (!(rate > 0) || !isfinite(rate) || !burst) {
    errno = EINVAL;
    return NULL;
  }
  weft_limiter *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  sobj_init(&l->o, SO_LIMITER, lim_release);
  l->rate = rate / 1e9;
  l->burst = (double)burst;
  l->tokens = l->burst;
  l->last = weft_now();
  weft__timer_init(&l->tm, lim_fire);
  return l;
}

int weft_limiter_acquire(weft_limiter *l) {
  weft_loop *L = weft__tls_loop;
  weft_task *t = NULL;
  int rc = sobj_check_wait(l ? &l->o : NULL, SO_LIMITER, L, &t, __func__);
  if (rc) return rc;
  if (!l->waiters.head) {
    refill(l, weft_now());
    if (take(l)) return 0;
    if ((rc = arm(L, l)) != 0) return rc;
  }
  weft__waiter *w = task_waiter(t);
  w->task = t;
  wl_push(&l->waiters, w);
  /* woken: l is not touched again */
  return weft__park(L, t, lim_unpark, &limiter_kind, l);
}

int weft_limiter_try_acquire(weft_limiter *l) {
  int rc = sobj_check(l ? &l->o : NULL, SO_LIMITER, weft__tls_loop, __func__);
  if (rc) return rc;
  if (l->waiters.head) return -EAGAIN; /* no overtaking */
  refill(l, weft_now());
  return take(l) ? 0 : -EAGAIN;
}

static void lim_wake_all(weft__sobj *o) {
  weft_limiter *l = (weft_limiter *)o;
  if (l->waiters.head) { /* only then is the timer armed, on our loop */
    weft__timers_del(&o->loop->timers, &l->tm);
    wl_wake_all(&l->waiters, -EIDRM);
  }
}

int weft_limiter_free(weft_limiter *l) {
  return sobj_free(l ? &l->o : NULL, SO_LIMITER, __func__, lim_wake_all);
}
