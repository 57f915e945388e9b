/*
 * debug_tour.c -- debug mode's reports, each one caused on purpose.
 *
 *   gcc -g -I include examples/debug_tour.c -L build/lib -lweft -o debug_tour && LD_LIBRARY_PATH=build/lib ./debug_tour
 *
 * asyncio.run(main(), debug=True)          weft_config.debug = 1 (or WEFT_DEBUG=1)
 *
 * Each scenario below makes one mistake that weft lets a program make (it
 * returns an error or carries on) and that debug mode names on stderr,
 * in lines that start "weft: debug: ": the task (its name and id), what
 * happened, and where: the task's function and, for a call that went
 * wrong, the caller. A function the dynamic linker can name (an exported
 * one) is printed as "symbol+0xoff (module)"; a static one such as those
 * here as "/path/module+0xoff", which `addr2line -f -e /path/module
 * 0xoff` turns into a function and a line.
 *
 * stdout says which scenario runs; stderr carries the reports, in the
 * same order. The program exits 0 when every mistake got the error code
 * it should (the reports themselves are checked by tests/test_debug.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "weft.h"

static int failures;

static void check(int ok, const char *what) {
  if (!ok) {
    printf("   FAILED: %s\n", what);
    failures++;
  }
}

/* Says what comes; stdout is flushed so that, on a terminal, each
 * scenario's title comes before its report. */
static void title(const char *s) {
  printf("%s\n", s);
  fflush(stdout);
}

static weft_task *spawn(weft_fn fn, void *arg, const char *name) {
  weft_spawn_opts o = {.name = name};
  return weft_spawn(fn, arg, &o);
}

/* 1. A task that computes for 120 ms without a checkpoint: every other
 * task waits that long (asyncio's slow_callback_duration). Fix: a
 * weft_yield() now and then, or weft_to_thread for the work. */
static int hog(void *arg) {
  (void)arg;
  int64_t end = weft_now() + WEFT_MS(120);
  while (weft_now() < end) {
  }
  return 0;
}

/* 2. A blocking system call on the loop's thread: usleep stops the whole
 * loop for 20 ms, where weft_sleep would let other tasks run. Debug mode
 * tells it from computing by the thread's CPU time and its voluntary
 * context switches. */
static int napper(void *arg) {
  (void)arg;
  usleep(20 * 1000);
  return 0;
}

/* 3. Scopes close innermost first, as `with` blocks do. Closing the outer
 * one while the inner one is open fails with -EINVAL; debug mode says
 * which scope is still open and who called. */
static int tangled(void *arg) {
  (void)arg;
  weft_scope outer, inner;
  weft_scope_open(&outer, WEFT_FOREVER);
  weft_scope_open(&inner, WEFT_FOREVER);
  weft_set_name(&inner, "inner");
  check(weft_scope_close(&outer) == -EINVAL, "out-of-order close fails");
  weft_scope_close(&inner);
  weft_set_name(&inner, NULL);
  return weft_scope_close(&outer);
}

/* 4. A group closed while a scope opened after it is still open. */
static int crew_boss(void *arg) {
  (void)arg;
  weft_group *g = weft_group_open();
  if (!g) return -errno;
  weft_set_name(g, "crew");
  weft_scope s;
  weft_scope_open(&s, WEFT_FOREVER);
  check(weft_group_close(g, NULL) == -EINVAL, "group closed out of order");
  weft_scope_close(&s);
  weft_set_name(g, NULL);
  return weft_group_close(g, NULL);
}

/* 5. A scope belongs to the task that opened it: another task closing it
 * gets -EINVAL. */
typedef struct {
  weft_scope scope;
  weft_event *opened, *done;
} shared_scope;

static int opener(void *arg) {
  shared_scope *sh = arg;
  weft_scope_open(&sh->scope, WEFT_FOREVER);
  weft_event_set(sh->opened);
  int rc = weft_event_wait(sh->done);
  weft_scope_close(&sh->scope);
  return rc;
}

static int meddler(void *arg) {
  shared_scope *sh = arg;
  int rc = weft_event_wait(sh->opened);
  check(weft_scope_close(&sh->scope) == -EINVAL, "another task's scope");
  weft_event_set(sh->done);
  return rc;
}

/* 6. A cancellation swallowed: the sleep returns -ECANCELED and the task
 * returns 0 as if it had finished its work. Its canceller cannot tell;
 * asyncio's rule is the same (re-raise CancelledError). Fix: return the
 * -ECANCELED. (The root task, weft_run's main, may do this on purpose.) */
static int stubborn(void *arg) {
  (void)arg;
  if (weft_sleep(WEFT_SEC(10)) == -ECANCELED) return 0; /* the mistake */
  return 0;
}

/* 7. A task that returns holding a lock: weft breaks the lock (its
 * waiters, and later acquirers, get -EOWNERDEAD) and debug mode names
 * the lock and where it was acquired. */
static int forgetful(void *arg) {
  weft_lock *l = arg;
  if (weft_lock_acquire(l) != 0) return -EPROTO;
  return 0; /* and no release */
}

/* 8. A task that returns with a scope open: weft closes it. */
static int leaky(void *arg) {
  static weft_scope s; /* outlives the task, for the report's address */
  (void)arg;
  return weft_scope_open(&s, WEFT_FOREVER);
}

/* 9. A task that is never joined nor detached: reported when the loop
 * ends (asyncio: "Task was destroyed but it is pending" and the "never
 * retrieved" exception). */
static int forgotten(void *arg) {
  (void)arg;
  return 0;
}

static int join_named(weft_fn fn, void *arg, const char *name) {
  weft_task *t = spawn(fn, arg, name);
  return t ? weft_join(t) : -errno;
}

static int tour(void *arg) {
  (void)arg;
  title("1. a task runs 120 ms without a checkpoint");
  check(join_named(hog, NULL, "hog") == 0, "hog");

  title("2. a task blocks the loop's thread in usleep(20 ms)");
  check(join_named(napper, NULL, "napper") == 0, "napper");

  title("3. a scope closed out of order");
  check(join_named(tangled, NULL, "tangled") == 0, "tangled");

  title("4. a group closed while a scope inside it is open");
  check(join_named(crew_boss, NULL, "boss") == 0, "boss");

  title("5. a scope closed by a task that did not open it");
  shared_scope sh = {.opened = weft_event_new(), .done = weft_event_new()};
  if (!sh.opened || !sh.done) return -ENOMEM;
  weft_task *o = spawn(opener, &sh, "opener");
  weft_task *m = spawn(meddler, &sh, "meddler");
  check(o && m && weft_join(o) == 0 && weft_join(m) == 0, "opener, meddler");
  weft_event_free(sh.opened);
  weft_event_free(sh.done);

  title("6. a task swallows its cancellation");
  weft_task *s = spawn(stubborn, NULL, "stubborn");
  if (!s) return -errno;
  weft_sleep(WEFT_MS(1)); /* it is asleep now */
  weft_cancel(s);
  check(weft_join(s) == 0, "stubborn says 0: its canceller is misled");

  title("7. a task returns holding a lock");
  weft_lock *l = weft_lock_new();
  if (!l) return -errno;
  weft_set_name(l, "config");
  check(join_named(forgetful, l, "forgetful") == 0, "forgetful");
  check(weft_lock_acquire(l) == -EOWNERDEAD, "the lock is broken");
  weft_lock_free(l);

  title("8. a task returns with a scope open");
  check(join_named(leaky, NULL, "leaky") == 0, "leaky");

  title("9. a task never joined (reported when the loop ends)");
  if (!spawn(forgotten, NULL, "forgotten")) return -errno;
  return weft_sleep(WEFT_MS(1));
}

int main(void) {
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.debug = 1;
  int rc = weft_run_with(&cfg, tour, NULL);
  if (rc) fprintf(stderr, "debug_tour: %s\n", weft_strerror(rc));
  printf("%s\n", rc || failures ? "debug_tour: FAILED" : "debug_tour: done");
  return rc || failures ? 1 : 0;
}
