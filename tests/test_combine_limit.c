/*
 * test_combine_limit.c -- weft_retry (attempts, backoff, retryable codes,
 * cancellation) and the token-bucket rate limiter, alone and with a
 * semaphore.
 */
#include "helpers.h"

/* ---------------------------------------------------------------- */
/* retry                                                             */
/* ---------------------------------------------------------------- */

typedef struct {
  const int *codes; /* returned by successive calls (the last repeats) */
  int ncodes;
  int calls;
  unsigned attempts[16];
  int retry_codes[16];
  int64_t delays[16];
  int nretries;
  int rc, rc2;
  int64_t elapsed;
} rt_st;

static int flaky(void *arg) {
  rt_st *s = arg;
  int i = s->calls < s->ncodes ? s->calls : s->ncodes - 1;
  s->calls++;
  return s->codes[i];
}

static void on_retry(unsigned attempt, int code, int64_t delay, void *arg) {
  rt_st *s = arg;
  if (s->nretries < 16) {
    s->attempts[s->nretries] = attempt;
    s->retry_codes[s->nretries] = code;
    s->delays[s->nretries] = delay;
  }
  s->nretries++;
}

static void opts_exact(weft_retry_opts *o, rt_st *s, unsigned attempts,
                       int64_t base) {
  weft_retry_opts_init(o);
  o->max_attempts = attempts;
  o->base_delay = base;
  o->jitter = 0;
  o->on_retry = on_retry;
  o->on_retry_arg = s;
}

static int giveup_main(void *arg) {
  rt_st *s = arg;
  weft_retry_opts o;
  opts_exact(&o, s, 4, WEFT_MS(1));
  int64_t t0 = weft_now();
  s->rc = weft_retry(flaky, s, &o);
  s->elapsed = weft_now() - t0;
  return 0;
}

/* Gives up after the last attempt with the last error; the delays double. */
Test(combine_limit, retry_gives_up_with_last_error, .timeout = 10) {
  static const int codes[] = {-EIO, -EAGAIN, -EIO, -ETIMEDOUT, 0};
  rt_st s = {.codes = codes, .ncodes = 5};
  cr_assert_eq(weft_run(giveup_main, &s), 0);
  cr_assert_eq(s.rc, -ETIMEDOUT);
  cr_assert_eq(s.calls, 4);
  cr_assert_eq(s.nretries, 3);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(s.attempts[i], (unsigned)i + 1);
    cr_assert_eq(s.retry_codes[i], codes[i]);
    cr_assert_eq(s.delays[i], WEFT_MS(1) << i, "delay %d: %lld", i,
                 (long long)s.delays[i]);
  }
  cr_assert_geq(s.elapsed, WEFT_MS(7));
}

static int succeed_main(void *arg) {
  rt_st *s = arg;
  weft_retry_opts o;
  opts_exact(&o, s, 5, WEFT_MS(1));
  s->rc = weft_retry(flaky, s, &o);
  return 0;
}

Test(combine_limit, retry_until_success, .timeout = 10) {
  static const int codes[] = {-EIO, -EIO, 3};
  rt_st s = {.codes = codes, .ncodes = 3};
  cr_assert_eq(weft_run(succeed_main, &s), 0);
  cr_assert_eq(s.rc, 3, "the success code is returned as is");
  cr_assert_eq(s.calls, 3);
  cr_assert_eq(s.nretries, 2);
}

static bool only_eagain(int code, void *arg) {
  (void)arg;
  return code == -EAGAIN;
}

typedef struct {
  rt_st cancelled, listed, unlisted, pred;
  rt_st scope;
  int scope_close;
} norty_st;

static int no_retry_main(void *arg) {
  norty_st *s = arg;
  weft_retry_opts o;
  static const int canc[] = {-ECANCELED, 0};
  s->cancelled.codes = canc;
  s->cancelled.ncodes = 2;
  opts_exact(&o, &s->cancelled, 5, WEFT_MS(1));
  s->cancelled.rc = weft_retry(flaky, &s->cancelled, &o);

  static const int retry_on[] = {-EAGAIN, -EBUSY};
  static const int busy_then_io[] = {-EBUSY, -EIO, 0};
  s->listed.codes = busy_then_io;
  s->listed.ncodes = 3;
  opts_exact(&o, &s->listed, 5, WEFT_MS(1));
  o.codes = retry_on;
  o.ncodes = 2;
  s->listed.rc = weft_retry(flaky, &s->listed, &o);

  static const int io[] = {-EIO, 0};
  s->pred.codes = io;
  s->pred.ncodes = 2;
  opts_exact(&o, &s->pred, 5, WEFT_MS(1));
  o.retryable = only_eagain;
  o.codes = retry_on; /* the predicate wins over the list */
  o.ncodes = 2;
  s->pred.rc = weft_retry(flaky, &s->pred, &o);

  /* A deadline around retry bounds it; the backoff sleep is where it
   * lands. */
  static const int always[] = {-EIO};
  s->scope.codes = always;
  s->scope.ncodes = 1;
  opts_exact(&o, &s->scope, 0, WEFT_SEC(5)); /* no attempt limit */
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(20));
  int64_t t0 = weft_now();
  s->scope.rc = weft_retry(flaky, &s->scope, &o);
  s->scope.elapsed = weft_now() - t0;
  s->scope_close = weft_scope_close(&sc);
  return 0;
}

/* -ECANCELED is never retried, nor a code outside the retryable set; a
 * cancelled backoff sleep ends the retry with -ECANCELED. */
Test(combine_limit, retry_not_retried, .timeout = 10) {
  norty_st s = {0};
  cr_assert_eq(weft_run(no_retry_main, &s), 0);
  cr_assert_eq(s.cancelled.rc, -ECANCELED);
  cr_assert_eq(s.cancelled.calls, 1);
  cr_assert_eq(s.listed.rc, -EIO);
  cr_assert_eq(s.listed.calls, 2, "-EBUSY retried, -EIO not");
  cr_assert_eq(s.pred.rc, -EIO);
  cr_assert_eq(s.pred.calls, 1);
  cr_assert_eq(s.scope.rc, -ECANCELED);
  cr_assert_eq(s.scope.calls, 1);
  cr_assert_lt(s.scope.elapsed, T_SLACK);
  cr_assert_eq(s.scope_close, -ETIMEDOUT);
}

typedef struct {
  rt_st exact, capped, jittered;
} timing_st;

static int timing_main(void *arg) {
  timing_st *s = arg;
  static const int always[] = {-EIO};
  weft_retry_opts o;

  s->exact.codes = always;
  s->exact.ncodes = 1;
  opts_exact(&o, &s->exact, 4, WEFT_MS(20)); /* 20 + 40 + 80 ms */
  int64_t t0 = weft_now();
  s->exact.rc = weft_retry(flaky, &s->exact, &o);
  s->exact.elapsed = weft_now() - t0;

  s->capped.codes = always;
  s->capped.ncodes = 1;
  opts_exact(&o, &s->capped, 5, WEFT_MS(10));
  o.multiplier = 3;
  o.max_delay = WEFT_MS(25); /* 10, 25, 25, 25 */
  s->capped.rc = weft_retry(flaky, &s->capped, &o);

  s->jittered.codes = always;
  s->jittered.ncodes = 1;
  opts_exact(&o, &s->jittered, 9, WEFT_MS(1));
  o.jitter = 0.5;
  o.max_delay = WEFT_MS(8);
  t0 = weft_now();
  s->jittered.rc = weft_retry(flaky, &s->jittered, &o);
  s->jittered.elapsed = weft_now() - t0;
  return 0;
}

/* The backoff never sleeps less than it says, grows by the multiplier up
 * to the cap, and jitter only shortens a delay, by at most its fraction. */
Test(combine_limit, retry_backoff_timing, .timeout = 10) {
  timing_st s = {0};
  cr_assert_eq(weft_run(timing_main, &s), 0);
  cr_assert_eq(s.exact.rc, -EIO);
  cr_assert_geq(s.exact.elapsed, WEFT_MS(140), "%.1f ms", MS_OF(s.exact.elapsed));
  cr_assert_lt(s.exact.elapsed, WEFT_MS(140) + T_SLACK);

  int64_t want[4] = {WEFT_MS(10), WEFT_MS(25), WEFT_MS(25), WEFT_MS(25)};
  cr_assert_eq(s.capped.nretries, 4);
  for (int i = 0; i < 4; i++)
    cr_assert_eq(s.capped.delays[i], want[i], "delay %d", i);

  cr_assert_eq(s.jittered.nretries, 8);
  int64_t sum = 0, nominal = WEFT_MS(1);
  for (int i = 0; i < 8; i++) {
    int64_t d = s.jittered.delays[i];
    cr_assert_leq(d, nominal, "delay %d = %lld over %lld", i, (long long)d,
                  (long long)nominal);
    cr_assert_geq(d, nominal / 2, "delay %d = %lld", i, (long long)d);
    sum += d;
    nominal = nominal * 2 > WEFT_MS(8) ? WEFT_MS(8) : nominal * 2;
  }
  cr_assert_geq(s.jittered.elapsed, sum);
}

static int ok_fn(void *arg) {
  (*(int *)arg)++;
  return 0;
}

typedef struct {
  int null_fn, mult, jitter, nan, neg, codes, cancelled, deflt, calls;
} rbad_st;

static int retry_bad_main(void *arg) {
  rbad_st *s = arg;
  weft_retry_opts o;
  weft_retry_opts_init(&o);
  s->null_fn = weft_retry(NULL, NULL, &o);
  o.multiplier = 0.5;
  s->mult = weft_retry(ok_fn, &s->calls, &o);
  weft_retry_opts_init(&o);
  o.jitter = 1.5;
  s->jitter = weft_retry(ok_fn, &s->calls, &o);
  weft_retry_opts_init(&o);
  o.multiplier = 0.0 / 0.0;
  s->nan = weft_retry(ok_fn, &s->calls, &o);
  weft_retry_opts_init(&o);
  o.base_delay = -1;
  s->neg = weft_retry(ok_fn, &s->calls, &o);
  weft_retry_opts_init(&o);
  o.ncodes = 2;
  s->codes = weft_retry(ok_fn, &s->calls, &o);
  weft_scope sc;
  weft_scope_open(&sc, WEFT_FOREVER);
  weft_scope_cancel(&sc);
  s->cancelled = weft_retry(ok_fn, &s->calls, NULL);
  weft_scope_close(&sc);
  cr_assert_eq(s->calls, 0, "no call on bad input or when cancelled");
  s->deflt = weft_retry(ok_fn, &s->calls, NULL);
  return 0;
}

Test(combine_limit, retry_bad_input, .timeout = 10) {
  int calls = 0;
  cr_assert_eq(weft_retry(ok_fn, &calls, NULL), WEFT_ENOTASK);
  cr_assert_eq(calls, 0);
  weft_retry_opts_init(NULL); /* harmless */
  weft_retry_opts o;
  weft_retry_opts_init(&o);
  cr_assert_eq(o.max_attempts, 3);
  cr_assert_eq(o.base_delay, WEFT_MS(100));
  rbad_st s = {0};
  cr_assert_eq(weft_run(retry_bad_main, &s), 0);
  cr_assert_eq(s.null_fn, -EINVAL);
  cr_assert_eq(s.mult, -EINVAL);
  cr_assert_eq(s.jitter, -EINVAL);
  cr_assert_eq(s.nan, -EINVAL);
  cr_assert_eq(s.neg, -EINVAL);
  cr_assert_eq(s.codes, -EINVAL);
  cr_assert_eq(s.cancelled, -ECANCELED);
  cr_assert_eq(s.deflt, 0);
  cr_assert_eq(s.calls, 1);
}

/* ---------------------------------------------------------------- */
/* rate limiter                                                      */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_limiter *l;
  int rc[16];
  int n;
  int64_t elapsed;
  tlog log;
} lim_st;

static int burst_main(void *arg) {
  lim_st *s = arg;
  for (int i = 0; i < 6; i++) s->rc[i] = weft_limiter_try_acquire(s->l);
  return 0;
}

/* A full bucket gives `burst` tokens at once, then -EAGAIN. */
Test(combine_limit, limiter_burst, .timeout = 10) {
  lim_st s = {.l = weft_limiter_new(1.0, 5)};
  cr_assert_not_null(s.l);
  cr_assert_eq(weft_run(burst_main, &s), 0);
  for (int i = 0; i < 5; i++) cr_assert_eq(s.rc[i], 0, "try %d", i);
  cr_assert_eq(s.rc[5], -EAGAIN);
  cr_assert_eq(weft_limiter_free(s.l), 0);
}

static int rate_main(void *arg) {
  lim_st *s = arg;
  int64_t t0 = weft_now();
  for (int i = 0; i < 12; i++) s->rc[i] = weft_limiter_acquire(s->l);
  s->elapsed = weft_now() - t0;
  return 0;
}

/* 100 per second, burst 2: 12 acquires take 10 refills of 10 ms. */
Test(combine_limit, limiter_rate, .timeout = 10) {
  lim_st s = {.l = weft_limiter_new(100.0, 2)};
  cr_assert_eq(weft_run(rate_main, &s), 0);
  for (int i = 0; i < 12; i++) cr_assert_eq(s.rc[i], 0);
  cr_assert_geq(s.elapsed, WEFT_MS(99), "%.2f ms", MS_OF(s.elapsed));
  cr_assert_lt(s.elapsed, WEFT_MS(100) + T_SLACK);
  cr_assert_eq(weft_limiter_free(s.l), 0);
}

typedef struct {
  lim_st *s;
  int id;
} lim_arg;

static int lim_taker(void *arg) {
  lim_arg *a = arg;
  int rc = weft_limiter_acquire(a->s->l);
  a->s->rc[a->id] = rc;
  log_add(&a->s->log, a->id);
  return rc;
}

static int fifo_main(void *arg) {
  lim_st *s = arg;
  cr_assert_eq(weft_limiter_try_acquire(s->l), 0); /* empty the bucket */
  lim_arg a[4];
  weft_task *t[4];
  for (int i = 0; i < 4; i++) {
    a[i] = (lim_arg){s, i};
    t[i] = spawn_named(lim_taker, &a[i], NULL);
    weft_yield(); /* park them in order */
  }
  s->rc[10] = weft_limiter_try_acquire(s->l); /* waiters: no overtaking */
  weft_cancel(t[1]);                          /* leaves the queue */
  for (int i = 0; i < 4; i++) weft_join(t[i]);
  return 0;
}

/* Waiters are served in order; a cancelled one leaves its place. */
Test(combine_limit, limiter_fifo_and_cancel, .timeout = 10) {
  lim_st s = {.l = weft_limiter_new(20.0, 1)};
  cr_assert_eq(weft_run(fifo_main, &s), 0);
  cr_assert_eq(s.rc[10], -EAGAIN);
  cr_assert_eq(s.rc[1], -ECANCELED);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.rc[3], 0);
  int want[] = {1, 0, 2, 3};
  log_expect(&s.log, want, 4);
  cr_assert_eq(weft_limiter_free(s.l), 0);
}

static int handoff_taker(void *arg) {
  lim_st *s = arg;
  s->rc[0] = weft_limiter_acquire(s->l);
  s->rc[1] = weft_yield(); /* the cancellation shows here */
  return 0;
}

static int handoff_main(void *arg) {
  lim_st *s = arg;
  cr_assert_eq(weft_limiter_try_acquire(s->l), 0);
  weft_task *t = spawn_named(handoff_taker, s, "taker");
  weft_yield(); /* t parks for the next token, due in 20 ms */
  busy_wait(WEFT_MS(100)); /* past it, without letting the loop turn */
  weft_yield(); /* the loop turn hands t the token and readies it */
  weft_cancel(t); /* too late: t was woken with its token */
  weft_join(t);
  s->rc[2] = weft_limiter_try_acquire(s->l); /* the token was not duplicated */
  return 0;
}

/* A waiter cancelled after it was handed a token keeps it. */
Test(combine_limit, limiter_token_not_lost_on_cancel, .timeout = 10) {
  lim_st s = {.l = weft_limiter_new(50.0, 1)};
  cr_assert_eq(weft_run(handoff_main, &s), 0);
  cr_assert_eq(s.rc[0], 0, "the woken waiter owns its token");
  cr_assert_eq(s.rc[1], -ECANCELED);
  cr_assert_eq(s.rc[2], -EAGAIN);
  cr_assert_eq(weft_limiter_free(s.l), 0);
}

static int free_main(void *arg) {
  lim_st *s = arg;
  weft_limiter_try_acquire(s->l);
  lim_arg a[2] = {{s, 0}, {s, 1}};
  weft_task *t[2];
  for (int i = 0; i < 2; i++) t[i] = spawn_named(lim_taker, &a[i], NULL);
  weft_yield();
  s->rc[5] = weft_limiter_free(s->l);
  for (int i = 0; i < 2; i++) weft_join(t[i]);
  return 0;
}

/* Freeing a limiter with waiters wakes them with -EIDRM; nothing hangs. */
Test(combine_limit, limiter_free_with_waiters, .timeout = 10) {
  lim_st s = {.l = weft_limiter_new(0.001, 1)}; /* a token per 1000 s */
  cr_assert_eq(weft_run(free_main, &s), 0);
  cr_assert_eq(s.rc[5], 0);
  cr_assert_eq(s.rc[0], -EIDRM);
  cr_assert_eq(s.rc[1], -EIDRM);
}

static int lim_bad_main(void *arg) {
  lim_st *s = arg;
  s->rc[0] = weft_limiter_acquire(NULL);
  s->rc[1] = weft_limiter_try_acquire(NULL);
  weft_scope sc;
  weft_scope_open(&sc, WEFT_FOREVER);
  weft_scope_cancel(&sc);
  s->rc[2] = weft_limiter_acquire(s->l); /* a checkpoint, even with tokens */
  weft_scope_close(&sc);
  s->rc[3] = weft_limiter_try_acquire(s->l); /* the token is still there */
  return 0;
}

Test(combine_limit, limiter_bad_input, .timeout = 10) {
  errno = 0;
  cr_assert_null(weft_limiter_new(0.0, 1));
  cr_assert_eq(errno, EINVAL);
  cr_assert_null(weft_limiter_new(-1.0, 1));
  cr_assert_null(weft_limiter_new(0.0 / 0.0, 1));
  cr_assert_null(weft_limiter_new(1.0 / 0.0, 1));
  errno = 0;
  cr_assert_null(weft_limiter_new(1.0, 0));
  cr_assert_eq(errno, EINVAL);
  cr_assert_eq(weft_limiter_free(NULL), -EINVAL);

  weft_limiter *l = weft_limiter_new(1.0, 1);
  cr_assert_not_null(l);
  cr_assert_eq(weft_limiter_acquire(l), WEFT_ENOTASK);
  lim_st s = {.l = l};
  cr_assert_eq(weft_run(lim_bad_main, &s), 0);
  cr_assert_eq(s.rc[0], -EINVAL);
  cr_assert_eq(s.rc[1], -EINVAL);
  cr_assert_eq(s.rc[2], -ECANCELED);
  cr_assert_eq(s.rc[3], 0);
  cr_assert_eq(weft_limiter_free(l), 0, "no waiters: free from any thread");
  /* Before any loop used it, try_acquire works from a plain thread. */
  l = weft_limiter_new(1.0, 1);
  cr_assert_eq(weft_limiter_try_acquire(l), 0);
  cr_assert_eq(weft_limiter_try_acquire(l), -EAGAIN);
  cr_assert_eq(weft_limiter_free(l), 0);
}

/* ---------------------------------------------------------------- */
/* Semaphore + limiter: the rate-limited fetcher                     */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_sem *sem;
  weft_limiter *lim;
  int active, max_active, done, bad, nstarts;
  int64_t t0, start[8];
} fetch_st;

static int fetcher(void *arg) {
  fetch_st *s = arg;
  int rc = weft_sem_acquire(s->sem);
  if (rc) return rc;
  rc = weft_limiter_acquire(s->lim);
  if (!rc) {
    if (++s->active > s->max_active) s->max_active = s->active;
    s->start[s->nstarts++] = weft_now() - s->t0;
    rc = weft_sleep(WEFT_MS(100)); /* the "request" */
    s->active--;
    s->done++;
  }
  if (weft_sem_release(s->sem)) s->bad++;
  return rc;
}

static int fetch_main(void *arg) {
  fetch_st *s = arg;
  s->t0 = weft_now();
  weft_group *g = weft_group_open();
  for (int i = 0; i < 8; i++) weft_group_spawn(g, fetcher, s, NULL);
  return weft_group_close(g, NULL);
}

/* At most 3 at once (the semaphore), and by any time t at most
 * 2 + 50 t starts (the limiter: burst 2, 50 a second), so start k
 * (from 0) comes at least (k - 1) x 20 ms after the first. */
Test(combine_limit, limiter_with_semaphore, .timeout = 10) {
  fetch_st s = {.sem = weft_sem_new(3), .lim = weft_limiter_new(50.0, 2)};
  cr_assert_not_null(s.sem);
  cr_assert_not_null(s.lim);
  cr_assert_eq(weft_run(fetch_main, &s), 0);
  cr_assert_eq(s.done, 8);
  cr_assert_eq(s.bad, 0);
  cr_assert_eq(s.max_active, 3);
  for (int k = 2; k < 8; k++)
    cr_assert_geq(s.start[k], (k - 1) * WEFT_MS(20),
                  "start %d at %.2f ms", k, MS_OF(s.start[k]));
  cr_assert_eq(weft_limiter_free(s.lim), 0);
  cr_assert_eq(weft_sem_free(s.sem), 0);
}
