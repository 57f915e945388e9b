/*
 * Clocks: weft_now (CLOCK_MONOTONIC), and the loop's cheaper clock for
 * relative deadlines (weft__fast_now in internal.h), calibrated here.
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <time.h>

#include "core/internal.h"

int64_t weft__clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t weft_now(void) { return weft__clock(); }

/*
 * A cheaper clock for relative deadlines (weft_scope_open_after,
 * weft_sleep). clock_gettime costs 17-28 ns on the VMs weft is measured
 * on, most of a timeout scope's budget; reading the TSC costs 7 ns. On
 * x86-64 with an invariant TSC, the loop calibrates ns per tick against
 * CLOCK_MONOTONIC (over at least 1 ms, refined at every loop turn over the
 * loop's whole life, from reads bracketed tightly enough to trust) and
 * extrapolates from the (clock, tsc) pair of the last loop turn, adding a
 * margin so that it errs late, never early. Until calibrated, and elsewhere, it is
 * clock_gettime. weft_now() always reads the real clock.
 */
#if defined(__x86_64__)
#include <cpuid.h>
bool weft__tsc_invariant(void) {
  unsigned a, b, c, d;
  if ((unsigned)__get_cpuid_max(0x80000000, NULL) < 0x80000007u) return false;
  __cpuid(0x80000007, a, b, c, d);
  (void)a, (void)b, (void)c;
  return (d >> 8) & 1;
}
#else
bool weft__tsc_invariant(void) { return false; }
#endif

/* A (clock, tsc) pair is trusted when the two TSC reads around the clock
 * read are at most TSC_BRACKET ticks apart (a clock read takes ~50 ticks;
 * more means the thread was interrupted), so its error is at most half of
 * that: ~0.4 us. Over the first TSC_CAL_NS that bounds the rate's error by
 * 4e-4 (typically 2e-5); every later loop turn refines it over the whole
 * life of the loop. */
#define TSC_CAL_NS 1000000 /* calibrate over 1 ms at least */
#define TSC_BRACKET 2000

/* Reads the clock, and when the TSC is in use records a (clock, tsc) pair
 * and refines the rate. A pair whose clock read took too long (the thread
 * was preempted between the reads) is not used: it would skew the rate. */
int64_t weft__clock_sample(weft_loop *L) {
  if (!L->tsc_usable) return weft__clock();
  uint64_t a = weft__tsc();
  int64_t now = weft__clock();
  uint64_t b = weft__tsc();
  if (b - a > TSC_BRACKET) return now;
  uint64_t tsc = a + (b - a) / 2;
  if (!L->cal_ns) {
    L->cal_ns = now;
    L->cal_tsc = tsc;
    return now;
  }
  int64_t dns = now - L->cal_ns;
  uint64_t dtsc = tsc - L->cal_tsc;
  if (dns < TSC_CAL_NS || dtsc == 0) return now;
  L->tsc_mult = (uint64_t)(((unsigned __int128)dns << 32) / dtsc);
  L->anchor_ns = now;
  L->anchor_tsc = tsc;
  return now;
}
