/*
 * tcp_client.c -- a small netcat: connects (name resolution off the
 * loop, Happy Eyeballs over IPv6 and IPv4, a connect timeout), then
 * copies stdin to the connection and the connection to stdout, in two
 * tasks.
 *
 *   gcc -I include examples/tcp_client.c -L build/lib -lweft -o tcp_client && LD_LIBRARY_PATH=build/lib ./tcp_client [HOST PORT]
 *
 * asyncio.open_connection(host, port)   weft_tcp_connect(host, port, &opts)
 *   happy_eyeballs_delay=0.25           opts.happy_eyeballs_delay = WEFT_MS(250)
 * asyncio.wait_for(..., timeout=5)      opts.timeout = WEFT_SEC(5)
 * writer.write_eof()                    weft_stream_write_eof(s)
 *
 * With HOST PORT (the last two arguments): `printf 'GET / HTTP/1.0\r\n\r\n'
 * | tcp_client example.org 80`. Without them it runs a self-test against
 * a server of its own on "localhost" and exits 0 when the answer is right,
 * and checks that a refused port and an unresolvable name fail as they
 * should.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft.h"

/* stdin -> connection, then the end of our side (the peer sees EOF). */
static int upload(void *arg) {
  weft_stream *s = arg;
  char buf[16384];
  for (;;) {
    int rc = weft_wait_fd(0, WEFT_READABLE); /* read(0) will not block now */
    if (rc < 0 && rc != -EPERM) return rc;   /* -EPERM: a regular file */
    ssize_t n = read(0, buf, sizeof buf);
    if (n < 0) return weft_fail(-errno, "stdin");
    if (n == 0) return weft_stream_write_eof(s);
    rc = weft_stream_write(s, buf, (size_t)n);
    if (!rc) rc = weft_stream_drain(s);
    if (rc) return rc;
  }
}

/* connection -> stdout, until the peer ends. */
static int download(void *arg) {
  weft_stream *s = arg;
  char buf[16384];
  ssize_t n;
  while ((n = weft_stream_read(s, buf, sizeof buf)) > 0)
    if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) return -EIO;
  fflush(stdout);
  return (int)n;
}

typedef struct target {
  const char *host;
  int port;
} target;

static int client_main(void *arg) {
  target *t = arg;
  weft_connect_opts o = {.timeout = WEFT_SEC(10)};
  weft_stream *s = weft_tcp_connect(t->host, t->port, &o);
  if (!s) {
    fprintf(stderr, "tcp_client: %s port %d: %s\n", t->host, t->port, weft_strerror(errno));
    return 1;
  }
  weft_group *g = weft_group_open();
  weft_group_spawn(g, download, s, NULL);
  weft_group_spawn(g, upload, s, NULL);
  weft_errors *errs = NULL;
  int rc = weft_group_close(g, &errs);
  if (rc) weft_errors_print(errs, 2);
  weft_errors_free(errs);
  weft_stream_close(s);
  return rc ? 1 : 0;
}

/* ---- self-test --------------------------------------------------------- */

static int unexpected;

static void check(int ok, const char *what) {
  printf("   %s %s\n", ok ? "ok " : "UNEXPECTED:", what);
  if (!ok) unexpected++;
}

/* The server's side: a greeting, then the line it got, upper-cased. */
static int shout(weft_stream *c, void *arg) {
  (void)arg;
  const char *line;
  int rc = weft_stream_write(c, "hi\n", 3);
  ssize_t n = rc ? rc : weft_stream_readline(c, &line);
  if (n <= 0) return (int)n;
  char up[256];
  size_t k = (size_t)n < sizeof up ? (size_t)n : sizeof up;
  for (size_t i = 0; i < k; i++)
    up[i] = (char)(line[i] >= 'a' && line[i] <= 'z' ? line[i] - 32 : line[i]);
  return weft_stream_write(c, up, k);
}

static int serve_task(void *arg) { return weft_server_serve(arg, shout, NULL); }

static int selftest_main(void *arg) {
  (void)arg;
  weft_server *srv = weft_tcp_listen("127.0.0.1", 0, NULL);
  if (!srv) return 1;
  int port = weft_server_port(srv);
  weft_group *g = weft_group_open();
  weft_group_start(g, serve_task, srv, NULL, NULL);

  /* "localhost" goes through the resolver (on the thread pool). */
  weft_connect_opts o = {.timeout = WEFT_SEC(5)};
  weft_stream *s = weft_tcp_connect("localhost", port, &o);
  check(s != NULL, "connected to localhost");
  if (s) {
    const char *line;
    ssize_t n = weft_stream_readline(s, &line);
    check(n == 3 && !memcmp(line, "hi\n", 3), "greeting read");
    weft_stream_write(s, "weft says hello\n", 16);
    n = weft_stream_readline(s, &line);
    check(n == 16 && !memcmp(line, "WEFT SAYS HELLO\n", 16), "answer read");
    check(weft_stream_read(s, (char[8]){0}, 8) == 0, "then the end of the stream");
    weft_stream_close(s);
  }
  weft_server_stop(srv);
  weft_group_close(g, NULL);
  weft_server_close(srv);

  /* The port is closed now: refused. */
  s = weft_tcp_connect("127.0.0.1", port, &o);
  check(!s && errno == ECONNREFUSED, "a closed port is refused (ECONNREFUSED)");
  /* RFC 6761: .invalid never resolves. */
  s = weft_tcp_connect("no-such-host.invalid", 80, &o);
  check(!s && errno == ENXIO, "an unresolvable name fails with ENXIO");
  return unexpected ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    int rc = weft_run(selftest_main, NULL);
    printf("tcp_client self-test: %s\n", rc ? "FAILED" : "passed");
    return rc;
  }
  target t = {.host = argv[argc - 2], .port = atoi(argv[argc - 1])};
  return weft_run(client_main, &t);
}
