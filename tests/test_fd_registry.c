/*
 * test_fd_registry.c -- the fd registry (src/core/fd.c): several waiters
 * per direction woken in FIFO order, one per report; close notification
 * (weft_fd_close, weft_fd_forget); an fd closed behind weft's back; a
 * listening TCP socket on loopback with several acceptor tasks; the
 * readiness cache and the io layer's waits (weft__fd_wait, _clear,
 * _drained, _adopt: core/internal.h), with the edge-triggered cases.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "core/internal.h"
#include "helpers.h"
#include "weft/io.h"

/* ---- several readers on one pipe ---------------------------------------- */

typedef struct {
  int p[2];
  int rc[3];
  tlog log;
} readers;

typedef struct {
  readers *s;
  int id;
} rarg;

static int reader(void *arg) {
  rarg *a = arg;
  readers *s = a->s;
  s->rc[a->id] = weft_wait_fd_until(s->p[0], WEFT_READABLE, weft_now() + WEFT_SEC(5));
  char c;
  if (s->rc[a->id] > 0 && read(s->p[0], &c, 1) == 1) log_add(&s->log, a->id);
  return 0;
}

static int readers_main(void *arg) {
  readers *s = arg;
  cr_assert_eq(pipe(s->p), 0);
  rarg a[3] = {{s, 0}, {s, 1}, {s, 2}};
  weft_task *t[3];
  for (int i = 0; i < 3; i++) {
    t[i] = spawn_named(reader, &a[i], NULL);
    weft_yield();
  }
  /* One byte at a time: each wakes exactly one reader, oldest first. */
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(write(s->p[1], "x", 1), 1);
    for (int k = 0; k < 20 && s->log.n <= i; k++) weft_sleep(WEFT_MS(1));
    cr_assert_eq(s->log.n, i + 1, "after byte %d: %d readers woke", i, s->log.n);
  }
  for (int i = 0; i < 3; i++) cr_assert_eq(weft_join(t[i]), 0);
  weft_fd_close(s->p[0]);
  weft_fd_close(s->p[1]);
  return 0;
}

Test(fd_registry, readers_woken_fifo_one_per_report, .timeout = 10) {
  readers s = {0};
  cr_assert_eq(weft_run(readers_main, &s), 0);
  int want[] = {0, 1, 2};
  log_expect(&s.log, want, 3);
  for (int i = 0; i < 3; i++) cr_assert_eq(s.rc[i], WEFT_READABLE);
}

/* ---- close notification ---------------------------------------------------- */

typedef struct {
  int sv[2];
  int rd_rc, wr_rc, again_rc, forget_rc, close_rc;
  int64_t rd_at, t0;
  bool still_open;
} closing;

static int rd_waiter(void *arg) {
  closing *s = arg;
  s->rd_rc = weft_wait_fd_until(s->sv[0], WEFT_READABLE, weft_now() + WEFT_SEC(10));
  s->rd_at = weft_now();
  return 0;
}

/* A writer that waits on a full socket. */
static int wr_waiter(void *arg) {
  closing *s = arg;
  char buf[4096] = {0};
  while (write(s->sv[0], buf, sizeof buf) > 0) {
  }
  s->wr_rc = weft_wait_fd_until(s->sv[0], WEFT_WRITABLE, weft_now() + WEFT_SEC(10));
  return 0;
}

static int close_main(void *arg) {
  closing *s = arg;
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s->sv), 0);
  weft_task *r = spawn_named(rd_waiter, s, "reader");
  weft_task *w = spawn_named(wr_waiter, s, "writer");
  for (int i = 0; i < 3; i++) weft_yield();
  s->t0 = weft_now();
  s->close_rc = weft_fd_close(s->sv[0]);
  cr_assert_eq(weft_join(r), 0);
  cr_assert_eq(weft_join(w), 0);
  s->again_rc = weft_wait_fd_until(s->sv[0], WEFT_READABLE, weft_now() + WEFT_MS(10));
  close(s->sv[1]);
  return 0;
}

/* Closing through weft wakes the reader and the writer at once with
 * -EBADF; the fd is closed (a later wait says -EBADF too). */
Test(fd_registry, close_wakes_waiters, .timeout = 10) {
  closing s = {0};
  cr_assert_eq(weft_run(close_main, &s), 0);
  cr_assert_eq(s.close_rc, 0);
  cr_assert_eq(s.rd_rc, -EBADF);
  cr_assert_eq(s.wr_rc, -EBADF);
  cr_assert_lt(s.rd_at - s.t0, WEFT_SEC(1));
  cr_assert_eq(s.again_rc, -EBADF);
}

static int forget_main(void *arg) {
  closing *s = arg;
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s->sv), 0);
  weft_task *r = spawn_named(rd_waiter, s, "reader");
  weft_yield();
  s->forget_rc = weft_fd_forget(s->sv[0]);
  cr_assert_eq(weft_join(r), 0);
  s->still_open = fcntl(s->sv[0], F_GETFD) >= 0;
  /* Watched again from scratch: works. */
  cr_assert_eq(write(s->sv[1], "y", 1), 1);
  s->again_rc = weft_wait_fd_until(s->sv[0], WEFT_READABLE, weft_now() + WEFT_SEC(5));
  cr_assert_eq(weft_fd_close(s->sv[0]), 0);
  cr_assert_eq(weft_fd_close(s->sv[1]), 0);
  return 0;
}

/* weft_fd_forget: waiters wake with -EBADF, the fd stays open and can be
 * waited on again. */
Test(fd_registry, forget_keeps_fd_open, .timeout = 10) {
  closing s = {0};
  cr_assert_eq(weft_run(forget_main, &s), 0);
  cr_assert_eq(s.forget_rc, 0);
  cr_assert_eq(s.rd_rc, -EBADF);
  cr_assert(s.still_open);
  cr_assert_eq(s.again_rc, WEFT_READABLE);
}

static int bad_main(void *arg) {
  (void)arg;
  cr_assert_eq(weft_fd_forget(-1), -EBADF);
  cr_assert_eq(weft_fd_close(-1), -EBADF);
  cr_assert_eq(weft_fd_forget(12345), 0); /* never watched: nothing to do */
  return 0;
}

Test(fd_registry, bad_input, .timeout = 10) {
  cr_assert_eq(weft_run(bad_main, NULL), 0);
  cr_assert_eq(weft_fd_forget(3), WEFT_ENOTASK); /* no loop */
  int p[2];
  cr_assert_eq(pipe(p), 0);
  cr_assert_eq(weft_fd_close(p[0]), 0); /* no loop: a plain close */
  cr_assert_eq(weft_fd_close(p[0]), -EBADF);
  close(p[1]);
}

/* ---- closed behind weft's back ---------------------------------------------- */

typedef struct {
  int p[2];
  int stale_rc, fresh_rc;
} behind;

static int stale_waiter(void *arg) {
  behind *s = arg;
  s->stale_rc = weft_wait_fd_until(s->p[0], WEFT_READABLE, weft_now() + WEFT_MS(50));
  return 0;
}

static int behind_main(void *arg) {
  behind *s = arg;
  cr_assert_eq(pipe(s->p), 0);
  int old = s->p[0];
  weft_task *a = spawn_named(stale_waiter, s, "stale");
  weft_yield();
  /* A duplicate keeps the old file open: its arming stays in the kernel. */
  int dupfd = dup(old);
  close(old);
  cr_assert_eq(weft_join(a), 0); /* slept to its deadline */
  int q[2];
  cr_assert_eq(pipe(q), 0);
  cr_assert_eq(q[0], old, "the number was not reused (%d, %d)", q[0], old);
  /* The old file becomes ready: its stale report must not confuse the
   * new registration. */
  cr_assert_eq(write(s->p[1], "o", 1), 1);
  cr_assert_eq(write(q[1], "n", 1), 1);
  s->fresh_rc = weft_wait_fd_until(q[0], WEFT_READABLE, weft_now() + WEFT_SEC(5));
  char c = 0;
  cr_assert_eq(read(q[0], &c, 1), 1);
  cr_assert_eq(c, 'n');
  /* Once read, the new fd is not ready, whatever the old file is. */
  cr_assert_eq(weft_wait_fd_until(q[0], WEFT_READABLE, weft_now() + WEFT_MS(20)),
               -ETIMEDOUT);
  weft_fd_close(q[0]);
  close(q[1]);
  close(dupfd);
  close(s->p[1]);
  return 0;
}

Test(fd_registry, closed_behind_back_and_reused, .timeout = 10) {
  behind s = {0};
  cr_assert_eq(weft_run(behind_main, &s), 0);
  cr_assert_eq(s.stale_rc, -ETIMEDOUT);
  cr_assert_eq(s.fresh_rc, WEFT_READABLE);
}

/* ---- several acceptors on a listening TCP socket ----------------------------- */

typedef struct {
  int lfd;
  int port;
  tlog log;
  int accepted;
} acc;

typedef struct {
  acc *s;
  int id;
} aarg;

static int acceptor(void *arg) {
  aarg *a = arg;
  acc *s = a->s;
  int rc = weft_wait_fd_until(s->lfd, WEFT_READABLE, weft_now() + WEFT_SEC(5));
  if (rc < 0) return rc;
  int c = accept(s->lfd, NULL, NULL);
  if (c < 0) return -errno;
  log_add(&s->log, a->id);
  s->accepted++;
  close(c);
  return 0;
}

static int connect_once(int port) {
  int c = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = connect(c, (struct sockaddr *)&sa, sizeof sa);
  return rc == 0 ? c : -1;
}

static int acc_main(void *arg) {
  acc *s = arg;
  s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(bind(s->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(listen(s->lfd, 16), 0);
  socklen_t len = sizeof sa;
  getsockname(s->lfd, (struct sockaddr *)&sa, &len);
  s->port = ntohs(sa.sin_port);
  aarg a[3] = {{s, 0}, {s, 1}, {s, 2}};
  weft_task *t[3];
  for (int i = 0; i < 3; i++) {
    t[i] = spawn_named(acceptor, &a[i], NULL);
    weft_yield();
  }
  /* One client at a time: each goes to the acceptor that waited longest. */
  for (int i = 0; i < 3; i++) {
    int c = connect_once(s->port); /* completes in the kernel's backlog */
    cr_assert_geq(c, 0);
    for (int k = 0; k < 200 && s->accepted <= i; k++) weft_sleep(WEFT_MS(1));
    cr_assert_eq(s->accepted, i + 1);
    close(c);
  }
  for (int i = 0; i < 3; i++) cr_assert_eq(weft_join(t[i]), 0);
  cr_assert_eq(weft_fd_close(s->lfd), 0);
  return 0;
}

Test(fd_registry, several_acceptors_fifo, .timeout = 10) {
  acc s = {0};
  cr_assert_eq(weft_run(acc_main, &s), 0);
  int want[] = {0, 1, 2};
  log_expect(&s.log, want, 3);
}

/* ---- a writer and a reader of one socket, many round trips ------------------- */

typedef struct {
  int sv[2];
  long n, done;
} pingpong;

static int ponger(void *arg) {
  pingpong *s = arg;
  char c;
  for (long i = 0; i < s->n; i++) {
    int rc = weft_wait_fd(s->sv[1], WEFT_READABLE);
    if (rc < 0) return rc;
    if (read(s->sv[1], &c, 1) != 1) return -EIO;
    if (write(s->sv[1], &c, 1) != 1) return -EIO;
  }
  return 0;
}

static int pp_main(void *arg) {
  pingpong *s = arg;
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s->sv), 0);
  weft_task *p = spawn_named(ponger, s, "ponger");
  char c = 'p';
  for (long i = 0; i < s->n; i++) {
    cr_assert_eq(write(s->sv[0], &c, 1), 1);
    cr_assert_eq(weft_wait_fd_until(s->sv[0], WEFT_READABLE, weft_now() + WEFT_SEC(5)),
                 WEFT_READABLE);
    cr_assert_eq(read(s->sv[0], &c, 1), 1);
    s->done++;
  }
  cr_assert_eq(weft_join(p), 0);
  weft_fd_close(s->sv[0]);
  weft_fd_close(s->sv[1]);
  return 0;
}

/* The fd stays registered between waits: 10,000 round trips, none lost. */
Test(fd_registry, round_trips, .timeout = 20) {
  pingpong s = {.n = 10000};
  cr_assert_eq(weft_run(pp_main, &s), 0);
  cr_assert_eq(s.done, s.n);
}

/* ---- the io layer's waits: the readiness cache ---------------------------- */

static int64_t in_ms(int ms) { return weft_now() + WEFT_MS(ms); }

/* Reads once, keeping the cache as src/io/stream.c does. */
static ssize_t io_read(int fd, char *buf, size_t n) {
  ssize_t r = read(fd, buf, n);
  if (r > 0 && (size_t)r < n) weft__fd_drained(fd, WEFT_READABLE);
  if (r < 0 && errno == EAGAIN) weft__fd_clear(fd, WEFT_READABLE);
  return r;
}

static int cache_main(void *arg) {
  (void)arg;
  int sv[2];
  char buf[64];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  weft__fd_adopt(sv[0]);
  /* Unknown: counts as ready, so the caller tries (and clears). */
  cr_assert_eq(weft__fd_cached(sv[0]), WEFT_READABLE | WEFT_WRITABLE);
  cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, WEFT_FOREVER, NULL, NULL), WEFT_READABLE);
  cr_assert_eq(io_read(sv[0], buf, sizeof buf), -1);
  cr_assert_eq(errno, EAGAIN);
  cr_assert_eq(weft__fd_cached(sv[0]) & WEFT_READABLE, 0);
  /* Cleared: parks (registering the fd), no spurious wake-up. */
  cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(20), NULL, NULL), -ETIMEDOUT);
  /* Data: the report sets the bit and wakes the waiter. */
  cr_assert_eq(write(sv[1], "abc", 3), 3);
  cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(5000), NULL, NULL), WEFT_READABLE);
  cr_assert(weft__fd_cached(sv[0]) & WEFT_READABLE);
  /* Not consumed: the cache keeps saying so, without a poll. */
  cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(5000), NULL, NULL), WEFT_READABLE);
  /* A short read drains it: the next wait parks. */
  cr_assert_eq(io_read(sv[0], buf, sizeof buf), 3);
  cr_assert_eq(weft__fd_cached(sv[0]) & WEFT_READABLE, 0);
  cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(20), NULL, NULL), -ETIMEDOUT);
  /* A read that takes all it asked for leaves the bit set. */
  cr_assert_eq(write(sv[1], "defg", 4), 4);
  cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(5000), NULL, NULL), WEFT_READABLE);
  cr_assert_eq(io_read(sv[0], buf, 2), 2);
  cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(5000), NULL, NULL), WEFT_READABLE);
  cr_assert_eq(io_read(sv[0], buf, sizeof buf), 2);
  cr_assert_eq(weft_fd_close(sv[0]), 0);
  cr_assert_eq(weft_fd_close(sv[1]), 0);
  return 0;
}

Test(fd_registry, io_wait_trusts_cache, .timeout = 10) {
  cr_assert_eq(weft_run(cache_main, NULL), 0);
}

/* Data that arrives after a short read but before the caller clears the
 * bit (here: written by the same task in between, as another process
 * might) is not lost: the kernel queued a new edge, and the next poll
 * reports it after the clear. */
static int between_main(void *arg) {
  (void)arg;
  int sv[2];
  char buf[64];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  weft__fd_adopt(sv[0]);
  cr_assert_eq(io_read(sv[0], buf, sizeof buf), -1); /* registers on the wait */
  cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(20), NULL, NULL), -ETIMEDOUT);
  for (int i = 0; i < 100; i++) {
    cr_assert_eq(write(sv[1], "0123456789", 10), 10);
    cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(5000), NULL, NULL), WEFT_READABLE);
    ssize_t r = read(sv[0], buf, sizeof buf);
    cr_assert_eq(r, 10);
    cr_assert_eq(write(sv[1], "xyz", 3), 3); /* arrives now */
    weft__fd_drained(sv[0], WEFT_READABLE);  /* the clear, after it */
    int64_t t0 = weft_now();
    cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(5000), NULL, NULL), WEFT_READABLE,
                 "round %d", i);
    cr_assert_lt(weft_now() - t0, WEFT_SEC(1));
    cr_assert_eq(io_read(sv[0], buf, sizeof buf), 3);
  }
  cr_assert_eq(weft_fd_close(sv[0]), 0);
  cr_assert_eq(weft_fd_close(sv[1]), 0);
  return 0;
}

Test(fd_registry, io_data_between_short_read_and_clear, .timeout = 20) {
  cr_assert_eq(weft_run(between_main, NULL), 0);
}

/* Stale events: an edge queued for data that the caller then read before
 * the loop polled, and a report taken before the caller drained the fd:
 * neither wakes a waiter once the fd is drained and cleared. */
static int stale_main(void *arg) {
  (void)arg;
  int sv[2];
  char buf[64];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  weft__fd_adopt(sv[0]);
  cr_assert_eq(io_read(sv[0], buf, sizeof buf), -1);
  cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(10), NULL, NULL), -ETIMEDOUT);
  for (int i = 0; i < 5; i++) {
    /* Queued edge, data read before any poll. */
    cr_assert_eq(write(sv[1], "q", 1), 1);
    cr_assert_eq(io_read(sv[0], buf, sizeof buf), 1); /* short: drained */
    cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(20), NULL, NULL), -ETIMEDOUT);
    /* Report taken (a sleep polls), then the data read. */
    cr_assert_eq(write(sv[1], "r", 1), 1);
    weft_sleep(WEFT_MS(2));
    cr_assert(weft__fd_cached(sv[0]) & WEFT_READABLE);
    cr_assert_eq(io_read(sv[0], buf, sizeof buf), 1);
    cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(20), NULL, NULL), -ETIMEDOUT);
    /* An EAGAIN after a stale report clears as well. */
    cr_assert_eq(write(sv[1], "s", 1), 1);
    weft_sleep(WEFT_MS(2));
    cr_assert_eq(read(sv[0], buf, sizeof buf), 1); /* behind the cache's back */
    cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(20), NULL, NULL), WEFT_READABLE);
    cr_assert_eq(io_read(sv[0], buf, sizeof buf), -1);
    cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(20), NULL, NULL), -ETIMEDOUT);
  }
  cr_assert_eq(weft_fd_close(sv[0]), 0);
  cr_assert_eq(weft_fd_close(sv[1]), 0);
  return 0;
}

Test(fd_registry, io_stale_events, .timeout = 10) {
  cr_assert_eq(weft_run(stale_main, NULL), 0);
}

/* The end of stream reported with the last data: the edge for it is
 * taken, so the short read that gets the data must not clear readable
 * (no new edge would come): the next wait returns and the read sees 0. */
static int eof_main(void *arg) {
  (void)arg;
  char buf[64];
  for (int kind = 0; kind < 2; kind++) {
    int sv[2];
    if (kind == 0) {
      cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    } else {
      cr_assert_eq(pipe2(sv, O_NONBLOCK), 0);
    }
    weft__fd_adopt(sv[0]);
    cr_assert_eq(io_read(sv[0], buf, sizeof buf), -1);
    cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(10), NULL, NULL), -ETIMEDOUT);
    cr_assert_eq(write(sv[1], "last", 4), 4);
    close(sv[1]);
    weft_sleep(WEFT_MS(2)); /* the report: data and the end at once */
    cr_assert_eq(io_read(sv[0], buf, sizeof buf), 4);
    cr_assert_eq(weft__fd_wait(sv[0], WEFT_READABLE, in_ms(2000), NULL, NULL), WEFT_READABLE,
                 "kind %d", kind);
    cr_assert_eq(io_read(sv[0], buf, sizeof buf), 0);
    cr_assert_eq(weft_fd_close(sv[0]), 0);
  }
  return 0;
}

Test(fd_registry, io_short_read_before_eof, .timeout = 10) {
  cr_assert_eq(weft_run(eof_main, NULL), 0);
}

/* The same through a stream on TCP: the peer sends and closes at once;
 * the stream reads it all and then sees the end, whether the report of
 * the data and the FIN came before its first read or not. */
static int tcp_eof_main(void *arg) {
  int *ok = arg;
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(listen(lfd, 16), 0);
  socklen_t len = sizeof sa;
  getsockname(lfd, (struct sockaddr *)&sa, &len);
  for (int i = 0; i < 40; i++) {
    int c = connect_once(ntohs(sa.sin_port));
    cr_assert_geq(c, 0);
    int a;
    while ((a = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) < 0) {
      cr_assert_eq(errno, EAGAIN);
      cr_assert_gt(weft_wait_fd_until(lfd, WEFT_READABLE, in_ms(5000)), 0);
    }
    weft_stream *st = weft_stream_open(a, NULL);
    cr_assert_not_null(st);
    char buf[256];
    if (i % 4 == 1) { /* the stream's fd registered before the data */
      weft_scope sc;
      weft_scope_open(&sc, in_ms(5));
      cr_assert_eq(weft_stream_read(st, buf, sizeof buf), -ECANCELED);
      weft_scope_close(&sc);
    }
    cr_assert_eq(write(c, "hello", 5), 5);
    close(c);
    if (i % 2) weft_sleep(WEFT_MS(1)); /* reported before the read */
    size_t got = 0;
    ssize_t r;
    while ((r = weft_stream_read(st, buf + got, sizeof buf - got)) > 0)
      got += (size_t)r;
    cr_assert_eq(r, 0);
    cr_assert_eq(got, 5);
    (*ok)++;
    weft_stream_close(st);
  }
  weft_fd_close(lfd);
  return 0;
}

Test(fd_registry, stream_data_then_fin, .timeout = 20) {
  int ok = 0;
  cr_assert_eq(weft_run(tcp_eof_main, &ok), 0);
  cr_assert_eq(ok, 40);
}

/* Two acceptors on one listening socket through the io layer's waits, and
 * a burst of connections: each report wakes one; the other is looked at
 * again, so both get some and all are accepted. */
typedef struct {
  int lfd, n;
  int count[2];
  int rc[2];
} burst;

typedef struct {
  burst *s;
  int id;
} barg;

static int io_acceptor(void *arg) {
  barg *a = arg;
  burst *s = a->s;
  for (;;) {
    int c = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK);
    if (c >= 0) {
      s->count[a->id]++;
      close(c);
      weft_yield(); /* as a server does when it starts a handler */
      continue;
    }
    if (errno != EAGAIN) return 0;
    weft__fd_clear(s->lfd, WEFT_READABLE);
    int rc = weft__fd_wait(s->lfd, WEFT_READABLE, in_ms(5000), NULL, NULL);
    if (rc < 0) {
      s->rc[a->id] = rc;
      return 0;
    }
  }
}

static int burst_main(void *arg) {
  burst *s = arg;
  s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(bind(s->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(listen(s->lfd, 128), 0);
  socklen_t len = sizeof sa;
  getsockname(s->lfd, (struct sockaddr *)&sa, &len);
  weft__fd_adopt(s->lfd);
  barg a[2] = {{s, 0}, {s, 1}};
  weft_task *t[2];
  for (int i = 0; i < 2; i++) t[i] = spawn_named(io_acceptor, &a[i], NULL);
  weft_sleep(WEFT_MS(5)); /* both parked */
  int cl[64];
  for (int round = 0; round < 3; round++) {
    int before[2] = {s->count[0], s->count[1]};
    for (int i = 0; i < s->n; i++) {
      cl[i] = connect_once(ntohs(sa.sin_port));
      cr_assert_geq(cl[i], 0);
    }
    int want = (round + 1) * s->n;
    for (int k = 0; k < 2000 && s->count[0] + s->count[1] < want; k++)
      weft_sleep(WEFT_MS(1));
    cr_assert_eq(s->count[0] + s->count[1], want, "round %d: %d + %d", round,
                 s->count[0], s->count[1]);
    /* Neither starved in this round: the one the report woke did not
     * take the whole burst while the other slept. */
    cr_assert_gt(s->count[0], before[0], "round %d", round);
    cr_assert_gt(s->count[1], before[1], "round %d", round);
    for (int i = 0; i < s->n; i++) close(cl[i]);
  }
  /* Both parked again: a close wakes both. */
  weft_sleep(WEFT_MS(5));
  cr_assert_eq(weft_fd_close(s->lfd), 0);
  for (int i = 0; i < 2; i++) cr_assert_eq(weft_join(t[i]), 0);
  cr_assert_eq(s->rc[0], -EBADF);
  cr_assert_eq(s->rc[1], -EBADF);
  return 0;
}

Test(fd_registry, io_two_acceptors_burst, .timeout = 20) {
  burst s = {.n = 50};
  cr_assert_eq(weft_run(burst_main, &s), 0);
}

/* The public weft_wait_fd stays level-triggered on an fd the io layer
 * registered and whose cache says otherwise: it looks at the fd itself. */
static int public_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  cr_assert_not_null(p.a);
  int fd = weft_stream_fd(p.a);
  char buf[64];
  /* The stream drains its fd: the cache says not readable. */
  cr_assert_eq(weft_stream_write(p.b, "abcd", 4), 0);
  cr_assert_eq(weft_stream_read(p.a, buf, sizeof buf), 4);
  cr_assert_eq(weft__fd_cached(fd) & WEFT_READABLE, 0);
  cr_assert_eq(weft_wait_fd_until(fd, WEFT_READABLE, in_ms(20)), -ETIMEDOUT);
  /* Data the loop has not been told of yet: a public wait sees it. */
  cr_assert_eq(write(weft_stream_fd(p.b), "ef", 2), 2);
  cr_assert_eq(weft_wait_fd_until(fd, WEFT_READABLE, in_ms(2000)), WEFT_READABLE);
  /* Level: again without reading, at once; and again. */
  cr_assert_eq(weft_wait_fd_until(fd, WEFT_READABLE, in_ms(2000)), WEFT_READABLE);
  /* Read behind the cache's back (it still says readable): a public wait
   * does not trust it. */
  cr_assert_eq(read(fd, buf, 1), 1);
  cr_assert_eq(weft_wait_fd_until(fd, WEFT_READABLE, in_ms(2000)), WEFT_READABLE);
  cr_assert_eq(read(fd, buf, sizeof buf), 1);
  cr_assert(weft__fd_cached(fd) & WEFT_READABLE);
  cr_assert_eq(weft_wait_fd_until(fd, WEFT_READABLE, in_ms(20)), -ETIMEDOUT);
  /* And the stream goes on. */
  cr_assert_eq(weft_stream_write(p.b, "gh", 2), 0);
  cr_assert_eq(weft_stream_read(p.a, buf, sizeof buf), 2);
  cr_assert_eq(memcmp(buf, "gh", 2), 0);
  weft_stream_close(p.a);
  weft_stream_close(p.b);
  return 0;
}

Test(fd_registry, public_wait_level_on_io_fd, .timeout = 10) {
  cr_assert_eq(weft_run(public_main, NULL), 0);
}

/* A number the public API registered, closed behind weft's back and
 * reused by a file the io layer adopts: its waits still work. A parked io
 * waiter is cancelled cleanly, and woken by weft_fd_close with -EBADF. */
typedef struct {
  int fd;
  int rc;
} iow;

static int io_waiter(void *arg) {
  iow *w = arg;
  w->rc = weft__fd_wait(w->fd, WEFT_READABLE, WEFT_FOREVER, NULL, NULL);
  return 0;
}

static int reuse_main(void *arg) {
  (void)arg;
  int p[2];
  cr_assert_eq(pipe2(p, O_NONBLOCK), 0);
  int old = p[0];
  cr_assert_eq(weft_wait_fd_until(old, WEFT_READABLE, in_ms(5)), -ETIMEDOUT);
  close(old); /* behind weft's back */
  close(p[1]);
  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  int fd = sv[0] == old ? sv[0] : -1;
  cr_assert_eq(fd, old, "the number was not reused");
  weft__fd_adopt(fd);
  char buf[8];
  cr_assert_eq(io_read(fd, buf, sizeof buf), -1);
  iow w = {fd, 1};
  weft_task *t = spawn_named(io_waiter, &w, "io-waiter");
  weft_sleep(WEFT_MS(5));
  cr_assert_eq(w.rc, 1); /* parked */
  cr_assert_eq(write(sv[1], "k", 1), 1);
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(w.rc, WEFT_READABLE);
  cr_assert_eq(io_read(fd, buf, sizeof buf), 1);
  /* Cancelled while parked: -ECANCELED, the queue is left clean. */
  w.rc = 1;
  t = spawn_named(io_waiter, &w, "io-waiter");
  weft_sleep(WEFT_MS(2));
  cr_assert_eq(weft_cancel(t), 0);
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(w.rc, -ECANCELED);
  cr_assert_eq(write(sv[1], "l", 1), 1);
  cr_assert_eq(weft__fd_wait(fd, WEFT_READABLE, in_ms(2000), NULL, NULL), WEFT_READABLE);
  cr_assert_eq(io_read(fd, buf, sizeof buf), 1);
  /* Parked, then closed through weft: -EBADF. */
  w.rc = 1;
  t = spawn_named(io_waiter, &w, "io-waiter");
  weft_sleep(WEFT_MS(2));
  cr_assert_eq(weft_fd_close(fd), 0);
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(w.rc, -EBADF);
  close(sv[1]);
  return 0;
}

Test(fd_registry, io_reuse_cancel_close, .timeout = 10) {
  cr_assert_eq(weft_run(reuse_main, NULL), 0);
}
