/*
 * The fd registry: tasks waiting for readiness of file descriptors, over
 * the poller (poller.h).
 *
 * One entry per fd number the loop has waited on, in a table indexed by
 * the number. An fd is watched by the poller from its first wait on,
 * persistently and edge-triggered, until weft_fd_forget / weft_fd_close
 * (or until it is closed behind weft's back, which the kernel notices by
 * itself). Every report updates the entry's readiness cache (readable,
 * writable, and "shut": the read side has ended or failed), whether
 * anybody waits or not.
 *
 * Two kinds of wait:
 *
 *  - weft_wait_fd (public, level-triggered as documented): every wait
 *    asks the poller to look at the fd again (one epoll_ctl MOD, as the
 *    one-shot arming before did): a ready fd is reported at the next
 *    poll, so waiting again without reading returns at once; and the
 *    call tells whether the kernel still knows the file (-ENOENT: closed
 *    behind weft's back and the number reused: it is registered anew).
 *    It does not trust the cache, which a caller that reads the fd
 *    itself never corrects.
 *
 *  - weft__fd_wait (src/io/, for fds it owns): trusts the cache. A
 *    direction whose bit is set returns at once, without a system call;
 *    otherwise the task parks, with no system call either once the fd is
 *    registered. The caller keeps the cache honest: after a read or
 *    write that found nothing (EAGAIN) it calls weft__fd_clear, after a
 *    short one weft__fd_drained. Why this loses no readiness: the loop
 *    is single-threaded, so no report is taken between the caller's
 *    system call and its clear; a change toward readiness after the
 *    system call (data that arrives between the read and the clear, or
 *    later) makes the kernel queue the fd again (edge-triggered), and
 *    the next poll reports it (and sets the bit) after the clear. A
 *    report queued before the system call is not stale either: epoll
 *    polls the fd again before it reports it, so an fd drained meanwhile
 *    is not reported (a stale report would only cost the reader one
 *    EAGAIN, after which it clears). What no new edge would announce is
 *    kept by the "shut" bit: once a report said the read side ended (or
 *    the fd failed), weft__fd_drained leaves readable set, so the reader
 *    goes on to see the end of stream (or the error).
 *
 * Reports carry a token (generation << 32 | fd); the generation changes
 * whenever the fd is registered anew, so a report for an fd closed and
 * reused meanwhile (the kernel may still hold the old file's watch, if
 * a duplicate of it is open) is recognised and dropped.
 *
 * Several tasks may wait for the same direction of one fd (acceptors on
 * a listening socket): each direction has a FIFO queue, and each report
 * wakes the first waiter of each direction it names; if others still
 * wait for a direction it named, the poller is asked to look at the fd
 * again (as a public wait does), so that they are woken in turn, one per
 * report, as long as it stays ready (level-triggered). That costs a call
 * only while several tasks wait on one direction.
 *
 * Closing through weft (weft_fd_close, or weft_fd_forget before a close
 * done elsewhere) wakes every waiter with -EBADF at once (Trio's
 * notify_closing). An fd closed behind weft's back: its waiters sleep on
 * until their deadline or cancellation (the kernel drops a closed file's
 * watch without a report), and a later public wait on the same number
 * works, as a new registration (the look again reports -ENOENT). The io
 * layer owns its fds (it closes them with weft_fd_close) and says when
 * it takes one (weft__fd_adopt): its first wait that parks then checks
 * the registration once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"

/* Readiness cache bits: WEFT_READABLE, WEFT_WRITABLE, and SHUT. */
#define RW (WEFT_READABLE | WEFT_WRITABLE)
#define SHUT WEFT__EV_RDHUP /* a report said: the read side ended or failed */

typedef struct fd_entry {
  weft_task *head[2], *tail[2]; /* waiters: [0] readable, [1] writable */
  uint32_t gen;      /* of the token the poller holds */
  bool registered;   /* the poller knows the fd (as far as we know) */
  bool checked;      /* ... and the registration is the open file's: a
                        look at it succeeded since the io layer adopted it */
  uint16_t ready;    /* RW bits: ready as far as we know; SHUT */
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

/* Asks the poller to look at fd (registering it if it does not know it):
 * it is reported at the next poll if it is ready now. 0 or -errno. */
static int look(weft_loop *L, int fd, fd_entry *e) {
  int rc;
  if (e->registered) {
    rc = weft__poller_watch(L->poller, fd, token_of(e, fd), false);
    if (rc != -ENOENT) goto out;
    e->registered = false; /* closed and reused behind our back */
  }
  e->gen++;
  e->ready = 0; /* what is ready now is reported at the next poll */
  rc = weft__poller_watch(L->poller, fd, token_of(e, fd), true);
  if (rc == -EEXIST) /* known to the kernel, though we forgot it */
    rc = weft__poller_watch(L->poller, fd, token_of(e, fd), false);
  if (!rc) e->registered = true;
out:
  e->checked = rc == 0;
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
  if (weft__likely((size_t)fd < L->nfds_cap)) return 0;
  size_t old = L->nfds_cap;
  size_t cap = old ? old : 64;
  while (cap <= (size_t)fd) cap *= 2;
  fd_entry *a = realloc(L->fds, cap * sizeof *a);
  if (!a) return -ENOMEM;
  memset(a + old, 0, (cap - old) * sizeof *a);
  for (size_t i = old; i < cap; i++) a[i].ready = RW; /* unknown: try */
  L->fds = a;
  L->nfds_cap = cap;
  return 0;
}

const weft__wait_kind weft__wk_fd = {"fd", NULL};

/* Parks t on fd's queues for `events` until a report, the deadline or a
 * cancellation. `check`: ask the poller to look at the fd (public waits;
 * io waits only until the registration is known good); kind and obj:
 * what the wait is, for the dump (weft__park). */
static int park_on(weft_loop *L, weft_task *t, int fd, fd_entry *e,
                   unsigned events, int64_t deadline, bool check,
                   const weft__wait_kind *kind, const void *obj) {
  weft__task_body *b = weft__body(t);
  b->wait_fd = fd;
  b->wait_events = events;
  for (int d = 0; d < 2; d++)
    if (events & dir_event(d)) q_push(e, d, t);
  L->nfd_waiters++;
  int rc;
  if (check && (rc = look(L, fd, e)) != 0) {
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
  return weft__park(L, t, fd_unpark, kind, obj);
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
  /* Looked at for every waiter, also when another one already waits for
   * the same: that one's registration may be for a file closed behind
   * our back. */
  return park_on(L, t, fd, &L->fds[fd], (unsigned)events, deadline, true,
                 &weft__wk_fd, NULL);
}

int weft_wait_fd(int fd, int events) {
  return wait_fd(fd, events, WEFT_FOREVER, __func__);
}

int weft_wait_fd_until(int fd, int events, int64_t deadline) {
  return wait_fd(fd, events, deadline, __func__);
}

/* ---- the io layer's waits (internal.h) ------------------------------- */

void weft__fd_adopt(int fd) {
  weft_loop *L = weft__tls_loop;
  if (!L || fd < 0 || table_grow(L, fd)) return; /* no memory: waits fail */
  fd_entry *e = &L->fds[fd];
  if (e->head[0] || e->head[1]) return; /* waiters keep it looked at */
  e->checked = false;
  e->ready = RW; /* unknown: try */
}

int weft__fd_wait(int fd, int events, int64_t deadline,
                  const weft__wait_kind *kind, const void *obj) {
  weft_loop *L = weft__tls_loop;
  weft_task *t = L ? L->current : NULL;
  if (weft__unlikely(!t)) return weft__misuse(__func__, WEFT_ENOTASK);
  unsigned want = (unsigned)events & RW;
  if (weft__unlikely(!want)) return -EINVAL;
  if (weft__unlikely(fd < 0)) return -EBADF;
  if (weft__unlikely(weft__checkpoint(t))) return -ECANCELED;
  int rc = table_grow(L, fd);
  if (weft__unlikely(rc)) return rc;
  fd_entry *e = &L->fds[fd];
  unsigned hit = e->ready & want;
  if (hit) return (int)hit;
  return park_on(L, t, fd, e, want, deadline, !e->registered || !e->checked,
                 kind ? kind : &weft__wk_fd, obj);
}

unsigned weft__fd_cached(int fd) {
  weft_loop *L = weft__tls_loop;
  if (!L || (size_t)fd >= L->nfds_cap) return RW; /* unknown: try */
  return L->fds[fd].ready & RW;
}

void weft__fd_clear(int fd, int events) {
  weft_loop *L = weft__tls_loop;
  if (!L || fd < 0 || table_grow(L, fd)) return; /* no memory: waits fail */
  fd_entry *e = &L->fds[fd];
  if (events & WEFT_READABLE) e->ready &= (uint16_t)~(WEFT_READABLE | SHUT);
  if (events & WEFT_WRITABLE) e->ready &= (uint16_t)~WEFT_WRITABLE;
}

void weft__fd_drained(int fd, int events) {
  weft_loop *L = weft__tls_loop;
  if (!L || fd < 0 || table_grow(L, fd)) return; /* no memory: waits fail */
  fd_entry *e = &L->fds[fd];
  if ((events & WEFT_READABLE) && !(e->ready & SHUT))
    e->ready &= (uint16_t)~WEFT_READABLE;
  if (events & WEFT_WRITABLE) e->ready &= (uint16_t)~WEFT_WRITABLE;
}

void weft__fd_ready(weft_loop *L, uint64_t token, unsigned ev) {
  int fd = (int)(uint32_t)token;
  if ((size_t)fd >= L->nfds_cap) return;
  fd_entry *e = &L->fds[fd];
  if (!e->registered || e->gen != (uint32_t)(token >> 32)) return; /* stale */
  /* What a report names is ready (or was: a stale bit costs a try). Only
   * the io layer's clears take bits away: a report that does not name a
   * direction may have been made for another change (io_uring's). */
  e->ready |= (uint16_t)(ev & (RW | SHUT));
  /* The first waiter of each direction it names goes; if others wait for
   * such a direction, the poller looks again, for the next report. */
  bool again = false;
  for (int d = 0; d < 2; d++) {
    weft_task *t = e->head[d];
    if (!t || !(ev & dir_event(d))) continue;
    unsigned got = ev & (weft__body(t)->wait_events | WEFT_ERROR | WEFT_HANGUP);
    fd_wake(t, (int)got);
    if (e->head[d]) again = true;
  }
  if (!again) return;
  int rc = look(L, fd, e);
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
  e->checked = false;
  e->ready = RW; /* unknown: try */
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
