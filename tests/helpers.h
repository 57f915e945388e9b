/*
 * helpers.h -- small shared helpers for the weft Criterion tests.
 *
 * Only a subset of Criterion is used (Test, cr_assert*, cr_expect*, cr_fail,
 * cr_skip_test, cr_log_info) so the same sources build under the
 * Criterion-compatible shim used for aarch64/qemu runs.
 */
#ifndef WEFT_TEST_HELPERS_H
#define WEFT_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"

/* Entries of a /proc directory (less "." and ".."); -1 if unreadable. */
static inline int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

/* Open fds of the process (in /proc/self/fd, less the directory's own):
 * the I/O tests compare it before and after, so that no fd leaks; -1 if
 * it cannot be read. */
static inline int count_fds(void) {
  int n = count_entries("/proc/self/fd");
  return n < 0 ? -1 : n - 1;
}

/* Threads of the process (in /proc/self/task); -1 if it cannot be read. */
static inline int count_threads(void) { return count_entries("/proc/self/task"); }

/* Whether `name` is an executable on PATH (a peer a test runs). */
static inline bool have_prog(const char *name) {
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

/* Run by an emulator (qemu-user, a cross build: CMake sets the variable). */
static inline bool under_emulator(void) {
  const char *e = getenv("WEFT_TEST_EMULATOR");
  return e && *e;
}

/* Run under valgrind (its preload library is in the environment). */
static inline bool under_valgrind(void) {
  const char *p = getenv("LD_PRELOAD");
  return p && strstr(p, "vgpreload");
}

/* Generous upper bound for "returns at once" / "wakes soon after" checks:
 * tests run in parallel on loaded CI machines and under qemu. */
#define T_SLACK WEFT_SEC(2)

/* An append-only event log: tasks record what happened, the test body
 * compares the sequence after weft_run returns. */
#define LOG_MAX 4096
typedef struct tlog {
  int v[LOG_MAX];
  int n;
} tlog;

static inline void log_add(tlog *l, int x) {
  if (l->n < LOG_MAX)
    l->v[l->n] = x;
  l->n++;
}

/* Asserts that the log holds exactly `n` entries equal to `want`. */
static inline void log_expect(const tlog *l, const int *want, int n) {
  bool same = l->n == n;
  for (int i = 0; same && i < n; i++) same = l->v[i] == want[i];
  if (!same) { /* print the whole log: the shim shows no assertion text */
    fprintf(stderr, "log (%d):", l->n);
    for (int i = 0; i < l->n && i < LOG_MAX; i++) fprintf(stderr, " %d", l->v[i]);
    fprintf(stderr, "\n");
  }
  cr_assert_eq(l->n, n, "log has %d entries, expected %d", l->n, n);
  for (int i = 0; i < n; i++)
    cr_assert_eq(l->v[i], want[i], "log[%d] = %d, expected %d", i, l->v[i],
                 want[i]);
}

/* Reads whatever is available in the read end of a pipe (non-blocking)
 * into buf (NUL-terminated). Returns the number of bytes. */
static inline size_t drain_fd(int fd, char *buf, size_t cap) {
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  size_t n = 0;
  while (n + 1 < cap) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  fcntl(fd, F_SETFL, fl);
  return n;
}

/* Number of lines (newline-terminated) in s. */
static inline int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++)
    if (*s == '\n')
      n++;
  return n;
}

/* Busy-waits (no checkpoint) for ns nanoseconds. */
static inline void busy_wait(int64_t ns) {
  int64_t end = weft_now() + ns;
  while (weft_now() < end) {
  }
}

/* Milliseconds between two weft_now() values, for messages. */
#define MS_OF(ns) ((double)(ns) / 1e6)

/* Spawns fn(arg) with a name; asserts success. */
static inline weft_task *spawn_named(weft_fn fn, void *arg, const char *name) {
  weft_spawn_opts o = {.name = name, .stack_size = 0, .eager = false};
  weft_task *t = weft_spawn(fn, arg, &o);
  cr_assert_not_null(t, "weft_spawn(%s) failed: errno %d", name ? name : "-",
                     errno);
  return t;
}

static inline weft_task *gspawn_named(weft_group *g, weft_fn fn, void *arg,
                                      const char *name) {
  weft_spawn_opts o = {.name = name, .stack_size = 0, .eager = false};
  weft_task *t = weft_group_spawn(g, fn, arg, &o);
  cr_assert_not_null(t, "weft_group_spawn(%s) failed: errno %d",
                     name ? name : "-", errno);
  return t;
}

#endif /* WEFT_TEST_HELPERS_H */
