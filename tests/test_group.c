/*
 * test_group.c -- task groups (asyncio.TaskGroup / Trio nursery):
 * failure propagation, error lists, cancellation, weft_group_start.
 */
#include "helpers.h"

/* ---------------------------------------------------------------- */
/* Common children                                                   */
/* ---------------------------------------------------------------- */

typedef struct {
  int result;   /* what its long sleep returned */
  int finished; /* reached the end */
} slot;

/* Sleeps 10 s (records the result) unless cancelled. */
static int long_sleeper(void *arg) {
  slot *s = arg;
  s->result = weft_sleep(WEFT_SEC(10));
  s->finished = 1;
  return s->result == -ECANCELED ? -ECANCELED : 0;
}

static int short_ok(void *arg) {
  slot *s = arg;
  s->result = weft_sleep(WEFT_MS(5));
  s->finished = 1;
  return 0;
}

/* ---------------------------------------------------------------- */
/* All children succeed                                              */
/* ---------------------------------------------------------------- */

typedef struct {
  slot c[3];
  int close_rc;
  weft_errors *errs;
  int64_t elapsed;
} basic_state;

static int all_ok_main(void *arg) {
  basic_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  for (int i = 0; i < 3; i++)
    gspawn_named(g, short_ok, &s->c[i], NULL);
  s->errs = (weft_errors *)&s; /* must be overwritten with NULL */
  s->close_rc = weft_group_close(g, &s->errs);
  return 0;
}

/* A group whose children all succeed closes with 0, after every child has
 * finished, and reports no error list. */
Test(group, all_succeed, .timeout = 10) {
  basic_state s = {0};
  cr_assert_eq(weft_run(all_ok_main, &s), 0);
  cr_assert_eq(s.close_rc, 0);
  cr_assert_null(s.errs);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(s.c[i].finished, 1);
    cr_assert_eq(s.c[i].result, 0);
  }
}

/* ---------------------------------------------------------------- */
/* One child fails                                                   */
/* ---------------------------------------------------------------- */

static int fail_after_10ms(void *arg) {
  (void)arg;
  weft_sleep(WEFT_MS(10));
  return weft_fail(-EPROTO, "boom %d", 42);
}

typedef struct {
  slot c[2];
  int body_sleep;
  int close_rc;
  size_t count;
  char name[32];
  int code;
  char msg[64];
  size_t match_proto, match_cancel;
  int64_t elapsed;
} onefail_state;

static int one_fails_main(void *arg) {
  onefail_state *s = arg;
  int64_t t0 = weft_now();
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  gspawn_named(g, long_sleeper, &s->c[0], "sleeper-1");
  gspawn_named(g, fail_after_10ms, NULL, "failer");
  gspawn_named(g, long_sleeper, &s->c[1], "sleeper-2");
  /* The body runs inside the group's scope: its checkpoints see the
   * cancellation caused by the failing child. */
  s->body_sleep = weft_sleep(WEFT_SEC(10));
  weft_errors *e = NULL;
  s->close_rc = weft_group_close(g, &e);
  s->elapsed = weft_now() - t0;
  s->count = weft_errors_count(e);
  const char *name = NULL, *msg = NULL;
  if (weft_errors_get(e, 0, &name, &s->code, &msg) == 0) {
    snprintf(s->name, sizeof s->name, "%s", name ? name : "(null)");
    snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "(null)");
  }
  s->match_proto = weft_errors_match(e, -EPROTO);
  s->match_cancel = weft_errors_match(e, -ECANCELED);
  weft_errors_free(e);
  return 0;
}

/* When one child fails, its siblings and the body get -ECANCELED at their
 * next checkpoint; close returns WEFT_EGROUP with exactly one error (the
 * failed child's name, code and message): cancelled siblings are not
 * errors. */
Test(group, one_child_fails, .timeout = 10) {
  onefail_state s = {0};
  cr_assert_eq(weft_run(one_fails_main, &s), 0);
  cr_assert_eq(s.close_rc, WEFT_EGROUP);
  cr_assert_eq(s.body_sleep, -ECANCELED);
  cr_assert_eq(s.c[0].result, -ECANCELED);
  cr_assert_eq(s.c[1].result, -ECANCELED);
  cr_assert_eq(s.count, 1);
  cr_assert_str_eq(s.name, "failer");
  cr_assert_eq(s.code, -EPROTO);
  cr_assert_str_eq(s.msg, "boom 42");
  cr_assert_eq(s.match_proto, 1);
  cr_assert_eq(s.match_cancel, 0);
  cr_assert_geq(s.elapsed, WEFT_MS(10));
  cr_assert_lt(s.elapsed, T_SLACK);
}

/* ---------------------------------------------------------------- */
/* Two children fail in the same loop iteration                      */
/* ---------------------------------------------------------------- */

typedef struct {
  int64_t deadline;
  int code;
  const char *msg;
} twin_arg;

static int fail_at(void *arg) {
  twin_arg *a = arg;
  weft_sleep_until(a->deadline); /* result ignored on purpose */
  return weft_fail(a->code, "%s", a->msg);
}

typedef struct {
  int close_rc;
  size_t count;
  char names[2][32];
  int codes[2];
  char msgs[2][32];
  size_t m_io, m_pipe;
  int get_range, get_null;
} twin_state;

static int twin_main(void *arg) {
  twin_state *s = arg;
  int64_t d = weft_now() + WEFT_MS(20);
  twin_arg a = {d, -EIO, "first"}, b = {d, -EPIPE, "second"};
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  gspawn_named(g, fail_at, &a, "twin-a");
  gspawn_named(g, fail_at, &b, "twin-b");
  weft_errors *e = NULL;
  s->close_rc = weft_group_close(g, &e);
  s->count = weft_errors_count(e);
  for (size_t i = 0; i < 2 && i < s->count; i++) {
    const char *n = NULL, *m = NULL;
    cr_assert_eq(weft_errors_get(e, i, &n, &s->codes[i], &m), 0);
    snprintf(s->names[i], 32, "%s", n ? n : "(null)");
    snprintf(s->msgs[i], 32, "%s", m ? m : "(null)");
  }
  s->m_io = weft_errors_match(e, -EIO);
  s->m_pipe = weft_errors_match(e, -EPIPE);
  int c;
  s->get_range = weft_errors_get(e, 2, NULL, &c, NULL);
  s->get_null = weft_errors_get(NULL, 0, NULL, &c, NULL);
  weft_errors_free(e);
  return 0;
}

/* Two children whose timers expire in the same loop iteration both fail
 * (the second fails even though the first's failure already cancelled
 * it): both are recorded, in the order they happened (equal deadlines
 * wake in FIFO order). errors_get out of range gives -ERANGE. */
Test(group, two_fail_same_iteration, .timeout = 10) {
  twin_state s = {0};
  cr_assert_eq(weft_run(twin_main, &s), 0);
  cr_assert_eq(s.close_rc, WEFT_EGROUP);
  cr_assert_eq(s.count, 2);
  cr_assert_str_eq(s.names[0], "twin-a");
  cr_assert_eq(s.codes[0], -EIO);
  cr_assert_str_eq(s.msgs[0], "first");
  cr_assert_str_eq(s.names[1], "twin-b");
  cr_assert_eq(s.codes[1], -EPIPE);
  cr_assert_str_eq(s.msgs[1], "second");
  cr_assert_eq(s.m_io, 1);
  cr_assert_eq(s.m_pipe, 1);
  cr_assert_eq(s.get_range, -ERANGE);
  cr_assert_eq(s.get_null, -EINVAL);
}

/* ---------------------------------------------------------------- */
/* The body fails (weft_group_fail)                                  */
/* ---------------------------------------------------------------- */

typedef struct {
  slot c[2];
  int fail_rc, fail_null, fail_zero, fail_pos;
  int body_after;
  int close_rc;
  size_t count;
  char name[32];
  int code;
  char msg[64];
} bodyfail_state;

static int body_fail_main(void *arg) {
  bodyfail_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  gspawn_named(g, long_sleeper, &s->c[0], NULL);
  gspawn_named(g, long_sleeper, &s->c[1], NULL);
  weft_sleep(WEFT_MS(5)); /* children are sleeping now */
  s->fail_null = weft_group_fail(NULL, -EIO, "x");
  s->fail_zero = weft_group_fail(g, 0, "x");
  s->fail_pos = weft_group_fail(g, EIO, "x");
  s->fail_rc = weft_group_fail(g, -ENOEXEC, "body said %s", "no");
  s->body_after = weft_sleep(WEFT_SEC(10));
  weft_errors *e = NULL;
  s->close_rc = weft_group_close(g, &e);
  s->count = weft_errors_count(e);
  const char *n = NULL, *m = NULL;
  if (weft_errors_get(e, 0, &n, &s->code, &m) == 0) {
    snprintf(s->name, sizeof s->name, "%s", n ? n : "(null)");
    snprintf(s->msg, sizeof s->msg, "%s", m ? m : "(null)");
  }
  weft_errors_free(e);
  return 0;
}

/* weft_group_fail records the body's failure and cancels the children
 * and the body itself; close returns WEFT_EGROUP with that one error.
 * Invalid arguments (NULL group, code >= 0) give -EINVAL and do nothing. */
Test(group, body_fails, .timeout = 10) {
  bodyfail_state s = {0};
  cr_assert_eq(weft_run(body_fail_main, &s), 0);
  cr_assert_eq(s.fail_null, -EINVAL);
  cr_assert_eq(s.fail_zero, -EINVAL);
  cr_assert_eq(s.fail_pos, -EINVAL);
  cr_assert_eq(s.fail_rc, 0);
  cr_assert_eq(s.body_after, -ECANCELED);
  cr_assert_eq(s.c[0].result, -ECANCELED);
  cr_assert_eq(s.c[1].result, -ECANCELED);
  cr_assert_eq(s.close_rc, WEFT_EGROUP);
  cr_assert_eq(s.count, 1);
  cr_assert_eq(s.code, -ENOEXEC);
  cr_assert_str_eq(s.msg, "body said no");
  cr_expect_str_eq(s.name, "main", "body failure should carry the body "
                                   "task's name");
}

/* ---------------------------------------------------------------- */
/* A child spawns a sibling                                          */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_group *g;
  tlog log;
  int close_rc;
  int spawn_ok;
} sib_state;

static int late_sibling(void *arg) {
  sib_state *s = arg;
  weft_sleep(WEFT_MS(30));
  log_add(&s->log, 3);
  return 0;
}

static int spawner_child(void *arg) {
  sib_state *s = arg;
  log_add(&s->log, 1);
  /* By now the body is waiting in weft_group_close: spawning into a group
   * whose close is in progress, from a running child, is allowed. */
  weft_sleep(WEFT_MS(10));
  weft_task *t = weft_group_spawn(s->g, late_sibling, s, NULL);
  s->spawn_ok = t != NULL;
  log_add(&s->log, 2);
  return 0;
}

static int sibling_main(void *arg) {
  sib_state *s = arg;
  s->g = weft_group_open();
  cr_assert_not_null(s->g);
  gspawn_named(s->g, spawner_child, s, NULL);
  s->close_rc = weft_group_close(s->g, NULL);
  log_add(&s->log, 4);
  return 0;
}

/* A child can spawn a sibling into its own group, even while the body is
 * already in weft_group_close; close waits for the sibling too. */
Test(group, child_spawns_sibling, .timeout = 10) {
  sib_state s = {0};
  cr_assert_eq(weft_run(sibling_main, &s), 0);
  cr_assert(s.spawn_ok);
  cr_assert_eq(s.close_rc, 0);
  int want[] = {1, 2, 3, 4};
  log_expect(&s.log, want, 4);
}

/* ---------------------------------------------------------------- */
/* Parent cancelled while waiting in close                           */
/* ---------------------------------------------------------------- */

typedef struct {
  slot c[2];
  int close_rc;
  int in_close;
  weft_errors *errs;
  int join_rc;
} pc_state;

static int parent_task(void *arg) {
  pc_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  gspawn_named(g, long_sleeper, &s->c[0], NULL);
  gspawn_named(g, long_sleeper, &s->c[1], NULL);
  s->in_close = 1;
  s->errs = (weft_errors *)s;
  s->close_rc = weft_group_close(g, &s->errs);
  return s->close_rc;
}

static int parent_cancel_main(void *arg) {
  pc_state *s = arg;
  weft_task *p = weft_spawn(parent_task, s, NULL);
  cr_assert_not_null(p);
  weft_sleep(WEFT_MS(20));
  cr_expect_eq(s->in_close, 1);
  cr_expect_eq(weft_cancel(p), 0);
  s->join_rc = weft_join(p);
  return 0;
}

/* A task cancelled while it waits in weft_group_close cancels its
 * children, still waits for them, and close returns -ECANCELED (nothing
 * failed) with no error list. */
Test(group, parent_cancelled_in_close, .timeout = 10) {
  pc_state s = {0};
  cr_assert_eq(weft_run(parent_cancel_main, &s), 0);
  cr_assert_eq(s.close_rc, -ECANCELED);
  cr_assert_null(s.errs);
  cr_assert_eq(s.join_rc, -ECANCELED);
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(s.c[i].result, -ECANCELED);
    cr_assert_eq(s.c[i].finished, 1);
  }
}

static int parent_body_task(void *arg) {
  pc_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  gspawn_named(g, long_sleeper, &s->c[0], NULL);
  gspawn_named(g, long_sleeper, &s->c[1], NULL);
  s->in_close = weft_sleep(WEFT_SEC(10)); /* the body: cancelled */
  s->close_rc = weft_group_close(g, NULL);
  return s->close_rc;
}

static int parent_body_main(void *arg) {
  pc_state *s = arg;
  weft_task *p = weft_spawn(parent_body_task, s, NULL);
  weft_sleep(WEFT_MS(20));
  weft_cancel(p);
  s->join_rc = weft_join(p);
  return 0;
}

/* A task cancelled while in the body of its open group cancels the
 * group: the body's sleep and the children see -ECANCELED, close returns
 * -ECANCELED. */
Test(group, parent_cancelled_in_body, .timeout = 10) {
  pc_state s = {0};
  cr_assert_eq(weft_run(parent_body_main, &s), 0);
  cr_assert_eq(s.in_close, -ECANCELED);
  cr_assert_eq(s.close_rc, -ECANCELED);
  cr_assert_eq(s.join_rc, -ECANCELED);
  cr_assert_eq(s.c[0].result, -ECANCELED);
  cr_assert_eq(s.c[1].result, -ECANCELED);
}

/* ---------------------------------------------------------------- */
/* Nested groups                                                     */
/* ---------------------------------------------------------------- */

typedef struct {
  slot outer_sib;
  int inner_close;
  size_t inner_count;
  int outer_close;
  size_t outer_count;
  char outer_name[32];
  int outer_code;
} nest_state;

static int inner_failer(void *arg) {
  (void)arg;
  weft_sleep(WEFT_MS(5));
  return weft_fail(-EBADMSG, "deep");
}

static int middle(void *arg) {
  nest_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  gspawn_named(g, inner_failer, NULL, "inner");
  weft_errors *e = NULL;
  s->inner_close = weft_group_close(g, &e);
  s->inner_count = weft_errors_count(e);
  int code = 0;
  weft_errors_get(e, 0, NULL, &code, NULL);
  weft_errors_free(e);
  return weft_fail(code ? code : -EIO, "inner group failed");
}

static int nested_main(void *arg) {
  nest_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  gspawn_named(g, middle, s, "middle");
  gspawn_named(g, long_sleeper, &s->outer_sib, "outer-sib");
  weft_errors *e = NULL;
  s->outer_close = weft_group_close(g, &e);
  s->outer_count = weft_errors_count(e);
  const char *n = NULL;
  if (weft_errors_get(e, 0, &n, &s->outer_code, NULL) == 0)
    snprintf(s->outer_name, sizeof s->outer_name, "%s", n);
  weft_errors_free(e);
  return 0;
}

/* A group inside a child of another group: the inner failure is reported
 * by the inner close; the child re-raises it, which fails the outer group
 * and cancels the outer sibling. */
Test(group, nested_groups, .timeout = 10) {
  nest_state s = {0};
  cr_assert_eq(weft_run(nested_main, &s), 0);
  cr_assert_eq(s.inner_close, WEFT_EGROUP);
  cr_assert_eq(s.inner_count, 1);
  cr_assert_eq(s.outer_close, WEFT_EGROUP);
  cr_assert_eq(s.outer_count, 1);
  cr_assert_str_eq(s.outer_name, "middle");
  cr_assert_eq(s.outer_code, -EBADMSG);
  cr_assert_eq(s.outer_sib.result, -ECANCELED);
}

typedef struct {
  int bad_close, c2, c1;
  slot a, b;
} nest2_state;

static int nested_body_main(void *arg) {
  nest2_state *s = arg;
  weft_group *g1 = weft_group_open();
  weft_group *g2 = weft_group_open();
  cr_assert(g1 && g2);
  gspawn_named(g1, short_ok, &s->a, NULL);
  gspawn_named(g2, short_ok, &s->b, NULL);
  s->bad_close = weft_group_close(g1, NULL); /* not innermost */
  s->c2 = weft_group_close(g2, NULL);
  s->c1 = weft_group_close(g1, NULL);
  return 0;
}

/* Groups nested in one body close in reverse order; closing the outer one
 * first returns -EINVAL and closes nothing. */
Test(group, nested_in_body, .timeout = 10) {
  nest2_state s = {0};
  cr_assert_eq(weft_run(nested_body_main, &s), 0);
  cr_assert_eq(s.bad_close, -EINVAL);
  cr_assert_eq(s.c2, 0);
  cr_assert_eq(s.c1, 0);
  cr_assert_eq(s.a.finished, 1);
  cr_assert_eq(s.b.finished, 1);
}

/* ---------------------------------------------------------------- */
/* weft_group_cancel                                                 */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_group *g;
  slot c[2];
  int cancel_rc, cancel_null;
  int body_after, body_after2;
  int close_rc;
  weft_errors *errs;
  int64_t elapsed;
} gcancel_state;

static int gcancel_body_main(void *arg) {
  gcancel_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  gspawn_named(g, long_sleeper, &s->c[0], NULL);
  gspawn_named(g, long_sleeper, &s->c[1], NULL);
  weft_yield();
  s->cancel_null = weft_group_cancel(NULL);
  s->cancel_rc = weft_group_cancel(g);
  s->body_after = weft_yield();
  s->body_after2 = weft_sleep(WEFT_SEC(10));
  s->errs = (weft_errors *)s;
  s->close_rc = weft_group_close(g, &s->errs);
  return 0;
}

/* weft_group_cancel from the body cancels the children and the body
 * (its checkpoints return -ECANCELED, level-triggered) and is not an
 * error: close returns 0 and no error list. */
Test(group, cancel_from_body, .timeout = 10) {
  gcancel_state s = {0};
  cr_assert_eq(weft_run(gcancel_body_main, &s), 0);
  cr_assert_eq(s.cancel_null, -EINVAL);
  cr_assert_eq(s.cancel_rc, 0);
  cr_assert_eq(s.body_after, -ECANCELED);
  cr_assert_eq(s.body_after2, -ECANCELED);
  cr_assert_eq(s.c[0].result, -ECANCELED);
  cr_assert_eq(s.c[1].result, -ECANCELED);
  cr_assert_eq(s.close_rc, 0);
  cr_assert_null(s.errs);
}

static int canceller_child(void *arg) {
  gcancel_state *s = arg;
  weft_sleep(WEFT_MS(10));
  s->cancel_rc = weft_group_cancel(s->g);
  return 0;
}

static int gcancel_child_main(void *arg) {
  gcancel_state *s = arg;
  int64_t t0 = weft_now();
  s->g = weft_group_open();
  cr_assert_not_null(s->g);
  gspawn_named(s->g, long_sleeper, &s->c[0], NULL);
  gspawn_named(s->g, canceller_child, s, NULL);
  gspawn_named(s->g, long_sleeper, &s->c[1], NULL);
  s->close_rc = weft_group_close(s->g, &s->errs);
  s->elapsed = weft_now() - t0;
  return 0;
}

/* weft_group_cancel from a child: the siblings are cancelled, close (the
 * body already waiting in it) returns 0 promptly. */
Test(group, cancel_from_child, .timeout = 10) {
  gcancel_state s = {0};
  cr_assert_eq(weft_run(gcancel_child_main, &s), 0);
  cr_assert_eq(s.cancel_rc, 0);
  cr_assert_eq(s.close_rc, 0);
  cr_assert_null(s.errs);
  cr_assert_eq(s.c[0].result, -ECANCELED);
  cr_assert_eq(s.c[1].result, -ECANCELED);
  cr_assert_geq(s.elapsed, WEFT_MS(10));
  cr_assert_lt(s.elapsed, T_SLACK);
}

typedef struct {
  slot victim, other;
  int close_rc;
  bool done_before, done_after;
  char name[32];
} gchild_cancel_state;

static int short_20(void *arg) {
  slot *s = arg;
  s->result = weft_sleep(WEFT_MS(20));
  s->finished = 1;
  return 0;
}

static int cancel_one_child_main(void *arg) {
  gchild_cancel_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  weft_task *v = gspawn_named(g, long_sleeper, &s->victim, "victim");
  gspawn_named(g, short_20, &s->other, NULL);
  weft_yield();
  s->done_before = weft_task_done(v);
  /* The borrowed handle is valid until the child finishes. */
  snprintf(s->name, sizeof s->name, "%s", weft_task_name(v));
  cr_expect_eq(weft_cancel(v), 0);
  weft_sleep(WEFT_MS(5));
  s->done_after = weft_task_done(v);
  s->close_rc = weft_group_close(g, NULL);
  return 0;
}

/* The borrowed handle of a group child supports cancel, done and name;
 * a child cancelled with weft_cancel (returning -ECANCELED) is not an
 * error and does not cancel its siblings. */
Test(group, cancel_one_child, .timeout = 10) {
  gchild_cancel_state s = {0};
  cr_assert_eq(weft_run(cancel_one_child_main, &s), 0);
  cr_assert_not(s.done_before);
  cr_assert(s.done_after);
  cr_assert_str_eq(s.name, "victim");
  cr_assert_eq(s.victim.result, -ECANCELED);
  cr_assert_eq(s.other.result, 0);
  cr_assert_eq(s.close_rc, 0);
}

/* ---------------------------------------------------------------- */
/* weft_group_start / weft_started                                   */
/* ---------------------------------------------------------------- */

typedef struct {
  tlog log;
  int start_rc;
  void *value;
  int close_rc;
  weft_errors *errs;
  int started_again;
  slot bystander;
  int main_started;
} start_state;

static int ready_child(void *arg) {
  start_state *s = arg;
  weft_sleep(WEFT_MS(5));
  log_add(&s->log, 1);
  int r = weft_started((void *)(uintptr_t)0x1234);
  cr_expect_eq(r, 0);
  s->started_again = weft_started(NULL); /* already reported */
  weft_sleep(WEFT_MS(10));
  log_add(&s->log, 3);
  return 0;
}

static int start_main(void *arg) {
  start_state *s = arg;
  s->main_started = weft_started(NULL); /* not a start child */
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  s->start_rc = weft_group_start(g, ready_child, s, NULL, &s->value);
  log_add(&s->log, 2);
  s->close_rc = weft_group_close(g, &s->errs);
  log_add(&s->log, 4);
  return 0;
}

/* weft_group_start returns 0 once the child calls weft_started(value),
 * with that value, while the child keeps running in the group; calling
 * weft_started twice, or from a task not started that way, is -EINVAL. */
Test(group, start_ready_value, .timeout = 10) {
  start_state s = {0};
  cr_assert_eq(weft_run(start_main, &s), 0);
  cr_assert_eq(s.start_rc, 0);
  cr_assert_eq(s.value, (void *)(uintptr_t)0x1234);
  cr_assert_eq(s.started_again, -EINVAL);
  cr_assert_eq(s.main_started, -EINVAL);
  cr_assert_eq(s.close_rc, 0);
  cr_assert_null(s.errs);
  int want[] = {1, 2, 3, 4};
  log_expect(&s.log, want, 4);
}

static int fail_before_ready(void *arg) {
  (void)arg;
  weft_sleep(WEFT_MS(5));
  return weft_fail(-ECONNREFUSED, "could not bind");
}

static int start_fail_main(void *arg) {
  start_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  gspawn_named(g, short_20, &s->bystander, NULL);
  s->value = (void *)s;
  s->start_rc = weft_group_start(g, fail_before_ready, NULL, NULL, &s->value);
  s->close_rc = weft_group_close(g, &s->errs);
  return 0;
}

/* A start child that fails before reporting readiness makes
 * weft_group_start return its code; the group is not affected (the
 * other child completes normally, close returns 0, no errors). */
Test(group, start_child_fails_before_ready, .timeout = 10) {
  start_state s = {0};
  cr_assert_eq(weft_run(start_fail_main, &s), 0);
  cr_assert_eq(s.start_rc, -ECONNREFUSED);
  cr_assert_eq(s.close_rc, 0);
  cr_assert_null(s.errs);
  cr_assert_eq(s.bystander.result, 0);
  cr_assert_eq(s.bystander.finished, 1);
}

static int start_nostart_main(void *arg) {
  start_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  s->start_rc = weft_group_start(g, short_ok, &s->bystander, NULL, NULL);
  s->close_rc = weft_group_close(g, &s->errs);
  return 0;
}

/* A start child returning 0 without calling weft_started makes start
 * return WEFT_ENOTSTARTED; the group closes with 0. */
Test(group, start_child_returns_without_started, .timeout = 10) {
  start_state s = {0};
  cr_assert_eq(weft_run(start_nostart_main, &s), 0);
  cr_assert_eq(s.start_rc, WEFT_ENOTSTARTED);
  cr_assert_eq(s.close_rc, 0);
  cr_assert_null(s.errs);
}

static int fail_after_ready(void *arg) {
  (void)arg;
  weft_started(NULL);
  weft_sleep(WEFT_MS(5));
  return weft_fail(-EIO, "after ready");
}

static int start_fail_after_main(void *arg) {
  start_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  weft_spawn_opts o = {.name = "server"};
  s->start_rc = weft_group_start(g, fail_after_ready, NULL, &o, NULL);
  s->close_rc = weft_group_close(g, &s->errs);
  return 0;
}

/* After weft_started, a start child's failure belongs to the group. */
Test(group, start_child_fails_after_ready, .timeout = 10) {
  start_state s = {0};
  cr_assert_eq(weft_run(start_fail_after_main, &s), 0);
  cr_assert_eq(s.start_rc, 0);
  cr_assert_eq(s.close_rc, WEFT_EGROUP);
  cr_assert_eq(weft_errors_count(s.errs), 1);
  const char *n = NULL;
  int code = 0;
  cr_assert_eq(weft_errors_get(s.errs, 0, &n, &code, NULL), 0);
  cr_assert_str_eq(n, "server");
  cr_assert_eq(code, -EIO);
  weft_errors_free(s.errs);
}

typedef struct {
  slot child;
  int start_rc, close_rc, join_rc;
} start_cancel_state;

static int never_ready(void *arg) {
  slot *s = arg;
  s->result = weft_sleep(WEFT_SEC(10));
  s->finished = 1;
  return s->result;
}

static int start_waiter(void *arg) {
  start_cancel_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  s->start_rc = weft_group_start(g, never_ready, &s->child, NULL, NULL);
  s->close_rc = weft_group_close(g, NULL);
  return s->start_rc;
}

static int start_cancel_main(void *arg) {
  start_cancel_state *s = arg;
  weft_task *t = weft_spawn(start_waiter, s, NULL);
  weft_sleep(WEFT_MS(10));
  weft_cancel(t);
  s->join_rc = weft_join(t);
  return 0;
}

/* A caller cancelled while waiting in weft_group_start cancels the child,
 * waits for it, and start returns -ECANCELED. */
Test(group, start_caller_cancelled, .timeout = 10) {
  start_cancel_state s = {0};
  cr_assert_eq(weft_run(start_cancel_main, &s), 0);
  cr_assert_eq(s.start_rc, -ECANCELED);
  cr_assert_eq(s.child.result, -ECANCELED);
  cr_assert_eq(s.child.finished, 1);
  cr_assert_eq(s.close_rc, -ECANCELED);
  cr_assert_eq(s.join_rc, -ECANCELED);
}

/* ---------------------------------------------------------------- */
/* Names in error reports, weft_errors_print                         */
/* ---------------------------------------------------------------- */

static int quick_fail(void *arg) {
  int code = (int)(intptr_t)arg;
  if (code == -EIO)
    return weft_fail(code, "disk on fire");
  return code; /* no message */
}

typedef struct {
  int close_rc;
  size_t count;
  char expect_anon[32];
  char names[2][32];
  int print_rc, print_bad;
  char out[4096];
} print_state;

static int print_main(void *arg) {
  print_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  gspawn_named(g, quick_fail, (void *)(intptr_t)-EIO, "alpha-writer");
  weft_task *anon = gspawn_named(g, quick_fail, (void *)(intptr_t)-ENOSPC, NULL);
  snprintf(s->expect_anon, sizeof s->expect_anon, "task-%" PRIu64,
           weft_task_id(anon));
  weft_errors *e = NULL;
  s->close_rc = weft_group_close(g, &e);
  s->count = weft_errors_count(e);
  for (size_t i = 0; i < s->count && i < 2; i++) {
    const char *n = NULL;
    weft_errors_get(e, i, &n, NULL, NULL);
    snprintf(s->names[i], 32, "%s", n ? n : "(null)");
  }
  int p[2];
  cr_assert_eq(pipe(p), 0);
  s->print_rc = weft_errors_print(e, p[1]);
  close(p[1]);
  drain_fd(p[0], s->out, sizeof s->out);
  close(p[0]);
  s->print_bad = weft_errors_print(e, -1);
  weft_errors_free(e);
  return 0;
}

/* Error reports carry task names (given ones, and "task-N" for unnamed
 * tasks); weft_errors_print writes one line per failure with the name,
 * the code's name and the message; a bad fd gives -EBADF. */
Test(group, errors_print_and_names, .timeout = 10) {
  print_state s = {0};
  cr_assert_eq(weft_run(print_main, &s), 0);
  cr_assert_eq(s.close_rc, WEFT_EGROUP);
  cr_assert_eq(s.count, 2);
  cr_assert_str_eq(s.names[0], "alpha-writer");
  cr_assert_str_eq(s.names[1], s.expect_anon);
  cr_assert_eq(s.print_rc, 0);
  cr_log_info("errors_print:\n%s", s.out);
  cr_assert_eq(count_lines(s.out), 2, "output: %s", s.out);
  cr_assert_not_null(strstr(s.out, "alpha-writer"), "output: %s", s.out);
  cr_assert_not_null(strstr(s.out, "disk on fire"), "output: %s", s.out);
  cr_assert_not_null(strstr(s.out, weft_strerror(-EIO)), "output: %s", s.out);
  cr_assert_not_null(strstr(s.out, s.expect_anon), "output: %s", s.out);
  cr_assert_not_null(strstr(s.out, weft_strerror(-ENOSPC)), "output: %s",
                     s.out);
  /* first line is the first failure */
  cr_assert_lt(strstr(s.out, "alpha-writer"), strstr(s.out, s.expect_anon));
  cr_assert_eq(s.print_bad, -EBADF);
}

/* The NULL error list is empty and free-able. */
Test(group, errors_null_list, .timeout = 10) {
  cr_assert_eq(weft_errors_count(NULL), 0);
  cr_assert_eq(weft_errors_match(NULL, -EIO), 0);
  weft_errors_free(NULL);
}

/* ---------------------------------------------------------------- */
/* Failure while the body is waiting in close; the child's failure    */
/* before the body reaches close.                                     */
/* ---------------------------------------------------------------- */

typedef struct {
  slot s1;
  int close_rc;
  int64_t elapsed;
} inclose_state;

static int inclose_main(void *arg) {
  inclose_state *s = arg;
  int64_t t0 = weft_now();
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  gspawn_named(g, long_sleeper, &s->s1, NULL);
  gspawn_named(g, fail_after_10ms, NULL, NULL);
  weft_errors *e = NULL;
  s->close_rc = weft_group_close(g, &e);
  s->elapsed = weft_now() - t0;
  cr_expect_eq(weft_errors_count(e), 1);
  weft_errors_free(e);
  return 0;
}

/* A child failing while the body waits in close cancels the sleeping
 * sibling at once: close returns WEFT_EGROUP well before the sibling's
 * 10 s sleep. Passing errs NULL is fine. */
Test(group, failure_during_close, .timeout = 10) {
  inclose_state s = {0};
  cr_assert_eq(weft_run(inclose_main, &s), 0);
  cr_assert_eq(s.close_rc, WEFT_EGROUP);
  cr_assert_eq(s.s1.result, -ECANCELED);
  cr_assert_lt(s.elapsed, T_SLACK);
}

static int errs_null_main(void *arg) {
  int *rc = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  gspawn_named(g, quick_fail, (void *)(intptr_t)-EIO, NULL);
  *rc = weft_group_close(g, NULL);
  return 0;
}

/* close with errs NULL still reports WEFT_EGROUP (and leaks nothing). */
Test(group, close_errs_null, .timeout = 10) {
  int rc = 0;
  cr_assert_eq(weft_run(errs_null_main, &rc), 0);
  cr_assert_eq(rc, WEFT_EGROUP);
}

/* ---------------------------------------------------------------- */
/* An empty group                                                    */
/* ---------------------------------------------------------------- */

static int empty_main(void *arg) {
  int *rc = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  *rc = weft_group_close(g, NULL);
  return 0;
}

/* A group with no children closes at once with 0. */
Test(group, empty_group, .timeout = 10) {
  int rc = 1;
  cr_assert_eq(weft_run(empty_main, &rc), 0);
  cr_assert_eq(rc, 0);
}
