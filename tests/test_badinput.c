/*
 * test_badinput.c -- bad arguments and calls from the wrong place: every
 * one must return an error (never crash, abort or print).
 */
#include <pthread.h>

#include "helpers.h"

static int nop(void *arg) {
  (void)arg;
  return 0;
}

static int sleep_long(void *arg) {
  int *res = arg;
  int r = weft_sleep(WEFT_SEC(10));
  if (res)
    *res = r;
  return r;
}

/* ---------------------------------------------------------------- */
/* NULL functions                                                    */
/* ---------------------------------------------------------------- */

/* weft_run / weft_run_with with a NULL main return -EINVAL and leave no
 * loop behind (a later weft_run works). */
Test(badinput, run_null_main, .timeout = 10) {
  cr_assert_eq(weft_run(NULL, NULL), -EINVAL);
  cr_assert_eq(weft_run_with(NULL, NULL, NULL), -EINVAL);
  weft_config cfg;
  weft_config_init(&cfg);
  cr_assert_eq(weft_run_with(&cfg, NULL, NULL), -EINVAL);
  cr_assert_null(weft_loop_current());
  cr_assert_eq(weft_run(nop, NULL), 0);
}

typedef struct {
  weft_task *t_spawn;
  int e_spawn;
  weft_task *t_gspawn_nullfn, *t_gspawn_nullg;
  int e_gspawn_nullfn, e_gspawn_nullg;
  int start_nullg, start_nullfn;
  int close_null, cancel_null, fail_null;
  int close_rc;
} nullfn_state;

static int null_fn_main(void *arg) {
  nullfn_state *s = arg;
  errno = 0;
  s->t_spawn = weft_spawn(NULL, NULL, NULL);
  s->e_spawn = errno;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  errno = 0;
  s->t_gspawn_nullfn = weft_group_spawn(g, NULL, NULL, NULL);
  s->e_gspawn_nullfn = errno;
  errno = 0;
  s->t_gspawn_nullg = weft_group_spawn(NULL, nop, NULL, NULL);
  s->e_gspawn_nullg = errno;
  s->start_nullg = weft_group_start(NULL, nop, NULL, NULL, NULL);
  s->start_nullfn = weft_group_start(g, NULL, NULL, NULL, NULL);
  s->close_null = weft_group_close(NULL, NULL);
  s->cancel_null = weft_group_cancel(NULL);
  s->fail_null = weft_group_fail(NULL, -EIO, "x");
  s->close_rc = weft_group_close(g, NULL);
  return 0;
}

/* NULL functions and NULL groups: spawn/group_spawn return NULL with
 * errno EINVAL, group_start/close/cancel/fail return -EINVAL, and the
 * group is left untouched (closes with 0). */
Test(badinput, null_fn_and_group, .timeout = 10) {
  nullfn_state s = {0};
  cr_assert_eq(weft_run(null_fn_main, &s), 0);
  cr_assert_null(s.t_spawn);
  cr_assert_eq(s.e_spawn, EINVAL);
  cr_assert_null(s.t_gspawn_nullfn);
  cr_assert_eq(s.e_gspawn_nullfn, EINVAL);
  cr_assert_null(s.t_gspawn_nullg);
  cr_assert_eq(s.e_gspawn_nullg, EINVAL);
  cr_assert_eq(s.start_nullg, -EINVAL);
  cr_assert_eq(s.start_nullfn, -EINVAL);
  cr_assert_eq(s.close_null, -EINVAL);
  cr_assert_eq(s.cancel_null, -EINVAL);
  cr_assert_eq(s.fail_null, -EINVAL);
  cr_assert_eq(s.close_rc, 0);
}

/* ---------------------------------------------------------------- */
/* NULL task handles                                                 */
/* ---------------------------------------------------------------- */

static void dummy_cb(weft_task *t, void *arg) {
  (void)t;
  (void)arg;
}

typedef struct {
  int join, join_until, detach, cancel, error, on_done, on_done_cb;
  int foreach_null;
} nullh_state;

static int null_handle_main(void *arg) {
  nullh_state *s = arg;
  s->join = weft_join(NULL);
  s->join_until = weft_join_until(NULL, WEFT_FOREVER);
  s->detach = weft_detach(NULL);
  s->cancel = weft_cancel(NULL);
  s->error = weft_task_error(NULL, NULL);
  s->on_done = weft_task_on_done(NULL, dummy_cb, NULL);
  weft_task *t = weft_spawn(nop, NULL, NULL);
  s->on_done_cb = weft_task_on_done(t, NULL, NULL);
  weft_join(t);
  s->foreach_null = weft_tasks_foreach(NULL, NULL);
  return 0;
}

/* Every task call with a NULL handle (or NULL callback) is -EINVAL. */
Test(badinput, null_task_handles, .timeout = 10) {
  nullh_state s = {0};
  cr_assert_eq(weft_run(null_handle_main, &s), 0);
  cr_assert_eq(s.join, -EINVAL);
  cr_assert_eq(s.join_until, -EINVAL);
  cr_assert_eq(s.detach, -EINVAL);
  cr_assert_eq(s.cancel, -EINVAL);
  cr_assert_eq(s.error, -EINVAL);
  cr_assert_eq(s.on_done, -EINVAL);
  cr_assert_eq(s.on_done_cb, -EINVAL);
  cr_assert_eq(s.foreach_null, -EINVAL);
  cr_assert_str_eq(weft_task_name(NULL), "");
  cr_assert_eq(weft_task_id(NULL), 0);
  cr_assert_not(weft_task_done(NULL));
}

/* ---------------------------------------------------------------- */
/* Negative durations                                                */
/* ---------------------------------------------------------------- */

typedef struct {
  int sleep_rc, yield_rc, close_rc;
  int64_t before, deadline, el;
} neg_state;

static int negative_main(void *arg) {
  neg_state *s = arg;
  int64_t t0 = weft_now();
  s->sleep_rc = weft_sleep(-WEFT_SEC(5));
  s->el = weft_now() - t0;
  weft_scope sc;
  s->before = weft_now();
  cr_assert_eq(weft_scope_open_after(&sc, -WEFT_SEC(5)), 0);
  s->deadline = weft_scope_deadline(&sc);
  s->yield_rc = weft_yield();
  s->close_rc = weft_scope_close(&sc);
  return 0;
}

/* Negative durations count as 0: weft_sleep returns 0 at once, and
 * weft_scope_open_after(-5 s) gets deadline "now" (not now - 5 s), which
 * fires at the next checkpoint. */
Test(badinput, negative_durations, .timeout = 10) {
  neg_state s = {0};
  cr_assert_eq(weft_run(negative_main, &s), 0);
  cr_assert_eq(s.sleep_rc, 0);
  cr_assert_lt(s.el, WEFT_MS(500));
  cr_assert_geq(s.deadline, s.before);
  cr_assert_lt(s.deadline, s.before + WEFT_SEC(1));
  cr_assert_eq(s.yield_rc, -ECANCELED);
  cr_assert_eq(s.close_rc, -ETIMEDOUT);
}

/* ---------------------------------------------------------------- */
/* Joining twice, joining oneself, after detach                       */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_task *target;
  int first_join, second_join, self_join, self_join_until;
} jj_state;

static int ret_after_20ms(void *arg) {
  (void)arg;
  weft_sleep(WEFT_MS(20));
  return 9;
}

static int first_joiner(void *arg) {
  jj_state *s = arg;
  s->first_join = weft_join(s->target);
  return 0;
}

static int join_twice_main(void *arg) {
  jj_state *s = arg;
  s->target = weft_spawn(ret_after_20ms, NULL, NULL);
  weft_task *j = weft_spawn(first_joiner, s, NULL);
  weft_yield(); /* j is now blocked in weft_join(target) */
  weft_yield();
  s->second_join = weft_join(s->target);
  s->self_join = weft_join(weft_current());
  s->self_join_until = weft_join_until(weft_current(), WEFT_FOREVER);
  weft_join(j);
  return 0;
}

/* A second concurrent join of the same task returns -EBUSY (the first
 * gets the result); joining oneself is -EDEADLK (also with join_until). */
Test(badinput, join_twice_and_self, .timeout = 10) {
  jj_state s = {0};
  cr_assert_eq(weft_run(join_twice_main, &s), 0);
  cr_assert_eq(s.second_join, -EBUSY);
  cr_assert_eq(s.first_join, 9);
  cr_assert_eq(s.self_join, -EDEADLK);
  cr_assert_eq(s.self_join_until, -EDEADLK);
}

typedef struct {
  int detach1, detach2, join_after;
  int child_res;
} dd_state;

static int detach_twice_main(void *arg) {
  dd_state *s = arg;
  weft_task *t = weft_spawn(sleep_long, &s->child_res, NULL);
  weft_yield();
  s->detach1 = weft_detach(t);
  /* t still runs: its record cannot have been reused */
  s->detach2 = weft_detach(t);
  s->join_after = weft_join(t);
  return 0; /* weft_run cancels the detached sleeper */
}

/* Detaching twice or joining after a detach (while the task still runs)
 * is -ESRCH. */
Test(badinput, detach_twice_join_after_detach, .timeout = 10) {
  dd_state s = {0};
  cr_assert_eq(weft_run(detach_twice_main, &s), 0);
  cr_assert_eq(s.detach1, 0);
  cr_assert_eq(s.detach2, -ESRCH);
  cr_assert_eq(s.join_after, -ESRCH);
  cr_assert_eq(s.child_res, -ECANCELED);
}

typedef struct {
  int join_child, detach_child, close_rc;
} gj_state;

static int join_group_child_main(void *arg) {
  gj_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  weft_task *t = weft_group_spawn(g, ret_after_20ms, NULL, NULL);
  cr_assert_not_null(t);
  s->join_child = weft_join(t);
  s->detach_child = weft_detach(t);
  s->close_rc = weft_group_close(g, NULL);
  return 0;
}

/* A group child's borrowed handle cannot be joined (-EINVAL); the group
 * still owns it and closes normally. */
Test(badinput, join_group_child, .timeout = 10) {
  gj_state s = {0};
  cr_assert_eq(weft_run(join_group_child_main, &s), 0);
  cr_assert_eq(s.join_child, -EINVAL);
  cr_assert(s.detach_child == -EINVAL || s.detach_child == -ESRCH,
            "detach of a group child gave %d", s.detach_child);
  /* the child returned 9, which is not an error code */
  cr_assert_eq(s.close_rc, 0);
}

/* ---------------------------------------------------------------- */
/* Spawning into a group whose close is in progress                  */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_group *g;
  int spawned_ran;
  bool spawn_ok;
  int close_rc;
} gs_state;

static int mark(void *arg) {
  gs_state *s = arg;
  weft_sleep(WEFT_MS(5));
  s->spawned_ran = 1;
  return 0;
}

static int late_spawner(void *arg) {
  gs_state *s = arg;
  weft_sleep(WEFT_MS(20)); /* body is in weft_group_close by now */
  s->spawn_ok = weft_group_spawn(s->g, mark, s, NULL) != NULL;
  return 0;
}

static int closing_spawn_main(void *arg) {
  gs_state *s = arg;
  s->g = weft_group_open();
  cr_assert_not_null(s->g);
  cr_assert_not_null(weft_group_spawn(s->g, late_spawner, s, NULL));
  s->close_rc = weft_group_close(s->g, NULL);
  return 0;
}

/* Spawning into a group whose close is in progress, from a child that is
 * still running, is allowed, and close waits for the new child. */
Test(badinput, spawn_into_closing_group, .timeout = 10) {
  gs_state s = {0};
  cr_assert_eq(weft_run(closing_spawn_main, &s), 0);
  cr_assert(s.spawn_ok);
  cr_assert_eq(s.spawned_ran, 1);
  cr_assert_eq(s.close_rc, 0);
}

/* ---------------------------------------------------------------- */
/* Closing scopes/groups out of order                                */
/* ---------------------------------------------------------------- */

typedef struct {
  int bad_scope, bad_group, scope_ok, group_ok, inner_ok, outer_ok;
  int null_close;
} ord_state;

static int out_of_order_main(void *arg) {
  ord_state *s = arg;
  weft_scope a, b;
  weft_scope_open(&a, WEFT_FOREVER);
  weft_scope_open(&b, WEFT_FOREVER);
  s->bad_scope = weft_scope_close(&a);
  s->inner_ok = weft_scope_close(&b);
  s->outer_ok = weft_scope_close(&a);

  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  weft_scope sc;
  weft_scope_open(&sc, WEFT_FOREVER);
  s->bad_group = weft_group_close(g, NULL); /* sc is innermost */
  s->scope_ok = weft_scope_close(&sc);
  s->group_ok = weft_group_close(g, NULL);
  s->null_close = weft_scope_close(NULL);
  return 0;
}

/* Closing a scope or group that is not the innermost returns -EINVAL,
 * closes nothing, and both close fine afterwards in the right order;
 * closing a NULL scope is -EINVAL. */
Test(badinput, close_out_of_order, .timeout = 10) {
  ord_state s = {0};
  cr_assert_eq(weft_run(out_of_order_main, &s), 0);
  cr_assert_eq(s.bad_scope, -EINVAL);
  cr_assert_eq(s.inner_ok, 0);
  cr_assert_eq(s.outer_ok, 0);
  cr_assert_eq(s.bad_group, -EINVAL);
  cr_assert_eq(s.scope_ok, 0);
  cr_assert_eq(s.group_ok, 0);
  cr_assert_eq(s.null_close, -EINVAL);
}

/* ---------------------------------------------------------------- */
/* Other invalid arguments                                           */
/* ---------------------------------------------------------------- */

typedef struct {
  int wait_noev, wait_neg, resched_null, cancel_null, started_main;
  int ins_add_null, ins_rm_null;
} misc_state;

static int misc_main(void *arg) {
  misc_state *s = arg;
  int p[2];
  cr_assert_eq(pipe(p), 0);
  s->wait_noev = weft_wait_fd(p[0], 0);
  s->wait_neg = weft_wait_fd(-1, WEFT_READABLE);
  close(p[0]);
  close(p[1]);
  s->resched_null = weft_scope_reschedule(NULL, 0);
  s->cancel_null = weft_scope_cancel(NULL);
  s->started_main = weft_started(NULL);
  s->ins_add_null = weft_instrument_add(NULL, NULL);
  s->ins_rm_null = weft_instrument_remove(NULL, NULL);
  return 0;
}

/* Assorted invalid arguments: wait_fd with no events (-EINVAL) or fd -1
 * (-EBADF), NULL scopes, weft_started outside a start child, NULL
 * instruments: all -EINVAL. */
Test(badinput, misc_invalid, .timeout = 10) {
  misc_state s = {0};
  cr_assert_eq(weft_run(misc_main, &s), 0);
  cr_assert_eq(s.wait_noev, -EINVAL);
  cr_assert_eq(s.wait_neg, -EBADF);
  cr_assert_eq(s.resched_null, -EINVAL);
  cr_assert_eq(s.cancel_null, -EINVAL);
  cr_assert_eq(s.started_main, -EINVAL);
  cr_assert_eq(s.ins_add_null, -EINVAL);
  cr_assert_eq(s.ins_rm_null, -EINVAL);
}

/* ---------------------------------------------------------------- */
/* Calls outside any task (no loop on the thread)                    */
/* ---------------------------------------------------------------- */

static int count_cb(weft_task *t, void *arg) {
  (void)t;
  (*(int *)arg)++;
  return 0;
}

/* Every task-only call made from the test body, with no loop on the
 * thread, returns WEFT_ENOTASK; object-making ones return NULL with
 * errno == EPERM. Non-blocking queries are harmless. */
Test(badinput, outside_any_loop, .timeout = 10) {
  int p[2];
  cr_assert_eq(pipe(p), 0);
  weft_scope sc;
  cr_assert_eq(weft_sleep(WEFT_MS(1)), WEFT_ENOTASK);
  cr_assert_eq(weft_sleep_until(weft_now() + WEFT_MS(1)), WEFT_ENOTASK);
  cr_assert_eq(weft_yield(), WEFT_ENOTASK);
  cr_assert_eq(weft_check_cancel(), WEFT_ENOTASK);
  cr_assert_eq(weft_wait_fd(p[0], WEFT_READABLE), WEFT_ENOTASK);
  cr_assert_eq(weft_scope_open(&sc, WEFT_FOREVER), WEFT_ENOTASK);
  cr_assert_eq(weft_scope_open_after(&sc, WEFT_SEC(1)), WEFT_ENOTASK);
  cr_assert_eq(weft_scope_open_shielded(&sc, WEFT_FOREVER), WEFT_ENOTASK);
  cr_assert_eq(weft_started(NULL), WEFT_ENOTASK);
  int n = 0;
  cr_assert_eq(weft_tasks_foreach(count_cb, &n), WEFT_ENOTASK);
  cr_assert_eq(n, 0);
  cr_assert_eq(weft_dump_tasks(stderr, WEFT_DUMP_TREE), WEFT_ENOTASK);
  static const weft_instrument ins = {0};
  cr_assert_eq(weft_instrument_add(&ins, NULL), WEFT_ENOTASK);
  cr_assert_eq(weft_instrument_remove(&ins, NULL), WEFT_ENOTASK);

  errno = 0;
  cr_assert_null(weft_group_open());
  cr_assert_eq(errno, EPERM);
  errno = 0;
  cr_assert_null(weft_spawn(nop, NULL, NULL));
  cr_assert_eq(errno, EPERM);

  cr_assert_null(weft_current());
  cr_assert_null(weft_loop_current());
  cr_assert_eq(weft_fail(-EIO, "nobody"), -EIO);
  close(p[0]);
  close(p[1]);
}

/* Blocking calls from the thread of a runner's loop, but outside any task
 * (between two weft_runner_run calls): WEFT_ENOTASK, including join and
 * join_until of a real handle, which stays valid. */
typedef struct {
  weft_task *t;
  int child_res;
  int join_rc;
} rn_state;

static int leave_task(void *arg) {
  rn_state *s = arg;
  s->t = weft_spawn(sleep_long, &s->child_res, NULL);
  return s->t ? 0 : -ENOMEM;
}

static int finish_task(void *arg) {
  rn_state *s = arg;
  weft_cancel(s->t);
  s->join_rc = weft_join(s->t);
  return 0;
}

Test(badinput, outside_task_with_loop, .timeout = 10) {
  rn_state s = {0};
  weft_runner *r = weft_runner_open(NULL);
  cr_assert_not_null(r);
  cr_assert_eq(weft_runner_run(r, leave_task, &s), 0);
  cr_assert_not_null(s.t);
  cr_assert_eq(weft_join(s.t), WEFT_ENOTASK);
  cr_assert_eq(weft_join_until(s.t, WEFT_FOREVER), WEFT_ENOTASK);
  cr_assert_eq(weft_sleep(1), WEFT_ENOTASK);
  cr_assert_eq(weft_yield(), WEFT_ENOTASK);
  weft_scope sc;
  cr_assert_eq(weft_scope_open(&sc, WEFT_FOREVER), WEFT_ENOTASK);
  errno = 0;
  cr_assert_null(weft_group_open());
  cr_assert_eq(errno, EPERM);
  cr_assert_null(weft_current());
  cr_assert_eq(weft_runner_run(r, finish_task, &s), 0);
  cr_assert_eq(s.join_rc, -ECANCELED);
  cr_assert_eq(s.child_res, -ECANCELED);
  cr_assert_eq(weft_runner_close(r), 0);
}

/* ---------------------------------------------------------------- */
/* Calls from another thread                                         */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_task *target;
  int yield_rc, sleep_rc, check_rc, scope_rc;
  int cancel_rc, join_rc, detach_rc;
  weft_task *spawned;
  int spawn_errno;
  weft_task *cur;
  weft_loop *loop;
  int64_t now;
  int child_res;
  int final_join;
  bool done;
} thr_state;

static void *foreign_thread(void *arg) {
  thr_state *s = arg;
  s->yield_rc = weft_yield();
  s->sleep_rc = weft_sleep(WEFT_MS(1));
  s->check_rc = weft_check_cancel();
  weft_scope sc;
  s->scope_rc = weft_scope_open(&sc, WEFT_FOREVER);
  s->cancel_rc = weft_cancel(s->target);
  s->join_rc = weft_join(s->target);
  s->detach_rc = weft_detach(s->target);
  errno = 0;
  s->spawned = weft_spawn(nop, NULL, NULL);
  s->spawn_errno = errno;
  s->cur = weft_current();
  s->loop = weft_loop_current();
  s->now = weft_now();
  s->done = weft_task_done(s->target);
  return NULL;
}

static int thread_main(void *arg) {
  thr_state *s = arg;
  s->target = weft_spawn(sleep_long, &s->child_res, NULL);
  cr_assert_not_null(s->target);
  weft_yield();
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, foreign_thread, s), 0);
  pthread_join(th, NULL); /* blocks the loop briefly: fine here */
  /* The foreign calls must not have cancelled, joined or detached it. */
  weft_sleep(WEFT_MS(5));
  cr_expect_not(weft_task_done(s->target));
  weft_cancel(s->target);
  s->final_join = weft_join(s->target);
  return 0;
}

/* From a thread with no loop, blocking calls return WEFT_ENOTASK, and
 * cancel/join/detach of the loop's task return WEFT_ELOOP without
 * touching it; weft_now works anywhere. */
Test(badinput, from_other_thread, .timeout = 10) {
  thr_state s = {0};
  cr_assert_eq(weft_run(thread_main, &s), 0);
  cr_assert_eq(s.yield_rc, WEFT_ENOTASK);
  cr_assert_eq(s.sleep_rc, WEFT_ENOTASK);
  cr_assert_eq(s.check_rc, WEFT_ENOTASK);
  cr_assert_eq(s.scope_rc, WEFT_ENOTASK);
  cr_assert_eq(s.cancel_rc, WEFT_ELOOP);
  cr_assert_eq(s.join_rc, WEFT_ELOOP);
  cr_assert_eq(s.detach_rc, WEFT_ELOOP);
  cr_assert_null(s.spawned);
  cr_assert_eq(s.spawn_errno, EPERM);
  cr_assert_null(s.cur);
  cr_assert_null(s.loop);
  cr_assert_gt(s.now, 0);
  cr_assert_not(s.done);
  cr_assert_eq(s.child_res, -ECANCELED);
  cr_assert_eq(s.final_join, -ECANCELED);
}

/* ---------------------------------------------------------------- */
/* Nested loops                                                      */
/* ---------------------------------------------------------------- */

typedef struct {
  int run_rc, run_with_rc, runner_errno;
  weft_runner *runner;
} nested_state;

static int nested_run_main(void *arg) {
  nested_state *s = arg;
  s->run_rc = weft_run(nop, NULL);
  s->run_with_rc = weft_run_with(NULL, nop, NULL);
  errno = 0;
  s->runner = weft_runner_open(NULL);
  s->runner_errno = errno;
  return 0;
}

/* weft_run (or weft_runner_open) from inside a task: the thread already
 * runs a loop, -EBUSY / NULL with errno EBUSY. */
Test(badinput, run_inside_task, .timeout = 10) {
  nested_state s = {0};
  cr_assert_eq(weft_run(nested_run_main, &s), 0);
  cr_assert_eq(s.run_rc, -EBUSY);
  cr_assert_eq(s.run_with_rc, -EBUSY);
  cr_assert_null(s.runner);
  cr_assert_eq(s.runner_errno, EBUSY);
}

typedef struct {
  weft_task *spawned;
  int spawn_errno, start_rc, close_rc, fail_rc, cancel_rc, close_again;
} closed_state;

static int closed_main(void *arg) {
  closed_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  cr_assert_eq(weft_group_close(g, NULL), 0);
  /* g is closed: every use is refused, nothing runs. */
  errno = 0;
  s->spawned = weft_group_spawn(g, nop, NULL, NULL);
  s->spawn_errno = errno;
  s->start_rc = weft_group_start(g, nop, NULL, NULL, NULL);
  s->fail_rc = weft_group_fail(g, -EIO, "late");
  s->cancel_rc = weft_group_cancel(g);
  s->close_again = weft_group_close(g, NULL);
  return 0;
}

/* A closed group refuses spawns (-EPIPE), start, fail and cancel, and a
 * second close is -EINVAL: no crash, no child run. */
Test(badinput, closed_group, .timeout = 10) {
  closed_state s = {0};
  cr_assert_eq(weft_run(closed_main, &s), 0);
  cr_assert_null(s.spawned);
  cr_assert_eq(s.spawn_errno, EPIPE);
  cr_assert_eq(s.start_rc, -EPIPE);
  cr_assert_eq(s.fail_rc, -EPIPE);
  cr_assert_eq(s.cancel_rc, -EPIPE);
  cr_assert_eq(s.close_again, -EINVAL);
}

#include <sys/resource.h>

/* Out of file descriptors, weft_run fails with -EMFILE (the poller needs
 * two), and a runner open with errno EMFILE: no crash, no leak. */
Test(badinput, emfile, .timeout = 10) {
  struct rlimit rl = {.rlim_cur = 16, .rlim_max = 16};
  int fds[16], n = 0;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
    cr_skip_test("RLIMIT_NOFILE cannot be lowered here (valgrind refuses)");
  int fd;
  while (n < 16 && (fd = open("/dev/null", O_RDONLY)) >= 0) fds[n++] = fd;
  cr_assert_eq(weft_run(nop, NULL), -EMFILE);
  errno = 0;
  cr_assert_null(weft_runner_open(NULL));
  cr_assert_eq(errno, EMFILE);
  while (n > 0) close(fds[--n]);
  cr_assert_eq(weft_run(nop, NULL), 0);
}
