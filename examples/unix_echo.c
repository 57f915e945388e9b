/*
 * unix_echo.c -- an echo server on a Unix socket (a path, or "@name" in
 * Linux's abstract namespace), with line-by-line echo and a client.
 *
 *   gcc -I include examples/unix_echo.c -L build/lib -lweft -o unix_echo && LD_LIBRARY_PATH=build/lib ./unix_echo [PATH]
 *
 * asyncio.start_unix_server(cb, path)   weft_unix_listen(path, &opts)
 * asyncio.open_unix_connection(path)    weft_unix_connect(path, NULL)
 * reader.readline()                     weft_stream_readline(s, &line)
 *
 * With a PATH (the last argument) it serves there until SIGINT or SIGTERM
 * (try: socat - UNIX-CONNECT:PATH, or ABSTRACT-CONNECT:name for "@name");
 * the socket file is removed at the end. Without one it runs a self-test
 * on a path and on an abstract name and exits 0 when every line came back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weft.h"

/* Echoes line by line; "quit" ends the connection. */
static int echo_lines(weft_stream *c, void *arg) {
  (void)arg;
  const char *line;
  ssize_t n;
  while ((n = weft_stream_readline(c, &line)) > 0) {
    if (n >= 4 && !memcmp(line, "quit", 4)) return 0;
    int rc = weft_stream_write(c, line, (size_t)n);
    if (rc) return rc;
  }
  return (int)n;
}

static int serve_task(void *arg) {
  int rc = weft_server_serve(arg, echo_lines, NULL);
  return rc == -ECANCELED ? 0 : rc;
}

/* ---- serving until a signal --------------------------------------- */

static int wait_signal(void *arg) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) return weft_fail(-errno, "signalfd");
  int rc = weft_wait_fd(fd, WEFT_READABLE);
  weft_fd_close(fd);
  if (rc < 0) return rc;
  weft_server_shutdown(arg, weft_now() + WEFT_SEC(5));
  return 0;
}

static int serve_main(void *arg) {
  const char *path = arg;
  weft_server *srv = weft_unix_listen(path, NULL);
  if (!srv) {
    fprintf(stderr, "unix_echo: %s: %s\n", path, weft_strerror(errno));
    return 1;
  }
  weft_group *g = weft_group_open();
  if (weft_group_start(g, serve_task, srv, NULL, NULL) == 0) {
    printf("unix_echo: serving on %s (Ctrl-C stops)\n", path);
    fflush(stdout);
    weft_group_spawn(g, wait_signal, srv, NULL);
  }
  int rc = weft_group_close(g, NULL);
  weft_server_close(srv); /* removes the socket file */
  return rc ? 1 : 0;
}

/* ---- self-test --------------------------------------------------------- */

static int unexpected;

static void check(int ok, const char *what, const char *where) {
  printf("   %s %s (%s)\n", ok ? "ok " : "UNEXPECTED:", what, where);
  if (!ok) unexpected++;
}

static void try_one(const char *path) {
  weft_server *srv = weft_unix_listen(path, NULL);
  check(srv != NULL, "listening", path);
  if (!srv) return;
  weft_group *g = weft_group_open();
  weft_group_start(g, serve_task, srv, NULL, NULL);
  weft_stream *c = weft_unix_connect(path, NULL);
  check(c != NULL, "connected", path);
  if (c) {
    const char *lines[] = {"first line\n", "second line\n", "quit\n"};
    int good = 0;
    for (int i = 0; i < 2; i++) {
      const char *got;
      weft_stream_write(c, lines[i], strlen(lines[i]));
      ssize_t n = weft_stream_readline(c, &got);
      good += n == (ssize_t)strlen(lines[i]) && !memcmp(got, lines[i], (size_t)n);
    }
    check(good == 2, "two lines echoed", path);
    weft_stream_write(c, lines[2], strlen(lines[2]));
    check(weft_stream_read(c, (char[8]){0}, 8) == 0, "\"quit\" ends it", path);
    weft_stream_close(c);
  }
  weft_server_stop(srv);
  weft_group_close(g, NULL);
  weft_server_close(srv);
  struct stat st;
  if (path[0] != '@') check(stat(path, &st) != 0, "socket file removed", path);
}

static int selftest_main(void *arg) {
  (void)arg;
  char path[64], name[64];
  snprintf(path, sizeof path, "/tmp/weft-unix-echo-%d.sock", (int)getpid());
  snprintf(name, sizeof name, "@weft-unix-echo-%d", (int)getpid());
  try_one(path);
  try_one(name);
  weft_stream *c = weft_unix_connect(path, NULL);
  check(!c && errno == ENOENT, "nobody there: ENOENT", path);
  return unexpected ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    int rc = weft_run(selftest_main, NULL);
    printf("unix_echo self-test: %s\n", rc ? "FAILED" : "passed");
    return rc;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  return weft_run(serve_main, argv[argc - 1]);
}
