/*
 * Debug mode: the diagnostics it prints. Each test runs weft in a child
 * process with stderr captured in a pipe.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/wait.h>

#include "core/internal.h"
#include "helpers.h"

#include "ctx/valgrind_compat.h"

typedef struct {
  char out[8192];
  int status;
} child_run;

/* Runs weft_run_with(cfg, main, arg) in a child process, with its stderr
 * in r->out; the child exits 0 when main returned 0. */
static void run_child(const weft_config *cfg, weft_fn main, void *arg,
                      child_run *r) {
  int p[2];
  cr_assert_eq(pipe(p), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    dup2(p[1], 2);
    close(p[0]);
    _exit(weft_run_with(cfg, main, arg) == 0 ? 0 : 1);
  }
  close(p[1]);
  size_t n = 0;
  ssize_t k;
  while (n + 1 < sizeof r->out &&
         (k = read(p[0], r->out + n, sizeof r->out - 1 - n)) > 0)
    n += (size_t)k;
  r->out[n] = 0;
  close(p[0]);
  cr_assert_eq(waitpid(pid, &r->status, 0), pid);
}

/* The defaults with debug mode on, or off (debug 0). */
/* A root that runs one named child and returns its result. */
typedef struct {
  weft_fn fn;
  const char *name;
  size_t stack_size;
} named_child;
static int join_named(void *arg) {
  named_child *n = arg;
  weft_spawn_opts o = {.name = n->name, .stack_size = n->stack_size};
  return weft_join(weft_spawn(n->fn, NULL, &o));
}

static weft_config config(int debug) {
  weft_config c;
  weft_config_init(&c);
  c.debug = debug;
  return c;
}

static int busy(void *arg) {
  (void)arg;
  int64_t end = weft_now() + WEFT_MS(150);
  while (weft_now() < end) {
  }
  return 0;
}

/* A step over 100 ms without a checkpoint is reported with the task's
 * name and duration. */
Test(debug, long_step_warning, .timeout = 10) {
  child_run r;
  weft_config c = config(1);
  named_child n = {busy, "hog", 0};
  run_child(&c, join_named, &n, &r);
  cr_assert(WIFEXITED(r.status));
  cr_assert_not_null(strstr(r.out, "task 'hog' (id 2, function "), "%s", r.out);
  cr_assert_not_null(strstr(r.out, "without a checkpoint"), "%s", r.out);
}

static int nothing(void *arg) {
  (void)arg;
  return 0;
}
static int leak_main(void *arg) {
  (void)arg;
  weft_spawn_opts o = {.name = "forgotten"};
  weft_spawn(nothing, NULL, &o);
  return weft_sleep(WEFT_MS(1));
}

/* Tasks whose handle was never joined or detached are listed at exit,
 * as is the stack high-water mark. */
Test(debug, unjoined_and_high_water, .timeout = 10) {
  child_run r;
  weft_config c = config(1);
  run_child(&c, leak_main, NULL, &r);
  cr_assert(WIFEXITED(r.status));
  cr_assert_not_null(strstr(r.out, "'forgotten' (id 2, function "), "%s", r.out);
  cr_assert_not_null(strstr(r.out, "weft: info: stack high-water mark"), "%s", r.out);
}

static int no_debug_main(void *arg) {
  (void)arg;
  weft_spawn(nothing, NULL, NULL);
  return 0;
}

/* Without debug mode weft prints nothing. */
Test(debug, silent_when_off, .timeout = 10) {
  child_run r;
  weft_config c = config(0);
  run_child(&c, no_debug_main, NULL, &r);
  cr_assert(WIFEXITED(r.status));
  cr_assert_str_eq(r.out, "");
}

static volatile int depth_limit = 1 << 30;
static int __attribute__((noinline)) recurse(volatile char *prev, int depth) {
  volatile char buf[1024];
  buf[0] = (char)depth;
  buf[1023] = prev ? prev[0] : 0;
  if (depth > depth_limit) return 0;
  return recurse(buf, depth + 1) + buf[5];
}
static int deep(void *arg) {
  (void)arg;
  return recurse(NULL, 0);
}

/* A stack overflow into the guard page names the task, then the process
 * dies of SIGSEGV as it would anyway. */
Test(debug, overflow_names_task, .timeout = 20) {
#if defined(__SANITIZE_ADDRESS__)
  cr_skip_test("AddressSanitizer reports stack overflows itself");
#endif
  child_run r;
  weft_config c = config(1);
  named_child n = {deep, "deep", 64 * 1024};
  run_child(&c, join_named, &n, &r);
  cr_assert(WIFSIGNALED(r.status));
  cr_assert_eq(WTERMSIG(r.status), SIGSEGV);
  cr_assert_not_null(strstr(r.out, "stack overflow in task 'deep'"), "%s", r.out);
}

static int smash(void *arg) {
  (void)arg;
  weft_task *t = weft_current();
  *(volatile uint64_t *)t->stack->lo = 0; /* what an overflow would do */
  return weft_yield();
}

/* On a stack without a guard page, debug mode checks a canary at every
 * switch and names the task whose stack overflowed. */
Test(debug, canary_names_task, .timeout = 10) {
  child_run r;
  weft_config c = config(1);
  c.guard_pages = 0;
  named_child n = {smash, "smasher", 0};
  run_child(&c, join_named, &n, &r);
  cr_assert(WIFSIGNALED(r.status));
  cr_assert_eq(WTERMSIG(r.status), SIGABRT);
  cr_assert_not_null(strstr(r.out, "stack overflow in task 'smasher'"), "%s", r.out);
}

static int sleeper(void *arg) {
  (void)arg;
  return weft_sleep(WEFT_MS(20));
}
static int many_main(void *arg) {
  int n = *(int *)arg;
  weft_group *g = weft_group_open();
  for (int i = 0; i < n; i++) weft_group_spawn(g, sleeper, NULL, NULL);
  return weft_group_close(g, NULL);
}

/* More tasks alive than the mapping budget allows guards for: the rest
 * run on unguarded stacks, debug mode says so once, nothing fails. On a
 * kernel with MADV_GUARD_INSTALL there is no budget: all are guarded and
 * nothing is reported. */
Test(debug, guard_fallback_reported, .timeout = 60) {
#if defined(__SANITIZE_THREAD__)
  cr_skip_test("ThreadSanitizer cannot map its shadow beside 17,000 stacks");
#endif
  if (RUNNING_ON_VALGRIND)
    cr_skip_test("valgrind cannot keep 17,000 stacks' worth of mappings");
  int n = 17000; /* past the default budget of max_map_count / 4 */
  FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
  unsigned long m = 0;
  if (f && fscanf(f, "%lu", &m) == 1 && m / 4 + 1000 < 200000) n = (int)(m / 4 + 1000);
  if (f) fclose(f);
  child_run r;
  weft_config c = config(1);
  run_child(&c, many_main, &n, &r);
  cr_assert(WIFEXITED(r.status));
  cr_assert_eq(WEXITSTATUS(r.status), 0, "%s", r.out);
  if (weft__stack_guard_install_supported())
    cr_assert_null(strstr(r.out, "no guard page"), "%s", r.out);
  else
    cr_assert_not_null(strstr(r.out, "no guard page"), "%s", r.out);
}

/* Checkpoints called outside a task (here from a timer callback, on the
 * loop's thread but in no task) go through the one misuse path: debug
 * mode names each function. */
static void misuse_cb(void *arg) {
  int *rc = arg;
  rc[0] = weft_yield();
  rc[1] = weft_sleep(1);
  rc[2] = weft_sleep_until(0);
  rc[3] = weft_check_cancel();
  rc[4] = weft_wait_fd_until(0, WEFT_READABLE, 0);
}
static int misuse_main(void *arg) {
  (void)arg;
  static int rc[5];
  weft_call_handle h = {0};
  weft_call_later(&h, 0, misuse_cb, rc);
  weft_sleep(WEFT_MS(5));
  for (int i = 0; i < 5; i++)
    if (rc[i] != WEFT_ENOTASK) return -EPROTO;
  return 0;
}

Test(debug, checkpoints_outside_task_named, .timeout = 10) {
  weft_config c = config(1);
  child_run r;
  run_child(&c, misuse_main, NULL, &r);
  cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s", r.out);
  const char *names[] = {"weft_yield", "weft_sleep", "weft_sleep_until",
                         "weft_check_cancel", "weft_wait_fd"};
  for (int i = 0; i < 5; i++)
    cr_assert_not_null(strstr(r.out, names[i]), "no report for %s: %s",
                       names[i], r.out);
}
