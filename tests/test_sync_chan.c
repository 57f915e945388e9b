/*
 * test_sync_chan.c -- channels (Trio's memory channels): buffered and
 * rendezvous transfer, clones, end of channel after the last sender
 * closes, -EPIPE after the last receiver closes, closing a handle someone
 * waits on, cancellation, unbounded buffers, bad arguments.
 */
#include "helpers.h"

typedef struct {
  weft_chan_tx *tx;
  weft_chan_rx *rx;
  int rc[32];
  long got[64];
  int ngot;
  tlog log;
  weft_task *t[8];
} chstate;

typedef struct {
  chstate *s;
  int id;
  long v;
  weft_chan_tx *tx;
  weft_chan_rx *rx;
} charg;

/* weft_chan_open, which must succeed, into two handle variables. */
static void open_chan(size_t cap, size_t size, weft_chan_tx **tx,
                      weft_chan_rx **rx) {
  errno = 0;
  weft_chan_ends ch = weft_chan_open(cap, size);
  cr_assert(ch.tx && ch.rx, "weft_chan_open: %s", weft_strerror(errno));
  *tx = ch.tx;
  *rx = ch.rx;
}

static int sender(void *arg) {
  charg *a = arg;
  a->s->rc[a->id] = weft_chan_send(a->tx, &a->v);
  log_add(&a->s->log, a->id);
  return 0;
}

static int receiver(void *arg) {
  charg *a = arg;
  a->s->rc[a->id] = weft_chan_recv(a->rx, &a->v);
  log_add(&a->s->log, a->id);
  a->s->rc[16 + a->id] = weft_yield(); /* cancellation shows here */
  return 0;
}

/* ---------------------------------------------------------------- */

static int buffered_main(void *arg) {
  chstate *s = arg;
  for (long i = 0; i < 2; i++) s->rc[i] = weft_chan_send(s->tx, &i);
  long x = 2;
  s->rc[2] = weft_chan_try_send(s->tx, &x); /* full */
  for (int i = 0; i < 2; i++) s->rc[3 + i] = weft_chan_recv(s->rx, &s->got[i]);
  s->rc[5] = weft_chan_try_recv(s->rx, &x); /* empty */
  /* A receiver waiting gets a send straight away. */
  charg r = {s, 6, -1, NULL, s->rx};
  weft_task *t = weft_spawn(receiver, &r, NULL);
  weft_yield();
  x = 42;
  s->rc[7] = weft_chan_try_send(s->tx, &x);
  weft_join(t);
  s->got[2] = r.v;
  return 0;
}

Test(sync_chan, buffered, .timeout = 10) {
  chstate s = {0};
  open_chan(2, sizeof(long), &s.tx, &s.rx);
  cr_assert_eq(weft_run(buffered_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[1], 0);
  cr_assert_eq(s.rc[2], -EAGAIN);
  cr_assert_eq(s.rc[3], 0);
  cr_assert_eq(s.rc[4], 0);
  cr_assert_eq(s.got[0], 0);
  cr_assert_eq(s.got[1], 1);
  cr_assert_eq(s.rc[5], -EAGAIN);
  cr_assert_eq(s.rc[6], 0);
  cr_assert_eq(s.rc[7], 0);
  cr_assert_eq(s.got[2], 42);
  cr_assert_eq(weft_chan_tx_close(s.tx), 0);
  cr_assert_eq(weft_chan_rx_close(s.rx), 0);
}

/* ---------------------------------------------------------------- */

static int rendezvous_main(void *arg) {
  chstate *s = arg;
  long x = 1;
  s->rc[0] = weft_chan_try_send(s->tx, &x); /* nobody receives */
  charg a = {s, 1, 7, s->tx, NULL};
  weft_task *t = weft_spawn(sender, &a, NULL);
  weft_yield();
  log_add(&s->log, 0); /* the sender still waits */
  s->rc[2] = weft_chan_try_recv(s->rx, &s->got[0]); /* takes its item */
  weft_join(t);
  /* The other way round: a waiting receiver, then a try_send. */
  charg r = {s, 3, -1, NULL, s->rx};
  t = weft_spawn(receiver, &r, NULL);
  weft_yield();
  x = 8;
  s->rc[4] = weft_chan_try_send(s->tx, &x);
  weft_join(t);
  s->got[1] = r.v;
  return 0;
}

/* Capacity 0: a send completes only when a receiver takes the item. */
Test(sync_chan, rendezvous, .timeout = 10) {
  chstate s = {0};
  open_chan(0, sizeof(long), &s.tx, &s.rx);
  cr_assert_eq(weft_run(rendezvous_main, &s), 0);
  cr_assert_eq(s.rc[0], -EAGAIN);
  cr_assert_eq(s.rc[1], 0);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.got[0], 7);
  cr_assert_eq(s.rc[3], 0);
  cr_assert_eq(s.rc[4], 0);
  cr_assert_eq(s.got[1], 8);
  int want[] = {0, 1, 3};
  log_expect(&s.log, want, 3);
  weft_chan_tx_close(s.tx);
  weft_chan_rx_close(s.rx);
}

/* ---------------------------------------------------------------- */

static int producer(void *arg) {
  charg *a = arg;
  for (long i = 0; i < 10; i++) {
    long v = a->id * 100 + i;
    int rc = weft_chan_send(a->tx, &v);
    if (rc) return rc;
  }
  return weft_chan_tx_close(a->tx);
}

static int clones_main(void *arg) {
  chstate *s = arg;
  charg p[3];
  weft_group *g = weft_group_open();
  for (int i = 0; i < 3; i++) {
    p[i] = (charg){s, i + 1, 0, i ? weft_chan_tx_clone(s->tx) : s->tx, NULL};
    if (!p[i].tx) return -errno;
  }
  for (int i = 0; i < 3; i++) weft_group_spawn(g, producer, &p[i], NULL);
  int sum = 0, n = 0, last[4] = {-1, -1, -1, -1};
  for (;;) {
    long v;
    int rc = weft_chan_recv(s->rx, &v);
    if (rc == WEFT_EEND) break;
    if (rc) return rc;
    int who = (int)(v / 100), seq = (int)(v % 100);
    if (seq != last[who] + 1) s->rc[10] = -EPROTO; /* per-sender order */
    last[who] = seq;
    sum += (int)v;
    n++;
  }
  s->rc[0] = n;
  s->rc[1] = sum;
  s->rc[2] = weft_chan_recv(s->rx, &s->got[0]); /* ended for good */
  s->rc[3] = weft_chan_try_recv(s->rx, &s->got[0]);
  return weft_group_close(g, NULL);
}

/* Three producers on clones of one send handle; the receiver drains
 * everything, then gets WEFT_EEND once the last clone closes. */
Test(sync_chan, clones_and_end_of_channel, .timeout = 10) {
  chstate s = {0};
  open_chan(4, sizeof(long), &s.tx, &s.rx);
  cr_assert_eq(weft_run(clones_main, &s), 0);
  cr_assert_eq(s.rc[0], 30);
  cr_assert_eq(s.rc[1], (100 + 200 + 300) * 10 + 3 * 45);
  cr_assert_eq(s.rc[2], WEFT_EEND);
  cr_assert_eq(s.rc[3], WEFT_EEND);
  cr_assert_eq(s.rc[10], 0);
  cr_assert_str_neq(weft_strerror(WEFT_EEND), "unknown error");
  cr_assert_eq(weft_chan_rx_close(s.rx), 0);
}

static int end_wakes_main(void *arg) {
  chstate *s = arg;
  weft_chan_rx *rx2 = weft_chan_rx_clone(s->rx);
  charg r[2] = {{s, 1, -1, NULL, s->rx}, {s, 2, -1, NULL, rx2}};
  s->t[0] = weft_spawn(receiver, &r[0], NULL);
  s->t[1] = weft_spawn(receiver, &r[1], NULL);
  weft_yield();
  weft_chan_tx *tx2 = weft_chan_tx_clone(s->tx);
  s->rc[5] = weft_chan_tx_close(s->tx);
  weft_yield();
  s->rc[6] = s->log.n; /* one sender left: still waiting */
  s->rc[7] = weft_chan_tx_close(tx2);
  weft_join(s->t[0]);
  weft_join(s->t[1]);
  weft_chan_rx_close(rx2);
  return 0;
}

/* Receivers waiting when the last send handle closes wake with the
 * end-of-channel code. */
Test(sync_chan, last_sender_close_wakes_receivers, .timeout = 10) {
  chstate s = {0};
  open_chan(0, sizeof(long), &s.tx, &s.rx);
  cr_assert_eq(weft_run(end_wakes_main, &s), 0);
  cr_assert_eq(s.rc[5], 0);
  cr_assert_eq(s.rc[6], 0);
  cr_assert_eq(s.rc[7], 0);
  cr_assert_eq(s.rc[1], WEFT_EEND);
  cr_assert_eq(s.rc[2], WEFT_EEND);
  weft_chan_rx_close(s.rx);
}

/* ---------------------------------------------------------------- */

static int broken_main(void *arg) {
  chstate *s = arg;
  long x = 1;
  weft_chan_send(s->tx, &x); /* fills the buffer of 1 */
  charg a = {s, 1, 2, s->tx, NULL};
  s->t[0] = weft_spawn(sender, &a, NULL);
  weft_yield();
  s->rc[2] = weft_chan_rx_close(s->rx); /* the last receive handle */
  weft_join(s->t[0]);
  s->rc[3] = weft_chan_send(s->tx, &x);
  s->rc[4] = weft_chan_try_send(s->tx, &x);
  return 0;
}

/* When every receive handle is closed, the waiting sender wakes with
 * -EPIPE, the buffer is dropped and later sends fail at once. */
Test(sync_chan, last_receiver_close_breaks_senders, .timeout = 10) {
  chstate s = {0};
  open_chan(1, sizeof(long), &s.tx, &s.rx);
  cr_assert_eq(weft_run(broken_main, &s), 0);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.rc[1], -EPIPE);
  cr_assert_eq(s.rc[3], -EPIPE);
  cr_assert_eq(s.rc[4], -EPIPE);
  cr_assert_eq(weft_chan_tx_close(s.tx), 0);
}

/* ---------------------------------------------------------------- */

static int close_under_waiter_main(void *arg) {
  chstate *s = arg;
  weft_chan_rx *rx2 = weft_chan_rx_clone(s->rx);
  charg r1 = {s, 1, -1, NULL, rx2}, r2 = {s, 2, -1, NULL, s->rx};
  s->t[0] = weft_spawn(receiver, &r1, NULL);
  s->t[1] = weft_spawn(receiver, &r2, NULL);
  weft_yield();
  s->rc[5] = weft_chan_rx_close(rx2); /* the handle receiver 1 waits on */
  long x = 9;
  s->rc[6] = weft_chan_send(s->tx, &x); /* goes to receiver 2 */
  weft_join(s->t[0]);
  weft_join(s->t[1]);
  s->got[0] = r2.v;
  return 0;
}

/* Closing a handle a task is blocked on wakes that task with -EBADF; the
 * channel goes on through the other handles. */
Test(sync_chan, close_handle_under_waiter, .timeout = 10) {
  chstate s = {0};
  open_chan(0, sizeof(long), &s.tx, &s.rx);
  cr_assert_eq(weft_run(close_under_waiter_main, &s), 0);
  cr_assert_eq(s.rc[5], 0);
  cr_assert_eq(s.rc[1], -EBADF);
  cr_assert_eq(s.rc[6], 0);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.got[0], 9);
  weft_chan_tx_close(s.tx);
  weft_chan_rx_close(s.rx);
}

/* ---------------------------------------------------------------- */

static int cancel_main(void *arg) {
  chstate *s = arg;
  charg r1 = {s, 1, -1, NULL, s->rx}, r2 = {s, 2, -1, NULL, s->rx};
  s->t[0] = weft_spawn(receiver, &r1, NULL);
  s->t[1] = weft_spawn(receiver, &r2, NULL);
  weft_yield();
  long x = 5;
  weft_chan_send(s->tx, &x); /* handed to receiver 1 ... */
  weft_cancel(s->t[0]);      /* ... cancelled before it runs */
  weft_cancel(s->t[1]);      /* receiver 2 leaves empty-handed */
  weft_join(s->t[0]);
  weft_join(s->t[1]);
  s->got[0] = r1.v;
  s->got[1] = r2.v;
  /* A sender cancelled while waiting: its item is not sent. */
  charg a = {s, 3, 6, s->tx, NULL};
  s->t[2] = weft_spawn(sender, &a, NULL);
  weft_yield();
  weft_cancel(s->t[2]);
  weft_join(s->t[2]);
  s->rc[4] = weft_chan_try_recv(s->rx, &x);
  /* Deadline around a receive. */
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(10));
  s->rc[5] = weft_chan_recv(s->rx, &x);
  s->rc[6] = weft_scope_close(&sc);
  return 0;
}

/* An item handed to a waiting receiver belongs to it, even if it is
 * cancelled before it runs (its next checkpoint reports that). */
Test(sync_chan, cancellation, .timeout = 10) {
  chstate s = {0};
  open_chan(0, sizeof(long), &s.tx, &s.rx);
  cr_assert_eq(weft_run(cancel_main, &s), 0);
  cr_assert_eq(s.rc[1], 0);
  cr_assert_eq(s.got[0], 5);
  cr_assert_eq(s.rc[17], -ECANCELED);
  cr_assert_eq(s.rc[2], -ECANCELED);
  cr_assert_eq(s.got[1], -1);
  cr_assert_eq(s.rc[3], -ECANCELED);
  cr_assert_eq(s.rc[4], -EAGAIN);
  cr_assert_eq(s.rc[5], -ECANCELED);
  cr_assert_eq(s.rc[6], -ETIMEDOUT);
  weft_chan_tx_close(s.tx);
  weft_chan_rx_close(s.rx);
}

/* ---------------------------------------------------------------- */

/* An unbounded channel takes any number of sends without waiting, before
 * any loop exists; the items come out in order. */
Test(sync_chan, unbounded, .timeout = 10) {
  weft_chan_tx *tx;
  weft_chan_rx *rx;
  open_chan(WEFT_CHAN_UNBOUNDED, sizeof(int), &tx, &rx);
  for (int i = 0; i < 5000; i++) cr_assert_eq(weft_chan_try_send(tx, &i), 0);
  cr_assert_eq(weft_chan_tx_close(tx), 0);
  for (int i = 0; i < 5000; i++) {
    int v;
    cr_assert_eq(weft_chan_try_recv(rx, &v), 0);
    cr_assert_eq(v, i);
  }
  int v;
  cr_assert_eq(weft_chan_try_recv(rx, &v), WEFT_EEND);
  cr_assert_eq(weft_chan_rx_close(rx), 0);
}

/* Bad arguments to open; a handle of the wrong direction is -EINVAL. */
Test(sync_chan, bad_arguments, .timeout = 10) {
  weft_chan_tx *tx;
  weft_chan_rx *rx;
  weft_chan_ends bad = weft_chan_open(1, 0);
  cr_assert(bad.tx == NULL && bad.rx == NULL && errno == EINVAL);
  errno = 0;
  bad = weft_chan_open(SIZE_MAX / 2, 8);
  cr_assert(bad.tx == NULL && bad.rx == NULL && errno == EOVERFLOW);
  open_chan(4, sizeof(long), &tx, &rx);
  long v = 1;
  cr_assert_eq(weft_chan_try_send((weft_chan_tx *)rx, &v), -EINVAL);
  cr_assert_eq(weft_chan_try_recv((weft_chan_rx *)tx, &v), -EINVAL);
  cr_assert_eq(weft_chan_try_send(tx, NULL), -EINVAL);
  cr_assert_eq(weft_chan_try_recv(rx, NULL), -EINVAL);
  cr_assert_eq(weft_chan_tx_close((weft_chan_tx *)rx), -EINVAL);
  errno = 0;
  cr_assert_null(weft_chan_tx_clone((weft_chan_tx *)rx));
  cr_assert_eq(errno, EINVAL);
  weft_chan_tx_close(tx);
  weft_chan_rx_close(rx);
}
