/*
 * test_scope.c -- cancel scopes: deadlines, nesting, shields, reschedule,
 * explicit cancel, level-triggered cancellation, weft_join_until,
 * weft_check_cancel.
 */
#include "helpers.h"

/* ---------------------------------------------------------------- */
/* Deadlines                                                         */
/* ---------------------------------------------------------------- */

typedef struct {
  int open_rc, sleep_rc, again_rc, close_rc, after_rc;
  bool cancelled;
  int64_t elapsed;
} dl_state;

static int deadline_fires_main(void *arg) {
  dl_state *s = arg;
  weft_scope sc;
  int64_t t0 = weft_now();
  s->open_rc = weft_scope_open_after(&sc, WEFT_MS(20));
  s->sleep_rc = weft_sleep(WEFT_SEC(10));
  s->elapsed = weft_now() - t0;
  s->again_rc = weft_yield();
  s->cancelled = weft_scope_cancelled(&sc);
  s->close_rc = weft_scope_close(&sc);
  s->after_rc = weft_sleep(WEFT_MS(1)); /* outside the scope: fine */
  return 0;
}

/* A scope's deadline cancels the checkpoint inside it (-ECANCELED, after
 * >= 20 ms), every checkpoint after that too, weft_scope_cancelled is
 * true, close returns -ETIMEDOUT, and code after the scope is unaffected. */
Test(scope, deadline_fires, .timeout = 10) {
  dl_state s = {0};
  cr_assert_eq(weft_run(deadline_fires_main, &s), 0);
  cr_assert_eq(s.open_rc, 0);
  cr_assert_eq(s.sleep_rc, -ECANCELED);
  cr_assert_geq(s.elapsed, WEFT_MS(20));
  cr_assert_lt(s.elapsed, T_SLACK);
  cr_assert_eq(s.again_rc, -ECANCELED);
  cr_assert(s.cancelled);
  cr_assert_eq(s.close_rc, -ETIMEDOUT);
  cr_assert_eq(s.after_rc, 0);
}

static int deadline_not_reached_main(void *arg) {
  dl_state *s = arg;
  weft_scope sc;
  int64_t t0 = weft_now();
  s->open_rc = weft_scope_open(&sc, weft_now() + WEFT_SEC(1));
  s->sleep_rc = weft_sleep(WEFT_MS(10));
  s->elapsed = weft_now() - t0;
  s->cancelled = weft_scope_cancelled(&sc);
  s->close_rc = weft_scope_close(&sc);
  /* the timer must be gone: sleeping past the old deadline is fine */
  s->after_rc = weft_sleep(WEFT_MS(1));
  return 0;
}

/* A deadline not reached: the body runs normally and close returns 0. */
Test(scope, deadline_not_reached, .timeout = 10) {
  dl_state s = {0};
  cr_assert_eq(weft_run(deadline_not_reached_main, &s), 0);
  cr_assert_eq(s.open_rc, 0);
  cr_assert_eq(s.sleep_rc, 0);
  cr_assert_geq(s.elapsed, WEFT_MS(10));
  cr_assert_not(s.cancelled);
  cr_assert_eq(s.close_rc, 0);
  cr_assert_eq(s.after_rc, 0);
}

typedef struct {
  int sleep_rc, between_rc, inner_close, outer_close;
  bool inner_cancelled, outer_cancelled;
  int64_t elapsed;
} nest_state;

static int nested_main(void *arg) {
  nest_state *s = arg;
  weft_scope outer, inner;
  int64_t t0 = weft_now();
  cr_assert_eq(weft_scope_open_after(&outer, WEFT_MS(20)), 0);
  cr_assert_eq(weft_scope_open_after(&inner, WEFT_SEC(10)), 0);
  s->sleep_rc = weft_sleep(WEFT_SEC(10));
  s->elapsed = weft_now() - t0;
  s->inner_cancelled = weft_scope_cancelled(&inner);
  s->outer_cancelled = weft_scope_cancelled(&outer);
  s->inner_close = weft_scope_close(&inner);
  s->between_rc = weft_yield();
  s->outer_close = weft_scope_close(&outer);
  return 0;
}

/* Inner scope with a later deadline than the outer: the outer's deadline
 * cancels the inner body; the inner scope is not itself cancelled and
 * closes with 0; checkpoints between the closes still see -ECANCELED;
 * the outer closes with -ETIMEDOUT. */
Test(scope, inner_later_than_outer, .timeout = 10) {
  nest_state s = {0};
  cr_assert_eq(weft_run(nested_main, &s), 0);
  cr_assert_eq(s.sleep_rc, -ECANCELED);
  cr_assert_geq(s.elapsed, WEFT_MS(20));
  cr_assert_lt(s.elapsed, T_SLACK);
  cr_assert_not(s.inner_cancelled);
  cr_assert(s.outer_cancelled);
  cr_assert_eq(s.inner_close, 0);
  cr_assert_eq(s.between_rc, -ECANCELED);
  cr_assert_eq(s.outer_close, -ETIMEDOUT);
}

static int inner_earlier_main(void *arg) {
  nest_state *s = arg;
  weft_scope outer, inner;
  cr_assert_eq(weft_scope_open_after(&outer, WEFT_SEC(10)), 0);
  cr_assert_eq(weft_scope_open_after(&inner, WEFT_MS(10)), 0);
  s->sleep_rc = weft_sleep(WEFT_SEC(10));
  s->inner_close = weft_scope_close(&inner);
  s->between_rc = weft_sleep(WEFT_MS(1));
  s->outer_cancelled = weft_scope_cancelled(&outer);
  s->outer_close = weft_scope_close(&outer);
  return 0;
}

/* Inner deadline earlier: only the inner scope fires; after closing it
 * (-ETIMEDOUT) the outer body runs normally and closes with 0. */
Test(scope, inner_earlier_than_outer, .timeout = 10) {
  nest_state s = {0};
  cr_assert_eq(weft_run(inner_earlier_main, &s), 0);
  cr_assert_eq(s.sleep_rc, -ECANCELED);
  cr_assert_eq(s.inner_close, -ETIMEDOUT);
  cr_assert_eq(s.between_rc, 0);
  cr_assert_not(s.outer_cancelled);
  cr_assert_eq(s.outer_close, 0);
}

/* ---------------------------------------------------------------- */
/* Shields                                                           */
/* ---------------------------------------------------------------- */

typedef struct {
  int shield_sleep, shield_check, shield_close, after_rc, outer_close;
  int64_t shield_elapsed;
} shield_state;

static int shield_main(void *arg) {
  shield_state *s = arg;
  weft_scope outer, sh;
  cr_assert_eq(weft_scope_open_after(&outer, WEFT_MS(20)), 0);
  cr_assert_eq(weft_scope_open_shielded(&sh, WEFT_FOREVER), 0);
  int64_t t0 = weft_now();
  s->shield_sleep = weft_sleep(WEFT_MS(60)); /* outer fires meanwhile */
  s->shield_elapsed = weft_now() - t0;
  s->shield_check = weft_check_cancel();
  s->shield_close = weft_scope_close(&sh);
  s->after_rc = weft_yield();
  s->outer_close = weft_scope_close(&outer);
  return 0;
}

/* The outer deadline fires while the body is in a shielded scope: the
 * shielded sleep completes with 0 after its full duration; once the
 * shield is closed, the next checkpoint returns -ECANCELED and the outer
 * closes with -ETIMEDOUT. */
Test(scope, shield_blocks_outer_deadline, .timeout = 10) {
  shield_state s = {0};
  cr_assert_eq(weft_run(shield_main, &s), 0);
  cr_assert_eq(s.shield_sleep, 0);
  cr_assert_geq(s.shield_elapsed, WEFT_MS(60));
  cr_assert_eq(s.shield_check, 0);
  cr_assert_eq(s.shield_close, 0);
  cr_assert_eq(s.after_rc, -ECANCELED);
  cr_assert_eq(s.outer_close, -ETIMEDOUT);
}

static int shield_own_deadline_main(void *arg) {
  shield_state *s = arg;
  weft_scope sh;
  cr_assert_eq(weft_scope_open_shielded(&sh, weft_now() + WEFT_MS(10)), 0);
  s->shield_sleep = weft_sleep(WEFT_SEC(10));
  s->shield_close = weft_scope_close(&sh);
  return 0;
}

/* A shielded scope's own deadline still applies inside it. */
Test(scope, shield_own_deadline, .timeout = 10) {
  shield_state s = {0};
  cr_assert_eq(weft_run(shield_own_deadline_main, &s), 0);
  cr_assert_eq(s.shield_sleep, -ECANCELED);
  cr_assert_eq(s.shield_close, -ETIMEDOUT);
}

static int shielded_task(void *arg) {
  shield_state *s = arg;
  weft_scope sh;
  cr_assert_eq(weft_scope_open_shielded(&sh, WEFT_FOREVER), 0);
  int64_t t0 = weft_now();
  s->shield_sleep = weft_sleep(WEFT_MS(50));
  s->shield_elapsed = weft_now() - t0;
  s->shield_close = weft_scope_close(&sh);
  s->after_rc = weft_sleep(WEFT_SEC(10));
  return s->after_rc;
}

static int shield_task_cancel_main(void *arg) {
  shield_state *s = arg;
  weft_task *t = weft_spawn(shielded_task, s, NULL);
  weft_sleep(WEFT_MS(10));
  weft_cancel(t);
  s->outer_close = weft_join(t);
  return 0;
}

/* weft_cancel does not reach into a shielded scope: the task's shielded
 * sleep runs its full 50 ms; the cancellation takes effect right after
 * the shield is closed. */
Test(scope, shield_blocks_task_cancel, .timeout = 10) {
  shield_state s = {0};
  cr_assert_eq(weft_run(shield_task_cancel_main, &s), 0);
  cr_assert_eq(s.shield_sleep, 0);
  cr_assert_geq(s.shield_elapsed, WEFT_MS(50));
  cr_assert_eq(s.shield_close, 0);
  cr_assert_eq(s.after_rc, -ECANCELED);
  cr_assert_eq(s.outer_close, -ECANCELED);
}

static int shield_self_cancel_main(void *arg) {
  shield_state *s = arg;
  weft_scope sh;
  cr_assert_eq(weft_scope_open_shielded(&sh, WEFT_FOREVER), 0);
  cr_assert_eq(weft_scope_cancel(&sh), 0);
  s->shield_sleep = weft_sleep(WEFT_SEC(10));
  s->shield_close = weft_scope_close(&sh);
  return 0;
}

/* weft_scope_cancel on a shielded scope itself does cancel it. */
Test(scope, shield_cancel_itself, .timeout = 10) {
  shield_state s = {0};
  cr_assert_eq(weft_run(shield_self_cancel_main, &s), 0);
  cr_assert_eq(s.shield_sleep, -ECANCELED);
  cr_assert_eq(s.shield_close, 0);
}

/* ---------------------------------------------------------------- */
/* Reschedule                                                        */
/* ---------------------------------------------------------------- */

typedef struct {
  int resched_rc, sleep_rc, close_rc, late_resched, null_resched;
  int64_t elapsed, deadline_seen, deadline_want;
} rs_state;

static int resched_longer_main(void *arg) {
  rs_state *s = arg;
  weft_scope sc;
  int64_t t0 = weft_now();
  cr_assert_eq(weft_scope_open_after(&sc, WEFT_MS(20)), 0);
  s->deadline_want = t0 + WEFT_MS(80);
  s->resched_rc = weft_scope_reschedule(&sc, s->deadline_want);
  s->deadline_seen = weft_scope_deadline(&sc);
  s->sleep_rc = weft_sleep(WEFT_SEC(10));
  s->elapsed = weft_now() - t0;
  s->late_resched = weft_scope_reschedule(&sc, WEFT_FOREVER);
  s->null_resched = weft_scope_reschedule(NULL, WEFT_FOREVER);
  s->close_rc = weft_scope_close(&sc);
  return 0;
}

/* Moving a deadline later: it fires at the new time (>= 80 ms), not the
 * old one; weft_scope_deadline reports the new value; rescheduling after
 * the deadline fired returns -EALREADY (and close still -ETIMEDOUT). */
Test(scope, reschedule_longer, .timeout = 10) {
  rs_state s = {0};
  cr_assert_eq(weft_run(resched_longer_main, &s), 0);
  cr_assert_eq(s.resched_rc, 0);
  cr_assert_eq(s.deadline_seen, s.deadline_want);
  cr_assert_eq(s.sleep_rc, -ECANCELED);
  cr_assert_geq(s.elapsed, WEFT_MS(80));
  cr_assert_lt(s.elapsed, T_SLACK);
  cr_assert_eq(s.late_resched, -EALREADY);
  cr_assert_eq(s.null_resched, -EINVAL);
  cr_assert_eq(s.close_rc, -ETIMEDOUT);
}

static int resched_shorter_main(void *arg) {
  rs_state *s = arg;
  weft_scope sc;
  int64_t t0 = weft_now();
  cr_assert_eq(weft_scope_open_after(&sc, WEFT_SEC(10)), 0);
  s->resched_rc = weft_scope_reschedule(&sc, t0 + WEFT_MS(20));
  s->sleep_rc = weft_sleep(WEFT_SEC(10));
  s->elapsed = weft_now() - t0;
  s->close_rc = weft_scope_close(&sc);
  return 0;
}

/* Moving a deadline earlier: it fires at the new, earlier time. */
Test(scope, reschedule_shorter, .timeout = 10) {
  rs_state s = {0};
  cr_assert_eq(weft_run(resched_shorter_main, &s), 0);
  cr_assert_eq(s.resched_rc, 0);
  cr_assert_eq(s.sleep_rc, -ECANCELED);
  cr_assert_geq(s.elapsed, WEFT_MS(20));
  cr_assert_lt(s.elapsed, T_SLACK);
  cr_assert_eq(s.close_rc, -ETIMEDOUT);
}

static int resched_forever_main(void *arg) {
  rs_state *s = arg;
  weft_scope sc;
  cr_assert_eq(weft_scope_open_after(&sc, WEFT_MS(10)), 0);
  s->resched_rc = weft_scope_reschedule(&sc, WEFT_FOREVER);
  s->deadline_seen = weft_scope_deadline(&sc);
  s->sleep_rc = weft_sleep(WEFT_MS(40));
  s->close_rc = weft_scope_close(&sc);
  return 0;
}

/* Rescheduling to WEFT_FOREVER removes the deadline. */
Test(scope, reschedule_forever, .timeout = 10) {
  rs_state s = {0};
  cr_assert_eq(weft_run(resched_forever_main, &s), 0);
  cr_assert_eq(s.resched_rc, 0);
  cr_assert_eq(s.deadline_seen, WEFT_FOREVER);
  cr_assert_eq(s.sleep_rc, 0);
  cr_assert_eq(s.close_rc, 0);
}

static int resched_from_forever_main(void *arg) {
  rs_state *s = arg;
  weft_scope sc;
  int64_t t0 = weft_now();
  cr_assert_eq(weft_scope_open(&sc, WEFT_FOREVER), 0);
  s->resched_rc = weft_scope_reschedule(&sc, t0 + WEFT_MS(15));
  s->sleep_rc = weft_sleep(WEFT_SEC(10));
  s->elapsed = weft_now() - t0;
  s->close_rc = weft_scope_close(&sc);
  return 0;
}

/* Giving a deadline to a scope opened without one arms it. */
Test(scope, reschedule_from_forever, .timeout = 10) {
  rs_state s = {0};
  cr_assert_eq(weft_run(resched_from_forever_main, &s), 0);
  cr_assert_eq(s.resched_rc, 0);
  cr_assert_eq(s.sleep_rc, -ECANCELED);
  cr_assert_geq(s.elapsed, WEFT_MS(15));
  cr_assert_lt(s.elapsed, T_SLACK);
  cr_assert_eq(s.close_rc, -ETIMEDOUT);
}

static int past_deadline_main(void *arg) {
  rs_state *s = arg;
  weft_scope sc;
  int64_t t0 = weft_now();
  cr_assert_eq(weft_scope_open(&sc, t0 - WEFT_MS(5)), 0);
  s->sleep_rc = weft_sleep(WEFT_SEC(10));
  s->elapsed = weft_now() - t0;
  s->close_rc = weft_scope_close(&sc);
  return 0;
}

/* A scope opened with a deadline already in the past cancels its first
 * checkpoint at once; close returns -ETIMEDOUT. */
Test(scope, deadline_in_past, .timeout = 10) {
  rs_state s = {0};
  cr_assert_eq(weft_run(past_deadline_main, &s), 0);
  cr_assert_eq(s.sleep_rc, -ECANCELED);
  cr_assert_lt(s.elapsed, T_SLACK);
  cr_assert_eq(s.close_rc, -ETIMEDOUT);
}

/* ---------------------------------------------------------------- */
/* Level-triggered cancellation                                      */
/* ---------------------------------------------------------------- */

typedef struct {
  int r[5];
  int close_rc;
  int64_t elapsed;
} lvl_state;

static int level_main(void *arg) {
  lvl_state *s = arg;
  weft_scope sc;
  int64_t t0 = weft_now();
  cr_assert_eq(weft_scope_open(&sc, WEFT_FOREVER), 0);
  cr_assert_eq(weft_scope_cancel(&sc), 0);
  s->r[0] = weft_yield();
  s->r[1] = weft_sleep(WEFT_SEC(10)); /* ignored the first: again */
  s->r[2] = weft_check_cancel();
  s->r[3] = weft_sleep_until(weft_now() + WEFT_SEC(10));
  s->r[4] = weft_yield();
  s->elapsed = weft_now() - t0;
  s->close_rc = weft_scope_close(&sc);
  return 0;
}

/* Once a scope is cancelled, every checkpoint inside returns -ECANCELED
 * (a swallowed cancellation comes back at the next one), none of them
 * blocks, and the cancel-caught scope closes with 0. */
Test(scope, level_triggered, .timeout = 10) {
  lvl_state s = {0};
  cr_assert_eq(weft_run(level_main, &s), 0);
  for (int i = 0; i < 5; i++)
    cr_assert_eq(s.r[i], -ECANCELED, "checkpoint %d returned %d", i, s.r[i]);
  cr_assert_lt(s.elapsed, T_SLACK);
  cr_assert_eq(s.close_rc, 0);
}

/* ---------------------------------------------------------------- */
/* weft_scope_cancel                                                 */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_scope *target;
  int cancel_rc, null_rc, sleep_rc, close_rc, after_rc;
  bool before, after;
  int64_t elapsed, deadline_seen;
} sc_state;

static int remote_canceller(void *arg) {
  sc_state *s = arg;
  weft_sleep(WEFT_MS(20));
  s->cancel_rc = weft_scope_cancel(s->target);
  return 0;
}

static int scope_cancel_main(void *arg) {
  sc_state *s = arg;
  weft_scope sc;
  int64_t t0 = weft_now();
  cr_assert_eq(weft_scope_open_after(&sc, WEFT_SEC(10)), 0);
  s->deadline_seen = weft_scope_deadline(&sc);
  s->target = &sc;
  s->before = weft_scope_cancelled(&sc);
  weft_task *t = weft_spawn(remote_canceller, s, NULL);
  s->sleep_rc = weft_sleep(WEFT_SEC(10));
  s->elapsed = weft_now() - t0;
  s->after = weft_scope_cancelled(&sc);
  s->close_rc = weft_scope_close(&sc);
  s->after_rc = weft_join(t); /* outside the scope again */
  s->null_rc = weft_scope_cancel(NULL);
  return 0;
}

/* weft_scope_cancel from another task cancels the scope's checkpoints;
 * the scope catches its own cancellation: close returns 0 (not
 * -ETIMEDOUT, though it had a deadline). */
Test(scope, cancel_from_other_task, .timeout = 10) {
  sc_state s = {0};
  cr_assert_eq(weft_run(scope_cancel_main, &s), 0);
  cr_assert_not(s.before);
  cr_assert_eq(s.cancel_rc, 0);
  cr_assert_eq(s.sleep_rc, -ECANCELED);
  cr_assert_geq(s.elapsed, WEFT_MS(20));
  cr_assert_lt(s.elapsed, T_SLACK);
  cr_assert(s.after);
  cr_assert_eq(s.close_rc, 0);
  cr_assert_eq(s.after_rc, 0);
  cr_assert_eq(s.null_rc, -EINVAL);
}

typedef struct {
  int r_inner, inner_close, between, outer_close;
  bool inner_c, outer_c;
} oc_state;

static int outer_cancel_main(void *arg) {
  oc_state *s = arg;
  weft_scope outer, inner;
  cr_assert_eq(weft_scope_open(&outer, WEFT_FOREVER), 0);
  cr_assert_eq(weft_scope_open(&inner, WEFT_FOREVER), 0);
  weft_scope_cancel(&outer);
  s->r_inner = weft_sleep(WEFT_SEC(10));
  s->inner_c = weft_scope_cancelled(&inner);
  s->outer_c = weft_scope_cancelled(&outer);
  s->inner_close = weft_scope_close(&inner);
  s->between = weft_yield();
  s->outer_close = weft_scope_close(&outer);
  return 0;
}

/* Cancelling an outer scope reaches the inner one's checkpoints, but only
 * the outer reports weft_scope_cancelled; both close with 0. */
Test(scope, cancel_outer_reaches_inner, .timeout = 10) {
  oc_state s = {0};
  cr_assert_eq(weft_run(outer_cancel_main, &s), 0);
  cr_assert_eq(s.r_inner, -ECANCELED);
  cr_assert_not(s.inner_c);
  cr_assert(s.outer_c);
  cr_assert_eq(s.inner_close, 0);
  cr_assert_eq(s.between, -ECANCELED);
  cr_assert_eq(s.outer_close, 0);
}

/* ---------------------------------------------------------------- */
/* Closing a scope that is not the innermost                         */
/* ---------------------------------------------------------------- */

typedef struct {
  int bad, inner_rc, outer_rc, outer_check, after;
} order_state;

static int close_order_main(void *arg) {
  order_state *s = arg;
  weft_scope a, b;
  cr_assert_eq(weft_scope_open(&a, WEFT_FOREVER), 0);
  cr_assert_eq(weft_scope_open(&b, WEFT_FOREVER), 0);
  s->bad = weft_scope_close(&a);
  /* a is still open and still in effect */
  weft_scope_cancel(&a);
  s->outer_check = weft_check_cancel();
  s->inner_rc = weft_scope_close(&b);
  s->outer_rc = weft_scope_close(&a);
  s->after = weft_check_cancel();
  return 0;
}

/* Closing a scope that is not the innermost returns -EINVAL and closes
 * nothing: the outer scope still works and both close properly after. */
Test(scope, close_not_innermost, .timeout = 10) {
  order_state s = {0};
  cr_assert_eq(weft_run(close_order_main, &s), 0);
  cr_assert_eq(s.bad, -EINVAL);
  cr_assert_eq(s.outer_check, -ECANCELED);
  cr_assert_eq(s.inner_rc, 0);
  cr_assert_eq(s.outer_rc, 0);
  cr_assert_eq(s.after, 0);
}

typedef struct {
  weft_scope *other;
  int rc;
} foreign_state;

static int foreign_closer(void *arg) {
  foreign_state *s = arg;
  s->rc = weft_scope_close(s->other);
  return 0;
}

static int foreign_close_main(void *arg) {
  foreign_state *s = arg;
  weft_scope sc;
  cr_assert_eq(weft_scope_open(&sc, WEFT_FOREVER), 0);
  s->other = &sc;
  weft_task *t = weft_spawn(foreign_closer, s, NULL);
  weft_join(t);
  cr_expect_eq(weft_scope_close(&sc), 0);
  return 0;
}

/* A task cannot close another task's scope: -EINVAL. */
Test(scope, close_other_tasks_scope, .timeout = 10) {
  foreign_state s = {0};
  cr_assert_eq(weft_run(foreign_close_main, &s), 0);
  cr_assert_eq(s.rc, -EINVAL);
}

/* ---------------------------------------------------------------- */
/* weft_scope_deadline / weft_scope_cancelled / open variants         */
/* ---------------------------------------------------------------- */

typedef struct {
  int64_t before, after, d_after, d_abs, d_forever, want_abs;
  bool c0, c1;
  int open_null, open_after_null, open_sh_null;
} dq_state;

static int deadline_query_main(void *arg) {
  dq_state *s = arg;
  weft_scope a, b, c;
  s->want_abs = weft_now() + WEFT_SEC(5);
  cr_assert_eq(weft_scope_open(&a, s->want_abs), 0);
  s->d_abs = weft_scope_deadline(&a);
  cr_assert_eq(weft_scope_open(&b, WEFT_FOREVER), 0);
  s->d_forever = weft_scope_deadline(&b);
  s->before = weft_now();
  cr_assert_eq(weft_scope_open_after(&c, WEFT_SEC(3)), 0);
  s->after = weft_now();
  s->d_after = weft_scope_deadline(&c);
  s->c0 = weft_scope_cancelled(&c);
  weft_scope_cancel(&c);
  s->c1 = weft_scope_cancelled(&c);
  cr_assert_eq(weft_scope_close(&c), 0);
  cr_assert_eq(weft_scope_close(&b), 0);
  cr_assert_eq(weft_scope_close(&a), 0);
  s->open_null = weft_scope_open(NULL, WEFT_FOREVER);
  s->open_after_null = weft_scope_open_after(NULL, 1);
  s->open_sh_null = weft_scope_open_shielded(NULL, WEFT_FOREVER);
  return 0;
}

/* weft_scope_deadline returns the absolute deadline given (or now +
 * duration for open_after, WEFT_FOREVER for none); weft_scope_cancelled
 * flips after weft_scope_cancel; opening a NULL scope is -EINVAL. */
Test(scope, deadline_and_cancelled_queries, .timeout = 10) {
  dq_state s = {0};
  cr_assert_eq(weft_run(deadline_query_main, &s), 0);
  cr_assert_eq(s.d_abs, s.want_abs);
  cr_assert_eq(s.d_forever, WEFT_FOREVER);
  cr_assert_geq(s.d_after, s.before + WEFT_SEC(3));
  cr_assert_leq(s.d_after, s.after + WEFT_SEC(3));
  cr_assert_not(s.c0);
  cr_assert(s.c1);
  cr_assert_eq(s.open_null, -EINVAL);
  cr_assert_eq(s.open_after_null, -EINVAL);
  cr_assert_eq(s.open_sh_null, -EINVAL);
}

/* ---------------------------------------------------------------- */
/* weft_join_until                                                   */
/* ---------------------------------------------------------------- */

typedef struct {
  int child_rc;
  int ju_rc;
  int64_t elapsed;
  int fast_rc;
  int caller_rc, caller_join;
  int child2_rc;
} ju_state;

static int slow_child(void *arg) {
  int *rc = arg;
  *rc = weft_sleep(WEFT_SEC(10));
  return *rc;
}

static int fast_child(void *arg) {
  (void)arg;
  weft_sleep(WEFT_MS(5));
  return -EBADE;
}

static int join_until_caller(void *arg) {
  ju_state *s = arg;
  weft_task *c = weft_spawn(slow_child, &s->child2_rc, NULL);
  s->caller_rc = weft_join_until(c, WEFT_FOREVER);
  return s->caller_rc;
}

static int join_until_main(void *arg) {
  ju_state *s = arg;
  weft_task *t = weft_spawn(slow_child, &s->child_rc, NULL);
  int64_t t0 = weft_now();
  s->ju_rc = weft_join_until(t, t0 + WEFT_MS(20));
  s->elapsed = weft_now() - t0;

  weft_task *f = weft_spawn(fast_child, NULL, NULL);
  s->fast_rc = weft_join_until(f, weft_now() + WEFT_SEC(5));

  weft_task *p = weft_spawn(join_until_caller, s, NULL);
  weft_sleep(WEFT_MS(10));
  weft_cancel(p);
  s->caller_join = weft_join(p);
  return 0;
}

/* weft_join_until: a target not done by the deadline is cancelled (it
 * saw -ECANCELED) and waited for, and the call returns -ETIMEDOUT after
 * >= 20 ms; a target done in time gives its own code; a cancelled caller
 * cancels the target too and gets -ECANCELED. */
Test(scope, join_until, .timeout = 10) {
  ju_state s = {0};
  cr_assert_eq(weft_run(join_until_main, &s), 0);
  cr_assert_eq(s.ju_rc, -ETIMEDOUT);
  cr_assert_eq(s.child_rc, -ECANCELED);
  cr_assert_geq(s.elapsed, WEFT_MS(20));
  cr_assert_lt(s.elapsed, T_SLACK);
  cr_assert_eq(s.fast_rc, -EBADE);
  cr_assert_eq(s.caller_rc, -ECANCELED);
  cr_assert_eq(s.child2_rc, -ECANCELED);
  cr_assert_eq(s.caller_join, -ECANCELED);
}

/* ---------------------------------------------------------------- */
/* weft_check_cancel                                                 */
/* ---------------------------------------------------------------- */

typedef struct {
  int flag;
  int c0, c1, c2, c3;
  int flag_at_check;
} cc_state;

static int set_flag(void *arg) {
  cc_state *s = arg;
  s->flag = 1;
  return 0;
}

static int check_cancel_main(void *arg) {
  cc_state *s = arg;
  weft_task *t = weft_spawn(set_flag, s, NULL);
  s->c0 = weft_check_cancel();
  weft_scope sc;
  weft_scope_open(&sc, WEFT_FOREVER);
  s->c1 = weft_check_cancel();
  weft_scope_cancel(&sc);
  s->c2 = weft_check_cancel();
  s->flag_at_check = s->flag; /* check_cancel never suspends */
  weft_scope_close(&sc);
  s->c3 = weft_check_cancel();
  weft_join(t);
  return 0;
}

/* weft_check_cancel reports the cancellation state without suspending:
 * 0 normally, -ECANCELED in a cancelled scope, 0 again after leaving it. */
Test(scope, check_cancel, .timeout = 10) {
  cc_state s = {0};
  cr_assert_eq(weft_run(check_cancel_main, &s), 0);
  cr_assert_eq(s.c0, 0);
  cr_assert_eq(s.c1, 0);
  cr_assert_eq(s.c2, -ECANCELED);
  cr_assert_eq(s.flag_at_check, 0);
  cr_assert_eq(s.c3, 0);
  cr_assert_eq(s.flag, 1);
}

/* ---------------------------------------------------------------- */
/* Deadline expiring while the task does not yield                   */
/* ---------------------------------------------------------------- */

typedef struct {
  int r1, r2, close_rc;
} busy_state;

static int busy_main(void *arg) {
  busy_state *s = arg;
  weft_scope sc;
  cr_assert_eq(weft_scope_open_after(&sc, WEFT_MS(10)), 0);
  busy_wait(WEFT_MS(30)); /* the deadline passes without a checkpoint */
  s->r1 = weft_yield();
  s->r2 = weft_yield();
  s->close_rc = weft_scope_close(&sc);
  return 0;
}

/* A deadline that passes while the task computes is seen at its next
 * checkpoints (at the latest the second yield) and close gives
 * -ETIMEDOUT. */
Test(scope, deadline_passes_while_busy, .timeout = 10) {
  busy_state s = {0};
  cr_assert_eq(weft_run(busy_main, &s), 0);
  cr_assert_eq(s.r2, -ECANCELED, "r1=%d r2=%d", s.r1, s.r2);
  cr_assert_eq(s.close_rc, -ETIMEDOUT);
}

/* ---------------------------------------------------------------- */
/* Scopes in several tasks at once                                   */
/* ---------------------------------------------------------------- */

typedef struct {
  int64_t dur;
  int sleep_rc, close_rc;
  int64_t elapsed;
} multi_arg;

static int scoped_sleeper(void *arg) {
  multi_arg *a = arg;
  weft_scope sc;
  int64_t t0 = weft_now();
  weft_scope_open_after(&sc, a->dur);
  a->sleep_rc = weft_sleep(WEFT_MS(60));
  a->elapsed = weft_now() - t0;
  a->close_rc = weft_scope_close(&sc);
  return 0;
}

static int multi_main(void *arg) {
  multi_arg *a = arg;
  weft_task *t[3];
  for (int i = 0; i < 3; i++)
    t[i] = weft_spawn(scoped_sleeper, &a[i], NULL);
  for (int i = 0; i < 3; i++)
    weft_join(t[i]);
  return 0;
}

/* Each task's scope deadline applies to that task only. */
Test(scope, per_task_deadlines, .timeout = 10) {
  multi_arg a[3] = {{WEFT_MS(10), 0, 0, 0},
                    {WEFT_SEC(5), 0, 0, 0},
                    {WEFT_MS(30), 0, 0, 0}};
  cr_assert_eq(weft_run(multi_main, a), 0);
  cr_assert_eq(a[0].sleep_rc, -ECANCELED);
  cr_assert_eq(a[0].close_rc, -ETIMEDOUT);
  cr_assert_geq(a[0].elapsed, WEFT_MS(10));
  cr_assert_lt(a[0].elapsed, WEFT_MS(60) + T_SLACK);
  cr_assert_eq(a[1].sleep_rc, 0);
  cr_assert_eq(a[1].close_rc, 0);
  cr_assert_geq(a[1].elapsed, WEFT_MS(60));
  cr_assert_eq(a[2].sleep_rc, -ECANCELED);
  cr_assert_eq(a[2].close_rc, -ETIMEDOUT);
  cr_assert_geq(a[2].elapsed, WEFT_MS(30));
}
