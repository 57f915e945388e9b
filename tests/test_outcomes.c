/*
 * test_outcomes.c -- cancellation outcomes that must not lose a result or
 * report a failure that did not happen (issue 9, items 1-5), each the
 * scenario of an asyncio or Trio test:
 *   join_until (wait_for) keeps the task's own outcome (gh-86296)
 *   nested timeouts: only the outermost reports (test_nested_timeouts)
 *   a deadline that interrupted nothing is no timeout (cancelled_caught)
 *   no spawn into a failing group (test_taskgroup_no_create_task_after_failure)
 *   gather with a child cancelled from outside (test_one_cancellation)
 */
#include "helpers.h"

/* ---- 1. weft_join_until -------------------------------------------------- */

typedef struct {
  int mode;     /* what the child does once cancelled */
  int sleep_rc; /* what its sleep returned */
  int join_rc;
  int close_rc; /* an outer scope's close, where there is one */
} ju;

static int ju_child(void *arg) {
  ju *s = arg;
  s->sleep_rc = weft_sleep(WEFT_SEC(10));
  switch (s->mode) {
    case 0: return s->sleep_rc;   /* ends cancelled */
    case 1: return 42;            /* caught it and returned a value */
    case 2: return 0;             /* caught it and succeeded */
    default: {                    /* its cleanup failed */
      weft_scope sh; /* the cleanup needs a checkpoint: shield it */
      weft_scope_open_shielded(&sh, WEFT_FOREVER);
      weft_sleep(WEFT_MS(1));
      weft_scope_close(&sh);
      return weft_fail(-EIO, "cleanup failed");
    }
  }
}

static int ju_main(void *arg) {
  ju *s = arg;
  weft_task *t = spawn_named(ju_child, s, "child");
  s->join_rc = weft_join_until(t, weft_now() + WEFT_MS(10));
  return 0;
}

static void ju_run(int mode, int want) {
  ju s = {.mode = mode};
  cr_assert_eq(weft_run(ju_main, &s), 0);
  cr_assert_eq(s.sleep_rc, -ECANCELED, "mode %d", mode);
  cr_assert_eq(s.join_rc, want, "mode %d: join_until returned %d, want %d",
               mode, s.join_rc, want);
}

Test(outcomes, join_until_task_ends_cancelled, .timeout = 10) {
  ju_run(0, -ETIMEDOUT);
}
Test(outcomes, join_until_keeps_value, .timeout = 10) { ju_run(1, 42); }
Test(outcomes, join_until_keeps_success, .timeout = 10) { ju_run(2, 0); }
Test(outcomes, join_until_keeps_cleanup_failure, .timeout = 10) {
  ju_run(3, -EIO);
}

/* The caller's own outer scope fires at the same time as join_until's
 * deadline: the outer one reports, join_until returns -ECANCELED. */
static int ju_outer_main(void *arg) {
  ju *s = arg;
  int64_t d = weft_now() + WEFT_MS(10);
  weft_scope outer;
  weft_scope_open(&outer, d);
  weft_task *t = spawn_named(ju_child, s, "child");
  s->join_rc = weft_join_until(t, d);
  s->close_rc = weft_scope_close(&outer);
  return 0;
}

Test(outcomes, join_until_outer_deadline_reports, .timeout = 10) {
  ju s = {.mode = 0};
  cr_assert_eq(weft_run(ju_outer_main, &s), 0);
  cr_assert_eq(s.join_rc, -ECANCELED);
  cr_assert_eq(s.close_rc, -ETIMEDOUT);
}

/* The caller is cancelled from outside: -ECANCELED, and a child that
 * caught it keeps its value. */
static int ju_victim(void *arg) {
  ju *s = arg;
  weft_task *t = spawn_named(ju_child, s, "child");
  s->join_rc = weft_join_until(t, weft_now() + WEFT_SEC(10));
  return s->join_rc;
}
static int ju_cancel_main(void *arg) {
  weft_task *v = spawn_named(ju_victim, arg, "victim");
  weft_sleep(WEFT_MS(5));
  weft_cancel(v);
  weft_join(v);
  return 0;
}

Test(outcomes, join_until_caller_cancelled, .timeout = 10) {
  ju s = {.mode = 0};
  cr_assert_eq(weft_run(ju_cancel_main, &s), 0);
  cr_assert_eq(s.join_rc, -ECANCELED);
  s = (ju){.mode = 1};
  cr_assert_eq(weft_run(ju_cancel_main, &s), 0);
  cr_assert_eq(s.join_rc, 42);
}

/* ---- 2. nested timeouts --------------------------------------------------- */

typedef struct {
  int sleep_rc, inner, outer, after;
} nest;

static int nest_main(void *arg) {
  nest *s = arg;
  int64_t d = weft_now() + WEFT_MS(10);
  weft_scope outer, inner;
  weft_scope_open(&outer, d);
  weft_scope_open(&inner, d);
  s->sleep_rc = weft_sleep(WEFT_SEC(10));
  s->inner = weft_scope_close(&inner);
  s->after = weft_check_cancel();
  s->outer = weft_scope_close(&outer);
  return 0;
}

/* Both deadlines fire in the same loop turn: only the outer scope reports
 * the timeout (the inner one's cancellation is not caught while the outer
 * one's is in effect). */
Test(outcomes, nested_same_deadline, .timeout = 10) {
  nest s = {0};
  cr_assert_eq(weft_run(nest_main, &s), 0);
  cr_assert_eq(s.sleep_rc, -ECANCELED);
  cr_assert_eq(s.inner, 0);
  cr_assert_eq(s.after, -ECANCELED);
  cr_assert_eq(s.outer, -ETIMEDOUT);
}

/* The inner deadline fires first and the outer one before the task runs
 * again: the outer reports it. */
static int nest2_main(void *arg) {
  nest *s = arg;
  int64_t d = weft_now() + WEFT_MS(10);
  weft_scope outer, inner;
  weft_scope_open(&outer, d + 1);
  weft_scope_open(&inner, d);
  s->sleep_rc = weft_sleep_until(d + WEFT_MS(1)); /* both due by then */
  s->inner = weft_scope_close(&inner);
  s->outer = weft_scope_close(&outer);
  return 0;
}

Test(outcomes, nested_outer_fires_before_task_runs, .timeout = 10) {
  nest s = {0};
  cr_assert_eq(weft_run(nest2_main, &s), 0);
  cr_assert_eq(s.sleep_rc, -ECANCELED);
  cr_assert_eq(s.inner, 0);
  cr_assert_eq(s.outer, -ETIMEDOUT);
}

/* A shielded inner scope reports its own timeout even while an outer
 * cancellation is in effect (nothing from outside reaches inside it). */
static int nest_shield_main(void *arg) {
  nest *s = arg;
  int64_t d = weft_now() + WEFT_MS(10);
  weft_scope outer, inner;
  weft_scope_open(&outer, d);
  weft_scope_open_shielded(&inner, d);
  s->sleep_rc = weft_sleep(WEFT_SEC(10));
  s->inner = weft_scope_close(&inner);
  s->after = weft_check_cancel();
  s->outer = weft_scope_close(&outer);
  return 0;
}

Test(outcomes, nested_shielded_reports_own, .timeout = 10) {
  nest s = {0};
  cr_assert_eq(weft_run(nest_shield_main, &s), 0);
  cr_assert_eq(s.sleep_rc, -ECANCELED);
  cr_assert_eq(s.inner, -ETIMEDOUT);
  cr_assert_eq(s.after, -ECANCELED);
  /* The outer deadline fired, but what it cancelled after the shield was
   * closed is only weft_check_cancel: a checkpoint, so a delivery. */
  cr_assert_eq(s.outer, -ETIMEDOUT);
}

/* In a group: a child's own timeout fires, then a sibling fails before the
 * child runs again. The child ends cancelled; the only error is the
 * sibling's. */
typedef struct {
  int64_t d;
  int child_close, child_rc;
} gt;

static int gt_failer(void *arg) {
  gt *s = arg;
  weft_sleep_until(s->d); /* armed first: wakes first in the same turn */
  return weft_fail(-EIO, "sibling failed");
}
static int gt_timed(void *arg) {
  gt *s = arg;
  weft_scope sc;
  weft_scope_open(&sc, s->d);
  int rc = weft_sleep(WEFT_SEC(10));
  s->child_close = weft_scope_close(&sc);
  s->child_rc = s->child_close ? s->child_close : rc;
  return s->child_rc;
}
static int gt_main(void *arg) {
  gt *s = arg;
  s->d = weft_now() + WEFT_MS(10);
  weft_group *g = weft_group_open();
  gspawn_named(g, gt_failer, s, "failer");
  gspawn_named(g, gt_timed, s, "timed");
  weft_errors *e = NULL;
  int rc = weft_group_close(g, &e);
  cr_assert_eq(rc, WEFT_EGROUP);
  cr_assert_eq(weft_errors_count(e), 1, "errors: %zu", weft_errors_count(e));
  cr_assert_eq(weft_errors_match(e, -EIO), 1);
  cr_assert_eq(weft_errors_match(e, -ETIMEDOUT), 0);
  weft_errors_free(e);
  return 0;
}

Test(outcomes, group_child_timeout_then_sibling_failure, .timeout = 10) {
  gt s = {0};
  cr_assert_eq(weft_run(gt_main, &s), 0);
  cr_assert_eq(s.child_close, 0);
  cr_assert_eq(s.child_rc, -ECANCELED);
}

/* ---- 3. a deadline that interrupted nothing --------------------------------- */

typedef struct {
  int sleep_rc, shield_close, outer_close;
  bool expired_before, expired_after, expired_closed;
} exp_state;

static int expired_main(void *arg) {
  exp_state *s = arg;
  weft_scope outer, sh;
  weft_scope_open_after(&outer, WEFT_MS(10));
  s->expired_before = weft_scope_expired(&outer);
  weft_scope_open_shielded(&sh, WEFT_FOREVER);
  s->sleep_rc = weft_sleep(WEFT_MS(30)); /* the deadline fires meanwhile */
  s->shield_close = weft_scope_close(&sh);
  s->expired_after = weft_scope_expired(&outer);
  s->outer_close = weft_scope_close(&outer); /* no checkpoint in between */
  s->expired_closed = weft_scope_expired(&outer);
  return 0;
}

Test(outcomes, fired_deadline_interrupting_nothing, .timeout = 10) {
  exp_state s = {0};
  cr_assert_eq(weft_run(expired_main, &s), 0);
  cr_assert_eq(s.sleep_rc, 0);
  cr_assert_eq(s.shield_close, 0);
  cr_assert_eq(s.outer_close, 0, "close returned %d", s.outer_close);
  cr_assert(!s.expired_before);
  cr_assert(s.expired_after);
  cr_assert(s.expired_closed);
}

/* The deadline passes during a busy stretch with no checkpoint: expired
 * says so before any timer could fire; close returns 0. */
static int expired_busy_main(void *arg) {
  exp_state *s = arg;
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(2));
  busy_wait(WEFT_MS(5));
  s->expired_after = weft_scope_expired(&sc);
  s->outer_close = weft_scope_close(&sc);
  return 0;
}

Test(outcomes, expired_without_checkpoint, .timeout = 10) {
  exp_state s = {0};
  cr_assert_eq(weft_run(expired_busy_main, &s), 0);
  cr_assert(s.expired_after);
  cr_assert_eq(s.outer_close, 0);
  cr_assert(!weft_scope_expired(NULL));
}

/* A scope with no deadline never expires; one cancelled explicitly is not
 * expired either. */
static int expired_cancel_main(void *arg) {
  exp_state *s = arg;
  weft_scope sc;
  weft_scope_open(&sc, WEFT_FOREVER);
  weft_scope_cancel(&sc);
  s->sleep_rc = weft_yield();
  s->expired_after = weft_scope_expired(&sc);
  s->outer_close = weft_scope_close(&sc);
  return 0;
}

Test(outcomes, expired_not_by_cancel, .timeout = 10) {
  exp_state s = {.expired_after = true};
  cr_assert_eq(weft_run(expired_cancel_main, &s), 0);
  cr_assert_eq(s.sleep_rc, -ECANCELED);
  cr_assert(!s.expired_after);
  cr_assert_eq(s.outer_close, 0);
}

/* ---- 4. no spawn into a failing group ------------------------------------------ */

typedef struct {
  int ran_late;
  int spawn_errno, start_rc, cancelled_spawn_ok;
} gs;

static int gs_fail(void *arg) {
  (void)arg;
  return weft_fail(-EIO, "boom");
}
static int gs_late(void *arg) {
  ((gs *)arg)->ran_late++;
  return 0;
}

static int gs_main(void *arg) {
  gs *s = arg;
  weft_group *g = weft_group_open();
  gspawn_named(g, gs_fail, s, "fails");
  weft_sleep(WEFT_MS(1)); /* -ECANCELED: the group failed */
  errno = 0;
  weft_task *t = weft_group_spawn(g, gs_late, s, NULL);
  cr_assert_null(t);
  s->spawn_errno = errno;
  s->start_rc = weft_group_start(g, gs_late, s, NULL, NULL);
  cr_assert_eq(weft_group_close(g, NULL), WEFT_EGROUP);
  return 0;
}

Test(outcomes, group_refuses_spawn_after_failure, .timeout = 10) {
  gs s = {0};
  cr_assert_eq(weft_run(gs_main, &s), 0);
  cr_assert_eq(s.spawn_errno, ESHUTDOWN);
  cr_assert_eq(s.start_rc, -ESHUTDOWN);
  cr_assert_eq(s.ran_late, 0);
}

/* The body's own failure (weft_group_fail) shuts the group down too. */
static int gs_body_main(void *arg) {
  gs *s = arg;
  weft_group *g = weft_group_open();
  weft_group_fail(g, -EPROTO, "body failed");
  errno = 0;
  cr_assert_null(weft_group_spawn(g, gs_late, s, NULL));
  s->spawn_errno = errno;
  cr_assert_eq(weft_group_close(g, NULL), WEFT_EGROUP);
  return 0;
}

Test(outcomes, group_refuses_spawn_after_body_failure, .timeout = 10) {
  gs s = {0};
  cr_assert_eq(weft_run(gs_body_main, &s), 0);
  cr_assert_eq(s.spawn_errno, ESHUTDOWN);
  cr_assert_eq(s.ran_late, 0);
}

/* After weft_group_cancel with no failure, spawning is still allowed. */
static int gs_cancel_main(void *arg) {
  gs *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_eq(weft_group_cancel(g), 0);
  s->cancelled_spawn_ok = weft_group_spawn(g, gs_late, s, NULL) != NULL;
  cr_assert_eq(weft_group_close(g, NULL), 0);
  return 0;
}

Test(outcomes, group_cancel_still_spawns, .timeout = 10) {
  gs s = {0};
  cr_assert_eq(weft_run(gs_cancel_main, &s), 0);
  cr_assert(s.cancelled_spawn_ok);
}

/* ---- 5. gather with a child cancelled from outside ------------------------------- */

typedef struct {
  weft_task *victim;
  int results[3];
  int rc;
  int finished[3];
  unsigned flags;
  bool fail_late;
} ga;

typedef struct {
  ga *s;
  int i;
} ga_arg;

static int ga_child(void *arg) {
  ga_arg *a = arg;
  ga *s = a->s;
  if (a->i == 1) s->victim = weft_current();
  if (a->i == 2 && s->fail_late) {
    weft_sleep(WEFT_MS(15)); /* after the outside cancellation */
    return weft_fail(-EIO, "later");
  }
  /* With a failure coming, child 0 only ends by being cancelled, however
   * late the timers fire on a loaded machine. */
  int64_t d = a->i == 1 ? WEFT_MS(1000) : s->fail_late ? WEFT_SEC(10) : WEFT_MS(30);
  int rc = weft_sleep(d);
  s->finished[a->i] = 1;
  return rc;
}
static int ga_gatherer(void *arg) {
  ga *s = arg;
  ga_arg a[3] = {{s, 0}, {s, 1}, {s, 2}};
  weft_call calls[3];
  for (int i = 0; i < 3; i++) calls[i] = (weft_call){ga_child, &a[i]};
  s->rc = weft_gather(calls, 3, s->results, s->flags);
  return 0;
}
static int ga_main(void *arg) {
  ga *s = arg;
  weft_task *g = spawn_named(ga_gatherer, s, "gatherer");
  weft_sleep(WEFT_MS(5));
  cr_assert_not_null(s->victim);
  cr_assert_eq(weft_cancel(s->victim), 0);
  cr_assert_eq(weft_join(g), 0);
  return 0;
}

/* Default mode: -ECANCELED; the others are not cancelled by it and keep
 * their results. */
Test(outcomes, gather_child_cancelled_outside, .timeout = 10) {
  ga s = {0};
  cr_assert_eq(weft_run(ga_main, &s), 0);
  cr_assert_eq(s.rc, -ECANCELED, "gather returned %d", s.rc);
  cr_assert_eq(s.results[0], 0);
  cr_assert_eq(s.results[1], -ECANCELED);
  cr_assert_eq(s.results[2], 0);
  cr_assert_eq(s.finished[0], 1);
  cr_assert_eq(s.finished[2], 1);
}

/* WEFT_GATHER_ALL collects everything as before: 0. */
Test(outcomes, gather_all_child_cancelled_outside, .timeout = 10) {
  ga s = {.flags = WEFT_GATHER_ALL};
  cr_assert_eq(weft_run(ga_main, &s), 0);
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(s.results[1], -ECANCELED);
  cr_assert_eq(s.results[0], 0);
}

/* The outside cancellation came first, so gather reports it; a later
 * failure still cancels the rest, as every failure does. */
Test(outcomes, gather_cancel_before_failure, .timeout = 10) {
  ga s = {.fail_late = true};
  cr_assert_eq(weft_run(ga_main, &s), 0);
  cr_assert_eq(s.rc, -ECANCELED, "gather returned %d", s.rc);
  cr_assert_eq(s.results[1], -ECANCELED);
  cr_assert_eq(s.results[2], -EIO);
  cr_assert_eq(s.results[0], -ECANCELED);
  cr_assert_eq(s.finished[0], 1); /* its sleep returned, cancelled */
}

/* ---- 9. queue join counts only what was put so far ---------------------------- */

typedef struct {
  weft_queue *q;
  int join_lazy, join_eager, consumed;
} qj;

static int qj_producer(void *arg) {
  qj *s = arg;
  for (int i = 0; i < 3; i++) weft_queue_put(s->q, &i);
  return 0;
}
static int qj_consumer(void *arg) {
  qj *s = arg;
  int v;
  while (weft_queue_get(s->q, &v) == 0) {
    s->consumed++;
    weft_queue_task_done(s->q);
  }
  return 0;
}
static int qj_main(void *arg) {
  qj *s = arg;
  s->q = weft_queue_new(0, sizeof(int));
  weft_task *c = spawn_named(qj_consumer, s, "consumer");
  /* A lazily spawned producer has not run: nothing to wait for yet. */
  weft_task *p = spawn_named(qj_producer, s, "producer");
  s->join_lazy = weft_queue_join(s->q);
  int lazy_seen = s->consumed;
  cr_assert_eq(lazy_seen, 0);
  cr_assert_eq(weft_join(p), 0);
  /* Eager: its puts are counted before spawn returns. */
  weft_spawn_opts o = {.eager = true};
  p = weft_spawn(qj_producer, s, &o);
  s->join_eager = weft_queue_join(s->q);
  cr_assert_eq(s->consumed, 6, "join returned with %d consumed", s->consumed);
  cr_assert_eq(weft_join(p), 0);
  weft_queue_shutdown(s->q, false);
  cr_assert_eq(weft_join(c), 0);
  weft_queue_free(s->q);
  return 0;
}

Test(outcomes, queue_join_before_producer_runs, .timeout = 10) {
  qj s = {0};
  cr_assert_eq(weft_run(qj_main, &s), 0);
  cr_assert_eq(s.join_lazy, 0);
  cr_assert_eq(s.join_eager, 0);
}

/* ---- a child that passes on its own scope's cancellation ------------------------ */

static int own_cancel_child(void *arg) {
  (void)arg;
  weft_scope s;
  weft_scope_open(&s, WEFT_FOREVER);
  weft_scope_cancel(&s);
  int rc = weft_yield();      /* -ECANCELED */
  cr_assert_eq(weft_scope_close(&s), 0); /* caught by the scope */
  return rc;                  /* but passed on: the child ends cancelled */
}
static int own_cancel_sibling(void *arg) {
  *(int *)arg = weft_sleep(WEFT_MS(20));
  return 0;
}
static int own_cancel_main(void *arg) {
  int *sib = arg;
  weft_group *g = weft_group_open();
  gspawn_named(g, own_cancel_child, NULL, "child");
  gspawn_named(g, own_cancel_sibling, sib, "sibling");
  weft_errors *e = NULL;
  cr_assert_eq(weft_group_close(g, &e), 0);
  cr_assert_null(e);
  return 0;
}

/* As asyncio's TaskGroup ignores a task that ends in CancelledError, a
 * child that returns -ECANCELED is cancelled, not failed: no error, and
 * its sibling is not cancelled. */
Test(outcomes, group_child_ecanceled_is_not_failure, .timeout = 10) {
  int sib = 1;
  cr_assert_eq(weft_run(own_cancel_main, &sib), 0);
  cr_assert_eq(sib, 0);
}
