/*
 * graceful_shutdown.c -- a server that drains its connections on SIGTERM,
 * the way asyncio.run ends a service: the first SIGINT or SIGTERM cancels
 * the main task (weft_config.shutdown_signals), which then stops
 * accepting and lets the requests under way finish, up to a deadline; a
 * second SIGINT (Ctrl-C again) ends the process at once.
 *
 *   gcc -I include examples/graceful_shutdown.c -L build/lib -lweft -o graceful_shutdown && LD_LIBRARY_PATH=build/lib ./graceful_shutdown [PORT]
 *
 * asyncio.run(main())                       weft_run_with(&cfg, main_task, arg),
 *   (its SIGINT handling, 3.11+)              cfg.shutdown_signals = true
 * except CancelledError: cleanup            if (rc == -ECANCELED) ... in a shielded scope
 * server.close(); await server.wait_closed() weft_server_shutdown(srv, deadline)
 *
 * The protocol: each line "work N" is answered "done N" after N ms (a
 * request that takes time); anything else gets "? <line>". With a PORT
 * (the last argument) it serves on 127.0.0.1 until a signal, then drains
 * for up to 10 s and exits 0. Without one it runs a self-test: clients
 * send slow requests, the program sends itself SIGTERM while they are
 * under way, and it exits 0 if every request under way was answered and
 * a connection made after the signal was refused.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft.h"

#define DRAIN WEFT_SEC(10)

/* One connection: a request per line, each answered when its work is
 * done. A cancelled handler (the drain's deadline passed) returns
 * -ECANCELED, which the server does not count as a failure. */
static int handler(weft_stream *conn, void *arg) {
  (void)arg;
  for (;;) {
    const char *line;
    ssize_t n = weft_stream_readline(conn, &line);
    if (n <= 0) return (int)n; /* 0: the client is done */
    char req[256], out[300];
    snprintf(req, sizeof req, "%.*s", (int)(line[n - 1] == '\n' ? n - 1 : n), line);
    int ms, len;
    if (sscanf(req, "work %d", &ms) == 1 && ms >= 0 && ms <= 60000) {
      int rc = weft_sleep(WEFT_MS(ms));
      if (rc) return rc;
      len = snprintf(out, sizeof out, "done %d\n", ms);
    } else {
      len = snprintf(out, sizeof out, "? %s\n", req);
    }
    int rc = weft_stream_write(conn, out, (size_t)len);
    if (!rc) rc = weft_stream_drain(conn);
    if (rc) return rc;
  }
}

typedef struct app {
  weft_server *srv;
  int serve_rc;
  int port;     /* self-test: the server's */
  int answered; /* self-test: requests answered right */
  int refused;  /* self-test: late connection refused */
} app;

static int serve_task(void *arg) {
  app *a = arg;
  a->serve_rc = weft_server_serve(a->srv, handler, NULL);
  return a->serve_rc;
}

/* Serves until the main task is cancelled (by a signal), then drains:
 * the code after the cancellation runs in a shielded scope, so that its
 * own waits are not cut short by the cancellation being handled. */
static int serve_until_signal(app *a) {
  weft_task *t = weft_spawn(serve_task, a, &(weft_spawn_opts){.name = "serve"});
  if (!t) return -errno;
  int rc = weft_sleep_until(WEFT_FOREVER); /* a signal makes it -ECANCELED */
  weft_scope shield;
  weft_scope_open_shielded(&shield, WEFT_FOREVER);
  fprintf(stderr, "graceful_shutdown: %s; draining %zu connection(s)\n",
          rc == -ECANCELED ? "signal" : weft_strerror(rc),
          weft_server_connections(a->srv));
  int sd = weft_server_shutdown(a->srv, weft_now() + DRAIN);
  if (sd == -ETIMEDOUT)
    fprintf(stderr, "graceful_shutdown: cancelled the requests left\n");
  weft_join(t);
  weft_server_close(a->srv);
  weft_scope_close(&shield);
  return sd == 0 || sd == -ETIMEDOUT ? 0 : sd;
}

static int serve_main(void *arg) {
  app *a = arg;
  a->srv = weft_tcp_listen("127.0.0.1", a->port, NULL);
  if (!a->srv) {
    fprintf(stderr, "graceful_shutdown: listen on port %d: %s\n", a->port,
            weft_strerror(errno));
    return -errno;
  }
  printf("graceful_shutdown: serving on 127.0.0.1:%d (SIGTERM drains)\n",
         weft_server_port(a->srv));
  fflush(stdout);
  return serve_until_signal(a);
}

/* ---- self-test --------------------------------------------------------- */

/* A client with a slow request under way when the signal comes. Spawned
 * on its own (not a child of main), so main's cancellation is not its. */
static int slow_client(void *arg) {
  app *a = arg;
  weft_stream *s = weft_tcp_connect("127.0.0.1", a->port, NULL);
  if (!s) return -errno;
  const char *line;
  int rc = weft_stream_write(s, "work 300\n", 9);
  ssize_t n = rc ? rc : weft_stream_readline(s, &line);
  if (n == 9 && memcmp(line, "done 300\n", 9) == 0) a->answered++;
  weft_stream_close(s);
  return 0;
}

/* Sends the signal while the requests are under way, then checks that a
 * new connection is refused (the server stopped accepting at once). */
static int signaller(void *arg) {
  app *a = arg;
  weft_sleep(WEFT_MS(100));
  kill(getpid(), SIGTERM);
  weft_sleep(WEFT_MS(50));
  weft_stream *s = weft_tcp_connect("127.0.0.1", a->port, NULL);
  if (!s && errno == ECONNREFUSED) a->refused = 1;
  if (s) weft_stream_close(s);
  return 0;
}

static int selftest_main(void *arg) {
  app *a = arg;
  a->srv = weft_tcp_listen("127.0.0.1", 0, NULL);
  if (!a->srv) return -errno;
  a->port = weft_server_port(a->srv);
  weft_task *c[4];
  for (int i = 0; i < 3; i++) c[i] = weft_spawn(slow_client, a, NULL);
  c[3] = weft_spawn(signaller, a, NULL);
  int rc = serve_until_signal(a);
  /* main is cancelled (the signal): a join here would return -ECANCELED
   * at once and leave the clients unjoined (debug mode reports it). In a
   * shielded scope, as the drain above, the joins wait for them. */
  weft_scope shield;
  weft_scope_open_shielded(&shield, WEFT_FOREVER);
  for (int i = 0; i < 4; i++)
    if (c[i]) weft_join(c[i]);
  weft_scope_close(&shield);
  return rc;
}

int main(int argc, char **argv) {
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.shutdown_signals = true;
  app a = {0};
  if (argc > 1) {
    char *end;
    long port = strtol(argv[argc - 1], &end, 10);
    if (*end || port < 0 || port > 65535) {
      fprintf(stderr, "usage: %s [PORT]\n", argv[0]);
      return 2;
    }
    a.port = (int)port;
    int rc = weft_run_with(&cfg, serve_main, &a);
    return rc == 0 ? 0 : 1;
  }
  int rc = weft_run_with(&cfg, selftest_main, &a);
  printf("self-test: rc %s, %d of 3 requests answered during the drain, "
         "late connection %s\n",
         weft_strerror(rc), a.answered, a.refused ? "refused" : "NOT refused");
  return rc == 0 && a.answered == 3 && a.refused ? 0 : 1;
}
