/*
 * test_thread_shutdown.c -- the default pool ends with the last loop that
 * used it: when weft_run (weft_run_with, weft_runner_close) returns, the
 * pool's threads have been joined, jobs still running were waited for, and
 * a later loop starts threads again. Threads are counted in
 * /proc/self/task, so "gone" means gone, not just told to go.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>

#include "helpers.h"


static void *nothing(void *arg) { return arg; }

/* Threads of this process now; the first call starts and joins a thread
 * first, since ThreadSanitizer starts a thread of its own on the first
 * pthread_create. */
static int nthreads(void) {
  static bool warm;
  if (!warm) {
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, nothing, NULL), 0);
    pthread_join(th, NULL);
    warm = true;
  }
  return count_threads();
}

/* The threads of the process once a loop ended must be those it had
 * before: the pool's count is checked at once, the process's after at
 * most 500 ms. (pthread_join returns when the kernel has cleared the
 * thread's tid, a little before it drops the thread from /proc/self/task:
 * a plain create + join loop sees the count high right after the join
 * about once in 10,000. Idle pool threads that were not stopped would
 * stay 10 s.) */
static int settled_threads(int before) {
  int n = count_threads();
  for (int i = 0; i < 500 && n > before; i++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    n = count_threads();
  }
  return n;
}

#define ASSERT_THREADS(before, what)                                         \
  do {                                                                       \
    cr_assert_eq(weft_executor_threads(NULL), 0, "%s: pool threads left",    \
                 (what));                                                    \
    /* At most as many as before: a thread that ended just before may   \
     * still be listed in `before` (qemu-user shows exited threads for a  \
     * while), never one more. */                                        \
    int now_ = settled_threads(before);                                      \
    cr_assert_leq(now_, (before), "%s: %d threads, %d before", (what), now_, \
                  (before));                                                 \
  } while (0)

static void *add_one(void *arg) { return (void *)((intptr_t)arg + 1); }

static void sleep_ns(int64_t ns) {
  struct timespec ts = {ns / 1000000000, ns % 1000000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Waits (as a task, polling) until *v reaches n or 8 s pass. */
static bool await_count(atomic_int *v, int n) {
  int64_t end = weft_now() + WEFT_SEC(8);
  while (atomic_load(v) < n && weft_now() < end) weft_sleep(WEFT_MS(1));
  return atomic_load(v) >= n;
}

/* ---------------------------------------------------------------- */
/* One loop                                                          */
/* ---------------------------------------------------------------- */

static int to_thread_main(void *arg) {
  int *rc = arg;
  void *r = NULL;
  *rc = weft_to_thread(add_one, (void *)41, &r);
  if (!*rc && (intptr_t)r != 42) *rc = -EPROTO;
  return 0;
}

/* weft_run returns with no thread of the default pool left. */
Test(thread_shutdown, to_thread_leaves_no_thread, .timeout = 10) {
  int before = nthreads();
  int rc = -1;
  cr_assert_eq(weft_run(to_thread_main, &rc), 0);
  cr_assert_eq(rc, 0);
  ASSERT_THREADS(before, "after weft_run");
}

/* The same with weft_run_with, and several jobs at once (several pool
 * threads). */
static void *nap20(void *arg) {
  sleep_ns(WEFT_MS(20));
  return arg;
}

static int wide_job(void *arg) {
  (void)arg;
  return weft_to_thread(nap20, NULL, NULL);
}

static int wide_main(void *arg) {
  size_t *peak = arg;
  weft_group *g = weft_group_open();
  for (int i = 0; i < 4; i++) weft_group_spawn(g, wide_job, NULL, NULL);
  weft_sleep(WEFT_MS(10));
  *peak = weft_executor_threads(NULL);
  return weft_group_close(g, NULL);
}

Test(thread_shutdown, several_pool_threads_all_joined, .timeout = 10) {
  int before = nthreads();
  size_t peak = 0;
  weft_config cfg;
  weft_config_init(&cfg);
  cr_assert_eq(weft_run_with(&cfg, wide_main, &peak), 0);
  cr_assert_geq(peak, 2, "%zu pool threads", peak);
  ASSERT_THREADS(before, "after weft_run_with");
}

/* An executor of one's own, shut down from a task (the wait runs on the
 * default pool) and freed: nothing is left either. */
typedef struct {
  weft_executor *ex;
  int rc, shut_rc;
} own_state;

static int own_main(void *arg) {
  own_state *s = arg;
  void *r = NULL;
  s->rc = weft_executor_run(s->ex, add_one, (void *)1, NULL, &r);
  if (!s->rc && (intptr_t)r != 2) s->rc = -EPROTO;
  s->shut_rc = weft_executor_shutdown(s->ex, WEFT_EXECUTOR_WAIT);
  return 0;
}

Test(thread_shutdown, executor_shut_down_in_a_task, .timeout = 10) {
  int before = nthreads();
  own_state s = {0};
  s.ex = weft_executor_new(2);
  cr_assert_not_null(s.ex);
  cr_assert_eq(weft_run(own_main, &s), 0);
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(s.shut_rc, 0);
  cr_assert_eq(weft_executor_threads(s.ex), 0);
  ASSERT_THREADS(before, "after weft_run");
  cr_assert_eq(weft_executor_free(s.ex), 0);
}

/* weft_executor_shutdown from a plain thread joins the executor's threads
 * before it returns. */
static int own_run_only(void *arg) {
  own_state *s = arg;
  void *r = NULL;
  s->rc = weft_executor_run(s->ex, add_one, (void *)1, NULL, &r);
  return 0;
}

Test(thread_shutdown, executor_shutdown_joins_its_threads, .timeout = 10) {
  int before = nthreads();
  own_state s = {0};
  s.ex = weft_executor_new(2);
  cr_assert_not_null(s.ex);
  cr_assert_eq(weft_run(own_run_only, &s), 0);
  cr_assert_eq(s.rc, 0);
  cr_assert_eq(weft_executor_threads(s.ex), 1, "the executor's thread");
  cr_assert_eq(weft_executor_shutdown(s.ex, WEFT_EXECUTOR_WAIT), 0);
  ASSERT_THREADS(before, "after weft_executor_shutdown");
  cr_assert_eq(weft_executor_free(s.ex), 0);
}

/* A runner keeps the pool between runs and stops it when closed. */
Test(thread_shutdown, runner_close_stops_the_pool, .timeout = 10) {
  int before = nthreads();
  weft_runner *r = weft_runner_open(NULL);
  cr_assert_not_null(r);
  int rc = -1;
  cr_assert_eq(weft_runner_run(r, to_thread_main, &rc), 0);
  cr_assert_eq(rc, 0);
  cr_assert_geq(weft_executor_threads(NULL), 1, "the runner still uses it");
  rc = -1;
  cr_assert_eq(weft_runner_run(r, to_thread_main, &rc), 0);
  cr_assert_eq(rc, 0);
  cr_assert_eq(weft_runner_close(r), 0);
  ASSERT_THREADS(before, "after weft_runner_close");
}

/* Many runs in a row: each one starts the pool again and stops it. */
Test(thread_shutdown, restarts_run_after_run, .timeout = 20) {
  int before = nthreads();
  for (int i = 0; i < 50; i++) {
    int rc = -1;
    cr_assert_eq(weft_run(to_thread_main, &rc), 0);
    cr_assert_eq(rc, 0, "run %d: %d", i, rc);
    ASSERT_THREADS(before, "after a run");
  }
}

/* A loop that never used the pool does not touch it. */
static int idle_main(void *arg) {
  (void)arg;
  return weft_yield();
}

Test(thread_shutdown, no_pool_no_threads, .timeout = 10) {
  int before = nthreads();
  cr_assert_eq(weft_run(idle_main, NULL), 0);
  ASSERT_THREADS(before, "after weft_run");
}

/* ---------------------------------------------------------------- */
/* Jobs still running when main returns                              */
/* ---------------------------------------------------------------- */

#define JOB_NS WEFT_MS(200)

typedef struct {
  atomic_int started, cleanups, cleanup_status;
  _Atomic int64_t ended; /* when the job returned */
  int rc;
} late_state;

static void *long_job(void *arg) {
  late_state *s = arg;
  atomic_fetch_add(&s->started, 1);
  sleep_ns(JOB_NS);
  atomic_store(&s->ended, weft_now());
  return s;
}

static void late_cleanup(void *arg, void *result, int status) {
  late_state *s = arg;
  atomic_store(&s->cleanup_status, result == s ? status : -EPROTO);
  atomic_fetch_add(&s->cleanups, 1);
}

static int late_child(void *arg) {
  late_state *s = arg;
  s->rc = weft_executor_run(NULL, long_job, s, late_cleanup, NULL);
  return 0;
}

/* The caller is cancelled while its job runs: it returns -ECANCELED at
 * once, main returns, and weft_run waits for the job (and its cleanup)
 * before it stops the pool. */
static int cancelled_main(void *arg) {
  late_state *s = arg;
  weft_task *t = weft_spawn(late_child, s, NULL);
  cr_assert(await_count(&s->started, 1));
  weft_cancel(t);
  weft_join(t);
  return 0;
}

Test(thread_shutdown, waits_for_a_cancelled_callers_job, .timeout = 10) {
  int before = nthreads();
  late_state s = {0};
  cr_assert_eq(weft_run(cancelled_main, &s), 0);
  int64_t returned = weft_now();
  cr_assert_eq(s.rc, -ECANCELED);
  int64_t ended = atomic_load(&s.ended);
  cr_assert_neq(ended, 0, "weft_run returned before the job did");
  cr_assert_leq(ended, returned);
  cr_assert_eq(atomic_load(&s.cleanups), 1);
  cr_assert_eq(atomic_load(&s.cleanup_status), 0);
  ASSERT_THREADS(before, "after weft_run");
}

/* A detached task's job: the loop cancels the task when main returns, and
 * weft_run waits for the job. */
static int detached_child(void *arg) {
  late_state *s = arg;
  s->rc = weft_to_thread(long_job, s, NULL);
  return 0;
}

static int detached_main(void *arg) {
  late_state *s = arg;
  weft_detach(weft_spawn(detached_child, s, NULL));
  cr_assert(await_count(&s->started, 1));
  return 3;
}

Test(thread_shutdown, waits_for_a_detached_tasks_job, .timeout = 10) {
  int before = nthreads();
  late_state s = {0};
  int64_t t0 = weft_now();
  cr_assert_eq(weft_run(detached_main, &s), 3);
  int64_t took = weft_now() - t0;
  cr_assert_eq(s.rc, -ECANCELED);
  cr_assert_neq(atomic_load(&s.ended), 0, "weft_run returned before the job");
  cr_assert_geq(took, JOB_NS - WEFT_MS(10), "%.1f ms", MS_OF(took));
  cr_assert_lt(took, JOB_NS + T_SLACK, "%.1f ms", MS_OF(took));
  ASSERT_THREADS(before, "after weft_run");
}

/* ---------------------------------------------------------------- */
/* Several loops share the pool                                      */
/* ---------------------------------------------------------------- */

typedef struct {
  atomic_int a_done;    /* loop A's weft_run returned */
  atomic_int a_started; /* loop A used the pool */
  size_t b_threads_after_a; /* pool threads B saw once A had ended */
  int a_rc, b_rc, b_rc2;
} shared_state;

static int a_main(void *arg) {
  shared_state *s = arg;
  void *r = NULL;
  s->a_rc = weft_to_thread(add_one, NULL, &r);
  atomic_store(&s->a_started, 1);
  return 0;
}

static int b_main(void *arg) {
  shared_state *s = arg;
  void *r = NULL;
  s->b_rc = weft_to_thread(add_one, NULL, &r);
  cr_assert(await_count(&s->a_done, 1));
  /* A is gone; B still uses the pool: it survived A. */
  s->b_threads_after_a = weft_executor_threads(NULL);
  s->b_rc2 = weft_to_thread(add_one, NULL, &r);
  return 0;
}

static void *run_a(void *arg) {
  shared_state *s = arg;
  weft_run(a_main, s);
  atomic_store(&s->a_done, 1);
  return NULL;
}

static void *run_b(void *arg) {
  weft_run(b_main, arg);
  return NULL;
}

Test(thread_shutdown, two_loops_share_the_pool, .timeout = 20) {
  int before = nthreads();
  shared_state s = {0};
  pthread_t a, b;
  cr_assert_eq(pthread_create(&b, NULL, run_b, &s), 0);
  cr_assert_eq(pthread_create(&a, NULL, run_a, &s), 0);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  cr_assert_eq(s.a_rc, 0);
  cr_assert_eq(s.b_rc, 0);
  cr_assert_eq(s.b_rc2, 0);
  cr_assert_geq(s.b_threads_after_a, 1, "the pool stopped with loop A");
  ASSERT_THREADS(before, "after both loops");
  /* A later loop starts it again. */
  int rc = -1;
  cr_assert_eq(weft_run(to_thread_main, &rc), 0);
  cr_assert_eq(rc, 0);
  ASSERT_THREADS(before, "after the next loop");
}

static int many_main(void *arg) {
  (void)arg;
  for (int i = 0; i < 20; i++) {
    void *r = NULL;
    int rc = weft_to_thread(add_one, (void *)(intptr_t)i, &r);
    if (rc) return rc;
    if ((intptr_t)r != i + 1) return -EPROTO;
    weft_yield();
  }
  return 0;
}

/* weft_run_threads: four loops ending at about the same time. */
Test(thread_shutdown, run_threads_leaves_no_thread, .timeout = 20) {
  int before = nthreads();
  for (int round = 0; round < 5; round++) {
    int results[4] = {-1, -1, -1, -1};
    cr_assert_eq(weft_run_threads(4, many_main, NULL, results), 0);
    for (int i = 0; i < 4; i++) cr_assert_eq(results[i], 0);
    ASSERT_THREADS(before, "after weft_run_threads");
  }
}

/* Each loop waits for its own abandoned jobs, also when it is not the
 * pool's last user: loop A abandons a job and ends while loop B still
 * uses the pool; A's weft_run returns after the job (and its cleanup),
 * and the pool lives on for B. */
typedef struct {
  late_state job;
  atomic_int a_done;
  _Atomic int64_t a_returned;
  size_t b_threads_after_a;
  int b_rc;
} own_wait_state;

static int oa_main(void *arg) {
  own_wait_state *s = arg;
  weft_task *t = weft_spawn(late_child, &s->job, NULL);
  cr_assert(await_count(&s->job.started, 1));
  weft_cancel(t);
  weft_join(t);
  return 0;
}

static int ob_main(void *arg) {
  own_wait_state *s = arg;
  void *r = NULL;
  s->b_rc = weft_to_thread(add_one, NULL, &r);
  cr_assert(await_count(&s->a_done, 1));
  s->b_threads_after_a = weft_executor_threads(NULL);
  return 0;
}

static void *run_oa(void *arg) {
  own_wait_state *s = arg;
  weft_run(oa_main, s);
  atomic_store(&s->a_returned, weft_now());
  atomic_store(&s->a_done, 1);
  return NULL;
}

static void *run_ob(void *arg) {
  weft_run(ob_main, arg);
  return NULL;
}

Test(thread_shutdown, each_loop_waits_for_its_own_jobs, .timeout = 20) {
  int before = nthreads();
  own_wait_state s = {0};
  pthread_t a, b;
  cr_assert_eq(pthread_create(&b, NULL, run_ob, &s), 0);
  cr_assert_eq(pthread_create(&a, NULL, run_oa, &s), 0);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  cr_assert_eq(s.b_rc, 0);
  cr_assert_eq(s.job.rc, -ECANCELED);
  int64_t ended = atomic_load(&s.job.ended);
  cr_assert(ended && ended <= atomic_load(&s.a_returned),
            "loop A returned before its job");
  cr_assert_eq(atomic_load(&s.job.cleanups), 1);
  cr_assert_geq(s.b_threads_after_a, 1, "the pool stopped with loop A");
  ASSERT_THREADS(before, "after both loops");
}

/* Loops starting and ending on two threads at once: a loop may start
 * using the pool while the last one drains it (it takes the pool over).
 * Nothing hangs, every job runs, nothing is left. */
static void *churn(void *arg) {
  int *bad = arg;
  for (int i = 0; i < 200; i++) {
    int rc = -1;
    if (weft_run(to_thread_main, &rc) != 0 || rc != 0) (*bad)++;
  }
  return NULL;
}

Test(thread_shutdown, loops_start_and_end_concurrently, .timeout = 60) {
  int before = nthreads();
  int bad[2] = {0, 0};
  pthread_t a, b;
  cr_assert_eq(pthread_create(&a, NULL, churn, &bad[0]), 0);
  cr_assert_eq(pthread_create(&b, NULL, churn, &bad[1]), 0);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  cr_assert_eq(bad[0] + bad[1], 0);
  ASSERT_THREADS(before, "after both threads");
}

/* ---------------------------------------------------------------- */
/* A loop inside a pool job                                          */
/* ---------------------------------------------------------------- */

static void *run_inner(void *arg) {
  int *rc = arg;
  int inner = -1;
  int r = weft_run(to_thread_main, &inner);
  *rc = r ? r : inner;
  return NULL;
}

static int outer_main(void *arg) {
  int *inner_rc = arg;
  return weft_to_thread(run_inner, inner_rc, NULL);
}

/* weft_run on a pool thread (from a job) works and does not wait for its
 * own thread; the outer loop stops the pool. */
Test(thread_shutdown, loop_inside_a_pool_job, .timeout = 10) {
  int before = nthreads();
  int inner_rc = -1;
  cr_assert_eq(weft_run(outer_main, &inner_rc), 0);
  cr_assert_eq(inner_rc, 0);
  ASSERT_THREADS(before, "after the outer loop");
}
