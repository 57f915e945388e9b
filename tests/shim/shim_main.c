/*
 * Runner of the Criterion shim (see criterion/criterion.h).
 *
 * Runs each registered test in a forked child, one at a time, in suite/name
 * order. A test passes when it returns (or exits with its .exit_code, or
 * dies of its .signal) without a failed assertion. The parent enforces the
 * timeout itself and kills the child's whole process group, so a test that
 * blocks or catches SIGALRM still cannot hang the run.
 *
 *   test_x [--filter PATTERN | --filter=PATTERN | SUBSTRING] [--list]
 *          [--timeout=SECONDS] [-q]
 *
 * PATTERN is a glob on "suite/name" as in Criterion (CRITERION_TEST_PATTERN
 * is read too); SUBSTRING matches anywhere in "suite/name". Other Criterion
 * options (--jobs, --verbose, ...) are accepted and ignored.
 * Environment: WEFT_TIMEOUT_SCALE (default 1) multiplies every timeout;
 * WEFT_TEST_TIMEOUT (seconds) replaces the 30 s default.
 * Exit status: 0 if no test failed, 1 otherwise, 2 on usage errors.
 */
#define _GNU_SOURCE
#include "criterion/criterion.h"

#include <errno.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT 30.0

enum { ST_RUNNING, ST_DONE, ST_SKIPPED };

/* Shared with the child: what the exit status alone cannot tell. */
struct shared {
  volatile int state;
  volatile int failed;
};

static struct wshim_test *tests;
static struct wshim_suite *suites;
static struct shared *shared;
static size_t ntests;

void wshim_register_test_(struct wshim_test *t) {
  t->next = tests;
  tests = t;
  ntests++;
}

void wshim_register_suite_(struct wshim_suite *s) {
  s->next = suites;
  suites = s;
}

/* ------------------------------------------------------------ in the child */

static void vreport(const char *file, unsigned line, const char *what,
                    const char *va, const char *vb, const char *fmt,
                    va_list ap) {
  fprintf(stderr, "[----] %s:%u: Assertion failed: %s\n", file, line, what);
  if (va && vb && (*va || *vb))
    fprintf(stderr, "[----]   left: %s\n[----]   right: %s\n", va, vb);
  if (fmt && *fmt) {
    fputs("[----]   ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
  }
  fflush(stderr);
}

static void failed(int fatal) {
  if (shared)
    shared->failed = 1;
  if (fatal) {
    fflush(stdout);
    fflush(stderr);
    /* _exit: the test stopped half-way; leak checkers would only add
     * noise about what it still held. */
    _exit(1);
  }
}

void wshim_fail_(int fatal, const char *file, unsigned line, const char *what,
                 const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(file, line, what, NULL, NULL, fmt, ap);
  va_end(ap);
  failed(fatal);
}

void wshim_cmp_fail_(int fatal, const char *file, unsigned line,
                     const char *what, const char *va, const char *vb,
                     const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(file, line, what, va, vb, fmt, ap);
  va_end(ap);
  failed(fatal);
}

void wshim_skip_(const char *file, unsigned line, const char *fmt, ...) {
  fprintf(stderr, "[----] %s:%u: skipped", file, line);
  if (fmt && *fmt) {
    va_list ap;
    va_start(ap, fmt);
    fputs(": ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
  }
  fputc('\n', stderr);
  if (shared)
    shared->state = ST_SKIPPED;
  fflush(stdout);
  fflush(stderr);
  _exit(0);
}

void cr_log(enum criterion_severity severity, const char *msg, ...) {
  static const char *const tag[] = {"INFO", "WARN", "ERR "};
  va_list ap;
  va_start(ap, msg);
  fprintf(stderr, "[%s] ", tag[severity <= CR_LOG_ERROR ? severity : CR_LOG_ERROR]);
  vfprintf(stderr, msg, ap);
  fputc('\n', stderr);
  va_end(ap);
}

#define FMT_FN(name, type, promoted, fmt)                                    \
  void name(char *b, size_t n, ...) {                                        \
    va_list ap;                                                              \
    va_start(ap, n);                                                         \
    snprintf(b, n, fmt, (type)va_arg(ap, promoted));                         \
    va_end(ap);                                                              \
  }
FMT_FN(wshim_fmt_i_, int, int, "%d")
FMT_FN(wshim_fmt_u_, unsigned, unsigned, "%u")
FMT_FN(wshim_fmt_l_, long, long, "%ld")
FMT_FN(wshim_fmt_ul_, unsigned long, unsigned long, "%lu")
FMT_FN(wshim_fmt_ll_, long long, long long, "%lld")
FMT_FN(wshim_fmt_ull_, unsigned long long, unsigned long long, "%llu")
FMT_FN(wshim_fmt_d_, double, double, "%.17g")
FMT_FN(wshim_fmt_ld_, long double, long double, "%.21Lg")
FMT_FN(wshim_fmt_p_, void *, void *, "%p")

void wshim_fmt_s_(char *b, size_t n, ...) {
  va_list ap;
  va_start(ap, n);
  const char *s = va_arg(ap, const char *);
  va_end(ap);
  if (!s)
    snprintf(b, n, "NULL");
  else if (strlen(s) + 3 > n)
    snprintf(b, n, "\"%.*s...\"", (int)(n > 8 ? n - 8 : 0), s);
  else
    snprintf(b, n, "\"%s\"", s);
}

void wshim_fmt_none_(char *b, size_t n, ...) {
  if (n)
    b[0] = '\0';
}

/* ------------------------------------------------------------ the runner */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_tests(const void *a, const void *b) {
  const struct wshim_test *x = *(struct wshim_test *const *)a;
  const struct wshim_test *y = *(struct wshim_test *const *)b;
  int c = strcmp(x->suite, y->suite);
  return c ? c : strcmp(x->name, y->name);
}

static const struct criterion_test_extra_data *suite_data(const char *name) {
  for (struct wshim_suite *s = suites; s; s = s->next)
    if (strcmp(s->name, name) == 0)
      return s->data;
  return NULL;
}

/* Test option if set, else the suite's, else 0. */
#define OPT(t, sd, field) ((t)->data->field ? (t)->data->field : (sd) ? (sd)->field : 0)

static int matches(const struct wshim_test *t, const char *glob,
                   const char *substr) {
  char id[512];
  snprintf(id, sizeof(id), "%s/%s", t->suite, t->name);
  if (glob && fnmatch(glob, id, 0) != 0)
    return 0;
  if (substr && !strstr(id, substr))
    return 0;
  return 1;
}

enum outcome { O_PASS, O_FAIL, O_SKIP, O_TIMEOUT, O_CRASH };

static enum outcome run_one(const struct wshim_test *t, double timeout,
                            char *why, size_t whylen) {
  const struct criterion_test_extra_data *sd = suite_data(t->suite);
  void (*init)(void) = OPT(t, sd, init);
  void (*fini)(void) = OPT(t, sd, fini);
  int want_signal = OPT(t, sd, signal);
  int want_code = OPT(t, sd, exit_code);

  shared->state = ST_RUNNING;
  shared->failed = 0;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(why, whylen, "fork: %s", strerror(errno));
    return O_CRASH;
  }
  if (pid == 0) {
    setpgid(0, 0);
    if (init)
      init();
    t->fn();
    if (fini)
      fini();
    shared->state = ST_DONE;
    fflush(stdout);
    exit(0);
  }
  setpgid(pid, pid); /* also here: no window where the child is unkillable as a group */

  int status = 0;
  double deadline = now_s() + timeout;
  long nap_us = 1000;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid)
      break;
    if (r < 0 && errno != EINTR) {
      snprintf(why, whylen, "waitpid: %s", strerror(errno));
      return O_CRASH;
    }
    if (now_s() >= deadline) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
      snprintf(why, whylen, "timed out after %.1f s", timeout);
      return O_TIMEOUT;
    }
    usleep((useconds_t)nap_us);
    if (nap_us < 20000)
      nap_us *= 2;
  }
  kill(-pid, SIGKILL); /* whatever the test left running in its group */

  if (shared->state == ST_SKIPPED)
    return O_SKIP;
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    if (want_signal && sig == want_signal && !shared->failed)
      return O_PASS;
    snprintf(why, whylen, "killed by signal %d (%s)%s", sig, strsignal(sig),
             want_signal ? ", not the expected one" : "");
    return O_CRASH;
  }
  int code = WEXITSTATUS(status);
  if (shared->failed) {
    snprintf(why, whylen, "assertion failed");
    return O_FAIL;
  }
  if (want_signal) {
    snprintf(why, whylen, "exited with %d instead of dying of signal %d", code,
             want_signal);
    return O_FAIL;
  }
  if (code != want_code) {
    snprintf(why, whylen, "exit code %d, expected %d%s", code, want_code,
             shared->state == ST_DONE ? " (after the test returned: leak "
                                        "checker or atexit handler?)"
                                      : "");
    return O_FAIL;
  }
  return O_PASS;
}

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [--filter PATTERN] [SUBSTRING] [--list] [--timeout=S] [-q]\n"
          "  PATTERN: glob on suite/name (e.g. 'ctx/*'); SUBSTRING: part of it\n"
          "  env WEFT_TIMEOUT_SCALE multiplies timeouts (default 1)\n",
          argv0);
}

int main(int argc, char **argv) {
  const char *glob = getenv("CRITERION_TEST_PATTERN");
  const char *substr = NULL;
  int list = 0, quiet = 0;
  double def_timeout = DEFAULT_TIMEOUT, scale = 1.0;
  const char *e;

  if ((e = getenv("WEFT_TEST_TIMEOUT")) && atof(e) > 0)
    def_timeout = atof(e);
  if ((e = getenv("WEFT_TIMEOUT_SCALE")) && atof(e) > 0)
    scale = atof(e);

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--filter") == 0 || strcmp(a, "-f") == 0) {
      if (++i >= argc) {
        usage(argv[0]);
        return 2;
      }
      glob = argv[i];
    } else if (strncmp(a, "--filter=", 9) == 0) {
      glob = a + 9;
    } else if (strcmp(a, "--list") == 0 || strcmp(a, "-l") == 0) {
      list = 1;
    } else if (strncmp(a, "--timeout=", 10) == 0) {
      def_timeout = atof(a + 10);
    } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
      quiet = 1;
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(argv[0]);
      return 0;
    } else if (a[0] == '-') {
      /* A Criterion option (--jobs=1, --verbose, --no-early-exit...). */
    } else {
      substr = a;
    }
  }

  struct wshim_test **v = calloc(ntests ? ntests : 1, sizeof(*v));
  if (!v) {
    perror("calloc");
    return 2;
  }
  size_t n = 0;
  for (struct wshim_test *t = tests; t; t = t->next)
    v[n++] = t;
  qsort(v, n, sizeof(*v), cmp_tests);

  if (list) {
    for (size_t i = 0; i < n; i++)
      if (matches(v[i], glob, substr))
        printf("%s/%s\n", v[i]->suite, v[i]->name);
    free(v);
    return 0;
  }

  shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) {
    perror("mmap");
    free(v);
    return 2;
  }

  size_t tested = 0, passed = 0, failures = 0, crashes = 0, skipped = 0;
  double t_all = now_s();
  for (size_t i = 0; i < n; i++) {
    const struct wshim_test *t = v[i];
    if (!matches(t, glob, substr))
      continue;
    const struct criterion_test_extra_data *sd = suite_data(t->suite);
    if (t->data->disabled || (sd && sd->disabled)) {
      skipped++;
      fprintf(stderr, "[SKIP] %s::%s: disabled\n", t->suite, t->name);
      continue;
    }
    double timeout = OPT(t, sd, timeout);
    if (timeout <= 0)
      timeout = def_timeout;
    timeout *= scale;

    char why[256] = "";
    double t0 = now_s();
    if (!quiet) {
      fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
      fflush(stdout);
    }
    enum outcome o = run_one(t, timeout, why, sizeof(why));
    double dt = now_s() - t0;
    tested++;
    switch (o) {
    case O_PASS:
      passed++;
      if (!quiet)
        fprintf(stderr, "[PASS] %s::%s: (%.2fs)\n", t->suite, t->name, dt);
      break;
    case O_SKIP:
      skipped++;
      tested--;
      fprintf(stderr, "[SKIP] %s::%s\n", t->suite, t->name);
      break;
    case O_FAIL:
      failures++;
      fprintf(stderr, "[FAIL] %s::%s: %s (%s:%u, %.2fs)\n", t->suite, t->name, why,
             t->file, t->line, dt);
      break;
    case O_TIMEOUT:
    case O_CRASH:
      crashes++;
      fprintf(stderr, "[FAIL] %s::%s: %s%s (%s:%u, %.2fs)\n", t->suite, t->name,
             o == O_TIMEOUT ? "" : "CRASH: ", why, t->file, t->line, dt);
      break;
    }
    fflush(stdout);
  }
  fprintf(stderr, "[====] Synthesis: Tested: %zu | Passing: %zu | Failing: %zu | "
         "Crashing: %zu | Skipped: %zu (%.2fs)\n",
         tested, passed, failures, crashes, skipped, now_s() - t_all);
  munmap(shared, sizeof(*shared));
  free(v);
  return failures || crashes ? 1 : 0;
}
