/*
 * test_sync_cond.c -- weft_cond: wait/notify with the lock, notify(n)
 * and notify_all order, wait_for, a cancelled waiter re-taking the lock,
 * notify skipping a cancelled waiter, deadlines, free with waiters.
 */
#include "helpers.h"

typedef struct {
  weft_cond *c;
  weft_lock *l;
  int rc[16];
  int held[16]; /* did the waiter hold the lock when wait returned */
  int value;
  tlog log;
  weft_task *t[8];
} cstate;

typedef struct {
  cstate *s;
  int id;
} carg;

static int waiter(void *arg) {
  carg *a = arg;
  cstate *s = a->s;
  weft_lock_acquire(s->l);
  int rc = weft_cond_wait(s->c);
  s->rc[a->id] = rc;
  /* Holding the lock: a release by us succeeds, and only then. After
   * -EIDRM the lock may be gone: not to be touched. */
  s->held[a->id] = rc != -EIDRM && weft_lock_release(s->l) == 0;
  log_add(&s->log, a->id);
  return 0;
}

static int basic_main(void *arg) {
  cstate *s = arg;
  carg a[4] = {{s, 1}, {s, 2}, {s, 3}, {s, 4}};
  for (int i = 0; i < 4; i++) s->t[i] = weft_spawn(waiter, &a[i], NULL);
  weft_yield();
  weft_lock_acquire(s->l);
  s->rc[10] = weft_cond_notify(s->c, 1);
  s->rc[11] = weft_cond_notify(s->c, 2);
  weft_lock_release(s->l);
  weft_yield();
  weft_yield();
  log_add(&s->log, 0);
  weft_lock_acquire(s->l);
  s->rc[12] = weft_cond_notify_all(s->c);
  s->rc[13] = weft_cond_notify(s->c, 5); /* nobody left */
  weft_lock_release(s->l);
  for (int i = 0; i < 4; i++) weft_join(s->t[i]);
  return 0;
}

/* notify(1) then notify(2) wake the first three waiters in order, each
 * returning with the lock held; notify_all wakes the last; the return
 * values count the tasks woken. */
Test(sync_cond, notify_order, .timeout = 10) {
  cstate s = {.c = weft_cond_new(NULL)};
  cr_assert_not_null(s.c);
  s.l = weft_cond_lock(s.c);
  cr_assert_not_null(s.l);
  cr_assert_eq(weft_run(basic_main, &s), 0);
  for (int i = 1; i <= 4; i++) {
    cr_assert_eq(s.rc[i], 0);
    cr_assert(s.held[i], "waiter %d did not hold the lock", i);
  }
  cr_assert_eq(s.rc[10], 1);
  cr_assert_eq(s.rc[11], 2);
  cr_assert_eq(s.rc[12], 1);
  cr_assert_eq(s.rc[13], 0);
  int want[] = {1, 2, 3, 0, 4};
  log_expect(&s.log, want, 5);
  cr_assert_eq(weft_cond_free(s.c), 0);
}

/* ---------------------------------------------------------------- */

static bool value_ready(void *arg) { return ((cstate *)arg)->value >= 3; }

static int pred_waiter(void *arg) {
  cstate *s = arg;
  weft_lock_acquire(s->l);
  s->rc[0] = weft_cond_wait_for(s->c, value_ready, s);
  s->rc[1] = s->value;
  s->held[0] = weft_lock_release(s->l) == 0;
  return 0;
}

static int pred_main(void *arg) {
  cstate *s = arg;
  weft_task *t = weft_spawn(pred_waiter, s, NULL);
  for (int i = 0; i < 5; i++) {
    weft_yield();
    weft_lock_acquire(s->l);
    s->value++;
    weft_cond_notify_all(s->c);
    weft_lock_release(s->l);
  }
  weft_join(t);
  /* Already true: returns at once, lock still held. */
  weft_lock_acquire(s->l);
  s->rc[2] = weft_cond_wait_for(s->c, value_ready, s);
  s->rc[3] = weft_lock_release(s->l);
  return 0;
}

/* wait_for returns once the predicate holds (checked under the lock
 * after each notification), with the lock held. */
Test(sync_cond, wait_for, .timeout = 10) {
  cstate s = {.l = weft_lock_new()};
  s.c = weft_cond_new(s.l);
  cr_assert_not_null(s.c);
  cr_assert_eq(weft_cond_lock(s.c), s.l);
  cr_assert_eq(weft_run(pred_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[1], 3);
  cr_assert(s.held[0]);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.rc[3], 0);
  weft_cond_free(s.c);
  weft_lock_free(s.l);
}

/* ---------------------------------------------------------------- */

static int notify_cancelled_main(void *arg) {
  cstate *s = arg;
  carg a[2] = {{s, 1}, {s, 2}};
  s->t[0] = weft_spawn(waiter, &a[0], NULL);
  s->t[1] = weft_spawn(waiter, &a[1], NULL);
  weft_yield();
  weft_lock_acquire(s->l);
  weft_cancel(s->t[0]); /* it wakes, and queues for the lock we hold */
  s->rc[10] = weft_cond_notify(s->c, 1); /* so this one reaches waiter 2 */
  weft_yield();
  weft_yield();
  log_add(&s->log, 0); /* neither can have returned: we hold the lock */
  weft_lock_release(s->l);
  weft_join(s->t[0]);
  weft_join(s->t[1]);
  return 0;
}

/* asyncio's "notify with a cancelled waiter": the cancelled waiter is
 * not counted by notify(1), which wakes the next one. The cancelled one
 * returns -ECANCELED only after re-taking the lock: it waits for the
 * notifier to release it, and returns holding it. */
Test(sync_cond, notify_skips_cancelled, .timeout = 10) {
  cstate s = {.c = weft_cond_new(NULL)};
  s.l = weft_cond_lock(s.c);
  cr_assert_eq(weft_run(notify_cancelled_main, &s), 0);
  cr_assert_eq(s.rc[10], 1);
  cr_assert_eq(s.rc[1], -ECANCELED);
  cr_assert(s.held[1]);
  cr_assert_eq(s.rc[2], 0);
  cr_assert(s.held[2]);
  int want[] = {0, 1, 2};
  log_expect(&s.log, want, 3);
  weft_cond_free(s.c);
}

/* ---------------------------------------------------------------- */

static int errors_main(void *arg) {
  cstate *s = arg;
  s->rc[0] = weft_cond_wait(s->c);      /* lock not held */
  s->rc[1] = weft_cond_notify(s->c, 1); /* idem */
  s->rc[2] = weft_cond_notify_all(s->c);
  s->rc[3] = weft_cond_wait_for(s->c, NULL, NULL);
  s->rc[4] = weft_cond_wait_for(s->c, value_ready, s);
  weft_lock_acquire(s->l);
  weft_cancel(weft_current());
  s->rc[5] = weft_cond_wait(s->c); /* cancelled at entry: lock kept */
  s->rc[6] = weft_lock_release(s->l);
  s->rc[7] = weft_cond_wait_for(s->c, value_ready, s);
  return 0;
}

/* wait and notify without the lock are -EPERM; wait_for with a NULL
 * predicate is -EINVAL; in a cancelled scope wait returns -ECANCELED at
 * once and keeps the lock. */
Test(sync_cond, errors, .timeout = 10) {
  cstate s = {.c = weft_cond_new(NULL)};
  s.l = weft_cond_lock(s.c);
  cr_assert_eq(weft_run(errors_main, &s), 0);
  cr_assert_eq(s.rc[0], -EPERM);
  cr_assert_eq(s.rc[1], -EPERM);
  cr_assert_eq(s.rc[2], -EPERM);
  cr_assert_eq(s.rc[3], -EINVAL);
  cr_assert_eq(s.rc[4], -EPERM);
  cr_assert_eq(s.rc[5], -ECANCELED);
  cr_assert_eq(s.rc[6], 0);
  cr_assert_eq(s.rc[7], -EPERM);
  weft_cond_free(s.c);
}

/* ---------------------------------------------------------------- */

static int lock_hog(void *arg) {
  cstate *s = arg;
  weft_lock_acquire(s->l);
  weft_sleep(WEFT_MS(50));
  log_add(&s->log, 9);
  weft_lock_release(s->l);
  return 0;
}

static int deadline_main(void *arg) {
  cstate *s = arg;
  weft_lock_acquire(s->l);
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(10));
  weft_task *h = weft_spawn(lock_hog, s, NULL);
  /* Releases the lock: the hog takes it for 50 ms. Our deadline fires
   * after 10 ms, but we return only with the lock, after the hog. */
  s->rc[0] = weft_cond_wait(s->c);
  log_add(&s->log, 1);
  s->rc[1] = weft_scope_close(&sc);
  s->rc[2] = weft_lock_release(s->l);
  weft_join(h);
  return 0;
}

/* A deadline fires during wait: the waiter returns -ECANCELED, but only
 * once it holds the lock again (here after another task's 50 ms). */
Test(sync_cond, deadline_reacquires, .timeout = 10) {
  cstate s = {.c = weft_cond_new(NULL)};
  s.l = weft_cond_lock(s.c);
  cr_assert_eq(weft_run(deadline_main, &s), 0);
  cr_assert_eq(s.rc[0], -ECANCELED);
  cr_assert_eq(s.rc[1], -ETIMEDOUT);
  cr_assert_eq(s.rc[2], 0);
  int want[] = {9, 1};
  log_expect(&s.log, want, 2);
  weft_cond_free(s.c);
}

/* ---------------------------------------------------------------- */

static int lock_waiter(void *arg) {
  carg *a = arg;
  a->s->rc[a->id] = weft_lock_acquire(a->s->l);
  return 0;
}

static int free_main(void *arg) {
  cstate *s = arg;
  carg a[3] = {{s, 1}, {s, 2}, {s, 3}};
  s->t[0] = weft_spawn(waiter, &a[0], NULL);
  s->t[1] = weft_spawn(waiter, &a[1], NULL);
  weft_yield();
  weft_lock_acquire(s->l);
  weft_cond_notify(s->c, 1); /* waiter 1 now queues for the lock */
  s->t[2] = weft_spawn(lock_waiter, &a[2], NULL);
  weft_yield();
  s->rc[0] = weft_cond_free(s->c); /* and with it its own lock */
  s->rc[10] = weft_cond_free(s->c); /* still in memory: -EIDRM */
  s->rc[11] = weft_lock_release(s->l);
  for (int i = 0; i < 3; i++) weft_join(s->t[i]);
  return 0;
}

/* Freeing a condition (with a lock of its own) while tasks wait on it
 * and on its lock: every one wakes with -EIDRM, the lock is gone, and the
 * memory lasts until the last of them has returned (checked by ASan and
 * valgrind runs of this test). */
Test(sync_cond, free_with_waiters, .timeout = 10) {
  cstate s = {.c = weft_cond_new(NULL)};
  s.l = weft_cond_lock(s.c);
  cr_assert_eq(weft_run(free_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[10], -EIDRM);
  cr_assert_eq(s.rc[11], -EIDRM);
  cr_assert_eq(s.rc[1], -EIDRM); /* notified, then its lock was freed */
  cr_assert_eq(s.rc[2], -EIDRM); /* waiting on the condition */
  cr_assert_eq(s.rc[3], -EIDRM); /* waiting on the lock */
  cr_assert_not(s.held[1]);
  cr_assert_not(s.held[2]);
}

/* A condition given a lock that is not one: NULL, EINVAL. */
Test(sync_cond, new_bad_lock, .timeout = 10) {
  weft_event *e = weft_event_new();
  errno = 0;
  cr_assert_null(weft_cond_new((weft_lock *)e));
  cr_assert_eq(errno, EINVAL);
  weft_event_free(e);
}

/* ---------------------------------------------------------------- */

static bool never(void *arg) {
  (void)arg;
  return false;
}

static int pred_waiter_never(void *arg) {
  carg *a = arg;
  cstate *s = a->s;
  weft_lock_acquire(s->l);
  int rc = weft_cond_wait_for(s->c, never, NULL);
  s->rc[a->id] = rc;
  s->held[a->id] = rc != -EIDRM && weft_lock_release(s->l) == 0;
  return 0;
}

static int freed_while_retaking_main(void *arg) {
  cstate *s = arg;
  carg a = {s, 1};
  s->t[0] = weft_spawn(s->rc[3] ? pred_waiter_never : waiter, &a, NULL);
  weft_yield();
  weft_lock_acquire(s->l);
  weft_cond_notify(s->c, 1);
  weft_yield(); /* the waiter queues for the lock we hold */
  weft_lock_release(s->l); /* it is the owner now, not yet running */
  s->rc[0] = weft_cond_free(s->c);
  weft_join(s->t[0]);
  if (s->value) /* the external lock (an own one is gone): given back */
    s->rc[2] = weft_lock_locked(s->l);
  return 0;
}

/* A condition freed after its waiter was notified and handed the lock,
 * before it ran: weft_cond_wait returns -EIDRM without the lock, as
 * documented, never 0 on a freed condition (whose own lock's memory
 * goes as the waiter leaves, so "holding" it would be a use after free),
 * with its own lock, with a lock given at creation (given back), and
 * through weft_cond_wait_for (rc[3] set). */
Test(sync_cond, freed_while_retaking_lock, .timeout = 10) {
  cstate s = {.c = weft_cond_new(NULL)};
  s.l = weft_cond_lock(s.c);
  cr_assert_eq(weft_run(freed_while_retaking_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[1], -EIDRM);
  cr_assert_not(s.held[1]);

  cstate e = {.l = weft_lock_new(), .value = 1, .rc[2] = -1};
  e.c = weft_cond_new(e.l);
  cr_assert_eq(weft_run(freed_while_retaking_main, &e), 0);
  cr_assert_eq(e.rc[0], 0);
  cr_assert_eq(e.rc[1], -EIDRM);
  cr_assert_not(e.held[1]);
  cr_assert_eq(e.rc[2], 0);
  cr_assert_eq(weft_lock_free(e.l), 0);

  cstate p = {.l = weft_lock_new(), .value = 1, .rc = {[2] = -1, [3] = 1}};
  p.c = weft_cond_new(p.l); /* the same through weft_cond_wait_for */
  cr_assert_eq(weft_run(freed_while_retaking_main, &p), 0);
  cr_assert_eq(p.rc[1], -EIDRM);
  cr_assert_not(p.held[1]);
  cr_assert_eq(p.rc[2], 0);
  cr_assert_eq(weft_lock_free(p.l), 0);
}

/* ---- the lock under a condition breaks or goes away ----------------- */

static int hold_and_return(void *arg) {
  cstate *s = arg;
  weft_lock_acquire(s->l);
  weft_yield(); /* the waiters are parked by now */
  return 0;     /* returns holding the lock: it breaks */
}

static int broken_main(void *arg) {
  cstate *s = arg;
  carg a[2] = {{s, 1}, {s, 2}};
  s->t[0] = weft_spawn(waiter, &a[0], NULL);
  s->t[1] = weft_spawn(waiter, &a[1], NULL);
  weft_yield(); /* both wait on the condition, the lock free */
  s->t[2] = weft_spawn(hold_and_return, s, NULL);
  for (int i = 0; i < 3; i++) weft_join(s->t[i]);
  s->rc[10] = weft_cond_wait(s->c); /* the lock is broken for good */
  return 0;
}

/* The owner of a condition's lock returns holding it: nobody can notify
 * the condition's waiters any more (notify needs the lock), so they wake
 * with -EOWNERDEAD, not holding the lock, instead of waiting forever. */
Test(sync_cond, lock_owner_dies, .timeout = 10) {
  cstate s = {0};
  s.l = weft_lock_new();
  s.c = weft_cond_new(s.l);
  cr_assert_eq(weft_run(broken_main, &s), 0);
  cr_assert_eq(s.rc[1], -EOWNERDEAD);
  cr_assert_eq(s.rc[2], -EOWNERDEAD);
  cr_assert_eq(s.held[1], 0);
  cr_assert_eq(s.held[2], 0);
  cr_assert_eq(s.rc[10], -EPERM); /* nobody holds it */
  cr_assert_eq(weft_cond_free(s.c), 0);
  cr_assert_eq(weft_lock_free(s.l), 0);
}

static int lock_freed_main(void *arg) {
  cstate *s = arg;
  carg a[2] = {{s, 1}, {s, 2}};
  s->t[0] = weft_spawn(waiter, &a[0], NULL);
  s->t[1] = weft_spawn(waiter, &a[1], NULL);
  weft_yield();
  s->rc[9] = weft_lock_free(s->l);
  for (int i = 0; i < 2; i++) weft_join(s->t[i]);
  s->rc[10] = weft_cond_notify_all(s->c);
  s->rc[11] = weft_cond_lock(s->c) == NULL;
  return 0;
}

/* A lock given to a condition is freed while tasks wait on the
 * condition: they wake with -EIDRM, and the condition, still valid
 * memory, answers -EIDRM from then on. */
Test(sync_cond, given_lock_freed, .timeout = 10) {
  cstate s = {0};
  s.l = weft_lock_new();
  s.c = weft_cond_new(s.l);
  cr_assert_eq(weft_run(lock_freed_main, &s), 0);
  cr_assert_eq(s.rc[9], 0);
  cr_assert_eq(s.rc[1], -EIDRM);
  cr_assert_eq(s.rc[2], -EIDRM);
  cr_assert_eq(s.rc[10], -EIDRM);
  cr_assert_eq(s.rc[11], 1);
  cr_assert_eq(weft_cond_free(s.c), 0);
}
