/*
 * Semaphore and bounded semaphore.
 *
 * A release while tasks wait hands the permit straight to the first of
 * them, so `value` stays 0 and a later acquire cannot take the permit
 * first: value > 0 implies nobody waits, and acquire needs no look at the
 * wait list. The woken task owns the permit even if it is cancelled
 * before it runs.
 */
#include "sync/sobj.h"

struct weft_sem {
  weft__sobj h;
  size_t value;
  size_t bound; /* most permits a release may bring it to; SIZE_MAX: none */
  weft__wlist waiters;
};

_Static_assert(offsetof(weft_sem, h) == 0, "header first");

static void sem_release_mem(weft__sobj *o) { free(o); }

static int sem_describe(const weft_task *t, const void *obj, char *buf,
                        size_t n) {
  (void)t;
  const weft_sem *s = obj;
  return snprintf(buf, n, "%zu waiting", s->waiters.n);
}
static const weft__wait_kind sem_kind = {"semaphore", sem_describe};

static void sem_kill(weft__sobj *o) {
  wl_wake_all(&((weft_sem *)o)->waiters, -EIDRM);
}

static weft_sem *sem_new(size_t value, size_t bound) {
  weft_sem *s = malloc(sizeof *s);
  if (!s) return NULL;
  sobj_init(&s->h, SO_SEM, sem_release_mem);
  s->value = value;
  s->bound = bound;
  s->waiters = (weft__wlist){0};
  return s;
}

weft_sem *weft_sem_new(size_t value) { return sem_new(value, SIZE_MAX); }

weft_sem *weft_sem_new_bounded(size_t value) { return sem_new(value, value); }

int weft_sem_free(weft_sem *s) {
  return sobj_free(SOBJ(s), SO_SEM, __func__, sem_kill);
}

int weft_sem_acquire(weft_sem *s) {
  weft_loop *L = weft__tls_loop;
  weft_task *t;
  int rc = sobj_check_wait(SOBJ(s), SO_SEM, L, &t, __func__);
  if (weft__unlikely(rc)) return rc;
  if (weft__likely(s->value)) {
    s->value--;
    return 0;
  }
  return sobj_wait(L, t, &s->waiters, NULL, 0, true, &sem_kind, s);
}

int weft_sem_try_acquire(weft_sem *s) {
  int rc = sobj_check(SOBJ(s), SO_SEM, weft__tls_loop, __func__);
  if (rc) return rc;
  if (!s->value) return -EAGAIN;
  s->value--;
  return 0;
}

int weft_sem_release(weft_sem *s) {
  int rc = sobj_check(SOBJ(s), SO_SEM, weft__tls_loop, __func__);
  if (weft__unlikely(rc)) return rc;
  if (weft__unlikely(s->value >= s->bound)) return -EOVERFLOW;
  weft__waiter *w = wl_pop(&s->waiters);
  if (w)
    weft__wake(w->task, 0);
  else
    s->value++;
  return 0;
}

size_t weft_sem_value(const weft_sem *s) {
  return sobj_live(s, SO_SEM) ? s->value : 0;
}

bool weft_sem_locked(const weft_sem *s) {
  return sobj_live(s, SO_SEM) && s->value == 0;
}
