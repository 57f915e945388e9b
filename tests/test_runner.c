/*
 * test_runner.c -- weft_run and weft_runner_*: results, reaping of
 * leftover tasks, state kept between runner calls, wrong-thread calls,
 * one loop per thread.
 */
#include <pthread.h>

#include "helpers.h"

static int ret_arg(void *arg) { return (int)(intptr_t)arg; }

/* weft_run returns main's result, whatever it is. */
Test(runner, run_returns_main_code, .timeout = 10) {
  cr_assert_eq(weft_run(ret_arg, (void *)(intptr_t)0), 0);
  cr_assert_eq(weft_run(ret_arg, (void *)(intptr_t)42), 42);
  cr_assert_eq(weft_run(ret_arg, (void *)(intptr_t)-EIO), -EIO);
  cr_assert_eq(weft_run(ret_arg, (void *)(intptr_t)WEFT_EGROUP), WEFT_EGROUP);
  cr_assert_null(weft_loop_current());
}

/* ---------------------------------------------------------------- */
/* weft_run reaps leftovers                                          */
/* ---------------------------------------------------------------- */

typedef struct {
  int det_res, det_exited;
  int held_res, held_exited;
  int ignorer_first, ignorer_later, ignorer_exited;
  int64_t main_end, run_end;
} reap_state;

static int forever_det(void *arg) {
  reap_state *s = arg;
  s->det_res = weft_sleep(WEFT_FOREVER);
  s->det_exited = 1;
  return 0;
}

static int forever_held(void *arg) {
  reap_state *s = arg;
  s->held_res = weft_sleep_until(WEFT_FOREVER);
  s->held_exited = 1;
  return 0;
}

static int ignorer(void *arg) {
  reap_state *s = arg;
  s->ignorer_first = weft_sleep(WEFT_SEC(30));
  /* swallow it: the level-triggered cancel keeps coming */
  s->ignorer_later = weft_sleep(WEFT_SEC(30));
  s->ignorer_exited = 1;
  return 0;
}

static int reap_main(void *arg) {
  reap_state *s = arg;
  weft_task *d = weft_spawn(forever_det, s, NULL);
  cr_assert_not_null(d);
  cr_assert_eq(weft_detach(d), 0);
  /* never joined nor detached: */
  cr_assert_not_null(weft_spawn(forever_held, s, NULL));
  cr_assert_not_null(weft_spawn(ignorer, s, NULL));
  weft_sleep(WEFT_MS(5));
  s->main_end = weft_now();
  return 17;
}

/* When main returns, weft_run cancels every task still alive (a detached
 * one sleeping forever, an unjoined handle, one that swallows a first
 * -ECANCELED), waits for them to finish, and returns main's code. */
Test(runner, run_reaps_leftovers, .timeout = 10) {
  reap_state s = {0};
  cr_assert_eq(weft_run(reap_main, &s), 17);
  s.run_end = weft_now();
  cr_assert_eq(s.det_res, -ECANCELED);
  cr_assert_eq(s.det_exited, 1);
  cr_assert_eq(s.held_res, -ECANCELED);
  cr_assert_eq(s.held_exited, 1);
  cr_assert_eq(s.ignorer_first, -ECANCELED);
  cr_assert_eq(s.ignorer_later, -ECANCELED);
  cr_assert_eq(s.ignorer_exited, 1);
  cr_assert_lt(s.run_end - s.main_end, T_SLACK);
}

/* ---------------------------------------------------------------- */
/* Runner: state persists between runs                               */
/* ---------------------------------------------------------------- */

typedef struct {
  volatile int ticks;
  int bg_res, bg_exited;
  int ticks_end_run1, ticks_start_run2, ticks_end_run2;
  weft_loop *loop1, *loop2;
  uint64_t id1, id2;
  weft_task *held;
  int held_join;
} persist_state;

static int background(void *arg) {
  persist_state *s = arg;
  int r;
  while ((r = weft_sleep(WEFT_MS(2))) == 0)
    s->ticks++;
  s->bg_res = r;
  s->bg_exited = 1;
  return 0;
}

static int ret_5_later(void *arg) {
  (void)arg;
  weft_sleep(WEFT_MS(5));
  return 5;
}

static int run1(void *arg) {
  persist_state *s = arg;
  s->loop1 = weft_loop_current();
  s->id1 = weft_task_id(weft_current());
  weft_task *t = weft_spawn(background, s, NULL);
  cr_assert_not_null(t);
  weft_detach(t);
  s->held = weft_spawn(ret_5_later, NULL, NULL);
  cr_assert_not_null(s->held);
  weft_sleep(WEFT_MS(30));
  s->ticks_end_run1 = s->ticks;
  return 7;
}

static int run2(void *arg) {
  persist_state *s = arg;
  s->loop2 = weft_loop_current();
  s->id2 = weft_task_id(weft_current());
  s->ticks_start_run2 = s->ticks;
  s->held_join = weft_join(s->held); /* a handle from the first run */
  weft_sleep(WEFT_MS(30));
  s->ticks_end_run2 = s->ticks;
  return 8;
}

/* A runner keeps one loop across calls: a detached task started in the
 * first run does not run between runs but keeps running in the second,
 * a handle from the first run can be joined in the second, ids keep
 * increasing; weft_runner_close cancels the leftover (it saw
 * -ECANCELED) and reaps it. */
Test(runner, runner_state_persists, .timeout = 10) {
  persist_state s = {0};
  weft_runner *r = weft_runner_open(NULL);
  cr_assert_not_null(r);
  cr_assert_eq(weft_runner_run(r, run1, &s), 7);
  int between = s.ticks;
  usleep(30000); /* the loop is not running now */
  cr_assert_eq(s.ticks, between, "background task ran between runs");
  cr_assert_eq(weft_runner_run(r, run2, &s), 8);
  cr_assert_gt(s.ticks_end_run1, 0);
  cr_assert_gt(s.ticks_end_run2, s.ticks_start_run2,
               "background task did not run during the second run");
  cr_assert_eq(s.held_join, 5);
  cr_assert_not_null(s.loop1);
  cr_assert_eq(s.loop1, s.loop2);
  cr_assert_gt(s.id2, s.id1);
  cr_assert_eq(s.bg_exited, 0);
  cr_assert_eq(weft_runner_close(r), 0);
  cr_assert_eq(s.bg_exited, 1);
  cr_assert_eq(s.bg_res, -ECANCELED);
  cr_assert_null(weft_loop_current());
  /* the thread is free for a new loop */
  cr_assert_eq(weft_run(ret_arg, (void *)(intptr_t)3), 3);
}

typedef struct {
  weft_runner *r;
  int run_rc, close_rc;
} inner_state;

static int runner_from_task(void *arg) {
  inner_state *s = arg;
  s->run_rc = weft_runner_run(s->r, ret_arg, NULL);
  s->close_rc = weft_runner_close(s->r);
  return 0;
}

/* Runner misuse: NULL runner / fn are -EINVAL; runner_run and
 * runner_close from inside a task are -EBUSY (and leave the runner
 * usable); a second runner or weft_run while one is open on the thread is
 * EBUSY. */
Test(runner, runner_misuse, .timeout = 10) {
  cr_assert_eq(weft_runner_run(NULL, ret_arg, NULL), -EINVAL);
  cr_assert_eq(weft_runner_close(NULL), -EINVAL);
  weft_runner *r = weft_runner_open(NULL);
  cr_assert_not_null(r);
  cr_assert_eq(weft_runner_run(r, NULL, NULL), -EINVAL);
  errno = 0;
  cr_assert_null(weft_runner_open(NULL));
  cr_assert_eq(errno, EBUSY);
  cr_assert_eq(weft_run(ret_arg, NULL), -EBUSY);
  inner_state s = {r, 0, 0};
  cr_assert_eq(weft_runner_run(r, runner_from_task, &s), 0);
  cr_assert_eq(s.run_rc, -EBUSY);
  cr_assert_eq(s.close_rc, -EBUSY);
  cr_assert_eq(weft_runner_run(r, ret_arg, (void *)(intptr_t)4), 4);
  cr_assert_eq(weft_runner_close(r), 0);
}

typedef struct {
  weft_runner *r;
  int run_rc, close_rc;
} thr_state;

static void *runner_other_thread(void *arg) {
  thr_state *s = arg;
  s->run_rc = weft_runner_run(s->r, ret_arg, NULL);
  s->close_rc = weft_runner_close(s->r);
  return NULL;
}

/* A runner used from another thread: WEFT_ELOOP, and it stays usable. */
Test(runner, runner_other_thread, .timeout = 10) {
  thr_state s = {0};
  s.r = weft_runner_open(NULL);
  cr_assert_not_null(s.r);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, runner_other_thread, &s), 0);
  pthread_join(th, NULL);
  cr_assert_eq(s.run_rc, WEFT_ELOOP);
  cr_assert_eq(s.close_rc, WEFT_ELOOP);
  cr_assert_eq(weft_runner_run(s.r, ret_arg, (void *)(intptr_t)6), 6);
  cr_assert_eq(weft_runner_close(s.r), 0);
}

static int leftover_sleeper(void *arg) {
  int *res = arg;
  *res = weft_sleep(WEFT_SEC(30));
  return 0;
}

static int leave_one(void *arg) {
  weft_task *t = weft_spawn(leftover_sleeper, arg, NULL);
  return t ? 0 : -ENOMEM;
}

/* weft_runner_close right after a run cancels the task it left (even
 * one that never ran its first step before). */
Test(runner, runner_close_cancels_leftovers, .timeout = 10) {
  int res = 1;
  weft_runner *r = weft_runner_open(NULL);
  cr_assert_not_null(r);
  cr_assert_eq(weft_runner_run(r, leave_one, &res), 0);
  int64_t t0 = weft_now();
  cr_assert_eq(weft_runner_close(r), 0);
  cr_assert_lt(weft_now() - t0, T_SLACK);
  cr_assert(res == -ECANCELED || res == 1,
            "leftover saw %d instead of -ECANCELED", res);
}

/* ---------------------------------------------------------------- */
/* One loop per thread                                               */
/* ---------------------------------------------------------------- */

typedef struct {
  int counter;
  int rc;
  weft_loop *loop;
  pthread_barrier_t *all_up; /* NULL: do not wait for the other loops */
} thread_loop_state;

static int tick_task(void *arg) {
  thread_loop_state *s = arg;
  weft_sleep(WEFT_MS(1));
  weft_yield();
  s->counter++;
  return 0;
}

static int per_thread_main(void *arg) {
  thread_loop_state *s = arg;
  s->loop = weft_loop_current();
  /* Every loop exists at once, so their addresses must differ (a loop
   * freed early could otherwise be reallocated at the same address). */
  if (s->all_up) pthread_barrier_wait(s->all_up);
  weft_group *g = weft_group_open();
  if (!g)
    return -errno;
  for (int i = 0; i < 200; i++)
    if (!weft_group_spawn(g, tick_task, s, NULL))
      return -errno;
  return weft_group_close(g, NULL);
}

static void *loop_thread(void *arg) {
  thread_loop_state *s = arg;
  s->rc = weft_run(per_thread_main, s);
  return NULL;
}

/* Four threads each run their own loop at the same time, independently. */
Test(runner, loops_on_several_threads, .timeout = 10) {
  thread_loop_state s[4];
  memset(s, 0, sizeof s);
  pthread_barrier_t up;
  pthread_barrier_init(&up, NULL, 4);
  for (int i = 0; i < 4; i++) s[i].all_up = &up;
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    cr_assert_eq(pthread_create(&th[i], NULL, loop_thread, &s[i]), 0);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  pthread_barrier_destroy(&up);
  for (int i = 0; i < 4; i++) {
    cr_assert_eq(s[i].rc, 0, "thread %d: %d", i, s[i].rc);
    cr_assert_eq(s[i].counter, 200, "thread %d", i);
    cr_assert_not_null(s[i].loop);
    for (int j = 0; j < i; j++)
      cr_assert_neq(s[i].loop, s[j].loop);
  }
}

/* ---------------------------------------------------------------- */
/* Repeated runs                                                     */
/* ---------------------------------------------------------------- */

static int spawn_some(void *arg) {
  thread_loop_state *s = arg;
  weft_group *g = weft_group_open();
  if (!g)
    return -errno;
  for (int i = 0; i < 50; i++)
    if (!weft_group_spawn(g, tick_task, s, NULL))
      return -errno;
  return weft_group_close(g, NULL);
}

/* Many weft_run calls in a row on one thread each build and free a
 * fresh loop; nothing leaks into the next (results stay correct). */
Test(runner, many_runs_in_a_row, .timeout = 10) {
  for (int i = 0; i < 100; i++) {
    thread_loop_state s = {0};
    cr_assert_eq(weft_run(spawn_some, &s), 0, "run %d", i);
    cr_assert_eq(s.counter, 50, "run %d", i);
    cr_assert_null(weft_loop_current());
  }
}

/* weft_run_with honours debug = 0 and a stack pool size; results are the
 * same as with defaults. */
Test(runner, run_with_config, .timeout = 10) {
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.debug = 0;
  cfg.stack_pool = 4;
  cfg.guard_pages = 0;
  thread_loop_state s = {0};
  cr_assert_eq(weft_run_with(&cfg, spawn_some, &s), 0);
  cr_assert_eq(s.counter, 50);
}
