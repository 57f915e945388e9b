/*
 * test_udp.c -- weft_udp: bind (port 0, reuse_port, EADDRINUSE), send_to
 * and recv with the sender's address, connected send/recv, ECONNREFUSED
 * from ICMP, EMSGSIZE both ways, deadlines through scopes (nothing lost),
 * close waking a waiter, IPv6, bad input, other loops and no task, and
 * peers nobody here wrote: python3's socket module and socat. Every test
 * checks that no fd is left open.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "helpers.h"

extern char **environ;

/* ---------------------------------------------------------------- */
/* Helpers                                                            */
/* ---------------------------------------------------------------- */


static bool have_ipv6_loopback(void) {
  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
  close(fd);
  return ok;
}

/* A child process with its stdin (in) and stdout (out) on pipes; out
 * is non-blocking, for task_read_line. */
typedef struct proc {
  pid_t pid;
  int in, out;
} proc;

static bool proc_start(proc *p, char *const argv[]) {
  int pin[2], pout[2];
  if (pipe2(pin, O_CLOEXEC) != 0) return false;
  if (pipe2(pout, O_CLOEXEC) != 0) {
    close(pin[0]);
    close(pin[1]);
    return false;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
  posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
  int rc = posix_spawnp(&p->pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(pin[0]);
  close(pout[1]);
  if (rc != 0) {
    close(pin[1]);
    close(pout[0]);
    return false;
  }
  p->in = pin[1];
  p->out = pout[0];
  fcntl(p->out, F_SETFL, fcntl(p->out, F_GETFL) | O_NONBLOCK);
  return true;
}

/* Kills (if still running) and reaps; closes the pipes. The exit status. */
static int proc_stop(proc *p, int sig) {
  if (p->in >= 0) close(p->in);
  if (p->out >= 0) close(p->out);
  p->in = p->out = -1;
  if (p->pid <= 0) return -1;
  if (sig) kill(p->pid, sig);
  int st = 0;
  while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR) {
  }
  p->pid = 0;
  return st;
}

/* Reads one line (without its newline) from fd, waiting through weft, at
 * most `within` ns. Length, or a negative code. */
static ssize_t task_read_line(int fd, char *buf, size_t cap, int64_t within) {
  int64_t deadline = weft_now() + within;
  size_t n = 0;
  while (n + 1 < cap) {
    char c;
    ssize_t r = read(fd, &c, 1);
    if (r == 1) {
      if (c == '\n') break;
      buf[n++] = c;
      continue;
    }
    if (r == 0) break;
    if (errno != EAGAIN) return -errno;
    int rc = weft_wait_fd_until(fd, WEFT_READABLE, deadline);
    if (rc < 0) return rc;
  }
  buf[n] = '\0';
  return (ssize_t)n;
}

/* Blocking version for the test body (before weft_run). */
static ssize_t read_line_blocking(int fd, char *buf, size_t cap, int ms) {
  size_t n = 0;
  while (n + 1 < cap) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, ms) <= 0) return -ETIMEDOUT;
    char c;
    ssize_t r = read(fd, &c, 1);
    if (r <= 0) {
      if (r < 0 && errno == EAGAIN) continue;
      break;
    }
    if (c == '\n') break;
    buf[n++] = c;
  }
  buf[n] = '\0';
  return (ssize_t)n;
}

static int addr_port(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)ss)->sin_port);
  if (ss->ss_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
  return -1;
}

static struct sockaddr_in loop4(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

/* A UDP echo server in python3: prints its port, echoes every datagram
 * back to its sender. argv: family (4 or 6), address. */
static const char *py_echo =
    "import socket,sys\n"
    "fam=socket.AF_INET6 if sys.argv[1]=='6' else socket.AF_INET\n"
    "s=socket.socket(fam,socket.SOCK_DGRAM)\n"
    "s.bind((sys.argv[2],0))\n"
    "print(s.getsockname()[1],flush=True)\n"
    "while True:\n"
    "    d,a=s.recvfrom(65536)\n"
    "    s.sendto(d,a)\n";

/* A UDP client in python3: prints its own port, sends argv[2] to port
 * argv[1] on 127.0.0.1, prints the reply and the replier's port. */
static const char *py_client =
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "s.settimeout(10)\n"
    "s.bind(('127.0.0.1',0))\n"
    "print(s.getsockname()[1],flush=True)\n"
    "s.sendto(sys.argv[2].encode(),('127.0.0.1',int(sys.argv[1])))\n"
    "d,a=s.recvfrom(65536)\n"
    "print(d.decode(),a[1],flush=True)\n";

static bool start_py_echo(proc *p, const char *fam, const char *host, int *port) {
  char *argv[] = {"python3", "-c", (char *)py_echo, (char *)fam, (char *)host, NULL};
  if (!proc_start(p, argv)) return false;
  char line[64];
  if (read_line_blocking(p->out, line, sizeof line, 10000) <= 0) {
    proc_stop(p, SIGKILL);
    return false;
  }
  *port = atoi(line);
  return *port > 0;
}

/* Fails main with a message, so that the test prints where. */
#define CHECK(cond)                                                       \
  do {                                                                    \
    if (!(cond)) return weft_fail(-EPROTO, "%s:%d: %s", __FILE__, __LINE__, #cond); \
  } while (0)

typedef struct {
  weft_fn fn;
  void *arg;
  char msg[512];
} wrap;

static int wrap_main(void *arg) {
  wrap *w = arg;
  weft_task *t = weft_spawn(w->fn, w->arg, NULL);
  if (!t) return -errno;
  while (!weft_task_done(t)) weft_sleep(WEFT_MS(1));
  const char *m = NULL;
  int rc = weft_task_error(t, &m);
  if (m) snprintf(w->msg, sizeof w->msg, "%s", m);
  weft_join(t);
  return rc;
}

/* Runs fn in a task; on failure, prints its message. */
static void run_test(weft_fn fn, void *arg) {
  wrap w = {.fn = fn, .arg = arg};
  int fds0 = count_fds();
  int rc = weft_run(wrap_main, &w);
  cr_assert_eq(rc, 0, "failed: %s (%s)", w.msg[0] ? w.msg : "-", weft_strerror(rc));
  int fds1 = count_fds();
  cr_assert_eq(fds1, fds0, "fds leaked: %d before, %d after", fds0, fds1);
}

/* ---------------------------------------------------------------- */
/* Bind, port, fd                                                     */
/* ---------------------------------------------------------------- */

static int bind_main(void *arg) {
  (void)arg;
  weft_udp *u = weft_udp_bind(NULL, 0, NULL);
  CHECK(u);
  int port = weft_udp_port(u);
  CHECK(port > 0 && port <= 65535);
  int fd = weft_udp_fd(u);
  CHECK(fd >= 0);
  CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
  CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  int type = 0;
  socklen_t tl = sizeof type;
  CHECK(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_DGRAM);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  CHECK(getsockname(fd, (struct sockaddr *)&ss, &sl) == 0);
  CHECK(ss.ss_family == AF_INET); /* host NULL, family 0: IPv4 any */
  CHECK(((struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_ANY));
  CHECK(weft_udp_close(u) == 0);

  u = weft_udp_bind("127.0.0.1", 0, NULL);
  CHECK(u);
  port = weft_udp_port(u);
  CHECK(port > 0);
  /* The same port again: in use. */
  weft_udp *v = weft_udp_bind("127.0.0.1", port, NULL);
  CHECK(!v && errno == EADDRINUSE);
  CHECK(weft_udp_close(u) == 0);

  /* reuse_port: two sockets share a port. */
  weft_udp_opts ro = {.reuse_port = true};
  u = weft_udp_bind("127.0.0.1", 0, &ro);
  CHECK(u);
  v = weft_udp_bind("127.0.0.1", weft_udp_port(u), &ro);
  CHECK(v);
  CHECK(weft_udp_port(v) == weft_udp_port(u));
  CHECK(weft_udp_close(v) == 0);
  CHECK(weft_udp_close(u) == 0);

  /* A name is resolved (off the loop). */
  u = weft_udp_bind("localhost", 0, NULL);
  CHECK(u);
  v = weft_udp_connect("localhost", weft_udp_port(u), NULL);
  CHECK(v);
  CHECK(weft_udp_close(v) == 0);
  CHECK(weft_udp_close(u) == 0);

  /* broadcast sets SO_BROADCAST. */
  weft_udp_opts bo = {.broadcast = true};
  u = weft_udp_bind(NULL, 0, &bo);
  CHECK(u);
  int on = 0;
  socklen_t ol = sizeof on;
  CHECK(getsockopt(weft_udp_fd(u), SOL_SOCKET, SO_BROADCAST, &on, &ol) == 0 && on);
  CHECK(weft_udp_close(u) == 0);
  return 0;
}

Test(udp, bind_port0, .timeout = 20) { run_test(bind_main, NULL); }

/* ---------------------------------------------------------------- */
/* send_to / recv between two endpoints                               */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_udp *a, *b;
  int rc;
} pair_state;

static int late_sender(void *arg) {
  pair_state *s = arg;
  weft_sleep(WEFT_MS(30));
  struct sockaddr_in to = loop4(weft_udp_port(s->b));
  return weft_udp_send_to(s->a, "late", 4, (struct sockaddr *)&to, sizeof to);
}

static int sendto_main(void *arg) {
  (void)arg;
  pair_state s = {0};
  s.a = weft_udp_bind("127.0.0.1", 0, NULL);
  s.b = weft_udp_bind("127.0.0.1", 0, NULL);
  CHECK(s.a && s.b);
  int pa = weft_udp_port(s.a), pb = weft_udp_port(s.b);
  struct sockaddr_in to = loop4(pb);
  CHECK(weft_udp_send_to(s.a, "hello", 5, (struct sockaddr *)&to, sizeof to) == 0);
  char buf[64];
  struct sockaddr_storage from;
  socklen_t fl = 0;
  ssize_t n = weft_udp_recv(s.b, buf, sizeof buf, &from, &fl);
  CHECK(n == 5 && memcmp(buf, "hello", 5) == 0);
  CHECK(fl == sizeof(struct sockaddr_in));
  CHECK(from.ss_family == AF_INET && addr_port(&from) == pa);
  CHECK(((struct sockaddr_in *)&from)->sin_addr.s_addr == htonl(INADDR_LOOPBACK));
  /* Reply to the address received. */
  CHECK(weft_udp_send_to(s.b, "world!", 6, (struct sockaddr *)&from, fl) == 0);
  n = weft_udp_recv(s.a, buf, sizeof buf, NULL, NULL);
  CHECK(n == 6 && memcmp(buf, "world!", 6) == 0);
  /* An empty datagram is a datagram. */
  CHECK(weft_udp_send_to(s.a, NULL, 0, (struct sockaddr *)&to, sizeof to) == 0);
  fl = 0;
  n = weft_udp_recv(s.b, buf, sizeof buf, &from, &fl);
  CHECK(n == 0 && addr_port(&from) == pa);
  /* recv waits (letting other tasks run) until a datagram comes. */
  weft_task *t = weft_spawn(late_sender, &s, NULL);
  CHECK(t);
  int64_t t0 = weft_now();
  n = weft_udp_recv(s.b, buf, sizeof buf, NULL, NULL);
  CHECK(n == 4 && memcmp(buf, "late", 4) == 0);
  CHECK(weft_now() - t0 >= WEFT_MS(25));
  CHECK(weft_join(t) == 0);
  /* A burst keeps its datagrams apart, in order (loopback). */
  for (int i = 0; i < 100; i++) {
    char m[16];
    int len = snprintf(m, sizeof m, "msg-%d", i);
    CHECK(weft_udp_send_to(s.a, m, (size_t)len, (struct sockaddr *)&to, sizeof to) == 0);
  }
  for (int i = 0; i < 100; i++) {
    char m[16];
    int len = snprintf(m, sizeof m, "msg-%d", i);
    n = weft_udp_recv(s.b, buf, sizeof buf, NULL, NULL);
    CHECK(n == len && memcmp(buf, m, (size_t)len) == 0);
  }
  CHECK(weft_udp_close(s.a) == 0);
  CHECK(weft_udp_close(s.b) == 0);
  return 0;
}

Test(udp, send_to_recv, .timeout = 20) { run_test(sendto_main, NULL); }

/* ---------------------------------------------------------------- */
/* Connected endpoints                                                */
/* ---------------------------------------------------------------- */

static int connected_main(void *arg) {
  (void)arg;
  weft_udp *srv = weft_udp_bind("127.0.0.1", 0, NULL);
  CHECK(srv);
  weft_udp *c = weft_udp_connect("127.0.0.1", weft_udp_port(srv), NULL);
  CHECK(c);
  weft_udp *other = weft_udp_bind("127.0.0.1", 0, NULL);
  CHECK(other);
  CHECK(weft_udp_send(c, "abc", 3) == 0);
  char buf[16];
  struct sockaddr_storage from;
  socklen_t fl;
  ssize_t n = weft_udp_recv(srv, buf, sizeof buf, &from, &fl);
  CHECK(n == 3 && memcmp(buf, "abc", 3) == 0);
  CHECK(addr_port(&from) == weft_udp_port(c));
  /* Only the peer's datagrams reach a connected endpoint: one from
   * `other` is dropped by the kernel, the server's arrives. */
  struct sockaddr_in to = loop4(weft_udp_port(c));
  CHECK(weft_udp_send_to(other, "xx", 2, (struct sockaddr *)&to, sizeof to) == 0);
  CHECK(weft_udp_send_to(srv, "reply", 5, (struct sockaddr *)&from, fl) == 0);
  fl = 0;
  n = weft_udp_recv(c, buf, sizeof buf, &from, &fl);
  CHECK(n == 5 && memcmp(buf, "reply", 5) == 0);
  CHECK(addr_port(&from) == weft_udp_port(srv));
  /* Connected: send_to is refused; unconnected: send is. */
  CHECK(weft_udp_send_to(c, "x", 1, (struct sockaddr *)&to, sizeof to) == -EISCONN);
  CHECK(weft_udp_send(srv, "x", 1) == -EDESTADDRREQ);
  CHECK(weft_udp_close(other) == 0);
  CHECK(weft_udp_close(c) == 0);
  CHECK(weft_udp_close(srv) == 0);
  return 0;
}

Test(udp, connected, .timeout = 20) { run_test(connected_main, NULL); }

/* ICMP port unreachable on a connected endpoint: -ECONNREFUSED, from
 * recv (waiting) and from the next send. */
static int refused_main(void *arg) {
  (void)arg;
  /* A port nobody listens on: bind one, note it, close it. */
  weft_udp *tmp = weft_udp_bind("127.0.0.1", 0, NULL);
  CHECK(tmp);
  int port = weft_udp_port(tmp);
  CHECK(weft_udp_close(tmp) == 0);
  weft_udp *c = weft_udp_connect("127.0.0.1", port, NULL);
  CHECK(c);
  CHECK(weft_udp_send(c, "anyone?", 7) == 0);
  char buf[16];
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_SEC(5));
  ssize_t n = weft_udp_recv(c, buf, sizeof buf, NULL, NULL);
  weft_scope_close(&sc);
  CHECK(n == -ECONNREFUSED);
  /* The error was taken: the next send goes out, its refusal comes back
   * and the send after it reports it. */
  CHECK(weft_udp_send(c, "again", 5) == 0);
  int rc = 0;
  for (int i = 0; i < 100 && rc == 0; i++) {
    weft_sleep(WEFT_MS(5));
    rc = weft_udp_send(c, "again", 5);
  }
  CHECK(rc == -ECONNREFUSED);
  CHECK(weft_udp_close(c) == 0);
  return 0;
}

Test(udp, econnrefused, .timeout = 20) { run_test(refused_main, NULL); }

/* ---------------------------------------------------------------- */
/* EMSGSIZE                                                           */
/* ---------------------------------------------------------------- */

static int msgsize_main(void *arg) {
  (void)arg;
  weft_udp *a = weft_udp_bind("127.0.0.1", 0, NULL);
  weft_udp *b = weft_udp_bind("127.0.0.1", 0, NULL);
  CHECK(a && b);
  struct sockaddr_in to = loop4(weft_udp_port(b));
  char big[100];
  for (int i = 0; i < 100; i++) big[i] = (char)('A' + i % 26);
  CHECK(weft_udp_send_to(a, big, sizeof big, (struct sockaddr *)&to, sizeof to) == 0);
  CHECK(weft_udp_send_to(a, "next", 4, (struct sockaddr *)&to, sizeof to) == 0);
  char buf[10];
  memset(buf, 0, sizeof buf);
  struct sockaddr_storage from;
  socklen_t fl = 0;
  CHECK(weft_udp_recv(b, buf, sizeof buf, &from, &fl) == -EMSGSIZE);
  CHECK(memcmp(buf, big, sizeof buf) == 0); /* the first n bytes */
  CHECK(addr_port(&from) == weft_udp_port(a));
  /* The rest of that datagram is gone; the next one is whole. */
  char buf2[64];
  CHECK(weft_udp_recv(b, buf2, sizeof buf2, NULL, NULL) == 4);
  CHECK(memcmp(buf2, "next", 4) == 0);
  /* n == 0 takes a datagram too (truncated unless empty). */
  CHECK(weft_udp_send_to(a, "zz", 2, (struct sockaddr *)&to, sizeof to) == 0);
  CHECK(weft_udp_recv(b, NULL, 0, NULL, NULL) == -EMSGSIZE);
  /* Too big for UDP at all: the send says so. */
  size_t huge = 70000;
  char *h = calloc(1, huge);
  CHECK(h);
  int rc = weft_udp_send_to(a, h, huge, (struct sockaddr *)&to, sizeof to);
  free(h);
  CHECK(rc == -EMSGSIZE);
  /* The largest IPv4 datagram goes through whole. */
  size_t max = 65507;
  char *m = malloc(max), *r = malloc(max + 1);
  CHECK(m && r);
  for (size_t i = 0; i < max; i++) m[i] = (char)(i * 7);
  int opt = 1 << 20;
  setsockopt(weft_udp_fd(b), SOL_SOCKET, SO_RCVBUF, &opt, sizeof opt);
  rc = weft_udp_send_to(a, m, max, (struct sockaddr *)&to, sizeof to);
  ssize_t n = rc ? rc : weft_udp_recv(b, r, max + 1, NULL, NULL);
  bool same = n == (ssize_t)max && memcmp(m, r, max) == 0;
  free(m);
  free(r);
  CHECK(rc == 0);
  CHECK(same);
  CHECK(weft_udp_close(a) == 0);
  CHECK(weft_udp_close(b) == 0);
  return 0;
}

Test(udp, emsgsize, .timeout = 20) { run_test(msgsize_main, NULL); }

/* ---------------------------------------------------------------- */
/* Deadlines and cancellation                                         */
/* ---------------------------------------------------------------- */

static int deadline_main(void *arg) {
  (void)arg;
  pair_state s = {0};
  s.a = weft_udp_bind("127.0.0.1", 0, NULL);
  s.b = weft_udp_bind("127.0.0.1", 0, NULL);
  CHECK(s.a && s.b);
  char buf[16];
  /* A recv with a 50 ms deadline and nothing to receive. */
  weft_scope sc;
  int64_t t0 = weft_now();
  CHECK(weft_scope_open_after(&sc, WEFT_MS(50)) == 0);
  ssize_t n = weft_udp_recv(s.b, buf, sizeof buf, NULL, NULL);
  int64_t el = weft_now() - t0;
  CHECK(weft_scope_close(&sc) == -ETIMEDOUT);
  CHECK(n == -ECANCELED);
  CHECK(el >= WEFT_MS(50) && el < T_SLACK);
  /* A datagram that arrives after that is still received. */
  weft_task *t = weft_spawn(late_sender, &s, NULL);
  CHECK(t);
  n = weft_udp_recv(s.b, buf, sizeof buf, NULL, NULL);
  CHECK(n == 4 && memcmp(buf, "late", 4) == 0);
  CHECK(weft_join(t) == 0);
  /* In a cancelled scope recv takes nothing, even with a datagram
   * waiting; it is there after the scope. Same for send. */
  struct sockaddr_in to = loop4(weft_udp_port(s.b));
  CHECK(weft_udp_send_to(s.a, "kept", 4, (struct sockaddr *)&to, sizeof to) == 0);
  weft_sleep(WEFT_MS(5));
  CHECK(weft_scope_open(&sc, WEFT_FOREVER) == 0);
  weft_scope_cancel(&sc);
  CHECK(weft_udp_recv(s.b, buf, sizeof buf, NULL, NULL) == -ECANCELED);
  CHECK(weft_udp_recv(s.b, buf, sizeof buf, NULL, NULL) == -ECANCELED);
  CHECK(weft_udp_send_to(s.a, "lost", 4, (struct sockaddr *)&to, sizeof to) == -ECANCELED);
  weft_scope_close(&sc);
  n = weft_udp_recv(s.b, buf, sizeof buf, NULL, NULL);
  CHECK(n == 4 && memcmp(buf, "kept", 4) == 0);
  /* Nothing else is queued: the cancelled send_to sent nothing. */
  CHECK(weft_scope_open_after(&sc, WEFT_MS(30)) == 0);
  n = weft_udp_recv(s.b, buf, sizeof buf, NULL, NULL);
  weft_scope_close(&sc);
  CHECK(n == -ECANCELED);
  CHECK(weft_udp_close(s.a) == 0);
  CHECK(weft_udp_close(s.b) == 0);
  return 0;
}

Test(udp, deadline, .timeout = 20) { run_test(deadline_main, NULL); }

typedef struct {
  weft_udp *u;
  ssize_t rc;
  bool done;
} waiter_state;

static int blocked_recv(void *arg) {
  waiter_state *w = arg;
  char buf[8];
  w->rc = weft_udp_recv(w->u, buf, sizeof buf, NULL, NULL);
  w->done = true;
  return 0;
}

static int cancelled_recv_main(void *arg) {
  (void)arg;
  waiter_state w = {.u = weft_udp_bind("127.0.0.1", 0, NULL)};
  CHECK(w.u);
  /* weft_cancel on a task waiting in recv. */
  weft_task *t = weft_spawn(blocked_recv, &w, NULL);
  CHECK(t);
  weft_sleep(WEFT_MS(10));
  CHECK(!w.done);
  weft_cancel(t);
  CHECK(weft_join(t) == 0);
  CHECK(w.rc == -ECANCELED);
  /* Closing the endpoint wakes a waiter with -EBADF. */
  w.done = false;
  t = weft_spawn(blocked_recv, &w, NULL);
  CHECK(t);
  weft_sleep(WEFT_MS(10));
  CHECK(!w.done);
  CHECK(weft_udp_close(w.u) == 0);
  CHECK(weft_join(t) == 0);
  CHECK(w.rc == -EBADF);
  return 0;
}

Test(udp, cancel_and_close_wake, .timeout = 20) { run_test(cancelled_recv_main, NULL); }

/* ---------------------------------------------------------------- */
/* IPv6                                                               */
/* ---------------------------------------------------------------- */

static int ipv6_main(void *arg) {
  (void)arg;
  weft_udp *a = weft_udp_bind("::1", 0, NULL);
  CHECK(a);
  weft_udp *c = weft_udp_connect("[::1]", weft_udp_port(a), NULL);
  CHECK(c);
  CHECK(weft_udp_send(c, "six", 3) == 0);
  char buf[8];
  struct sockaddr_storage from;
  socklen_t fl = 0;
  CHECK(weft_udp_recv(a, buf, sizeof buf, &from, &fl) == 3);
  CHECK(memcmp(buf, "six", 3) == 0);
  CHECK(from.ss_family == AF_INET6 && fl == sizeof(struct sockaddr_in6));
  CHECK(addr_port(&from) == weft_udp_port(c));
  CHECK(memcmp(&((struct sockaddr_in6 *)&from)->sin6_addr, &in6addr_loopback, 16) == 0);
  CHECK(weft_udp_send_to(a, "back", 4, (struct sockaddr *)&from, fl) == 0);
  CHECK(weft_udp_recv(c, buf, sizeof buf, NULL, NULL) == 4);
  CHECK(weft_udp_close(c) == 0);
  CHECK(weft_udp_close(a) == 0);
  /* host NULL with family AF_INET6: the IPv6 wildcard. */
  weft_udp_opts o6 = {.family = AF_INET6};
  weft_udp *w = weft_udp_bind(NULL, 0, &o6);
  CHECK(w);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  CHECK(getsockname(weft_udp_fd(w), (struct sockaddr *)&ss, &sl) == 0);
  CHECK(ss.ss_family == AF_INET6);
  CHECK(weft_udp_close(w) == 0);
  /* An IPv6 host with family AF_INET does not resolve to a usable one. */
  weft_udp_opts o4 = {.family = AF_INET};
  w = weft_udp_bind("::1", 0, &o4);
  CHECK(!w);
  return 0;
}

Test(udp, ipv6, .timeout = 20) {
  if (!have_ipv6_loopback()) cr_skip_test("no IPv6 loopback");
  run_test(ipv6_main, NULL);
}

/* ---------------------------------------------------------------- */
/* Real peers: python3 and socat                                      */
/* ---------------------------------------------------------------- */

typedef struct {
  int port;
  const char *host;
  proc p;
} peer_state;

static int py_echo_main(void *arg) {
  peer_state *s = arg;
  /* Connected to the python echo server. */
  weft_udp *c = weft_udp_connect(s->host, s->port, NULL);
  CHECK(c);
  char buf[2048];
  for (int i = 0; i < 20; i++) {
    char m[64];
    int len = snprintf(m, sizeof m, "datagram %d from weft", i);
    CHECK(weft_udp_send(c, m, (size_t)len) == 0);
    weft_scope sc;
    weft_scope_open_after(&sc, WEFT_SEC(5));
    ssize_t n = weft_udp_recv(c, buf, sizeof buf, NULL, NULL);
    weft_scope_close(&sc);
    CHECK(n == len && memcmp(buf, m, (size_t)len) == 0);
  }
  CHECK(weft_udp_close(c) == 0);
  /* Unconnected: send_to the server, the reply names it. */
  weft_udp_opts o = {.family = strchr(s->host, ':') ? AF_INET6 : AF_INET};
  weft_udp *u = weft_udp_bind(NULL, 0, &o);
  CHECK(u);
  struct sockaddr_storage to = {0};
  socklen_t tl;
  if (o.family == AF_INET) {
    struct sockaddr_in a = loop4(s->port);
    memcpy(&to, &a, sizeof a);
    tl = sizeof a;
  } else {
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)s->port),
                             .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    memcpy(&to, &a, sizeof a);
    tl = sizeof a;
  }
  memset(buf, 'q', 1500);
  CHECK(weft_udp_send_to(u, buf, 1500, (struct sockaddr *)&to, tl) == 0);
  struct sockaddr_storage from;
  socklen_t fl = 0;
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_SEC(5));
  memset(buf, 0, sizeof buf);
  ssize_t n = weft_udp_recv(u, buf, sizeof buf, &from, &fl);
  weft_scope_close(&sc);
  CHECK(n == 1500 && buf[0] == 'q' && buf[1499] == 'q');
  CHECK(addr_port(&from) == s->port && from.ss_family == o.family);
  CHECK(weft_udp_close(u) == 0);
  return 0;
}

Test(udp, python_echo_server, .timeout = 30) {
  if (!have_prog("python3")) cr_skip_test("no python3");
  peer_state s = {.host = "127.0.0.1"};
  cr_assert(start_py_echo(&s.p, "4", "127.0.0.1", &s.port), "python3 echo server did not start");
  int fds0 = count_fds();
  wrap w = {.fn = py_echo_main, .arg = &s};
  int rc = weft_run(wrap_main, &w);
  int fds1 = count_fds();
  proc_stop(&s.p, SIGKILL);
  cr_assert_eq(rc, 0, "failed: %s (%s)", w.msg, weft_strerror(rc));
  cr_assert_eq(fds1, fds0);
}

Test(udp, python_echo_server_ipv6, .timeout = 30) {
  if (!have_prog("python3")) cr_skip_test("no python3");
  if (!have_ipv6_loopback()) cr_skip_test("no IPv6 loopback");
  peer_state s = {.host = "::1"};
  cr_assert(start_py_echo(&s.p, "6", "::1", &s.port), "python3 echo server did not start");
  int fds0 = count_fds();
  wrap w = {.fn = py_echo_main, .arg = &s};
  int rc = weft_run(wrap_main, &w);
  int fds1 = count_fds();
  proc_stop(&s.p, SIGKILL);
  cr_assert_eq(rc, 0, "failed: %s (%s)", w.msg, weft_strerror(rc));
  cr_assert_eq(fds1, fds0);
}

/* weft serves, python3 is the client. */
static int py_client_main(void *arg) {
  (void)arg;
  weft_udp *u = weft_udp_bind("127.0.0.1", 0, NULL);
  CHECK(u);
  int port = weft_udp_port(u);
  char ps[16];
  snprintf(ps, sizeof ps, "%d", port);
  char *argv[] = {"python3", "-c", (char *)py_client, ps, "hello from python", NULL};
  proc p;
  CHECK(proc_start(&p, argv));
  char line[256];
  ssize_t ll = task_read_line(p.out, line, sizeof line, WEFT_SEC(10));
  int cport = atoi(line);
  char buf[256];
  struct sockaddr_storage from;
  socklen_t fl = 0;
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_SEC(10));
  ssize_t n = ll > 0 ? weft_udp_recv(u, buf, sizeof buf, &from, &fl) : -1;
  weft_scope_close(&sc);
  int rc = 0;
  if (n == 17 && memcmp(buf, "hello from python", 17) == 0 && addr_port(&from) == cport &&
      ((struct sockaddr_in *)&from)->sin_addr.s_addr == htonl(INADDR_LOOPBACK))
    rc = weft_udp_send_to(u, "HELLO", 5, (struct sockaddr *)&from, fl);
  else
    rc = -EPROTO;
  ssize_t l2 = rc == 0 ? task_read_line(p.out, line, sizeof line, WEFT_SEC(10)) : -1;
  char want[64];
  snprintf(want, sizeof want, "HELLO %d", port);
  bool ok = l2 > 0 && strcmp(line, want) == 0;
  int st = proc_stop(&p, ok ? 0 : SIGKILL);
  CHECK(cport > 0);
  CHECK(rc == 0);
  CHECK(ok);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK(weft_udp_close(u) == 0);
  return 0;
}

Test(udp, python_client, .timeout = 30) {
  if (!have_prog("python3")) cr_skip_test("no python3");
  run_test(py_client_main, NULL);
}

/* socat as the client: a line on its stdin is a datagram to us; our
 * reply to the address we received from comes out on its stdout. */
static int socat_main(void *arg) {
  (void)arg;
  weft_udp *u = weft_udp_bind("127.0.0.1", 0, NULL);
  CHECK(u);
  char target[64];
  snprintf(target, sizeof target, "UDP:127.0.0.1:%d", weft_udp_port(u));
  char *argv[] = {"socat", "-t", "5", "-", target, NULL};
  proc p;
  CHECK(proc_start(&p, argv));
  bool ok = write(p.in, "ping\n", 5) == 5;
  char buf[64];
  struct sockaddr_storage from;
  socklen_t fl = 0;
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_SEC(10));
  ssize_t n = ok ? weft_udp_recv(u, buf, sizeof buf, &from, &fl) : -1;
  weft_scope_close(&sc);
  ok = n == 5 && memcmp(buf, "ping\n", 5) == 0 && addr_port(&from) > 0 &&
       addr_port(&from) != weft_udp_port(u);
  int rc = ok ? weft_udp_send_to(u, "pong\n", 5, (struct sockaddr *)&from, fl) : -EPROTO;
  char line[64] = "";
  ssize_t l = rc == 0 ? task_read_line(p.out, line, sizeof line, WEFT_SEC(10)) : -1;
  proc_stop(&p, SIGTERM);
  CHECK(ok);
  CHECK(rc == 0);
  CHECK(l == 4 && strcmp(line, "pong") == 0);
  CHECK(weft_udp_close(u) == 0);
  return 0;
}

Test(udp, socat_client, .timeout = 30) {
  if (!have_prog("socat")) cr_skip_test("no socat");
  run_test(socat_main, NULL);
}

/* ---------------------------------------------------------------- */
/* Bad input, no task, other loops                                    */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_udp *u;
  int rc[8];
  weft_call_handle h;
  bool ran;
} misuse_state;

static void from_callback(void *arg) {
  misuse_state *m = arg;
  char b[4];
  m->rc[0] = weft_udp_send(m->u, "x", 1);
  struct sockaddr_in to = loop4(9);
  m->rc[1] = weft_udp_send_to(m->u, "x", 1, (struct sockaddr *)&to, sizeof to);
  m->rc[2] = (int)weft_udp_recv(m->u, b, sizeof b, NULL, NULL);
  m->rc[3] = weft_udp_port(m->u) > 0;
  m->ran = true;
}

static int other_loop_main(void *arg) {
  misuse_state *m = arg;
  char b[4];
  m->rc[4] = weft_udp_send(m->u, "x", 1);
  m->rc[5] = (int)weft_udp_recv(m->u, b, sizeof b, NULL, NULL);
  m->rc[6] = weft_udp_close(m->u);
  return 0;
}

static void *other_thread(void *arg) {
  return (void *)(intptr_t)weft_run(other_loop_main, arg);
}

static int badinput_main(void *arg) {
  (void)arg;
  char b[8];
  struct sockaddr_storage from;
  socklen_t fl;
  /* NULL handles. */
  CHECK(weft_udp_send(NULL, "x", 1) == -EINVAL);
  CHECK(weft_udp_send_to(NULL, "x", 1, NULL, 0) == -EINVAL);
  CHECK(weft_udp_recv(NULL, b, sizeof b, NULL, NULL) == -EINVAL);
  CHECK(weft_udp_close(NULL) == -EINVAL);
  CHECK(weft_udp_port(NULL) == -EINVAL);
  CHECK(weft_udp_fd(NULL) == -EINVAL);
  /* Bad ports, families, hosts. */
  errno = 0;
  CHECK(!weft_udp_bind(NULL, -1, NULL) && errno == EINVAL);
  errno = 0;
  CHECK(!weft_udp_bind(NULL, 65536, NULL) && errno == EINVAL);
  errno = 0;
  CHECK(!weft_udp_connect("127.0.0.1", 0, NULL) && errno == EINVAL);
  errno = 0;
  CHECK(!weft_udp_connect(NULL, 53, NULL) && errno == EINVAL);
  weft_udp_opts bad = {.family = AF_UNIX};
  errno = 0;
  CHECK(!weft_udp_bind(NULL, 0, &bad) && errno == EINVAL);
  errno = 0;
  CHECK(!weft_udp_bind("", 0, NULL) && errno == EINVAL);
  errno = 0;
  weft_udp *x = weft_udp_bind("no-such-host.invalid", 0, NULL);
  CHECK(!x && (errno == ENXIO || errno == EAGAIN));
  /* Bad buffers and addresses. */
  weft_udp *u = weft_udp_bind("127.0.0.1", 0, NULL);
  CHECK(u);
  struct sockaddr_in to = loop4(weft_udp_port(u));
  CHECK(weft_udp_send_to(u, NULL, 3, (struct sockaddr *)&to, sizeof to) == -EINVAL);
  CHECK(weft_udp_send_to(u, "x", 1, NULL, sizeof to) == -EINVAL);
  CHECK(weft_udp_send_to(u, "x", 1, (struct sockaddr *)&to, 0) == -EINVAL);
  CHECK(weft_udp_recv(u, NULL, 3, NULL, NULL) == -EINVAL);
  CHECK(weft_udp_recv(u, b, sizeof b, &from, NULL) == -EINVAL);
  /* fromlen without from: 0. */
  CHECK(weft_udp_send_to(u, "me", 2, (struct sockaddr *)&to, sizeof to) == 0);
  fl = 99;
  CHECK(weft_udp_recv(u, b, sizeof b, NULL, &fl) == 2 && fl == 0);
  /* Outside a task (a timer callback on the loop's thread). */
  misuse_state m = {.u = u};
  CHECK(weft_call_later(&m.h, 0, from_callback, &m) == 0);
  while (!m.ran) weft_sleep(WEFT_MS(1));
  CHECK(m.rc[0] == WEFT_ENOTASK && m.rc[1] == WEFT_ENOTASK && m.rc[2] == WEFT_ENOTASK);
  CHECK(m.rc[3] == 1); /* a plain query works anywhere */
  /* From another loop's task: WEFT_ELOOP, and u is not closed. */
  pthread_t th;
  CHECK(pthread_create(&th, NULL, other_thread, &m) == 0);
  void *ret;
  pthread_join(th, &ret);
  CHECK(ret == NULL);
  CHECK(m.rc[4] == WEFT_ELOOP && m.rc[5] == WEFT_ELOOP && m.rc[6] == WEFT_ELOOP);
  CHECK(weft_udp_send_to(u, "ok", 2, (struct sockaddr *)&to, sizeof to) == 0);
  CHECK(weft_udp_recv(u, b, sizeof b, NULL, NULL) == 2);
  CHECK(weft_udp_close(u) == 0);
  return 0;
}

Test(udp, badinput, .timeout = 20) { run_test(badinput_main, NULL); }

/* Outside any loop: constructors fail with EPERM, calls WEFT_ENOTASK;
 * an endpoint made in a run can be closed after it (no loop left). */
static weft_udp *kept;
static int make_kept(void *arg) {
  (void)arg;
  kept = weft_udp_bind("127.0.0.1", 0, NULL);
  return kept ? 0 : -errno;
}

Test(udp, no_loop, .timeout = 20) {
  int fds0 = count_fds();
  errno = 0;
  cr_assert_null(weft_udp_bind(NULL, 0, NULL));
  cr_assert_eq(errno, EPERM);
  errno = 0;
  cr_assert_null(weft_udp_connect("127.0.0.1", 9, NULL));
  cr_assert_eq(errno, EPERM);
  cr_assert_eq(weft_run(make_kept, NULL), 0);
  cr_assert_not_null(kept);
  char b[4];
  cr_assert_eq(weft_udp_send(kept, "x", 1), WEFT_ENOTASK);
  cr_assert_eq(weft_udp_recv(kept, b, sizeof b, NULL, NULL), WEFT_ENOTASK);
  cr_assert_gt(weft_udp_port(kept), 0);
  cr_assert_eq(weft_udp_close(kept), 0);
  cr_assert_eq(count_fds(), fds0);
}
