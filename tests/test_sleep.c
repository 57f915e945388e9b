/*
 * test_sleep.c -- sleeping, timers and scheduling order: weft_sleep,
 * weft_sleep_until, weft_yield round-robin, timer ordering.
 */
#include "helpers.h"

/* ---------------------------------------------------------------- */
/* Durations                                                         */
/* ---------------------------------------------------------------- */

typedef struct {
  int rc[8];
  int64_t el[8];
} dur_state;

static int durations_main(void *arg) {
  dur_state *s = arg;
  int64_t t0;

  t0 = weft_now();
  s->rc[0] = weft_sleep(WEFT_MS(20));
  s->el[0] = weft_now() - t0;

  t0 = weft_now();
  s->rc[1] = weft_sleep(0);
  s->el[1] = weft_now() - t0;

  t0 = weft_now();
  s->rc[2] = weft_sleep(-5);
  s->el[2] = weft_now() - t0;

  t0 = weft_now();
  s->rc[3] = weft_sleep(-WEFT_SEC(1000));
  s->el[3] = weft_now() - t0;

  t0 = weft_now();
  s->rc[4] = weft_sleep(INT64_MIN);
  s->el[4] = weft_now() - t0;

  t0 = weft_now();
  s->rc[5] = weft_sleep(WEFT_US(500));
  s->el[5] = weft_now() - t0;
  return 0;
}

/* weft_sleep(20 ms) takes >= 20 ms (and < 2 s); zero and negative
 * durations (down to INT64_MIN) count as 0 and return 0 at once. */
Test(sleep, durations, .timeout = 10) {
  dur_state s = {0};
  cr_assert_eq(weft_run(durations_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_geq(s.el[0], WEFT_MS(20));
  cr_assert_lt(s.el[0], T_SLACK);
  for (int i = 1; i <= 4; i++) {
    cr_assert_eq(s.rc[i], 0, "case %d", i);
    cr_assert_lt(s.el[i], WEFT_MS(500), "case %d took %.1f ms", i,
                 MS_OF(s.el[i]));
  }
  cr_assert_eq(s.rc[5], 0);
  cr_assert_geq(s.el[5], WEFT_US(500));
}

static int until_main(void *arg) {
  dur_state *s = arg;
  int64_t t0 = weft_now();
  s->rc[0] = weft_sleep_until(t0 - WEFT_SEC(5));
  s->el[0] = weft_now() - t0;
  t0 = weft_now();
  s->rc[1] = weft_sleep_until(INT64_MIN);
  s->el[1] = weft_now() - t0;
  t0 = weft_now();
  s->rc[2] = weft_sleep_until(t0 + WEFT_MS(15));
  s->el[2] = weft_now() - t0;
  return 0;
}

/* weft_sleep_until a deadline in the past returns 0 at once; a future
 * deadline is not woken before it. */
Test(sleep, sleep_until, .timeout = 10) {
  dur_state s = {0};
  cr_assert_eq(weft_run(until_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_lt(s.el[0], WEFT_MS(500));
  cr_assert_eq(s.rc[1], 0);
  cr_assert_lt(s.el[1], WEFT_MS(500));
  cr_assert_eq(s.rc[2], 0);
  cr_assert_geq(s.el[2], WEFT_MS(15));
  cr_assert_lt(s.el[2], T_SLACK);
}

/* ---------------------------------------------------------------- */
/* Sleeping "forever"                                                */
/* ---------------------------------------------------------------- */

typedef struct {
  int r_dur, r_until;
  int64_t el;
} forever_state;

static int forever_dur(void *arg) {
  forever_state *s = arg;
  s->r_dur = weft_sleep(WEFT_FOREVER); /* now + INT64_MAX must not wrap */
  return 0;
}

static int forever_until(void *arg) {
  forever_state *s = arg;
  s->r_until = weft_sleep_until(WEFT_FOREVER);
  return 0;
}

static int forever_main(void *arg) {
  forever_state *s = arg;
  s->r_dur = s->r_until = 1;
  weft_task *a = weft_spawn(forever_dur, s, NULL);
  weft_task *b = weft_spawn(forever_until, s, NULL);
  int64_t t0 = weft_now();
  weft_sleep(WEFT_MS(20));
  s->el = weft_now() - t0;
  weft_cancel(a);
  weft_cancel(b);
  weft_join(a);
  weft_join(b);
  return 0;
}

/* Sleeping WEFT_FOREVER (as a duration or a deadline) does not overflow
 * into an immediate wake-up: it lasts until cancelled, and meanwhile other
 * timers still work. */
Test(sleep, sleep_forever_until_cancelled, .timeout = 10) {
  forever_state s = {0};
  cr_assert_eq(weft_run(forever_main, &s), 0);
  cr_assert_eq(s.r_dur, -ECANCELED);
  cr_assert_eq(s.r_until, -ECANCELED);
  cr_assert_geq(s.el, WEFT_MS(20));
  cr_assert_lt(s.el, T_SLACK);
}

/* ---------------------------------------------------------------- */
/* weft_yield round-robin                                            */
/* ---------------------------------------------------------------- */

typedef struct {
  tlog log;
  int bad_yield;
} rr_state;

typedef struct {
  rr_state *s;
  int id;
} rr_arg;

static int rr_task(void *arg) {
  rr_arg *a = arg;
  for (int i = 0; i < 5; i++) {
    log_add(&a->s->log, a->id);
    if (weft_yield() != 0)
      a->s->bad_yield++;
  }
  return 0;
}

static int rr_main(void *arg) {
  rr_state *s = arg;
  rr_arg a[3] = {{s, 1}, {s, 2}, {s, 3}};
  weft_task *t[3];
  for (int i = 0; i < 3; i++)
    t[i] = weft_spawn(rr_task, &a[i], NULL);
  for (int i = 0; i < 3; i++)
    weft_join(t[i]);
  return 0;
}

/* weft_yield lets every other ready task run once: three tasks that log
 * their id and yield, five times each, produce 1,2,3,1,2,3,... */
Test(sleep, yield_round_robin, .timeout = 10) {
  rr_state s = {0};
  cr_assert_eq(weft_run(rr_main, &s), 0);
  cr_assert_eq(s.bad_yield, 0);
  int want[15];
  for (int i = 0; i < 15; i++)
    want[i] = i % 3 + 1;
  log_expect(&s.log, want, 15);
}

static int rr_with_main_main(void *arg) {
  rr_state *s = arg;
  rr_arg a[2] = {{s, 1}, {s, 2}};
  weft_task *t[2];
  for (int i = 0; i < 2; i++)
    t[i] = weft_spawn(rr_task, &a[i], NULL);
  for (int i = 0; i < 3; i++) {
    log_add(&s->log, 0);
    weft_yield();
  }
  for (int i = 0; i < 2; i++)
    weft_join(t[i]);
  return 0;
}

/* The yielding parent takes its turn in the rotation too: 0,1,2,0,1,2... */
Test(sleep, yield_round_robin_with_parent, .timeout = 10) {
  rr_state s = {0};
  cr_assert_eq(weft_run(rr_with_main_main, &s), 0);
  int want[] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 1, 2, 1, 2};
  log_expect(&s.log, want, 13);
}

static int lone_yield_main(void *arg) {
  int64_t *el = arg;
  int64_t t0 = weft_now();
  for (int i = 0; i < 1000; i++)
    if (weft_yield() != 0)
      return -EIO;
  *el = weft_now() - t0;
  return 0;
}

/* A task alone on the loop can yield; it returns 0 without waiting. */
Test(sleep, yield_alone, .timeout = 10) {
  int64_t el = -1;
  cr_assert_eq(weft_run(lone_yield_main, &el), 0);
  cr_assert_geq(el, 0);
  cr_assert_lt(el, T_SLACK);
}

/* ---------------------------------------------------------------- */
/* Timer ordering                                                    */
/* ---------------------------------------------------------------- */

typedef struct {
  tlog log;
  int64_t base;
} timer_state;

typedef struct {
  timer_state *s;
  int id;
  int64_t offset;
} timer_arg;

static int timed_sleeper(void *arg) {
  timer_arg *a = arg;
  /* Deadlines from one base: task starts can be ms apart under
   * sanitizers on a loaded machine. */
  int r = weft_sleep_until(a->s->base + a->offset);
  log_add(&a->s->log, a->id);
  return r;
}

static int deadline_order_main(void *arg) {
  timer_state *s = arg;
  int64_t ms[5] = {50, 10, 40, 20, 30};
  timer_arg a[5];
  weft_task *t[5];
  s->base = weft_now() + WEFT_MS(200);
  for (int i = 0; i < 5; i++) {
    a[i] = (timer_arg){s, (int)ms[i], WEFT_MS(ms[i])};
    t[i] = weft_spawn(timed_sleeper, &a[i], NULL);
  }
  int rc = 0;
  for (int i = 0; i < 5; i++)
    rc |= weft_join(t[i]);
  return rc;
}

/* Sleeps of different durations wake in deadline order, not spawn order. */
Test(sleep, timers_deadline_order, .timeout = 10) {
  timer_state s = {0};
  cr_assert_eq(weft_run(deadline_order_main, &s), 0);
  int want[] = {10, 20, 30, 40, 50};
  log_expect(&s.log, want, 5);
}

static int until_sleeper(void *arg) {
  timer_arg *a = arg;
  int r = weft_sleep_until(a->s->base + a->offset);
  log_add(&a->s->log, a->id);
  return r;
}

static int fifo_main(void *arg) {
  timer_state *s = arg;
  timer_arg a[6];
  weft_task *t[6];
  s->base = weft_now() + WEFT_MS(20);
  for (int i = 0; i < 6; i++) {
    a[i] = (timer_arg){s, i, 0};
    t[i] = weft_spawn(until_sleeper, &a[i], NULL);
  }
  int rc = 0;
  for (int i = 0; i < 6; i++)
    rc |= weft_join(t[i]);
  return rc;
}

/* Timers with the same deadline wake in the order they were set
 * (FIFO: spawn order here). */
Test(sleep, timers_equal_deadline_fifo, .timeout = 10) {
  timer_state s = {0};
  cr_assert_eq(weft_run(fifo_main, &s), 0);
  int want[] = {0, 1, 2, 3, 4, 5};
  log_expect(&s.log, want, 6);
}

#define NSTRESS 300

typedef struct {
  int64_t base;
  int64_t off[NSTRESS];
  int order[NSTRESS];
  int n;
  int64_t late_max;
  int started;     /* sleepers that have run and wait at the gate */
  weft_event *gate;
} stress_state;

typedef struct {
  stress_state *s;
  int id;
} stress_arg;

static int stress_sleeper(void *arg) {
  stress_arg *a = arg;
  /* A task's first step can be slow (sanitizers: a fiber, fresh stack
   * pages): every sleeper has run before the deadlines are set. */
  a->s->started++;
  if (weft_event_wait(a->s->gate) != 0) return -EIO;
  int64_t d = a->s->base + a->s->off[a->id];
  int r = weft_sleep_until(d);
  int64_t late = weft_now() - d;
  if (late > a->s->late_max)
    a->s->late_max = late;
  a->s->order[a->s->n++] = a->id;
  return r == 0 && late >= 0 ? 0 : -EIO;
}

static int stress_main(void *arg) {
  stress_state *s = arg;
  static stress_arg a[NSTRESS];
  static weft_task *t[NSTRESS];
  uint32_t x = 12345;
  s->gate = weft_event_new();
  for (int i = 0; i < NSTRESS; i++) {
    x = x * 1103515245u + 12345u;
    s->off[i] = WEFT_MS((x >> 16) % 40); /* many ties */
    a[i] = (stress_arg){s, i};
    t[i] = weft_spawn(stress_sleeper, &a[i], NULL);
    if (!t[i])
      return -ENOMEM;
  }
  while (s->started < NSTRESS) weft_yield();
  /* All armed before the first fires, even under sanitizers and qemu:
   * the sleepers now only resume and arm their timers. */
  s->base = weft_now() + WEFT_MS(200);
  weft_event_set(s->gate);
  int rc = 0;
  for (int i = 0; i < NSTRESS; i++)
    rc |= weft_join(t[i]);
  weft_event_free(s->gate);
  return rc;
}

/* 300 timers with random deadlines (many equal): wake order is sorted by
 * deadline, ties in FIFO order, and nobody wakes before its deadline. */
Test(sleep, timers_stress_order, .timeout = 10) {
  static stress_state s;
  memset(&s, 0, sizeof s);
  cr_assert_eq(weft_run(stress_main, &s), 0);
  cr_assert_eq(s.n, NSTRESS);
  for (int i = 1; i < NSTRESS; i++) {
    int p = s.order[i - 1], q = s.order[i];
    cr_assert(s.off[p] < s.off[q] || (s.off[p] == s.off[q] && p < q),
              "woke %d (+%" PRId64 ") before %d (+%" PRId64 ")", p, s.off[p],
              q, s.off[q]);
  }
  cr_log_info("max lateness %.2f ms", MS_OF(s.late_max));
}

/* ---------------------------------------------------------------- */
/* A sleeping task does not hold up others                           */
/* ---------------------------------------------------------------- */

typedef struct {
  int64_t t_short, t_long, t0;
} par_state;

static int sleep_and_stamp(void *arg) {
  int64_t *slotp = arg;
  weft_sleep(*slotp);
  *slotp = weft_now();
  return 0;
}

static int parallel_main(void *arg) {
  par_state *s = arg;
  s->t0 = weft_now();
  s->t_long = WEFT_MS(60);
  s->t_short = WEFT_MS(20);
  weft_task *a = weft_spawn(sleep_and_stamp, &s->t_long, NULL);
  weft_task *b = weft_spawn(sleep_and_stamp, &s->t_short, NULL);
  weft_join(a);
  weft_join(b);
  return 0;
}

/* Sleeps overlap: a 60 ms and a 20 ms sleep together take ~60 ms, the
 * short one wakes first. */
Test(sleep, sleeps_overlap, .timeout = 10) {
  par_state s = {0};
  cr_assert_eq(weft_run(parallel_main, &s), 0);
  cr_assert_lt(s.t_short, s.t_long);
  cr_assert_geq(s.t_short - s.t0, WEFT_MS(20));
  cr_assert_geq(s.t_long - s.t0, WEFT_MS(60));
  cr_assert_lt(s.t_long - s.t0, WEFT_MS(60) + T_SLACK);
  cr_assert_lt(s.t_long - s.t0, WEFT_MS(80) + WEFT_MS(500),
               "sleeps seem serialized: %.1f ms", MS_OF(s.t_long - s.t0));
}

/* ---------------------------------------------------------------- */
/* Cancelling a sleeping task removes its timer                       */
/* ---------------------------------------------------------------- */

typedef struct {
  int r;
  int64_t el;
} cs_state;

static int sleep_1s(void *arg) {
  cs_state *s = arg;
  int64_t t0 = weft_now();
  s->r = weft_sleep(WEFT_SEC(1));
  s->el = weft_now() - t0;
  return 0;
}

static int cancel_sleep_main(void *arg) {
  cs_state *s = arg;
  int64_t t0 = weft_now();
  weft_task *t[50];
  for (int i = 0; i < 50; i++)
    t[i] = weft_spawn(sleep_1s, &s[i], NULL);
  weft_sleep(WEFT_MS(5));
  for (int i = 0; i < 50; i += 2)
    weft_cancel(t[i]);
  for (int i = 0; i < 50; i++)
    weft_join(t[i]);
  s[50].el = weft_now() - t0;
  return 0;
}

/* Cancelling some of many sleeping tasks wakes exactly those at once
 * with -ECANCELED; the others sleep their full second with 0. */
Test(sleep, cancel_some_sleepers, .timeout = 10) {
  static cs_state s[51];
  cr_assert_eq(weft_run(cancel_sleep_main, s), 0);
  for (int i = 0; i < 50; i++) {
    if (i % 2 == 0) {
      cr_assert_eq(s[i].r, -ECANCELED, "task %d", i);
      cr_assert_lt(s[i].el, WEFT_MS(900), "task %d", i);
    } else {
      cr_assert_eq(s[i].r, 0, "task %d", i);
      cr_assert_geq(s[i].el, WEFT_SEC(1), "task %d", i);
    }
  }
  cr_assert_lt(s[50].el, WEFT_SEC(1) + T_SLACK);
}
