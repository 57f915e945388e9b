/*
 * test_sync_lock.c -- weft_lock: ownership errors, FIFO hand-off,
 * cancellation (while waiting and after the hand-off), an owner that
 * returns holding the lock, deadlines, freeing with waiters.
 */
#include "helpers.h"

typedef struct {
  weft_lock *l;
  tlog log;
  int rc[8];
  weft_task *t[8];
} lstate;

/* ---------------------------------------------------------------- */
/* Ownership                                                          */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_lock *l;
  int acq, locked_after, reacq, try_self, rel, rel_again, locked_end;
  int other_try, other_rel;
} own_state;

static int other_task(void *arg) {
  own_state *s = arg;
  s->other_try = weft_lock_try_acquire(s->l);
  s->other_rel = weft_lock_release(s->l);
  return 0;
}

static int ownership_main(void *arg) {
  own_state *s = arg;
  s->acq = weft_lock_acquire(s->l);
  s->locked_after = weft_lock_locked(s->l);
  s->reacq = weft_lock_acquire(s->l);
  s->try_self = weft_lock_try_acquire(s->l);
  weft_task *o = weft_spawn(other_task, s, NULL);
  weft_join(o);
  s->rel = weft_lock_release(s->l);
  s->rel_again = weft_lock_release(s->l);
  s->locked_end = weft_lock_locked(s->l);
  return 0;
}

/* acquire/release by the owner work; re-acquiring one's own lock is
 * -EDEADLK (blocking or not); another task's try is -EAGAIN and its
 * release -EPERM; releasing an unlocked lock is -EPERM. */
Test(sync_lock, ownership, .timeout = 10) {
  own_state s = {.l = weft_lock_new()};
  cr_assert_not_null(s.l);
  cr_assert_not(weft_lock_locked(s.l));
  cr_assert_eq(weft_run(ownership_main, &s), 0);
  cr_assert_eq(s.acq, 0);
  cr_assert(s.locked_after);
  cr_assert_eq(s.reacq, -EDEADLK);
  cr_assert_eq(s.try_self, -EDEADLK);
  cr_assert_eq(s.other_try, -EAGAIN);
  cr_assert_eq(s.other_rel, -EPERM);
  cr_assert_eq(s.rel, 0);
  cr_assert_eq(s.rel_again, -EPERM);
  cr_assert_not(s.locked_end);
  cr_assert_eq(weft_lock_free(s.l), 0);
}

/* ---------------------------------------------------------------- */
/* FIFO hand-off                                                      */
/* ---------------------------------------------------------------- */

typedef struct {
  lstate *s;
  int id;
} warg;

static int fifo_waiter(void *arg) {
  warg *w = arg;
  int rc = weft_lock_acquire(w->s->l);
  w->s->rc[w->id] = rc;
  log_add(&w->s->log, w->id);
  weft_yield(); /* hold it across a switch */
  if (rc == 0) weft_lock_release(w->s->l);
  return 0;
}

static int fifo_main(void *arg) {
  lstate *s = arg;
  warg w[5];
  weft_lock_acquire(s->l);
  for (int i = 0; i < 5; i++) {
    w[i] = (warg){s, i + 1};
    s->t[i] = weft_spawn(fifo_waiter, &w[i], NULL);
    weft_yield(); /* each queues in spawn order */
  }
  /* Released and at once re-acquired: the lock went to waiter 1, so the
   * re-acquire queues behind all five. */
  weft_lock_release(s->l);
  s->rc[6] = weft_lock_try_acquire(s->l);
  s->rc[7] = weft_lock_acquire(s->l);
  log_add(&s->log, 0);
  weft_lock_release(s->l);
  for (int i = 0; i < 5; i++) weft_join(s->t[i]);
  return 0;
}

/* Waiters get the lock in the order they asked, and a release hands it
 * straight to the first one: the releaser cannot take it back. */
Test(sync_lock, fifo_handoff_no_barging, .timeout = 10) {
  lstate s = {.l = weft_lock_new()};
  cr_assert_eq(weft_run(fifo_main, &s), 0);
  int want[] = {1, 2, 3, 4, 5, 0};
  log_expect(&s.log, want, 6);
  for (int i = 1; i <= 5; i++) cr_assert_eq(s.rc[i], 0);
  cr_assert_eq(s.rc[6], -EAGAIN);
  cr_assert_eq(s.rc[7], 0);
  cr_assert_eq(weft_lock_free(s.l), 0);
}

/* ---------------------------------------------------------------- */
/* Cancellation                                                       */
/* ---------------------------------------------------------------- */

static int plain_waiter(void *arg) {
  warg *w = arg;
  int rc = weft_lock_acquire(w->s->l);
  w->s->rc[w->id] = rc;
  log_add(&w->s->log, w->id);
  if (rc == 0) {
    /* The cancellation, if any, shows at the next checkpoint. */
    w->s->rc[4 + w->id] = weft_yield();
    weft_lock_release(w->s->l);
  }
  return 0;
}

static int cancel_waiting_main(void *arg) {
  lstate *s = arg;
  warg w1 = {s, 1}, w2 = {s, 2};
  weft_lock_acquire(s->l);
  s->t[1] = weft_spawn(plain_waiter, &w1, NULL);
  s->t[2] = weft_spawn(plain_waiter, &w2, NULL);
  weft_yield();
  weft_cancel(s->t[1]); /* still waiting: it leaves the queue */
  weft_yield();
  weft_lock_release(s->l); /* goes to waiter 2 */
  weft_join(s->t[1]);
  weft_join(s->t[2]);
  s->rc[0] = weft_lock_locked(s->l);
  return 0;
}

/* A waiter cancelled while it waits returns -ECANCELED and is skipped:
 * the lock goes to the next one. */
Test(sync_lock, waiter_cancelled_while_waiting, .timeout = 10) {
  lstate s = {.l = weft_lock_new()};
  cr_assert_eq(weft_run(cancel_waiting_main, &s), 0);
  cr_assert_eq(s.rc[1], -ECANCELED);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.rc[6], 0); /* waiter 2's yield: not cancelled */
  int want[] = {1, 2};
  log_expect(&s.log, want, 2);
  cr_assert_eq(s.rc[0], 0); /* released in the end */
  weft_lock_free(s.l);
}

static int cancel_handed_main(void *arg) {
  lstate *s = arg;
  warg w1 = {s, 1}, w2 = {s, 2};
  weft_lock_acquire(s->l);
  s->t[1] = weft_spawn(plain_waiter, &w1, NULL);
  s->t[2] = weft_spawn(plain_waiter, &w2, NULL);
  weft_yield();
  weft_lock_release(s->l); /* handed to waiter 1, which has not run yet */
  weft_cancel(s->t[1]);
  weft_join(s->t[1]);
  weft_join(s->t[2]);
  return 0;
}

/* asyncio's "lock waiter cancelled while the lock is handed to it": the
 * lock is waiter 1's from the moment it is handed over. Its acquire
 * returns 0, the cancellation shows at its next checkpoint, and once it
 * releases the lock, waiter 2 gets it: nothing is lost. */
Test(sync_lock, waiter_cancelled_after_handoff, .timeout = 10) {
  lstate s = {.l = weft_lock_new()};
  cr_assert_eq(weft_run(cancel_handed_main, &s), 0);
  cr_assert_eq(s.rc[1], 0);
  cr_assert_eq(s.rc[5], -ECANCELED);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.rc[6], 0);
  int want[] = {1, 2};
  log_expect(&s.log, want, 2);
  cr_assert_not(weft_lock_locked(s.l));
  weft_lock_free(s.l);
}

static int cancelled_at_entry(void *arg) {
  lstate *s = arg;
  weft_cancel(weft_current());
  s->rc[0] = weft_lock_acquire(s->l);
  s->rc[1] = weft_lock_locked(s->l);
  s->rc[2] = weft_lock_try_acquire(s->l); /* not a checkpoint */
  s->rc[3] = weft_lock_release(s->l);
  return 0;
}

/* In a cancelled scope acquire is -ECANCELED and takes nothing, even
 * when the lock is free; try_acquire is no checkpoint and still works. */
Test(sync_lock, cancelled_at_entry, .timeout = 10) {
  lstate s = {.l = weft_lock_new()};
  cr_assert_eq(weft_run(cancelled_at_entry, &s), 0);
  cr_assert_eq(s.rc[0], -ECANCELED);
  cr_assert_eq(s.rc[1], 0);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.rc[3], 0);
  weft_lock_free(s.l);
}

/* ---------------------------------------------------------------- */
/* Deadline                                                           */
/* ---------------------------------------------------------------- */

static int holder(void *arg) {
  lstate *s = arg;
  weft_lock_acquire(s->l);
  weft_sleep(WEFT_MS(200));
  weft_lock_release(s->l);
  return 0;
}

static int deadline_main(void *arg) {
  lstate *s = arg;
  weft_task *h = weft_spawn(holder, s, NULL);
  weft_yield();
  weft_scope sc;
  int64_t t0 = weft_now();
  weft_scope_open_after(&sc, WEFT_MS(20));
  s->rc[0] = weft_lock_acquire(s->l);
  s->rc[1] = weft_scope_close(&sc);
  s->rc[2] = (int)((weft_now() - t0) / 1000000);
  s->rc[3] = weft_lock_acquire(s->l); /* after the holder releases */
  weft_lock_release(s->l);
  weft_join(h);
  return 0;
}

/* A deadline (cancel scope) around acquire: -ECANCELED when it fires,
 * the scope closes with -ETIMEDOUT, and the lock is not taken then. */
Test(sync_lock, deadline, .timeout = 10) {
  lstate s = {.l = weft_lock_new()};
  cr_assert_eq(weft_run(deadline_main, &s), 0);
  cr_assert_eq(s.rc[0], -ECANCELED);
  cr_assert_eq(s.rc[1], -ETIMEDOUT);
  cr_assert_geq(s.rc[2], 20);
  cr_assert_lt(s.rc[2], 20 + T_SLACK / 1000000);
  cr_assert_eq(s.rc[3], 0);
  weft_lock_free(s.l);
}

/* ---------------------------------------------------------------- */
/* Owner returns holding the lock                                     */
/* ---------------------------------------------------------------- */

static int take_and_return(void *arg) {
  lstate *s = arg;
  weft_lock_acquire(s->l);
  weft_sleep(WEFT_MS(5)); /* the others queue meanwhile */
  return 0;               /* never released */
}

static int dead_owner_main(void *arg) {
  lstate *s = arg;
  warg w1 = {s, 1}, w2 = {s, 2};
  weft_task *o = weft_spawn(take_and_return, s, NULL);
  weft_yield();
  s->t[1] = weft_spawn(plain_waiter, &w1, NULL);
  s->t[2] = weft_spawn(plain_waiter, &w2, NULL);
  weft_join(o);
  weft_join(s->t[1]);
  weft_join(s->t[2]);
  s->rc[3] = weft_lock_acquire(s->l);
  s->rc[4] = weft_lock_try_acquire(s->l);
  s->rc[7] = weft_lock_locked(s->l);
  return 0;
}

/* The owner returns with the lock held: its waiters wake with
 * -EOWNERDEAD instead of waiting forever, and so does every later
 * acquire; the lock counts as not locked. */
Test(sync_lock, owner_exits_holding, .timeout = 10) {
  lstate s = {.l = weft_lock_new()};
  cr_assert_eq(weft_run(dead_owner_main, &s), 0);
  cr_assert_eq(s.rc[1], -EOWNERDEAD);
  cr_assert_eq(s.rc[2], -EOWNERDEAD);
  cr_assert_eq(s.rc[3], -EOWNERDEAD);
  cr_assert_eq(s.rc[4], -EOWNERDEAD);
  cr_assert_eq(s.rc[7], 0);
  cr_assert_eq(weft_lock_free(s.l), 0);
}

static int hold_two_and_fail(void *arg) {
  weft_lock **ls = arg;
  weft_lock_acquire(ls[0]);
  weft_lock_acquire(ls[1]);
  weft_lock_release(ls[0]); /* only ls[1] is held at exit */
  return -EIO;
}

static int two_locks_main(void *arg) {
  weft_lock **ls = arg;
  weft_task *t = weft_spawn(hold_two_and_fail, ls, NULL);
  int rc = weft_join(t);
  int a = weft_lock_acquire(ls[0]);
  int b = weft_lock_acquire(ls[1]);
  weft_lock_release(ls[0]);
  return rc == -EIO && a == 0 && b == -EOWNERDEAD ? 0 : -EPROTO;
}

/* Only the locks still held at exit break; one released before is fine. */
Test(sync_lock, owner_exit_breaks_only_held, .timeout = 10) {
  weft_lock *ls[2] = {weft_lock_new(), weft_lock_new()};
  cr_assert_eq(weft_run(two_locks_main, ls), 0);
  weft_lock_free(ls[0]);
  weft_lock_free(ls[1]);
}

/* ---------------------------------------------------------------- */
/* Freeing                                                            */
/* ---------------------------------------------------------------- */

static int free_waiters_main(void *arg) {
  lstate *s = arg;
  warg w1 = {s, 1}, w2 = {s, 2};
  weft_lock_acquire(s->l);
  s->t[1] = weft_spawn(plain_waiter, &w1, NULL);
  s->t[2] = weft_spawn(plain_waiter, &w2, NULL);
  weft_yield();
  s->rc[0] = weft_lock_free(s->l); /* held by us, two waiters */
  weft_join(s->t[1]);
  weft_join(s->t[2]);
  return 0;
}

/* Freeing a lock that is held and waited for: the waiters wake with
 * -EIDRM and nothing hangs or leaks (the holder simply never releases
 * it; its exit hook is unlinked). */
Test(sync_lock, free_with_waiters, .timeout = 10) {
  lstate s = {.l = weft_lock_new()};
  cr_assert_eq(weft_run(free_waiters_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[1], -EIDRM);
  cr_assert_eq(s.rc[2], -EIDRM);
}

static int free_held_main(void *arg) {
  (void)arg;
  weft_lock *l = weft_lock_new();
  weft_lock_acquire(l);
  return weft_lock_free(l); /* then this task exits: no hook may run */
}

Test(sync_lock, free_held_then_exit, .timeout = 10) {
  cr_assert_eq(weft_run(free_held_main, NULL), 0);
}

static int many_locks_main(void *arg) {
  (void)arg;
  weft_lock *l[4];
  for (int i = 0; i < 4; i++) {
    l[i] = weft_lock_new();
    weft_lock_acquire(l[i]);
  }
  /* Released in another order than taken: the exit-hook list stays
   * consistent. */
  weft_lock_release(l[1]);
  weft_lock_release(l[3]);
  weft_lock_release(l[0]);
  weft_lock_release(l[2]);
  int rc = 0;
  for (int i = 0; i < 4; i++) {
    if (weft_lock_locked(l[i])) rc = -EPROTO;
    weft_lock_free(l[i]);
  }
  return rc;
}

Test(sync_lock, release_out_of_order, .timeout = 10) {
  cr_assert_eq(weft_run(many_locks_main, NULL), 0);
}
