/*
 * Debug mode: the diagnostics it prints. Each test runs weft in a child
 * process with stderr captured in a pipe.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/wait.h>

#include "core/internal.h"
#include "helpers.h"
#include "example_server.h"

#include "ctx/valgrind_compat.h"

/* Sanitizer builds leave the blocking check out (debug.c). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

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

/* The location a report gives after `key` (e.g. "in task function "),
 * up to the next ';' or line end, into loc. false if there is none. */
static bool location_after(const char *text, const char *key, char *loc,
                           size_t n) {
  const char *p = strstr(text, key);
  if (!p) return false;
  p += strlen(key);
  size_t k = strcspn(p, ";\n");
  if (k == 0 || k >= n) return false;
  memcpy(loc, p, k);
  loc[k] = '\0';
  return true;
}

/* Whether loc, as debug mode prints it, names function fn: either
 * "fn+0xoff (module)" (a symbol dladdr found), or "/path/module+0xoff",
 * which addr2line (binutils: a peer nobody here wrote) must resolve to
 * fn. Without addr2line only the form is checked. */
static void assert_location(const char *loc, const char *fn) {
  /* Cross builds are linked statically: no dynamic symbols, and dladdr
   * names no module, so the location is a bare address there. */
  if (under_emulator()) return;
  size_t fl = strlen(fn);
  if (strncmp(loc, fn, fl) == 0 && strncmp(loc + fl, "+0x", 3) == 0) return;
  const char *plus = strrchr(loc, '+');
  cr_assert(loc[0] == '/' && plus && strncmp(plus, "+0x", 3) == 0,
            "not a location: [%s]", loc);
  if (!have_prog("addr2line")) return;
  char cmd[PATH_MAX + 128];
  snprintf(cmd, sizeof cmd, "addr2line -f -e '%.*s' %s", (int)(plus - loc),
           loc, plus + 1);
  FILE *f = popen(cmd, "r");
  cr_assert_not_null(f);
  char name[256] = "";
  char *got = fgets(name, sizeof name, f);
  pclose(f);
  cr_assert_not_null(got, "%s: no output", cmd);
  name[strcspn(name, "\n")] = '\0';
  cr_assert_str_eq(name, fn, "%s", cmd);
}

/* The location after key in text names fn. */
static void assert_where(const char *text, const char *key, const char *fn) {
  char loc[PATH_MAX + 64];
  cr_assert(location_after(text, key, loc, sizeof loc), "no '%s' in:\n%s",
            key, text);
  assert_location(loc, fn);
}

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
  const char *rep = strstr(r.out, "weft: debug: task 'hog' (id 2) ran ");
  cr_assert_not_null(rep, "%s", r.out);
  cr_assert_not_null(strstr(rep, "without a checkpoint\n"), "%s", r.out);
  assert_where(rep, "in task function ", "busy");
  /* Computing is not blocking: one report, not two. */
  cr_assert_null(strstr(r.out, "blocked"), "%s", r.out);
}

static int busy_yielding(void *arg) {
  (void)arg;
  int64_t end = weft_now() + WEFT_MS(120);
  while (weft_now() < end)
    if (weft_yield() != 0) return -ECANCELED;
  return 0;
}

/* The same work with a checkpoint every turn: no report. */
Test(debug, long_step_clean_variant, .timeout = 10) {
  child_run r;
  weft_config c = config(1);
  named_child n = {busy_yielding, "polite", 0};
  run_child(&c, join_named, &n, &r);
  cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s", r.out);
  cr_assert_null(strstr(r.out, "weft: debug: "), "%s", r.out);
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
  const char *rep =
      strstr(r.out, "weft: debug: task 'forgotten' (id 2) was never joined");
  cr_assert_not_null(rep, "%s", r.out);
  assert_where(rep, "task function ", "nothing");
  /* The high-water line is information, told apart from the reports. */
  cr_assert_not_null(strstr(r.out, "weft: debug (info): stack high-water mark"),
                     "%s", r.out);
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

/* ---- blocking calls ----------------------------------------------------- */

static int spinner(void *arg) { /* 25 ms on the CPU: not blocking */
  (void)arg;
  int64_t end = weft_now() + WEFT_MS(25);
  while (weft_now() < end) {
  }
  return 0;
}
static int napper(void *arg) { /* weft_sleep: the loop runs meanwhile */
  (void)arg;
  return weft_sleep(WEFT_MS(20));
}
static int blocker(void *arg) { /* a blocking system call */
  (void)arg;
  usleep(20 * 1000);
  return 0;
}
static int blocking_main(void *arg) {
  (void)arg;
  weft_task *t[3] = {
      weft_spawn(spinner, NULL, &(weft_spawn_opts){.name = "spinner"}),
      weft_spawn(napper, NULL, &(weft_spawn_opts){.name = "napper"}),
      weft_spawn(blocker, NULL, &(weft_spawn_opts){.name = "blocker"}),
  };
  int rc = 0;
  for (int i = 0; i < 3; i++) rc |= weft_join(t[i]);
  return rc;
}

/* A 20 ms usleep in a task blocks the loop's thread: reported, with the
 * task's name, id, function and a hint. 25 ms of computing and a 20 ms
 * weft_sleep are not. */
Test(debug, blocking_call, .timeout = 10) {
  if (RUNNING_ON_VALGRIND) cr_skip_test("valgrind serialises threads");
  if (SANITIZED) cr_skip_test("no blocking check in sanitizer builds");
  child_run r;
  weft_config c = config(1);
  run_child(&c, blocking_main, NULL, &r);
  cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s", r.out);
  const char *rep = strstr(
      r.out, "weft: debug: task 'blocker' (id 4) blocked the loop's thread for ");
  cr_assert_not_null(rep, "%s", r.out);
  double ms = 0;
  cr_assert_eq(sscanf(rep + strlen("weft: debug: task 'blocker' (id 4) blocked "
                                   "the loop's thread for "),
                      "%lf ms", &ms),
               1, "%s", rep);
  cr_assert(ms > 10 && ms < 1000, "%.1f ms: %s", ms, rep);
  cr_assert_not_null(strstr(rep, "use weft_sleep, a weft stream, or "
                                 "weft_to_thread\n"),
                     "%s", rep);
  assert_where(rep, "in task function ", "blocker");
  cr_assert_null(strstr(r.out, "weft: debug: task 'spinner'"), "%s", r.out);
  cr_assert_null(strstr(r.out, "weft: debug: task 'napper'"), "%s", r.out);
}

/* ---- scopes and groups closed out of order ---------------------------- */

static int scope_misorder(void *arg) {
  (void)arg;
  weft_scope a, b;
  weft_scope_open(&a, WEFT_FOREVER);
  weft_scope_open(&b, WEFT_FOREVER);
  int bad = weft_scope_close(&a);
  int ok = weft_scope_close(&b) | weft_scope_close(&a);
  /* Closed twice. */
  int twice = weft_scope_close(&b);
  return bad == -EINVAL && ok == 0 && twice == -EINVAL ? 0 : -EPROTO;
}
static int scope_inorder(void *arg) {
  (void)arg;
  weft_scope a, b;
  weft_scope_open(&a, WEFT_FOREVER);
  weft_scope_open(&b, WEFT_FOREVER);
  return weft_scope_close(&b) | weft_scope_close(&a);
}

/* Closing a scope that is not the innermost: -EINVAL, and debug mode
 * names the task, both scopes and the caller; closing it twice says it
 * is not open. In order: nothing. */
Test(debug, scope_out_of_order, .timeout = 10) {
  child_run r;
  weft_config c = config(1);
  named_child n = {scope_misorder, "tangled", 0};
  run_child(&c, join_named, &n, &r);
  cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s", r.out);
  const char *rep = strstr(r.out, "weft: debug: task 'tangled' (id 2) closed scope 0x");
  cr_assert_not_null(rep, "%s", r.out);
  const char *eol = strchr(rep, '\n');
  const char *mis = strstr(rep, " out of order: scope 0x");
  cr_assert(mis && mis < eol, "%s", r.out);
  cr_assert_not_null(strstr(rep, "weft: debug:   weft_scope_close() called from "),
                     "%s", r.out);
  assert_where(rep, "called from ", "scope_misorder");
  assert_where(rep, "task function ", "scope_misorder");
  const char *twice = strstr(eol, "weft: debug: task 'tangled' (id 2) closed scope 0x");
  cr_assert_not_null(twice, "%s", r.out);
  cr_assert_not_null(strstr(twice, ", which is not open"), "%s", r.out);

  named_child ok = {scope_inorder, "tidy", 0};
  run_child(&c, join_named, &ok, &r);
  cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s", r.out);
  cr_assert_null(strstr(r.out, "weft: debug: "), "%s", r.out);
}

static int group_misorder(void *arg) {
  (void)arg;
  weft_group *g = weft_group_open();
  if (!g) return -errno;
  weft_set_name(g, "crew");
  weft_scope s;
  weft_set_name(&s, "inner");
  weft_scope_open(&s, WEFT_FOREVER);
  int bad = weft_group_close(g, NULL);
  int ok = weft_scope_close(&s) | weft_group_close(g, NULL);
  weft_set_name(g, NULL);
  weft_set_name(&s, NULL);
  return bad == -EINVAL && ok == 0 ? 0 : -EPROTO;
}

/* A group closed while a scope opened inside it is open: named both. */
Test(debug, group_out_of_order, .timeout = 10) {
  child_run r;
  weft_config c = config(1);
  named_child n = {group_misorder, "boss", 0};
  run_child(&c, join_named, &n, &r);
  cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s", r.out);
  const char *rep = strstr(
      r.out, "weft: debug: task 'boss' (id 2) closed group 'crew' (0x");
  cr_assert_not_null(rep, "%s", r.out);
  cr_assert_not_null(strstr(rep, "out of order: scope 'inner' (0x"), "%s", r.out);
  cr_assert_not_null(strstr(rep, "weft_group_close() called from "), "%s", r.out);
  assert_where(rep, "called from ", "group_misorder");
  cr_assert_null(strstr(rep + 1, "weft: debug: task"), "one report: %s", r.out);
}

typedef struct {
  weft_scope scope;
  weft_event *opened, *done;
  int meddled;
} shared_scope;
static int scope_opener(void *arg) {
  shared_scope *sh = arg;
  weft_scope_open(&sh->scope, WEFT_FOREVER);
  weft_event_set(sh->opened);
  int rc = weft_event_wait(sh->done);
  return rc | weft_scope_close(&sh->scope);
}
static int scope_meddler(void *arg) {
  shared_scope *sh = arg;
  int rc = weft_event_wait(sh->opened);
  sh->meddled = weft_scope_close(&sh->scope);
  weft_event_set(sh->done);
  return rc;
}
static int meddle_main(void *arg) {
  (void)arg;
  shared_scope sh = {.opened = weft_event_new(), .done = weft_event_new()};
  weft_task *o = weft_spawn(scope_opener, &sh, &(weft_spawn_opts){.name = "opener"});
  weft_task *m = weft_spawn(scope_meddler, &sh, &(weft_spawn_opts){.name = "meddler"});
  int rc = weft_join(o) | weft_join(m);
  weft_event_free(sh.opened);
  weft_event_free(sh.done);
  return rc == 0 && sh.meddled == -EINVAL ? 0 : -EPROTO;
}

/* A scope closed by a task that did not open it: names both tasks. */
Test(debug, scope_closed_by_other_task, .timeout = 10) {
  child_run r;
  weft_config c = config(1);
  run_child(&c, meddle_main, NULL, &r);
  cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s", r.out);
  const char *rep = strstr(r.out, "weft: debug: task 'meddler' (id 3) closed scope 0x");
  cr_assert_not_null(rep, "%s", r.out);
  cr_assert_not_null(strstr(rep, ", which task 'opener' (id 2) opened"), "%s", r.out);
  assert_where(rep, "called from ", "scope_meddler");
}

/* ---- cancellations swallowed ------------------------------------------ */

static int swallower(void *arg) {
  (void)arg;
  weft_sleep(WEFT_SEC(10)); /* -ECANCELED, ignored */
  return 0;
}
static int propagator(void *arg) {
  (void)arg;
  return weft_sleep(WEFT_SEC(10));
}
/* Its own timeout caught the cancellation: nothing swallowed. */
static int own_timeout(void *arg) {
  (void)arg;
  weft_scope s;
  weft_scope_open_after(&s, WEFT_MS(1));
  int rc = weft_sleep(WEFT_SEC(10));
  int cl = weft_scope_close(&s);
  return rc == -ECANCELED && cl == -ETIMEDOUT ? 0 : -EPROTO;
}
/* Cancelled, but met no checkpoint: it finished its work. */
static int unaware(void *arg) {
  (void)arg;
  return 0;
}
static int cancel_main(void *arg) {
  (void)arg;
  weft_task *t[4] = {
      weft_spawn(swallower, NULL, &(weft_spawn_opts){.name = "swallower"}),
      weft_spawn(propagator, NULL, &(weft_spawn_opts){.name = "propagator"}),
      weft_spawn(own_timeout, NULL, &(weft_spawn_opts){.name = "timely"}),
      weft_spawn(unaware, NULL, &(weft_spawn_opts){.name = "unaware"}),
  };
  weft_sleep(WEFT_MS(5)); /* all asleep or done but the unaware one */
  weft_cancel(t[0]);
  weft_cancel(t[1]);
  int r0 = weft_join(t[0]), r1 = weft_join(t[1]), r2 = weft_join(t[2]);
  weft_join(t[3]);
  /* The root itself may end a cancellation cleanly (asyncio.run's
   * main catching CancelledError): no report. */
  weft_cancel(weft_current());
  int rs = weft_sleep(WEFT_SEC(10));
  return r0 == 0 && r1 == -ECANCELED && r2 == 0 && rs == -ECANCELED
             ? 0
             : -EPROTO;
}

/* A task that got -ECANCELED and returned 0 while cancelled is reported;
 * one that returns -ECANCELED, one whose own timeout caught it, and the
 * root task are not. */
Test(debug, cancellation_swallowed, .timeout = 10) {
  child_run r;
  weft_config c = config(1);
  run_child(&c, cancel_main, NULL, &r);
  cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s", r.out);
  const char *rep = strstr(
      r.out, "weft: debug: task 'swallower' (id 2) swallowed a cancellation: "
             "it got -ECANCELED and returned 0 while cancelled");
  cr_assert_not_null(rep, "%s", r.out);
  assert_where(rep, "in task function ", "swallower");
  cr_assert_null(strstr(rep + 1, "weft: debug: task"), "one report: %s", r.out);
}

static int child_fails(void *arg) {
  (void)arg;
  weft_sleep(WEFT_MS(2));
  return -EIO;
}
static int group_main(void *arg) {
  (void)arg;
  weft_group *g = weft_group_open();
  weft_group_spawn(g, propagator, NULL, NULL);
  weft_group_spawn(g, child_fails, NULL, NULL);
  return weft_group_close(g, NULL) == WEFT_EGROUP ? 0 : -EPROTO;
}

/* A group's failure cancels a sibling that propagates it: no report. */
Test(debug, cancellation_propagated_in_group, .timeout = 10) {
  child_run r;
  weft_config c = config(1);
  run_child(&c, group_main, NULL, &r);
  cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s", r.out);
  cr_assert_null(strstr(r.out, "weft: debug: "), "%s", r.out);
}

/* ---- locks held at exit, scopes left open ------------------------------- */

static int lock_keeper(void *arg) {
  if (weft_lock_acquire(arg) != 0) return -EPROTO;
  return 0; /* holding it */
}
static int lock_user(void *arg) {
  if (weft_lock_acquire(arg) != 0) return -EPROTO;
  return weft_lock_release(arg);
}
static int lock_main(void *arg) {
  (void)arg;
  weft_lock *l = weft_lock_new();
  weft_set_name(l, "config");
  int a = weft_join(weft_spawn(lock_user, l, &(weft_spawn_opts){.name = "user"}));
  int b = weft_join(weft_spawn(lock_keeper, l, &(weft_spawn_opts){.name = "keeper"}));
  int broken = weft_lock_acquire(l);
  weft_lock_free(l);
  return a == 0 && b == 0 && broken == -EOWNERDEAD ? 0 : -EPROTO;
}

/* A task that returns holding a lock: the lock's name and address,
 * where it was acquired; one that released it: nothing. */
Test(debug, lock_held_at_exit, .timeout = 10) {
  child_run r;
  weft_config c = config(1);
  run_child(&c, lock_main, NULL, &r);
  cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s", r.out);
  const char *rep = strstr(
      r.out, "weft: debug: task 'keeper' (id 3) returned holding lock 'config' (0x");
  cr_assert_not_null(rep, "%s", r.out);
  assert_where(rep, "in task function ", "lock_keeper");
  assert_where(rep, "acquired at ", "lock_keeper");
  cr_assert_null(strstr(r.out, "weft: debug: task 'user'"), "%s", r.out);
}

static int leaves_scope_open(void *arg) {
  (void)arg;
  static weft_scope s;
  return weft_scope_open(&s, WEFT_FOREVER);
}

Test(debug, scope_open_at_exit, .timeout = 10) {
  child_run r;
  weft_config c = config(1);
  named_child n = {leaves_scope_open, "leaky", 0};
  run_child(&c, join_named, &n, &r);
  cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s", r.out);
  const char *rep = strstr(
      r.out, "weft: debug: task 'leaky' (id 2) returned with scope 0x");
  cr_assert_not_null(rep, "%s", r.out);
  assert_where(rep, "in task function ", "leaves_scope_open");
}

/* ---- examples/debug_tour.c -------------------------------------------- */

/* Reads fd to the end into buf (NUL-terminated). */
static void read_all(int fd, char *buf, size_t cap) {
  size_t n = 0;
  ssize_t k;
  while (n + 1 < cap && (k = read(fd, buf + n, cap - 1 - n)) > 0) n += (size_t)k;
  buf[n] = '\0';
}

/* The tour runs (exit 0), says each scenario on stdout, and its stderr
 * has each report in the same order, with the task's name and id and a
 * location in the tour's own functions. */
Test(debug, debug_tour_reports_in_order, .timeout = 60) {
  char path[PATH_MAX + 32];
  if (!example_path("debug_tour", path, sizeof path))
    cr_skip_test("no example-debug_tour next to this test");
  int fds = count_fds();
  int out[2], err[2];
  cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
  cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  const char *emu = getenv("WEFT_TEST_EMULATOR");
  char *argv[] = {path, NULL};
  char *eargv[] = {(char *)emu, path, NULL};
  pid_t pid;
  int rc = emu && *emu ? posix_spawnp(&pid, emu, &fa, NULL, eargv, environ)
                       : posix_spawn(&pid, path, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  close(err[1]);
  cr_assert_eq(rc, 0, "spawn %s: %s", path, strerror(rc));
  static char o[8192], e[16384];
  /* stderr is small (under a pipe's buffer): read stdout first. */
  read_all(out[0], o, sizeof o);
  read_all(err[0], e, sizeof e);
  close(out[0]);
  close(err[0]);
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x\n%s\n%s", st, o, e);
  cr_assert_eq(count_fds(), fds);
  cr_assert_not_null(strstr(o, "debug_tour: done\n"), "%s", o);
  for (int i = 1; i <= 9; i++) {
    char k[8];
    snprintf(k, sizeof k, "%d. ", i);
    cr_assert_not_null(strstr(o, k), "scenario %d missing:\n%s", i, o);
  }
  struct {
    const char *report; /* the start of its first line */
    const char *key;    /* the location checked, and its function */
    const char *fn;
  } want[] = {
      {"task 'hog' (id 2) ran ", "in task function ", "hog"},
      {"task 'napper' (id 3) blocked the loop's thread for ",
       "in task function ", "napper"},
      {"task 'tangled' (id 4) closed scope 0x", "called from ", "tangled"},
      {"task 'boss' (id 5) closed group 'crew' (0x", "called from ",
       "crew_boss"},
      {"task 'meddler' (id 7) closed scope 0x", "called from ", "meddler"},
      {"task 'stubborn' (id 8) swallowed a cancellation", "in task function ",
       "stubborn"},
      {"task 'forgetful' (id 9) returned holding lock 'config' (0x",
       "acquired at ", "forgetful"},
      {"task 'leaky' (id 10) returned with scope 0x", "in task function ",
       "leaky"},
      {"task 'forgotten' (id 11) was never joined or detached",
       "task function ", "forgotten"},
  };
  const char *at = e;
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    if (i == 1 && (SANITIZED || RUNNING_ON_VALGRIND))
      continue; /* no blocking check there (debug.c) */
    char line[256];
    snprintf(line, sizeof line, "weft: debug: %s", want[i].report);
    const char *p = strstr(at, line);
    cr_assert_not_null(p, "report %zu (%s) missing or out of order:\n%s", i + 1,
                       want[i].report, e);
    assert_where(p, want[i].key, want[i].fn);
    at = p + 1;
  }
  /* Each report is two lines: nine reports, then the information line. */
  int lines = 0;
  for (const char *p = e; (p = strstr(p, "weft: debug: ")); p++) lines++;
  cr_assert_eq(lines, SANITIZED || RUNNING_ON_VALGRIND ? 16 : 18, "%s", e);
}
