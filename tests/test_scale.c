/*
 * test_scale.c -- many concurrent tasks: 100,000 sleeping in one group,
 * 100,000 yielding, and (with WEFT_SLOW_TESTS=1) 1,000,000.
 */
#include "helpers.h"

typedef struct {
  long counter;
  long bad;
  long n;
  int close_rc;
  int spawn_fail_errno;
  int64_t spawn_ns, total_ns;
} scale_state;

static int sleep_then_count(void *arg) {
  scale_state *s = arg;
  int r = weft_sleep(WEFT_MS(1));
  if (r != 0)
    s->bad++;
  s->counter++;
  return r;
}

static int many_sleepers_main(void *arg) {
  scale_state *s = arg;
  int64_t t0 = weft_now();
  weft_group *g = weft_group_open();
  if (!g)
    return -errno;
  for (long i = 0; i < s->n; i++) {
    if (!weft_group_spawn(g, sleep_then_count, s, NULL)) {
      s->spawn_fail_errno = errno;
      weft_group_cancel(g);
      break;
    }
  }
  s->spawn_ns = weft_now() - t0;
  s->close_rc = weft_group_close(g, NULL);
  s->total_ns = weft_now() - t0;
  return 0;
}

static void run_sleepers(long n) {
  scale_state *s = calloc(1, sizeof *s);
  cr_assert_not_null(s);
  s->n = n;
  cr_assert_eq(weft_run(many_sleepers_main, s), 0);
  cr_log_info("%ld sleeping tasks: spawn %.1f ms, total %.1f ms", n,
              MS_OF(s->spawn_ns), MS_OF(s->total_ns));
  cr_assert_eq(s->spawn_fail_errno, 0, "spawn failed with errno %d",
               s->spawn_fail_errno);
  cr_assert_eq(s->close_rc, 0);
  cr_assert_eq(s->bad, 0, "%ld sleeps did not return 0", s->bad);
  cr_assert_eq(s->counter, n);
  free(s);
}

/* 100,000 concurrent tasks in one group, each sleeping 1 ms then
 * incrementing a counter: all run, all sleeps return 0, close returns 0. */
Test(scale, group_100k_sleepers, .timeout = 120) { run_sleepers(100000); }

/* The same with 1,000,000 tasks (only with WEFT_SLOW_TESTS=1). */
Test(scale, group_1m_sleepers, .timeout = 600) {
  const char *e = getenv("WEFT_SLOW_TESTS");
  if (!e || strcmp(e, "1") != 0)
    cr_skip_test("set WEFT_SLOW_TESTS=1 to run");
  run_sleepers(1000000);
}

static int yield_thrice(void *arg) {
  scale_state *s = arg;
  for (int i = 0; i < 3; i++) {
    if (weft_yield() != 0)
      s->bad++;
    s->counter++;
  }
  return 0;
}

static int many_yielders_main(void *arg) {
  scale_state *s = arg;
  int64_t t0 = weft_now();
  weft_group *g = weft_group_open();
  if (!g)
    return -errno;
  for (long i = 0; i < s->n; i++) {
    if (!weft_group_spawn(g, yield_thrice, s, NULL)) {
      s->spawn_fail_errno = errno;
      weft_group_cancel(g);
      break;
    }
  }
  s->close_rc = weft_group_close(g, NULL);
  s->total_ns = weft_now() - t0;
  return 0;
}

/* 100,000 tasks each yielding 3 times: 300,000 yields, all returning 0. */
Test(scale, yield_100k_x3, .timeout = 120) {
  scale_state *s = calloc(1, sizeof *s);
  cr_assert_not_null(s);
  s->n = 100000;
  cr_assert_eq(weft_run(many_yielders_main, s), 0);
  cr_log_info("100k tasks x 3 yields: %.1f ms", MS_OF(s->total_ns));
  cr_assert_eq(s->spawn_fail_errno, 0);
  cr_assert_eq(s->close_rc, 0);
  cr_assert_eq(s->bad, 0);
  cr_assert_eq(s->counter, 300000);
  free(s);
}

/* Spawn/join churn: 200,000 short tasks spawned and joined in batches of
 * 1,000 (stacks and task records are recycled). */
static int churn_main(void *arg) {
  scale_state *s = arg;
  static weft_task *t[1000];
  for (int round = 0; round < 200; round++) {
    for (int i = 0; i < 1000; i++) {
      t[i] = weft_spawn(yield_thrice, s, NULL);
      if (!t[i])
        return -errno;
    }
    for (int i = 0; i < 1000; i++)
      if (weft_join(t[i]) != 0)
        s->bad++;
  }
  return 0;
}

Test(scale, spawn_join_churn, .timeout = 120) {
  scale_state *s = calloc(1, sizeof *s);
  cr_assert_not_null(s);
  int64_t t0 = weft_now();
  cr_assert_eq(weft_run(churn_main, s), 0);
  cr_log_info("200k spawn/join: %.1f ms", MS_OF(weft_now() - t0));
  cr_assert_eq(s->bad, 0);
  cr_assert_eq(s->counter, 600000);
  free(s);
}
