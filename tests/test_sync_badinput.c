/*
 * test_sync_badinput.c -- bad input to every sync call: NULL, an object
 * of the wrong type, blocking outside a task (WEFT_ENOTASK), and calls
 * from another thread's loop (WEFT_ELOOP), including freeing there.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "helpers.h"

/* Every call with NULL: -EINVAL, false or 0; frees too. */
Test(sync_badinput, null_everywhere, .timeout = 10) {
  long v = 0;
  cr_assert_eq(weft_lock_free(NULL), -EINVAL);
  cr_assert_eq(weft_lock_acquire(NULL), -EINVAL);
  cr_assert_eq(weft_lock_try_acquire(NULL), -EINVAL);
  cr_assert_eq(weft_lock_release(NULL), -EINVAL);
  cr_assert_not(weft_lock_locked(NULL));

  cr_assert_eq(weft_event_free(NULL), -EINVAL);
  cr_assert_eq(weft_event_set(NULL), -EINVAL);
  cr_assert_eq(weft_event_clear(NULL), -EINVAL);
  cr_assert_eq(weft_event_wait(NULL), -EINVAL);
  cr_assert_not(weft_event_is_set(NULL));

  cr_assert_eq(weft_cond_free(NULL), -EINVAL);
  cr_assert_null(weft_cond_lock(NULL));
  cr_assert_eq(weft_cond_wait(NULL), -EINVAL);
  cr_assert_eq(weft_cond_wait_for(NULL, NULL, NULL), -EINVAL);
  cr_assert_eq(weft_cond_notify(NULL, 1), -EINVAL);
  cr_assert_eq(weft_cond_notify_all(NULL), -EINVAL);

  cr_assert_eq(weft_sem_free(NULL), -EINVAL);
  cr_assert_eq(weft_sem_acquire(NULL), -EINVAL);
  cr_assert_eq(weft_sem_try_acquire(NULL), -EINVAL);
  cr_assert_eq(weft_sem_release(NULL), -EINVAL);
  cr_assert_eq(weft_sem_value(NULL), 0);
  cr_assert_not(weft_sem_locked(NULL));

  cr_assert_eq(weft_barrier_free(NULL), -EINVAL);
  cr_assert_eq(weft_barrier_wait(NULL), -EINVAL);
  cr_assert_eq(weft_barrier_abort(NULL), -EINVAL);
  cr_assert_eq(weft_barrier_reset(NULL), -EINVAL);
  cr_assert_eq(weft_barrier_parties(NULL), 0);
  cr_assert_eq(weft_barrier_n_waiting(NULL), 0);
  cr_assert_not(weft_barrier_broken(NULL));

  cr_assert_eq(weft_queue_free(NULL), -EINVAL);
  cr_assert_eq(weft_queue_put(NULL, &v), -EINVAL);
  cr_assert_eq(weft_queue_get(NULL, &v), -EINVAL);
  cr_assert_eq(weft_queue_try_put(NULL, &v), -EINVAL);
  cr_assert_eq(weft_queue_try_get(NULL, &v), -EINVAL);
  cr_assert_eq(weft_queue_task_done(NULL), -EINVAL);
  cr_assert_eq(weft_queue_join(NULL), -EINVAL);
  cr_assert_eq(weft_queue_shutdown(NULL, true), -EINVAL);
  cr_assert_eq(weft_queue_size(NULL), 0);
  cr_assert_eq(weft_queue_capacity(NULL), 0);
  cr_assert(weft_queue_empty(NULL));
  cr_assert_not(weft_queue_full(NULL));
  weft_queue *q = weft_queue_new(1, sizeof v);
  cr_assert_eq(weft_queue_put(q, NULL), -EINVAL);
  cr_assert_eq(weft_queue_get(q, NULL), -EINVAL);
  cr_assert_eq(weft_queue_try_put(q, NULL), -EINVAL);
  cr_assert_eq(weft_queue_try_get(q, NULL), -EINVAL);
  weft_queue_free(q);

  cr_assert_eq(weft_chan_tx_close(NULL), -EINVAL);
  cr_assert_eq(weft_chan_rx_close(NULL), -EINVAL);
  cr_assert_eq(weft_chan_send(NULL, &v), -EINVAL);
  cr_assert_eq(weft_chan_recv(NULL, &v), -EINVAL);
  cr_assert_eq(weft_chan_try_send(NULL, &v), -EINVAL);
  cr_assert_eq(weft_chan_try_recv(NULL, &v), -EINVAL);
  errno = 0;
  cr_assert_null(weft_chan_tx_clone(NULL));
  cr_assert_eq(errno, EINVAL);
  errno = 0;
  cr_assert_null(weft_chan_rx_clone(NULL));
  cr_assert_eq(errno, EINVAL);
}

/* A pointer to another type of object is -EINVAL, not a crash. */
Test(sync_badinput, wrong_type, .timeout = 10) {
  weft_event *e = weft_event_new();
  weft_lock *l = weft_lock_new();
  cr_assert_eq(weft_lock_release((weft_lock *)e), -EINVAL);
  cr_assert_eq(weft_sem_release((weft_sem *)e), -EINVAL);
  cr_assert_eq(weft_queue_task_done((weft_queue *)l), -EINVAL);
  cr_assert_eq(weft_barrier_abort((weft_barrier *)l), -EINVAL);
  cr_assert_eq(weft_event_set((weft_event *)l), -EINVAL);
  cr_assert_eq(weft_cond_notify((weft_cond *)l, 1), -EINVAL);
  cr_assert_eq(weft_event_free((weft_event *)l), -EINVAL);
  cr_assert_eq(weft_lock_free((weft_lock *)e), -EINVAL);
  cr_assert_not(weft_lock_locked((weft_lock *)e));
  cr_assert_eq(weft_event_free(e), 0);
  cr_assert_eq(weft_lock_free(l), 0);
}

/* ---------------------------------------------------------------- */
/* Outside a task                                                     */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_lock *l;
  weft_event *e;
  weft_cond *c;
  weft_sem *s;
  weft_barrier *b;
  weft_queue *q;
  weft_chan_tx *tx;
  weft_chan_rx *rx;
} objs;

static void objs_new(objs *o) {
  o->l = weft_lock_new();
  o->e = weft_event_new();
  o->c = weft_cond_new(NULL);
  o->s = weft_sem_new(0);
  o->b = weft_barrier_new(2);
  o->q = weft_queue_new(1, sizeof(long));
  weft_chan_ends ch = weft_chan_open(0, sizeof(long));
  cr_assert_not_null(ch.tx);
  o->tx = ch.tx;
  o->rx = ch.rx;
}

static void objs_free(objs *o) {
  cr_assert_eq(weft_lock_free(o->l), 0);
  cr_assert_eq(weft_event_free(o->e), 0);
  cr_assert_eq(weft_cond_free(o->c), 0);
  cr_assert_eq(weft_sem_free(o->s), 0);
  cr_assert_eq(weft_barrier_free(o->b), 0);
  cr_assert_eq(weft_queue_free(o->q), 0);
  cr_assert_eq(weft_chan_tx_close(o->tx), 0);
  cr_assert_eq(weft_chan_rx_close(o->rx), 0);
}

/* Every call that needs a task, on each object; `want` for all. */
static int count_notask(objs *o, int want) {
  long v = 0;
  int bad = 0;
  int rc[] = {
      weft_lock_acquire(o->l),    weft_lock_try_acquire(o->l),
      weft_lock_release(o->l),    weft_event_wait(o->e),
      weft_cond_wait(o->c),       weft_cond_notify(o->c, 1),
      weft_cond_notify_all(o->c), weft_sem_acquire(o->s),
      weft_barrier_wait(o->b),    weft_queue_get(o->q, &v),
      weft_queue_put(o->q, &v),   weft_queue_join(o->q),
      weft_chan_send(o->tx, &v),  weft_chan_recv(o->rx, &v),
  };
  for (size_t i = 0; i < sizeof rc / sizeof rc[0]; i++)
    if (rc[i] != want) {
      fprintf(stderr, "call %zu: %d, expected %d\n", i, rc[i], want);
      bad++;
    }
  return bad;
}

/* With no loop on the thread, every call that needs a task is
 * WEFT_ENOTASK; the ones that do not work (before any loop). */
Test(sync_badinput, no_loop_no_task, .timeout = 10) {
  objs o;
  objs_new(&o);
  cr_assert_eq(count_notask(&o, WEFT_ENOTASK), 0);
  long v = 3;
  cr_assert_eq(weft_event_set(o.e), 0);
  cr_assert_eq(weft_sem_release(o.s), 0);
  cr_assert_eq(weft_sem_try_acquire(o.s), 0);
  cr_assert_eq(weft_queue_try_put(o.q, &v), 0);
  cr_assert_eq(weft_queue_try_get(o.q, &v), 0);
  cr_assert_eq(weft_queue_task_done(o.q), 0);
  cr_assert_eq(weft_barrier_abort(o.b), 0);
  cr_assert_eq(weft_barrier_reset(o.b), 0);
  objs_free(&o);
}

typedef struct {
  objs *o;
  int bad;
} cb_state;

static void in_callback(weft_task *t, void *arg) {
  (void)t;
  cb_state *s = arg;
  s->bad = count_notask(s->o, WEFT_ENOTASK);
}

static int quick(void *arg) {
  (void)arg;
  return 0;
}

static int callback_main(void *arg) {
  cb_state *s = arg;
  weft_task *t = weft_spawn(quick, NULL, NULL);
  weft_task_on_done(t, in_callback, s);
  return weft_join(t);
}

/* On the loop's thread but in no task (a done-callback): WEFT_ENOTASK. */
Test(sync_badinput, in_done_callback, .timeout = 10) {
  objs o;
  objs_new(&o);
  cb_state s = {&o, -1};
  cr_assert_eq(weft_run(callback_main, &s), 0);
  cr_assert_eq(s.bad, 0);
  objs_free(&o);
}

/* ---------------------------------------------------------------- */
/* From another thread's loop                                         */
/* ---------------------------------------------------------------- */

typedef struct {
  objs *o;
  atomic_int phase; /* 1: thread may start, 2: thread done */
  int bad;
  int set_rc, release_rc, tryput_rc, free_rc, close_rc, clone_errno;
  int waiter_rc;
} xthread;

static int other_loop_main(void *arg) {
  xthread *x = arg;
  objs *o = x->o;
  x->bad = count_notask(o, WEFT_ELOOP);
  long v = 1;
  x->set_rc = weft_event_set(o->e);
  x->release_rc = weft_sem_release(o->s);
  x->tryput_rc = weft_queue_try_put(o->q, &v);
  /* Freeing from a thread that runs another loop is refused. */
  x->free_rc = weft_event_free(o->e);
  x->close_rc = weft_chan_tx_close(o->tx);
  errno = 0;
  if (!weft_chan_tx_clone(o->tx)) x->clone_errno = errno;
  return 0;
}

static void *other_thread(void *arg) {
  xthread *x = arg;
  weft_run(other_loop_main, x);
  atomic_store(&x->phase, 2);
  return NULL;
}

static int event_waiter(void *arg) {
  xthread *x = arg;
  x->waiter_rc = weft_event_wait(x->o->e);
  return 0;
}

static int bind_everything(objs *o) {
  /* One call on each binds it to this loop. */
  long v;
  weft_lock_try_acquire(o->l);
  weft_lock_release(o->l);
  weft_event_clear(o->e);
  weft_lock_acquire(weft_cond_lock(o->c));
  weft_cond_notify(o->c, 1);
  weft_lock_release(weft_cond_lock(o->c));
  weft_sem_try_acquire(o->s);
  weft_barrier_reset(o->b);
  weft_queue_try_get(o->q, &v);
  weft_chan_try_recv(o->rx, &v);
  return 0;
}

static int home_main(void *arg) {
  xthread *x = arg;
  bind_everything(x->o);
  weft_task *w = weft_spawn(event_waiter, x, NULL);
  weft_yield(); /* w waits on the event while the other thread runs */
  pthread_t th;
  if (pthread_create(&th, NULL, other_thread, x) != 0) return -EAGAIN;
  while (atomic_load(&x->phase) != 2) weft_sleep(WEFT_MS(1));
  pthread_join(th, NULL);
  weft_event_set(x->o->e);
  return weft_join(w);
}

/* Objects bound to one loop, used from a task of a loop on another
 * thread: every call is WEFT_ELOOP, blocking or not, and so are free and
 * close there; the home loop is not disturbed. */
Test(sync_badinput, other_threads_loop, .timeout = 10) {
  objs o;
  objs_new(&o);
  xthread x = {.o = &o};
  cr_assert_eq(weft_run(home_main, &x), 0);
  cr_assert_eq(x.bad, 0);
  cr_assert_eq(x.set_rc, WEFT_ELOOP);
  cr_assert_eq(x.release_rc, WEFT_ELOOP);
  cr_assert_eq(x.tryput_rc, WEFT_ELOOP);
  cr_assert_eq(x.free_rc, WEFT_ELOOP);
  cr_assert_eq(x.close_rc, WEFT_ELOOP);
  cr_assert_eq(x.clone_errno, EXDEV);
  cr_assert_eq(x.waiter_rc, 0);
  /* After its loop has ended, the objects are freed from a plain thread. */
  objs_free(&o);
}
