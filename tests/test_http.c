/*
 * test_http.c -- examples/http_hello.c against clients nobody here wrote:
 * curl (HTTP/1.1, HTTP/1.0, two URLs over one kept-alive connection,
 * HEAD), wrk (a second of load: no errors, no non-2xx), and a raw
 * python3 socket client (pipelining, a malformed request, an oversized
 * head, exact bytes). The server is the example binary, found next to
 * this one (same bin/ directory), started on a free port and stopped
 * with SIGTERM, which it must exit on (status 0).
 *
 * A tool that is not installed skips its test; so does a build without
 * the example (WEFT_THREAD=OFF) or one whose binaries cannot be spawned
 * (cross builds under qemu).
 */
#define _GNU_SOURCE
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "helpers.h"

extern char **environ;

static bool have_prog(const char *name) {
  const char *path = getenv("PATH");
  if (!path) path = "/usr/bin:/bin";
  char buf[4096];
  while (*path) {
    size_t n = strcspn(path, ":");
    snprintf(buf, sizeof buf, "%.*s/%s", (int)n, path, name);
    if (access(buf, X_OK) == 0) return true;
    path += n;
    if (*path == ':') path++;
  }
  return false;
}

/* The example binary: bin/example-http_hello next to this test. */
static bool example_path(char *out, size_t cap) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return false;
  self[n] = '\0';
  snprintf(out, cap, "%s/example-http_hello", dirname(self));
  return access(out, X_OK) == 0;
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  int port = -1;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &l) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

/* ---- the server ------------------------------------------------------ */

typedef struct {
  pid_t pid;
  int out; /* its stdout */
  int port;
} server;

static bool server_try(server *s, const char *path, char *line, size_t cap);

/* Starts the example on a free port and waits for its banner. Skips the
 * test when it cannot run here. */
static void server_start(server *s) {
  char path[PATH_MAX + 32];
  if (!example_path(path, sizeof path)) cr_skip_test("no example-http_hello next to this test");
  char line[256] = "";
  /* The free port may be taken by someone else before the server binds
   * it: then try another. */
  for (int i = 0; i < 3; i++)
    if (server_try(s, path, line, sizeof line)) return;
  cr_assert_fail("the server did not start: [%s]", line);
}

/* One attempt: true once the server says it serves. */
static bool server_try(server *s, const char *path, char *line, size_t cap) {
  s->port = free_port();
  cr_assert_gt(s->port, 0);
  char ps[16];
  snprintf(ps, sizeof ps, "%d", s->port);
  int p[2];
  cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  /* A cross build runs its tests under an emulator (qemu-aarch64), which
   * cannot exec a target binary by itself: CMake names it here. */
  const char *emu = getenv("WEFT_TEST_EMULATOR");
  char *argv[] = {(char *)path, ps, NULL};
  char *eargv[] = {(char *)emu, (char *)path, ps, NULL};
  int rc = emu && *emu ? posix_spawnp(&s->pid, emu, &fa, NULL, eargv, environ)
                       : posix_spawn(&s->pid, path, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  if (rc != 0) {
    close(p[0]);
    cr_skip_test("cannot spawn %s: %s", path, strerror(rc));
  }
  s->out = p[0];
  /* "http_hello: serving http://127.0.0.1:PORT/ ..." */
  size_t n = 0;
  while (n + 1 < cap) {
    struct pollfd pfd = {.fd = s->out, .events = POLLIN};
    if (poll(&pfd, 1, 10000) <= 0) break;
    ssize_t r = read(s->out, line + n, 1);
    if (r <= 0 || line[n] == '\n') break;
    n++;
  }
  line[n] = '\0';
  if (!strstr(line, "serving")) {
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    close(s->out);
    return false;
  }
  return true;
}

/* SIGTERM; it must exit, with status 0, within 5 s. */
static void server_stop(server *s) {
  cr_assert_eq(kill(s->pid, SIGTERM), 0);
  int st = 0;
  pid_t r = 0;
  for (int i = 0; i < 500 && r == 0; i++) {
    r = waitpid(s->pid, &st, WNOHANG);
    if (r == 0) usleep(10000);
  }
  if (r == 0) {
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
  }
  close(s->out);
  cr_assert_neq(r, 0, "the server did not exit within 5 s of SIGTERM");
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server exited with status 0x%x", st);
}

/* ---- running clients --------------------------------------------------- */

/* Runs argv to its end (at most `secs` s, then killed), with its stdout
 * and stderr in out/err (NUL-terminated, truncated to cap). Exit status,
 * or -1. */
static int run(char *const argv[], char *out, size_t ocap, char *err, size_t ecap,
               int secs) {
  int po[2], pe[2];
  if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, po[1], 1);
  posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(po[1]);
  close(pe[1]);
  if (rc) {
    close(po[0]);
    close(pe[0]);
    return -1;
  }
  size_t on = 0, en = 0;
  bool oopen = true, eopen = true;
  int64_t deadline = weft_now() + WEFT_SEC(secs);
  while (oopen || eopen) {
    struct pollfd pf[2] = {{.fd = oopen ? po[0] : -1, .events = POLLIN},
                           {.fd = eopen ? pe[0] : -1, .events = POLLIN}};
    int64_t left = (deadline - weft_now()) / 1000000;
    if (left <= 0 || poll(pf, 2, (int)left) <= 0) break;
    char tmp[4096];
    for (int i = 0; i < 2; i++) {
      if (!(pf[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t r = read(i ? pe[0] : po[0], tmp, sizeof tmp);
      if (r <= 0) {
        if (i) eopen = false;
        else oopen = false;
        continue;
      }
      char *dst = i ? err : out;
      size_t *dn = i ? &en : &on;
      size_t cap = i ? ecap : ocap;
      size_t k = (size_t)r < cap - 1 - *dn ? (size_t)r : cap - 1 - *dn;
      memcpy(dst + *dn, tmp, k);
      *dn += k;
    }
  }
  out[on] = '\0';
  err[en] = '\0';
  close(po[0]);
  close(pe[0]);
  if (oopen || eopen) kill(pid, SIGKILL);
  int st;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char out[1 << 16], err[1 << 16];

#define OK_HEAD "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"

/* ---- curl -------------------------------------------------------------- */

Test(http, curl, .timeout = 60) {
  if (!have_prog("curl")) cr_skip_test("no curl");
  server s;
  server_start(&s);
  char url[64], url2[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/", s.port);
  snprintf(url2, sizeof url2, "http://127.0.0.1:%d/some/path?q=1", s.port);

  /* HTTP/1.1: status, headers, body. */
  char *a1[] = {"curl", "-sS", "-i", url, NULL};
  cr_assert_eq(run(a1, out, sizeof out, err, sizeof err, 20), 0, "curl: %s", err);
  cr_assert(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0, "[%s]", out);
  cr_assert(strstr(out, "\r\nContent-Length: 13\r\n"), "[%s]", out);
  cr_assert(strstr(out, "\r\nContent-Type: text/plain\r\n"), "[%s]", out);
  cr_assert(!strstr(out, "Connection:"), "[%s]", out);
  size_t n = strlen(out);
  cr_assert(n > 17 && strcmp(out + n - 17, "\r\n\r\nHello, World!") == 0, "[%s]", out);

  /* HTTP/1.0: the same, and the server closes. */
  char *a2[] = {"curl", "-sS", "-i", "--http1.0", url, NULL};
  cr_assert_eq(run(a2, out, sizeof out, err, sizeof err, 20), 0, "curl: %s", err);
  cr_assert_str_eq(out, OK_HEAD "Connection: close\r\n\r\nHello, World!");

  /* Two URLs: curl reuses the kept-alive connection. */
  char *a3[] = {"curl", "-sS", "-v", url, url2, NULL};
  cr_assert_eq(run(a3, out, sizeof out, err, sizeof err, 20), 0, "curl: %s", err);
  cr_assert_str_eq(out, "Hello, World!Hello, World!");
  cr_assert(strstr(err, "Re-using existing connection"), "no reuse in curl -v:\n%s", err);
  cr_assert(!strstr(err, "Closing connection 0") || strstr(err, "Re-using"), "%s", err);

  /* HEAD: headers only. */
  char *a4[] = {"curl", "-sS", "-I", url, NULL};
  cr_assert_eq(run(a4, out, sizeof out, err, sizeof err, 20), 0, "curl: %s", err);
  cr_assert_str_eq(out, OK_HEAD "\r\n");

  /* curl with a body (POST): 501, and the connection is closed. */
  char *a5[] = {"curl", "-sS", "-i", "-d", "x=1", url, NULL};
  cr_assert_eq(run(a5, out, sizeof out, err, sizeof err, 20), 0, "curl: %s", err);
  cr_assert(strncmp(out, "HTTP/1.1 501 Not Implemented\r\n", 30) == 0, "[%s]", out);
  cr_assert(strstr(out, "\r\nConnection: close\r\n"), "[%s]", out);

  server_stop(&s);
}

/* ---- wrk --------------------------------------------------------------- */

Test(http, wrk, .timeout = 60) {
  if (!have_prog("wrk")) cr_skip_test("no wrk");
  server s;
  server_start(&s);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/", s.port);
  char *a[] = {"wrk", "-t1", "-c10", "-d1s", url, NULL};
  int rc = run(a, out, sizeof out, err, sizeof err, 30);
  cr_assert_eq(rc, 0, "wrk: %s%s", out, err);
  /* "  12345 requests in 1.00s, 1.00MB read" */
  const char *p = strstr(out, " requests in ");
  cr_assert(p, "no request count in wrk's output:\n%s", out);
  const char *q = p;
  while (q > out && q[-1] >= '0' && q[-1] <= '9') q--;
  long nreq = strtol(q, NULL, 10);
  cr_log_info("wrk: %ld requests in 1 s", nreq);
  cr_assert_gt(nreq, 0, "no requests:\n%s", out);
  cr_assert(!strstr(out, "Non-2xx or 3xx responses"), "wrk saw errors:\n%s", out);
  cr_assert(!strstr(out, "Socket errors"), "wrk saw socket errors:\n%s", out);
  cr_assert(strstr(out, "Requests/sec:"), "%s", out);
  server_stop(&s);
}

/* ---- a raw python3 client ------------------------------------------------ */

/* Prints, for each case, the bytes received (repr) and whether the server
 * closed after them. */
static const char *py_raw =
    "import socket,sys\n"
    "port=int(sys.argv[1])\n"
    "def talk(data, pieces=1):\n"
    "    s=socket.create_connection(('127.0.0.1',port))\n"
    "    s.settimeout(5)\n"
    "    step=max(1,len(data)//pieces)\n"
    "    for i in range(0,len(data),step): s.sendall(data[i:i+step])\n"
    "    got=b''\n"
    "    closed=False\n"
    "    while True:\n"
    "        try: b=s.recv(65536)\n"
    "        except socket.timeout: break\n"
    "        if not b: closed=True; break\n"
    "        got+=b\n"
    "        if got.count(b'Hello') >= want_hello and not expect_close: break\n"
    "    s.close()\n"
    "    print(repr(got), 'closed' if closed else 'open', flush=True)\n"
    "G=b'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'\n"
    "want_hello=3; expect_close=False\n"
    "talk(G*3)\n"
    "want_hello=0; expect_close=True\n"
    "talk(b'NOT A REQUEST\\r\\n\\r\\n')\n"
    "talk(b'GET / HTTP/1.1\\r\\nHost: x\\r\\nX-Long: '+b'a'*20000+b'\\r\\n\\r\\n')\n"
    "want_hello=2; expect_close=True\n"
    "talk(G+b'GET /last HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n'+G, 3)\n";

/* python's repr of the bytes: CR LF show as the four characters \r\n. */
#define PY_OK                                                              \
  "HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: 13\\r\\n" \
  "\\r\\nHello, World!"
#define PY_CLOSE                                                           \
  "HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: 13\\r\\n" \
  "Connection: close\\r\\n\\r\\nHello, World!"

Test(http, raw_python, .timeout = 60) {
  if (!have_prog("python3")) cr_skip_test("no python3");
  server s;
  server_start(&s);
  char ps[16];
  snprintf(ps, sizeof ps, "%d", s.port);
  char *a[] = {"python3", "-c", (char *)py_raw, ps, NULL};
  cr_assert_eq(run(a, out, sizeof out, err, sizeof err, 40), 0, "python3: %s", err);
  const char *want =
      /* three pipelined GETs: three answers, the connection stays */
      "b'" PY_OK PY_OK PY_OK "' open\n"
      /* a malformed request: 400, closed */
      "b'HTTP/1.1 400 Bad Request\\r\\nContent-Type: text/plain\\r\\nContent-Length: 12\\r\\n"
      "Connection: close\\r\\n\\r\\nBad Request\\n' closed\n"
      /* 20 KB of headers: 431, closed */
      "b'HTTP/1.1 431 Request Header Fields Too Large\\r\\nContent-Type: text/plain\\r\\n"
      "Content-Length: 32\\r\\nConnection: close\\r\\n\\r\\nRequest Header Fields Too Large"
      "\\n' closed\n"
      /* GET, GET with Connection: close, GET, in three pieces: two
       * answers, closed; the request after the close is not answered */
      "b'" PY_OK PY_CLOSE "' closed\n";
  cr_assert_str_eq(out, want);
  server_stop(&s);
}
