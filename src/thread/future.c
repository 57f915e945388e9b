/*
 * weft_loop_submit and futures.
 *
 * A future is one allocation that travels: it is the submission message
 * (the loop spawns a task from it), the record of the result, and later
 * the message that wakes a task waiting for it on another loop. Its state
 * word holds the flags below; every hand-over between threads is an
 * atomic read-modify-write on it, so of two parties racing (the loop
 * finishing the task, a waiter arriving or leaving, a canceller) the later
 * one always sees what the earlier one did:
 *   - the loop sets F_DONE after storing the result; a thread waiter sets
 *     F_TWAIT before sleeping on the word (a futex), a task waiter sets
 *     F_TASKWAIT; whichever comes second acts (the loop wakes the waiter,
 *     or the waiter does not wait);
 *   - a canceller sets F_CANCEL; if F_DONE was not set yet it posts a
 *     cancel message to the loop.
 * References: the owner's (weft_future_free), the loop's until the task is
 * done, and one per message in flight. The future also holds a reference
 * on its loop until it is done (then handed to a cancel message, if one is
 * coming), so that a cancel can always be posted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "thread/layer.h"

enum {
  F_DONE = 1u << 0,
  F_CANCEL = 1u << 1,   /* cancellation asked for */
  F_TWAIT = 1u << 2,    /* a plain thread sleeps on the state word */
  F_TASKWAIT = 1u << 3, /* a task waits: wake it through its loop */
  F_WAITING = 1u << 4,  /* a wait is in progress (one at a time) */
};

struct weft_future {
  /* One cache line holds what every submission touches. */
  _Alignas(64) weft__msg msg; /* the submission; then the wake of a task
                                 waiter; the link of a spare record */
  weft_fn fn;
  void *arg;
  weft_loop *loop;
  weft_task *task;      /* while it runs; the loop's thread only */
  atomic_uint state;
  atomic_int refs;
  int result;
  /* Waits and cancels. */
  weft__msg cancel_msg;
  weft_loop *wloop;     /* a waiting task's loop (referenced) */
  weft_task *wtask;     /* the waiting task; wloop's thread only */
};

_Static_assert(offsetof(weft_future, result) + sizeof(int) <= 64,
               "the hot part of a future spans two cache lines");

/* The link of a spare record: its message's, unused meanwhile. */
static inline weft_future *spare_next(weft_future *f) {
  return (weft_future *)atomic_load_explicit(&f->msg.next,
                                             memory_order_relaxed);
}
static inline void set_spare_next(weft_future *f, weft_future *n) {
  atomic_store_explicit(&f->msg.next, (weft__msg *)n, memory_order_relaxed);
}

/*
 * Records are recycled: a loop puts the futures it frees on its own spare
 * stack (one CAS; free() would take the lock of the arena of the thread
 * that allocated them, against that thread's malloc), and a submitting
 * thread whose cache is empty takes the whole stack as its cache. A loop
 * gives its surplus back to malloc when it goes to sleep; futures freed
 * by other threads go to that thread's cache, up to THREAD_SPARES.
 *
 * The spare stack is this file's per-loop data (L->layer_data, see
 * weft__layer in internal.h), made by the loop_start hook below, read by
 * submitting threads, and freed by loop_release with the loop's struct.
 */
#define LOOP_SPARES 4096
#define THREAD_SPARES 256

typedef struct loop_spares {
  _Alignas(64) weft_future *_Atomic head; /* a line of its own */
  int n;                /* about how many (the loop's thread only) */
} loop_spares;

static int layer_id = -1; /* weft__layer_register's, from the constructor */

static inline loop_spares *spares_of(weft_loop *L) {
  return L->layer_data[layer_id];
}

static __thread weft_future *tls_spares
    __attribute__((tls_model("initial-exec")));
static __thread unsigned tls_nspares /* put by this thread, not taken */
    __attribute__((tls_model("initial-exec")));
static pthread_key_t spares_key;
static pthread_once_t spares_once = PTHREAD_ONCE_INIT;
static bool spares_key_ok;

static void free_list(weft_future *f) {
  while (f) {
    weft_future *n = spare_next(f);
    free(f);
    f = n;
  }
}

/* Thread exit: gives the thread's cache back to malloc. */
static void spares_dtor(void *p) {
  (void)p;
  free_list(tls_spares);
  tls_spares = NULL;
  tls_nspares = 0;
}

static void spares_key_init(void) {
  spares_key_ok = pthread_key_create(&spares_key, spares_dtor) == 0;
}

/* Before the cache gets its first record: arrange for it to be emptied
 * when the thread exits. False if that cannot be done. */
static bool cache_arm(void) {
  pthread_once(&spares_once, spares_key_init);
  return spares_key_ok && pthread_setspecific(spares_key, &tls_spares) == 0;
}

static bool cache_put(weft_future *f) {
  if (tls_nspares >= THREAD_SPARES || (!tls_spares && !cache_arm()))
    return false;
  set_spare_next(f, tls_spares);
  tls_spares = f;
  tls_nspares++;
  return true;
}

static weft_future *future_alloc(weft_loop *L) {
  weft_future *f = tls_spares;
  loop_spares *ls = spares_of(L);
  if (!f && atomic_load_explicit(&ls->head, memory_order_relaxed)) {
    f = atomic_exchange_explicit(&ls->head, NULL, memory_order_acquire);
    if (f) { /* the rest becomes our cache */
      if (cache_arm())
        tls_spares = spare_next(f);
      else
        free_list(spare_next(f));
      return f;
    }
  }
  if (f) {
    tls_spares = spare_next(f);
    if (tls_nspares) tls_nspares--;
    return f;
  }
  return aligned_alloc(_Alignof(weft_future), sizeof *f);
}

/* A loop collects freed records in a local batch of SPARE_BATCH and
 * publishes each batch with one CAS. */
#define SPARE_BATCH 32

static __thread weft_future *batch_head, *batch_tail
    __attribute__((tls_model("initial-exec")));
static __thread unsigned batch_n __attribute__((tls_model("initial-exec")));

static void batch_publish(weft_loop *L) {
  if (!batch_head) return;
  loop_spares *ls = spares_of(L);
  weft_future *head = atomic_load_explicit(&ls->head, memory_order_relaxed);
  do {
    if (!head) ls->n = 0; /* a submitter took them all */
    set_spare_next(batch_tail, head);
  } while (!atomic_compare_exchange_weak_explicit(
      &ls->head, &head, batch_head, memory_order_release,
      memory_order_relaxed));
  ls->n += (int)batch_n;
  batch_head = batch_tail = NULL;
  batch_n = 0;
}

static void future_recycle(weft_future *f) {
  weft_loop *L = weft__tls_loop;
  if (L) {
    set_spare_next(f, batch_head);
    batch_head = f;
    if (!batch_tail) batch_tail = f;
    if (++batch_n == SPARE_BATCH) batch_publish(L);
    return;
  }
  if (!cache_put(f)) free(f);
}

/* ---- the layer's hooks (weft__layer in internal.h) ----------------------- */

static int spares_start(weft_loop *L) {
  loop_spares *ls = aligned_alloc(_Alignof(loop_spares), sizeof *ls);
  if (!ls) return -ENOMEM;
  atomic_init(&ls->head, NULL);
  ls->n = 0;
  L->layer_data[layer_id] = ls;
  return 0;
}

/* The loop is about to sleep: gives back the surplus. */
static void spares_trim(weft_loop *L) {
  batch_publish(L);
  loop_spares *ls = spares_of(L);
  if (ls->n <= LOOP_SPARES) return;
  free_list(atomic_exchange(&ls->head, NULL));
  ls->n = 0;
}

/* The loop's thread, while it frees the loop (with weft__tls_loop still
 * set, and every task and message done): its local batch goes too, to be
 * freed with the rest by spares_release. */
static void spares_flush(weft_loop *L) { batch_publish(L); }

/* The loop's last reference is gone. */
static void spares_release(weft_loop *L) {
  loop_spares *ls = spares_of(L);
  free_list(atomic_exchange(&ls->head, NULL));
  free(ls);
  L->layer_data[layer_id] = NULL;
}

static void submitted_exit(weft_loop *L, weft_task *t);

/* Registered before any loop exists, so that every loop has its spare
 * stack; in a program linked with libweft.a, only if it pulls this file
 * in, i.e. if it can submit or wait on a future. */
WEFT__LAYER_CTOR static void futures_layer_register(void) {
  static const weft__layer layer = {
      .loop_start = spares_start,
      .before_sleep = spares_trim,
      .loop_stop = spares_flush,
      .loop_release = spares_release,
      .task_exit = submitted_exit, /* the tasks of submit_run */
  };
  layer_id = weft__layer_register(&layer); /* cannot fail: WEFT__MAX_LAYERS */
}

static void future_unref(weft_future *f) {
  if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
    future_recycle(f);
}

static void futex_wake_all(atomic_uint *w) {
  syscall(SYS_futex, (unsigned *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Sleeps while *w == val, until `deadline` (absolute, CLOCK_MONOTONIC). */
static void futex_wait_until(atomic_uint *w, unsigned val, int64_t deadline) {
  struct timespec ts, *tp = NULL;
  if (deadline != WEFT_FOREVER) {
    ts = weft__timespec(deadline);
    tp = &ts;
  }
  syscall(SYS_futex, (unsigned *)w, FUTEX_WAIT_BITSET_PRIVATE, val, tp, NULL,
          FUTEX_BITSET_MATCH_ANY);
}

/* ---- the loop's side ---------------------------------------------------- */

/* On the waiting task's loop: wake it, unless it left (cancelled). */
static void wake_run(weft_loop *L, weft__msg *m) {
  weft_future *f = (weft_future *)m;
  weft_task *t = f->wtask;
  if (t) {
    f->wtask = NULL;
    weft__wake(t, 0);
  }
  weft__loop_unref_lazy(L); /* the waiter's reference on its loop */
  future_unref(f);
}

/* Records the result and tells whoever waits. Gives up the loop's
 * reference on f. */
static void complete(weft_loop *L, weft_future *f, int rc) {
  f->task = NULL;
  f->result = rc;
  /* The only reference left is ours: nobody can wait, poll or cancel. */
  if (atomic_load_explicit(&f->refs, memory_order_acquire) == 1) {
    if (!(atomic_load_explicit(&f->state, memory_order_relaxed) & F_CANCEL))
      weft__loop_unref_lazy(L);
    future_recycle(f);
    return;
  }
  unsigned old = atomic_fetch_or(&f->state, F_DONE);
  if (!(old & F_CANCEL))
    weft__loop_unref_lazy(L); /* else a cancel message drops it */
  if (old & F_TWAIT) futex_wake_all(&f->state);
  if (old & F_TASKWAIT) { /* our reference on f goes with the wake */
    weft_loop *W = f->wloop;
    f->msg.run = wake_run;
    if (W == L) {
      wake_run(L, &f->msg);
    } else if (weft__loop_post(W, &f->msg) != 0) {
      weft_loop_unref(W);
      future_unref(f);
    }
    return;
  }
  future_unref(f);
}

/* The task's body. Its result goes to the future when the task finishes
 * (submitted_exit), also if it never got a stack to run on. */
static int submitted_main(void *arg) {
  weft_future *f = arg;
  if (weft__tls_loop->stopping) return -ESHUTDOWN;
  if (atomic_load_explicit(&f->state, memory_order_relaxed) & F_CANCEL)
    return -ECANCELED;
  return f->fn(f->arg);
}

/* The layer's task_exit hook: a task of submit_run finished. */
static void submitted_exit(weft_loop *L, weft_task *t) {
  complete(L, t->arg, t->result);
}

static void submit_run(weft_loop *L, weft__msg *m) {
  weft_future *f = (weft_future *)m;
  if (L->stopping) {
    complete(L, f, -ESHUTDOWN);
    return;
  }
  if (atomic_load_explicit(&f->state, memory_order_relaxed) & F_CANCEL) {
    complete(L, f, -ECANCELED);
    return;
  }
  weft_task *t = weft__task_new(L, submitted_main, f, NULL);
  if (!t) {
    complete(L, f, -ENOMEM);
    return;
  }
  weft__task_set_owner(t, layer_id); /* its end: submitted_exit */
  f->task = t;
  weft__task_start(L, NULL, t, false);
}

static void cancel_run(weft_loop *L, weft__msg *m) {
  weft_future *f = weft__container_of(m, weft_future, cancel_msg);
  if (f->task) weft__task_cancel(f->task);
  weft__loop_unref_lazy(L); /* the future's reference, handed over */
  future_unref(f);
}

/* ---- public -------------------------------------------------------------- */

weft_future *weft_loop_submit(weft_loop *loop, weft_fn fn, void *arg) {
  if (!loop || !fn) {
    errno = EINVAL;
    return NULL;
  }
  weft_future *f = future_alloc(loop);
  if (!f) return NULL;
  f->msg.run = submit_run;
  f->loop = loop;
  f->fn = fn;
  f->arg = arg;
  f->task = NULL;
  f->wloop = NULL;
  f->wtask = NULL;
  f->result = 0;
  atomic_init(&f->state, 0);
  atomic_init(&f->refs, 2);
  weft_loop_ref(loop);
  int rc = weft__loop_post(loop, &f->msg);
  if (rc) {
    weft_loop_unref(loop);
    future_recycle(f);
    return weft__null_errno(rc);
  }
  return f;
}

static const weft__wait_kind future_kind = {"future", NULL};

static void task_wait_unpark(weft_task *t) {
  weft_future *f = weft__body(t)->wait_on.layer;
  unsigned old = atomic_fetch_and(&f->state, ~(unsigned)F_TASKWAIT);
  f->wtask = NULL;
  /* Not done: nobody will post the wake, so the loop reference is ours
   * to give back. Done: the wake is on its way and gives it back. */
  if (!(old & F_DONE)) weft__loop_unref_lazy(t->loop);
}

static int wait_task(weft_loop *L, weft_task *t, weft_future *f) {
  if (weft__checkpoint(t)) return -ECANCELED;
  if (weft__inbox_closed(L))
    return -ESHUTDOWN; /* the wake could not be delivered */
  f->wtask = t;
  f->wloop = weft_loop_ref(L);
  unsigned old = atomic_fetch_or(&f->state, F_TASKWAIT);
  if (old & F_DONE) {
    atomic_fetch_and(&f->state, ~(unsigned)F_TASKWAIT);
    f->wtask = NULL;
    weft__loop_unref_lazy(L);
    return 0;
  }
  weft__task_body *b = weft__body(t);
  b->wait_on.layer = f;
  int rc = weft__park(L, t, task_wait_unpark, &future_kind, f);
  b->wait_on.layer = NULL;
  return rc;
}

static int wait_thread(weft_future *f, int64_t deadline) {
  unsigned s = atomic_fetch_or(&f->state, F_TWAIT) | F_TWAIT;
  int rc = 0;
  while (!(s & F_DONE)) {
    if (deadline != WEFT_FOREVER && weft__clock() >= deadline) {
      rc = -ETIMEDOUT;
      break;
    }
    futex_wait_until(&f->state, s, deadline);
    s = atomic_load(&f->state);
  }
  atomic_fetch_and(&f->state, ~(unsigned)F_TWAIT);
  return rc;
}

int weft_future_wait(weft_future *f, int *result) {
  return weft_future_wait_until(f, result, WEFT_FOREVER);
}

int weft_future_wait_until(weft_future *f, int *result, int64_t deadline) {
  if (!f) return -EINVAL;
  unsigned old = atomic_fetch_or(&f->state, F_WAITING);
  if (old & F_WAITING) return -EBUSY;
  int rc = 0;
  if (!(old & F_DONE)) {
    weft_loop *L = weft__tls_loop;
    weft_task *t = L ? L->current : NULL;
    if (t && f->loop == L && f->task == t) {
      rc = -EDEADLK;
    } else if (t) {
      weft_scope s;
      bool timed = deadline != WEFT_FOREVER;
      if (timed) weft_scope_open(&s, deadline);
      rc = wait_task(L, t, f);
      /* A result that came with the deadline still counts. */
      if (timed && weft_scope_close(&s) == -ETIMEDOUT && rc == -ECANCELED)
        rc = -ETIMEDOUT;
    } else if (L && f->loop == L) {
      rc = -EDEADLK; /* the loop cannot run while its thread waits */
    } else {
      rc = wait_thread(f, deadline);
    }
  }
  if (rc == 0 && result) *result = f->result;
  atomic_fetch_and(&f->state, ~(unsigned)F_WAITING);
  return rc;
}

int weft_future_poll(weft_future *f, int *result) {
  if (!f) return -EINVAL;
  if (!(atomic_load_explicit(&f->state, memory_order_acquire) & F_DONE))
    return -EAGAIN;
  if (result) *result = f->result;
  return 0;
}

int weft_future_cancel(weft_future *f) {
  if (!f) return -EINVAL;
  unsigned old = atomic_fetch_or(&f->state, F_CANCEL);
  if (old & (F_DONE | F_CANCEL)) return 0;
  /* The loop keeps its reference for us (it saw F_CANCEL, or will). */
  atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  f->cancel_msg.run = cancel_run;
  if (weft__loop_post(f->loop, &f->cancel_msg) != 0) {
    weft_loop_unref(f->loop);
    future_unref(f);
  }
  return 0;
}

int weft_future_free(weft_future *f) {
  if (!f) return -EINVAL;
  if (atomic_load(&f->state) & F_WAITING) return -EBUSY;
  weft__name_forget(f);
  future_unref(f);
  return 0;
}
