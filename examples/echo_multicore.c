/*
 * echo_multicore.c -- one loop per core: an echo server on N threads,
 * each with its own loop and its own listening socket on the same port
 * (SO_REUSEPORT: the kernel spreads new connections over them). The
 * answer for a program that outgrows one core: nothing is shared between
 * the loops, so nothing needs a lock.
 *
 *   example-echo_multicore [LOOPS] PORT   serve on 127.0.0.1:PORT with
 *                                         LOOPS loops (default: one per CPU)
 *   example-echo_multicore                self-test: 2 server loops and a
 *                                         client loop, 64 connections; each
 *                                         server loop must serve some
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft.h"

typedef struct shared shared;

typedef struct server_arg {
  shared *sh;
  int index;
  weft_server *_Atomic srv; /* published once listening */
  weft_loop *_Atomic loop;
  atomic_int served;        /* connections handled */
} server_arg;

struct shared {
  int port;
  int nservers;
  server_arg *servers;
  atomic_int failures;
};

static int echo(weft_stream *conn, void *arg) {
  server_arg *a = arg;
  atomic_fetch_add(&a->served, 1);
  /* One buffer per loop, shared by its connections (see echo_server.c). */
  static _Thread_local char buf[65536];
  ssize_t n;
  while ((n = weft_stream_read(conn, buf, sizeof buf)) > 0) {
    int rc = weft_stream_write(conn, buf, (size_t)n);
    if (!rc) rc = weft_stream_drain(conn);
    if (rc) return rc;
  }
  return n < 0 ? (int)n : 0;
}

/* One server loop: listen on the shared port with SO_REUSEPORT, serve
 * until stopped. */
static int server_main(void *arg) {
  server_arg *a = arg;
  weft_listen_opts o = {.reuse_port = true};
  weft_server *srv = weft_tcp_listen("127.0.0.1", a->sh->port, &o);
  if (!srv) {
    fprintf(stderr, "loop %d: listen on port %d: %s\n", a->index, a->sh->port,
            weft_strerror(-errno));
    return -errno;
  }
  atomic_store(&a->loop, weft_loop_current());
  atomic_store(&a->srv, srv);
  int rc = weft_server_serve(srv, echo, a);
  weft_server_close(srv);
  return rc;
}

/* ---- self-test ------------------------------------------------------- */

enum { NCONN = 64, ROUNDS = 8 };

static int client(void *arg) {
  shared *sh = arg;
  weft_stream *s = weft_tcp_connect("127.0.0.1", sh->port, NULL);
  if (!s) return -errno;
  char out[100], in[100];
  int rc = 0;
  for (int r = 0; r < ROUNDS && !rc; r++) {
    snprintf(out, sizeof out, "round %d of task %llu", r,
             (unsigned long long)weft_task_id(weft_current()));
    size_t len = strlen(out);
    rc = weft_stream_write(s, out, len);
    if (!rc) rc = weft_stream_read_exactly(s, in, len);
    if (!rc && memcmp(in, out, len) != 0) rc = -EPROTO;
  }
  int crc = weft_stream_close(s);
  return rc ? rc : crc;
}

static void stop_cb(void *arg) { weft_server_stop(arg); }

static int client_main(void *arg) {
  shared *sh = arg;
  /* Wait until every server loop listens. */
  for (int i = 0; i < sh->nservers; i++)
    while (!atomic_load(&sh->servers[i].srv)) weft_sleep(WEFT_MS(1));
  weft_task *t[NCONN];
  for (int i = 0; i < NCONN; i++) t[i] = weft_spawn(client, sh, NULL);
  for (int i = 0; i < NCONN; i++) {
    int rc = t[i] ? weft_join(t[i]) : -errno;
    if (rc) {
      fprintf(stderr, "client %d: %s\n", i, weft_strerror(rc));
      atomic_fetch_add(&sh->failures, 1);
    }
  }
  for (int i = 0; i < sh->nservers; i++)
    weft_loop_call(atomic_load(&sh->servers[i].loop), stop_cb,
                   atomic_load(&sh->servers[i].srv));
  return 0;
}

/* A free port: bind port 0, read it, close (the server loops then bind
 * it with SO_REUSEPORT). */
static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  socklen_t len = sizeof sa;
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return ntohs(sa.sin_port);
}

typedef struct {
  shared *sh;
  server_arg *srv; /* NULL: the client */
} role;

static int role_main(void *arg) {
  role *r = arg;
  return r->srv ? server_main(r->srv) : client_main(r->sh);
}

static int self_test(void) {
  server_arg servers[2] = {{.index = 0}, {.index = 1}};
  shared sh = {.port = free_port(), .nservers = 2, .servers = servers};
  if (sh.port < 0) return 1;
  role roles[3] = {{&sh, &servers[0]}, {&sh, &servers[1]}, {&sh, NULL}};
  void *args[3] = {&roles[0], &roles[1], &roles[2]};
  for (int i = 0; i < 2; i++) servers[i].sh = &sh;
  int results[3];
  int rc = weft_run_threads(3, role_main, args, results);
  int served0 = atomic_load(&servers[0].served);
  int served1 = atomic_load(&servers[1].served);
  printf("port %d: loop 0 served %d, loop 1 served %d connections\n", sh.port,
         served0, served1);
  if (rc || results[0] || results[1] || results[2] ||
      atomic_load(&sh.failures) || served0 + served1 != NCONN || !served0 ||
      !served1) {
    fprintf(stderr, "self-test failed (rc %d, results %d %d %d)\n", rc,
            results[0], results[1], results[2]);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) return self_test();
  int port = atoi(argv[argc - 1]);
  long n = argc > 2 ? strtol(argv[1], NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
  if (port <= 0 || port > 65535 || n < 1 || n > 1024) {
    fprintf(stderr, "usage: %s [LOOPS] PORT\n", argv[0]);
    return 2;
  }
  shared sh = {.port = port, .nservers = (int)n};
  server_arg *servers = calloc((size_t)n, sizeof *servers);
  void **args = calloc((size_t)n, sizeof *args);
  if (!servers || !args) return 1;
  sh.servers = servers;
  for (long i = 0; i < n; i++) {
    servers[i].sh = &sh;
    servers[i].index = (int)i;
    args[i] = &servers[i];
  }
  int rc = weft_run_threads((size_t)n, server_main, args, NULL);
  free(servers);
  free(args);
  return rc ? 1 : 0;
}
