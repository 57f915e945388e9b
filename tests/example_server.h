/*
 * example_server.h -- for tests that run an example binary as a server
 * against clients nobody here wrote: finds bin/example-<name> next to
 * the test, starts it on a free port, waits for its banner, and stops it
 * with a signal. Also free_port. Include after helpers.h.
 *
 * The server runs in debug mode (WEFT_DEBUG=1) with its stderr kept in a
 * memfd: once it has exited, server_wait copies that to the test's
 * stderr and fails the test on a debug-mode report ("weft: debug: ").
 */
#ifndef WEFT_TEST_EXAMPLE_SERVER_H
#define WEFT_TEST_EXAMPLE_SERVER_H

#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

extern char **environ;

/* The example binary bin/example-<name> next to this test. */
static inline bool example_path(const char *name, char *out, size_t cap) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return false;
  self[n] = '\0';
  snprintf(out, cap, "%s/example-%s", dirname(self), name);
  return access(out, X_OK) == 0;
}

static inline int free_port(void) {
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
  int err; /* its stderr (a memfd) */
  int port;
} server;

static inline bool server_try(server *s, const char *path, char *line, size_t cap);

/* Starts example-<name> on a free port (its last argument) and waits for
 * its banner (a line with "serving"). Skips the test when it cannot run
 * here. */
static inline void server_start(server *s, const char *name) {
  char path[PATH_MAX + 32];
  if (!example_path(name, path, sizeof path))
    cr_skip_test("no example-%s next to this test", name);
  char line[256] = "";
  /* The free port may be taken by someone else before the server binds
   * it: then try another. */
  for (int i = 0; i < 3; i++)
    if (server_try(s, path, line, sizeof line)) return;
  cr_assert_fail("the server did not start: [%s]", line);
}

/* environ with WEFT_DEBUG=1 in front of any WEFT_DEBUG of its own: a
 * NULL-terminated array to free (NULL: no memory). */
static inline char **server_env(void) {
  size_t n = 0;
  while (environ[n]) n++;
  char **env = calloc(n + 2, sizeof *env);
  if (!env) return NULL;
  size_t k = 0;
  env[k++] = (char *)"WEFT_DEBUG=1";
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "WEFT_DEBUG=", 11) != 0) env[k++] = environ[i];
  return env;
}

/* One attempt: true once the server says it serves. */
static inline bool server_try(server *s, const char *path, char *line, size_t cap) {
  s->port = free_port();
  cr_assert_gt(s->port, 0);
  char ps[16];
  snprintf(ps, sizeof ps, "%d", s->port);
  int p[2];
  cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
  s->err = memfd_create("server-stderr", MFD_CLOEXEC);
  cr_assert_geq(s->err, 0);
  char **env = server_env();
  cr_assert_not_null(env);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_adddup2(&fa, s->err, 2);
  /* A cross build runs its tests under an emulator (qemu-aarch64), which
   * cannot exec a target binary by itself: CMake names it here. */
  const char *emu = getenv("WEFT_TEST_EMULATOR");
  char *argv[] = {(char *)path, ps, NULL};
  char *eargv[] = {(char *)emu, (char *)path, ps, NULL};
  int rc = emu && *emu ? posix_spawnp(&s->pid, emu, &fa, NULL, eargv, env)
                       : posix_spawn(&s->pid, path, &fa, NULL, argv, env);
  posix_spawn_file_actions_destroy(&fa);
  free(env);
  close(p[1]);
  if (rc != 0) {
    close(p[0]);
    close(s->err);
    cr_skip_test("cannot spawn %s: %s", path, strerror(rc));
  }
  s->out = p[0];
  /* e.g. "http_hello: serving http://127.0.0.1:PORT/ ..." */
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
    close(s->err);
    return false;
  }
  return true;
}

/* Waits up to `secs` s for the server to exit: its wait status, or -1
 * (then it is killed and reaped). */
static inline int server_wait(server *s, int secs) {
  int st = 0;
  pid_t r = 0;
  for (int i = 0; i < secs * 100 && r == 0; i++) {
    r = waitpid(s->pid, &st, WNOHANG);
    if (r == 0) usleep(10000);
  }
  if (r == 0) {
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
  }
  close(s->out);
  /* Its stderr, for the log, then the check: no debug-mode report. */
  off_t size = lseek(s->err, 0, SEEK_END);
  char *buf = malloc(size > 0 ? (size_t)size + 1 : 1);
  cr_assert_not_null(buf);
  ssize_t n = size > 0 ? pread(s->err, buf, (size_t)size, 0) : 0;
  close(s->err);
  buf[n > 0 ? n : 0] = '\0';
  if (n > 0) fprintf(stderr, "%s", buf);
  bool report = strstr(buf, "weft: debug: ") != NULL;
  free(buf);
  cr_assert(!report, "the server made a debug-mode report (above)");
  return r == 0 ? -1 : st;
}

/* SIGTERM; it must exit, with status 0, within 5 s. */
static inline void server_stop(server *s) {
  cr_assert_eq(kill(s->pid, SIGTERM), 0);
  int st = server_wait(s, 5);
  cr_assert_neq(st, -1, "the server did not exit within 5 s of SIGTERM");
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server exited with status 0x%x", st);
}

#endif
