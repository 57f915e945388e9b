/*
 * retry: call a function until it succeeds, with capped exponential
 * backoff and jitter between attempts. The jitter only ever shortens a
 * delay (delay = nominal * (1 - jitter * u), u uniform in [0, 1)), so the
 * cap and the nominal schedule are upper bounds a caller can rely on.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>

#include "core/internal.h"

void weft_retry_opts_init(weft_retry_opts *o) {
  if (!o) return;
  *o = (weft_retry_opts){
      .max_attempts = 3,
      .base_delay = WEFT_MS(100),
      .max_delay = WEFT_SEC(10),
      .multiplier = 2.0,
      .jitter = 0.5,
  };
}

/* xorshift64*, one state per thread, seeded from the clock and the
 * state's own address (distinct per thread): jitter needs spread between
 * clients, not unpredictability. */
static __thread uint64_t rng_state;

static double uniform01(void) {
  uint64_t x = rng_state;
  if (!x) x = (uint64_t)weft_now() ^ (uint64_t)(uintptr_t)&rng_state ^ 1;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng_state = x;
  return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

static bool retryable(const weft_retry_opts *o, int code) {
  if (code == -ECANCELED) return false;
  if (o->retryable) return o->retryable(code, o->retryable_arg);
  if (!o->codes) return true;
  for (size_t i = 0; i < o->ncodes; i++)
    if (o->codes[i] == code) return true;
  return false;
}

static int check_opts(const weft_retry_opts *o) {
  /* Written so that NaN fails every test. */
  if (!(o->multiplier >= 1.0) || !isfinite(o->multiplier) ||
      !(o->jitter >= 0.0 && o->jitter <= 1.0))
    return -EINVAL;
  if (o->base_delay < 0 || o->max_delay < 0) return -EINVAL;
  if (o->ncodes && !o->codes) return -EINVAL;
  return 0;
}

/* ns from a double, saturating (a cast out of range is undefined). */
static int64_t to_ns(double x) {
  if (!(x > 0)) return 0;
  return x >= 0x1.0p63 ? WEFT_FOREVER : (int64_t)x;
}

/* The next nominal delay, saturating at the cap. */
static int64_t grow(int64_t d, const weft_retry_opts *o) {
  int64_t next = to_ns((double)d * o->multiplier);
  return next < o->max_delay ? next : o->max_delay;
}

int weft_retry(weft_fn fn, void *arg, const weft_retry_opts *opts) {
  weft_task *t = weft__cur();
  if (weft__unlikely(!t)) return weft__misuse(__func__, WEFT_ENOTASK);
  weft_retry_opts def;
  if (!opts) {
    weft_retry_opts_init(&def);
    opts = &def;
  }
  if (!fn) return -EINVAL;
  int rc = check_opts(opts);
  if (rc) return rc;
  if (weft__checkpoint(t)) return -ECANCELED;
  int64_t nominal =
      opts->base_delay < opts->max_delay ? opts->base_delay : opts->max_delay;
  for (unsigned attempt = 1;; attempt++) {
    rc = fn(arg);
    if (rc >= 0 || !retryable(opts, rc)) return rc;
    if (opts->max_attempts && attempt >= opts->max_attempts) return rc;
    int64_t delay = nominal;
    if (opts->jitter > 0)
      delay = to_ns((double)nominal * (1.0 - opts->jitter * uniform01()));
    if (delay > nominal) delay = nominal; /* double rounding */
    if (opts->on_retry) opts->on_retry(attempt, rc, delay, opts->on_retry_arg);
    int src = weft_sleep(delay);
    if (src) return src; /* -ECANCELED, or -ENOMEM from the timer heap */
    nominal = grow(nominal, opts);
  }
}
