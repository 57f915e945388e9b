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
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "thread/thread.h"

enum { J_DONE = 1u, J_ABANDONED = 2u };

typedef struct job {
  struct job *prev, *next; /* the executor's queue (under its mutex) */
  weft__msg msg;           /* completion, posted to the waiting loop */
  weft_executor *ex;
  weft_blocking_fn fn;
  void *arg;
  weft_cleanup_fn cleanup;
  void *result;
  weft_loop *loop;         /* referenced until the job is settled */
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
  size_t maxspin;       /* threads allowed to poll at once */
  int64_t idle_ns;
  unsigned serial;      /* names threads */
  bool shutdown;
  bool released;        /* weft_executor_free was called */
};

/* ---- CPUs ------------------------------------------------------------- */

static int ncpu_cached;
static pthread_once_t ncpu_once = PTHREAD_ONCE_INIT;

static void ncpu_init(void) {
  cpu_set_t set;
  int n = 0;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  if (n < 1) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    n = c > 0 ? (int)c : 1;
  }
  __atomic_store_n(&ncpu_cached, n, __ATOMIC_RELEASE);
}

int weft__ncpu(void) {
  int n = __atomic_load_n(&ncpu_cached, __ATOMIC_ACQUIRE);
  if (likely(n)) return n;
  pthread_once(&ncpu_once, ncpu_init);
  return __atomic_load_n(&ncpu_cached, __ATOMIC_ACQUIRE);
}

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

static void ex_destroy(weft_executor *ex) {
  pthread_cond_destroy(&ex->quiet);
  pthread_cond_destroy(&ex->work);
  pthread_mutex_destroy(&ex->mu);
  free(ex);
}

/* Under the mutex: may ex be freed now? (The caller unlocks, then frees.) */
static bool ex_unused(const weft_executor *ex) {
  return ex->released && !ex->nthreads && !ex->njobs && !ex->nwaiters;
}

/* Under the mutex: a job left the executor (finished, dropped, cancelled). */
static void ex_job_gone(weft_executor *ex) {
  if (--ex->njobs == 0 && ex->shutdown) pthread_cond_broadcast(&ex->quiet);
}

static weft_executor *default_ex;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

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
  __atomic_store_n(&default_ex, default_make(), __ATOMIC_RELEASE);
}

static void default_init(void) {
  __atomic_store_n(&default_ex, default_make(), __ATOMIC_RELEASE);
  pthread_atfork(NULL, NULL, default_after_fork);
}

weft_executor *weft__default_executor(void) {
  weft_executor *ex = __atomic_load_n(&default_ex, __ATOMIC_ACQUIRE);
  if (likely(ex)) return ex;
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

/* Runs on the loop's thread: the job ended while its task waited, or
 * while the task was being cancelled (then the cleanup gets it). */
static void job_complete(weft_loop *L, weft__msg *m) {
  job *j = (job *)((char *)m - offsetof(job, msg));
  if (atomic_load_explicit(&j->state, memory_order_relaxed) & J_ABANDONED) {
    job_dispose(j, j->status);
    return;
  }
  L->nthread_jobs--;
  L->refs_drop++; /* the job's reference: the loop is ours meanwhile */
  j->loop = NULL;
  weft__wake(j->task, j->status);
}

/* Ends a job that ran (status 0) or was dropped (-ESHUTDOWN), on any
 * thread. */
static void job_finish(job *j, int status) {
  j->status = status;
  unsigned old = atomic_fetch_or(&j->state, J_DONE);
  if (old & J_ABANDONED) {
    job_dispose(j, status);
    return;
  }
  /* The loop refuses only once it is being freed, which means the task
   * was cancelled (J_ABANDONED after our J_DONE): the cleanup is ours. */
  if (weft__loop_post(j->loop, &j->msg) != 0) job_dispose(j, status);
}

/* Called by the loop when the waiting task is cancelled. */
static void job_unpark(weft_task *t) {
  job *j = weft__body(t)->wait_obj;
  weft_executor *ex = j->ex;
  weft_loop *L = t->loop;
  L->nthread_jobs--;
  pthread_mutex_lock(&ex->mu);
  if (j->queued) { /* never started: it never will */
    q_unlink(ex, j);
    ex_job_gone(ex);
    bool unused = ex_unused(ex);
    pthread_mutex_unlock(&ex->mu);
    if (unused) ex_destroy(ex);
    L->refs_drop++;
    j->loop = NULL;
    job_dispose(j, -ECANCELED);
    return;
  }
  pthread_mutex_unlock(&ex->mu);
  atomic_fetch_or(&j->state, J_ABANDONED);
}

/* ---- threads ---------------------------------------------------------- */

/* The executor whose thread this is (NULL: not a pool thread). */
static __thread weft_executor *tls_pool;

static bool work_ready(void *arg) {
  return atomic_load_explicit(&((weft_executor *)arg)->nqueued,
                              memory_order_relaxed) != 0;
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
  weft_executor *ex = arg;
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
    bool spin = !j && !spun && !ex->shutdown && ex->nspinning < ex->maxspin;
    if (spin) ex->nspinning++;
    if (!j && !spin && !finished) {
      if (ex->shutdown || !sleep_for_work(ex)) break;
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
  if (!ex->nthreads) pthread_cond_broadcast(&ex->quiet);
  bool unused = ex_unused(ex);
  pthread_mutex_unlock(&ex->mu);
  if (unused) ex_destroy(ex);
  return NULL;
}

/* Under the mutex: starts a thread. Pool threads block every signal, so
 * signals go to the loops' threads (and signalfd works). */
static int start_thread(weft_executor *ex) {
  pthread_attr_t a;
  int e = pthread_attr_init(&a);
  if (e) return -e;
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t th;
  e = pthread_create(&th, &a, worker, ex);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&a);
  if (e) return -e;
  ex->nthreads++;
  ex->nwaking++;
  return 0;
}

/* Queues j and makes sure some thread will take it. */
static int enqueue(weft_executor *ex, job *j) {
  pthread_mutex_lock(&ex->mu);
  if (ex->shutdown) {
    pthread_mutex_unlock(&ex->mu);
    return -ESHUTDOWN;
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
  if (weft__cancelled(t)) {
    rc = -ECANCELED;
    goto fail;
  }
  /* A closed inbox could not take the completion. */
  if (atomic_load_explicit(&L->inbox_closed, memory_order_relaxed)) {
    rc = -ESHUTDOWN;
    goto fail;
  }
  if (!(ex = resolve(ex))) {
    rc = -ENOMEM;
    goto fail;
  }
  if (!(j = malloc(sizeof *j))) {
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
  if ((rc = enqueue(ex, j)) != 0) {
    weft_loop_unref(L);
    free(j);
    goto fail;
  }
  L->nthread_jobs++;
  task_body *b = weft__body(t);
  b->wait_obj = j;
  rc = weft__park(L, t, job_unpark);
  b->wait_obj = NULL;
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

/* ---- shutdown ------------------------------------------------------------ */

/* Lets go of ex after a shutdown's wait (or a wait that never ran). */
static void waiter_done(weft_executor *ex) {
  pthread_mutex_lock(&ex->mu);
  ex->nwaiters--;
  bool unused = ex_unused(ex);
  pthread_mutex_unlock(&ex->mu);
  if (unused) ex_destroy(ex);
}

/* Blocks until ex has no job and no thread left. */
static void *await_quiet(void *arg) {
  weft_executor *ex = arg;
  pthread_mutex_lock(&ex->mu);
  while (ex->njobs || ex->nthreads) pthread_cond_wait(&ex->quiet, &ex->mu);
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
  pthread_mutex_lock(&ex->mu);
  ex->shutdown = true;
  ex->released = true;
  pthread_cond_broadcast(&ex->work);
  bool unused = ex_unused(ex);
  pthread_mutex_unlock(&ex->mu);
  if (unused) ex_destroy(ex);
  return 0;
}
