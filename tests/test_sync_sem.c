/*
 * test_sync_sem.c -- weft_sem: counting, bounded release, FIFO wake,
 * hand-off (no barging), a woken waiter cancelled keeps its permit,
 * deadlines, free with waiters, and a concurrency bound under load.
 */
#include "helpers.h"

typedef struct {
  weft_sem *s;
  int rc[16];
  tlog log;
  weft_task *t[8];
  int inside, max_inside;
} sstate;

typedef struct {
  sstate *s;
  int id;
} sarg;

static int basic_main(void *arg) {
  sstate *s = arg;
  s->rc[0] = weft_sem_acquire(s->s);
  s->rc[1] = weft_sem_acquire(s->s);
  s->rc[2] = (int)weft_sem_value(s->s);
  s->rc[3] = weft_sem_locked(s->s);
  s->rc[4] = weft_sem_try_acquire(s->s);
  s->rc[5] = weft_sem_release(s->s);
  s->rc[6] = weft_sem_try_acquire(s->s);
  s->rc[7] = weft_sem_release(s->s);
  s->rc[8] = weft_sem_release(s->s);
  s->rc[9] = (int)weft_sem_value(s->s);
  s->rc[10] = weft_sem_release(s->s); /* unbounded: past the initial 2 */
  s->rc[11] = (int)weft_sem_value(s->s);
  return 0;
}

Test(sync_sem, counting, .timeout = 10) {
  sstate s = {.s = weft_sem_new(2)};
  cr_assert_not_null(s.s);
  cr_assert_eq(weft_sem_value(s.s), 2);
  cr_assert_not(weft_sem_locked(s.s));
  cr_assert_eq(weft_run(basic_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[1], 0);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.rc[3], 1);
  cr_assert_eq(s.rc[4], -EAGAIN);
  cr_assert_eq(s.rc[5], 0);
  cr_assert_eq(s.rc[6], 0);
  cr_assert_eq(s.rc[7], 0);
  cr_assert_eq(s.rc[8], 0);
  cr_assert_eq(s.rc[9], 2);
  cr_assert_eq(s.rc[10], 0);
  cr_assert_eq(s.rc[11], 3);
  cr_assert_eq(weft_sem_free(s.s), 0);
}

/* A bounded semaphore refuses a release past its initial value, before
 * the loop too (try_acquire and release need no task). */
Test(sync_sem, bounded, .timeout = 10) {
  weft_sem *b = weft_sem_new_bounded(2);
  cr_assert_not_null(b);
  cr_assert_eq(weft_sem_release(b), -EOVERFLOW);
  cr_assert_eq(weft_sem_try_acquire(b), 0);
  cr_assert_eq(weft_sem_value(b), 1);
  cr_assert_eq(weft_sem_release(b), 0);
  cr_assert_eq(weft_sem_release(b), -EOVERFLOW);
  cr_assert_eq(weft_sem_value(b), 2);
  cr_assert_eq(weft_sem_free(b), 0);
  weft_sem *z = weft_sem_new_bounded(0);
  cr_assert_eq(weft_sem_release(z), -EOVERFLOW);
  cr_assert_eq(weft_sem_try_acquire(z), -EAGAIN);
  weft_sem_free(z);
  weft_sem *u = weft_sem_new(SIZE_MAX);
  cr_assert_eq(weft_sem_release(u), -EOVERFLOW); /* the count would wrap */
  weft_sem_free(u);
}

/* ---------------------------------------------------------------- */

static int waiter(void *arg) {
  sarg *a = arg;
  int rc = weft_sem_acquire(a->s->s);
  a->s->rc[a->id] = rc;
  log_add(&a->s->log, a->id);
  if (rc == 0) {
    a->s->rc[8 + a->id] = weft_yield(); /* cancellation shows here */
    weft_sem_release(a->s->s);
  }
  return 0;
}

static int fifo_main(void *arg) {
  sstate *s = arg;
  sarg a[5];
  for (int i = 0; i < 5; i++) {
    a[i] = (sarg){s, i + 1};
    s->t[i] = weft_spawn(waiter, &a[i], NULL);
    weft_yield();
  }
  weft_sem_release(s->s); /* to waiter 1: value stays 0 */
  s->rc[0] = weft_sem_try_acquire(s->s);
  for (int i = 0; i < 5; i++) weft_sem_release(s->s);
  for (int i = 0; i < 5; i++) weft_join(s->t[i]);
  s->rc[7] = (int)weft_sem_value(s->s);
  return 0;
}

/* Waiters get permits in the order they came; a release while tasks wait
 * goes to the first of them, so the releaser's try_acquire fails. */
Test(sync_sem, fifo_no_barging, .timeout = 10) {
  sstate s = {.s = weft_sem_new(0)};
  cr_assert_eq(weft_run(fifo_main, &s), 0);
  cr_assert_eq(s.rc[0], -EAGAIN);
  int want[] = {1, 2, 3, 4, 5};
  log_expect(&s.log, want, 5);
  cr_assert_eq(s.rc[7], 6); /* 6 released, every waiter gave its back */
  weft_sem_free(s.s);
}

static int woken_cancelled_main(void *arg) {
  sstate *s = arg;
  sarg a1 = {s, 1}, a2 = {s, 2};
  weft_sem_acquire(s->s); /* the only permit */
  s->t[0] = weft_spawn(waiter, &a1, NULL);
  s->t[1] = weft_spawn(waiter, &a2, NULL);
  weft_yield();
  weft_sem_release(s->s); /* handed to waiter 1 ... */
  weft_cancel(s->t[0]);   /* ... cancelled before it runs */
  weft_join(s->t[0]);
  weft_join(s->t[1]);
  s->rc[7] = (int)weft_sem_value(s->s);
  return 0;
}

/* asyncio's "semaphore permit not lost when a woken waiter is
 * cancelled": the permit is the waiter's once handed over; its acquire
 * returns 0, its next checkpoint -ECANCELED, and its release lets waiter
 * 2 through. In the end the one permit is back. */
Test(sync_sem, woken_waiter_cancelled_keeps_permit, .timeout = 10) {
  sstate s = {.s = weft_sem_new(1)};
  cr_assert_eq(weft_run(woken_cancelled_main, &s), 0);
  cr_assert_eq(s.rc[1], 0);
  cr_assert_eq(s.rc[9], -ECANCELED);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.rc[10], 0);
  cr_assert_eq(s.rc[7], 1);
  weft_sem_free(s.s);
}

static int waiting_cancelled_main(void *arg) {
  sstate *s = arg;
  sarg a1 = {s, 1}, a2 = {s, 2};
  s->t[0] = weft_spawn(waiter, &a1, NULL);
  s->t[1] = weft_spawn(waiter, &a2, NULL);
  weft_yield();
  weft_cancel(s->t[0]); /* while waiting: it leaves */
  weft_yield();
  weft_sem_release(s->s); /* so the permit goes to waiter 2 */
  weft_join(s->t[0]);
  weft_join(s->t[1]);
  s->rc[7] = (int)weft_sem_value(s->s);
  /* Deadline around an acquire that cannot succeed. */
  weft_sem_acquire(s->s);
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(10));
  s->rc[5] = weft_sem_acquire(s->s);
  s->rc[6] = weft_scope_close(&sc);
  s->rc[4] = (int)weft_sem_value(s->s);
  return 0;
}

Test(sync_sem, waiter_cancelled_and_deadline, .timeout = 10) {
  sstate s = {.s = weft_sem_new(0)};
  cr_assert_eq(weft_run(waiting_cancelled_main, &s), 0);
  cr_assert_eq(s.rc[1], -ECANCELED);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.rc[7], 1);
  cr_assert_eq(s.rc[5], -ECANCELED);
  cr_assert_eq(s.rc[6], -ETIMEDOUT);
  cr_assert_eq(s.rc[4], 0);
  weft_sem_free(s.s);
}

static int free_main(void *arg) {
  sstate *s = arg;
  sarg a1 = {s, 1}, a2 = {s, 2};
  s->t[0] = weft_spawn(waiter, &a1, NULL);
  s->t[1] = weft_spawn(waiter, &a2, NULL);
  weft_yield();
  s->rc[0] = weft_sem_free(s->s);
  weft_join(s->t[0]);
  weft_join(s->t[1]);
  return 0;
}

Test(sync_sem, free_with_waiters, .timeout = 10) {
  sstate s = {.s = weft_sem_new(0)};
  cr_assert_eq(weft_run(free_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[1], -EIDRM);
  cr_assert_eq(s.rc[2], -EIDRM);
}

/* ---------------------------------------------------------------- */

static int limited(void *arg) {
  sstate *s = arg;
  for (int i = 0; i < 50; i++) {
    int rc = weft_sem_acquire(s->s);
    if (rc) return rc;
    if (++s->inside > s->max_inside) s->max_inside = s->inside;
    weft_yield();
    s->inside--;
    weft_sem_release(s->s);
  }
  return 0;
}

static int load_main(void *arg) {
  sstate *s = arg;
  weft_group *g = weft_group_open();
  for (int i = 0; i < 200; i++) weft_group_spawn(g, limited, s, NULL);
  return weft_group_close(g, NULL);
}

/* 200 tasks x 50 {acquire; yield; release} over 3 permits: never more
 * than 3 inside, all finish, every permit is back. */
Test(sync_sem, bound_under_load, .timeout = 10) {
  sstate s = {.s = weft_sem_new(3)};
  cr_assert_eq(weft_run(load_main, &s), 0);
  cr_assert_eq(s.max_inside, 3);
  cr_assert_eq(s.inside, 0);
  cr_assert_eq(weft_sem_value(s.s), 3);
  weft_sem_free(s.s);
}
