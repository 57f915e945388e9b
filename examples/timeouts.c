/*
 * timeouts.c -- deadlines with cancel scopes: nesting, shields, moving a
 * deadline, and joining a task with a deadline (asyncio.wait_for).
 *
 *   gcc -I include examples/timeouts.c -L build/lib -lweft -o timeouts && LD_LIBRARY_PATH=build/lib ./timeouts
 *
 * asyncio.timeout(d)            weft_scope_open_after(&s, d) ... weft_scope_close(&s)
 * asyncio.timeout_at(t)         weft_scope_open(&s, t)
 * Timeout.expired()             weft_scope_expired(&s)
 * cm.reschedule(t)              weft_scope_reschedule(&s, t)
 * asyncio.shield(...)           weft_scope_open_shielded(&s, WEFT_FOREVER)
 * asyncio.wait_for(task, d)     weft_join_until(t, weft_now() + d)
 *
 * Exits 0 when every behaviour was as expected.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "weft.h"

static int unexpected;

static void check(int ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("   %s ", ok ? "ok " : "UNEXPECTED:");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  if (!ok) unexpected++;
}

static const char *e(int rc) { return rc ? weft_strerror(rc) : "0"; }

/* Nested scopes: the cancellation belongs to the scope whose deadline
 * fired; only that scope's close reports -ETIMEDOUT. */
static void nested(void) {
  weft_scope outer, inner;
  int rc;

  printf("1. Inner deadline (20 ms) before the outer one (1 s).\n");
  weft_scope_open_after(&outer, WEFT_SEC(1));
  weft_scope_open_after(&inner, WEFT_MS(20));
  rc = weft_sleep(WEFT_SEC(5));
  check(rc == -ECANCELED, "the sleep returned %s", e(rc));
  rc = weft_scope_close(&inner);
  check(rc == -ETIMEDOUT, "inner close: %s", e(rc));
  rc = weft_sleep(WEFT_MS(1));
  check(rc == 0, "between the scopes, a checkpoint succeeds: %s", e(rc));
  rc = weft_scope_close(&outer);
  check(rc == 0, "outer close: %s", e(rc));

  printf("2. Outer deadline (20 ms) fires while inside an inner scope (1 s).\n");
  weft_scope_open_after(&outer, WEFT_MS(20));
  weft_scope_open_after(&inner, WEFT_SEC(1));
  rc = weft_sleep(WEFT_SEC(5));
  check(rc == -ECANCELED, "the sleep returned %s", e(rc));
  rc = weft_scope_close(&inner);
  check(rc == 0, "inner close: %s (not its deadline)", e(rc));
  rc = weft_yield();
  check(rc == -ECANCELED, "still inside the outer scope: %s", e(rc));
  rc = weft_scope_close(&outer);
  check(rc == -ETIMEDOUT, "outer close: %s", e(rc));
}

/* A shield lets cleanup that must finish run to its end even though the
 * surrounding code is cancelled; the cancellation is seen right after. */
static void shield(void) {
  weft_scope outer, sh;
  int rc;

  printf("3. A 50 ms shielded cleanup inside a 20 ms timeout.\n");
  int64_t t0 = weft_now();
  weft_scope_open_after(&outer, WEFT_MS(20));
  weft_scope_open_shielded(&sh, WEFT_FOREVER);
  rc = weft_sleep(WEFT_MS(50)); /* e.g. flushing a log, saying goodbye */
  check(rc == 0, "the shielded sleep completed: %s", e(rc));
  check(weft_now() - t0 >= WEFT_MS(50), "it ran its whole 50 ms");
  rc = weft_scope_close(&sh);
  check(rc == 0, "shield close: %s", e(rc));
  rc = weft_check_cancel();
  check(rc == -ECANCELED, "after the shield, the timeout is seen: %s", e(rc));
  rc = weft_scope_close(&outer);
  check(rc == -ETIMEDOUT, "outer close: %s", e(rc));

  printf("4. A shield with its own deadline still times out.\n");
  weft_scope_open_shielded(&sh, weft_now() + WEFT_MS(10));
  rc = weft_sleep(WEFT_SEC(5));
  check(rc == -ECANCELED, "the sleep returned %s", e(rc));
  rc = weft_scope_close(&sh);
  check(rc == -ETIMEDOUT, "shield close: %s", e(rc));
}

/* Moving a deadline: a watchdog that is pushed back while there is
 * progress, then pulled in. */
static void reschedule(void) {
  weft_scope s;
  int rc;

  printf("5. A 20 ms deadline pushed back after every 10 ms of progress.\n");
  weft_scope_open_after(&s, WEFT_MS(20));
  int chunks = 0;
  for (int i = 0; i < 5; i++) {
    if (weft_sleep(WEFT_MS(10))) break;
    chunks++;
    weft_scope_reschedule(&s, weft_now() + WEFT_MS(20));
  }
  check(chunks == 5, "all 5 chunks (50 ms) finished under the moving deadline");
  rc = weft_scope_reschedule(&s, weft_now() + WEFT_MS(5)); /* pull it in */
  check(rc == 0, "reschedule to 5 ms from now: %s", e(rc));
  rc = weft_sleep(WEFT_SEC(5));
  check(rc == -ECANCELED, "the next long sleep returned %s", e(rc));
  rc = weft_scope_reschedule(&s, WEFT_FOREVER);
  check(rc == -EALREADY, "too late to move a fired deadline: %s", e(rc));
  rc = weft_scope_close(&s);
  check(rc == -ETIMEDOUT, "close: %s", e(rc));

  printf("6. No deadline at first (WEFT_FOREVER), one set later.\n");
  weft_scope_open(&s, WEFT_FOREVER);
  check(weft_scope_deadline(&s) == WEFT_FOREVER, "deadline is WEFT_FOREVER");
  weft_scope_reschedule(&s, weft_now() + WEFT_MS(10));
  rc = weft_sleep(WEFT_SEC(5));
  check(rc == -ECANCELED && weft_scope_cancelled(&s),
        "the sleep returned %s and the scope says it was cancelled", e(rc));
  rc = weft_scope_close(&s);
  check(rc == -ETIMEDOUT, "close: %s", e(rc));
}

struct job {
  int64_t work;
  int seen; /* what the job's sleep returned */
};

static int job(void *arg) {
  struct job *j = arg;
  j->seen = weft_sleep(j->work);
  return j->seen;
}

/* asyncio.wait_for: a join with a deadline cancels the task on timeout
 * and waits for it, so nothing is left running. */
static void join_until(void) {
  printf("7. weft_join_until: a 10 ms job with a 1 s deadline, a 5 s job with 20 ms.\n");
  struct job fast = {WEFT_MS(10), 1}, slow = {WEFT_SEC(5), 1};
  weft_task *t = weft_spawn(job, &fast, NULL);
  if (!t) {
    check(0, "weft_spawn: %s", weft_strerror(-errno));
    return;
  }
  int rc = weft_join_until(t, weft_now() + WEFT_SEC(1));
  check(rc == 0, "the fast job's result: %s", e(rc));

  int64_t t0 = weft_now();
  t = weft_spawn(job, &slow, NULL);
  if (!t) {
    check(0, "weft_spawn: %s", weft_strerror(-errno));
    return;
  }
  rc = weft_join_until(t, weft_now() + WEFT_MS(20));
  check(rc == -ETIMEDOUT, "the slow job: %s after %.0f ms", e(rc),
        (double)(weft_now() - t0) / 1e6);
  check(slow.seen == -ECANCELED,
        "the slow job was cancelled and waited for (it saw %s)", e(slow.seen));
}

/* A job that answers its cancellation with a result of its own. */
static int stubborn(void *arg) {
  struct job *j = arg;
  j->seen = weft_sleep(j->work);
  return 7; /* a partial result, computed during its cleanup */
}

/* Who reports a timeout: only a deadline that cut something short, and
 * then only the outermost cancelled scope; wait_for keeps what the task
 * returned. */
static void outcomes(void) {
  weft_scope outer, inner, sh;
  int rc;

  printf("8. Two nested scopes with the same 20 ms deadline.\n");
  int64_t d = weft_now() + WEFT_MS(20);
  weft_scope_open(&outer, d);
  weft_scope_open(&inner, d);
  rc = weft_sleep(WEFT_SEC(5));
  check(rc == -ECANCELED, "the sleep returned %s", e(rc));
  rc = weft_scope_close(&inner);
  check(rc == 0, "inner close: %s (the outer one reports)", e(rc));
  rc = weft_scope_close(&outer);
  check(rc == -ETIMEDOUT, "outer close: %s", e(rc));

  printf("9. A 10 ms deadline passes during a 30 ms shielded sleep, nothing after.\n");
  weft_scope_open_after(&outer, WEFT_MS(10));
  weft_scope_open_shielded(&sh, WEFT_FOREVER);
  rc = weft_sleep(WEFT_MS(30));
  check(rc == 0, "the shielded sleep completed: %s", e(rc));
  weft_scope_close(&sh);
  check(weft_scope_expired(&outer), "weft_scope_expired says the deadline passed");
  rc = weft_scope_close(&outer);
  check(rc == 0, "close: %s (nothing was cut short)", e(rc));

  printf("10. weft_join_until on a job that returns a value when cancelled.\n");
  struct job j = {WEFT_SEC(5), 1};
  weft_task *t = weft_spawn(stubborn, &j, NULL);
  if (!t) {
    check(0, "weft_spawn: %s", weft_strerror(-errno));
    return;
  }
  rc = weft_join_until(t, weft_now() + WEFT_MS(10));
  check(rc == 7 && j.seen == -ECANCELED,
        "join_until returned its result %d, not -ETIMEDOUT", rc);
}

static int main_task(void *arg) {
  (void)arg;
  nested();
  shield();
  reschedule();
  join_until();
  outcomes();
  return 0;
}

int main(void) {
  int rc = weft_run(main_task, NULL);
  if (rc) {
    fprintf(stderr, "timeouts: weft_run: %s\n", weft_strerror(rc));
    return 1;
  }
  printf(unexpected ? "%d behaviour(s) were not as expected\n"
                    : "every behaviour was as expected\n",
         unexpected);
  return unexpected ? 1 : 0;
}
