/*
 * test_lost_wakeup.c -- the waiter lists of every sync object after a
 * woken waiter's successor is cancelled (issue 9, item 0).
 *
 * The schedule, for each object: A and B wait; one wake hands the object
 * (permit, lock, item, space, notification, token) to A; B is cancelled
 * while it is the new head of the list; C waits; A gives back 10 ms
 * later. C must be woken. The list used to keep the popped A as its tail,
 * so C was linked after a node no longer in the list and slept forever.
 */
#include "helpers.h"

typedef struct lw lw;
typedef struct prim {
  const char *name;
  void (*setup)(lw *s);         /* main, before A and B wait */
  int (*wait)(lw *s, int who);  /* A, B, C: the blocking call */
  void (*wake_one)(lw *s);      /* main: hands one thing to the head */
  void (*give_back)(lw *s);     /* A, 10 ms after its wait returned; or */
  void (*main_after)(lw *s);    /* main, once C waits (instead) */
  int c_want;                   /* what C's wait must return */
  void (*teardown)(lw *s);
} prim;

struct lw {
  const prim *p;
  weft_sem *sem;
  weft_lock *lock;
  weft_queue *q;
  weft_chan_tx *tx;
  weft_chan_rx *rx;
  weft_cond *cond;
  weft_limiter *lim;
  int rc[3];      /* A, B, C: what their wait returned */
  int c_join;     /* weft_join_until(C) */
  int got[3];
};

typedef struct {
  lw *s;
  int who;
} warg;

static int waiter(void *arg) {
  warg *a = arg;
  lw *s = a->s;
  int rc = s->p->wait(s, a->who);
  s->rc[a->who] = rc;
  if (a->who == 0 && rc == 0 && s->p->give_back) {
    weft_sleep(WEFT_MS(10));
    s->p->give_back(s);
  }
  return rc;
}

static void settle(void) {
  for (int i = 0; i < 5; i++) weft_yield();
}

static int lw_main(void *arg) {
  lw *s = arg;
  warg a[3] = {{s, 0}, {s, 1}, {s, 2}};
  if (s->p->setup) s->p->setup(s);
  weft_task *ta = spawn_named(waiter, &a[0], "A");
  settle();
  weft_task *tb = spawn_named(waiter, &a[1], "B");
  settle();
  s->p->wake_one(s);
  cr_assert_eq(weft_cancel(tb), 0);
  cr_assert_eq(weft_join(tb), -ECANCELED, "%s: B", s->p->name);
  weft_task *tc = spawn_named(waiter, &a[2], "C");
  settle();
  if (s->p->main_after) s->p->main_after(s);
  s->c_join = weft_join_until(tc, weft_now() + WEFT_MS(500));
  cr_assert_eq(weft_join(ta), 0, "%s: A", s->p->name);
  if (s->p->teardown) s->p->teardown(s);
  return 0;
}

static void run_prim(const prim *p) {
  lw s = {.p = p, .rc = {1, 1, 1}};
  cr_assert_eq(weft_run(lw_main, &s), 0);
  cr_assert_eq(s.rc[0], 0, "%s: A's wait returned %d", p->name, s.rc[0]);
  cr_assert_eq(s.rc[1], -ECANCELED, "%s: B's wait returned %d", p->name,
               s.rc[1]);
  cr_assert_eq(s.rc[2], p->c_want, "%s: C's wait returned %d (C never woken?)",
               p->name, s.rc[2]);
  cr_assert_eq(s.c_join, p->c_want, "%s: join C returned %d", p->name,
               s.c_join);
}

/* ---- semaphore ---------------------------------------------------------- */

static void sem_setup(lw *s) { s->sem = weft_sem_new(0); }
static int sem_wait(lw *s, int who) { (void)who; return weft_sem_acquire(s->sem); }
static void sem_give(lw *s) { cr_assert_eq(weft_sem_release(s->sem), 0); }
static void sem_teardown(lw *s) {
  /* C took the permit A gave back: none left over. */
  cr_assert_eq(weft_sem_value(s->sem), 0);
  cr_assert_eq(weft_sem_free(s->sem), 0);
}

Test(lost_wakeup, semaphore, .timeout = 10) {
  static const prim p = {"sem", sem_setup, sem_wait, sem_give, sem_give, NULL,
                         0, sem_teardown};
  run_prim(&p);
}

static void bsem_setup(lw *s) {
  s->sem = weft_sem_new_bounded(1);
  cr_assert_eq(weft_sem_acquire(s->sem), 0);
}

Test(lost_wakeup, bounded_semaphore, .timeout = 10) {
  static const prim p = {"bounded sem", bsem_setup, sem_wait, sem_give,
                         sem_give, NULL, 0, sem_teardown};
  run_prim(&p);
}

/* ---- lock ---------------------------------------------------------------- */

static void lock_setup(lw *s) {
  s->lock = weft_lock_new();
  cr_assert_eq(weft_lock_acquire(s->lock), 0);
}
static int lock_wait(lw *s, int who) {
  int rc = weft_lock_acquire(s->lock);
  if (rc == 0 && who == 2) cr_assert_eq(weft_lock_release(s->lock), 0);
  return rc;
}
static void lock_give(lw *s) { cr_assert_eq(weft_lock_release(s->lock), 0); }
static void lock_teardown(lw *s) {
  cr_assert(!weft_lock_locked(s->lock));
  cr_assert_eq(weft_lock_free(s->lock), 0);
}

Test(lost_wakeup, lock, .timeout = 10) {
  static const prim p = {"lock", lock_setup, lock_wait, lock_give, lock_give,
                         NULL, 0, lock_teardown};
  run_prim(&p);
}

/* ---- condition ------------------------------------------------------------ */

static void cond_setup(lw *s) {
  s->lock = weft_lock_new();
  s->cond = weft_cond_new(s->lock);
}
static int cond_waiter(lw *s, int who) {
  (void)who;
  cr_assert_eq(weft_lock_acquire(s->lock), 0);
  int rc = weft_cond_wait(s->cond);
  /* The lock is held again after the wait, also when it was cancelled. */
  weft_lock_release(s->lock);
  return rc;
}
static void cond_notify(lw *s) {
  cr_assert_eq(weft_lock_acquire(s->lock), 0);
  cr_assert_eq(weft_cond_notify(s->cond, 1), 1);
  cr_assert_eq(weft_lock_release(s->lock), 0);
}
static void cond_teardown(lw *s) {
  cr_assert_eq(weft_cond_free(s->cond), 0);
  cr_assert_eq(weft_lock_free(s->lock), 0);
}

Test(lost_wakeup, condition, .timeout = 10) {
  static const prim p = {"cond", cond_setup, cond_waiter, cond_notify,
                         cond_notify, NULL, 0, cond_teardown};
  run_prim(&p);
}

/* ---- queue: getters, putters, immediate shutdown ---------------------------- */

static void q_empty_setup(lw *s) { s->q = weft_queue_new(4, sizeof(int)); }
static int q_get(lw *s, int who) { return weft_queue_get(s->q, &s->got[who]); }
static void q_put(lw *s) {
  int v = 7;
  cr_assert_eq(weft_queue_put(s->q, &v), 0);
}
static void q_teardown(lw *s) {
  cr_assert_eq(weft_queue_size(s->q), 0);
  cr_assert_eq(weft_queue_free(s->q), 0);
}

Test(lost_wakeup, queue_getters, .timeout = 10) {
  static const prim p = {"queue get", q_empty_setup, q_get, q_put, q_put, NULL,
                         0, q_teardown};
  run_prim(&p);
}

static void q_full_setup(lw *s) {
  s->q = weft_queue_new(1, sizeof(int));
  int v = 100;
  cr_assert_eq(weft_queue_put(s->q, &v), 0);
}
static int q_put_w(lw *s, int who) {
  int v = who;
  return weft_queue_put(s->q, &v);
}
static void q_get_one(lw *s) {
  int v;
  cr_assert_eq(weft_queue_get(s->q, &v), 0);
}
static void q_full_teardown(lw *s) {
  /* 100 and A's item went; C's is the one left. */
  int v = -1;
  cr_assert_eq(weft_queue_try_get(s->q, &v), 0);
  cr_assert_eq(v, 2, "left in the queue: %d", v);
  cr_assert_eq(weft_queue_free(s->q), 0);
}

Test(lost_wakeup, queue_putters, .timeout = 10) {
  static const prim p = {"queue put", q_full_setup, q_put_w, q_get_one,
                         q_get_one, NULL, 0, q_full_teardown};
  run_prim(&p);
}

static void q_shutdown_now(lw *s) {
  cr_assert_eq(weft_queue_shutdown(s->q, true), 0);
}
static void q_free(lw *s) { cr_assert_eq(weft_queue_free(s->q), 0); }

/* A producer blocked in put on a full queue is woken by an immediate
 * shutdown. */
Test(lost_wakeup, queue_shutdown_immediate, .timeout = 10) {
  static const prim p = {"queue shutdown", q_full_setup, q_put_w, q_get_one,
                         NULL, q_shutdown_now, -ESHUTDOWN, q_free};
  run_prim(&p);
}

/* The same with a graceful shutdown: a blocked put ends -ESHUTDOWN too. */
static void q_shutdown(lw *s) {
  cr_assert_eq(weft_queue_shutdown(s->q, false), 0);
}
Test(lost_wakeup, queue_shutdown, .timeout = 10) {
  static const prim p = {"queue shutdown", q_full_setup, q_put_w, q_get_one,
                         NULL, q_shutdown, -ESHUTDOWN, q_free};
  run_prim(&p);
}

/* ---- channel: receivers and senders ----------------------------------------- */

static void ch_setup(lw *s) {
  weft_chan_ends ch = weft_chan_open(0, sizeof(int));
  cr_assert_not_null(ch.tx);
  s->tx = ch.tx;
  s->rx = ch.rx;
}
static int ch_recv(lw *s, int who) { return weft_chan_recv(s->rx, &s->got[who]); }
static void ch_send(lw *s) {
  int v = 5;
  cr_assert_eq(weft_chan_send(s->tx, &v), 0);
}
static void ch_teardown(lw *s) {
  cr_assert_eq(weft_chan_tx_close(s->tx), 0);
  cr_assert_eq(weft_chan_rx_close(s->rx), 0);
}

Test(lost_wakeup, channel_receivers, .timeout = 10) {
  static const prim p = {"chan recv", ch_setup, ch_recv, ch_send, ch_send,
                         NULL, 0, ch_teardown};
  run_prim(&p);
}

static int ch_send_w(lw *s, int who) {
  int v = who;
  return weft_chan_send(s->tx, &v);
}
static void ch_recv_one(lw *s) {
  int v;
  cr_assert_eq(weft_chan_recv(s->rx, &v), 0);
}

Test(lost_wakeup, channel_senders, .timeout = 10) {
  static const prim p = {"chan send", ch_setup, ch_send_w, ch_recv_one,
                         ch_recv_one, NULL, 0, ch_teardown};
  run_prim(&p);
}

/* ---- rate limiter ------------------------------------------------------------ */

static void lim_setup(lw *s) {
  s->lim = weft_limiter_new(20.0, 1); /* a token every 50 ms: B is
                                          cancelled long before its own */
  cr_assert_not_null(s->lim);
  cr_assert_eq(weft_limiter_acquire(s->lim), 0);
}
static int lim_wait(lw *s, int who) {
  (void)who;
  return weft_limiter_acquire(s->lim);
}
/* The refill is the wake: wait for A to have its token. */
static void lim_wake(lw *s) {
  for (int i = 0; i < 1000 && s->rc[0] != 0; i++) weft_sleep(WEFT_MS(1));
}
static void lim_teardown(lw *s) { cr_assert_eq(weft_limiter_free(s->lim), 0); }

Test(lost_wakeup, limiter, .timeout = 10) {
  static const prim p = {"limiter", lim_setup, lim_wait, lim_wake, NULL, NULL,
                         0, lim_teardown};
  run_prim(&p);
}

/* ---- condition wait_for: notified, then cancelled before it ran -------------- */

typedef struct {
  weft_cond *c;
  weft_lock *l;
  int tokens;
  int rc[2];
  int took[2];
} wf;

typedef struct {
  wf *s;
  int who;
} wf_arg;

static bool wf_pred(void *arg) { return ((wf *)arg)->tokens > 0; }

static int wf_consumer(void *arg) {
  wf_arg *a = arg;
  wf *s = a->s;
  cr_assert_eq(weft_lock_acquire(s->l), 0);
  int rc = weft_cond_wait_for(s->c, wf_pred, s);
  s->rc[a->who] = rc;
  if (rc == 0) {
    s->tokens--;
    s->took[a->who] = 1;
  }
  if (rc == 0 || rc == -ECANCELED) weft_lock_release(s->l);
  return 0;
}

static int wf_main(void *arg) {
  wf *s = arg;
  wf_arg a[2] = {{s, 0}, {s, 1}};
  weft_task *ta = spawn_named(wf_consumer, &a[0], "A");
  weft_task *tb = spawn_named(wf_consumer, &a[1], "B");
  settle(); /* A and B wait, predicate false */
  cr_assert_eq(weft_lock_acquire(s->l), 0);
  s->tokens = 1;
  cr_assert_eq(weft_cond_notify(s->c, 1), 1); /* wakes A */
  cr_assert_eq(weft_cancel(ta), 0);           /* before A runs */
  cr_assert_eq(weft_lock_release(s->l), 0);
  settle();
  /* The token was taken by A (notified, predicate true), or A passed the
   * notification on: either way nobody sleeps with a token there. */
  cr_assert_eq(s->tokens, 0, "a token is left while B sleeps (rc A %d, B %d)",
               s->rc[0], s->rc[1]);
  weft_cancel(tb);
  weft_join(ta);
  weft_join(tb);
  return 0;
}

Test(lost_wakeup, cond_wait_for_notified_then_cancelled, .timeout = 10) {
  wf s = {.rc = {1, 1}};
  s.c = weft_cond_new(NULL);
  s.l = weft_cond_lock(s.c);
  cr_assert_eq(weft_run(wf_main, &s), 0);
  cr_assert_eq(s.rc[0], 0, "A returned %d", s.rc[0]);
  cr_assert_eq(s.took[0], 1);
  cr_assert_eq(weft_cond_free(s.c), 0);
}
