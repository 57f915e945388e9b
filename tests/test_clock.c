/*
 * The loop's fast clock for relative deadlines (weft__fast_now): it must
 * track CLOCK_MONOTONIC closely and never run behind it, so that sleeps
 * and timeouts never end early.
 */
#include "core/internal.h"
#include "ctx/valgrind_compat.h"
#include "helpers.h"

typedef struct {
  int64_t max_behind, max_ahead;
  int samples;
  int calibrated;
} clk_state;

static int clock_main(void *arg) {
  clk_state *s = arg;
  weft_loop *L = weft_loop_current();
  /* Past the calibration window. A sample taken while the thread was
   * preempted is thrown away, so on a loaded machine give it more turns. */
  for (int i = 0; i < 100 && L->tsc_usable && !L->tsc_mult; i++)
    weft_sleep(WEFT_MS(1));
  weft_yield();
  s->calibrated = L->tsc_mult != 0 || !L->tsc_usable;
  int64_t end = weft_now() + WEFT_MS(50);
  s->max_behind = s->max_ahead = 0;
  /* 50 ms without a loop turn: the worst case for extrapolation. Each
   * fast read is bracketed by two real ones. */
  for (int64_t before = 0; before < end; s->samples++) {
    before = weft_now();
    int64_t fast = weft__fast_now(L);
    int64_t after = weft_now();
    if (before - fast > s->max_behind) s->max_behind = before - fast;
    if (fast - after > s->max_ahead) s->max_ahead = fast - after;
  }
  return 0;
}

/* After calibration the fast clock is never behind the real clock, and
 * ahead of it by little (its safety margin: 1 us + 0.1 %), even 50 ms after
 * the last loop turn. */
Test(clock, fast_clock_tracks_monotonic, .timeout = 10) {
  clk_state s = {0};
  cr_assert_eq(weft_run(clock_main, &s), 0);
  /* Under valgrind and ThreadSanitizer clock reads are too slow to
   * bracket: no calibration, and the fast clock is the real one. */
#if !defined(__SANITIZE_THREAD__)
  if (!RUNNING_ON_VALGRIND) cr_assert(s.calibrated);
#endif
  cr_assert_gt(s.samples, 1000);
  cr_assert_leq(s.max_behind, 0, "behind by %lld ns", (long long)s.max_behind);
  cr_assert_lt(s.max_ahead, WEFT_MS(1), "ahead by %lld ns",
               (long long)s.max_ahead);
}

typedef struct {
  int64_t el[20];
} sleep_state;

static int short_sleeps(void *arg) {
  sleep_state *s = arg;
  for (int i = 0; i < 20; i++) {
    int64_t t0 = weft_now();
    weft_sleep(WEFT_US(200 + 50 * i));
    s->el[i] = weft_now() - t0;
  }
  return 0;
}

/* Relative sleeps measured on the real clock never end early, before and
 * after the fast clock is calibrated. */
Test(clock, sleeps_never_early, .timeout = 10) {
  sleep_state s = {0};
  cr_assert_eq(weft_run(short_sleeps, &s), 0);
  for (int i = 0; i < 20; i++)
    cr_assert_geq(s.el[i], WEFT_US(200 + 50 * i), "sleep %d: %lld ns", i,
                  (long long)s.el[i]);
}
