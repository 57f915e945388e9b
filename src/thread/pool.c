/*
 * Thread pools (executors) and weft_to_thread / weft_executor_run.
 *
 * An executor is a mutex-protected FIFO of jobs and threads that take
 * them. Threads are started when a job is queued and no idle thread is
 * there to take it (up to the executor's size), and end after an idle
 * time. A thread that finishes a job polls for the next one for a short
 * while before it sleeps on the condition variable (see thread.h).
 *
 * A job lives on the heap, not on the waiting task's stack, because it may
 * outlive the wait: a task cancelled while its job runs returns at once.
 * Who frees it is settled by two bits, set with atomic or:
 *   J_DONE       set by whoever ends the job (the thread that ran it, or a
 *                shutdown that dropped it), which then posts it to the loop;
 *   J_ABANDONED  set by the loop when the waiting task is cancelled.
 * The party that sets the second bit learns that the other one came first:
 * a finisher that finds J_ABANDONED runs the cleanup itself; a loop that
 * finds J_DONE leaves it to the completion message already on its way.
 * A job still in the queue when its task is cancelled is simply taken out
 * (under the executor's mutex) and never runs.
 *
 * Threads are joinable, and joined: a thread that ends puts its record on
 * the executor's `dead` list, and whoever comes next joins it (the next
 * thread to end, a shutdown's wait, the default pool's drain, or the
 * executor's destruction). So at most one ended thread per executor waits
 * to be joined, and "every thread has ended" means what it says: a
 * shutdown or a drain returns once pthread_join returned for each.
 *
 * The default pool is shared by every loop of the process. A loop that
 * queues its first job there becomes one of its users (a pool_user, found
 * through a thread-local pointer: one loop per thread). As it ends
 * (weft_run returns, weft_runner_close), it waits for its jobs whose
 * callers were cancelled while they ran, and the last user drains the
 * pool: its threads end and the loop joins them all. The next job starts
 * threads again. A loop that starts using the pool during a drain takes
 * it over: the drainer returns without waiting. See pool_loop_stop, the
 * layer's loop_stop hook (weft__layer in internal.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "thread/layer.h"

enum { J_DONE = 1u, J_ABANDONED = 2u };

/* A loop that uses the default pool (one per thread: tls_user), made on
 * its first job there. nabandoned counts its jobs whose callers were
 * cancelled while they ran and whose cleanups have not run yet: the
 * loop's end waits for them. Under the default pool's mutex. */
typedef struct pool_user {
  size_t nabandoned;
} pool_user;

/* A pool thread, joinable: on the executor's `live` list while it works
 * (which also keeps the record reachable for leak checkers, in a child of
 * fork() too), then on its `dead` list until it is joined. */
typedef struct worker_rec {
  struct worker_rec *prev, *next;
  weft_executor *ex;
  pthread_t th;
} worker_rec;

typedef struct job {
  struct job *prev, *next; /* the executor's queue (under its mutex) */
  weft__msg msg;           /* completion, posted to the waiting loop */
  weft_executor *ex;
  weft_blocking_fn fn;
  void *arg;
  weft_cleanup_fn cleanup;
  void *result;
  weft_loop *loop;         /* referenced until the job is settled */
  pool_user *user;         /* default pool: the caller's loop; else NULL */
  weft_task *task;
  atomic_uint state;
  int status;              /* 0: fn ran; -ESHUTDOWN: dropped */
  bool queued;             /* under the executor's mutex */
} job;

struct weft_executor {
  pthread_mutex_t mu;
  pthread_cond_t work;  /* idle threads sleep here */
  pthread_cond_t quiet; /* shutdown waits here for jobs and threads to end */
  job *head, *tail;
  atomic_size_t nqueued; /* polled without the mutex by spinning threads */
  size_t max;           /* threads at most */
  size_t nthreads;
  size_t nspinning;     /* polling for work */
  size_t nsleeping;     /* on `work` */
  size_t nwaking;       /* signalled or starting, not yet looking for work */
  size_t njobs;         /* queued or running */
  size_t nwaiters;      /* threads inside shutdown's wait */
  size_t njoining;      /* ended threads being joined, off the `dead` list */
  size_t nusers;        /* default pool: loops using it */
  worker_rec *live;     /* running threads (nthreads of them) */
  worker_rec *dead;     /* ended threads nobody joined yet */
  size_t maxspin;       /* threads allowed to poll at once */
  int64_t idle_ns;
  unsigned serial;      /* names threads */
  bool shutdown;
  bool released;        /* weft_executor_free was called */
  /* Default pool: its last user is ending, threads end when idle. Written
   * under the mutex, read without it by spinning threads. */
  atomic_bool draining;
};

/* ---- executors ---------------------------------------------------------- */

#define DEFAULT_IDLE_NS WEFT_SEC(10)

static size_t default_size(void) {
  size_t n = (size_t)weft__ncpu() + 4;
  return n < 32 ? n : 32;
}

static int ex_init(weft_executor *ex, size_t max) {
  memset(ex, 0, sizeof *ex);
  pthread_condattr_t ca;
  int e = pthread_condattr_init(&ca);
  if (e) return e;
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  /* Adaptive: the loop queueing a job and the thread polling for it meet
   * on this mutex for a few instructions; spinning beats a futex wait. */
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
  e = pthread_mutex_init(&ex->mu, &ma);
  pthread_mutexattr_destroy(&ma);
  if (e) goto out;
  if ((e = pthread_cond_init(&ex->work, &ca)) != 0) {
    pthread_mutex_destroy(&ex->mu);
    goto out;
  }
  if ((e = pthread_cond_init(&ex->quiet, &ca)) != 0) {
    pthread_cond_destroy(&ex->work);
    pthread_mutex_destroy(&ex->mu);
    goto out;
  }
  ex->max = max ? max : default_size();
  ex->idle_ns = DEFAULT_IDLE_NS;
  size_t half = (size_t)weft__ncpu() / 2;
  ex->maxspin = half ? half : 1;
out:
  pthread_condattr_destroy(&ca);
  return e;
}

/* Joins ended threads (they touch their executor no more) and frees their
 * records. */
static void reap(worker_rec *list) {
  while (list) {
    worker_rec *n = list->next;
    pthread_join(list->th, NULL);
    free(list);
    list = n;
  }
}

/* Under the mutex, which it lets go meanwhile: joins every ended thread. */
static void reap_dead(weft_executor *ex) {
  worker_rec *list;
  while ((list = ex->dead) != NULL) {
    ex->dead = NULL;
    ex->njoining++;
    pthread_mutex_unlock(&ex->mu);
    reap(list);
    pthread_mutex_lock(&ex->mu);
    if (--ex->njoining == 0) pthread_cond_broadcast(&ex->quiet);
  }
}

static void ex_destroy(weft_executor *ex) {
  reap(ex->dead); /* nobody else sees ex any more: see ex_unused */
  pthread_cond_destroy(&ex->quiet);
  pthread_cond_destroy(&ex->work);
  pthread_mutex_destroy(&ex->mu);
  free(ex);
}

/* Under the mutex: may ex be freed now? (The caller unlocks, then frees.) */
static bool ex_unused(const weft_executor *ex) {
  return ex->released && !ex->nthreads && !ex->njobs && !ex->nwaiters &&
         !ex->njoining;
}

/* Under the mutex: a job left the executor (finished, dropped, cancelled). */
static void ex_job_gone(weft_executor *ex) {
  if (--ex->njobs == 0 && ex->shutdown) pthread_cond_broadcast(&ex->quiet);
}

static weft_executor *default_ex;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

/* The loop of this thread, if it is one of the default pool's users
 * (initial-exec: one load on weft_executor_run's path, no call). */
static __thread pool_user *tls_user __attribute__((tls_model("initial-exec")));

static weft_executor *default_make(void) {
  weft_executor *ex = malloc(sizeof *ex);
  if (ex && ex_init(ex, 0) != 0) {
    free(ex);
    ex = NULL;
  }
  return ex;
}

/* A child of fork() has none of its parent's pool threads (and a copy of
 * a mutex one of them may have held): it starts a default pool of its own
 * and abandons the copy. Executors made with weft_executor_new before the
 * fork must not be used in the child. */
static weft_executor *forsaken; /* kept reachable: jobs may point to it */

static void default_after_fork(void) {
  forsaken = default_ex;
  weft_executor *ex = default_make();
  /* The forking thread's loop is the child's too: still a user, whose
   * jobs on the parent's threads will never end here. */
  if (ex && tls_user) {
    ex->nusers = 1;
    tls_user->nabandoned = 0;
  }
  __atomic_store_n(&default_ex, ex, __ATOMIC_RELEASE);
}

static void default_init(void) {
  __atomic_store_n(&default_ex, default_make(), __ATOMIC_RELEASE);
  pthread_atfork(NULL, NULL, default_after_fork);
}

weft_executor *weft__default_executor(void) {
  weft_executor *ex = __atomic_load_n(&default_ex, __ATOMIC_ACQUIRE);
  if (weft__likely(ex)) return ex;
  pthread_once(&default_once, default_init);
  ex = __atomic_load_n(&default_ex, __ATOMIC_ACQUIRE);
  if (!ex) errno = ENOMEM; /* a later call does not retry: pthread_once */
  return ex;
}

weft_executor *weft_executor_new(size_t max_threads) {
  weft_executor *ex = malloc(sizeof *ex);
  if (!ex) return NULL;
  int e = ex_init(ex, max_threads);
  if (e) {
    free(ex);
    errno = e;
    return NULL;
  }
  return ex;
}

static weft_executor *resolve(weft_executor *ex) {
  return ex ? ex : weft__default_executor();
}

int weft_executor_set_idle(weft_executor *ex, int64_t duration) {
  if (!(ex = resolve(ex))) return -EINVAL;
  pthread_mutex_lock(&ex->mu);
  ex->idle_ns = duration < 0 ? 0 : duration;
  pthread_cond_broadcast(&ex->work); /* sleepers re-arm their timeout */
  pthread_mutex_unlock(&ex->mu);
  return 0;
}

size_t weft_executor_threads(weft_executor *ex) {
  if (!ex) {
    ex = __atomic_load_n(&default_ex, __ATOMIC_ACQUIRE);
    if (!ex) return 0;
  }
  pthread_mutex_lock(&ex->mu);
  size_t n = ex->nthreads;
  pthread_mutex_unlock(&ex->mu);
  return n;
}

/* ---- jobs ------------------------------------------------------------- */

static void q_unlink(weft_executor *ex, job *j) {
  if (j->prev)
    j->prev->next = j->next;
  else
    ex->head = j->next;
  if (j->next)
    j->next->prev = j->prev;
  else
    ex->tail = j->prev;
  j->prev = j->next = NULL;
  j->queued = false;
  atomic_fetch_sub_explicit(&ex->nqueued, 1, memory_order_relaxed);
}

static job *q_pop(weft_executor *ex) {
  job *j = ex->head;
  if (j) q_unlink(ex, j);
  return j;
}

/* The job's caller is gone: hand arg and result to the cleanup, free it. */
static void job_dispose(job *j, int status) {
  if (j->cleanup) j->cleanup(j->arg, status ? NULL : j->result, status);
  weft_loop_unref(j->loop);
  free(j);
}

/* job_dispose for a job whose task was cancelled while it ran (counted
 * in job_unpark): its loop's end may be waiting for it. */
static void job_dispose_abandoned(job *j, int status) {
  weft_executor *ex = j->ex;
  pool_user *u = j->user;
  job_dispose(j, status);
  if (!u) return;
  pthread_mutex_lock(&ex->mu);
  if (--u->nabandoned == 0) pthread_cond_broadcast(&ex->quiet);
  pthread_mutex_unlock(&ex->mu);
}

/* Runs on the loop's thread: the job ended while its task waited, or
 * while the task was being cancelled (then the cleanup gets it). */
static void job_complete(weft_loop *L, weft__msg *m) {
  job *j = weft__container_of(m, job, msg);
  if (atomic_load_explicit(&j->state, memory_order_relaxed) & J_ABANDONED) {
    job_dispose_abandoned(j, j->status);
    return;
  }
  L->nexpected--;
  weft__loop_unref_lazy(L); /* the job's: the loop is ours meanwhile */
  j->loop = NULL;
  weft__wake(j->task, j->status);
}

/* Ends a job that ran (status 0) or was dropped (-ESHUTDOWN), on any
 * thread. */
static void job_finish(job *j, int status) {
  j->status = status;
  unsigned old = atomic_fetch_or(&j->state, J_DONE);
  if (old & J_ABANDONED) {
    job_dispose_abandoned(j, status);
    return;
  }
  /* The loop refuses only once it is being freed, which means the task
   * was cancelled (J_ABANDONED after our J_DONE): the cleanup is ours. */
  if (weft__loop_post(j->loop, &j->msg) != 0)
    job_dispose_abandoned(j, status);
}

static const weft__wait_kind job_kind = {"thread job", NULL};

/* Called by the loop when the waiting task is cancelled. */
static void job_unpark(weft_task *t) {
  job *j = weft__body(t)->wait_on.layer;
  weft_executor *ex = j->ex;
  weft_loop *L = t->loop;
  L->nexpected--;
  pthread_mutex_lock(&ex->mu);
  if (j->queued) { /* never started: it never will */
    q_unlink(ex, j);
    ex_job_gone(ex);
    bool unused = ex_unused(ex);
    pthread_mutex_unlock(&ex->mu);
    if (unused) ex_destroy(ex);
    weft__loop_unref_lazy(L);
    j->loop = NULL;
    job_dispose(j, -ECANCELED);
    return;
  }
  /* Running, or done with its completion on the way: whoever disposes
   * of it lets the count down (job_dispose_abandoned). */
  if (j->user) j->user->nabandoned++;
  pthread_mutex_unlock(&ex->mu);
  atomic_fetch_or(&j->state, J_ABANDONED);
}

/* ---- threads ---------------------------------------------------------- */

/* The executor whose thread this is (NULL: not a pool thread). */
static __thread weft_executor *tls_pool;

/* Whether a polling thread should stop polling: a job came, or the pool
 * is being drained (the thread ends at once rather than after its poll). */
static bool work_ready(void *arg) {
  weft_executor *ex = arg;
  return atomic_load_explicit(&ex->nqueued, memory_order_relaxed) != 0 ||
         atomic_load_explicit(&ex->draining, memory_order_relaxed);
}

static struct timespec abs_after(int64_t ns) {
  int64_t when = weft__clock();
  return weft__timespec(ns > INT64_MAX - when ? INT64_MAX : when + ns);
}

/* Under the mutex: sleeps until signalled or the idle time is over.
 * False when the thread should end. */
static bool sleep_for_work(weft_executor *ex) {
  ex->nsleeping++;
  int rc = 0;
  if (ex->idle_ns == WEFT_FOREVER) {
    pthread_cond_wait(&ex->work, &ex->mu);
  } else {
    struct timespec ts = abs_after(ex->idle_ns);
    rc = pthread_cond_timedwait(&ex->work, &ex->mu, &ts);
  }
  ex->nsleeping--;
  if (ex->nwaking) ex->nwaking--;
  return !(rc == ETIMEDOUT && !ex->head);
}

/*
 * A thread's life. What it does next is decided under the mutex before
 * it posts the completion of the job it just ran, so that the loop, which
 * queues the next job as soon as it sees the completion, already counts
 * this thread as polling for work and starts no other.
 */
static void *worker(void *arg) {
  worker_rec *self = arg;
  weft_executor *ex = self->ex;
  tls_pool = ex;
  pthread_mutex_lock(&ex->mu);
  char name[16];
  snprintf(name, sizeof name, "weft-pool-%u", ex->serial++);
  pthread_setname_np(pthread_self(), name);
  if (ex->nwaking) ex->nwaking--;
  job *finished = NULL;
  bool spun = false; /* polled since the last job: sleep next */
  for (;;) {
    job *j = q_pop(ex);
    bool stop = ex->shutdown ||
                atomic_load_explicit(&ex->draining, memory_order_relaxed);
    bool spin = !j && !spun && !stop && ex->nspinning < ex->maxspin;
    if (spin) ex->nspinning++;
    if (!j && !spin && !finished) {
      if (stop || !sleep_for_work(ex)) break;
      continue;
    }
    pthread_mutex_unlock(&ex->mu);
    if (finished) job_finish(finished, 0);
    finished = NULL;
    if (j) {
      j->result = j->fn(j->arg);
      finished = j;
      spun = false;
    } else if (spin) {
      spun = true;
      weft__spin(work_ready, ex, WEFT__SPIN_WORKER_NS);
    }
    pthread_mutex_lock(&ex->mu);
    if (spin) ex->nspinning--;
    if (j) ex_job_gone(ex); /* posted on the next round, before any exit */
  }
  ex->nthreads--;
  if (self->prev)
    self->prev->next = self->next;
  else
    ex->live = self->next;
  if (self->next) self->next->prev = self->prev;
  reap_dead(ex); /* the thread that ended before this one */
  /* Whoever comes next joins this one; nobody would once ex is released
   * (its last thread frees it): then it detaches itself. After the
   * unlock, a thread left on `dead` touches ex no more. */
  bool detach = ex->released;
  if (!detach) {
    self->next = ex->dead;
    ex->dead = self;
  }
  if (!ex->nthreads) pthread_cond_broadcast(&ex->quiet);
  bool unused = ex_unused(ex);
  pthread_mutex_unlock(&ex->mu);
  if (detach) {
    pthread_detach(pthread_self());
    free(self);
  }
  if (unused) ex_destroy(ex);
  return NULL;
}

/* Under the mutex: starts a thread. Pool threads block every signal, so
 * signals go to the loops' threads (and signalfd works). */
static int start_thread(weft_executor *ex) {
  worker_rec *w = malloc(sizeof *w);
  if (!w) return -ENOMEM;
  w->prev = NULL;
  w->ex = ex;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = pthread_create(&w->th, NULL, worker, w); /* joinable: see reap */
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e) {
    free(w);
    return -e;
  }
  w->next = ex->live; /* the thread waits for the mutex we hold */
  if (w->next) w->next->prev = w;
  ex->live = w;
  ex->nthreads++;
  ex->nwaking++;
  return 0;
}

/* Queues j and makes sure some thread will take it. `fresh`: the calling
 * thread's loop becomes a user of ex, the default pool. */
static int enqueue(weft_executor *ex, job *j, pool_user *fresh) {
  pthread_mutex_lock(&ex->mu);
  if (ex->shutdown) {
    pthread_mutex_unlock(&ex->mu);
    return -ESHUTDOWN;
  }
  if (fresh) {
    ex->nusers++;
    tls_user = fresh;
    if (atomic_load_explicit(&ex->draining, memory_order_relaxed)) {
      /* The last user is draining it: the pool is ours now. */
      atomic_store_explicit(&ex->draining, false, memory_order_relaxed);
      pthread_cond_broadcast(&ex->quiet);
    }
  }
  j->ex = ex;
  j->queued = true;
  j->next = NULL;
  j->prev = ex->tail;
  if (ex->tail)
    ex->tail->next = j;
  else
    ex->head = j;
  ex->tail = j;
  size_t queued = atomic_fetch_add_explicit(&ex->nqueued, 1,
                                            memory_order_relaxed) + 1;
  ex->njobs++;
  int rc = 0;
  if (queued > ex->nspinning + ex->nwaking) {
    if (ex->nsleeping > ex->nwaking) {
      ex->nwaking++;
      pthread_cond_signal(&ex->work);
    } else if (ex->nthreads < ex->max) {
      rc = start_thread(ex);
      if (rc && ex->nthreads) rc = 0; /* the others will get to it */
    }
  }
  if (rc) { /* no thread at all to run it */
    q_unlink(ex, j);
    ex->njobs--;
  }
  pthread_mutex_unlock(&ex->mu);
  return rc;
}

/* ---- to_thread ---------------------------------------------------------- */

int weft_executor_run(weft_executor *ex, weft_blocking_fn fn, void *arg,
                      weft_cleanup_fn cleanup, void **result) {
  if (!fn) return -EINVAL;
  weft_loop *L = weft__tls_loop;
  weft_task *t = L ? L->current : NULL;
  int rc;
  job *j = NULL;
  if (!t) {
    rc = weft__misuse(__func__, WEFT_ENOTASK);
    goto fail;
  }
  if ((rc = weft__checkpoint(t)) != 0) goto fail;
  /* A closed inbox could not take the completion. */
  if (weft__inbox_closed(L)) {
    rc = -ESHUTDOWN;
    goto fail;
  }
  bool dflt = !ex;
  if (!(ex = resolve(ex))) {
    rc = -ENOMEM;
    goto fail;
  }
  pool_user *fresh = NULL; /* this loop's first job on the default pool */
  if (dflt && !tls_user && !(fresh = calloc(1, sizeof *fresh))) {
    rc = -ENOMEM;
    goto fail;
  }
  if (!(j = malloc(sizeof *j))) {
    free(fresh);
    rc = -ENOMEM;
    goto fail;
  }
  j->fn = fn;
  j->arg = arg;
  j->cleanup = cleanup;
  j->result = NULL;
  j->loop = weft_loop_ref(L);
  j->task = t;
  j->msg.run = job_complete;
  j->status = 0;
  atomic_init(&j->state, 0);
  j->user = dflt ? (fresh ? fresh : tls_user) : NULL;
  if ((rc = enqueue(ex, j, fresh)) != 0) {
    if (fresh && tls_user != fresh) free(fresh);
    weft_loop_unref(L);
    free(j);
    goto fail;
  }
  L->nexpected++; /* the completion comes soon: see weft__spin */
  weft__task_body *b = weft__body(t);
  b->wait_on.layer = j;
  rc = weft__park(L, t, job_unpark, &job_kind, j);
  b->wait_on.layer = NULL;
  if (rc == -ECANCELED) return rc; /* the job went to its cleanup */
  if (rc == 0) {
    if (result) *result = j->result;
    free(j);
    return 0;
  }
  free(j); /* dropped by a shutdown: rc is -ESHUTDOWN */
fail:
  if (cleanup) cleanup(arg, NULL, rc);
  return rc;
}

int weft_to_thread(weft_blocking_fn fn, void *arg, void **result) {
  if (!fn) return -EINVAL;
  if (!weft__cur()) return weft__misuse(__func__, WEFT_ENOTASK);
  return weft_executor_run(NULL, fn, arg, NULL, result);
}

/* ---- the default pool's users ------------------------------------------ */

/*
 * The loop of the calling thread is ending (loop_stop: every task has
 * finished, nothing is freed yet). If it used the default pool:
 *
 * 1. It waits for its jobs whose callers were cancelled while they ran
 *    (nobody awaits them any more, but their cleanups and `arg` belong to
 *    this run), as asyncio.run's shutdown_default_executor waits for the
 *    to_thread calls it abandoned. Nothing of it is queued: a job whose
 *    caller is cancelled before a thread took it is taken out at once.
 *
 * 2. If it was the pool's last user, no job is left (each belongs to a
 *    loop that uses the pool until it has done step 1), so it drains the
 *    pool: every thread ends as soon as it is idle (a spinning one stops
 *    spinning, a sleeping one is woken), and it joins them all. The next
 *    job starts threads again.
 *
 * Two cases leave the pool as it is after step 1: another loop starts
 * using it during the drain (it takes the pool over, threads and all, and
 * drains it when it ends), or this loop runs inside one of the pool's own
 * jobs (it would wait for its own thread: the threads end after their
 * idle time and are joined by the next drain).
 */
static void pool_loop_stop(weft_loop *L) {
  (void)L; /* one loop per thread: tls_user is L's */
  pool_user *u = tls_user;
  if (weft__likely(!u)) return;
  tls_user = NULL;
  weft_executor *ex = __atomic_load_n(&default_ex, __ATOMIC_ACQUIRE);
  if (!ex) { /* a child of fork() that could not make a pool */
    free(u);
    return;
  }
  pthread_mutex_lock(&ex->mu);
  while (u->nabandoned) pthread_cond_wait(&ex->quiet, &ex->mu);
  if (--ex->nusers == 0 && tls_pool != ex) {
    atomic_store_explicit(&ex->draining, true, memory_order_relaxed);
    pthread_cond_broadcast(&ex->work); /* sleeping threads end */
    while ((ex->nthreads || ex->njoining) && !ex->nusers)
      pthread_cond_wait(&ex->quiet, &ex->mu);
    if (!ex->nusers) {
      atomic_store_explicit(&ex->draining, false, memory_order_relaxed);
      reap_dead(ex);
    }
  }
  pthread_mutex_unlock(&ex->mu);
  free(u);
}

/* Registered before any loop exists, so that every loop ends through
 * pool_loop_stop; in a program linked with libweft.a, only if it pulls
 * this file in, i.e. if it can have used the default pool. */
WEFT__LAYER_CTOR static void pool_layer_register(void) {
  static const weft__layer layer = {.loop_stop = pool_loop_stop};
  weft__layer_register(&layer); /* cannot fail: see WEFT__MAX_LAYERS */
}

/* ---- shutdown ------------------------------------------------------------ */

/* Lets go of ex after a shutdown's wait (or a wait that never ran). */
static void waiter_done(weft_executor *ex) {
  pthread_mutex_lock(&ex->mu);
  ex->nwaiters--;
  bool unused = ex_unused(ex);
  pthread_mutex_unlock(&ex->mu);
  if (unused) ex_destroy(ex);
}

/* Blocks until ex has no job and no thread left, every thread joined. */
static void *await_quiet(void *arg) {
  weft_executor *ex = arg;
  pthread_mutex_lock(&ex->mu);
  while (ex->njobs || ex->nthreads || ex->njoining)
    pthread_cond_wait(&ex->quiet, &ex->mu);
  reap_dead(ex);
  pthread_mutex_unlock(&ex->mu);
  waiter_done(ex);
  return NULL;
}

static void await_quiet_cleanup(void *arg, void *result, int status) {
  (void)result;
  if (status) waiter_done(arg); /* await_quiet never ran */
}

int weft_executor_shutdown(weft_executor *ex, int how) {
  if (!ex || (how != WEFT_EXECUTOR_WAIT && how != WEFT_EXECUTOR_DROP))
    return -EINVAL;
  pthread_mutex_lock(&ex->mu);
  ex->shutdown = true;
  job *dropped = NULL;
  if (how == WEFT_EXECUTOR_DROP) {
    job *j;
    while ((j = q_pop(ex)) != NULL) { /* keep them in order */
      j->next = dropped;
      dropped = j;
    }
  }
  pthread_cond_broadcast(&ex->work); /* idle threads end */
  ex->nwaiters++;
  pthread_mutex_unlock(&ex->mu);
  /* Dropped jobs are finished outside the mutex (their cleanups may take
   * time), oldest first; ex stays alive: they still count in njobs. */
  job *fifo = NULL;
  while (dropped) {
    job *n = dropped->next;
    dropped->next = fifo;
    fifo = dropped;
    dropped = n;
  }
  while (fifo) {
    job *n = fifo->next;
    job_finish(fifo, -ESHUTDOWN);
    pthread_mutex_lock(&ex->mu);
    ex_job_gone(ex);
    pthread_mutex_unlock(&ex->mu);
    fifo = n;
  }
  if (weft__cur())
    return weft_executor_run(NULL, await_quiet, ex, await_quiet_cleanup, NULL);
  if (tls_pool == ex) { /* a job of ex: it would wait for itself */
    waiter_done(ex);
    return -EDEADLK;
  }
  await_quiet(ex);
  return 0;
}

int weft_executor_free(weft_executor *ex) {
  if (!ex) return -EINVAL;
  weft__name_forget(ex);
  pthread_mutex_lock(&ex->mu);
  ex->shutdown = true;
  ex->released = true;
  pthread_cond_broadcast(&ex->work);
  bool unused = ex_unused(ex);
  pthread_mutex_unlock(&ex->mu);
  if (unused) ex_destroy(ex);
  return 0;
}
