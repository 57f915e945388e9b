/*
 * test_tcp.c -- name resolution, address formatting and outgoing
 * connections (weft_getaddrinfo, weft_addr_format, weft_tcp_connect,
 * weft_unix_connect), against peers weft did not write: python3 and
 * socat on loopback, and plain sockets. Happy Eyeballs is checked on the
 * race itself (weft__he_connect) with a listener whose backlog is full
 * (its SYNs go unanswered) ahead of one that answers. Every test checks
 * that no fd is left open.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "helpers.h"
#include "io/sock.h"

extern char **environ;

/* ---- fds and peers -------------------------------------------------- */

/* A child process with its stdout on a pipe (and stdin on another if
 * in_fd is not NULL). */
typedef struct peer {
  pid_t pid;
  int out; /* read end of its stdout */
  int in;  /* write end of its stdin, or -1 */
} peer;

static peer peer_start(const char *cmd, bool with_stdin) {
  int po[2], pi[2] = {-1, -1};
  cr_assert_eq(pipe2(po, O_CLOEXEC), 0);
  if (with_stdin) cr_assert_eq(pipe2(pi, O_CLOEXEC), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, po[1], 1);
  if (with_stdin) posix_spawn_file_actions_adddup2(&fa, pi[0], 0);
  char *argv[] = {"sh", "-c", (char *)cmd, NULL};
  peer p = {.pid = -1, .out = po[0], .in = pi[1]};
  cr_assert_eq(posix_spawn(&p.pid, "/bin/sh", &fa, NULL, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  close(po[1]);
  if (with_stdin) close(pi[0]);
  return p;
}

/* Reads a line (the port a server prints) with a 10 s limit, blocking. */
static int peer_read_int(peer *p) {
  char buf[64];
  size_t n = 0;
  while (n + 1 < sizeof buf) {
    struct pollfd pf = {.fd = p->out, .events = POLLIN};
    if (poll(&pf, 1, 10000) <= 0) break;
    ssize_t r = read(p->out, buf + n, 1);
    if (r <= 0 || buf[n] == '\n') break;
    n++;
  }
  buf[n] = 0;
  return atoi(buf);
}

static int peer_stop(peer *p) {
  if (p->in >= 0) close(p->in);
  close(p->out);
  kill(p->pid, SIGTERM);
  int st = 0;
  waitpid(p->pid, &st, 0);
  return st;
}

/* python3 echo server on 127.0.0.1 (or host), one thread per client;
 * prints its port. */
static peer python_echo_server(const char *host) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "exec python3 -u -c '\n"
           "import socket, threading\n"
           "fam = socket.AF_INET6 if \":\" in \"%s\" else socket.AF_INET\n"
           "s = socket.socket(fam, socket.SOCK_STREAM)\n"
           "s.bind((\"%s\", 0)); s.listen(16)\n"
           "print(s.getsockname()[1], flush=True)\n"
           "def echo(c):\n"
           "    while True:\n"
           "        d = c.recv(65536)\n"
           "        if not d: break\n"
           "        c.sendall(d)\n"
           "    c.close()\n"
           "while True:\n"
           "    c, _ = s.accept()\n"
           "    threading.Thread(target=echo, args=(c,), daemon=True).start()\n"
           "'",
           host, host);
  return peer_start(cmd, false);
}

/* A port nobody listens on: bound, then closed. */
static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  getsockname(fd, (struct sockaddr *)&a, &len);
  close(fd);
  return ntohs(a.sin_port);
}

/* A plain listening socket on 127.0.0.1 (or ::1): the fd; its port in *port. */
static int plain_listener(int family, int backlog, int *port) {
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_storage ss = {0};
  socklen_t len;
  if (family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof *a;
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    len = sizeof *a;
  }
  if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0) {
    close(fd);
    return -1;
  }
  len = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &len);
  *port = family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                            : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return fd;
}

/* A listener on 127.0.0.1 that answers no more SYNs: backlog 0, and its
 * accept queue filled by connections nobody accepts. fills[] gets the
 * filling client fds (*nfill of them). */
static int full_listener(int *port, int *fills, int *nfill) {
  int lfd = plain_listener(AF_INET, 0, port);
  cr_assert_geq(lfd, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)*port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  *nfill = 0;
  for (int i = 0; i < 8; i++) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    fills[(*nfill)++] = c;
    connect(c, (struct sockaddr *)&a, sizeof a);
    struct pollfd pf = {.fd = c, .events = POLLOUT};
    if (poll(&pf, 1, 200) == 0) return lfd; /* this one hangs: full */
  }
  cr_assert_fail("could not fill the listener's backlog");
  return -1;
}

static void close_all(int *fds, int n) {
  for (int i = 0; i < n; i++) close(fds[i]);
}

/* ---- resolution and formatting --------------------------------------- */

typedef struct rstate {
  int rc[16];
  char text[8][128];
} rstate;

static int resolve_one(void *arg) {
  int *rc = arg;
  struct addrinfo *res = NULL;
  *rc = weft_getaddrinfo("localhost", "80", NULL, &res);
  if (*rc == 0) freeaddrinfo(res);
  return 0;
}

static int resolve_main(void *arg) {
  rstate *s = arg;
  struct addrinfo *res = NULL;
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
  s->rc[0] = weft_getaddrinfo("127.0.0.1", "8080", &hints, &res);
  if (!s->rc[0]) {
    weft_addr_format(res->ai_addr, res->ai_addrlen, s->text[0], 128);
    freeaddrinfo(res);
  }
  s->rc[1] = weft_getaddrinfo("::1", "80", &hints, &res);
  if (!s->rc[1]) {
    weft_addr_format(res->ai_addr, res->ai_addrlen, s->text[1], 128);
    freeaddrinfo(res);
  }
  s->rc[2] = weft_getaddrinfo("localhost", "http", &hints, &res); /* the pool */
  if (!s->rc[2]) {
    weft_addr_format(res->ai_addr, res->ai_addrlen, s->text[2], 128);
    freeaddrinfo(res);
  }
  s->rc[3] = weft_getaddrinfo("host.invalid", "80", &hints, &res);
  s->rc[4] = weft_getaddrinfo(NULL, NULL, &hints, &res);
  s->rc[5] = weft_getaddrinfo("127.0.0.1", "80", &hints, NULL);
  s->rc[6] = weft_getaddrinfo("127.0.0.1", "no-such-service-xyz", &hints, &res);
  struct addrinfo bad = {.ai_family = 12345};
  s->rc[7] = weft_getaddrinfo("localhost", "80", &bad, &res);
  /* Cancelled while the pool resolves: -ECANCELED at once, the result
   * is freed by the cleanup (ASan's leak check would see it). */
  weft_scope sc;
  weft_scope_open(&sc, WEFT_FOREVER);
  weft_scope_cancel(&sc);
  s->rc[8] = weft_getaddrinfo("localhost", "80", &hints, &res);
  weft_scope_close(&sc);
  /* A deadline that has passed: cut short at the next loop turn, unless
   * the pool answered first (both are right). */
  res = NULL;
  weft_scope_open_after(&sc, 0);
  s->rc[9] = weft_getaddrinfo("localhost", "80", &hints, &res);
  weft_scope_close(&sc);
  if (s->rc[9] == 0) freeaddrinfo(res);
  /* Cancelled while its job is on the pool: the cleanup frees the
   * result (ASan's leak check would see it otherwise). */
  for (int i = 0; i < 3; i++) {
    weft_task *t = weft_spawn(resolve_one, &s->rc[10], NULL);
    weft_yield(); /* it submits its job and waits */
    weft_cancel(t);
    weft_join(t);
    if (s->rc[10] != -ECANCELED) break;
  }
  return 0;
}

Test(tcp, getaddrinfo, .timeout = 20) {
  int fds = count_fds();
  rstate s = {0};
  cr_assert_eq(weft_run(resolve_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_str_eq(s.text[0], "127.0.0.1:8080");
  cr_assert_eq(s.rc[1], 0);
  cr_assert_str_eq(s.text[1], "[::1]:80");
  cr_assert_eq(s.rc[2], 0, "localhost: %s", weft_strerror(s.rc[2]));
  cr_assert(strstr(s.text[2], ":80"), "%s", s.text[2]);
  cr_assert_eq(s.rc[3], -ENXIO);
  cr_assert_eq(s.rc[4], -EINVAL);
  cr_assert_eq(s.rc[5], -EINVAL);
  cr_assert_eq(s.rc[6], -EINVAL, "%d", s.rc[6]);
  cr_assert_eq(s.rc[7], -EAFNOSUPPORT, "%d", s.rc[7]);
  cr_assert_eq(s.rc[8], -ECANCELED);
  cr_assert(s.rc[9] == -ECANCELED || s.rc[9] == 0, "%d", s.rc[9]);
  cr_assert_eq(s.rc[10], -ECANCELED);
  /* Outside a task. */
  struct addrinfo *res;
  cr_assert_eq(weft_getaddrinfo("127.0.0.1", "80", NULL, &res), WEFT_ENOTASK);
  cr_assert_eq(count_fds(), fds);
}

Test(tcp, addr_format, .timeout = 10) {
  char buf[128];
  struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(8080)};
  inet_pton(AF_INET, "10.1.2.3", &in.sin_addr);
  cr_assert_eq(weft_addr_format((struct sockaddr *)&in, sizeof in, buf, sizeof buf), 13);
  cr_assert_str_eq(buf, "10.1.2.3:8080");
  /* Truncation, as snprintf. */
  cr_assert_eq(weft_addr_format((struct sockaddr *)&in, sizeof in, buf, 5), 13);
  cr_assert_str_eq(buf, "10.1");
  struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
  inet_pton(AF_INET6, "2001:db8::1", &in6.sin6_addr);
  weft_addr_format((struct sockaddr *)&in6, sizeof in6, buf, sizeof buf);
  cr_assert_str_eq(buf, "[2001:db8::1]:443");
  struct sockaddr_un un;
  socklen_t len;
  cr_assert_eq(weft__unix_addr("/tmp/x.sock", &un, &len), 0);
  weft_addr_format((struct sockaddr *)&un, len, buf, sizeof buf);
  cr_assert_str_eq(buf, "/tmp/x.sock");
  cr_assert_eq(weft__unix_addr("@abs", &un, &len), 0);
  cr_assert_eq(len, offsetof(struct sockaddr_un, sun_path) + 4);
  weft_addr_format((struct sockaddr *)&un, len, buf, sizeof buf);
  cr_assert_str_eq(buf, "@abs");
  weft_addr_format((struct sockaddr *)&un, sizeof(sa_family_t), buf, sizeof buf);
  cr_assert_str_eq(buf, "unix:");
  char longp[200];
  memset(longp, 'a', sizeof longp - 1);
  longp[sizeof longp - 1] = 0;
  cr_assert_eq(weft__unix_addr(longp, &un, &len), -ENAMETOOLONG);
  struct sockaddr bad = {.sa_family = AF_APPLETALK};
  cr_assert_eq(weft_addr_format(&bad, sizeof bad, buf, sizeof buf), -EAFNOSUPPORT);
  cr_assert_eq(weft_addr_format(NULL, 0, buf, sizeof buf), -EINVAL);
  cr_assert_eq(weft_addr_format((struct sockaddr *)&in, 2, buf, sizeof buf), -EINVAL);
}

Test(tcp, he_order, .timeout = 10) {
  /* 6a 6b 4a 4b 6c -> 6a 4a 6b 4b 6c; 4 first -> 4 6 4 6 ... */
  struct addrinfo ai[5] = {0};
  int fam[5] = {AF_INET6, AF_INET6, AF_INET, AF_INET, AF_INET6};
  for (int i = 0; i < 5; i++) {
    ai[i].ai_family = fam[i];
    ai[i].ai_next = i < 4 ? &ai[i + 1] : NULL;
  }
  const struct addrinfo *out[5];
  cr_assert_eq(weft__he_order(ai, out, 5), 5);
  const struct addrinfo *want[5] = {&ai[0], &ai[2], &ai[1], &ai[3], &ai[4]};
  for (int i = 0; i < 5; i++) cr_assert_eq(out[i], want[i], "slot %d", i);
  /* Starting with IPv4. */
  const struct addrinfo *o2[4];
  cr_assert_eq(weft__he_order(&ai[2], o2, 4), 3);
  cr_assert_eq(o2[0], &ai[2]);
  cr_assert_eq(o2[1], &ai[4]);
  cr_assert_eq(o2[2], &ai[3]);
  cr_assert_eq(weft__he_order(NULL, o2, 4), 0);
}

/* ---- connecting ------------------------------------------------------ */

typedef struct cstate {
  const char *host;
  int port;
  weft_connect_opts o;
  int rc[8];
  int err;
  char got[256];
  int64_t elapsed;
  int64_t cancel_after;
  weft_scope *sc;
} cstate;

static int exchange(weft_stream *s, const char *msg, char *got, size_t cap) {
  size_t n = strlen(msg);
  int rc = weft_stream_write(s, msg, n);
  if (rc) return rc;
  rc = weft_stream_read_exactly(s, got, n);
  if (rc) return rc;
  got[n < cap ? n : cap - 1] = 0;
  return 0;
}

static int connect_main(void *arg) {
  cstate *s = arg;
  int64_t t0 = weft_now();
  weft_stream *st = weft_tcp_connect(s->host, s->port, &s->o);
  s->elapsed = weft_now() - t0;
  if (!st) {
    s->err = errno;
    return 0;
  }
  s->rc[0] = exchange(st, "hello, weft\n", s->got, sizeof s->got);
  /* TCP_NODELAY is on by default. */
  int v = 0;
  socklen_t len = sizeof v;
  getsockopt(weft_stream_fd(st), IPPROTO_TCP, TCP_NODELAY, &v, &len);
  s->rc[1] = v;
  s->rc[2] = weft_stream_close(st);
  return 0;
}

Test(tcp, connect_python_echo, .timeout = 30) {
  int fds = count_fds();
  peer p = python_echo_server("127.0.0.1");
  int port = peer_read_int(&p);
  cr_assert_gt(port, 0);
  int mid = count_fds();
  cstate s = {.host = "127.0.0.1", .port = port};
  cr_assert_eq(weft_run(connect_main, &s), 0);
  cr_assert_eq(s.err, 0, "connect: %s", strerror(s.err));
  cr_assert_eq(s.rc[0], 0, "%s", weft_strerror(s.rc[0]));
  cr_assert_str_eq(s.got, "hello, weft\n");
  cr_assert_eq(s.rc[1], 1);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(count_fds(), mid);
  peer_stop(&p);
  cr_assert_eq(count_fds(), fds);
}

Test(tcp, connect_localhost, .timeout = 30) {
  peer p = python_echo_server("127.0.0.1");
  int port = peer_read_int(&p);
  int fds = count_fds();
  /* Whatever localhost gives (::1 may come first and be refused: the
   * next address is tried at once). */
  cstate s = {.host = "localhost", .port = port};
  cr_assert_eq(weft_run(connect_main, &s), 0);
  cr_assert_eq(s.err, 0, "connect: %s", strerror(s.err));
  cr_assert_str_eq(s.got, "hello, weft\n");
  cr_assert_eq(count_fds(), fds);
  peer_stop(&p);
}

Test(tcp, connect_ipv6, .timeout = 30) {
  int port;
  int probe = plain_listener(AF_INET6, 1, &port);
  if (probe < 0) cr_skip_test("no IPv6 on lo");
  close(probe);
  peer p = python_echo_server("::1");
  port = peer_read_int(&p);
  cr_assert_gt(port, 0);
  int fds = count_fds();
  cstate s = {.host = "::1", .port = port};
  cr_assert_eq(weft_run(connect_main, &s), 0);
  cr_assert_eq(s.err, 0, "connect: %s", strerror(s.err));
  cr_assert_str_eq(s.got, "hello, weft\n");
  /* family AF_INET for an IPv6 literal: nothing to connect to. */
  cstate s2 = {.host = "::1", .port = port, .o = {.family = AF_INET}};
  cr_assert_eq(weft_run(connect_main, &s2), 0);
  cr_assert_neq(s2.err, 0);
  cr_assert_eq(count_fds(), fds);
  peer_stop(&p);
}

Test(tcp, connect_refused, .timeout = 10) {
  int fds = count_fds();
  cstate s = {.host = "127.0.0.1", .port = free_port()};
  cr_assert_eq(weft_run(connect_main, &s), 0);
  cr_assert_eq(s.err, ECONNREFUSED, "%s", strerror(s.err));
  cr_assert_eq(count_fds(), fds);
}

Test(tcp, connect_unresolvable, .timeout = 10) {
  int fds = count_fds();
  cstate s = {.host = "host.invalid", .port = 80};
  cr_assert_eq(weft_run(connect_main, &s), 0);
  cr_assert_eq(s.err, ENXIO, "%s", strerror(s.err));
  cr_assert_lt(s.elapsed, T_SLACK);
  cr_assert_eq(count_fds(), fds);
}

static int connect_bad_main(void *arg) {
  int *rc = arg;
  errno = 0;
  rc[0] = weft_tcp_connect(NULL, 80, NULL) ? 0 : errno;
  rc[1] = weft_tcp_connect("127.0.0.1", 0, NULL) ? 0 : errno;
  rc[2] = weft_tcp_connect("127.0.0.1", 65536, NULL) ? 0 : errno;
  weft_connect_opts o = {.family = AF_UNIX};
  rc[3] = weft_tcp_connect("127.0.0.1", 80, &o) ? 0 : errno;
  rc[4] = weft_unix_connect(NULL, NULL) ? 0 : errno;
  rc[5] = weft_unix_connect("", NULL) ? 0 : errno;
  rc[6] = weft_unix_connect("/nonexistent/dir/sock", NULL) ? 0 : errno;
  return 0;
}

Test(tcp, connect_bad_input, .timeout = 10) {
  int fds = count_fds();
  int rc[8] = {0};
  cr_assert_eq(weft_run(connect_bad_main, rc), 0);
  cr_assert_eq(rc[0], EINVAL);
  cr_assert_eq(rc[1], EINVAL);
  cr_assert_eq(rc[2], EINVAL);
  cr_assert_eq(rc[3], EINVAL);
  cr_assert_eq(rc[4], EINVAL);
  cr_assert_eq(rc[5], EINVAL);
  cr_assert_eq(rc[6], ENOENT);
  errno = 0;
  cr_assert_null(weft_tcp_connect("127.0.0.1", 80, NULL));
  cr_assert_eq(errno, EPERM);
  errno = 0;
  cr_assert_null(weft_unix_connect("/tmp/x", NULL));
  cr_assert_eq(errno, EPERM);
  cr_assert_eq(count_fds(), fds);
}

/* Happy Eyeballs: the first address never answers (a full backlog), the
 * second does: connected after about the delay. */
typedef struct hestate {
  struct addrinfo *list;
  int64_t delay;
  int fd;
  int64_t elapsed;
} hestate;

static int he_main(void *arg) {
  hestate *s = arg;
  int64_t t0 = weft_now();
  s->fd = weft__he_connect(s->list, s->delay, NULL);
  s->elapsed = weft_now() - t0;
  return 0;
}

static void ai_loopback(struct addrinfo *ai, struct sockaddr_in *sa, int port) {
  *sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  *ai = (struct addrinfo){.ai_family = AF_INET, .ai_socktype = SOCK_STREAM,
                          .ai_addr = (struct sockaddr *)sa, .ai_addrlen = sizeof *sa};
}

Test(tcp, happy_eyeballs_race, .timeout = 20) {
  int fills[8], nfill, port_dead, port_ok;
  int dead = full_listener(&port_dead, fills, &nfill);
  int ok = plain_listener(AF_INET, 16, &port_ok);
  int fds = count_fds();
  struct sockaddr_in sa[3];
  struct addrinfo ai[3];
  ai_loopback(&ai[0], &sa[0], port_dead);
  ai_loopback(&ai[1], &sa[1], port_ok);
  ai[0].ai_next = &ai[1];
  hestate s = {.list = ai, .delay = WEFT_MS(100)};
  cr_assert_eq(weft_run(he_main, &s), 0);
  cr_assert_geq(s.fd, 0, "%s", weft_strerror(s.fd));
  struct sockaddr_in peer;
  socklen_t len = sizeof peer;
  getpeername(s.fd, (struct sockaddr *)&peer, &len);
  cr_assert_eq(ntohs(peer.sin_port), port_ok);
  cr_assert_geq(s.elapsed, WEFT_MS(100));
  cr_assert_lt(s.elapsed, WEFT_MS(100) + T_SLACK);
  close(s.fd);
  cr_assert_eq(count_fds(), fds); /* the losing attempt's fd is closed */
  /* A refused first address: the second is tried at once, not after
   * the delay. */
  ai_loopback(&ai[2], &sa[2], free_port());
  ai[2].ai_next = &ai[1];
  s = (hestate){.list = &ai[2], .delay = WEFT_SEC(5)};
  cr_assert_eq(weft_run(he_main, &s), 0);
  cr_assert_geq(s.fd, 0, "%s", weft_strerror(s.fd));
  cr_assert_lt(s.elapsed, WEFT_SEC(2));
  close(s.fd);
  /* delay < 0: one after another; all refused: the last error. */
  ai_loopback(&ai[0], &sa[0], free_port());
  ai[0].ai_next = &ai[2];
  ai[2].ai_next = NULL;
  s = (hestate){.list = ai, .delay = -1};
  cr_assert_eq(weft_run(he_main, &s), 0);
  cr_assert_eq(s.fd, -ECONNREFUSED);
  cr_assert_eq(count_fds(), fds);
  close(ok);
  close(dead);
  close_all(fills, nfill);
}

Test(tcp, connect_timeout, .timeout = 20) {
  int fills[8], nfill, port;
  int dead = full_listener(&port, fills, &nfill);
  int fds = count_fds();
  cstate s = {.host = "127.0.0.1", .port = port, .o = {.timeout = WEFT_MS(200)}};
  cr_assert_eq(weft_run(connect_main, &s), 0);
  cr_assert_eq(s.err, ETIMEDOUT, "%s", strerror(s.err));
  cr_assert_geq(s.elapsed, WEFT_MS(200));
  cr_assert_lt(s.elapsed, WEFT_MS(200) + T_SLACK);
  cr_assert_eq(count_fds(), fds);
  close(dead);
  close_all(fills, nfill);
}

static int cancel_connect_main(void *arg) {
  cstate *s = arg;
  weft_scope sc;
  weft_scope_open_after(&sc, s->cancel_after);
  int64_t t0 = weft_now();
  weft_stream *st = weft_tcp_connect(s->host, s->port, &s->o);
  s->err = st ? 0 : errno;
  s->elapsed = weft_now() - t0;
  s->rc[0] = weft_scope_close(&sc);
  if (st) weft_stream_close(st);
  return 0;
}

Test(tcp, connect_cancelled, .timeout = 20) {
  int fills[8], nfill, port;
  int dead = full_listener(&port, fills, &nfill);
  int fds = count_fds();
  cstate s = {.host = "127.0.0.1", .port = port, .cancel_after = WEFT_MS(100)};
  cr_assert_eq(weft_run(cancel_connect_main, &s), 0);
  cr_assert_eq(s.err, ECANCELED, "%s", strerror(s.err));
  cr_assert_eq(s.rc[0], -ETIMEDOUT); /* the scope's deadline cut it short */
  cr_assert_lt(s.elapsed, T_SLACK);
  cr_assert_eq(count_fds(), fds);
  close(dead);
  close_all(fills, nfill);
}

/* Local bind: the server sees the port we bound. */
typedef struct lbstate {
  int lfd, port, local_port;
  int err;
  int seen_port;
} lbstate;

static int local_bind_main(void *arg) {
  lbstate *s = arg;
  weft_connect_opts o = {.local_host = "127.0.0.1", .local_port = s->local_port,
                         .nagle = true, .keepalive = 30};
  weft_stream *st = weft_tcp_connect("127.0.0.1", s->port, &o);
  if (!st) {
    s->err = errno;
    return 0;
  }
  struct sockaddr_in peer;
  socklen_t len = sizeof peer;
  int c = accept(s->lfd, (struct sockaddr *)&peer, &len);
  s->seen_port = ntohs(peer.sin_port);
  close(c);
  int v = -1;
  len = sizeof v;
  getsockopt(weft_stream_fd(st), IPPROTO_TCP, TCP_NODELAY, &v, &len);
  if (v != 0) s->err = -1; /* nagle: left on */
  getsockopt(weft_stream_fd(st), SOL_SOCKET, SO_KEEPALIVE, &v, &len);
  if (v != 1) s->err = -2;
  getsockopt(weft_stream_fd(st), IPPROTO_TCP, TCP_KEEPIDLE, &v, &len);
  if (v != 30) s->err = -3;
  weft_stream_close(st);
  return 0;
}

Test(tcp, connect_local_bind, .timeout = 10) {
  lbstate s = {.local_port = free_port()};
  s.lfd = plain_listener(AF_INET, 4, &s.port);
  int fds = count_fds();
  cr_assert_eq(weft_run(local_bind_main, &s), 0);
  cr_assert_eq(s.err, 0, "%d", s.err);
  cr_assert_eq(s.seen_port, s.local_port);
  cr_assert_eq(count_fds(), fds);
  close(s.lfd);
}

/* ---- Unix sockets ----------------------------------------------------- */

typedef struct ustate {
  const char *path;
  int err;
  int rc;
  char got[64];
} ustate;

static int unix_main(void *arg) {
  ustate *s = arg;
  weft_stream *st = weft_unix_connect(s->path, NULL);
  if (!st) {
    s->err = errno;
    return 0;
  }
  s->rc = exchange(st, "over unix\n", s->got, sizeof s->got);
  weft_stream_close(st);
  return 0;
}

Test(tcp, unix_connect_socat, .timeout = 20) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/weft-tcp-%d.sock", (int)getpid());
  unlink(path);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "exec socat UNIX-LISTEN:%s EXEC:cat", path);
  peer p = peer_start(cmd, false);
  struct stat st;
  for (int i = 0; i < 500 && stat(path, &st) != 0; i++) usleep(10000);
  int fds = count_fds();
  ustate s = {.path = path};
  cr_assert_eq(weft_run(unix_main, &s), 0);
  cr_assert_eq(s.err, 0, "%s", strerror(s.err));
  cr_assert_eq(s.rc, 0);
  cr_assert_str_eq(s.got, "over unix\n");
  cr_assert_eq(count_fds(), fds);
  peer_stop(&p);
  unlink(path);
  /* Nobody there any more. */
  s = (ustate){.path = path};
  cr_assert_eq(weft_run(unix_main, &s), 0);
  cr_assert_eq(s.err, ENOENT);
}

Test(tcp, unix_connect_abstract, .timeout = 20) {
  char name[64], cmd[256];
  snprintf(name, sizeof name, "weft-tcp-abs-%d", (int)getpid());
  snprintf(cmd, sizeof cmd, "exec socat ABSTRACT-LISTEN:%s EXEC:cat", name);
  peer p = peer_start(cmd, false);
  char at[80];
  snprintf(at, sizeof at, "@%s", name);
  int fds = count_fds();
  ustate s = {.path = at};
  for (int i = 0; i < 100; i++) { /* until socat listens */
    s = (ustate){.path = at};
    cr_assert_eq(weft_run(unix_main, &s), 0);
    if (s.err != ECONNREFUSED) break;
    usleep(20000);
  }
  cr_assert_eq(s.err, 0, "%s", strerror(s.err));
  cr_assert_str_eq(s.got, "over unix\n");
  cr_assert_eq(count_fds(), fds);
  peer_stop(&p);
  char longn[200];
  memset(longn, 'x', sizeof longn - 1);
  longn[0] = '@';
  longn[sizeof longn - 1] = 0;
  s = (ustate){.path = longn};
  cr_assert_eq(weft_run(unix_main, &s), 0);
  cr_assert_eq(s.err, ENAMETOOLONG);
}

/* A Unix listener whose backlog is full refuses non-blocking connects
 * with EAGAIN: weft_unix_connect tries again until there is room (or
 * its scope ends). */
typedef struct fullstate {
  const char *path;
  int lfd;
  int err[2];
  int64_t elapsed;
} fullstate;

static int unix_accept_later(void *arg) {
  fullstate *s = arg;
  weft_sleep(WEFT_MS(150));
  int c;
  while ((c = accept(s->lfd, NULL, NULL)) >= 0) close(c); /* room again */
  return 0;
}

static int unix_full_main(void *arg) {
  fullstate *s = arg;
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(100));
  weft_stream *st = weft_unix_connect(s->path, NULL);
  s->err[0] = st ? 0 : errno;
  weft_scope_close(&sc);
  if (st) weft_stream_close(st);
  weft_task *t = weft_spawn(unix_accept_later, s, NULL);
  int64_t t0 = weft_now();
  st = weft_unix_connect(s->path, NULL);
  s->elapsed = weft_now() - t0;
  s->err[1] = st ? 0 : errno;
  if (st) weft_stream_close(st);
  weft_join(t);
  return 0;
}

Test(tcp, unix_connect_backlog_full, .timeout = 20) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/weft-full-%d.sock", (int)getpid());
  unlink(path);
  fullstate s = {.path = path};
  s.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_un sun;
  socklen_t len;
  cr_assert_eq(weft__unix_addr(path, &sun, &len), 0);
  cr_assert_eq(bind(s.lfd, (struct sockaddr *)&sun, len), 0);
  cr_assert_eq(listen(s.lfd, 0), 0);
  int fills[8], nfill = 0;
  for (; nfill < 8; nfill++) {
    fills[nfill] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (connect(fills[nfill], (struct sockaddr *)&sun, len) < 0) {
      cr_assert_eq(errno, EAGAIN);
      close(fills[nfill]);
      break;
    }
  }
  cr_assert_lt(nfill, 8, "the backlog never filled");
  int fds = count_fds();
  cr_assert_eq(weft_run(unix_full_main, &s), 0);
  cr_assert_eq(s.err[0], ECANCELED, "%s", strerror(s.err[0]));
  cr_assert_eq(s.err[1], 0, "%s", strerror(s.err[1]));
  cr_assert_geq(s.elapsed, WEFT_MS(100));
  cr_assert_eq(count_fds(), fds);
  close_all(fills, nfill);
  close(s.lfd);
  unlink(path);
}
