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
#include "helpers.h"
#include "example_server.h"

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
  server_start(&s, "http_hello");
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
  server_start(&s, "http_hello");
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
  server_start(&s, "http_hello");
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
