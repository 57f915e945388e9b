/*
 * test_combine.c -- combinators over tasks: gather, race, wait,
 * as_completed (asyncio.gather / wait / as_completed and the "first to
 * finish" pattern). Retry and the rate limiter: test_combine_limit.c.
 */
#include "helpers.h"

/* ---------------------------------------------------------------- */
/* Children: what each does is in its arg                            */
/* ---------------------------------------------------------------- */

typedef struct job {
  int64_t sleep; /* sleep this long first (0: no checkpoint at all) */
  int code;      /* then return this */
  int id;
  tlog *log;     /* optional: logs id on start, 100 + id at the end */
  int calls;     /* times the function was entered */
  int sleep_rc;  /* what the sleep returned */
  int finished;  /* reached its return */
} job;

static int run_job(void *arg) {
  job *j = arg;
  j->calls++;
  if (j->log) log_add(j->log, j->id);
  if (j->sleep) {
    j->sleep_rc = weft_sleep(j->sleep);
    if (j->sleep_rc) {
      j->finished = 1;
      return j->sleep_rc;
    }
  }
  if (j->log) log_add(j->log, 100 + j->id);
  j->finished = 1;
  return j->code;
}

static void calls_of(weft_call *calls, job *jobs, int n) {
  for (int i = 0; i < n; i++) calls[i] = (weft_call){run_job, &jobs[i]};
}

/* ---------------------------------------------------------------- */
/* gather                                                            */
/* ---------------------------------------------------------------- */

typedef struct {
  job j[5];
  tlog log;
  int rc;
  int results[5];
  int64_t elapsed;
} gst;

static int gather_ok_main(void *arg) {
  gst *s = arg;
  weft_call calls[5];
  for (int i = 0; i < 5; i++) {
    s->j[i] = (job){.sleep = WEFT_MS(10 * (5 - i)), .code = i == 3 ? 7 : 0,
                    .id = i, .log = &s->log};
    s->results[i] = -1;
  }
  calls_of(calls, s->j, 5);
  s->rc = weft_gather(calls, 5, s->results, 0);
  return 0;
}

/* Every function runs concurrently (all start before any ends; they end
 * in the order of their sleeps), and the codes come back in call order. */
Test(combine, gather_all_succeed, .timeout = 10) {
  gst s = {0};
  cr_assert_eq(weft_run(gather_ok_main, &s), 0);
  cr_assert_eq(s.rc, 0);
  int want_res[5] = {0, 0, 0, 7, 0};
  for (int i = 0; i < 5; i++)
    cr_assert_eq(s.results[i], want_res[i], "results[%d] = %d", i, s.results[i]);
  int want_log[] = {0, 1, 2, 3, 4, 104, 103, 102, 101, 100};
  log_expect(&s.log, want_log, 10);
}

static int gather_fail_main(void *arg) {
  gst *s = arg;
  s->j[0] = (job){.sleep = WEFT_SEC(10)};
  s->j[1] = (job){.sleep = WEFT_MS(10), .code = -EPROTO};
  s->j[2] = (job){.sleep = WEFT_SEC(10)};
  weft_call calls[3];
  calls_of(calls, s->j, 3);
  int64_t t0 = weft_now();
  s->rc = weft_gather(calls, 3, s->results, 0);
  s->elapsed = weft_now() - t0;
  /* Children never outlive the call. */
  for (int i = 0; i < 3; i++) cr_assert_eq(s->j[i].finished, 1, "child %d", i);
  return 0;
}

/* The first failure cancels the others, which finish before gather
 * returns it; their codes are -ECANCELED. */
Test(combine, gather_one_failure_cancels_rest, .timeout = 10) {
  gst s = {0};
  cr_assert_eq(weft_run(gather_fail_main, &s), 0);
  cr_assert_eq(s.rc, -EPROTO);
  cr_assert_eq(s.results[0], -ECANCELED);
  cr_assert_eq(s.results[1], -EPROTO);
  cr_assert_eq(s.results[2], -ECANCELED);
  cr_assert_eq(s.j[0].sleep_rc, -ECANCELED);
  cr_assert_eq(s.j[2].sleep_rc, -ECANCELED);
  cr_assert_lt(s.elapsed, T_SLACK, "took %.1f ms", MS_OF(s.elapsed));
}

static int gather_fail_first_main(void *arg) {
  gst *s = arg;
  s->j[0] = (job){.code = -EIO};
  for (int i = 1; i < 4; i++) s->j[i] = (job){.code = 0};
  weft_call calls[4];
  calls_of(calls, s->j, 4);
  s->rc = weft_gather(calls, 4, s->results, 0);
  return 0;
}

/* A function cancelled before it started is never called (asyncio: a
 * task cancelled before its first step never runs). */
Test(combine, gather_cancelled_before_start_never_runs, .timeout = 10) {
  gst s = {0};
  cr_assert_eq(weft_run(gather_fail_first_main, &s), 0);
  cr_assert_eq(s.rc, -EIO);
  cr_assert_eq(s.j[0].calls, 1);
  for (int i = 1; i < 4; i++) {
    cr_assert_eq(s.j[i].calls, 0, "function %d was called", i);
    cr_assert_eq(s.results[i], -ECANCELED);
  }
}

static int gather_all_main(void *arg) {
  gst *s = arg;
  s->j[0] = (job){.sleep = WEFT_MS(5), .code = -EIO};
  s->j[1] = (job){.sleep = WEFT_MS(30), .code = 0};
  s->j[2] = (job){.code = -ENOENT};
  s->j[3] = (job){.sleep = WEFT_MS(1), .code = 3};
  weft_call calls[4];
  calls_of(calls, s->j, 4);
  s->rc = weft_gather(calls, 4, s->results, WEFT_GATHER_ALL);
  return 0;
}

/* return_exceptions=True: failures cancel nothing; every code, in order. */
Test(combine, gather_collect_all, .timeout = 10) {
  gst s = {0};
  cr_assert_eq(weft_run(gather_all_main, &s), 0);
  cr_assert_eq(s.rc, 0);
  int want[4] = {-EIO, 0, -ENOENT, 3};
  for (int i = 0; i < 4; i++)
    cr_assert_eq(s.results[i], want[i], "results[%d] = %d", i, s.results[i]);
  cr_assert_eq(s.j[1].sleep_rc, 0, "the slow one was not cancelled");
}

static int gatherer(void *arg) {
  gst *s = arg;
  for (int i = 0; i < 3; i++) s->j[i] = (job){.sleep = WEFT_SEC(10)};
  weft_call calls[3];
  calls_of(calls, s->j, 3);
  s->rc = weft_gather(calls, 3, s->results, WEFT_GATHER_ALL);
  for (int i = 0; i < 3; i++) cr_assert_eq(s->j[i].finished, 1, "child %d", i);
  return s->rc;
}

static int gather_cancel_main(void *arg) {
  gst *s = arg;
  weft_task *t = spawn_named(gatherer, s, "gatherer");
  weft_sleep(WEFT_MS(10));
  cr_assert_eq(weft_cancel(t), 0);
  cr_assert_eq(weft_join(t), -ECANCELED);
  return 0;
}

/* Cancelling the caller cancels every child and waits for them. */
Test(combine, gather_caller_cancelled, .timeout = 10) {
  gst s = {0};
  cr_assert_eq(weft_run(gather_cancel_main, &s), 0);
  cr_assert_eq(s.rc, -ECANCELED);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(s.j[i].sleep_rc, -ECANCELED);
    cr_assert_eq(s.results[i], -ECANCELED);
  }
}

static int gather_deadline_main(void *arg) {
  gst *s = arg;
  for (int i = 0; i < 2; i++) s->j[i] = (job){.sleep = WEFT_SEC(10)};
  weft_call calls[2];
  calls_of(calls, s->j, 2);
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(20));
  s->rc = weft_gather(calls, 2, s->results, 0);
  cr_assert_eq(weft_scope_close(&sc), -ETIMEDOUT);
  return 0;
}

/* A deadline around gather (asyncio.timeout) cancels the children. */
Test(combine, gather_under_deadline, .timeout = 10) {
  gst s = {0};
  cr_assert_eq(weft_run(gather_deadline_main, &s), 0);
  cr_assert_eq(s.rc, -ECANCELED);
  cr_assert_eq(s.results[0], -ECANCELED);
  cr_assert_eq(s.results[1], -ECANCELED);
}

#define MANY 1000

typedef struct {
  int results[MANY];
  int rc, rc_fail, calls;
} many_st;

static int many_fn(void *arg) {
  intptr_t i = (intptr_t)arg;
  if (i % 2) weft_yield();
  return -(int)(i % 5);
}

static int many_main(void *arg) {
  many_st *s = arg;
  static weft_call calls[MANY];
  for (intptr_t i = 0; i < MANY; i++)
    calls[i] = (weft_call){many_fn, (void *)i};
  s->rc = weft_gather(calls, MANY, s->results, WEFT_GATHER_ALL);
  s->rc_fail = weft_gather(calls, MANY, NULL, 0); /* no results array */
  return 0;
}

/* More children than fit in the on-stack slots; results in order. */
Test(combine, gather_many, .timeout = 10) {
  static many_st s;
  cr_assert_eq(weft_run(many_main, &s), 0);
  cr_assert_eq(s.rc, 0);
  for (int i = 0; i < MANY; i++)
    cr_assert_eq(s.results[i], -(i % 5), "results[%d] = %d", i, s.results[i]);
  /* calls[1] yields first, so calls[2] is the first to fail. */
  cr_assert_eq(s.rc_fail, -2);
}

static int count_calls(void *arg) {
  (*(int *)arg)++;
  return 0;
}

typedef struct {
  int empty, null_calls, null_fn, bad_flags, cancelled, called;
  int res[2];
} gbad_st;

static int gather_bad_main(void *arg) {
  gbad_st *s = arg;
  weft_call ok[2] = {{count_calls, &s->called}, {count_calls, &s->called}};
  weft_call bad[2] = {{count_calls, &s->called}, {NULL, NULL}};
  s->empty = weft_gather(NULL, 0, NULL, 0);
  s->null_calls = weft_gather(NULL, 2, NULL, 0);
  s->null_fn = weft_gather(bad, 2, NULL, 0);
  s->bad_flags = weft_gather(ok, 2, NULL, 0x80);
  weft_scope sc;
  weft_scope_open(&sc, WEFT_FOREVER);
  weft_scope_cancel(&sc);
  s->cancelled = weft_gather(ok, 2, s->res, 0);
  weft_scope_close(&sc);
  return 0;
}

Test(combine, gather_bad_input, .timeout = 10) {
  weft_call ok[1] = {{count_calls, NULL}};
  cr_assert_eq(weft_gather(ok, 1, NULL, 0), WEFT_ENOTASK);
  gbad_st s = {0};
  cr_assert_eq(weft_run(gather_bad_main, &s), 0);
  cr_assert_eq(s.empty, 0);
  cr_assert_eq(s.null_calls, -EINVAL);
  cr_assert_eq(s.null_fn, -EINVAL);
  cr_assert_eq(s.bad_flags, -EINVAL);
  cr_assert_eq(s.cancelled, -ECANCELED);
  cr_assert_eq(s.res[0], -ECANCELED);
  cr_assert_eq(s.res[1], -ECANCELED);
  cr_assert_eq(s.called, 0, "nothing runs on bad input or when cancelled");
}

/* ---------------------------------------------------------------- */
/* race                                                              */
/* ---------------------------------------------------------------- */

typedef struct {
  job j[4];
  int rc, results[4];
  size_t winner;
} rst;

static int race_main(void *arg) {
  rst *s = arg;
  s->j[0] = (job){.sleep = WEFT_SEC(10), .code = 0};
  s->j[1] = (job){.sleep = WEFT_MS(5), .code = -ECONNREFUSED};
  s->j[2] = (job){.sleep = WEFT_MS(20), .code = 42};
  s->j[3] = (job){.sleep = WEFT_SEC(10), .code = 0};
  weft_call calls[4];
  calls_of(calls, s->j, 4);
  s->rc = weft_race(calls, 4, s->results, &s->winner);
  for (int i = 0; i < 4; i++) cr_assert_eq(s->j[i].finished, 1, "child %d", i);
  return 0;
}

/* The first success wins (a failure before it does not); the others are
 * cancelled and waited for. */
Test(combine, race_first_success_wins, .timeout = 10) {
  rst s = {0};
  cr_assert_eq(weft_run(race_main, &s), 0);
  cr_assert_eq(s.rc, 42);
  cr_assert_eq(s.winner, 2);
  cr_assert_eq(s.results[1], -ECONNREFUSED);
  cr_assert_eq(s.results[2], 42);
  cr_assert_eq(s.results[0], -ECANCELED);
  cr_assert_eq(s.results[3], -ECANCELED);
  cr_assert_eq(s.j[0].sleep_rc, -ECANCELED);
}

static int race_fail_main(void *arg) {
  rst *s = arg;
  s->j[0] = (job){.sleep = WEFT_MS(20), .code = -EIO};
  s->j[1] = (job){.sleep = WEFT_MS(5), .code = -ECONNREFUSED};
  s->j[2] = (job){.sleep = WEFT_MS(40), .code = -EHOSTUNREACH};
  weft_call calls[3];
  calls_of(calls, s->j, 3);
  s->rc = weft_race(calls, 3, s->results, &s->winner);
  return 0;
}

/* All fail: the first failure (in time) is returned, every one reported. */
Test(combine, race_all_fail, .timeout = 10) {
  rst s = {0};
  cr_assert_eq(weft_run(race_fail_main, &s), 0);
  cr_assert_eq(s.rc, -ECONNREFUSED);
  cr_assert_eq(s.winner, 3, "winner = n when nobody won");
  cr_assert_eq(s.results[0], -EIO);
  cr_assert_eq(s.results[1], -ECONNREFUSED);
  cr_assert_eq(s.results[2], -EHOSTUNREACH);
}

static int racer(void *arg) {
  rst *s = arg;
  for (int i = 0; i < 2; i++) s->j[i] = (job){.sleep = WEFT_SEC(10)};
  weft_call calls[2];
  calls_of(calls, s->j, 2);
  s->rc = weft_race(calls, 2, NULL, &s->winner);
  return 0;
}

static int race_cancel_main(void *arg) {
  rst *s = arg;
  weft_task *t = spawn_named(racer, s, "racer");
  weft_sleep(WEFT_MS(10));
  weft_cancel(t);
  cr_assert_eq(weft_join(t), 0);
  return 0;
}

Test(combine, race_caller_cancelled, .timeout = 10) {
  rst s = {0};
  cr_assert_eq(weft_run(race_cancel_main, &s), 0);
  cr_assert_eq(s.rc, -ECANCELED);
  cr_assert_eq(s.winner, 2);
  cr_assert_eq(s.j[0].finished, 1);
  cr_assert_eq(s.j[1].finished, 1);
}

typedef struct {
  int empty, null_calls, null_fn, one;
  size_t winner;
} rbad_st;

static int race_bad_main(void *arg) {
  rbad_st *s = arg;
  int n = 0;
  weft_call bad[2] = {{count_calls, &n}, {NULL, NULL}};
  weft_call ok[1] = {{count_calls, &n}};
  s->empty = weft_race(ok, 0, NULL, &s->winner);
  s->null_calls = weft_race(NULL, 2, NULL, NULL);
  s->null_fn = weft_race(bad, 2, NULL, NULL);
  s->one = weft_race(ok, 1, NULL, &s->winner);
  return 0;
}

Test(combine, race_bad_input, .timeout = 10) {
  weft_call ok[1] = {{count_calls, NULL}};
  size_t w = 99;
  cr_assert_eq(weft_race(ok, 1, NULL, &w), WEFT_ENOTASK);
  cr_assert_eq(w, 1);
  rbad_st s = {0};
  cr_assert_eq(weft_run(race_bad_main, &s), 0);
  cr_assert_eq(s.empty, -EINVAL);
  cr_assert_eq(s.null_calls, -EINVAL);
  cr_assert_eq(s.null_fn, -EINVAL);
  cr_assert_eq(s.one, 0);
  cr_assert_eq(s.winner, 0);
}

/* ---------------------------------------------------------------- */
/* wait                                                              */
/* ---------------------------------------------------------------- */

typedef struct {
  job j[4];
  int rc, rc2;
  bool done[4];
  int64_t elapsed, late;
  int joined[4];
  weft_task *t[4];
} wst;

static weft_task *spawn_job(job *j) { return spawn_named(run_job, j, NULL); }

static int wait_deadline_main(void *arg) {
  wst *s = arg;
  s->j[0] = (job){.sleep = WEFT_SEC(10)};
  s->j[1] = (job){.sleep = WEFT_SEC(10)};
  weft_task *t[2] = {spawn_job(&s->j[0]), spawn_job(&s->j[1])};
  s->done[0] = s->done[1] = true;
  int64_t t0 = weft_now(), deadline = t0 + WEFT_MS(30);
  s->rc = weft_wait_until(t, 2, WEFT_FIRST_COMPLETED, s->done, deadline);
  int64_t t1 = weft_now();
  s->elapsed = t1 - t0;
  s->late = t1 - deadline;
  /* Nothing was cancelled and the handles are still ours. */
  cr_assert_eq(s->j[0].finished, 0);
  for (int i = 0; i < 2; i++) {
    weft_cancel(t[i]);
    s->joined[i] = weft_join(t[i]);
  }
  return 0;
}

/* FIRST_COMPLETED with a deadline that fires first: a normal return with
 * nothing done (asyncio returns (set(), pending)). */
Test(combine, wait_first_completed_deadline_fires_first, .timeout = 10) {
  wst s = {0};
  cr_assert_eq(weft_run(wait_deadline_main, &s), 0);
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(s.done[0], false);
  cr_assert_eq(s.done[1], false);
  cr_assert_geq(s.late, 0, "returned %.3f ms before the deadline", MS_OF(-s.late));
  cr_assert_lt(s.elapsed, T_SLACK);
  cr_assert_eq(s.joined[0], -ECANCELED);
  cr_assert_eq(s.joined[1], -ECANCELED);
}

static int wait_first_main(void *arg) {
  wst *s = arg;
  s->j[0] = (job){.sleep = WEFT_SEC(10)};
  s->j[1] = (job){.sleep = WEFT_MS(10), .code = 5};
  s->j[2] = (job){.sleep = WEFT_SEC(10)};
  weft_task *t[3];
  for (int i = 0; i < 3; i++) t[i] = spawn_job(&s->j[i]);
  s->rc = weft_wait(t, 3, WEFT_FIRST_COMPLETED, s->done);
  cr_assert_eq(weft_task_done(t[0]), false);
  for (int i = 0; i < 3; i++) {
    if (i != 1) weft_cancel(t[i]);
    s->joined[i] = weft_join(t[i]);
  }
  return 0;
}

Test(combine, wait_first_completed, .timeout = 10) {
  wst s = {0};
  cr_assert_eq(weft_run(wait_first_main, &s), 0);
  cr_assert_eq(s.rc, 1);
  cr_assert_eq(s.done[0], false);
  cr_assert_eq(s.done[1], true);
  cr_assert_eq(s.done[2], false);
  cr_assert_eq(s.joined[1], 5);
  cr_assert_eq(s.joined[0], -ECANCELED);
}

static int wait_exc_main(void *arg) {
  wst *s = arg;
  s->j[0] = (job){.sleep = WEFT_MS(2)};
  s->j[1] = (job){.sleep = WEFT_MS(5), .code = -ECANCELED}; /* not an exception */
  s->j[2] = (job){.sleep = WEFT_MS(30), .code = -EIO};
  s->j[3] = (job){.sleep = WEFT_SEC(10)};
  weft_task *t[4];
  for (int i = 0; i < 4; i++) t[i] = spawn_job(&s->j[i]);
  s->rc = weft_wait(t, 4, WEFT_FIRST_EXCEPTION, s->done);
  weft_cancel(t[3]);
  for (int i = 0; i < 4; i++) s->joined[i] = weft_join(t[i]);
  /* No failure at all: FIRST_EXCEPTION waits for every task. */
  job k[2] = {{.sleep = WEFT_MS(2)}, {.sleep = WEFT_MS(15), .code = 1}};
  weft_task *u[2] = {spawn_job(&k[0]), spawn_job(&k[1])};
  s->rc2 = weft_wait(u, 2, WEFT_FIRST_EXCEPTION, NULL);
  cr_assert(weft_task_done(u[1]));
  weft_join(u[0]);
  weft_join(u[1]);
  return 0;
}

Test(combine, wait_first_exception, .timeout = 10) {
  wst s = {0};
  cr_assert_eq(weft_run(wait_exc_main, &s), 0);
  cr_assert_eq(s.rc, 3);
  cr_assert_eq(s.done[2], true);
  cr_assert_eq(s.done[3], false);
  cr_assert_eq(s.joined[2], -EIO);
  cr_assert_eq(s.rc2, 2);
}

static int wait_all_main(void *arg) {
  wst *s = arg;
  for (int i = 0; i < 3; i++) s->j[i] = (job){.sleep = WEFT_MS(5 * (3 - i)), .code = -i};
  weft_task *t[4];
  for (int i = 0; i < 3; i++) t[i] = spawn_job(&s->j[i]);
  t[3] = t[1]; /* the same handle twice counts twice */
  s->rc = weft_wait(t, 4, WEFT_ALL_COMPLETED, s->done);
  for (int i = 0; i < 3; i++) s->joined[i] = weft_join(t[i]);
  /* Already satisfied: returns at once, without waiting. */
  job k = {0};
  weft_task *u = spawn_job(&k);
  while (!weft_task_done(u)) weft_yield();
  int64_t t0 = weft_now();
  s->rc2 = weft_wait(&u, 1, WEFT_ALL_COMPLETED, NULL);
  s->elapsed = weft_now() - t0;
  weft_join(u);
  return 0;
}

Test(combine, wait_all_completed, .timeout = 10) {
  wst s = {0};
  cr_assert_eq(weft_run(wait_all_main, &s), 0);
  cr_assert_eq(s.rc, 4);
  for (int i = 0; i < 4; i++) cr_assert_eq(s.done[i], true);
  for (int i = 0; i < 3; i++) cr_assert_eq(s.joined[i], -i);
  cr_assert_eq(s.rc2, 1);
  cr_assert_lt(s.elapsed, T_SLACK);
}

static int wait_cancelled_waiter(void *arg) {
  wst *s = arg;
  s->rc = weft_wait(s->t, 2, WEFT_ALL_COMPLETED, NULL);
  return 0;
}

static int wait_cancel_main(void *arg) {
  wst *s = arg;
  s->j[0] = (job){.sleep = WEFT_MS(40), .code = 1};
  s->j[1] = (job){.sleep = WEFT_MS(50), .code = 2};
  weft_task **t = s->t;
  t[0] = spawn_job(&s->j[0]);
  t[1] = spawn_job(&s->j[1]);
  weft_task *w = spawn_named(wait_cancelled_waiter, s, "waiter");
  weft_sleep(WEFT_MS(5));
  weft_cancel(w);
  weft_join(w);
  /* The watched tasks run on and finish after the wait has gone: their
   * ends must not touch its (dead) records. */
  s->joined[0] = weft_join(t[0]);
  s->joined[1] = weft_join(t[1]);
  return 0;
}

/* A cancelled waiter returns -ECANCELED and cancels nothing. */
Test(combine, wait_caller_cancelled, .timeout = 10) {
  wst s = {0};
  cr_assert_eq(weft_run(wait_cancel_main, &s), 0);
  cr_assert_eq(s.rc, -ECANCELED);
  cr_assert_eq(s.joined[0], 1);
  cr_assert_eq(s.joined[1], 2);
}

static int sleeper10(void *arg) {
  (void)arg;
  return weft_sleep(WEFT_SEC(10));
}

typedef struct {
  int null_tasks, zero, null_entry, bad_mode, group_child, joined,
      detached, self, other;
} wbad_st;

static int wait_bad_main(void *arg) {
  wbad_st *s = arg;
  weft_task *t = spawn_named(sleeper10, NULL, "t");
  weft_task *nul[2] = {t, NULL};
  s->null_tasks = weft_wait(NULL, 1, WEFT_ALL_COMPLETED, NULL);
  s->zero = weft_wait(&t, 0, WEFT_ALL_COMPLETED, NULL);
  s->null_entry = weft_wait(nul, 2, WEFT_ALL_COMPLETED, NULL);
  s->bad_mode = weft_wait(&t, 1, 7, NULL);
  weft_task *self = weft_current();
  s->self = weft_wait(&self, 1, WEFT_ALL_COMPLETED, NULL);
  weft_group *g = weft_group_open();
  weft_task *c = weft_group_spawn(g, sleeper10, NULL, NULL);
  s->group_child = weft_wait(&c, 1, WEFT_ALL_COMPLETED, NULL);
  weft_group_cancel(g);
  weft_group_close(g, NULL);
  weft_task *d = spawn_named(sleeper10, NULL, "d");
  weft_detach(d);
  s->detached = weft_wait(&d, 1, WEFT_ALL_COMPLETED, NULL);
  weft_cancel(t);
  weft_join(t);
  s->joined = weft_wait(&t, 1, WEFT_ALL_COMPLETED, NULL);
  return 0;
}

Test(combine, wait_bad_input, .timeout = 10) {
  weft_task *none = NULL;
  cr_assert_eq(weft_wait(&none, 1, WEFT_ALL_COMPLETED, NULL),
               WEFT_ENOTASK);
  wbad_st s = {0};
  cr_assert_eq(weft_run(wait_bad_main, &s), 0);
  cr_assert_eq(s.null_tasks, -EINVAL);
  cr_assert_eq(s.zero, -EINVAL);
  cr_assert_eq(s.null_entry, -EINVAL);
  cr_assert_eq(s.bad_mode, -EINVAL);
  cr_assert_eq(s.self, -EDEADLK);
  cr_assert_eq(s.group_child, -EINVAL);
  cr_assert_eq(s.detached, -ESRCH);
  cr_assert_eq(s.joined, -ESRCH);
}

/* ---------------------------------------------------------------- */
/* as_completed                                                      */
/* ---------------------------------------------------------------- */

typedef struct {
  job j[4];
  int order[8], rc[8], n;
  int end, again, closed, joined[4];
  int64_t late;
  weft_task *t[4];
} ast;

static int index_of(weft_task *const *t, int n, weft_task *x) {
  for (int i = 0; i < n; i++)
    if (t[i] == x) return i;
  return -1;
}

static int ac_order_main(void *arg) {
  ast *s = arg;
  s->j[0] = (job){.code = 10};            /* done before init */
  /* 40 ms apart: the order holds even when starting a task is slow
   * (sanitizers, qemu). */
  s->j[1] = (job){.sleep = WEFT_MS(90), .code = 11};
  s->j[2] = (job){.sleep = WEFT_MS(10), .code = 12};
  s->j[3] = (job){.sleep = WEFT_MS(50), .code = 13};
  weft_task *t[4];
  for (int i = 0; i < 4; i++) t[i] = spawn_job(&s->j[i]);
  while (!weft_task_done(t[0])) weft_yield();
  weft_as_completed it;
  cr_assert_eq(weft_as_completed_init(&it, t, 4), 0);
  weft_task *x;
  int rc;
  while ((rc = weft_as_completed_next(&it, &x)) == 0) {
    int i = index_of(t, 4, x);
    s->order[s->n] = i;
    s->rc[s->n++] = weft_join(x);
  }
  s->end = rc;
  s->again = weft_as_completed_next(&it, &x);
  weft_as_completed_close(&it);
  s->closed = weft_as_completed_next(&it, &x);
  return 0;
}

Test(combine, as_completed_order, .timeout = 10) {
  ast s = {0};
  cr_assert_eq(weft_run(ac_order_main, &s), 0);
  cr_assert_eq(s.n, 4);
  int want[4] = {0, 2, 3, 1};
  for (int i = 0; i < 4; i++) {
    cr_assert_eq(s.order[i], want[i], "order[%d] = %d", i, s.order[i]);
    cr_assert_eq(s.rc[i], 10 + want[i]);
  }
  cr_assert_eq(s.end, WEFT_EEND);
  cr_assert_eq(s.again, WEFT_EEND);
  cr_assert_eq(s.closed, -EINVAL);
}

/* A second task calling next while the first waits in it gets -EBUSY
 * and disturbs nothing. */
typedef struct {
  weft_as_completed it;
  int busy;
} ac_busy;

static int ac_second(void *arg) {
  ac_busy *b = arg;
  weft_task *x;
  b->busy = weft_as_completed_next(&b->it, &x);
  return 0;
}

static int ac_busy_main(void *arg) {
  ast *s = arg;
  ac_busy b = {0};
  s->j[0] = (job){.sleep = WEFT_MS(10), .code = 7};
  weft_task *t = spawn_job(&s->j[0]);
  cr_assert_eq(weft_as_completed_init(&b.it, &t, 1), 0);
  weft_task *other = weft_spawn(ac_second, &b, NULL);
  weft_task *x = NULL;
  s->rc[0] = weft_as_completed_next(&b.it, &x); /* other runs meanwhile */
  s->rc[1] = x == t;
  s->rc[2] = weft_join(t);
  weft_join(other);
  s->end = weft_as_completed_next(&b.it, &x);
  weft_as_completed_close(&b.it);
  s->again = b.busy;
  return 0;
}

Test(combine, as_completed_one_task_at_a_time, .timeout = 10) {
  ast s = {0};
  cr_assert_eq(weft_run(ac_busy_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[1], 1);
  cr_assert_eq(s.rc[2], 7);
  cr_assert_eq(s.again, -EBUSY);
  cr_assert_eq(s.end, WEFT_EEND);
}

static int ac_deadline_main(void *arg) {
  ast *s = arg;
  s->j[0] = (job){.sleep = WEFT_MS(5)};
  s->j[1] = (job){.sleep = WEFT_SEC(10)};
  weft_task *t[2] = {spawn_job(&s->j[0]), spawn_job(&s->j[1])};
  int64_t deadline = weft_now() + WEFT_MS(40);
  weft_as_completed it;
  cr_assert_eq(weft_as_completed_init_until(&it, t, 2, deadline), 0);
  weft_task *x;
  s->rc[0] = weft_as_completed_next(&it, &x);
  s->order[0] = index_of(t, 2, x);
  s->rc[1] = weft_as_completed_next(&it, &x);
  s->late = weft_now() - deadline;
  cr_assert_null(x);
  s->rc[2] = weft_as_completed_next(&it, &x); /* again, without blocking */
  /* A task that finishes after the deadline still comes out. */
  weft_cancel(t[1]);
  while (!weft_task_done(t[1])) weft_yield();
  s->rc[3] = weft_as_completed_next(&it, &x);
  s->order[1] = index_of(t, 2, x);
  s->rc[4] = weft_as_completed_next(&it, &x);
  weft_as_completed_close(&it);
  s->joined[0] = weft_join(t[0]);
  s->joined[1] = weft_join(t[1]);
  return 0;
}

Test(combine, as_completed_deadline, .timeout = 10) {
  ast s = {0};
  cr_assert_eq(weft_run(ac_deadline_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.order[0], 0);
  cr_assert_eq(s.rc[1], -ETIMEDOUT);
  cr_assert_geq(s.late, 0, "timed out %.3f ms early", MS_OF(-s.late));
  cr_assert_lt(s.late, T_SLACK);
  cr_assert_eq(s.rc[2], -ETIMEDOUT);
  cr_assert_eq(s.rc[3], 0);
  cr_assert_eq(s.order[1], 1);
  cr_assert_eq(s.rc[4], WEFT_EEND);
  cr_assert_eq(s.joined[1], -ECANCELED);
}

static int ac_close_main(void *arg) {
  ast *s = arg;
  for (int i = 0; i < 3; i++) s->j[i] = (job){.sleep = WEFT_MS(5 + 5 * i), .code = i};
  weft_task *t[3];
  for (int i = 0; i < 3; i++) t[i] = spawn_job(&s->j[i]);
  weft_as_completed it;
  cr_assert_eq(weft_as_completed_init(&it, t, 3), 0);
  weft_task *x;
  s->rc[0] = weft_as_completed_next(&it, &x);
  s->order[0] = index_of(t, 3, x);
  /* Stop early; the others finish later and must not touch the freed
   * iterator. A cancelled next() loses nothing. */
  weft_scope sc;
  weft_scope_open(&sc, WEFT_FOREVER);
  weft_scope_cancel(&sc);
  s->rc[1] = weft_as_completed_next(&it, &x);
  weft_scope_close(&sc);
  weft_as_completed_close(&it);
  weft_as_completed_close(&it); /* twice is harmless */
  for (int i = 0; i < 3; i++) s->joined[i] = weft_join(t[i]);
  return 0;
}

Test(combine, as_completed_close_early, .timeout = 10) {
  ast s = {0};
  cr_assert_eq(weft_run(ac_close_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.order[0], 0);
  cr_assert_eq(s.rc[1], -ECANCELED);
  for (int i = 0; i < 3; i++) cr_assert_eq(s.joined[i], i);
}

static int ac_cancel_waiter(void *arg) {
  ast *s = arg;
  weft_task **t = s->t;
  weft_as_completed it;
  cr_assert_eq(weft_as_completed_init(&it, t, 1), 0);
  weft_task *x;
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(10));
  s->rc[0] = weft_as_completed_next(&it, &x); /* the scope's deadline */
  s->rc[1] = weft_scope_close(&sc);
  s->rc[2] = weft_as_completed_next(&it, &x); /* the task, later */
  s->order[0] = x == t[0];
  s->rc[3] = weft_as_completed_next(&it, &x);
  weft_as_completed_close(&it);
  return 0;
}

static int ac_cancel_main(void *arg) {
  ast *s = arg;
  s->j[0] = (job){.sleep = WEFT_MS(30), .code = 4};
  s->t[0] = spawn_job(&s->j[0]);
  weft_task *w = spawn_named(ac_cancel_waiter, s, "w");
  weft_join(w);
  s->joined[0] = weft_join(s->t[0]);
  return 0;
}

/* A scope around next() interrupts it with -ECANCELED (not the
 * iterator's own -ETIMEDOUT); the iteration goes on afterwards. */
Test(combine, as_completed_interrupted_by_scope, .timeout = 10) {
  ast s = {0};
  cr_assert_eq(weft_run(ac_cancel_main, &s), 0);
  cr_assert_eq(s.rc[0], -ECANCELED);
  cr_assert_eq(s.rc[1], -ETIMEDOUT);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.order[0], 1);
  cr_assert_eq(s.rc[3], WEFT_EEND);
  cr_assert_eq(s.joined[0], 4);
}

typedef struct {
  int null_it, null_tasks, null_entry, empty_init, empty_next, null_out,
      joined, group_child;
} acbad_st;

static int ac_bad_main(void *arg) {
  acbad_st *s = arg;
  weft_as_completed it;
  weft_task *t = spawn_named(sleeper10, NULL, "t");
  weft_task *nul[1] = {NULL};
  weft_task *x;
  s->null_it = weft_as_completed_init(NULL, &t, 1);
  s->null_tasks = weft_as_completed_init(&it, NULL, 1);
  s->null_entry = weft_as_completed_init(&it, nul, 1);
  s->empty_init = weft_as_completed_init(&it, NULL, 0);
  s->null_out = weft_as_completed_next(&it, NULL);
  s->empty_next = weft_as_completed_next(&it, &x);
  weft_as_completed_close(&it);
  weft_group *g = weft_group_open();
  weft_task *c = weft_group_spawn(g, sleeper10, NULL, NULL);
  s->group_child = weft_as_completed_init(&it, &c, 1);
  weft_group_cancel(g);
  weft_group_close(g, NULL);
  weft_cancel(t);
  weft_join(t);
  s->joined = weft_as_completed_init(&it, &t, 1);
  weft_as_completed_close(NULL);
  return 0;
}

Test(combine, as_completed_bad_input, .timeout = 10) {
  weft_as_completed it;
  weft_task *x = NULL;
  cr_assert_eq(weft_as_completed_init(&it, &x, 0), WEFT_ENOTASK);
  cr_assert_eq(weft_as_completed_next(&it, &x), -EINVAL, "init failed: closed");
  acbad_st s = {0};
  cr_assert_eq(weft_run(ac_bad_main, &s), 0);
  cr_assert_eq(s.null_it, -EINVAL);
  cr_assert_eq(s.null_tasks, -EINVAL);
  cr_assert_eq(s.null_entry, -EINVAL);
  cr_assert_eq(s.empty_init, 0);
  cr_assert_eq(s.null_out, -EINVAL);
  cr_assert_eq(s.empty_next, WEFT_EEND);
  cr_assert_eq(s.group_child, -EINVAL);
  cr_assert_eq(s.joined, -ESRCH);
}
