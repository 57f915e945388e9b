/*
 * udp_echo.c -- a UDP echo server (asyncio's DatagramProtocol echo).
 *
 *   example-udp_echo            self-test: serves on a free port of
 *                               127.0.0.1, echoes datagrams to three
 *                               client tasks, checks them, exits 0
 *   example-udp_echo PORT       echoes on every address, port PORT, until
 *                               SIGINT or SIGTERM
 *
 *   socat - UDP:127.0.0.1:PORT   (type lines: each comes back)
 *
 * asyncio                                weft
 * loop.create_datagram_endpoint(         weft_udp_bind(host, port, NULL)
 *     local_addr=(host, port))
 * ... remote_addr=(host, port)           weft_udp_connect(host, port, NULL)
 * transport.sendto(data, addr)           weft_udp_send_to(u, buf, n, addr, len)
 * datagram_received(data, addr)          n = weft_udp_recv(u, buf, cap, &from, &len)
 * transport.close()                      weft_udp_close(u)
 * loop.add_signal_handler(SIGTERM, ...)  weft_signal_open(&set), weft_signal_wait
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft.h"

#define MAX_DGRAM 65536

/* Echoes every datagram back to its sender until cancelled; then it
 * returns -ECANCELED, as a cancelled task should (a 0 would tell its
 * canceller it finished on its own; debug mode reports that). */
static int echo_server(void *arg) {
  weft_udp *u = arg;
  static char buf[MAX_DGRAM]; /* one server per process: no stack copy */
  for (unsigned k = 1;; k++) {
    /* recv does not wait while datagrams keep coming: under a flood, let
     * the other tasks (the signal watcher) run now and then. */
    if (k % 64 == 0 && weft_yield() == -ECANCELED) return -ECANCELED;
    struct sockaddr_storage from;
    socklen_t fl;
    ssize_t n = weft_udp_recv(u, buf, sizeof buf, &from, &fl);
    if (n == -ECANCELED) return -ECANCELED;
    if (n < 0) {
      /* -EMSGSIZE cannot happen with a 64 KiB buffer; anything else
       * (say an ICMP error left on the socket) is one datagram lost. */
      continue;
    }
    int rc = weft_udp_send_to(u, buf, (size_t)n, (struct sockaddr *)&from, fl);
    if (rc == -ECANCELED) return -ECANCELED;
  }
}

/* ---------------------------------------------------------------- */
/* Serving until a signal                                             */
/* ---------------------------------------------------------------- */

typedef struct {
  int port;
  weft_signal *sig; /* SIGINT, SIGTERM */
  weft_group *g;
} serve_state;

static int signal_waiter(void *arg) {
  serve_state *s = arg;
  int rc = weft_signal_wait(s->sig);
  if (rc < 0) return rc; /* -ECANCELED is no failure for the group */
  fprintf(stderr, "udp_echo: signal %d, stopping\n", rc);
  weft_group_cancel(s->g);
  return 0;
}

static int serve_main(void *arg) {
  serve_state *s = arg;
  /* Caught from here on, whatever thread the kernel gives them to;
   * weft_signal_close (or the end of weft_run) puts the previous
   * handlers back. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  s->sig = weft_signal_open(&set);
  if (!s->sig) return -errno;
  weft_udp *u = weft_udp_bind(NULL, s->port, NULL);
  if (!u) {
    int e = errno;
    fprintf(stderr, "udp_echo: bind port %d: %s\n", s->port, weft_strerror(e));
    weft_signal_close(s->sig);
    return -e;
  }
  printf("udp_echo: echoing on UDP port %d (Ctrl-C stops)\n", weft_udp_port(u));
  fflush(stdout);
  s->g = weft_group_open();
  if (!s->g) {
    int e = errno;
    weft_udp_close(u);
    weft_signal_close(s->sig);
    return -e;
  }
  weft_group_spawn(s->g, echo_server, u, NULL);
  weft_group_spawn(s->g, signal_waiter, s, NULL);
  int rc = weft_group_close(s->g, NULL);
  weft_udp_close(u);
  weft_signal_close(s->sig);
  return rc;
}

static int serve(int port) {
  serve_state s = {.port = port};
  int rc = weft_run(serve_main, &s);
  if (rc) fprintf(stderr, "udp_echo: %s\n", weft_strerror(rc));
  return rc ? 1 : 0;
}

/* ---------------------------------------------------------------- */
/* Self-test                                                          */
/* ---------------------------------------------------------------- */

typedef struct {
  int port;
  int id;
  int failures;
} client_arg;

/* Sends datagrams of several sizes over a connected endpoint and checks
 * each echo, with a deadline for every reply. */
static int client(void *arg) {
  client_arg *c = arg;
  weft_udp *u = weft_udp_connect("127.0.0.1", c->port, NULL);
  if (!u) return -errno;
  static const size_t sizes[] = {0, 1, 13, 512, 1472, 9000, 60000};
  char *out = malloc(60000), *in = malloc(60001);
  int rc = out && in ? 0 : -ENOMEM;
  for (size_t i = 0; rc == 0 && i < sizeof sizes / sizeof *sizes; i++) {
    size_t n = sizes[i];
    for (size_t k = 0; k < n; k++) out[k] = (char)(c->id * 31 + i * 7 + k);
    rc = weft_udp_send(u, out, n);
    if (rc) break;
    weft_scope sc;
    weft_scope_open_after(&sc, WEFT_SEC(5));
    ssize_t got = weft_udp_recv(u, in, 60001, NULL, NULL);
    weft_scope_close(&sc);
    if (got != (ssize_t)n || memcmp(in, out, n) != 0) {
      fprintf(stderr, "client %d: datagram of %zu bytes: got %zd (%s)\n", c->id, n,
              got, got < 0 ? weft_strerror((int)got) : "bytes differ");
      c->failures++;
      rc = got < 0 ? (int)got : -EPROTO;
    }
  }
  free(out);
  free(in);
  weft_udp_close(u);
  return rc;
}

static int selftest_main(void *arg) {
  int *failures = arg;
  weft_udp *u = weft_udp_bind("127.0.0.1", 0, NULL);
  if (!u) return -errno;
  int port = weft_udp_port(u);
  /* Room for three 60 KB datagrams at once (weft_udp_fd: for setsockopt). */
  int rcvbuf = 1 << 20;
  setsockopt(weft_udp_fd(u), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  printf("udp_echo: self-test on 127.0.0.1:%d\n", port);
  weft_task *srv = weft_spawn(echo_server, u, NULL);
  if (!srv) {
    weft_udp_close(u);
    return -errno;
  }
  client_arg c[3];
  weft_group *g = weft_group_open();
  for (int i = 0; i < 3; i++) {
    c[i] = (client_arg){.port = port, .id = i};
    weft_group_spawn(g, client, &c[i], NULL);
  }
  weft_errors *errs = NULL;
  int rc = weft_group_close(g, &errs);
  if (rc) weft_errors_print(errs, 2);
  weft_errors_free(errs);
  for (int i = 0; i < 3; i++) *failures += c[i].failures;
  weft_cancel(srv);
  weft_join(srv);
  weft_udp_close(u);
  return rc;
}

int main(int argc, char **argv) {
  if (argc > 1) {
    char *end;
    long port = strtol(argv[argc - 1], &end, 10);
    if (*end || port < 0 || port > 65535) {
      fprintf(stderr, "usage: %s [PORT]\n", argv[0]);
      return 2;
    }
    return serve((int)port);
  }
  int failures = 0;
  int rc = weft_run(selftest_main, &failures);
  if (rc || failures) {
    fprintf(stderr, "udp_echo: self-test failed: %s, %d bad echoes\n",
            weft_strerror(rc), failures);
    return 1;
  }
  printf("udp_echo: self-test passed (3 clients, 7 sizes each, 0 to 60000 bytes)\n");
  return 0;
}
