/*
 * The timer heap (src/core/timer.c) on its own, against a plain reference:
 * random arms, cancels, moves and pops must come out in (deadline, arming
 * order) order, with ids reused and nothing lost.
 */
#include "core/timer.h"
#include "helpers.h"

#define N 5000

typedef struct {
  weft__timer tm;
  int64_t when;
  uint64_t order; /* when it was last armed or moved */
  bool armed;
  int fired;
} ref_timer;

static void on_fire(weft__timer *tm) { ((ref_timer *)tm)->fired++; }

/* The armed reference timer that must come out first, or NULL. */
static ref_timer *ref_first(ref_timer *r, int n) {
  ref_timer *best = NULL;
  for (int i = 0; i < n; i++)
    if (r[i].armed &&
        (!best || r[i].when < best->when ||
         (r[i].when == best->when && r[i].order < best->order)))
      best = &r[i];
  return best;
}

static uint32_t rng = 2463534242u;
static uint32_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

Test(timer, random_against_reference, .timeout = 30) {
  static ref_timer r[N];
  weft__timers h = {0};
  uint64_t order = 0;
  for (int i = 0; i < N; i++) weft__timer_init(&r[i].tm, on_fire);
  for (int step = 0; step < 40000; step++) {
    ref_timer *x = &r[next_rand() % N];
    int64_t when = next_rand() % 200; /* many equal deadlines */
    switch (next_rand() % 4) {
      case 0: /* arm, or cancel if armed */
      case 1:
        if (!x->armed) {
          x->tm.when = x->when = when;
          cr_assert_eq(weft__timers_add(&h, &x->tm), 0);
          x->order = ++order;
          x->armed = true;
        } else {
          weft__timers_del(&h, &x->tm);
          x->armed = false;
        }
        break;
      case 2: /* move */
        if (x->armed) {
          weft__timers_move(&h, &x->tm, when);
          x->when = when;
          x->order = ++order;
        }
        break;
      default: { /* pop everything due by `when` / 4 */
        int64_t now = when / 4;
        weft__timer *t;
        while ((t = weft__timers_pop_due(&h, now)) != NULL) {
          ref_timer *want = ref_first(r, N);
          cr_assert_not_null(want);
          cr_assert_eq((ref_timer *)t, want, "popped %lld/%llu, expected %lld/%llu",
                       (long long)((ref_timer *)t)->when,
                       (unsigned long long)((ref_timer *)t)->order,
                       (long long)want->when, (unsigned long long)want->order);
          cr_assert_leq(want->when, now);
          cr_assert_not(weft__timer_armed(t));
          want->armed = false;
          t->fire(t);
        }
        ref_timer *first = ref_first(r, N);
        cr_assert(!first || first->when > now);
        cr_assert_eq(weft__timers_next(&h), first ? first->when : INT64_MAX);
      }
    }
  }
  /* Drain: the rest in order, then empty. */
  size_t left = 0;
  for (int i = 0; i < N; i++) left += r[i].armed;
  cr_assert_eq(h.n, left);
  weft__timer *t;
  while ((t = weft__timers_pop_due(&h, INT64_MAX - 1)) != NULL) {
    cr_assert_eq((ref_timer *)t, ref_first(r, N));
    ((ref_timer *)t)->armed = false;
  }
  cr_assert_null(ref_first(r, N));
  cr_assert_eq(h.n, 0);
  /* Ids are reused: never more than the most armed at once. */
  cr_assert_leq(h.nids, (uint32_t)N);
  weft__timers_free(&h);
}

/* Equal deadlines fire in arming order; cancelling the last-armed timer
 * and re-arming keeps that order. */
Test(timer, equal_deadlines_fifo, .timeout = 10) {
  ref_timer r[100];
  weft__timers h = {0};
  for (int i = 0; i < 100; i++) {
    weft__timer_init(&r[i].tm, on_fire);
    r[i].tm.when = 7;
    cr_assert_eq(weft__timers_add(&h, &r[i].tm), 0);
  }
  weft__timers_del(&h, &r[99].tm);
  weft__timers_del(&h, &r[99].tm); /* twice: a no-op */
  cr_assert_eq(h.n, 99);
  cr_assert_eq(weft__timers_add(&h, &r[99].tm), 0);
  for (int i = 0; i < 100; i++)
    cr_assert_eq(weft__timers_pop_due(&h, 7), &r[i].tm, "position %d", i);
  cr_assert_null(weft__timers_pop_due(&h, 7));
  weft__timers_free(&h);
}
