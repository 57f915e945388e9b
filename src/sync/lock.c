/*
 * Lock and condition.
 *
 * The lock is FIFO-fair by hand-off: release gives it to the first
 * waiter, which wakes as the owner, so no task can barge in between.
 * While held, the lock's exit hook sits in the owner's body: if the owner
 * returns holding it, the hook breaks the lock and wakes its waiters with
 * -EOWNERDEAD (a stuck waiter would otherwise wait forever). Linking the
 * hook costs a few stores per acquire and release.
 *
 * A condition waiter releases the lock, parks on the condition, and once
 * woken (notified, cancelled or not) queues for the lock like any other
 * acquirer, without being interruptible: asyncio's Condition re-acquires
 * the lock even when cancelled, and so does weft.
 */
#include "sync/lock.h"

#include "core/debug.h"

_Static_assert(offsetof(weft_lock, h) == 0, "header first");

struct weft_cond {
  weft__sobj h;
  weft_lock *lock;       /* NULL once a lock given at creation was freed */
  weft_cond *lk_next, **lk_pprev; /* in lock->conds */
  weft__wlist waiters;
  weft_lock own; /* the lock, when the condition made its own */
};

_Static_assert(offsetof(weft_cond, h) == 0, "header first");

/* Wakes the waiters of every condition over l with `code`: nobody can
 * notify them any more (notify needs the lock). */
static void wake_conds(weft_lock *l, int code) {
  for (weft_cond *c = l->conds; c; c = c->lk_next)
    wl_wake_all(&c->waiters, code);
}

static void owner_exit(weft__watch *h, weft_task *t) {
  weft_lock *l = weft__container_of(h, weft_lock, hook);
  if (weft__unlikely(t->loop->debug)) weft__debug_lock_held(t, l);
  l->owner = NULL;
  l->broken = true;
  wl_wake_all(&l->waiters, -EOWNERDEAD);
  wake_conds(l, -EOWNERDEAD);
}

static int lock_describe(const weft_task *t, const void *obj, char *buf,
                         size_t n) {
  (void)t;
  const weft_lock *l = obj;
  if (!l->owner) return snprintf(buf, n, "free");
  return snprintf(buf, n, "held by task %llu '%s'",
                  (unsigned long long)weft_task_id(l->owner),
                  weft_task_name(l->owner));
}
static const weft__wait_kind lock_kind = {"lock", lock_describe};
static const weft__wait_kind cond_kind = {"condition", NULL};

static inline void take(weft_lock *l, weft_task *t) {
  l->owner = t;
  weft__exit_hook_add(t, &l->hook);
}

static void lock_release_mem(weft__sobj *o) { free(o); }

void weft__lock_init(weft_lock *l, void (*release)(weft__sobj *)) {
  sobj_init(&l->h, SO_LOCK, release);
  l->owner = NULL;
  l->broken = false;
  l->hook.pprev = NULL;
  l->hook.next = NULL;
  l->hook.fn = owner_exit;
  l->waiters = (weft__wlist){0};
  l->conds = NULL;
}

void weft__lock_kill(weft__sobj *o) {
  weft_lock *l = (weft_lock *)o;
  o->magic = SO_DEAD;
  if (l->owner) {
    weft__watch_del(&l->hook);
    l->owner = NULL;
  }
  wl_wake_all(&l->waiters, -EIDRM);
  wake_conds(l, -EIDRM);
  for (weft_cond *c = l->conds, *n; c; c = n) { /* they outlive the lock */
    n = c->lk_next;
    c->lock = NULL;
    c->lk_pprev = NULL;
  }
  l->conds = NULL;
}

void weft__lock_handoff(weft_lock *l) {
  weft__watch_del(&l->hook);
  weft__waiter *w = wl_pop(&l->waiters);
  if (w) {
    take(l, w->task);
    weft__wake(w->task, 0);
  } else {
    l->owner = NULL;
  }
}

int weft__lock_wait(weft_loop *L, weft_task *t, weft_lock *l,
                    bool interruptible) {
  if (l->h.magic != SO_LOCK) return -EIDRM;
  if (l->broken) return -EOWNERDEAD;
  if (!l->owner) {
    take(l, t);
    return 0;
  }
  return sobj_wait(L, t, &l->waiters, NULL, 0, interruptible, &lock_kind, l);
}

weft_lock *weft_lock_new(void) {
  weft_lock *l = malloc(sizeof *l);
  if (!l) return NULL;
  weft__lock_init(l, lock_release_mem);
  return l;
}

int weft_lock_free(weft_lock *l) {
  return sobj_free(SOBJ(l), SO_LOCK, __func__, weft__lock_kill);
}

int weft_lock_acquire(weft_lock *l) {
  weft_loop *L = weft__tls_loop;
  weft_task *t;
  int rc = sobj_check_wait(SOBJ(l), SO_LOCK, L, &t, __func__);
  if (weft__unlikely(rc)) return rc;
  /* Debug mode remembers the caller, for the report of a task that
   * returns holding the lock; before a wait, so that the wait stays a
   * tail call (see switch_away in loop.c). */
  if (weft__likely(!l->owner && !l->broken)) {
    take(l, t);
    if (weft__unlikely(L->debug))
      weft__debug_lock_site(t, l, __builtin_return_address(0));
    return 0;
  }
  if (l->owner == t) return -EDEADLK;
  if (weft__unlikely(L->debug))
    weft__debug_lock_site(t, l, __builtin_return_address(0));
  return weft__lock_wait(L, t, l, true);
}

int weft_lock_try_acquire(weft_lock *l) {
  weft_task *t;
  int rc = sobj_check_task(SOBJ(l), SO_LOCK, weft__tls_loop, &t, __func__);
  if (rc) return rc;
  if (l->broken) return -EOWNERDEAD;
  if (l->owner == t) return -EDEADLK;
  if (l->owner) return -EAGAIN;
  take(l, t);
  if (weft__unlikely(t->loop->debug))
    weft__debug_lock_site(t, l, __builtin_return_address(0));
  return 0;
}

int weft_lock_release(weft_lock *l) {
  weft_task *t;
  int rc = sobj_check_task(SOBJ(l), SO_LOCK, weft__tls_loop, &t, __func__);
  if (weft__unlikely(rc)) return rc;
  if (weft__unlikely(l->owner != t)) return -EPERM;
  weft__lock_handoff(l);
  return 0;
}

bool weft_lock_locked(const weft_lock *l) {
  return sobj_live(l, SO_LOCK) && l->owner;
}

/* ---- condition -------------------------------------------------------- */

/* A condition with its own lock is freed when both it and the lock have
 * nobody inside: tasks blocked on the lock alone count only in the lock. */
static void cond_release(weft__sobj *o) {
  weft_cond *c = (weft_cond *)o;
  if (c->lock == &c->own && c->own.h.inside) return; /* the lock frees it */
  free(c);
}

static void own_lock_release(weft__sobj *o) {
  weft_cond *c = weft__container_of(o, weft_cond, own);
  if (c->h.magic == SO_DEAD && !c->h.inside) free(c);
}

weft_cond *weft_cond_new(weft_lock *lock) {
  if (lock && !sobj_live(lock, SO_LOCK)) {
    errno = EINVAL;
    return NULL;
  }
  weft_cond *c = malloc(sizeof *c);
  if (!c) return NULL;
  sobj_init(&c->h, SO_COND, cond_release);
  c->waiters = (weft__wlist){0};
  if (lock) {
    c->lock = lock;
  } else {
    weft__lock_init(&c->own, own_lock_release);
    c->lock = &c->own;
  }
  c->lk_next = c->lock->conds;
  if (c->lk_next) c->lk_next->lk_pprev = &c->lk_next;
  c->lk_pprev = &c->lock->conds;
  c->lock->conds = c;
  return c;
}

static void cond_kill(weft__sobj *o) {
  weft_cond *c = (weft_cond *)o;
  if (c->lk_pprev) { /* off its lock's list */
    *c->lk_pprev = c->lk_next;
    if (c->lk_next) c->lk_next->lk_pprev = c->lk_pprev;
    c->lk_pprev = NULL;
  }
  wl_wake_all(&c->waiters, -EIDRM);
  if (c->lock == &c->own && c->own.h.magic == SO_LOCK) weft__lock_kill(&c->own.h);
}

int weft_cond_free(weft_cond *c) {
  return sobj_free(SOBJ(c), SO_COND, __func__, cond_kill);
}

weft_lock *weft_cond_lock(const weft_cond *c) {
  return sobj_live(c, SO_COND) ? c->lock : NULL; /* NULL: lock freed */
}

/* The checks shared by wait, wait_for and notify: 0 or the code, with the
 * caller in *tp. */
static int cond_check(weft_cond *c, weft_task **tp, const char *fn) {
  int rc = sobj_check_task(SOBJ(c), SO_COND, weft__tls_loop, tp, fn);
  if (rc) return rc;
  if (!c->lock || c->lock->h.magic != SO_LOCK) return -EIDRM;
  if (c->lock->owner != *tp) return -EPERM;
  return 0;
}

/* One wait; the caller holds the lock and was not cancelled. */
static int cond_wait(weft_loop *L, weft_task *t, weft_cond *c) {
  weft_lock *l = c->lock;
  c->h.inside++; /* both stay in memory until we are done with them */
  l->h.inside++;
  weft__lock_handoff(l);
  int rc = sobj_wait(L, t, &c->waiters, NULL, 0, true, &cond_kind, c);
  if (rc != -EIDRM) {
    int lrc = weft__lock_wait(L, t, l, false);
    if (lrc) {
      rc = lrc;
    } else if (c->h.magic != SO_COND || l->h.magic != SO_LOCK) {
      /* Freed after the lock was handed to us, before we ran: the memory
       * may go as we leave, so the caller must not think it holds it. */
      if (l->h.magic == SO_LOCK) weft__lock_handoff(l);
      rc = -EIDRM;
    }
  }
  sobj_leave(&l->h);
  sobj_leave(&c->h);
  return rc;
}

int weft_cond_wait(weft_cond *c) {
  weft_task *t;
  int rc = cond_check(c, &t, __func__);
  if (rc) return rc;
  if (weft__checkpoint(t)) return -ECANCELED;
  return cond_wait(t->loop, t, c);
}

int weft_cond_wait_for(weft_cond *c, bool (*pred)(void *arg), void *arg) {
  weft_task *t;
  if (!pred) return -EINVAL;
  int rc = cond_check(c, &t, __func__);
  if (rc) return rc;
  c->h.inside++; /* c stays in memory between the waits */
  /* A checkpoint at entry; after a wake, the predicate comes first: a
   * waiter notified and then cancelled before it ran holds the lock and
   * the notification, so it takes what the notification was for (it sees
   * its cancellation at its next checkpoint) rather than dropping it while
   * another waiter sleeps with the predicate true. */
  rc = weft__checkpoint(t);
  if (!rc && !pred(arg)) {
    for (;;) {
      if ((rc = cond_wait(t->loop, t, c)) != 0) break;
      if (pred(arg)) break;
      if ((rc = weft__checkpoint(t)) != 0) break;
    }
  }
  sobj_leave(&c->h);
  return rc;
}

int weft_cond_notify(weft_cond *c, size_t n) {
  weft_task *t;
  int rc = cond_check(c, &t, __func__);
  if (rc) return rc;
  int k = 0;
  weft__waiter *w;
  while ((size_t)k < n && k < INT32_MAX && (w = wl_pop(&c->waiters))) {
    weft__wake(w->task, 0);
    k++;
  }
  return k;
}

int weft_cond_notify_all(weft_cond *c) { return weft_cond_notify(c, SIZE_MAX); }
