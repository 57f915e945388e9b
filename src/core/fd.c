/*
 * The fd registry: tasks waiting for readiness of file descriptors, over
 * the poller (poller.h).
 *
 * One entry per fd number the loop has waited on, in a table indexed by
 * the number. An fd is registered with the poller at its first wait and
 * stays registered until weft_fd_forget / weft_fd_close (or until it is
 * closed behind weft's back, which the kernel notices by itself). Every
 * new waiter arms it one-shot for what its waiters want, in one call (an
 * epoll_ctl MOD): a wait costs that call and its share of the poll, where
 * a registration and a removal around each wait cost two.
 *
 * Reports carry a token (generation << 32 | fd); the generation changes
 * whenever the fd is registered anew, so a report for an fd closed and
 * reused meanwhile (the kernel may still hold the old file's arming, if
 * a duplicate of it is open) is recognised and dropped.
 *
 * Several tasks may wait for the same direction of one fd (acceptors on
 * a listening socket): each direction has a FIFO queue, and each report
 * wakes the first waiter of each direction it names; the fd is armed
 * again at once for those still waiting, so they are woken in turn, one
 * per report, as long as it stays ready (level-triggered).
 *
 * Closing through weft (weft_fd_close, or weft_fd_forget before a close
 * done elsewhere) wakes every waiter with -EBADF at once (Trio's
 * notify_closing). An fd closed behind weft's back: its waiters sleep on
 * until their deadline or cancellation (the kernel drops a closed file's
 * arming without a report), and a later wait on the same number works,
 * as a new registration (arming it reports -ENOENT: it is re-registered).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"

typedef struct fd_entry {
  weft_task *head[2], *tail[2]; /* waiters: [0] readable, [1] writable */
  uint32_t gen;      /* of the token the poller holds */
  bool registered;   /* the poller knows the fd (as far as we know) */
} fd_entry;

/* A waiting task's links in the queues of its fd: in its body's
 * wait_node (it waits on one thing at a time). */
typedef struct fd_links {
  weft_task *next[2], *prev[2];
} fd_links;

_Static_assert(sizeof(fd_links) <= sizeof(((weft__task_body *)0)->wait_node),
               "weft__task_body.wait_node too small for fd links");

static inline fd_links *links(weft_task *t) {
  return (fd_links *)weft__body(t)->wait_node;
}

static inline unsigned dir_event(int d) {
  return d ? WEFT_WRITABLE : WEFT_READABLE;
}

static inline uint64_t token_of(const fd_entry *e, int fd) {
  return (uint64_t)e->gen << 32 | (uint32_t)fd;
}

static void q_push(fd_entry *e, int d, weft_task *t) {
  fd_links *l = links(t);
  l->next[d] = NULL;
  l->prev[d] = e->tail[d];
  if (e->tail[d])
    links(e->tail[d])->next[d] = t;
  else
    e->head[d] = t;
  e->tail[d] = t;
}

static void q_remove(fd_entry *e, int d, weft_task *t) {
  fd_links *l = links(t);
  if (l->prev[d])
    links(l->prev[d])->next[d] = l->next[d];
  else
    e->head[d] = l->next[d];
  if (l->next[d])
    links(l->next[d])->prev[d] = l->prev[d];
  else
    e->tail[d] = l->prev[d];
}

/* Arms fd for what its waiters want (nothing if none wait). 0 or -errno. */
static int arm(weft_loop *L, int fd, fd_entry *e) {
  unsigned want = (e->head[0] ? WEFT_READABLE : 0u) |
                  (e->head[1] ? WEFT_WRITABLE : 0u);
  if (!want) return 0;
  int rc;
  if (e->registered) {
    rc = weft__poller_arm(L->poller, fd, token_of(e, fd), want, false);
    if (rc != -ENOENT) return rc;
    e->registered = false; /* closed and reused behind our back */
  }
  e->gen++;
  rc = weft__poller_arm(L->poller, fd, token_of(e, fd), want, true);
  if (rc == -EEXIST) /* known to the kernel, though we forgot it */
    rc = weft__poller_arm(L->poller, fd, token_of(e, fd), want, false);
  if (!rc) e->registered = true;
  return rc;
}

/* Takes t (waiting in weft_wait_fd) off its fd's queues. */
void weft__fd_unwait(weft_task *t) {
  weft_loop *L = t->loop;
  weft__task_body *b = weft__body(t);
  fd_entry *e = &L->fds[b->wait_fd];
  for (int d = 0; d < 2; d++)
    if (b->wait_events & dir_event(d)) q_remove(e, d, t);
  b->wait_fd = -1;
  L->nfd_waiters--;
}

/* Takes t off its deadline timer and its fd's queues: the loop's unpark
 * callback of an fd wait (t was cancelled). */
static void fd_unpark(weft_task *t) {
  weft__timers_del(&t->loop->timers, &weft__body(t)->tm);
  weft__fd_unwait(t);
}

/* Ends t's wait with `code` (ready events, or an error). */
static void fd_wake(weft_task *t, int code) {
  fd_unpark(t);
  weft__wake(t, code);
}

static int table_grow(weft_loop *L, int fd) {
  if ((size_t)fd < L->nfds_cap) return 0;
  size_t cap = L->nfds_cap ? L->nfds_cap : 64;
  while (cap <= (size_t)fd) cap *= 2;
  fd_entry *a = realloc(L->fds, cap * sizeof *a);
  if (!a) return -ENOMEM;
  memset(a + L->nfds_cap, 0, (cap - L->nfds_cap) * sizeof *a);
  L->fds = a;
  L->nfds_cap = cap;
  return 0;
}

static int wait_fd(int fd, int events, int64_t deadline, const char *func) {
  weft_loop *L = weft__tls_loop;
  weft_task *t = L ? L->current : NULL;
  if (!t) return weft__misuse(func, WEFT_ENOTASK);
  events &= WEFT_READABLE | WEFT_WRITABLE;
  if (!events) return -EINVAL;
  if (fd < 0) return -EBADF;
  if (weft__checkpoint(t)) return -ECANCELED;
  int rc = table_grow(L, fd);
  if (rc) return rc;
  fd_entry *e = &L->fds[fd];
  weft__task_body *b = weft__body(t);
  b->wait_fd = fd;
  b->wait_events = (unsigned)events;
  for (int d = 0; d < 2; d++)
    if (events & dir_event(d)) q_push(e, d, t);
  L->nfd_waiters++;
  /* Armed for every waiter, also when another one already waits for the
   * same: that one's arming may be for a file closed behind our back. */
  if ((rc = arm(L, fd, e)) != 0) {
    weft__fd_unwait(t);
    return rc;
  }
  if (deadline != WEFT_FOREVER) {
    b->tm.when = deadline;
    if (weft__timers_add(&L->timers, &b->tm) != 0) {
      weft__fd_unwait(t);
      return -ENOMEM;
    }
  }
  return weft__park(L, t, fd_unpark);
}

int weft_wait_fd(int fd, int events) {
  return wait_fd(fd, events, WEFT_FOREVER, __func__);
}

int weft_wait_fd_until(int fd, int events, int64_t deadline) {
  return wait_fd(fd, events, deadline, __func__);
}

void weft__fd_ready(weft_loop *L, uint64_t token, unsigned ev) {
  int fd = (int)(uint32_t)token;
  if ((size_t)fd >= L->nfds_cap) return;
  fd_entry *e = &L->fds[fd];
  if (!e->registered || e->gen != (uint32_t)(token >> 32)) return; /* stale */
  /* The report disarmed the fd: the first waiter of each direction it
   * names goes, and the fd is armed again for the others. */
  for (int d = 0; d < 2; d++) {
    weft_task *t = e->head[d];
    if (!t || !(ev & dir_event(d))) continue;
    unsigned got = ev & (weft__body(t)->wait_events | WEFT_ERROR | WEFT_HANGUP);
    fd_wake(t, (int)got);
  }
  int rc = arm(L, fd, e);
  if (rc) { /* cannot wait any longer: say why, rather than hang */
    for (int d = 0; d < 2; d++)
      while (e->head[d]) fd_wake(e->head[d], rc);
  }
}

/* Wakes every task waiting on fd with -EBADF and unregisters it. */
static void forget(weft_loop *L, int fd) {
  if ((size_t)fd >= L->nfds_cap) return;
  fd_entry *e = &L->fds[fd];
  for (int d = 0; d < 2; d++)
    while (e->head[d]) fd_wake(e->head[d], -EBADF);
  if (e->registered) weft__poller_forget(L->poller, fd);
  e->registered = false;
}

int weft_fd_forget(int fd) {
  weft_loop *L = weft__tls_loop;
  if (!L) return weft__misuse(__func__, WEFT_ENOTASK);
  if (fd < 0) return -EBADF;
  forget(L, fd);
  return 0;
}

int weft_fd_close(int fd) {
  weft_loop *L = weft__tls_loop;
  if (fd < 0) return -EBADF;
  if (L) forget(L, fd);
  return close(fd) == 0 ? 0 : -errno;
}

void weft__fds_free(weft_loop *L) {
  free(L->fds);
  L->fds = NULL;
  L->nfds_cap = 0;
}
