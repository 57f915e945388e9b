/*
 * test_task.c -- tasks: spawn, join, detach, cancel, results and messages,
 * done callbacks, names and ids, introspection, eager start, strerror.
 */
#include "helpers.h"

/* ---------------------------------------------------------------- */
/* join returns the task's code                                      */
/* ---------------------------------------------------------------- */

static int ret_code(void *arg) { return (int)(intptr_t)arg; }

static int ret_after_sleep(void *arg) {
  weft_sleep(WEFT_MS(5));
  return (int)(intptr_t)arg;
}

typedef struct {
  int r0, r1, r2, r3;
} join_state;

static int join_main(void *arg) {
  join_state *s = arg;
  weft_task *a = weft_spawn(ret_code, (void *)(intptr_t)0, NULL);
  weft_task *b = weft_spawn(ret_code, (void *)(intptr_t)-EPROTO, NULL);
  weft_task *c = weft_spawn(ret_after_sleep, (void *)(intptr_t)-EIO, NULL);
  weft_task *d = weft_spawn(ret_after_sleep, (void *)(intptr_t)WEFT_ELIMIT, NULL);
  cr_assert(a && b && c && d);
  s->r0 = weft_join(a);
  s->r1 = weft_join(b);
  s->r2 = weft_join(c);
  s->r3 = weft_join(d);
  return 0;
}

/* weft_join returns exactly what the task function returned, both for
 * tasks that finish before the join and tasks the join has to wait for. */
Test(task, join_returns_code, .timeout = 10) {
  join_state s = {1, 1, 1, 1};
  cr_assert_eq(weft_run(join_main, &s), 0);
  cr_assert_eq(s.r0, 0);
  cr_assert_eq(s.r1, -EPROTO);
  cr_assert_eq(s.r2, -EIO);
  cr_assert_eq(s.r3, WEFT_ELIMIT);
}

/* ---------------------------------------------------------------- */
/* weft_fail / weft_task_error                                       */
/* ---------------------------------------------------------------- */

static int failer(void *arg) {
  (void)arg;
  weft_sleep(WEFT_MS(2));
  return weft_fail(-EPROTO, "bad header from %s:%d", "peer", 7);
}

typedef struct {
  int cb_calls;
  int cb_code;
  char cb_msg[128];
  bool cb_done;
  int before_finish;
  int done_code;
  const char *done_msg_ptr;
  char done_msg[128];
  int join_code;
  int err_null;
  int fail_plain;
} fail_state;

static void capture_cb(weft_task *t, void *arg) {
  fail_state *s = arg;
  const char *m = NULL;
  s->cb_calls++;
  s->cb_done = weft_task_done(t);
  s->cb_code = weft_task_error(t, &m);
  snprintf(s->cb_msg, sizeof s->cb_msg, "%s", m ? m : "(null)");
}

static int fail_main(void *arg) {
  fail_state *s = arg;
  weft_task *t = weft_spawn(failer, NULL, NULL);
  cr_assert_not_null(t);
  s->before_finish = weft_task_error(t, NULL);
  cr_assert_eq(weft_task_on_done(t, capture_cb, s), 0);
  while (!weft_task_done(t))
    weft_sleep(WEFT_MS(1));
  const char *m = NULL;
  s->done_code = weft_task_error(t, &m);
  s->done_msg_ptr = m;
  snprintf(s->done_msg, sizeof s->done_msg, "%s", m ? m : "(null)");
  s->join_code = weft_join(t);
  s->err_null = weft_task_error(NULL, NULL);
  /* A task that fails without weft_fail has no message. */
  weft_task *u = weft_spawn(ret_code, (void *)(intptr_t)-EIO, NULL);
  while (!weft_task_done(u))
    weft_yield();
  const char *m2 = "sentinel";
  s->fail_plain = weft_task_error(u, &m2);
  cr_expect_null(m2, "plain failure should have no message, got '%s'",
                 m2 ? m2 : "");
  weft_join(u);
  return 0;
}

/* weft_fail's formatted message is visible through weft_task_error on a
 * finished task (before join) and inside a done callback; before the task
 * finishes weft_task_error returns -EAGAIN; NULL gives -EINVAL. */
Test(task, fail_message_and_task_error, .timeout = 10) {
  fail_state s = {0};
  cr_assert_eq(weft_run(fail_main, &s), 0);
  cr_assert_eq(s.before_finish, -EAGAIN);
  cr_assert_eq(s.cb_calls, 1);
  cr_assert(s.cb_done, "task not done inside its on_done callback");
  cr_assert_eq(s.cb_code, -EPROTO);
  cr_assert_str_eq(s.cb_msg, "bad header from peer:7");
  cr_assert_eq(s.done_code, -EPROTO);
  cr_assert_not_null(s.done_msg_ptr);
  cr_assert_str_eq(s.done_msg, "bad header from peer:7");
  cr_assert_eq(s.join_code, -EPROTO);
  cr_assert_eq(s.err_null, -EINVAL);
  cr_assert_eq(s.fail_plain, -EIO);
}

/* weft_fail outside a task returns its code and records nothing. */
Test(task, fail_outside_task, .timeout = 10) {
  cr_assert_eq(weft_fail(-EPIPE, "nobody hears %d", 1), -EPIPE);
  cr_assert_eq(weft_fail(WEFT_EGROUP, "x"), WEFT_EGROUP);
}

/* ---------------------------------------------------------------- */
/* detach                                                            */
/* ---------------------------------------------------------------- */

typedef struct {
  int ran;
  int detach_rc;
  int ran_at_detach;
} detach_state;

static int detached_child(void *arg) {
  detach_state *s = arg;
  weft_sleep(WEFT_MS(10));
  s->ran = 1;
  return -EIO; /* a detached task's failure goes nowhere */
}

static int detach_main(void *arg) {
  detach_state *s = arg;
  weft_task *t = weft_spawn(detached_child, s, NULL);
  cr_assert_not_null(t);
  s->detach_rc = weft_detach(t);
  s->ran_at_detach = s->ran;
  weft_sleep(WEFT_MS(50));
  return 0;
}

/* A detached task keeps running after its handle is given up and frees
 * itself; weft_detach returns 0. */
Test(task, detach_runs_on, .timeout = 10) {
  detach_state s = {0};
  cr_assert_eq(weft_run(detach_main, &s), 0);
  cr_assert_eq(s.detach_rc, 0);
  cr_assert_eq(s.ran_at_detach, 0);
  cr_assert_eq(s.ran, 1, "detached task did not run to completion");
}

/* ---------------------------------------------------------------- */
/* on_done callbacks                                                 */
/* ---------------------------------------------------------------- */

typedef struct {
  tlog log;
  int rc_late;
  int late_seen_before_return;
  int rc_null_t, rc_null_cb;
} ondone_state;

typedef struct {
  ondone_state *s;
  int id;
} cb_arg;

static void order_cb(weft_task *t, void *arg) {
  cb_arg *a = arg;
  (void)t;
  log_add(&a->s->log, a->id);
}

static int short_child(void *arg) {
  ondone_state *s = arg;
  log_add(&s->log, 100);
  weft_sleep(WEFT_MS(5));
  log_add(&s->log, 101);
  return 0;
}

static int ondone_main(void *arg) {
  ondone_state *s = arg;
  cb_arg a[4] = {{s, 1}, {s, 2}, {s, 3}, {s, 4}};
  weft_task *t = weft_spawn(short_child, s, NULL);
  cr_assert_not_null(t);
  cr_assert_eq(weft_task_on_done(t, order_cb, &a[0]), 0);
  cr_assert_eq(weft_task_on_done(t, order_cb, &a[1]), 0);
  cr_assert_eq(weft_task_on_done(t, order_cb, &a[2]), 0);
  while (!weft_task_done(t))
    weft_sleep(WEFT_MS(1));
  /* On a finished task the callback runs at once, before on_done returns. */
  int before = s->log.n;
  s->rc_late = weft_task_on_done(t, order_cb, &a[3]);
  s->late_seen_before_return = s->log.n - before;
  s->rc_null_t = weft_task_on_done(NULL, order_cb, &a[0]);
  s->rc_null_cb = weft_task_on_done(t, NULL, NULL);
  weft_join(t);
  return 0;
}

/* Done callbacks run once each, in registration order, after the task's
 * body has finished; registering on a finished task runs the callback
 * immediately. Bad arguments give -EINVAL. */
Test(task, on_done_order_and_late, .timeout = 10) {
  ondone_state s = {0};
  cr_assert_eq(weft_run(ondone_main, &s), 0);
  int want[] = {100, 101, 1, 2, 3, 4};
  log_expect(&s.log, want, 6);
  cr_assert_eq(s.rc_late, 0);
  cr_assert_eq(s.late_seen_before_return, 1);
  cr_assert_eq(s.rc_null_t, -EINVAL);
  cr_assert_eq(s.rc_null_cb, -EINVAL);
}

/* ---------------------------------------------------------------- */
/* weft_current / weft_loop_current / names / ids                    */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_task *seen[3];
  weft_loop *loops[3];
  weft_loop *main_loop;
  weft_task *main_task;
  char main_name[32];
  uint64_t main_id;
  int idx;
} cur_state;

static int who_am_i(void *arg) {
  cur_state *s = arg;
  int i = s->idx++;
  s->seen[i] = weft_current();
  s->loops[i] = weft_loop_current();
  return 0;
}

static int current_main(void *arg) {
  cur_state *s = arg;
  weft_task *h[3];
  s->main_task = weft_current();
  s->main_loop = weft_loop_current();
  snprintf(s->main_name, sizeof s->main_name, "%s",
           weft_task_name(weft_current()));
  s->main_id = weft_task_id(weft_current());
  for (int i = 0; i < 3; i++)
    h[i] = weft_spawn(who_am_i, s, NULL);
  for (int i = 0; i < 3; i++) {
    cr_assert_not_null(h[i]);
    cr_expect_eq(weft_current(), s->main_task);
  }
  for (int i = 0; i < 3; i++) {
    weft_yield();
  }
  for (int i = 0; i < 3; i++) {
    cr_expect_eq(s->seen[i], h[i], "child %d saw a different weft_current", i);
    cr_expect_eq(s->loops[i], s->main_loop);
    weft_join(h[i]);
  }
  return 0;
}

/* weft_current is the running task's own handle (the one spawn returned),
 * NULL outside any task; weft_loop_current is the same loop in every task
 * of the loop and NULL outside; the root task is named "main". */
Test(task, current_and_loop, .timeout = 10) {
  cur_state s = {0};
  cr_assert_null(weft_current());
  cr_assert_null(weft_loop_current());
  cr_assert_eq(weft_run(current_main, &s), 0);
  cr_assert_not_null(s.main_task);
  cr_assert_not_null(s.main_loop);
  cr_assert_eq(s.idx, 3);
  cr_assert_str_eq(s.main_name, "main");
  cr_assert_geq(s.main_id, 1);
  cr_assert_null(weft_current());
  cr_assert_null(weft_loop_current());
}

typedef struct {
  uint64_t ids[8];
  char names[8][32];
  char expect[8][32];
  uint64_t main_id;
} names_state;

static int nop(void *arg) {
  (void)arg;
  return 0;
}

static int names_main(void *arg) {
  names_state *s = arg;
  weft_task *h[8];
  char buf[32];
  s->main_id = weft_task_id(weft_current());
  for (int i = 0; i < 8; i++) {
    if (i % 2) {
      snprintf(buf, sizeof buf, "worker-%d", i);
      weft_spawn_opts o = {.name = buf};
      h[i] = weft_spawn(nop, NULL, &o);
      /* The name is copied: clobbering our buffer must not matter. */
      memset(buf, 'X', sizeof buf - 1);
      buf[sizeof buf - 1] = '\0';
      snprintf(s->expect[i], sizeof s->expect[i], "worker-%d", i);
    } else {
      h[i] = weft_spawn(nop, NULL, NULL);
    }
    cr_assert_not_null(h[i]);
    s->ids[i] = weft_task_id(h[i]);
    if (!(i % 2))
      snprintf(s->expect[i], sizeof s->expect[i], "task-%" PRIu64, s->ids[i]);
  }
  for (int i = 0; i < 8; i++) {
    snprintf(s->names[i], sizeof s->names[i], "%s", weft_task_name(h[i]));
    weft_join(h[i]);
  }
  return 0;
}

/* Task ids are unique and increasing in spawn order (greater than the
 * root task's); unnamed tasks are called "task-N" with N their id; given
 * names are copied. NULL handles give "" and 0. */
Test(task, names_and_ids, .timeout = 10) {
  names_state s = {0};
  cr_assert_eq(weft_run(names_main, &s), 0);
  cr_assert_geq(s.main_id, 1);
  cr_assert_gt(s.ids[0], s.main_id);
  for (int i = 1; i < 8; i++)
    cr_assert_gt(s.ids[i], s.ids[i - 1], "id[%d]=%" PRIu64 " id[%d]=%" PRIu64,
                 i, s.ids[i], i - 1, s.ids[i - 1]);
  for (int i = 0; i < 8; i++)
    cr_assert_str_eq(s.names[i], s.expect[i]);
  cr_assert_str_eq(weft_task_name(NULL), "");
  cr_assert_eq(weft_task_id(NULL), 0);
  cr_assert_not(weft_task_done(NULL));
}

/* ---------------------------------------------------------------- */
/* weft_tasks_foreach                                                */
/* ---------------------------------------------------------------- */

typedef struct {
  int count;
  int stop_after;
  char names[8][32];
} fe_state;

static int fe_cb(weft_task *t, void *arg) {
  fe_state *s = arg;
  if (s->count < 8)
    snprintf(s->names[s->count], sizeof s->names[0], "%s", weft_task_name(t));
  s->count++;
  if (s->stop_after && s->count == s->stop_after)
    return 7;
  return 0;
}

static int sleeper_long(void *arg) {
  int *res = arg;
  int r = weft_sleep(WEFT_SEC(10));
  if (res)
    *res = r;
  return r;
}

typedef struct {
  fe_state all, stop, after;
  int rc_all, rc_stop, rc_null, rc_after;
} foreach_state;

static int foreach_main(void *arg) {
  foreach_state *s = arg;
  weft_task *h[3];
  const char *names[3] = {"fe-a", "fe-b", "fe-c"};
  for (int i = 0; i < 3; i++)
    h[i] = spawn_named(sleeper_long, NULL, names[i]);
  weft_yield(); /* let them start sleeping */
  s->rc_all = weft_tasks_foreach(fe_cb, &s->all);
  s->stop.stop_after = 2;
  s->rc_stop = weft_tasks_foreach(fe_cb, &s->stop);
  s->rc_null = weft_tasks_foreach(NULL, NULL);
  for (int i = 0; i < 3; i++) {
    weft_cancel(h[i]);
    weft_join(h[i]);
  }
  s->rc_after = weft_tasks_foreach(fe_cb, &s->after);
  return 0;
}

/* weft_tasks_foreach visits every live task (main plus three sleepers) in
 * spawn order, stops at the first non-zero return and returns it; joined
 * tasks are no longer listed; NULL callback gives -EINVAL. */
Test(task, tasks_foreach, .timeout = 10) {
  foreach_state s = {0};
  cr_assert_eq(weft_run(foreach_main, &s), 0);
  cr_assert_eq(s.rc_all, 0);
  cr_assert_eq(s.all.count, 4);
  cr_assert_str_eq(s.all.names[0], "main");
  cr_assert_str_eq(s.all.names[1], "fe-a");
  cr_assert_str_eq(s.all.names[2], "fe-b");
  cr_assert_str_eq(s.all.names[3], "fe-c");
  cr_assert_eq(s.rc_stop, 7);
  cr_assert_eq(s.stop.count, 2);
  cr_assert_eq(s.rc_null, -EINVAL);
  cr_assert_eq(s.rc_after, 0);
  cr_assert_eq(s.after.count, 1);
  cr_assert_str_eq(s.after.names[0], "main");
}

/* ---------------------------------------------------------------- */
/* weft_cancel                                                       */
/* ---------------------------------------------------------------- */

typedef struct {
  int r1, r2, r3;
  int64_t elapsed;
  int cancel_rc, cancel_done_rc, join_rc, join_done_rc;
  int null_rc;
} cancel_state;

static int stubborn(void *arg) {
  cancel_state *s = arg;
  int64_t t0 = weft_now();
  s->r1 = weft_sleep(WEFT_SEC(10)); /* cancelled */
  s->r2 = weft_sleep(WEFT_SEC(10)); /* level-triggered: again */
  s->r3 = weft_yield();
  s->elapsed = weft_now() - t0;
  return 5; /* a task may return anything after being cancelled */
}

static int cancel_main(void *arg) {
  cancel_state *s = arg;
  weft_task *t = weft_spawn(stubborn, s, NULL);
  weft_sleep(WEFT_MS(10));
  s->cancel_rc = weft_cancel(t);
  s->join_rc = weft_join(t);
  weft_task *u = weft_spawn(nop, NULL, NULL);
  while (!weft_task_done(u))
    weft_yield();
  s->cancel_done_rc = weft_cancel(u);
  s->join_done_rc = weft_join(u);
  s->null_rc = weft_cancel(NULL);
  return 0;
}

/* weft_cancel: every checkpoint of the target returns -ECANCELED until it
 * returns (it ignores the first one and still cannot sleep); join gives
 * whatever the task returned; cancelling a finished task returns 0 and
 * does not change its result; NULL gives -EINVAL. */
Test(task, cancel_task, .timeout = 10) {
  cancel_state s = {0};
  cr_assert_eq(weft_run(cancel_main, &s), 0);
  cr_assert_eq(s.cancel_rc, 0);
  cr_assert_eq(s.r1, -ECANCELED);
  cr_assert_eq(s.r2, -ECANCELED);
  cr_assert_eq(s.r3, -ECANCELED);
  cr_assert_lt(s.elapsed, T_SLACK);
  cr_assert_eq(s.join_rc, 5);
  cr_assert_eq(s.cancel_done_rc, 0);
  cr_assert_eq(s.join_done_rc, 0);
  cr_assert_eq(s.null_rc, -EINVAL);
}

/* ---------------------------------------------------------------- */
/* Eager start                                                       */
/* ---------------------------------------------------------------- */

typedef struct {
  tlog log;
  bool done_after_spawn;
  int join_rc;
  weft_task *child_current;
} eager_state;

static int eager_child(void *arg) {
  eager_state *s = arg;
  s->child_current = weft_current();
  log_add(&s->log, 1); /* runs before spawn returns */
  weft_sleep(WEFT_MS(5));
  log_add(&s->log, 3);
  return 0;
}

static int eager_main(void *arg) {
  eager_state *s = arg;
  weft_spawn_opts o = {.eager = true};
  weft_task *t = weft_spawn(eager_child, s, &o);
  cr_assert_not_null(t);
  log_add(&s->log, 2);
  s->done_after_spawn = weft_task_done(t);
  cr_expect_eq(s->child_current, t);
  cr_expect_eq(weft_current() != t, true);
  weft_join(t);
  log_add(&s->log, 4);
  return 0;
}

/* An eager child runs before weft_spawn returns, up to its first
 * suspension; weft_current inside it is its own handle. */
Test(task, eager_runs_before_spawn_returns, .timeout = 10) {
  eager_state s = {0};
  cr_assert_eq(weft_run(eager_main, &s), 0);
  int want[] = {1, 2, 3, 4};
  log_expect(&s.log, want, 4);
  cr_assert_not(s.done_after_spawn);
}

static int eager_quick(void *arg) {
  eager_state *s = arg;
  log_add(&s->log, 1);
  return -EALREADY;
}

static int eager_quick_main(void *arg) {
  eager_state *s = arg;
  weft_spawn_opts o = {.eager = true};
  weft_task *t = weft_spawn(eager_quick, s, &o);
  cr_assert_not_null(t);
  log_add(&s->log, 2);
  s->done_after_spawn = weft_task_done(t);
  s->join_rc = weft_join(t);
  return 0;
}

/* An eager child that finishes without suspending is already done when
 * weft_spawn returns, and its result is kept for the join. */
Test(task, eager_finishes_inside_spawn, .timeout = 10) {
  eager_state s = {0};
  cr_assert_eq(weft_run(eager_quick_main, &s), 0);
  int want[] = {1, 2};
  log_expect(&s.log, want, 2);
  cr_assert(s.done_after_spawn);
  cr_assert_eq(s.join_rc, -EALREADY);
}

static int lazy_main(void *arg) {
  eager_state *s = arg;
  weft_task *t = weft_spawn(eager_quick, s, NULL);
  cr_assert_not_null(t);
  log_add(&s->log, 2);
  s->done_after_spawn = weft_task_done(t);
  weft_yield();
  log_add(&s->log, 3);
  s->join_rc = weft_join(t);
  return 0;
}

/* A non-eager child has not run when weft_spawn returns; it runs at the
 * parent's next checkpoint. */
Test(task, lazy_child_not_run_at_spawn, .timeout = 10) {
  eager_state s = {0};
  cr_assert_eq(weft_run(lazy_main, &s), 0);
  int want[] = {2, 1, 3};
  log_expect(&s.log, want, 3);
  cr_assert_not(s.done_after_spawn);
  cr_assert_eq(s.join_rc, -EALREADY);
}

/* ---------------------------------------------------------------- */
/* Stack sizes                                                       */
/* ---------------------------------------------------------------- */

static int big_stack_user(void *arg) {
  size_t n = (size_t)(uintptr_t)arg;
  volatile char buf[512 * 1024];
  memset((char *)buf, 0x5a, n);
  weft_yield(); /* keep the frame live across a switch */
  int sum = 0;
  for (size_t i = 0; i < n; i += 4096)
    sum += buf[i];
  return sum == (int)((n + 4095) / 4096) * 0x5a ? 0 : -EIO;
}

static int stack_main(void *arg) {
  int *rc = arg;
  weft_spawn_opts o = {.name = "big", .stack_size = 1024 * 1024};
  weft_task *t = weft_spawn(big_stack_user, (void *)(uintptr_t)(512 * 1024), &o);
  cr_assert_not_null(t);
  *rc = weft_join(t);
  return 0;
}

/* weft_spawn_opts.stack_size gives the task that much usable stack (the
 * child uses 512 KiB, four times the default). */
Test(task, spawn_stack_size, .timeout = 10) {
  int rc = 1;
  cr_assert_eq(weft_run(stack_main, &rc), 0);
  cr_assert_eq(rc, 0);
}

/* weft_config.stack_size sets the default for every task, main included. */
Test(task, config_stack_size, .timeout = 10) {
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.stack_size = 1024 * 1024;
  cr_assert_eq(weft_run_with(&cfg, big_stack_user,
                             (void *)(uintptr_t)(512 * 1024)),
               0);
}

/* weft_config_init fills the documented defaults. */
Test(task, config_defaults, .timeout = 10) {
  weft_config cfg;
  memset(&cfg, 0xff, sizeof cfg);
  weft_config_init(&cfg);
  cr_assert(cfg.stack_size == 0 || cfg.stack_size == 128 * 1024,
            "stack_size %zu", cfg.stack_size);
  cr_assert(cfg.stack_pool == 0 || cfg.stack_pool == 1024);
  cr_assert_eq(cfg.guard_pages, 1);
  cr_assert_eq(cfg.debug, -1);
  cr_assert_null(cfg.instrument);
  cr_assert_null(cfg.instrument_arg);
  /* and they work */
  cr_assert_eq(weft_run_with(&cfg, ret_code, (void *)(intptr_t)3), 3);
  /* NULL config means defaults */
  cr_assert_eq(weft_run_with(NULL, ret_code, (void *)(intptr_t)4), 4);
}

/* ---------------------------------------------------------------- */
/* weft_strerror / weft_now                                          */
/* ---------------------------------------------------------------- */

/* weft_strerror names every WEFT_E* code with distinct strings that are
 * not "unknown error", names negative and positive errno values alike,
 * and gives "unknown error" for codes it does not know. */
Test(task, strerror_codes, .timeout = 10) {
  int codes[] = {WEFT_EGROUP,       WEFT_ENOTASK, WEFT_ELOOP,
                 WEFT_ENOTSTARTED, WEFT_EINCOMPLETE, WEFT_ELIMIT};
  int n = (int)(sizeof codes / sizeof codes[0]);
  for (int i = 0; i < n; i++) {
    const char *a = weft_strerror(codes[i]);
    cr_assert_not_null(a);
    cr_assert_neq(a[0], '\0');
    cr_assert_str_neq(a, "unknown error", "code %d", codes[i]);
    for (int j = 0; j < i; j++)
      cr_assert_str_neq(a, weft_strerror(codes[j]), "codes %d and %d",
                        codes[i], codes[j]);
  }
  int errnos[] = {ECANCELED, ETIMEDOUT, EINVAL, EBUSY, EDEADLK, EPIPE,
                  ENOMEM,    EBADF,     EPERM,  ESRCH, EAGAIN,  ENOENT};
  for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++) {
    const char *neg = weft_strerror(-errnos[i]);
    const char *pos = weft_strerror(errnos[i]);
    cr_assert_not_null(neg);
    cr_assert_not_null(pos);
    cr_assert_str_neq(neg, "unknown error", "errno %d", errnos[i]);
    cr_assert_str_eq(neg, pos, "errno %d", errnos[i]);
  }
  cr_assert_str_neq(weft_strerror(-ECANCELED), weft_strerror(-ETIMEDOUT));
  cr_assert_str_eq(weft_strerror(-987654), "unknown error");
  cr_assert_not_null(weft_strerror(0));
}

/* weft_now is CLOCK_MONOTONIC in ns and never goes back. */
Test(task, now_monotonic, .timeout = 10) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int64_t mine = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
  int64_t a = weft_now();
  cr_assert_geq(a, mine);
  cr_assert_lt(a - mine, WEFT_SEC(1));
  int64_t prev = a;
  for (int i = 0; i < 1000; i++) {
    int64_t b = weft_now();
    cr_assert_geq(b, prev);
    prev = b;
  }
  cr_assert_eq(WEFT_MS(3), 3000000LL);
  cr_assert_eq(WEFT_SEC(2), 2000000000LL);
  cr_assert_eq(WEFT_US(5), 5000LL);
  cr_assert_eq(WEFT_NS(9), 9LL);
}
