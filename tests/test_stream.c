/*
 * test_stream.c -- weft_stream_*: reads (read, readexactly, readuntil,
 * readuntil_any, readline) and their end-of-stream and limit rules,
 * writes (write, writev, drain, sendfile, write_eof), cancellation that
 * loses no byte, backpressure, peers that go away (no SIGPIPE), close
 * (flushing, with a deadline), abort (RST), tasks woken by a close,
 * held streams (server.c's), bad input, another loop's thread, an
 * interop exchange with Python's socket module, and no fd leaked.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <malloc.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "helpers.h"
#include "io/internal.h"

extern char **environ;

/* ---------------------------------------------------------------- */
/* Helpers                                                            */
/* ---------------------------------------------------------------- */

/* Runs fn under weft_run and checks its result and that no fd leaked. */
static void run_checked(weft_fn fn, void *arg) {
  int before = count_fds();
  int rc = weft_run(fn, arg);
  cr_assert_eq(rc, 0, "main returned %d (%s)", rc, weft_strerror(rc));
  cr_assert_eq(count_fds(), before, "fd leak: %d before, %d after", before,
               count_fds());
}

/* A TCP pair over loopback made with plain sockets (tcp.c is not under
 * test here). Both ends blocking; weft_stream_open makes them
 * non-blocking. */
static void tcp_pair(int *a, int *b) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert_geq(l, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(listen(l, 1), 0);
  socklen_t len = sizeof sa;
  cr_assert_eq(getsockname(l, (struct sockaddr *)&sa, &len), 0);
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert_geq(c, 0);
  cr_assert_eq(connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
  int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
  cr_assert_geq(s, 0);
  close(l);
  *a = c;
  *b = s;
}

static unsigned char pat(size_t i) { return (unsigned char)(i * 7 + i / 251); }

static void fill_pat(unsigned char *p, size_t n, size_t from) {
  for (size_t i = 0; i < n; i++) p[i] = pat(from + i);
}

/* Reads from s until the end, checking the pattern; returns the count or
 * a negative code. */
static ssize_t read_all_pat(weft_stream *s, size_t from) {
  unsigned char buf[7000];
  size_t got = 0;
  for (;;) {
    ssize_t r = weft_stream_read(s, buf, sizeof buf);
    if (r < 0) return r;
    if (r == 0) return (ssize_t)got;
    for (ssize_t i = 0; i < r; i++)
      if (buf[i] != pat(from + got + (size_t)i)) return -EPROTO;
    got += (size_t)r;
  }
}

static void small_bufs(weft_stream *s, int snd, int rcv) {
  int fd = weft_stream_fd(s);
  if (snd) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
  if (rcv) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
}

/* Task bodies over one stream. */
static int close_task(void *arg) { return weft_stream_close(arg); }
static int drain_task(void *arg) { return weft_stream_drain(arg); }

static volatile sig_atomic_t n_sigpipe;
static void on_sigpipe(int sig) {
  (void)sig;
  n_sigpipe++;
}
static void count_sigpipe(void) {
  struct sigaction sa = {.sa_handler = on_sigpipe};
  sigemptyset(&sa.sa_mask);
  cr_assert_eq(sigaction(SIGPIPE, &sa, NULL), 0);
  n_sigpipe = 0;
}

typedef struct {
  weft_stream *s;
  const char *parts[4];
  int64_t pause;
  ssize_t rc;
  size_t n;
  size_t from;
} wjob;

/* Writes parts with a pause before each but the first. */
static int writer(void *arg) {
  wjob *j = arg;
  for (int i = 0; i < 4 && j->parts[i]; i++) {
    if (i) weft_sleep(j->pause);
    int rc = weft_stream_write(j->s, j->parts[i], strlen(j->parts[i]));
    if (rc) return rc;
  }
  return weft_stream_drain(j->s);
}

/* Reads everything from j->s, checking the pattern from j->from. */
static int reader_pat(void *arg) {
  wjob *j = arg;
  if (j->pause) weft_sleep(j->pause);
  j->rc = read_all_pat(j->s, j->from);
  return j->rc < 0 ? (int)j->rc : 0;
}

/* ---------------------------------------------------------------- */
/* Round trips                                                        */
/* ---------------------------------------------------------------- */

static int rt_socketpair_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  cr_assert_not_null(p.a);
  cr_assert_not_null(p.b);
  cr_assert_geq(weft_stream_fd(p.a), 0);
  int fl = fcntl(weft_stream_fd(p.a), F_GETFL);
  cr_assert(fl & O_NONBLOCK);
  cr_assert(fcntl(weft_stream_fd(p.a), F_GETFD) & FD_CLOEXEC);
  /* Small messages, both directions. */
  cr_assert_eq(weft_stream_write(p.a, "ping", 4), 0);
  cr_assert_eq(weft_stream_write_buffered(p.a), 0);
  char buf[64] = {0};
  cr_assert_eq(weft_stream_read_exactly(p.b, buf, 4), 0);
  cr_assert_str_eq(buf, "ping");
  cr_assert_eq(weft_stream_write(p.b, "pong!", 5), 0);
  cr_assert_eq(weft_stream_read(p.a, buf, sizeof buf), 5);
  cr_assert(!memcmp(buf, "pong!", 5));
  cr_assert_eq(weft_stream_read(p.a, buf, 0), 0);
  cr_assert_eq(weft_stream_write(p.a, buf, 0), 0);
  /* 1 MiB through a writer task and a reader task. */
  size_t n = 1 << 20;
  unsigned char *big = malloc(n);
  fill_pat(big, n, 0);
  wjob r = {.s = p.b};
  weft_task *rt = weft_spawn(reader_pat, &r, NULL);
  cr_assert_eq(weft_stream_write(p.a, big, n), 0);
  cr_assert_gt(weft_stream_write_buffered(p.a), 0); /* the socket is full */
  cr_assert_eq(weft_stream_drain(p.a), 0);
  cr_assert_leq(weft_stream_write_buffered(p.a), 64 * 1024 / 4);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_join(rt), 0);
  cr_assert_eq(r.rc, (ssize_t)n);
  cr_assert(weft_stream_at_eof(p.b));
  cr_assert_eq(weft_stream_read(p.b, buf, sizeof buf), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);
  free(big);
  return 0;
}

Test(stream, roundtrip_socketpair, .timeout = 20) {
  run_checked(rt_socketpair_main, NULL);
}

static int rt_pipe_main(void *arg) {
  (void)arg;
  int pfd[2];
  cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
  weft_stream *r = weft_stream_open(pfd[0], NULL);
  weft_stream *w = weft_stream_open(pfd[1], NULL);
  cr_assert_not_null(r);
  cr_assert_not_null(w);
  /* Not sockets: no address. */
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  cr_assert_eq(weft_stream_peer_addr(w, &ss, &sl), -ENOTSOCK);
  /* write_eof on the read end of a pipe: nothing to shut. */
  cr_assert_eq(weft_stream_write_eof(r), -ENOTSOCK);
  size_t n = 300 * 1000;
  unsigned char *big = malloc(n);
  fill_pat(big, n, 0);
  wjob j = {.s = r};
  weft_task *rt = weft_spawn(reader_pat, &j, NULL);
  /* In three pieces, the last two with writev. */
  cr_assert_eq(weft_stream_write(w, big, 1000), 0);
  struct iovec v[2] = {{big + 1000, 99000}, {big + 100000, n - 100000}};
  cr_assert_eq(weft_stream_writev(w, v, 2), 0);
  cr_assert_eq(weft_stream_drain(w), 0);
  /* write_eof on a write-only pipe closes it: the reader sees the end. */
  cr_assert_eq(weft_stream_write_eof(w), 0);
  cr_assert_eq(weft_stream_write_buffered(w), 0);
  cr_assert_eq(weft_stream_fd(w), -1);
  cr_assert_eq(weft_stream_write(w, "x", 1), -ESHUTDOWN);
  cr_assert_eq(weft_stream_write_eof(w), 0);
  cr_assert_eq(weft_join(rt), 0);
  cr_assert_eq(j.rc, (ssize_t)n);
  cr_assert(weft_stream_at_eof(r));
  cr_assert_eq(weft_stream_close(w), 0);
  cr_assert_eq(weft_stream_close(r), 0);
  free(big);
  return 0;
}

Test(stream, roundtrip_pipe, .timeout = 20) { run_checked(rt_pipe_main, NULL); }

/* ---------------------------------------------------------------- */
/* Reads                                                              */
/* ---------------------------------------------------------------- */

static int read_partial_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  char buf[100];
  cr_assert_eq(weft_stream_write(p.a, "abcde", 5), 0);
  cr_assert_eq(weft_stream_read(p.b, buf, sizeof buf), 5);
  cr_assert(!memcmp(buf, "abcde", 5));
  /* Partial reads out of the buffer, in order. */
  cr_assert_eq(weft_stream_write(p.a, "0123456789\n", 11), 0);
  const char *d;
  cr_assert_eq(weft_stream_readuntil(p.b, "4", 1, &d), 5);
  cr_assert(!memcmp(d, "01234", 5));
  cr_assert_eq(weft_stream_read_buffered(p.b), 6);
  cr_assert_eq(weft_stream_read(p.b, buf, 2), 2);
  cr_assert(!memcmp(buf, "56", 2));
  cr_assert_eq(weft_stream_read(p.b, buf, sizeof buf), 4);
  cr_assert(!memcmp(buf, "789\n", 4));
  cr_assert_eq(weft_stream_read_buffered(p.b), 0);
  cr_assert_not(weft_stream_at_eof(p.b));
  /* A read waits until something comes, then returns what there is. */
  wjob j = {.s = p.a, .parts = {"late"}, .pause = 0};
  weft_task *t = weft_spawn(writer, &j, NULL);
  int64_t t0 = weft_now();
  cr_assert_eq(weft_stream_read(p.b, buf, sizeof buf), 4);
  cr_assert(!memcmp(buf, "late", 4));
  cr_assert_lt(weft_now() - t0, T_SLACK);
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);
  return 0;
}

Test(stream, read_partial, .timeout = 10) { run_checked(read_partial_main, NULL); }

/* A reader whose data is always there never waits, yet it must not hold
 * the loop: another task runs, and a deadline fires, while it reads
 * 64 KiB one byte per call out of a full buffer. */
static int ticker(void *arg) {
  long *ticks = arg;
  for (;;) {
    (*ticks)++;
    if (weft_yield() < 0) return 0;
  }
}

static int always_ready_main(void *arg) {
  (void)arg;
  weft_stream_opts o = {.limit = 1 << 20};
  weft_stream_pair p = weft_stream_socketpair(&o);
  static char big[65536];
  memset(big, 'x', sizeof big);
  cr_assert_eq(weft_stream_write(p.a, big, sizeof big), 0);
  cr_assert_eq(weft_stream_drain(p.a), 0);
  char c;
  cr_assert_eq(weft_stream_read_exactly(p.b, &c, 1), 0); /* fills the buffer */
  long ticks = 0;
  weft_task *t = weft_spawn(ticker, &ticks, NULL);
  long before = -1;
  size_t got = 1;
  while (got < sizeof big) {
    cr_assert_eq(weft_stream_read(p.b, &c, 1), 1);
    if (got++ == 1000) before = ticks;
  }
  /* The ticker ran while the reader had data all along. */
  cr_assert_gt(before, 0, "no other task ran during 1000 ready reads");
  cr_assert_gt(ticks, 500); /* about one per 64 reads */
  /* A deadline fires while reads are always ready. */
  cr_assert_eq(weft_stream_write(p.a, big, sizeof big), 0);
  cr_assert_eq(weft_stream_drain(p.a), 0);
  cr_assert_eq(weft_stream_read_exactly(p.b, &c, 1), 0);
  weft_scope sc;
  weft_scope_open_after(&sc, 0); /* already due: fires at the next turn */
  int rc = 0;
  size_t n = 0;
  while (n < sizeof big - 1 && (rc = (int)weft_stream_read(p.b, &c, 1)) == 1) n++;
  cr_assert_eq(weft_scope_close(&sc), -ETIMEDOUT);
  cr_assert_eq(rc, -ECANCELED);
  /* A turn of the loop (timers) comes every WEFT__BUDGET dispatches:
   * with the ticker, a few thousand reads; without the yields, never
   * before the data ran out. The deadline, read on the fast clock, errs
   * late by up to 1/1024 of the time since its anchor: on a loaded
   * machine it took 18,428 reads (9 turns) once, so the bound is half. */
  cr_assert_lt(n, sizeof big / 2, "the deadline waited %zu reads", n);
  /* Nothing was lost: the rest is still there, to the byte. */
  static char rest[65536];
  cr_assert_eq(weft_stream_read_exactly(p.b, rest, sizeof big - 1 - n), 0);
  cr_assert_eq(weft_stream_read_buffered(p.b), 0);
  weft_cancel(t);
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);
  return 0;
}

Test(stream, always_ready_yields, .timeout = 10) {
  run_checked(always_ready_main, NULL);
}

static int readexactly_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  /* Across three writes with pauses. */
  wjob j = {.s = p.a, .parts = {"abc", "defg", "hij"}, .pause = WEFT_MS(5)};
  weft_task *t = weft_spawn(writer, &j, NULL);
  char buf[32] = {0};
  cr_assert_eq(weft_stream_read_exactly(p.b, buf, 8), 0);
  cr_assert_str_eq(buf, "abcdefgh");
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(weft_stream_read_exactly(p.b, buf, 2), 0);
  cr_assert(!memcmp(buf, "ij", 2));
  cr_assert_eq(weft_stream_read_exactly(p.b, buf, 0), 0);
  /* The end comes first: the bytes stay for read. */
  cr_assert_eq(weft_stream_write(p.a, "xyz", 3), 0);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_stream_read_exactly(p.b, buf, 10), WEFT_EINCOMPLETE);
  cr_assert_eq(weft_stream_read_buffered(p.b), 3);
  cr_assert_not(weft_stream_at_eof(p.b));
  cr_assert_eq(weft_stream_read_exactly(p.b, buf, 4), WEFT_EINCOMPLETE);
  memset(buf, 0, sizeof buf);
  cr_assert_eq(weft_stream_read(p.b, buf, sizeof buf), 3);
  cr_assert_str_eq(buf, "xyz");
  cr_assert(weft_stream_at_eof(p.b));
  cr_assert_eq(weft_stream_read_exactly(p.b, buf, 1), WEFT_EINCOMPLETE);
  cr_assert_eq(weft_stream_read(p.b, buf, sizeof buf), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);
  return 0;
}

Test(stream, readexactly, .timeout = 10) { run_checked(readexactly_main, NULL); }

/* A big readexactly, bigger than any default buffer. */
static int readexactly_big_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  size_t n = 700 * 1000;
  unsigned char *src = malloc(n), *dst = malloc(n);
  fill_pat(src, n, 0);
  cr_assert_eq(weft_stream_write(p.a, src, n), 0);
  /* a's buffer is flushed by another task (its close) while b reads. */
  weft_task *t = weft_spawn(close_task, p.a, NULL);
  cr_assert_eq(weft_stream_read_exactly(p.b, dst, n), 0);
  cr_assert(!memcmp(src, dst, n));
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(weft_stream_read(p.b, dst, 1), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);
  free(src);
  free(dst);
  return 0;
}

Test(stream, readexactly_big, .timeout = 20) {
  run_checked(readexactly_big_main, NULL);
}

static int readline_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  const char *d;
  cr_assert_eq(weft_stream_write(p.a, "one\ntwo\n\nthree", 14), 0);
  cr_assert_eq(weft_stream_readline(p.b, &d), 4);
  cr_assert(!memcmp(d, "one\n", 4));
  cr_assert_eq(weft_stream_readline(p.b, &d), 4);
  cr_assert(!memcmp(d, "two\n", 4));
  cr_assert_eq(weft_stream_readline(p.b, &d), 1);
  cr_assert_eq(d[0], '\n');
  /* "three" has no newline: readline waits for the end, then returns it. */
  cr_assert_eq(weft_stream_write_eof(p.a), 0);
  cr_assert_eq(weft_stream_readline(p.b, &d), 5);
  cr_assert(!memcmp(d, "three", 5));
  cr_assert(weft_stream_at_eof(p.b));
  cr_assert_eq(weft_stream_readline(p.b, &d), 0);
  cr_assert_eq(weft_stream_readline(p.b, &d), 0);
  /* readuntil at the end: incomplete. */
  cr_assert_eq(weft_stream_readuntil(p.b, "\n", 1, &d), WEFT_EINCOMPLETE);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);

  /* With a trailing newline at the end: the line, then 0. */
  p = weft_stream_socketpair(NULL);
  cr_assert_eq(weft_stream_write(p.a, "last\n", 5), 0);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_stream_readline(p.b, &d), 5);
  cr_assert(!memcmp(d, "last\n", 5));
  cr_assert_eq(weft_stream_readline(p.b, &d), 0);
  cr_assert(weft_stream_at_eof(p.b));
  cr_assert_eq(weft_stream_close(p.b), 0);
  return 0;
}

Test(stream, readline, .timeout = 10) { run_checked(readline_main, NULL); }

static int readuntil_split_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  /* The separator "\r\n" is split across two writes 20 ms apart. */
  wjob j = {.s = p.a, .parts = {"GET / HTTP/1.1\r", "\nHost: x\r\n\r\n"},
            .pause = WEFT_MS(20)};
  weft_task *t = weft_spawn(writer, &j, NULL);
  const char *d;
  ssize_t n = weft_stream_readuntil(p.b, "\r\n", 2, &d);
  cr_assert_eq(n, 16);
  cr_assert(!memcmp(d, "GET / HTTP/1.1\r\n", 16));
  n = weft_stream_readuntil(p.b, "\r\n\r\n", 4, &d);
  cr_assert_eq(n, 11);
  cr_assert(!memcmp(d, "Host: x\r\n\r\n", 11));
  cr_assert_eq(weft_join(t), 0);
  /* A 4-byte separator split over four writes. */
  wjob j2 = {.s = p.a, .parts = {"body-", "--", "==", "--tail"},
             .pause = WEFT_MS(5)};
  t = weft_spawn(writer, &j2, NULL);
  n = weft_stream_readuntil(p.b, "-==-", 4, &d);
  cr_assert_eq(n, 10);
  cr_assert(!memcmp(d, "body---==-", 10));
  cr_assert_eq(weft_join(t), 0);
  char buf[16];
  cr_assert_eq(weft_stream_read(p.b, buf, sizeof buf), 5);
  cr_assert(!memcmp(buf, "-tail", 5));
  /* A long line over many reads and buffer growths (limit 300 KB). */
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);
  weft_stream_opts o = {.limit = 300 * 1000};
  p = weft_stream_socketpair(&o);
  size_t len = 200 * 1000;
  char *line = malloc(len + 1);
  for (size_t i = 0; i < len; i++) line[i] = (char)('a' + i % 26);
  line[len] = '\n';
  cr_assert_eq(weft_stream_write(p.a, line, len + 1), 0);
  t = weft_spawn(drain_task, p.a, NULL);
  n = weft_stream_readline(p.b, &d);
  cr_assert_eq(n, (ssize_t)len + 1);
  cr_assert(!memcmp(d, line, len + 1));
  cr_assert_eq(weft_join(t), 0);
  free(line);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);
  return 0;
}

Test(stream, readuntil_split, .timeout = 10) {
  run_checked(readuntil_split_main, NULL);
}

static int readuntil_any_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  const char *d;
  weft_bytes seps[] = {{"\r\n", 2}, {";", 1}, {"\n", 1}};
  cr_assert_eq(weft_stream_write(p.a, "ab\r\ncd;ef\ngh;", 13), 0);
  cr_assert_eq(weft_stream_readuntil_any(p.b, seps, 3, &d), 4);
  cr_assert(!memcmp(d, "ab\r\n", 4));
  cr_assert_eq(weft_stream_readuntil_any(p.b, seps, 3, &d), 3);
  cr_assert(!memcmp(d, "cd;", 3));
  cr_assert_eq(weft_stream_readuntil_any(p.b, seps, 3, &d), 3);
  cr_assert(!memcmp(d, "ef\n", 3));
  cr_assert_eq(weft_stream_readuntil_any(p.b, seps, 3, &d), 3);
  cr_assert(!memcmp(d, "gh;", 3));
  /* Earliest end wins, whatever the order of the separators: "c" ends
   * before "bcd" does. */
  weft_bytes s2[] = {{"bcd", 3}, {"c", 1}};
  cr_assert_eq(weft_stream_write(p.a, "abcd", 4), 0);
  cr_assert_eq(weft_stream_readuntil_any(p.b, s2, 2, &d), 3);
  cr_assert(!memcmp(d, "abc", 3));
  char buf[8];
  cr_assert_eq(weft_stream_read(p.b, buf, sizeof buf), 1);
  /* Split across writes: "XY" (second sep) arrives in two halves, the
   * first sep later still. */
  weft_bytes s3[] = {{"ZZZ", 3}, {"XY", 2}};
  wjob j = {.s = p.a, .parts = {"12X", "Y34ZZZ"}, .pause = WEFT_MS(10)};
  weft_task *t = weft_spawn(writer, &j, NULL);
  cr_assert_eq(weft_stream_readuntil_any(p.b, s3, 2, &d), 4);
  cr_assert(!memcmp(d, "12XY", 4));
  cr_assert_eq(weft_stream_readuntil_any(p.b, s3, 2, &d), 5);
  cr_assert(!memcmp(d, "34ZZZ", 5));
  cr_assert_eq(weft_join(t), 0);
  /* Bad separators. */
  weft_bytes bad[] = {{"a", 1}, {"", 0}};
  cr_assert_eq(weft_stream_readuntil_any(p.b, bad, 2, &d), -EINVAL);
  cr_assert_eq(weft_stream_readuntil_any(p.b, seps, 0, &d), -EINVAL);
  cr_assert_eq(weft_stream_readuntil_any(p.b, NULL, 1, &d), -EINVAL);
  cr_assert_eq(weft_stream_readuntil_any(p.b, seps, 1, NULL), -EINVAL);
  weft_bytes nul[] = {{NULL, 1}};
  cr_assert_eq(weft_stream_readuntil_any(p.b, nul, 1, &d), -EINVAL);
  cr_assert_eq(weft_stream_readuntil(p.b, "", 0, &d), -EINVAL);
  cr_assert_eq(weft_stream_readuntil(p.b, NULL, 1, &d), -EINVAL);
  cr_assert_eq(weft_stream_readuntil(p.b, "x", 1, NULL), -EINVAL);
  cr_assert_eq(weft_stream_readline(p.b, NULL), -EINVAL);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);
  return 0;
}

Test(stream, readuntil_any, .timeout = 10) {
  run_checked(readuntil_any_main, NULL);
}

static int limit_main(void *arg) {
  (void)arg;
  weft_stream_opts o = {.limit = 8};
  weft_stream_pair p = weft_stream_socketpair(&o);
  const char *d;
  char buf[64] = {0};
  /* Separator found, but 16 bytes before it: over the limit. */
  cr_assert_eq(weft_stream_write(p.a, "0123456789abcdef\n", 17), 0);
  cr_assert_eq(weft_stream_readline(p.b, &d), WEFT_ELIMIT);
  cr_assert_eq(weft_stream_read_buffered(p.b), 17); /* nothing consumed */
  cr_assert_eq(weft_stream_readuntil(p.b, "\n", 1, &d), WEFT_ELIMIT);
  cr_assert_eq(weft_stream_read_exactly(p.b, buf, 17), 0);
  cr_assert(!memcmp(buf, "0123456789abcdef\n", 17));
  /* Exactly at the limit: 8 bytes then the separator is fine. */
  cr_assert_eq(weft_stream_write(p.a, "01234567\n", 9), 0);
  cr_assert_eq(weft_stream_readline(p.b, &d), 9);
  /* No separator at all in the first limit + seplen bytes: ELIMIT
   * without waiting for more. */
  cr_assert_eq(weft_stream_write(p.a, "aaaaaaaaaaaa", 12), 0);
  cr_assert_eq(weft_stream_readuntil(p.b, "\r\n", 2, &d), WEFT_ELIMIT);
  cr_assert_eq(weft_stream_read_buffered(p.b), 12);
  memset(buf, 0, sizeof buf);
  cr_assert_eq(weft_stream_read(p.b, buf, sizeof buf), 12);
  cr_assert_str_eq(buf, "aaaaaaaaaaaa");
  /* The limit for readuntil_any. */
  weft_bytes seps[] = {{"!", 1}, {"??", 2}};
  cr_assert_eq(weft_stream_write(p.a, "123456789??", 11), 0);
  cr_assert_eq(weft_stream_readuntil_any(p.b, seps, 2, &d), WEFT_ELIMIT);
  cr_assert_eq(weft_stream_read_buffered(p.b), 11);
  cr_assert_eq(weft_stream_read(p.b, buf, 1), 1);
  cr_assert_eq(weft_stream_readuntil_any(p.b, seps, 2, &d), 10);
  cr_assert(!memcmp(d, "23456789??", 10));
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);
  return 0;
}

Test(stream, limit_keeps_data, .timeout = 10) { run_checked(limit_main, NULL); }

/* ---------------------------------------------------------------- */
/* Cancellation loses nothing                                         */
/* ---------------------------------------------------------------- */

static int cancel_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  weft_scope sc;
  char buf[64] = {0};
  const char *d;

  /* read: nothing there, the deadline passes. */
  cr_assert_eq(weft_scope_open_after(&sc, WEFT_MS(20)), 0);
  cr_assert_eq(weft_stream_read(p.b, buf, sizeof buf), -ECANCELED);
  /* Level-triggered: still cancelled, even with data buffered. */
  cr_assert_eq(weft_stream_read(p.b, buf, sizeof buf), -ECANCELED);
  cr_assert_eq(weft_scope_close(&sc), -ETIMEDOUT);
  cr_assert_eq(weft_stream_write(p.a, "r1", 2), 0);
  cr_assert_eq(weft_stream_read(p.b, buf, sizeof buf), 2);
  cr_assert(!memcmp(buf, "r1", 2));

  /* readexactly: 3 of 10 bytes come, then the deadline, then the rest. */
  cr_assert_eq(weft_stream_write(p.a, "abc", 3), 0);
  cr_assert_eq(weft_scope_open_after(&sc, WEFT_MS(20)), 0);
  cr_assert_eq(weft_stream_read_exactly(p.b, buf, 10), -ECANCELED);
  cr_assert_eq(weft_scope_close(&sc), -ETIMEDOUT);
  cr_assert_eq(weft_stream_read_buffered(p.b), 3);
  wjob j = {.s = p.a, .parts = {"de", "fghij"}, .pause = WEFT_MS(10)};
  weft_task *t = weft_spawn(writer, &j, NULL);
  /* Cancelled again while it has 5 of them. */
  cr_assert_eq(weft_scope_open_after(&sc, WEFT_MS(5)), 0);
  int rc = weft_stream_read_exactly(p.b, buf, 10);
  weft_scope_close(&sc);
  cr_assert_eq(rc, -ECANCELED);
  memset(buf, 0, sizeof buf);
  cr_assert_eq(weft_stream_read_exactly(p.b, buf, 10), 0);
  cr_assert_str_eq(buf, "abcdefghij");
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(weft_stream_read_buffered(p.b), 0);

  /* readuntil: "abc" came, the deadline, then "def\n". */
  cr_assert_eq(weft_stream_write(p.a, "abc", 3), 0);
  cr_assert_eq(weft_scope_open_after(&sc, WEFT_MS(20)), 0);
  cr_assert_eq(weft_stream_readline(p.b, &d), -ECANCELED);
  cr_assert_eq(weft_scope_close(&sc), -ETIMEDOUT);
  cr_assert_eq(weft_stream_read_buffered(p.b), 3);
  wjob j2 = {.s = p.a, .parts = {"de", "f\nxyz"}, .pause = WEFT_MS(10)};
  t = weft_spawn(writer, &j2, NULL);
  cr_assert_eq(weft_stream_readline(p.b, &d), 7);
  cr_assert(!memcmp(d, "abcdef\n", 7));
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(weft_stream_read_exactly(p.b, buf, 3), 0);
  cr_assert(!memcmp(buf, "xyz", 3));

  /* A cancelled caller with data ready: readuntil still says cancelled and
   * consumes nothing. */
  cr_assert_eq(weft_stream_write(p.a, "line\n", 5), 0);
  cr_assert_eq(weft_scope_open(&sc, WEFT_FOREVER), 0);
  cr_assert_eq(weft_scope_cancel(&sc), 0);
  cr_assert_eq(weft_stream_readline(p.b, &d), -ECANCELED);
  cr_assert_eq(weft_stream_drain(p.a), -ECANCELED);
  cr_assert_eq(weft_scope_close(&sc), 0);
  cr_assert_eq(weft_stream_readline(p.b, &d), 5);
  cr_assert(!memcmp(d, "line\n", 5));
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);
  return 0;
}

Test(stream, cancel_loses_nothing, .timeout = 10) {
  run_checked(cancel_main, NULL);
}

/* A stream of numbered bytes read with reads cancelled at random moments:
 * every byte arrives exactly once, in order. */
typedef struct {
  weft_stream *s;
  size_t n;
} pump;

static int pump_writer(void *arg) {
  pump *pw = arg;
  unsigned char chunk[997];
  size_t off = 0;
  while (off < pw->n) {
    size_t k = pw->n - off < sizeof chunk ? pw->n - off : sizeof chunk;
    fill_pat(chunk, k, off);
    int rc = weft_stream_write(pw->s, chunk, k);
    if (rc) return rc;
    off += k;
    if ((rc = weft_stream_drain(pw->s)) != 0) return rc;
    if (off % 7 == 0) weft_sleep(WEFT_US(200));
  }
  return weft_stream_close(pw->s);
}

static int cancel_storm_main(void *arg) {
  (void)arg;
  weft_stream_opts o = {.high_water = 4096};
  weft_stream_pair p = weft_stream_socketpair(&o);
  small_bufs(p.a, 4096, 0);
  small_bufs(p.b, 0, 4096);
  pump pw = {.s = p.a, .n = 200 * 1000};
  weft_task *t = weft_spawn(pump_writer, &pw, NULL);
  size_t got = 0, cancels = 0;
  unsigned char buf[3000];
  int turn = 0;
  while (got < pw.n) {
    weft_scope sc;
    weft_scope_open_after(&sc, WEFT_US(50 + (turn * 37) % 300));
    ssize_t r;
    switch (turn++ % 3) {
    case 0:
      r = weft_stream_read(p.b, buf, sizeof buf);
      break;
    case 1: {
      size_t want = 1 + (size_t)(turn * 131) % 2500;
      if (want > pw.n - got) want = pw.n - got;
      r = weft_stream_read_exactly(p.b, buf, want);
      if (r == 0) r = (ssize_t)want;
      break;
    }
    default: {
      /* Separator: the byte pat() gives at some offset ahead. */
      unsigned char sep = pat(got + 100 + (size_t)turn % 50);
      const char *d;
      r = weft_stream_readuntil(p.b, &sep, 1, &d);
      if (r > 0) memcpy(buf, d, (size_t)r);
      if (r == WEFT_EINCOMPLETE || r == WEFT_ELIMIT) r = 0;
      break;
    }
    }
    weft_scope_close(&sc);
    if (r == -ECANCELED) {
      cancels++;
      continue;
    }
    cr_assert_geq(r, 0, "r = %zd at %zu", r, got);
    for (ssize_t i = 0; i < r; i++)
      cr_assert_eq(buf[i], pat(got + (size_t)i), "byte %zu", got + (size_t)i);
    got += (size_t)r;
  }
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(weft_stream_read(p.b, buf, 1), 0);
  cr_log_info("cancel storm: %zu cancels", cancels);
  cr_assert_eq(weft_stream_close(p.b), 0);
  return 0;
}

Test(stream, cancel_storm, .timeout = 30) { run_checked(cancel_storm_main, NULL); }

/* ---------------------------------------------------------------- */
/* Writes: backpressure, peers that go, half-close                    */
/* ---------------------------------------------------------------- */

static int drain_main(void *arg) {
  (void)arg;
  weft_stream_opts o = {.high_water = 4096, .low_water = 1024};
  weft_stream_pair p = weft_stream_socketpair(&o);
  small_bufs(p.a, 4096, 0);
  small_bufs(p.b, 0, 4096);
  size_t n = 256 * 1024;
  unsigned char *big = malloc(n + 1000);
  fill_pat(big, n + 1000, 0);
  cr_assert_eq(weft_stream_write(p.a, big, n), 0);
  size_t queued = weft_stream_write_buffered(p.a);
  cr_assert_gt(queued, 4096);
  /* The peer never reads: drain waits until the deadline. */
  weft_scope sc;
  int64_t t0 = weft_now();
  cr_assert_eq(weft_scope_open_after(&sc, WEFT_MS(50)), 0);
  cr_assert_eq(weft_stream_drain(p.a), -ECANCELED);
  cr_assert_eq(weft_scope_close(&sc), -ETIMEDOUT);
  cr_assert_geq(weft_now() - t0, WEFT_MS(50));
  cr_assert_eq(weft_stream_write_buffered(p.a), queued); /* all still there */
  /* More writes queue behind, in order. */
  cr_assert_eq(weft_stream_write(p.a, big + n, 1000), 0);
  cr_assert_eq(weft_stream_write_buffered(p.a), queued + 1000);
  /* Now the peer reads: the drain returns, then close flushes the rest. */
  wjob r = {.s = p.b, .pause = WEFT_MS(10)};
  weft_task *t = weft_spawn(reader_pat, &r, NULL);
  cr_assert_eq(weft_stream_drain(p.a), 0);
  cr_assert_leq(weft_stream_write_buffered(p.a), 1024);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(r.rc, (ssize_t)(n + 1000)); /* every byte, in order */
  cr_assert_eq(weft_stream_close(p.b), 0);
  free(big);
  return 0;
}

Test(stream, drain_backpressure, .timeout = 10) { run_checked(drain_main, NULL); }

/* As above, but checking every byte: the extra write continues the
 * pattern. */
static int drain_order_main(void *arg) {
  (void)arg;
  weft_stream_opts o = {.high_water = 4096, .low_water = 1024};
  weft_stream_pair p = weft_stream_socketpair(&o);
  small_bufs(p.a, 4096, 0);
  size_t n = 256 * 1024;
  unsigned char *big = malloc(n + 5000);
  fill_pat(big, n + 5000, 0);
  cr_assert_eq(weft_stream_write(p.a, big, n), 0);
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(20));
  cr_assert_eq(weft_stream_drain(p.a), -ECANCELED);
  weft_scope_close(&sc);
  /* writev behind the queue, with an empty piece. */
  struct iovec v[3] = {{big + n, 2000}, {NULL, 0}, {big + n + 2000, 3000}};
  cr_assert_eq(weft_stream_writev(p.a, v, 3), 0);
  cr_assert_eq(weft_stream_writev(p.a, v, 0), 0);
  wjob r = {.s = p.b};
  weft_task *t = weft_spawn(reader_pat, &r, NULL);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(r.rc, (ssize_t)(n + 5000));
  cr_assert_eq(weft_stream_close(p.b), 0);
  free(big);
  return 0;
}

Test(stream, drain_order, .timeout = 10) { run_checked(drain_order_main, NULL); }

static int epipe_main(void *arg) {
  (void)arg;
  /* A socketpair whose peer is gone. */
  weft_stream_pair p = weft_stream_socketpair(NULL);
  cr_assert_eq(weft_stream_close(p.b), 0);
  int rc = weft_stream_write(p.a, "x", 1);
  cr_assert(rc == -EPIPE || rc == -ECONNRESET, "rc %d", rc);
  cr_assert_eq(weft_stream_write(p.a, "y", 1), rc); /* sticky */
  struct iovec v = {"z", 1};
  cr_assert_eq(weft_stream_writev(p.a, &v, 1), rc);
  cr_assert_eq(weft_stream_drain(p.a), rc);
  cr_assert_eq(weft_stream_write_eof(p.a), rc);
  cr_assert_eq(weft_stream_close(p.a), rc);

  /* A pipe whose read end is closed. */
  int pfd[2];
  cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
  close(pfd[0]);
  weft_stream *w = weft_stream_open(pfd[1], NULL);
  cr_assert_not_null(w);
  cr_assert_eq(weft_stream_write(w, "x", 1), -EPIPE);
  cr_assert_eq(weft_stream_write(w, "x", 1), -EPIPE);
  cr_assert_eq(weft_stream_close(w), -EPIPE);

  /* sendfile to a peer that is gone: no SIGPIPE either. */
  p = weft_stream_socketpair(NULL);
  cr_assert_eq(weft_stream_close(p.b), 0);
  char path[] = "/tmp/weft_stream_XXXXXX";
  int f = mkostemp(path, O_CLOEXEC);
  cr_assert_geq(f, 0);
  unlink(path);
  cr_assert_eq(write(f, "0123456789", 10), 10);
  off_t off = 0;
  rc = weft_stream_sendfile(p.a, f, &off, 10);
  cr_assert(rc == -EPIPE || rc == -ECONNRESET, "rc %d", rc);
  cr_assert_eq(off, 0);
  cr_assert_eq(weft_stream_write(p.a, "x", 1), rc); /* sticky */
  cr_assert_eq(weft_stream_close(p.a), rc);
  close(f);

  /* A TCP peer that closed with unread data: reset. Data buffered first,
   * the error shows up at the flush. */
  int a, b;
  tcp_pair(&a, &b);
  weft_stream *sa = weft_stream_open(a, NULL);
  cr_assert_eq(weft_stream_write(sa, "unread", 6), 0);
  weft_sleep(WEFT_MS(5));
  close(b); /* b has unread data: it resets the connection */
  weft_sleep(WEFT_MS(5));
  char buf[16];
  cr_assert_eq(weft_stream_read(sa, buf, sizeof buf), -ECONNRESET);
  for (int i = 0; i < 3 && !(rc = weft_stream_write(sa, "x", 1)); i++)
    weft_sleep(WEFT_MS(5));
  cr_assert(rc == -EPIPE || rc == -ECONNRESET, "rc %d", rc);
  cr_assert_eq(weft_stream_close(sa), rc);
  cr_assert_eq(n_sigpipe, 0);
  sigset_t pend;
  sigpending(&pend);
  cr_assert_not(sigismember(&pend, SIGPIPE));
  return 0;
}

Test(stream, epipe_no_sigpipe, .timeout = 10) {
  count_sigpipe();
  run_checked(epipe_main, NULL);
  cr_assert_eq(n_sigpipe, 0);
  signal(SIGPIPE, SIG_DFL);
}

/* With SIGPIPE blocked and one already pending, the stream's own SIGPIPE
 * is not consumed in its place: the pending one stays, and the mask is
 * restored. */
static int epipe_pending_main(void *arg) {
  (void)arg;
  int pfd[2];
  cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
  close(pfd[0]);
  weft_stream *w = weft_stream_open(pfd[1], NULL);
  cr_assert_eq(weft_stream_write(w, "x", 1), -EPIPE);
  sigset_t pend, cur;
  sigpending(&pend);
  cr_assert(sigismember(&pend, SIGPIPE));
  pthread_sigmask(SIG_SETMASK, NULL, &cur);
  cr_assert(sigismember(&cur, SIGPIPE));
  cr_assert_eq(weft_stream_close(w), -EPIPE);
  return 0;
}

Test(stream, epipe_pending_kept, .timeout = 10) {
  count_sigpipe();
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  raise(SIGPIPE);
  run_checked(epipe_pending_main, NULL);
  cr_assert_eq(n_sigpipe, 0);
  struct timespec z = {0, 0};
  cr_assert_eq(sigtimedwait(&set, NULL, &z), SIGPIPE);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  signal(SIGPIPE, SIG_DFL);
}

static int half_close_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  cr_assert_eq(weft_stream_write(p.a, "request", 7), 0);
  cr_assert_eq(weft_stream_write_eof(p.a), 0);
  cr_assert_eq(weft_stream_write_eof(p.a), 0);
  cr_assert_eq(weft_stream_write(p.a, "more", 4), -ESHUTDOWN);
  struct iovec v = {"more", 4};
  cr_assert_eq(weft_stream_writev(p.a, &v, 1), -ESHUTDOWN);
  char buf[32] = {0};
  cr_assert_eq(weft_stream_read_exactly(p.b, buf, 7), 0);
  cr_assert_str_eq(buf, "request");
  cr_assert_eq(weft_stream_read(p.b, buf, sizeof buf), 0);
  cr_assert(weft_stream_at_eof(p.b));
  /* b can still answer, and a still reads. */
  cr_assert_eq(weft_stream_write(p.b, "response", 8), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);
  memset(buf, 0, sizeof buf);
  cr_assert_eq(weft_stream_read_exactly(p.a, buf, 8), 0);
  cr_assert_str_eq(buf, "response");
  cr_assert_eq(weft_stream_read(p.a, buf, sizeof buf), 0);
  cr_assert_eq(weft_stream_close(p.a), 0);
  return 0;
}

Test(stream, write_eof_half_close, .timeout = 10) {
  run_checked(half_close_main, NULL);
}

/* write_eof flushes a big buffer first (waiting), then shuts. */
static int half_close_flush_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  size_t n = 600 * 1000;
  unsigned char *big = malloc(n);
  fill_pat(big, n, 0);
  cr_assert_eq(weft_stream_write(p.a, big, n), 0);
  cr_assert_gt(weft_stream_write_buffered(p.a), 0);
  wjob r = {.s = p.b};
  weft_task *t = weft_spawn(reader_pat, &r, NULL);
  cr_assert_eq(weft_stream_write_eof(p.a), 0);
  cr_assert_eq(weft_stream_write_buffered(p.a), 0);
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(r.rc, (ssize_t)n);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);
  free(big);
  return 0;
}

Test(stream, write_eof_flushes, .timeout = 10) {
  run_checked(half_close_flush_main, NULL);
}

/* A read that waits flushes what is buffered for writing meanwhile: a
 * request-response exchange never stalls on a buffered reply. */
typedef struct {
  weft_stream *s;
  size_t n;
  int rc;
} echo_job;

static int peer_reads_then_answers(void *arg) {
  echo_job *e = arg;
  e->rc = (int)read_all_pat(e->s, 0) == (int)e->n ? 0 : -EPROTO;
  if (!e->rc) e->rc = weft_stream_write(e->s, "ok\n", 3);
  return e->rc;
}

static int read_flushes_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  size_t n = 500 * 1000;
  unsigned char *big = malloc(n);
  fill_pat(big, n, 0);
  echo_job e = {.s = p.b, .n = n};
  weft_task *t = weft_spawn(peer_reads_then_answers, &e, NULL);
  cr_assert_eq(weft_stream_write(p.a, big, n), 0);
  cr_assert_gt(weft_stream_write_buffered(p.a), 60 * 1000);
  /* No drain: only reading. But the peer needs the end of stream, which
   * write_eof gives after flushing; so first check that a read flushes
   * while it waits, with a deadline. */
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(300));
  char buf[8];
  cr_assert_eq(weft_stream_read(p.a, buf, sizeof buf), -ECANCELED);
  weft_scope_close(&sc);
  cr_assert_eq(weft_stream_write_buffered(p.a), 0);
  cr_assert_eq(weft_stream_write_eof(p.a), 0);
  const char *d;
  cr_assert_eq(weft_stream_readline(p.a, &d), 3);
  cr_assert(!memcmp(d, "ok\n", 3));
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);
  free(big);
  return 0;
}

Test(stream, read_flushes_writes, .timeout = 10) {
  run_checked(read_flushes_main, NULL);
}

/* writev with more pieces than fit in one system call next to the
 * buffered bytes: the rest is buffered, and the order holds. */
static int writev_many_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  small_bufs(p.a, 4096, 0);
  size_t n = 200 * 1000;
  unsigned char *big = malloc(n + IOV_MAX * 3);
  fill_pat(big, n + IOV_MAX * 3, 0);
  cr_assert_eq(weft_stream_write(p.a, big, n), 0);
  size_t queued = weft_stream_write_buffered(p.a);
  cr_assert_gt(queued, 0);
  struct iovec *v = calloc(IOV_MAX, sizeof *v);
  for (int i = 0; i < IOV_MAX; i++)
    v[i] = (struct iovec){big + n + (size_t)i * 3, 3};
  cr_assert_eq(weft_stream_writev(p.a, v, IOV_MAX), 0);
  cr_assert_eq(weft_stream_write_buffered(p.a), queued + IOV_MAX * 3);
  wjob r = {.s = p.b};
  weft_task *t = weft_spawn(reader_pat, &r, NULL);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(r.rc, (ssize_t)(n + IOV_MAX * 3));
  cr_assert_eq(weft_stream_close(p.b), 0);
  free(v);
  free(big);
  return 0;
}

Test(stream, writev_many, .timeout = 10) { run_checked(writev_many_main, NULL); }

/* An idle stream holds no buffer: the read buffer is given back while a
 * read waits (the loop keeps at most 16 of them, 256 KiB, for reuse,
 * whatever the number of streams), the write buffer once it is flushed.
 * Measured with mallinfo2 (skipped where a sanitizer or valgrind
 * replaces malloc) over NIDLE connections. */
#define NIDLE 48

typedef struct {
  weft_stream *s;
  int lines;
} idle_job;

static int idle_reader(void *arg) {
  idle_job *j = arg;
  const char *d;
  ssize_t n;
  while ((n = weft_stream_readline(j->s, &d)) > 0) j->lines++;
  return (int)n;
}

static size_t heap_used(void) { return mallinfo2().uordblks; }

static int idle_main(void *arg) {
  (void)arg;
  weft_stream_pair p[NIDLE];
  idle_job j[NIDLE];
  weft_task *t[NIDLE];
  for (int i = 0; i < NIDLE; i++) {
    p[i] = weft_stream_socketpair(NULL);
    cr_assert_not_null(p[i].a);
    j[i] = (idle_job){.s = p[i].b};
    t[i] = weft_spawn(idle_reader, &j[i], NULL);
  }
  weft_sleep(WEFT_MS(2));
  size_t idle = heap_used();
  /* Half a line each: every reader keeps it, in a buffer, while it waits. */
  for (int i = 0; i < NIDLE; i++)
    cr_assert_eq(weft_stream_write(p[i].a, "partial", 7), 0);
  weft_sleep(WEFT_MS(5));
  size_t busy = heap_used();
  for (int i = 0; i < NIDLE; i++)
    cr_assert_eq(weft_stream_read_buffered(p[i].b), 7);
  /* The rest of each line: consumed, and the buffers go before the next
   * wait (16 into the loop's cache, the others freed). */
  for (int i = 0; i < NIDLE; i++)
    cr_assert_eq(weft_stream_write(p[i].a, " line\n", 6), 0);
  weft_sleep(WEFT_MS(5));
  size_t again = heap_used();
  for (int i = 0; i < NIDLE; i++) {
    cr_assert_eq(j[i].lines, 1);
    cr_assert_eq(weft_stream_read_buffered(p[i].b), 0);
  }
  /* The write side: 1 MB of short lines queued, then flushed as the
   * reader takes them. */
  size_t n = 1 << 20;
  unsigned char *big = malloc(n);
  for (size_t i = 0; i < n; i++) big[i] = i % 64 == 63 ? '\n' : 'x';
  size_t before_w = heap_used();
  cr_assert_eq(weft_stream_write(p[0].a, big, n), 0);
  cr_assert_gt(weft_stream_write_buffered(p[0].a), 0);
  free(big);
  cr_assert_eq(weft_stream_drain(p[0].a), 0);
  while (weft_stream_write_buffered(p[0].a)) {
    cr_assert_eq(weft_stream_drain(p[0].a), 0);
    weft_sleep(WEFT_MS(1));
  }
  weft_sleep(WEFT_MS(2));
  size_t after_w = heap_used();
  cr_log_info("heap: idle %zu, half lines %zu, after %zu; writes %zu -> %zu",
              idle, busy, again, before_w, after_w);
  if (idle && busy) {
    /* (some may come from the cache) */
    cr_assert_geq(busy, idle + (NIDLE - 16) * (size_t)16384, "idle %zu busy %zu", idle, busy);
    cr_assert_leq(again, idle + 16 * (size_t)16384 + NIDLE * 64, "idle %zu again %zu",
                  idle, again);
    cr_assert_leq(after_w, before_w + 512, "before %zu after %zu", before_w,
                  after_w);
  } else {
    cr_log_info("mallinfo2 gives nothing here: not measured");
  }
  for (int i = 0; i < NIDLE; i++) {
    cr_assert_eq(weft_stream_close(p[i].a), 0);
    cr_assert_eq(weft_join(t[i]), 0);
    cr_assert_eq(j[i].lines, i ? 1 : 1 + (1 << 20) / 64);
    cr_assert_eq(weft_stream_close(p[i].b), 0);
  }
  return 0;
}

Test(stream, idle_holds_no_buffer, .timeout = 10) { run_checked(idle_main, NULL); }

/* ---------------------------------------------------------------- */
/* Ending                                                             */
/* ---------------------------------------------------------------- */

static int close_flush_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  small_bufs(p.a, 4096, 0);
  size_t n = 1 << 20;
  unsigned char *big = malloc(n);
  fill_pat(big, n, 0);
  cr_assert_eq(weft_stream_write(p.a, big, n), 0);
  cr_assert_gt(weft_stream_write_buffered(p.a), n / 2);
  free(big); /* the stream copied what it kept */
  wjob r = {.s = p.b, .pause = WEFT_MS(20)};
  weft_task *t = weft_spawn(reader_pat, &r, NULL);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(r.rc, (ssize_t)n);
  cr_assert_eq(weft_stream_close(p.b), 0);
  return 0;
}

Test(stream, close_flushes, .timeout = 10) { run_checked(close_flush_main, NULL); }

static int close_until_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  size_t n = 1 << 20;
  unsigned char *big = malloc(n);
  fill_pat(big, n, 0);
  cr_assert_eq(weft_stream_write(p.a, big, n), 0);
  free(big);
  int64_t t0 = weft_now();
  cr_assert_eq(weft_stream_close_until(p.a, t0 + WEFT_MS(50)), -ETIMEDOUT);
  int64_t el = weft_now() - t0;
  cr_assert_geq(el, WEFT_MS(50));
  cr_assert_lt(el, WEFT_MS(50) + T_SLACK);
  /* The peer sees what went before the close, then the end. */
  wjob r = {.s = p.b};
  cr_assert_eq(reader_pat(&r), 0);
  cr_assert_gt(r.rc, 0);
  cr_assert_lt(r.rc, (ssize_t)n);
  cr_assert_eq(weft_stream_close(p.b), 0);
  /* close_until with a deadline that is met, and with nothing buffered. */
  weft_stream_pair q = weft_stream_socketpair(NULL);
  cr_assert_eq(weft_stream_write(q.a, "abc", 3), 0);
  cr_assert_eq(weft_stream_close_until(q.a, weft_now() + WEFT_SEC(5)), 0);
  cr_assert_eq(weft_stream_close_until(q.b, 0), 0);
  /* An outer scope cuts the close short: -ECANCELED, and still freed. */
  q = weft_stream_socketpair(NULL);
  big = malloc(n);
  fill_pat(big, n, 0);
  cr_assert_eq(weft_stream_write(q.a, big, n), 0);
  free(big);
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(20));
  cr_assert_eq(weft_stream_close(q.a), -ECANCELED);
  cr_assert_eq(weft_scope_close(&sc), -ETIMEDOUT);
  /* An outer scope shorter than close_until's deadline: -ECANCELED. */
  weft_stream_pair q2 = weft_stream_socketpair(NULL);
  big = malloc(n);
  fill_pat(big, n, 0);
  cr_assert_eq(weft_stream_write(q2.a, big, n), 0);
  free(big);
  weft_scope_open_after(&sc, WEFT_MS(20));
  cr_assert_eq(weft_stream_close_until(q2.a, weft_now() + WEFT_SEC(5)),
               -ECANCELED);
  cr_assert_eq(weft_scope_close(&sc), -ETIMEDOUT);
  cr_assert_eq(weft_stream_close(q.b), 0);
  cr_assert_eq(weft_stream_close(q2.b), 0);
  return 0;
}

Test(stream, close_until_timeout, .timeout = 10) {
  run_checked(close_until_main, NULL);
}

/* An abort from another task cuts a slow close short; the close still
 * frees everything. */
typedef struct {
  weft_stream *s;
  int rc;
} close_job;

static int closer(void *arg) {
  close_job *c = arg;
  c->rc = weft_stream_close(c->s);
  return 0;
}

static int abort_during_close_main(void *arg) {
  (void)arg;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  size_t n = 1 << 20;
  unsigned char *big = malloc(n);
  fill_pat(big, n, 0);
  cr_assert_eq(weft_stream_write(p.a, big, n), 0);
  free(big);
  close_job c = {.s = p.a, .rc = 1};
  weft_task *t = weft_spawn(closer, &c, NULL);
  weft_sleep(WEFT_MS(5));
  cr_assert_eq(c.rc, 1); /* still flushing: the peer does not read */
  cr_assert_eq(weft_stream_close(p.a), -EBADF); /* a second close */
  cr_assert_gt(weft_stream_write_buffered(p.a), 0); /* nothing dropped */
  cr_assert_eq(weft_stream_abort(p.a), 0);
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(c.rc, -EBADF);
  /* The peer gets some bytes, then the end. */
  wjob r = {.s = p.b};
  cr_assert_eq(reader_pat(&r), 0);
  cr_assert_lt(r.rc, (ssize_t)n);
  cr_assert_eq(weft_stream_close(p.b), 0);
  return 0;
}

Test(stream, abort_during_close, .timeout = 10) {
  run_checked(abort_during_close_main, NULL);
}

static int abort_main(void *arg) {
  (void)arg;
  int a, b;
  tcp_pair(&a, &b);
  weft_stream *sa = weft_stream_open(a, NULL);
  weft_stream *sb = weft_stream_open(b, NULL);
  cr_assert_not_null(sa);
  cr_assert_not_null(sb);
  /* Buffered bytes are dropped; the peer gets a reset. */
  cr_assert_eq(weft_stream_write(sa, "hello", 5), 0);
  char buf[16];
  cr_assert_eq(weft_stream_read(sb, buf, 5), 5);
  cr_assert_eq(weft_stream_abort(sa), 0);
  cr_assert_eq(weft_stream_read(sb, buf, sizeof buf), -ECONNRESET);
  cr_assert_eq(weft_stream_close(sb), 0);
  return 0;
}

Test(stream, abort_resets, .timeout = 10) { run_checked(abort_main, NULL); }

/* Tasks waiting on a stream wake with -EBADF when it is closed or
 * aborted; they must not touch the (freed) stream after that. */
typedef struct {
  weft_stream *s;
  int what; /* 0 read, 1 readline, 2 readexactly, 3 drain */
  ssize_t rc;
  bool done;
} waiter_job;

static int waiter(void *arg) {
  waiter_job *w = arg;
  char buf[16];
  const char *d;
  switch (w->what) {
  case 0: w->rc = weft_stream_read(w->s, buf, sizeof buf); break;
  case 1: w->rc = weft_stream_readline(w->s, &d); break;
  case 2: w->rc = weft_stream_read_exactly(w->s, buf, sizeof buf); break;
  default: w->rc = weft_stream_drain(w->s); break;
  }
  w->done = true;
  return 0;
}

static int wake_badf_main(void *arg) {
  (void)arg;
  for (int how = 0; how < 2; how++) {
    for (int what = 0; what < 4; what++) {
      weft_stream_opts o = {.high_water = 1024};
      weft_stream_pair p = weft_stream_socketpair(&o);
      if (what == 2) weft_stream_write(p.b, "abc", 3); /* partial */
      if (what == 3) {
        small_bufs(p.a, 4096, 0);
        unsigned char *big = malloc(1 << 20);
        fill_pat(big, 1 << 20, 0);
        weft_stream_write(p.a, big, 1 << 20);
        free(big);
      }
      waiter_job w = {.s = p.a, .what = what};
      weft_task *t = weft_spawn(waiter, &w, NULL);
      weft_sleep(WEFT_MS(5));
      cr_assert_not(w.done);
      /* close flushes first: with a peer that never reads, until the
       * deadline (what 3). */
      int rc = how ? weft_stream_close_until(p.a, weft_now() + WEFT_MS(20))
                   : weft_stream_abort(p.a);
      cr_assert_eq(rc, how && what == 3 ? -ETIMEDOUT : 0);
      cr_assert_eq(weft_join(t), 0);
      cr_assert(w.done);
      cr_assert_eq(w.rc, -EBADF, "how %d what %d: rc %zd", how, what, w.rc);
      cr_assert_eq(weft_stream_close(p.b), 0);
    }
  }
  return 0;
}

Test(stream, waiters_wake_ebadf, .timeout = 10) {
  run_checked(wake_badf_main, NULL);
}

/* ---------------------------------------------------------------- */
/* sendfile, addresses                                                */
/* ---------------------------------------------------------------- */

static int sendfile_main(void *arg) {
  (void)arg;
  char path[] = "/tmp/weft_stream_XXXXXX";
  int f = mkostemp(path, O_CLOEXEC);
  cr_assert_geq(f, 0);
  unlink(path);
  size_t n = 300 * 1000;
  unsigned char *src = malloc(n);
  fill_pat(src, n, 0);
  cr_assert_eq(write(f, src, n), (ssize_t)n);
  weft_stream_pair p = weft_stream_socketpair(NULL);
  /* Something buffered first: it goes before the file. */
  small_bufs(p.a, 4096, 0);
  cr_assert_eq(weft_stream_write(p.a, src, 100 * 1000), 0);
  cr_assert_gt(weft_stream_write_buffered(p.a), 0);
  wjob r = {.s = p.b, .pause = WEFT_MS(10)};
  weft_task *t = weft_spawn(reader_pat, &r, NULL);
  off_t off = 100 * 1000;
  cr_assert_eq(weft_stream_sendfile(p.a, f, &off, n - 100 * 1000), 0);
  cr_assert_eq(off, (off_t)n);
  cr_assert_eq(weft_stream_write_buffered(p.a), 0);
  /* Past the end of the file: incomplete, offset where it stopped. */
  off = (off_t)n - 10;
  cr_assert_eq(weft_stream_sendfile(p.a, f, &off, 100), WEFT_EINCOMPLETE);
  cr_assert_eq(off, (off_t)n);
  cr_assert_eq(weft_stream_sendfile(p.a, f, &off, 0), 0);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_join(t), -EPROTO); /* the 10 bytes again: checked below */
  cr_assert_eq(weft_stream_close(p.b), 0);

  /* Exact bytes, with a cancellation in the middle and a resume. */
  p = weft_stream_socketpair(NULL);
  small_bufs(p.a, 4096, 0);
  small_bufs(p.b, 0, 4096);
  off = 0;
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(20));
  cr_assert_eq(weft_stream_sendfile(p.a, f, &off, n), -ECANCELED);
  weft_scope_close(&sc);
  cr_assert_gt(off, 0);
  cr_assert_lt(off, (off_t)n);
  wjob r2 = {.s = p.b};
  t = weft_spawn(reader_pat, &r2, NULL);
  cr_assert_eq(weft_stream_sendfile(p.a, f, &off, n - (size_t)off), 0);
  cr_assert_eq(off, (off_t)n);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(r2.rc, (ssize_t)n);
  /* A pipe as the file: sendfile says -EINVAL (or -ESPIPE). */
  int pfd[2];
  cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
  off = 0;
  int rc = weft_stream_sendfile(p.b, pfd[0], &off, 10);
  cr_assert(rc == -EINVAL || rc == -ESPIPE, "rc %d", rc);
  cr_assert_eq(weft_stream_sendfile(p.b, f, NULL, 10), -EINVAL);
  close(pfd[0]);
  close(pfd[1]);
  cr_assert_eq(weft_stream_close(p.b), 0);
  close(f);
  free(src);
  return 0;
}

Test(stream, sendfile, .timeout = 10) { run_checked(sendfile_main, NULL); }

static int addr_main(void *arg) {
  (void)arg;
  int a, b;
  tcp_pair(&a, &b);
  struct sockaddr_in la, pb;
  socklen_t l1 = sizeof la, l2 = sizeof pb;
  getsockname(a, (struct sockaddr *)&la, &l1);
  getpeername(b, (struct sockaddr *)&pb, &l2);
  weft_stream *sa = weft_stream_open(a, NULL);
  weft_stream *sb = weft_stream_open(b, NULL);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  cr_assert_eq(weft_stream_local_addr(sa, &ss, &len), 0);
  cr_assert_eq(len, sizeof(struct sockaddr_in));
  cr_assert_eq(((struct sockaddr_in *)&ss)->sin_port, la.sin_port);
  len = sizeof ss;
  cr_assert_eq(weft_stream_peer_addr(sb, &ss, &len), 0);
  cr_assert_eq(((struct sockaddr_in *)&ss)->sin_port, pb.sin_port);
  cr_assert_eq(((struct sockaddr_in *)&ss)->sin_addr.s_addr,
               htonl(INADDR_LOOPBACK));
  len = sizeof ss;
  cr_assert_eq(weft_stream_peer_addr(sa, &ss, &len), 0);
  cr_assert_eq(((struct sockaddr_in *)&ss)->sin_port,
               ((struct sockaddr_in *)&ss)->sin_port);
  cr_assert_eq(weft_stream_peer_addr(NULL, &ss, &len), -EINVAL);
  cr_assert_eq(weft_stream_peer_addr(sa, NULL, &len), -EINVAL);
  cr_assert_eq(weft_stream_local_addr(sa, &ss, NULL), -EINVAL);
  /* An unconnected socket: ENOTCONN. */
  int u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  weft_stream *su = weft_stream_open(u, NULL);
  len = sizeof ss;
  cr_assert_eq(weft_stream_peer_addr(su, &ss, &len), -ENOTCONN);
  cr_assert_eq(weft_stream_close(su), 0);
  cr_assert_eq(weft_stream_close(sa), 0);
  cr_assert_eq(weft_stream_close(sb), 0);
  return 0;
}

Test(stream, addresses, .timeout = 10) { run_checked(addr_main, NULL); }

/* ---------------------------------------------------------------- */
/* Held streams (server.c)                                            */
/* ---------------------------------------------------------------- */

static int held_main(void *arg) {
  (void)arg;
  /* Closed by the handler: later calls say -EBADF; release frees. */
  weft_stream_pair p = weft_stream_socketpair(NULL);
  weft__stream_hold(p.a);
  cr_assert_eq(weft_stream_write(p.a, "bye", 3), 0);
  cr_assert_eq(weft_stream_close(p.a), 0);
  char buf[8];
  const char *d;
  cr_assert_eq(weft_stream_fd(p.a), -1);
  cr_assert_eq(weft_stream_read(p.a, buf, sizeof buf), -EBADF);
  cr_assert_eq(weft_stream_read_exactly(p.a, buf, 1), -EBADF);
  cr_assert_eq(weft_stream_readline(p.a, &d), -EBADF);
  cr_assert_eq(weft_stream_write(p.a, "x", 1), -EBADF);
  cr_assert_eq(weft_stream_drain(p.a), -EBADF);
  cr_assert_eq(weft_stream_write_eof(p.a), -EBADF);
  cr_assert_eq(weft_stream_close(p.a), -EBADF);
  cr_assert_eq(weft_stream_abort(p.a), -EBADF);
  cr_assert_eq(weft_stream_read_buffered(p.a), 0);
  cr_assert_eq(weft_stream_write_buffered(p.a), 0);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  cr_assert_eq(weft_stream_local_addr(p.a, &ss, &len), -EBADF);
  cr_assert_eq(weft__stream_release(p.a), 0);
  cr_assert_eq(weft_stream_read(p.b, buf, sizeof buf), 3);
  cr_assert_eq(weft_stream_read(p.b, buf, sizeof buf), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);

  /* Not closed by the handler: release flushes and closes. */
  p = weft_stream_socketpair(NULL);
  weft__stream_hold(p.a);
  size_t n = 500 * 1000;
  unsigned char *big = malloc(n);
  fill_pat(big, n, 0);
  cr_assert_eq(weft_stream_write(p.a, big, n), 0);
  free(big);
  wjob r = {.s = p.b};
  weft_task *t = weft_spawn(reader_pat, &r, NULL);
  cr_assert_eq(weft__stream_release(p.a), 0);
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(r.rc, (ssize_t)n);
  cr_assert_eq(weft_stream_close(p.b), 0);

  /* Aborted by the handler while another task reads it: the reader wakes
   * with -EBADF, the record lives until release. */
  p = weft_stream_socketpair(NULL);
  weft__stream_hold(p.a);
  waiter_job w = {.s = p.a, .what = 1};
  t = weft_spawn(waiter, &w, NULL);
  weft_sleep(WEFT_MS(5));
  cr_assert_eq(weft_stream_abort(p.a), 0);
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(w.rc, -EBADF);
  cr_assert_eq(weft_stream_read(p.a, buf, 1), -EBADF);
  cr_assert_eq(weft__stream_release(p.a), 0);
  cr_assert_eq(weft_stream_read(p.b, buf, 1), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);
  cr_assert_eq(weft__stream_release(NULL), -EINVAL);
  weft__stream_hold(NULL);
  return 0;
}

Test(stream, held, .timeout = 10) { run_checked(held_main, NULL); }

/* ---------------------------------------------------------------- */
/* Bad input, wrong thread, outside a task                            */
/* ---------------------------------------------------------------- */

static int badinput_main(void *arg) {
  (void)arg;
  char buf[4];
  const char *d;
  off_t off = 0;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  cr_assert_eq(weft_stream_read(NULL, buf, 1), -EINVAL);
  cr_assert_eq(weft_stream_read_exactly(NULL, buf, 1), -EINVAL);
  cr_assert_eq(weft_stream_readline(NULL, &d), -EINVAL);
  cr_assert_eq(weft_stream_readuntil(NULL, "x", 1, &d), -EINVAL);
  weft_bytes sep = {"x", 1};
  cr_assert_eq(weft_stream_readuntil_any(NULL, &sep, 1, &d), -EINVAL);
  cr_assert_eq(weft_stream_write(NULL, "x", 1), -EINVAL);
  cr_assert_eq(weft_stream_writev(NULL, NULL, 0), -EINVAL);
  cr_assert_eq(weft_stream_drain(NULL), -EINVAL);
  cr_assert_eq(weft_stream_sendfile(NULL, 0, &off, 1), -EINVAL);
  cr_assert_eq(weft_stream_write_eof(NULL), -EINVAL);
  cr_assert_eq(weft_stream_close(NULL), -EINVAL);
  cr_assert_eq(weft_stream_close_until(NULL, 0), -EINVAL);
  cr_assert_eq(weft_stream_abort(NULL), -EINVAL);
  cr_assert_eq(weft_stream_local_addr(NULL, &ss, &len), -EINVAL);
  cr_assert_eq(weft_stream_fd(NULL), -1);
  cr_assert_not(weft_stream_at_eof(NULL));
  cr_assert_eq(weft_stream_read_buffered(NULL), 0);
  cr_assert_eq(weft_stream_write_buffered(NULL), 0);
  errno = 0;
  cr_assert_null(weft_stream_open(-1, NULL));
  cr_assert_eq(errno, EBADF);
  /* low > high: EINVAL, and the fd is closed all the same. */
  int pfd[2];
  cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
  weft_stream_opts bad = {.high_water = 100, .low_water = 200};
  errno = 0;
  cr_assert_null(weft_stream_open(pfd[0], &bad));
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(fcntl(pfd[0], F_GETFD), -1);
  close(pfd[1]);
  weft_stream_pair p = weft_stream_socketpair(&bad);
  cr_assert_null(p.a);
  cr_assert_null(p.b);
  cr_assert_eq(errno, EINVAL);
  /* Arguments on a good stream. */
  p = weft_stream_socketpair(NULL);
  cr_assert_eq(weft_stream_read(p.a, NULL, 1), -EINVAL);
  cr_assert_eq(weft_stream_read_exactly(p.a, NULL, 1), -EINVAL);
  cr_assert_eq(weft_stream_write(p.a, NULL, 1), -EINVAL);
  cr_assert_eq(weft_stream_write(p.a, NULL, 0), 0);
  cr_assert_eq(weft_stream_writev(p.a, NULL, 1), -EINVAL);
  cr_assert_eq(weft_stream_writev(p.a, NULL, -1), -EINVAL);
  struct iovec v = {NULL, 0};
  cr_assert_eq(weft_stream_writev(p.a, &v, IOV_MAX + 1), -EINVAL);
  struct iovec vb = {NULL, 5};
  cr_assert_eq(weft_stream_writev(p.a, &vb, 1), -EINVAL);
  cr_assert_eq(weft_stream_sendfile(p.a, -1, &off, 1), -EINVAL);
  /* A tty-like fd that is neither socket nor pipe: write_eof refuses. */
  int dn = open("/dev/null", O_RDWR | O_CLOEXEC);
  weft_stream *sn = weft_stream_open(dn, NULL);
  cr_assert_not_null(sn);
  cr_assert_eq(weft_stream_write_eof(sn), -ENOTSOCK);
  cr_assert_eq(weft_stream_close(sn), 0);
  cr_assert_eq(weft_stream_close(p.a), 0);
  cr_assert_eq(weft_stream_close(p.b), 0);
  return 0;
}

Test(stream, bad_input, .timeout = 10) { run_checked(badinput_main, NULL); }

Test(stream, no_loop, .timeout = 10) {
  int before = count_fds();
  int pfd[2];
  cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
  errno = 0;
  cr_assert_null(weft_stream_open(pfd[0], NULL));
  cr_assert_eq(errno, EPERM);
  cr_assert_eq(fcntl(pfd[0], F_GETFD), -1); /* closed all the same */
  close(pfd[1]);
  errno = 0;
  weft_stream_pair p = weft_stream_socketpair(NULL);
  cr_assert_null(p.a);
  cr_assert_null(p.b);
  cr_assert_eq(errno, EPERM);
  cr_assert_eq(count_fds(), before);
}

/* Between runner calls the thread has a loop but no task; another thread
 * has neither. */
typedef struct {
  weft_stream_pair p;
  int rc[16];
} rstate;

static int runner_open(void *arg) {
  rstate *r = arg;
  r->p = weft_stream_socketpair(NULL);
  return r->p.a ? 0 : -errno;
}

static void *other_thread(void *arg) {
  rstate *r = arg;
  char buf[4];
  const char *d;
  r->rc[0] = (int)weft_stream_read(r->p.a, buf, 1);
  r->rc[1] = weft_stream_write(r->p.a, "x", 1);
  r->rc[2] = (int)weft_stream_readline(r->p.a, &d);
  r->rc[3] = weft_stream_drain(r->p.a);
  r->rc[4] = weft_stream_close(r->p.a);
  r->rc[5] = weft_stream_abort(r->p.a);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  r->rc[6] = weft_stream_peer_addr(r->p.a, &ss, &len);
  r->rc[7] = weft_stream_write_eof(r->p.a);
  return NULL;
}

static int runner_read(void *arg) {
  rstate *r = arg;
  char buf[8] = {0};
  ssize_t n = weft_stream_read(r->p.b, buf, sizeof buf);
  return n == 2 && !memcmp(buf, "hi", 2) ? 0 : -EPROTO;
}

Test(stream, outside_task_and_thread, .timeout = 10) {
  int before = count_fds();
  rstate r = {0};
  weft_runner *rn = weft_runner_open(NULL);
  cr_assert_not_null(rn);
  cr_assert_eq(weft_runner_run(rn, runner_open, &r), 0);
  char buf[4];
  const char *d;
  off_t off = 0;
  /* No task: the waiting calls refuse; write works (it never waits). */
  cr_assert_eq(weft_stream_read(r.p.b, buf, 1), WEFT_ENOTASK);
  cr_assert_eq(weft_stream_read_exactly(r.p.b, buf, 1), WEFT_ENOTASK);
  cr_assert_eq(weft_stream_readline(r.p.b, &d), WEFT_ENOTASK);
  cr_assert_eq(weft_stream_readuntil(r.p.b, "x", 1, &d), WEFT_ENOTASK);
  cr_assert_eq(weft_stream_drain(r.p.a), WEFT_ENOTASK);
  cr_assert_eq(weft_stream_write_eof(r.p.a), WEFT_ENOTASK);
  cr_assert_eq(weft_stream_sendfile(r.p.a, 0, &off, 1), WEFT_ENOTASK);
  cr_assert_eq(weft_stream_write(r.p.a, "hi", 2), 0);
  /* Another thread: WEFT_ELOOP for everything, nothing freed. */
  pthread_t th;
  pthread_create(&th, NULL, other_thread, &r);
  pthread_join(th, NULL);
  for (int i = 0; i < 8; i++)
    cr_assert_eq(r.rc[i], WEFT_ELOOP, "call %d: %d", i, r.rc[i]);
  cr_assert_eq(weft_runner_run(rn, runner_read, &r), 0);
  /* close outside a task flushes what goes at once. */
  cr_assert_eq(weft_stream_write(r.p.a, "end", 3), 0);
  cr_assert_eq(weft_stream_close(r.p.a), 0);
  cr_assert_eq(weft_stream_abort(r.p.b), 0);
  cr_assert_eq(weft_runner_close(rn), 0);
  cr_assert_eq(count_fds(), before);
}

/* ---------------------------------------------------------------- */
/* Interop with a real peer: Python's socket module                   */
/* ---------------------------------------------------------------- */

static const char py_client[] =
    "import socket, sys\n"
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
    "s.sendall(b'hello\\nwor')\n"
    "import time; time.sleep(0.02)\n"
    "s.sendall(b'ld\\n' + b'x' * 100000 + b'\\n')\n"
    "s.shutdown(socket.SHUT_WR)\n"
    "f = s.makefile('rb')\n"
    "a = f.readline(); b = f.readline(); c = f.readline(); rest = f.read()\n"
    "ok = (a == b'HELLO\\n' and b == b'WORLD\\n' and c == b'100001\\n'\n"
    "      and rest == b'')\n"
    "sys.exit(0 if ok else 3)\n";

typedef struct {
  int lfd;
  int rc;
} py_job;

static int py_server(void *arg) {
  py_job *j = arg;
  int c;
  while ((c = accept4(j->lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
    if (errno != EAGAIN) return -errno;
    int rc = weft_wait_fd(j->lfd, WEFT_READABLE);
    if (rc < 0) return rc;
  }
  weft_stream_opts o = {.limit = 200000};
  weft_stream *s = weft_stream_open(c, &o);
  if (!s) return -errno;
  const char *d;
  ssize_t n;
  int lines = 0;
  while ((n = weft_stream_readline(s, &d)) > 0) {
    char out[32];
    if (lines < 2) {
      for (ssize_t i = 0; i < n && i < 31; i++)
        out[i] = (char)(d[i] >= 'a' && d[i] <= 'z' ? d[i] - 32 : d[i]);
      weft_stream_write(s, out, (size_t)n);
    } else {
      int k = snprintf(out, sizeof out, "%zd\n", n);
      weft_stream_write(s, out, (size_t)k);
    }
    lines++;
  }
  int rc = (int)n;
  int cr = weft_stream_close(s);
  return rc ? rc : lines == 3 ? cr : -EPROTO;
}

static int py_main(void *arg) {
  py_job *j = arg;
  weft_task *t = weft_spawn(py_server, j, NULL);
  return weft_join(t);
}

Test(stream, python_interop, .timeout = 20) {
  if (system("python3 -c 'import socket' >/dev/null 2>&1") != 0)
    cr_skip_test("no python3");
  int before = count_fds();
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(listen(l, 1), 0);
  socklen_t len = sizeof sa;
  getsockname(l, (struct sockaddr *)&sa, &len);
  char port[16];
  snprintf(port, sizeof port, "%d", ntohs(sa.sin_port));
  char *argv[] = {"python3", "-c", (char *)py_client, port, NULL};
  pid_t pid;
  cr_assert_eq(posix_spawnp(&pid, "python3", NULL, NULL, argv, environ), 0);
  py_job j = {.lfd = l};
  int rc = weft_run(py_main, &j);
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  close(l);
  cr_assert_eq(rc, 0, "server: %d", rc);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "python status %d", st);
  cr_assert_eq(count_fds(), before);
}
