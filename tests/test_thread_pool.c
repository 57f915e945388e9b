/*
 * test_thread_pool.c -- the thread pool: weft_to_thread, executors,
 * cancellation with cleanups, shutdown in both modes, threads on demand.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "helpers.h"

/* ---------------------------------------------------------------- */
/* Blocking functions                                                */
/* ---------------------------------------------------------------- */

static void *add_one(void *arg) { return (void *)((intptr_t)arg + 1); }

static void *whoami(void *arg) {
  (void)arg;
  pthread_t *self = malloc(sizeof *self);
  *self = pthread_self();
  return self;
}

/* Sleeps (a real blocking call) for the ns in *arg. */
static void *nap(void *arg) {
  int64_t ns = *(const int64_t *)arg;
  struct timespec ts = {ns / 1000000000, ns % 1000000000};
  nanosleep(&ts, NULL);
  return arg;
}

/* Blocks until the gate opens; counts how many are inside at once. */
typedef struct gate {
  atomic_int open;
  atomic_int inside, max_inside, entered;
} gate;

static void *wait_gate(void *arg) {
  gate *g = arg;
  int in = atomic_fetch_add(&g->inside, 1) + 1;
  atomic_fetch_add(&g->entered, 1);
  int m = atomic_load(&g->max_inside);
  while (in > m && !atomic_compare_exchange_weak(&g->max_inside, &m, in)) {
  }
  while (!atomic_load(&g->open)) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  atomic_fetch_sub(&g->inside, 1);
  return g;
}

/* Waits (as a task, polling) until *v reaches n or 8 s pass. */
static bool await_count(atomic_int *v, int n) {
  int64_t end = weft_now() + WEFT_SEC(8);
  while (atomic_load(v) < n && weft_now() < end) weft_sleep(WEFT_MS(1));
  return atomic_load(v) >= n;
}

/* ---------------------------------------------------------------- */
/* to_thread                                                         */
/* ---------------------------------------------------------------- */

typedef struct {
  int rc, rc2;
  void *res;
  pthread_t worker, loop;
  int ticks; /* by a sibling task while the pool works */
} basic_state;

static int ticker(void *arg) {
  basic_state *s = arg;
  while (weft_sleep(WEFT_MS(1)) == 0) s->ticks++;
  return 0;
}

static int basic_main(void *arg) {
  basic_state *s = arg;
  s->loop = pthread_self();
  s->rc = weft_to_thread(add_one, (void *)41, &s->res);
  void *who = NULL;
  s->rc2 = weft_to_thread(whoami, NULL, &who);
  if (who) {
    s->worker = *(pthread_t *)who;
    free(who);
  }
  /* The loop runs other tasks while a thread blocks. */
  weft_task *t = weft_spawn(ticker, s, NULL);
  int64_t ns = WEFT_MS(60);
  weft_to_thread(nap, &ns, NULL);
  weft_cancel(t);
  weft_join(t);
  return 0;
}

/* weft_to_thread returns fn's result, runs fn on another thread, and
 * suspends only the calling task. */
Test(thread_pool, to_thread_result_and_concurrency, .timeout = 10) {
  basic_state s = {0};
  cr_assert_eq(weft_run(basic_main, &s), 0);
  cr_assert_eq(s.rc, 0);
  cr_assert_eq((intptr_t)s.res, 42);
  cr_assert_eq(s.rc2, 0);
  cr_assert(!pthread_equal(s.worker, s.loop), "fn ran on the loop's thread");
  cr_assert_geq(s.ticks, 5, "the loop was blocked: %d ticks", s.ticks);
}

static int many_task(void *arg) {
  (void)arg;
  int64_t ns = WEFT_MS(50);
  void *r = NULL;
  int rc = weft_to_thread(nap, &ns, &r);
  if (rc) return rc;
  return r == &ns ? 0 : -EPROTO;
}

static int many_main(void *arg) {
  int64_t *elapsed = arg;
  int64_t t0 = weft_now();
  weft_group *g = weft_group_open();
  for (int i = 0; i < 16; i++) weft_group_spawn(g, many_task, NULL, NULL);
  int rc = weft_group_close(g, NULL);
  *elapsed = weft_now() - t0;
  return rc;
}

/* Jobs of several tasks run in parallel on the default pool (at least 5
 * threads: min(32, CPUs + 4)). */
Test(thread_pool, parallel_jobs, .timeout = 10) {
  int64_t elapsed = 0;
  cr_assert_eq(weft_run(many_main, &elapsed), 0);
  /* 16 x 50 ms one after the other would be 800 ms. */
  cr_assert_lt(elapsed, WEFT_MS(700) + T_SLACK / 4, "%.1f ms", MS_OF(elapsed));
}

/* ---------------------------------------------------------------- */
/* Cancellation                                                      */
/* ---------------------------------------------------------------- */

typedef struct {
  gate g;
  atomic_int cleanups, cleanup_status;
  atomic_intptr_t cleanup_result;
  atomic_int cleanup_on_loop; /* the cleanup ran on the loop's thread */
  pthread_t loop;
  int rc;
  int64_t waited;
} cancel_state;

static void note_cleanup(void *arg, void *result, int status) {
  cancel_state *s = arg;
  atomic_store(&s->cleanup_status, status);
  atomic_store(&s->cleanup_result, (intptr_t)result);
  atomic_store(&s->cleanup_on_loop, pthread_equal(pthread_self(), s->loop));
  atomic_fetch_add(&s->cleanups, 1);
}

static int cancel_child(void *arg) {
  cancel_state *s = arg;
  int64_t t0 = weft_now();
  s->rc = weft_executor_run(NULL, wait_gate, &s->g, note_cleanup, NULL);
  s->waited = weft_now() - t0;
  return 0;
}

static int cancel_main(void *arg) {
  cancel_state *s = arg;
  s->loop = pthread_self();
  weft_task *t = weft_spawn(cancel_child, s, NULL);
  /* Cancel once fn is running. */
  cr_assert(await_count(&s->g.entered, 1));
  weft_cancel(t);
  weft_join(t);
  cr_assert_eq(s->rc, -ECANCELED);
  cr_assert_eq(atomic_load(&s->cleanups), 0, "cleanup before fn returned");
  atomic_store(&s->g.open, 1); /* fn returns; its result goes to cleanup */
  cr_assert(await_count(&s->cleanups, 1));
  return 0;
}

/* A task cancelled while its job runs gets -ECANCELED at once; the job
 * finishes in the background and its result goes to the cleanup, once,
 * on the pool's thread. */
Test(thread_pool, cancel_while_running, .timeout = 10) {
  cancel_state s = {0};
  cr_assert_eq(weft_run(cancel_main, &s), 0);
  cr_assert_eq(s.rc, -ECANCELED);
  cr_assert_lt(s.waited, T_SLACK);
  cr_assert_eq(atomic_load(&s.cleanups), 1);
  cr_assert_eq(atomic_load(&s.cleanup_status), 0);
  cr_assert_eq(atomic_load(&s.cleanup_result), (intptr_t)&s.g);
  cr_assert_eq(atomic_load(&s.cleanup_on_loop), 0);
}

typedef struct {
  weft_executor *ex;
  gate busy;
  atomic_int ran, cleanups, cleanup_status;
  int rc;
} queued_state;

static void *count_run(void *arg) {
  queued_state *s = arg;
  atomic_fetch_add(&s->ran, 1);
  return NULL;
}

static void queued_cleanup(void *arg, void *result, int status) {
  queued_state *s = arg;
  (void)result;
  atomic_store(&s->cleanup_status, status);
  atomic_fetch_add(&s->cleanups, 1);
}

static int occupy(void *arg) {
  queued_state *s = arg;
  return weft_executor_run(s->ex, wait_gate, &s->busy, NULL, NULL);
}

static int queued_child(void *arg) {
  queued_state *s = arg;
  s->rc = weft_executor_run(s->ex, count_run, s, queued_cleanup, NULL);
  return 0;
}

static int queued_main(void *arg) {
  queued_state *s = arg;
  weft_task *busy = weft_spawn(occupy, s, NULL);
  cr_assert(await_count(&s->busy.entered, 1));
  weft_task *t = weft_spawn(queued_child, s, NULL);
  weft_sleep(WEFT_MS(20)); /* queued behind the busy job */
  weft_cancel(t);
  weft_join(t);
  atomic_store(&s->busy.open, 1);
  cr_assert_eq(weft_join(busy), 0);
  return 0;
}

/* A job whose task is cancelled before a thread took it never runs; the
 * cleanup gets status -ECANCELED at once. */
Test(thread_pool, cancel_while_queued, .timeout = 10) {
  queued_state s = {0};
  s.ex = weft_executor_new(1);
  cr_assert_not_null(s.ex);
  cr_assert_eq(weft_run(queued_main, &s), 0);
  cr_assert_eq(s.rc, -ECANCELED);
  cr_assert_eq(atomic_load(&s.cleanups), 1);
  cr_assert_eq(atomic_load(&s.cleanup_status), -ECANCELED);
  cr_assert_eq(atomic_load(&s.ran), 0);
  cr_assert_eq(weft_executor_shutdown(s.ex, WEFT_EXECUTOR_WAIT), 0);
  cr_assert_eq(weft_executor_free(s.ex), 0);
}

/* A task cancelled before it calls to_thread gets -ECANCELED and the
 * cleanup (status -ECANCELED) at once. */
static int precancelled_main(void *arg) {
  queued_state *s = arg;
  weft_scope sc;
  weft_scope_open(&sc, WEFT_FOREVER);
  weft_scope_cancel(&sc);
  s->rc = weft_executor_run(NULL, count_run, s, queued_cleanup, NULL);
  weft_scope_close(&sc);
  return 0;
}

Test(thread_pool, cancelled_before_the_call, .timeout = 10) {
  queued_state s = {0};
  cr_assert_eq(weft_run(precancelled_main, &s), 0);
  cr_assert_eq(s.rc, -ECANCELED);
  cr_assert_eq(atomic_load(&s.cleanups), 1);
  cr_assert_eq(atomic_load(&s.cleanup_status), -ECANCELED);
  cr_assert_eq(atomic_load(&s.ran), 0);
}

/* ---------------------------------------------------------------- */
/* Shutdown                                                          */
/* ---------------------------------------------------------------- */

#define NQ 5

typedef struct {
  weft_executor *ex;
  int mode;
  gate busy;
  atomic_int order[NQ]; /* the run order of the queued jobs (1-based) */
  atomic_int nrun, cleanups[NQ], cleanup_status[NQ];
  int rc[NQ], busy_rc, shut_rc, late_rc;
  atomic_int late_cleanup;
} shut_state;

typedef struct {
  shut_state *s;
  int i;
} shut_job;

static void *ordered(void *arg) {
  shut_job *j = arg;
  atomic_store(&j->s->order[j->i], atomic_fetch_add(&j->s->nrun, 1) + 1);
  return (void *)(intptr_t)(100 + j->i);
}

static void shut_cleanup(void *arg, void *result, int status) {
  shut_job *j = arg;
  (void)result;
  atomic_store(&j->s->cleanup_status[j->i], status);
  atomic_fetch_add(&j->s->cleanups[j->i], 1);
}

static void late_cleanup(void *arg, void *result, int status) {
  (void)result;
  if (status == -ESHUTDOWN) atomic_fetch_add((atomic_int *)arg, 1);
}

static int shut_busy(void *arg) {
  shut_state *s = arg;
  s->busy_rc = weft_executor_run(s->ex, wait_gate, &s->busy, NULL, NULL);
  return 0;
}

static int shut_child(void *arg) {
  shut_job *j = arg;
  void *r = NULL;
  j->s->rc[j->i] = weft_executor_run(j->s->ex, ordered, j, shut_cleanup, &r);
  if (j->s->rc[j->i] == 0 && (intptr_t)r != 100 + j->i) j->s->rc[j->i] = -EPROTO;
  return 0;
}

static int opener(void *arg) { /* lets the busy job end a bit later */
  shut_state *s = arg;
  weft_sleep(WEFT_MS(30));
  atomic_store(&s->busy.open, 1);
  return 0;
}

static int shut_main(void *arg) {
  shut_state *s = arg;
  shut_job jobs[NQ];
  weft_group *g = weft_group_open();
  weft_group_spawn(g, shut_busy, s, NULL);
  cr_assert(await_count(&s->busy.entered, 1));
  for (int i = 0; i < NQ; i++) {
    jobs[i] = (shut_job){s, i};
    weft_group_spawn(g, shut_child, &jobs[i], NULL);
    weft_yield(); /* queued in this order */
  }
  weft_sleep(WEFT_MS(10));
  weft_group_spawn(g, opener, s, NULL);
  /* From a task: only the task waits for the busy job. */
  s->shut_rc = weft_executor_shutdown(s->ex, s->mode);
  cr_assert_eq(atomic_load(&s->busy.open), 1, "shutdown did not wait");
  s->late_rc = weft_executor_run(s->ex, count_run, &s->late_cleanup,
                                 late_cleanup, NULL);
  return weft_group_close(g, NULL);
}

/* WEFT_EXECUTOR_WAIT: queued jobs still run, in order; shutdown returns
 * when all are done; new jobs are refused. */
Test(thread_pool, shutdown_wait_runs_queued, .timeout = 10) {
  shut_state s = {0};
  s.ex = weft_executor_new(1);
  s.mode = WEFT_EXECUTOR_WAIT;
  cr_assert_eq(weft_run(shut_main, &s), 0);
  cr_assert_eq(s.shut_rc, 0);
  cr_assert_eq(s.busy_rc, 0);
  for (int i = 0; i < NQ; i++) {
    cr_assert_eq(s.rc[i], 0, "job %d: %d", i, s.rc[i]);
    cr_assert_eq(atomic_load(&s.order[i]), i + 1, "job %d ran out of order", i);
    cr_assert_eq(atomic_load(&s.cleanups[i]), 0);
  }
  cr_assert_eq(s.late_rc, -ESHUTDOWN);
  cr_assert_eq(atomic_load(&s.late_cleanup), 1);
  cr_assert_eq(weft_executor_threads(s.ex), 0);
  cr_assert_eq(weft_executor_free(s.ex), 0);
}

/* WEFT_EXECUTOR_DROP: queued jobs never run; their callers get
 * -ESHUTDOWN and each cleanup runs once with -ESHUTDOWN; the running job
 * finishes and shutdown waits for it. */
Test(thread_pool, shutdown_drop_drops_queued, .timeout = 10) {
  shut_state s = {0};
  s.ex = weft_executor_new(1);
  s.mode = WEFT_EXECUTOR_DROP;
  cr_assert_eq(weft_run(shut_main, &s), 0);
  cr_assert_eq(s.shut_rc, 0);
  cr_assert_eq(s.busy_rc, 0);
  cr_assert_eq(atomic_load(&s.nrun), 0);
  for (int i = 0; i < NQ; i++) {
    cr_assert_eq(s.rc[i], -ESHUTDOWN, "job %d: %d", i, s.rc[i]);
    cr_assert_eq(atomic_load(&s.cleanups[i]), 1);
    cr_assert_eq(atomic_load(&s.cleanup_status[i]), -ESHUTDOWN);
  }
  cr_assert_eq(s.late_rc, -ESHUTDOWN);
  cr_assert_eq(weft_executor_free(s.ex), 0);
}

typedef struct {
  weft_executor *ex;
  gate g;
  int rc;
} plain_shut;

static void *plain_shutdown(void *arg) {
  plain_shut *p = arg;
  p->rc = weft_executor_shutdown(p->ex, WEFT_EXECUTOR_WAIT);
  return NULL;
}

static void *join_thread(void *arg) {
  pthread_join(*(pthread_t *)arg, NULL);
  return NULL;
}

static int plain_shut_job(void *arg) {
  plain_shut *p = arg;
  return weft_executor_run(p->ex, wait_gate, &p->g, NULL, NULL);
}

static int plain_shut_main(void *arg) {
  plain_shut *p = arg;
  weft_task *t = weft_spawn(plain_shut_job, p, NULL);
  cr_assert(await_count(&p->g.entered, 1));
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, plain_shutdown, p), 0);
  weft_sleep(WEFT_MS(20));
  atomic_store(&p->g.open, 1);
  cr_assert_eq(weft_join(t), 0);
  /* pthread_join blocks: do it on the pool. */
  cr_assert_eq(weft_to_thread(join_thread, &th, NULL), 0);
  return 0;
}

/* From a plain thread, shutdown blocks that thread until the running job
 * is done. */
Test(thread_pool, shutdown_from_a_plain_thread, .timeout = 10) {
  plain_shut p = {0};
  p.ex = weft_executor_new(2);
  cr_assert_eq(weft_run(plain_shut_main, &p), 0);
  cr_assert_eq(p.rc, 0);
  cr_assert_eq(weft_executor_threads(p.ex), 0);
  cr_assert_eq(weft_executor_free(p.ex), 0);
}

typedef struct {
  weft_executor *ex;
  int rc, run_rc, late_rc;
} own_shut;

static void *shut_own_executor(void *arg) {
  own_shut *o = arg;
  o->rc = weft_executor_shutdown(o->ex, WEFT_EXECUTOR_WAIT);
  return NULL;
}

static int own_shut_main(void *arg) {
  own_shut *o = arg;
  weft_scope sc; /* a guard: the wait must not hang */
  weft_scope_open(&sc, weft_now() + T_SLACK);
  o->run_rc = weft_executor_run(o->ex, shut_own_executor, o, NULL, NULL);
  weft_scope_close(&sc);
  o->late_rc = weft_executor_run(o->ex, add_one, NULL, NULL, NULL);
  return 0;
}

/* A job of ex shutting ex down cannot wait for itself: -EDEADLK at once,
 * and ex is shut down all the same. */
Test(thread_pool, shutdown_from_its_own_job, .timeout = 10) {
  own_shut o = {0};
  o.ex = weft_executor_new(2);
  cr_assert_not_null(o.ex);
  cr_assert_eq(weft_run(own_shut_main, &o), 0);
  cr_assert_eq(o.run_rc, 0);
  cr_assert_eq(o.rc, -EDEADLK);
  cr_assert_eq(o.late_rc, -ESHUTDOWN);
  cr_assert_eq(weft_executor_shutdown(o.ex, WEFT_EXECUTOR_WAIT), 0);
  cr_assert_eq(weft_executor_threads(o.ex), 0);
  cr_assert_eq(weft_executor_free(o.ex), 0);
}

/* ---------------------------------------------------------------- */
/* Threads on demand, idle exit, sizes                               */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_executor *ex;
  gate g;
  size_t during, after;
} demand_state;

static int demand_job(void *arg) {
  demand_state *s = arg;
  return weft_executor_run(s->ex, wait_gate, &s->g, NULL, NULL);
}

static int demand_main(void *arg) {
  demand_state *s = arg;
  cr_assert_eq(weft_executor_threads(s->ex), 0, "threads before any job");
  weft_group *g = weft_group_open();
  for (int i = 0; i < 6; i++) weft_group_spawn(g, demand_job, s, NULL);
  cr_assert(await_count(&s->g.entered, 3));
  weft_sleep(WEFT_MS(30)); /* give a 4th thread the chance to be wrong */
  s->during = weft_executor_threads(s->ex);
  atomic_store(&s->g.open, 1);
  int rc = weft_group_close(g, NULL);
  int64_t end = weft_now() + T_SLACK * 2;
  while (weft_executor_threads(s->ex) && weft_now() < end)
    weft_sleep(WEFT_MS(5));
  s->after = weft_executor_threads(s->ex);
  return rc;
}

/* An executor starts threads as jobs come, never more than its size, and
 * they end after the idle time. */
Test(thread_pool, threads_on_demand_and_idle_exit, .timeout = 10) {
  demand_state s = {0};
  s.ex = weft_executor_new(3);
  cr_assert_not_null(s.ex);
  cr_assert_eq(weft_executor_set_idle(s.ex, WEFT_MS(20)), 0);
  cr_assert_eq(weft_run(demand_main, &s), 0);
  cr_assert_eq(s.during, 3);
  cr_assert_eq(atomic_load(&s.g.max_inside), 3);
  cr_assert_eq(atomic_load(&s.g.entered), 6);
  cr_assert_eq(s.after, 0);
  cr_assert_eq(weft_executor_free(s.ex), 0);
}

static int ncpu(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return CPU_COUNT(&set);
}

typedef struct {
  gate g;
  int expect;
} size_state;

static int size_job(void *arg) {
  return weft_to_thread(wait_gate, &((size_state *)arg)->g, NULL);
}

static int size_main(void *arg) {
  size_state *s = arg;
  weft_group *g = weft_group_open();
  for (int i = 0; i < 40; i++) weft_group_spawn(g, size_job, s, NULL);
  cr_assert(await_count(&s->g.entered, s->expect));
  weft_sleep(WEFT_MS(30));
  atomic_store(&s->g.open, 1);
  return weft_group_close(g, NULL);
}

/* The default pool runs min(32, CPUs + 4) jobs at once. */
Test(thread_pool, default_pool_size, .timeout = 10) {
  size_state s = {0};
  s.expect = ncpu() + 4 < 32 ? ncpu() + 4 : 32;
  cr_assert_eq(weft_run(size_main, &s), 0);
  cr_assert_eq(atomic_load(&s.g.max_inside), s.expect);
  cr_assert_eq(atomic_load(&s.g.entered), 40);
}

/* ---------------------------------------------------------------- */
/* The loop ending while jobs run                                    */
/* ---------------------------------------------------------------- */

static gate ending_gate;

static int ending_child(void *arg) {
  (void)arg;
  return weft_to_thread(wait_gate, &ending_gate, NULL);
}

static _Atomic int64_t ending_opened; /* when the gate opened */

static void *open_later(void *arg) { /* a plain thread, not the pool */
  (void)arg;
  struct timespec ts = {0, 100 * 1000000};
  nanosleep(&ts, NULL);
  atomic_store(&ending_opened, weft_now());
  atomic_store(&ending_gate.open, 1);
  return NULL;
}

static int ending_main(void *arg) {
  pthread_t *opener = arg;
  weft_detach(weft_spawn(ending_child, NULL, NULL));
  cr_assert(await_count(&ending_gate.entered, 1));
  cr_assert_eq(pthread_create(opener, NULL, open_later, NULL), 0);
  return 7; /* the loop cancels the child, which does not wait for fn */
}

/* The child returns at once, but weft_run, stopping the default pool,
 * waits for the job it left behind. */
Test(thread_pool, loop_ends_while_a_job_runs, .timeout = 10) {
  pthread_t opener;
  cr_assert_eq(weft_run(ending_main, &opener), 7);
  int64_t returned = weft_now();
  cr_assert_eq(atomic_load(&ending_gate.inside), 0, "the job still runs");
  int64_t opened = atomic_load(&ending_opened);
  cr_assert(opened && opened <= returned, "weft_run did not wait");
  cr_assert_eq(weft_executor_threads(NULL), 0);
  pthread_join(opener, NULL);
}

typedef struct {
  int rc, run_rc;
  atomic_int cleanups, status;
} late_state;

static void late_note(void *arg, void *result, int status) {
  late_state *s = arg;
  (void)result;
  atomic_store(&s->status, status);
  atomic_fetch_add(&s->cleanups, 1);
}

static int late_task(void *arg) { /* made while the loop is being freed */
  late_state *s = arg;
  weft_scope sc;
  weft_scope_open_shielded(&sc, WEFT_FOREVER);
  s->rc = weft_to_thread(add_one, NULL, NULL);
  s->run_rc = weft_executor_run(NULL, add_one, s, late_note, NULL);
  weft_scope_close(&sc);
  return 0;
}

static void spawn_late(void *arg) { weft_detach(weft_spawn(late_task, arg, NULL)); }

/* A task that runs while its loop is freed (spawned by a weft_loop_call
 * that the closing inbox runs) cannot get a job's completion back:
 * -ESHUTDOWN, and the cleanup gets it. */
Test(thread_pool, to_thread_while_the_loop_is_freed, .timeout = 10) {
  late_state s = {0};
  weft_runner *r = weft_runner_open(NULL);
  cr_assert_not_null(r);
  cr_assert_eq(weft_loop_call(weft_loop_current(), spawn_late, &s), 0);
  cr_assert_eq(weft_runner_close(r), 0);
  cr_assert_eq(s.rc, -ESHUTDOWN);
  cr_assert_eq(s.run_rc, -ESHUTDOWN);
  cr_assert_eq(atomic_load(&s.cleanups), 1);
  cr_assert_eq(atomic_load(&s.status), -ESHUTDOWN);
}

/* ---------------------------------------------------------------- */
/* fork                                                              */
/* ---------------------------------------------------------------- */

static int child_main(void *arg) {
  (void)arg;
  void *r = NULL;
  int rc = weft_to_thread(add_one, (void *)1, &r);
  return rc ? 10 : (intptr_t)r == 2 ? 0 : 11;
}

static void *wait_child(void *arg) {
  int st = 0;
  waitpid(*(pid_t *)arg, &st, 0);
  return (void *)(intptr_t)st;
}

static int fork_main(void *arg) {
  int *status = arg;
  void *r = NULL;
  cr_assert_eq(weft_to_thread(add_one, NULL, &r), 0); /* the pool exists */
  pid_t pid = fork();
  if (pid == 0) _exit(weft_run_threads(1, child_main, NULL, status) ? 12 : *status);
  cr_assert_gt(pid, 0);
  cr_assert_eq(weft_to_thread(wait_child, &pid, &r), 0);
  *status = (int)(intptr_t)r;
  return 0;
}

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

/* A child of fork() gets a working default pool of its own. */
Test(thread_pool, fork_child_has_a_pool, .timeout = 10) {
#ifdef UNDER_TSAN
  cr_skip_test("TSan cannot start threads after a multi-threaded fork");
#endif
  if (getenv("QEMU_LD_PREFIX")) /* make aarch64 */
    cr_skip_test("qemu-user crashes in the child of a multi-threaded fork");
  int status = -1;
  cr_assert_eq(weft_run(fork_main, &status), 0);
  cr_assert(WIFEXITED(status), "child died: %d", status);
  cr_assert_eq(WEXITSTATUS(status), 0);
}

/* ---------------------------------------------------------------- */
/* Bad input                                                         */
/* ---------------------------------------------------------------- */

typedef struct {
  atomic_int cleanups, status;
} bad_state;

static void bad_cleanup(void *arg, void *result, int status) {
  bad_state *b = arg;
  (void)result;
  atomic_store(&b->status, status);
  atomic_fetch_add(&b->cleanups, 1);
}

static int bad_main(void *arg) {
  bad_state *b = arg;
  void *r = (void *)1;
  cr_assert_eq(weft_to_thread(NULL, NULL, &r), -EINVAL);
  cr_assert_eq(weft_executor_run(NULL, NULL, b, bad_cleanup, &r), -EINVAL);
  cr_assert_eq(atomic_load(&b->cleanups), 0, "cleanup for fn NULL");
  cr_assert_eq(r, (void *)1, "result written on error");
  cr_assert_eq(weft_executor_shutdown(NULL, WEFT_EXECUTOR_WAIT), -EINVAL);
  weft_executor *ex = weft_executor_new(1);
  cr_assert_eq(weft_executor_shutdown(ex, 7), -EINVAL);
  cr_assert_eq(weft_executor_shutdown(ex, WEFT_EXECUTOR_DROP), 0);
  cr_assert_eq(weft_executor_shutdown(ex, WEFT_EXECUTOR_WAIT), 0, "twice");
  cr_assert_eq(weft_executor_free(ex), 0);
  return 0;
}

/* NULL function, NULL executor, a bad mode; repeated shutdown is fine. */
Test(thread_pool, bad_input, .timeout = 10) {
  bad_state b = {0};
  cr_assert_eq(weft_run(bad_main, &b), 0);
  cr_assert_eq(weft_executor_free(NULL), -EINVAL);
  cr_assert_eq(weft_executor_set_idle(NULL, WEFT_SEC(10)), 0);
}

/* Outside a task: WEFT_ENOTASK, and the cleanup gets it (the one rule). */
Test(thread_pool, outside_a_task, .timeout = 10) {
  bad_state b = {0};
  void *r = NULL;
  cr_assert_eq(weft_to_thread(add_one, NULL, &r), WEFT_ENOTASK);
  cr_assert_eq(weft_executor_run(NULL, add_one, &b, bad_cleanup, &r),
               WEFT_ENOTASK);
  cr_assert_eq(atomic_load(&b.cleanups), 1);
  cr_assert_eq(atomic_load(&b.status), WEFT_ENOTASK);
  cr_assert_null(r);
}
