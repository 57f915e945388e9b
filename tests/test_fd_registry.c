/*
 * test_fd_registry.c -- the fd registry (src/core/fd.c): several waiters
 * per direction woken in FIFO order, one per report; close notification
 * (weft_fd_close, weft_fd_forget); an fd closed behind weft's back; a
 * listening TCP socket on loopback with several acceptor tasks.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "helpers.h"

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
