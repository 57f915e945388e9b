/*
 * demo.c -- weft's three core ideas in one runnable story:
 *
 *   1. a task group: three workers, one fails; the group cancels the other
 *      two, waits for them, and reports the failure (the ExceptionGroup of C);
 *   2. a timeout: a cancel scope with a deadline around a slow operation;
 *      closing the scope returns -ETIMEDOUT;
 *   3. cancellation: weft_cancel of a running task, which sees -ECANCELED at
 *      its next checkpoint, and at every one after it until it returns.
 *
 *   gcc -I include examples/demo.c -L build/lib -lweft -o demo && LD_LIBRARY_PATH=build/lib ./demo
 *
 * Prints what happens and exits 0 when every behaviour was as expected.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "weft.h"

static int unexpected; /* number of checks that failed */

static void check(int ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("   %s ", ok ? "ok " : "UNEXPECTED:");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  if (!ok) unexpected++;
}

static double ms_since(int64_t t0) { return (double)(weft_now() - t0) / 1e6; }

/* ------------------------------------------------------------------ */
/* 1. A task group where one child fails                               */
/* ------------------------------------------------------------------ */

struct worker {
  const char *peer;
  int64_t work;    /* how long the "download" takes */
  int fails;       /* 1: the reply is bad */
  int result;      /* what the worker's sleep returned */
};

static int fetch(void *arg) {
  struct worker *w = arg;
  w->result = weft_sleep(w->work); /* stands for reading from the network */
  if (w->result == -ECANCELED) {
    printf("   %s: cancelled after the sibling failed; cleaning up\n", w->peer);
    return -ECANCELED; /* cancelled children are not errors of the group */
  }
  if (w->fails)
    return weft_fail(-EPROTO, "bad header from %s", w->peer);
  printf("   %s: done\n", w->peer);
  return 0;
}

static void demo_group(void) {
  printf("1. A group of three workers; the one talking to 10.0.0.2 fails after 20 ms.\n");
  struct worker w[3] = {
      {"10.0.0.1", WEFT_SEC(5), 0, 1},
      {"10.0.0.2", WEFT_MS(20), 1, 1},
      {"10.0.0.3", WEFT_SEC(5), 0, 1},
  };
  int64_t t0 = weft_now();
  weft_group *g = weft_group_open();
  if (!g) {
    check(0, "weft_group_open: %s", weft_strerror(-errno));
    return;
  }
  for (int i = 0; i < 3; i++) {
    weft_spawn_opts o = {.name = w[i].peer};
    if (!weft_group_spawn(g, fetch, &w[i], &o))
      check(0, "weft_group_spawn: %s", weft_strerror(-errno));
  }
  /* The body could do work of its own here; its checkpoints would return
   * -ECANCELED once a child fails. */
  weft_errors *errs = NULL;
  int rc = weft_group_close(g, &errs);
  double ms = ms_since(t0);

  check(rc == WEFT_EGROUP, "weft_group_close returned %s after %.0f ms",
        rc == WEFT_EGROUP ? "WEFT_EGROUP" : weft_strerror(rc), ms);
  check(ms < 1000, "the slow siblings did not run to their 5 s end");
  check(w[0].result == -ECANCELED && w[2].result == -ECANCELED,
        "both siblings saw -ECANCELED");
  check(weft_errors_count(errs) == 1, "one failure in the list (got %zu)",
        weft_errors_count(errs));
  check(weft_errors_match(errs, -EPROTO) == 1, "it matches -EPROTO (except*)");
  printf("   the group's errors:\n");
  fflush(stdout);
  weft_errors_print(errs, 1);
  weft_errors_free(errs);
}

/* ------------------------------------------------------------------ */
/* 2. A timeout around a slow operation                                */
/* ------------------------------------------------------------------ */

static int slow_operation(void) {
  return weft_sleep(WEFT_SEC(10)); /* stands for a server that never answers */
}

static void demo_timeout(void) {
  printf("2. A slow operation (10 s) under a 50 ms timeout.\n");
  weft_scope s;
  int64_t t0 = weft_now();
  int rc = weft_scope_open_after(&s, WEFT_MS(50));
  if (rc) {
    check(0, "weft_scope_open_after: %s", weft_strerror(rc));
    return;
  }
  int op = slow_operation();
  /* Level-triggered: while inside the expired scope, every checkpoint
   * says -ECANCELED, so code that ignored the first one stops at the next. */
  int again = weft_yield();
  rc = weft_scope_close(&s);
  double ms = ms_since(t0);

  check(op == -ECANCELED, "the operation returned %s",
        op == -ECANCELED ? "-ECANCELED" : weft_strerror(op));
  check(again == -ECANCELED, "the next checkpoint in the scope did too");
  check(rc == -ETIMEDOUT, "weft_scope_close returned %s after %.0f ms",
        rc == -ETIMEDOUT ? "-ETIMEDOUT" : weft_strerror(rc), ms);
  check(ms >= 49 && ms < 1000, "the deadline was honoured");
  check(weft_yield() == 0, "outside the scope, checkpoints succeed again");
}

/* ------------------------------------------------------------------ */
/* 3. Cancelling a task                                                */
/* ------------------------------------------------------------------ */

struct ticker {
  int ticks;
  int first, second; /* checkpoint results after the cancel */
};

static int ticker(void *arg) {
  struct ticker *tk = arg;
  int rc;
  while ((rc = weft_sleep(WEFT_MS(10))) == 0) tk->ticks++;
  tk->first = rc;
  /* Still cancelled: a cleanup step that blocks cannot run on unnoticed. */
  tk->second = weft_sleep(WEFT_MS(1));
  printf("   ticker: stopped after %d ticks (%s)\n", tk->ticks,
         weft_strerror(tk->first));
  return rc;
}

static void demo_cancel(void) {
  printf("3. A ticker task, cancelled by the root after ~55 ms.\n");
  struct ticker tk = {0, 1, 1};
  weft_spawn_opts o = {.name = "ticker"};
  weft_task *t = weft_spawn(ticker, &tk, &o);
  if (!t) {
    check(0, "weft_spawn: %s", weft_strerror(-errno));
    return;
  }
  weft_sleep(WEFT_MS(55));
  int crc = weft_cancel(t);
  int rc = weft_join(t);

  check(crc == 0, "weft_cancel returned 0");
  check(tk.ticks >= 1, "the ticker ran before (%d ticks)", tk.ticks);
  check(tk.first == -ECANCELED, "its sleep returned -ECANCELED");
  check(tk.second == -ECANCELED, "and so did its next checkpoint");
  check(rc == -ECANCELED, "weft_join returned its result, %s",
        rc == -ECANCELED ? "-ECANCELED" : weft_strerror(rc));
}

static int main_task(void *arg) {
  (void)arg;
  demo_group();
  demo_timeout();
  demo_cancel();
  return 0;
}

int main(void) {
  int rc = weft_run(main_task, NULL);
  if (rc) {
    fprintf(stderr, "demo: weft_run: %s\n", weft_strerror(rc));
    return 1;
  }
  if (unexpected) {
    printf("%d behaviour(s) were not as expected\n", unexpected);
    return 1;
  }
  printf("every behaviour was as expected\n");
  return 0;
}
