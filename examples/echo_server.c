/*
 * echo_server.c -- a TCP echo server: one task per connection, graceful
 * shutdown on SIGINT/SIGTERM (a task waits on a weft_signal watch).
 *
 *   gcc -I include examples/echo_server.c -L build/lib -lweft -o echo_server && LD_LIBRARY_PATH=build/lib ./echo_server [PORT]
 *
 * asyncio.start_server(cb, host, port)  weft_tcp_listen(host, port, &opts)
 * server.serve_forever()                weft_server_serve(srv, cb, arg)
 * server.sockets[0].getsockname()[1]    weft_server_port(srv)
 * server.close(); wait_closed()         weft_server_shutdown(srv, deadline)
 * loop.add_signal_handler(SIGTERM, ...) weft_signal_open(&set) + weft_signal_wait
 * reader.read(n) / writer.write; drain  weft_stream_read / _write / _drain
 *
 * With a PORT (the last argument) it serves on every address until
 * SIGINT or SIGTERM (try: nc localhost PORT). Without one it runs a
 * self-test: it listens on a free port on 127.0.0.1, runs clients against
 * itself and exits 0 when every echo came back right.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft.h"

/* One connection: echo until the client ends its side.
 *
 * The buffer is shared by every connection of the loop: a task keeps no
 * bytes in it across a wait (the read returns them, and the write, which
 * never waits, sends them or copies what the socket does not take into
 * the stream's own buffer before any other task runs). So an idle
 * connection costs its task's first stack page and a small record, not
 * a buffer (bench/net/idle.sh measures it). A program with several loops
 * makes it _Thread_local (examples/echo_multicore.c). */
static char buf[65536];

static int echo(weft_stream *conn, void *arg) {
  (void)arg;
  for (;;) {
    ssize_t n = weft_stream_read(conn, buf, sizeof buf);
    if (n <= 0) return (int)n; /* 0: the client is done; < 0: an error */
    int rc = weft_stream_write(conn, buf, (size_t)n);
    if (!rc) rc = weft_stream_drain(conn); /* backpressure */
    if (rc) return rc;
  }
}

typedef struct app {
  weft_server *srv;
  weft_signal *sig; /* SIGINT, SIGTERM (serving mode) */
  int serve_rc;
  int failures;
} app;

/* serve, started with weft_group_start: it reports ready (hands back the
 * server) once it accepts. */
static int serve_task(void *arg) {
  app *a = arg;
  a->serve_rc = weft_server_serve(a->srv, echo, NULL);
  return a->serve_rc == -ECANCELED ? 0 : a->serve_rc;
}

/* ---- serving until a signal --------------------------------------- */

static int wait_signal(void *arg) {
  app *a = arg;
  int rc = weft_signal_wait(a->sig);
  if (rc < 0) return rc;
  fprintf(stderr, "echo_server: %s, shutting down (%zu connections)\n",
          strsignal(rc), weft_server_connections(a->srv));
  rc = weft_server_shutdown(a->srv, weft_now() + WEFT_SEC(5));
  if (rc == -ETIMEDOUT) fprintf(stderr, "echo_server: cancelled the stragglers\n");
  return 0;
}

static int serve_main(void *arg) {
  int port = *(int *)arg;
  app a = {0};
  /* The watch catches SIGINT and SIGTERM from here on (before anyone can
   * know the server is up), whatever thread the kernel gives them to;
   * closing it puts the previous handlers back. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  a.sig = weft_signal_open(&set);
  if (!a.sig) {
    fprintf(stderr, "echo_server: weft_signal_open: %s\n", weft_strerror(errno));
    return 1;
  }
  a.srv = weft_tcp_listen(NULL, port, NULL); /* every address, v4 and v6 */
  if (!a.srv) {
    fprintf(stderr, "echo_server: listen on port %d: %s\n", port, weft_strerror(errno));
    weft_signal_close(a.sig);
    return 1;
  }
  weft_group *g = weft_group_open();
  void *ready = NULL;
  /* Names show in weft_dump_tasks and in `weft-ps PID` (WEFT_PS=1). */
  int rc = weft_group_start(g, serve_task, &a,
                            &(weft_spawn_opts){.name = "serve"}, &ready);
  if (!rc) {
    char name[128];
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    weft_server_addr(ready, &ss, &len);
    weft_addr_format((struct sockaddr *)&ss, len, name, sizeof name);
    printf("echo_server: serving on %s (Ctrl-C stops)\n", name);
    fflush(stdout);
    weft_group_spawn(g, wait_signal, &a,
                     &(weft_spawn_opts){.name = "signals"});
  }
  rc = weft_group_close(g, NULL);
  weft_server_close(a.srv);
  weft_signal_close(a.sig);
  return rc ? 1 : 0;
}

/* ---- self-test --------------------------------------------------------- */

typedef struct client {
  int port, id;
  int *ok;
} client;

static int client_task(void *arg) {
  client *c = arg;
  weft_connect_opts o = {.timeout = WEFT_SEC(5)};
  weft_stream *s = weft_tcp_connect("127.0.0.1", c->port, &o);
  if (!s) return weft_fail(-errno, "connect");
  char msg[64], got[64];
  int n = snprintf(msg, sizeof msg, "hello from client %d\n", c->id);
  int rc = weft_stream_write(s, msg, (size_t)n);
  if (!rc) rc = weft_stream_read_exactly(s, got, (size_t)n);
  if (!rc && memcmp(got, msg, (size_t)n) == 0) (*c->ok)++;
  int crc = weft_stream_close(s);
  return rc ? rc : crc;
}

static int selftest_main(void *arg) {
  (void)arg;
  app a = {0};
  a.srv = weft_tcp_listen("127.0.0.1", 0, NULL);
  if (!a.srv) {
    fprintf(stderr, "listen: %s\n", weft_strerror(errno));
    return 1;
  }
  int port = weft_server_port(a.srv);
  printf("self-test: echo server on 127.0.0.1:%d\n", port);
  weft_group *g = weft_group_open();
  weft_group_start(g, serve_task, &a, NULL, NULL);
  enum { N = 20 };
  int ok = 0;
  client cs[N];
  weft_group *cg = weft_group_open();
  for (int i = 0; i < N; i++) {
    cs[i] = (client){.port = port, .id = i, .ok = &ok};
    weft_group_spawn(cg, client_task, &cs[i], NULL);
  }
  weft_errors *errs = NULL;
  if (weft_group_close(cg, &errs)) weft_errors_print(errs, 2);
  weft_errors_free(errs);
  printf("self-test: %d of %d clients got their echo\n", ok, N);
  int rc = weft_server_shutdown(a.srv, weft_now() + WEFT_SEC(2));
  weft_group_close(g, NULL);
  weft_server_close(a.srv);
  printf("self-test: shutdown %s, serve returned %s\n", rc ? weft_strerror(rc) : "0",
         a.serve_rc ? weft_strerror(a.serve_rc) : "0");
  return ok == N && rc == 0 && a.serve_rc == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc < 2) return weft_run(selftest_main, NULL);
  int port = atoi(argv[argc - 1]);
  if (port < 1 || port > 65535) {
    fprintf(stderr, "usage: %s [PORT]\n", argv[0]);
    return 2;
  }
  return weft_run(serve_main, &port);
}
