/*
 * test_thread_submit.c -- other threads and loops: weft_loop_submit,
 * futures, weft_loop_call, loop references, loops stopping under fire.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>

#include "helpers.h"

/* Starts a plain thread; asserts success. */
static pthread_t start(void *(*fn)(void *), void *arg) {
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, fn, arg), 0);
  return th;
}

static void *join_thread(void *arg) {
  pthread_join(*(pthread_t *)arg, NULL);
  return NULL;
}

/* From a task: joins a plain thread without blocking the loop. */
static void join_from_task(pthread_t th) {
  cr_assert_eq(weft_to_thread(join_thread, &th, NULL), 0);
}

static int plus_one(void *arg) { return (int)(intptr_t)arg + 1; }

/* Sleeps the ms in arg (cancellable), returns 5 or the sleep's error. */
static int sleeper(void *arg) {
  int rc = weft_sleep(WEFT_MS((intptr_t)arg));
  return rc ? rc : 5;
}

/* ---------------------------------------------------------------- */
/* 8 threads x 100,000 submissions                                   */
/* ---------------------------------------------------------------- */

#define NSUB 8
#define PER 100000

static unsigned char hits[NSUB * PER]; /* written by the loop only */
static int next_k[NSUB];               /* per submitter, the loop only */
static int out_of_order, done_jobs;

typedef struct {
  weft_loop *loop;
  int index;
  int failed; /* submissions that returned NULL */
  int waited; /* result of the one future waited for */
} submitter;

static int count_job(void *arg) {
  int id = (int)(intptr_t)arg;
  int sub = id / PER, k = id % PER;
  if (k != next_k[sub]) out_of_order++;
  next_k[sub] = k + 1;
  hits[id]++;
  done_jobs++;
  return id;
}

static void *submit_many(void *arg) {
  submitter *s = arg;
  for (int k = 0; k < PER; k++) {
    int id = s->index * PER + k;
    weft_future *f = weft_loop_submit(s->loop, count_job, (void *)(intptr_t)id);
    if (!f) {
      s->failed++;
      continue;
    }
    if (k == PER / 2) { /* one waited for, the others let go */
      int res = -1;
      weft_future_wait(f, &res);
      s->waited = res == id ? 0 : -EPROTO;
    }
    weft_future_free(f);
  }
  return NULL;
}

static int many_main(void *arg) {
  submitter *subs = arg;
  pthread_t th[NSUB];
  for (int i = 0; i < NSUB; i++) {
    subs[i].loop = weft_loop_current();
    subs[i].index = i;
    th[i] = start(submit_many, &subs[i]);
  }
  for (int i = 0; i < NSUB; i++) join_from_task(th[i]);
  int64_t end = weft_now() + WEFT_SEC(8);
  while (done_jobs < NSUB * PER && weft_now() < end) weft_sleep(WEFT_MS(1));
  return 0;
}

/* Every one of 800,000 submissions from 8 threads runs exactly once, and
 * each thread's submissions run in the order it made them. */
Test(thread_submit, eight_threads_nothing_lost, .timeout = 30) {
  submitter subs[NSUB] = {0};
  cr_assert_eq(weft_run(many_main, subs), 0);
  for (int i = 0; i < NSUB; i++) {
    cr_assert_eq(subs[i].failed, 0);
    cr_assert_eq(subs[i].waited, 0);
  }
  cr_assert_eq(done_jobs, NSUB * PER);
  int bad = 0;
  for (int i = 0; i < NSUB * PER; i++) bad += hits[i] != 1;
  cr_assert_eq(bad, 0, "%d jobs lost or run twice", bad);
  cr_assert_eq(out_of_order, 0);
}

/* ---------------------------------------------------------------- */
/* Futures from a plain thread                                       */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_loop *loop;
  int poll_rc, wait1, wait2, wait3, res2, res3;
  int64_t timed_out_after;
  int cancel_rc, cancel_res, free_rc, cancel_again;
  int64_t cancel_took;
} fut_state;

static void *future_user(void *arg) {
  fut_state *s = arg;
  weft_future *f = weft_loop_submit(s->loop, sleeper, (void *)(intptr_t)100);
  int res = -1;
  s->poll_rc = weft_future_poll(f, &res);
  int64_t t0 = weft_now();
  s->wait1 = weft_future_wait_until(f, &res, t0 + WEFT_MS(20));
  s->timed_out_after = weft_now() - t0;
  s->wait2 = weft_future_wait(f, &s->res2);
  s->wait3 = weft_future_wait_until(f, &s->res3, weft_now()); /* again */
  s->free_rc = weft_future_free(f);

  /* Cancel from this thread: the task's sleep ends at once. */
  f = weft_loop_submit(s->loop, sleeper, (void *)(intptr_t)10000);
  t0 = weft_now();
  struct timespec ts = {0, 5000000};
  nanosleep(&ts, NULL); /* let it start */
  s->cancel_rc = weft_future_cancel(f);
  weft_future_wait(f, &s->cancel_res);
  s->cancel_took = weft_now() - t0;
  s->cancel_again = weft_future_cancel(f);
  weft_future_free(f);
  return NULL;
}

static int future_main(void *arg) {
  fut_state *s = arg;
  s->loop = weft_loop_current();
  join_from_task(start(future_user, s));
  return 0;
}

/* A plain thread polls, waits with a deadline (-ETIMEDOUT, not before
 * it), waits for the result (twice: the same result), and cancels. */
Test(thread_submit, future_from_plain_thread, .timeout = 10) {
  fut_state s = {0};
  cr_assert_eq(weft_run(future_main, &s), 0);
  cr_assert_eq(s.poll_rc, -EAGAIN);
  cr_assert_eq(s.wait1, -ETIMEDOUT);
  cr_assert_geq(s.timed_out_after, WEFT_MS(20));
  cr_assert_eq(s.wait2, 0);
  cr_assert_eq(s.res2, 5);
  cr_assert_eq(s.wait3, 0);
  cr_assert_eq(s.res3, 5);
  cr_assert_eq(s.free_rc, 0);
  cr_assert_eq(s.cancel_rc, 0);
  cr_assert_eq(s.cancel_res, -ECANCELED);
  cr_assert_lt(s.cancel_took, T_SLACK);
  cr_assert_eq(s.cancel_again, 0);
}

/* ---------------------------------------------------------------- */
/* A runner between runs: submissions wait; cancel before start      */
/* ---------------------------------------------------------------- */

static atomic_int ran_flag;

static int flag_job(void *arg) {
  (void)arg;
  atomic_store(&ran_flag, 1);
  return 9;
}

static int noop(void *arg) {
  (void)arg;
  return weft_yield();
}

/* Submissions to a loop that is not running wait in its inbox; one
 * cancelled before the loop started it never runs. The loop's own thread,
 * outside a task, cannot wait for its loop's future (-EDEADLK). */
Test(thread_submit, cancel_before_start, .timeout = 10) {
  weft_runner *r = weft_runner_open(NULL);
  cr_assert_not_null(r);
  weft_loop *L = weft_loop_current();
  weft_future *a = weft_loop_submit(L, flag_job, NULL);
  weft_future *b = weft_loop_submit(L, plus_one, (void *)(intptr_t)1);
  cr_assert_not_null(a);
  cr_assert_not_null(b);
  int res = 0;
  cr_assert_eq(weft_future_wait(b, &res), -EDEADLK);
  cr_assert_eq(weft_future_cancel(a), 0);
  cr_assert_eq(weft_runner_run(r, noop, NULL), 0);
  cr_assert_eq(weft_future_poll(a, &res), 0);
  cr_assert_eq(res, -ECANCELED);
  cr_assert_eq(atomic_load(&ran_flag), 0, "a cancelled submission ran");
  cr_assert_eq(weft_future_poll(b, &res), 0);
  cr_assert_eq(res, 2);
  cr_assert_eq(weft_future_free(a), 0);
  cr_assert_eq(weft_future_free(b), 0);
  cr_assert_eq(weft_runner_close(r), 0);
}

/* ---------------------------------------------------------------- */
/* Tasks waiting for futures; two loops submitting to each other     */
/* ---------------------------------------------------------------- */

#define ROUNDS 1000
#define WIDE 64

typedef struct pair {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  weft_loop *loops[2];
  atomic_int finished;
  int errors[2];
  int served[2]; /* jobs each loop ran for the other (its own thread) */
} pair;

typedef struct {
  pair *p;
  int me;
} pair_arg;

static pair the_pair = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int served_job(void *arg) {
  pair_arg *a = arg;
  a->p->served[a->me]++;
  return 0;
}

static int echo(void *arg) { return (int)(intptr_t)arg * 2; }

static int pair_main(void *arg) {
  pair_arg *a = arg;
  pair *p = a->p;
  int me = a->me, other = 1 - me;
  pthread_mutex_lock(&p->mu);
  p->loops[me] = weft_loop_ref(weft_loop_current());
  pthread_cond_broadcast(&p->cv);
  while (!p->loops[other]) pthread_cond_wait(&p->cv, &p->mu);
  weft_loop *peer = p->loops[other];
  pthread_mutex_unlock(&p->mu);

  int errors = 0;
  pair_arg there = {p, other};
  for (int i = 0; i < ROUNDS; i++) { /* one at a time: the task waits */
    weft_future *f = weft_loop_submit(peer, echo, (void *)(intptr_t)i);
    int res = -1;
    if (!f || weft_future_wait(f, &res) != 0 || res != 2 * i)
      errors++;
    weft_future_free(f);
    weft_future *g = weft_loop_submit(peer, served_job, &there);
    weft_future_free(g);
  }
  weft_future *fs[WIDE]; /* many in flight */
  for (int i = 0; i < WIDE; i++)
    fs[i] = weft_loop_submit(peer, echo, (void *)(intptr_t)i);
  for (int i = 0; i < WIDE; i++) {
    int res = -1;
    if (weft_future_wait(fs[i], &res) != 0 || res != 2 * i)
      errors++;
    weft_future_free(fs[i]);
  }
  p->errors[me] = errors;
  /* Serve the other loop until it is done too. */
  atomic_fetch_add(&p->finished, 1);
  int64_t end = weft_now() + WEFT_SEC(8);
  while (atomic_load(&p->finished) < 2 && weft_now() < end)
    weft_sleep(WEFT_MS(1));
  return me + 10; /* the test gives both references back */
}

/* Two loops on two threads (weft_run_threads) submit to each other; their
 * tasks wait for the futures (only the task waits: the loop keeps serving
 * the other). */
Test(thread_submit, two_loops_submit_to_each_other, .timeout = 20) {
  pair_arg args[2] = {{&the_pair, 0}, {&the_pair, 1}};
  void *argv[2] = {&args[0], &args[1]};
  int results[2] = {0, 0};
  cr_assert_eq(weft_run_threads(2, pair_main, argv, results), 0);
  cr_assert_eq(results[0], 10);
  cr_assert_eq(results[1], 11);
  cr_assert_eq(the_pair.errors[0], 0);
  cr_assert_eq(the_pair.errors[1], 0);
  cr_assert_eq(the_pair.served[0], ROUNDS);
  cr_assert_eq(the_pair.served[1], ROUNDS);
  weft_loop_unref(the_pair.loops[0]);
  weft_loop_unref(the_pair.loops[1]);
}

typedef struct {
  int own_rc, timed_rc, cancelled_rc, deadlk_rc;
  weft_future *self;
} task_wait_state;

static int waits_for_itself(void *arg) {
  task_wait_state *s = arg;
  return weft_future_wait(s->self, NULL) == -EDEADLK ? 1 : 0;
}

static int task_wait_main(void *arg) {
  task_wait_state *s = arg;
  weft_loop *L = weft_loop_current();
  /* The task's own loop: the completion wakes it directly. */
  weft_future *f = weft_loop_submit(L, plus_one, (void *)(intptr_t)4);
  int res = 0;
  s->own_rc = weft_future_wait(f, &res) == 0 && res == 5 ? 0 : -1;
  weft_future_free(f);
  /* A deadline: -ETIMEDOUT; then cancel and wait for the result. */
  f = weft_loop_submit(L, sleeper, (void *)(intptr_t)10000);
  s->timed_rc = weft_future_wait_until(f, NULL, weft_now() + WEFT_MS(10));
  weft_future_cancel(f);
  weft_future_wait(f, &res);
  s->cancelled_rc = res;
  weft_future_free(f);
  /* A submitted task waiting for its own future. */
  s->self = weft_loop_submit(L, waits_for_itself, s);
  while (weft_future_poll(s->self, &s->deadlk_rc) == -EAGAIN) /* not wait: */
    weft_sleep(WEFT_MS(1)); /* a second waiter would get -EBUSY */
  weft_future_free(s->self);
  return 0;
}

Test(thread_submit, task_waits_on_its_own_loop, .timeout = 10) {
  task_wait_state s = {0};
  cr_assert_eq(weft_run(task_wait_main, &s), 0);
  cr_assert_eq(s.own_rc, 0);
  cr_assert_eq(s.timed_rc, -ETIMEDOUT);
  cr_assert_eq(s.cancelled_rc, -ECANCELED);
  cr_assert_eq(s.deadlk_rc, 1);
}

/* ---------------------------------------------------------------- */
/* weft_loop_call                                                    */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_loop *loop;
  pthread_t loop_thread;
  tlog log;
  int wrong_thread;
  weft_scope stop;
  int spawned_rc;
} call_state;

static void call_cb(void *arg) {
  call_state *s = *(call_state **)arg;
  int v = ((int *)arg)[2];
  if (!pthread_equal(pthread_self(), s->loop_thread)) s->wrong_thread++;
  log_add(&s->log, v);
  free(arg);
}

static int logged_job(void *arg) {
  int *p = arg;
  call_state *s = *(call_state **)p;
  log_add(&s->log, p[2]);
  free(p);
  return 0;
}

static int spawned(void *arg) {
  call_state *s = arg;
  log_add(&s->log, 99);
  return 0;
}

static void spawn_cb(void *arg) {
  call_state *s = arg;
  weft_task *t = weft_spawn(spawned, s, NULL);
  s->spawned_rc = t ? weft_detach(t) : -errno;
  /* Not a task: checkpoints refuse. */
  if (weft_sleep(1) != WEFT_ENOTASK) s->spawned_rc = -EPROTO;
}

static void stop_cb(void *arg) {
  call_state *s = arg;
  weft_scope_cancel(&s->stop);
}

static void *caller(void *arg) {
  call_state *s = arg;
  for (int i = 1; i <= 6; i++) { /* calls and submissions interleaved */
    int *p = malloc(sizeof(call_state *) + 2 * sizeof(int));
    *(call_state **)p = s;
    p[2] = i;
    if (i % 2) {
      weft_loop_call(s->loop, call_cb, p);
    } else {
      weft_future_free(weft_loop_submit(s->loop, logged_job, p));
    }
  }
  weft_loop_call(s->loop, spawn_cb, s);
  weft_loop_call(s->loop, stop_cb, s);
  return NULL;
}

static int call_main(void *arg) {
  call_state *s = arg;
  s->loop = weft_loop_current();
  s->loop_thread = pthread_self();
  weft_scope_open(&s->stop, WEFT_FOREVER);
  pthread_t th = start(caller, s);
  int rc = weft_sleep_until(WEFT_FOREVER); /* until stop_cb */
  weft_scope_close(&s->stop);
  join_from_task(th);
  weft_yield();
  return rc == -ECANCELED ? 0 : -EPROTO;
}

/* Calls run on the loop's thread, in the order they were posted, and
 * submissions start in the order they were made (a submitted task runs
 * after the calls posted before it); calls may spawn tasks and cancel
 * scopes but not block. */
Test(thread_submit, loop_call, .timeout = 10) {
  call_state s = {0};
  cr_assert_eq(weft_run(call_main, &s), 0);
  cr_assert_eq(s.wrong_thread, 0);
  cr_assert_eq(s.spawned_rc, 0);
  cr_assert_eq(s.log.n, 7);
  int pos[100] = {0};
  for (int i = 0; i < 7; i++) pos[s.log.v[i]] = i + 1;
  for (int v = 1; v <= 6; v++) cr_assert_gt(pos[v], 0, "%d missing", v);
  cr_assert(pos[1] < pos[3] && pos[3] < pos[5], "calls out of order");
  cr_assert(pos[2] < pos[4] && pos[4] < pos[6], "submissions out of order");
  for (int v = 2; v <= 6; v += 2) cr_assert_gt(pos[v], pos[v - 1]);
  cr_assert_eq(pos[99], 7);
}

/* ---------------------------------------------------------------- */
/* A loop stopping while submissions race with it                    */
/* ---------------------------------------------------------------- */

#define RACERS 4

typedef struct {
  weft_loop *loop;
  atomic_int go;
  atomic_int executed;   /* job bodies run */
  atomic_int calls_run;  /* call callbacks run */
} race_state;

typedef struct {
  race_state *s;
  int accepted, ran, shut, bad, timeouts;
  int calls_ok;
} racer;

static int race_job(void *arg) {
  race_state *s = arg;
  atomic_fetch_add(&s->executed, 1);
  return 1;
}

static void race_call(void *arg) {
  atomic_fetch_add(&((race_state *)arg)->calls_run, 1);
}

static void *race_submitter(void *arg) {
  racer *r = arg;
  race_state *s = r->s;
  while (!atomic_load(&s->go)) sched_yield();
  weft_future *fs[64];
  for (;;) {
    int n = 0;
    for (; n < 64; n++) {
      fs[n] = weft_loop_submit(s->loop, race_job, s);
      if (!fs[n]) break;
      if (weft_loop_call(s->loop, race_call, s) == 0) r->calls_ok++;
    }
    int stopped = n < 64;
    if (stopped && errno != ESHUTDOWN) r->bad++;
    for (int i = 0; i < n; i++) {
      int res = 0;
      r->accepted++;
      /* Every accepted submission completes: none may hang. */
      int rc = weft_future_wait_until(fs[i], &res, weft_now() + WEFT_SEC(5));
      if (rc == -ETIMEDOUT)
        r->timeouts++;
      else if (res == 1)
        r->ran++;
      else if (res == -ESHUTDOWN)
        r->shut++;
      else
        r->bad++;
      weft_future_free(fs[i]);
    }
    if (stopped) return NULL;
  }
}

static int race_main(void *arg) {
  race_state *s = arg;
  atomic_store(&s->go, 1);
  weft_sleep(WEFT_MS(30));
  return 3; /* the loop ends with submissions still coming */
}

Test(thread_submit, loop_stops_while_submissions_race, .timeout = 20) {
  for (int round = 0; round < 3; round++) {
    race_state s = {0};
    racer rs[RACERS];
    pthread_t th[RACERS];
    weft_runner *run = weft_runner_open(NULL);
    cr_assert_not_null(run);
    s.loop = weft_loop_ref(weft_loop_current());
    for (int i = 0; i < RACERS; i++) {
      rs[i] = (racer){.s = &s};
      th[i] = start(race_submitter, &rs[i]);
    }
    cr_assert_eq(weft_runner_run(run, race_main, &s), 3);
    cr_assert_eq(weft_runner_close(run), 0);
    for (int i = 0; i < RACERS; i++) pthread_join(th[i], NULL);
    int ran = 0, accepted = 0, calls = 0;
    for (int i = 0; i < RACERS; i++) {
      cr_assert_eq(rs[i].timeouts, 0, "a future never completed");
      cr_assert_eq(rs[i].bad, 0);
      cr_assert_eq(rs[i].ran + rs[i].shut, rs[i].accepted);
      ran += rs[i].ran;
      accepted += rs[i].accepted;
      calls += rs[i].calls_ok;
    }
    cr_assert_gt(accepted, 0);
    cr_assert_eq(ran, atomic_load(&s.executed));
    cr_assert_eq(calls, atomic_load(&s.calls_run), "a call was lost");
    /* Stopped: refused, not hung. */
    errno = 0;
    cr_assert_null(weft_loop_submit(s.loop, race_job, &s));
    cr_assert_eq(errno, ESHUTDOWN);
    cr_assert_eq(weft_loop_call(s.loop, race_call, &s), -ESHUTDOWN);
    weft_loop_unref(s.loop);
  }
}

/* ---------------------------------------------------------------- */
/* Bad input                                                         */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_loop *loop;
  weft_future *f;
  atomic_int waiting;
  int rc;
} busy_wait_state;

static void *long_waiter(void *arg) {
  busy_wait_state *b = arg;
  atomic_store(&b->waiting, 1);
  b->rc = weft_future_wait(b->f, NULL);
  return NULL;
}

static int grab_loop(void *arg) {
  *(weft_loop **)arg = weft_loop_ref(weft_loop_current());
  return 0;
}

static int busy_main(void *arg) {
  busy_wait_state *b = arg;
  b->f = weft_loop_submit(weft_loop_current(), sleeper, (void *)(intptr_t)10000);
  pthread_t th = start(long_waiter, b);
  while (!atomic_load(&b->waiting)) weft_sleep(WEFT_MS(1));
  weft_sleep(WEFT_MS(10)); /* it is inside the wait by now */
  cr_assert_eq(weft_future_wait(b->f, NULL), -EBUSY);
  cr_assert_eq(weft_future_free(b->f), -EBUSY);
  weft_future_cancel(b->f);
  join_from_task(th);
  cr_assert_eq(weft_future_free(b->f), 0);
  return 0;
}

Test(thread_submit, bad_input, .timeout = 10) {
  errno = 0;
  cr_assert_null(weft_loop_submit(NULL, plus_one, NULL));
  cr_assert_eq(errno, EINVAL);
  int res;
  cr_assert_eq(weft_loop_call(NULL, race_call, NULL), -EINVAL);
  cr_assert_eq(weft_future_wait(NULL, &res), -EINVAL);
  cr_assert_eq(weft_future_poll(NULL, &res), -EINVAL);
  cr_assert_eq(weft_future_cancel(NULL), -EINVAL);
  cr_assert_eq(weft_future_free(NULL), -EINVAL);
  cr_assert_null(weft_loop_ref(NULL));
  weft_loop_unref(NULL);

  /* A stopped loop (kept by a reference) refuses, at once. */
  weft_loop *L = NULL;
  cr_assert_eq(weft_run(grab_loop, &L), 0);
  cr_assert_not_null(L);
  errno = 0;
  cr_assert_null(weft_loop_submit(L, plus_one, NULL));
  cr_assert_eq(errno, ESHUTDOWN);
  errno = 0;
  cr_assert_null(weft_loop_submit(L, NULL, NULL));
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(weft_loop_call(L, race_call, NULL), -ESHUTDOWN);
  cr_assert_eq(weft_loop_call(L, NULL, NULL), -EINVAL);
  weft_loop_unref(L);

  /* Two waiters at once: the second gets -EBUSY (and free too). */
  busy_wait_state b = {0};
  cr_assert_eq(weft_run(busy_main, &b), 0);
  cr_assert_eq(b.rc, 0);
}

/* weft_run_threads: results by index; bad arguments. */
static int index_main(void *arg) { return (int)(intptr_t)arg * 10; }

Test(thread_submit, run_threads, .timeout = 10) {
  void *args[4] = {(void *)0, (void *)1, (void *)2, (void *)3};
  int res[4] = {-1, -1, -1, -1};
  cr_assert_eq(weft_run_threads(4, index_main, args, res), 0);
  for (int i = 0; i < 4; i++) cr_assert_eq(res[i], i * 10);
  cr_assert_eq(weft_run_threads(3, index_main, NULL, res), 0);
  cr_assert_eq(res[2], 0);
  cr_assert_eq(weft_run_threads(0, index_main, NULL, res), -EINVAL);
  cr_assert_eq(weft_run_threads(2, NULL, NULL, res), -EINVAL);
  cr_assert_eq(weft_run_threads(2, index_main, args, NULL), 0);
}
