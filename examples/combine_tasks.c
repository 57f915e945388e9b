/*
 * combine_tasks.c -- gather, race, wait and as_completed on "lookups"
 * that take different times and sometimes fail.
 *
 *   gcc -I include examples/combine_tasks.c -L build/lib -lweft -o combine && LD_LIBRARY_PATH=build/lib ./combine
 *
 * asyncio.gather(*aws)                          weft_gather(calls, n, results, 0)
 * asyncio.gather(*aws, return_exceptions=True)  ... WEFT_GATHER_ALL
 * first to succeed (happy eyeballs)             weft_race(calls, n, results, &winner)
 * asyncio.wait(tasks, timeout, FIRST_COMPLETED) weft_wait_until(tasks, n, WEFT_FIRST_COMPLETED, done, deadline)
 * asyncio.as_completed(tasks, timeout)          weft_as_completed_init / _next / _close
 *
 * Exits 0 when every result was as expected.
 */
#include <errno.h>
#include <stdio.h>

#include "weft.h"

typedef struct lookup {
  const char *name;
  int ms;   /* how long it takes */
  int code; /* what it returns */
} lookup;

static int do_lookup(void *arg) {
  const lookup *l = arg;
  int rc = weft_sleep(WEFT_MS(l->ms));
  return rc ? rc : l->code;
}

/* 40 ms apart, so that the order holds on a slow machine too. */
static lookup lk[4] = {
    {"dns-a", 90, 0}, {"dns-b", 10, -ECONNREFUSED}, {"dns-c", 50, 0},
    {"dns-d", 1000, 0}};

static int unexpected;
static void check(int ok, const char *what) {
  printf("  %s %s\n", ok ? "ok " : "UNEXPECTED:", what);
  unexpected += !ok;
}

static int main_task(void *arg) {
  (void)arg;
  weft_call calls[4];
  int res[4];
  for (int i = 0; i < 4; i++) calls[i] = (weft_call){do_lookup, &lk[i]};

  printf("gather: dns-b's failure cancels the others\n");
  int rc = weft_gather(calls, 4, res, 0);
  check(rc == -ECONNREFUSED && res[0] == -ECANCELED && res[3] == -ECANCELED,
        "returns dns-b's -ECONNREFUSED; dns-a and dns-d report -ECANCELED");

  printf("gather, WEFT_GATHER_ALL, without dns-d: every outcome\n");
  rc = weft_gather(calls, 3, res, WEFT_GATHER_ALL);
  check(rc == 0 && res[0] == 0 && res[1] == -ECONNREFUSED && res[2] == 0,
        "0, with results {0, -ECONNREFUSED, 0}");

  printf("race: the first success wins\n");
  size_t w;
  rc = weft_race(calls, 4, res, &w);
  printf("  winner: %s\n", lk[w].name);
  check(rc == 0 && w == 2 && res[3] == -ECANCELED,
        "dns-c wins (dns-b failed first), dns-d is cancelled");

  printf("wait: FIRST_COMPLETED with a 30 ms deadline, then as_completed\n");
  weft_task *t[4];
  for (int i = 0; i < 4; i++) t[i] = weft_spawn(do_lookup, &lk[i], NULL);
  bool done[4];
  int n = weft_wait_until(t, 4, WEFT_FIRST_COMPLETED, done, weft_now() + WEFT_MS(30));
  check(n == 1 && done[1], "one done (dns-b), the rest pending, nothing cancelled");

  weft_as_completed it;
  weft_as_completed_init_until(&it, t, 4, weft_now() + WEFT_MS(250));
  weft_task *x;
  int order = 0;
  while ((rc = weft_as_completed_next(&it, &x)) == 0) {
    for (int i = 0; i < 4; i++)
      if (x == t[i]) {
        printf("  done: %s -> %s\n", lk[i].name, weft_strerror(weft_task_error(x, NULL)));
        order = order * 10 + i + 1;
        t[i] = NULL;
      }
    weft_join(x);
  }
  weft_as_completed_close(&it);
  check(rc == -ETIMEDOUT && order == 231, "dns-b, dns-c, dns-a, then the deadline");
  for (int i = 0; i < 4; i++) /* what the deadline left behind */
    if (t[i]) weft_join_until(t[i], weft_now());
  return unexpected;
}

int main(void) { return weft_run(main_task, NULL) == 0 ? 0 : 1; }
