/*
 * combine_fetcher.c -- the rate-limited fetcher: 12 "requests" with at
 * most 3 in flight (a semaphore) and at most 20 started per second after
 * a burst of 4 (a token-bucket limiter), each retried with backoff when
 * it fails, all gathered.
 *
 *   gcc -I include examples/combine_fetcher.c -L build/lib -lweft -o fetcher && LD_LIBRARY_PATH=build/lib ./fetcher
 *
 * Python:
 *   sem = asyncio.Semaphore(3); limiter = AsyncLimiter(20, 1)  # aiolimiter
 *   async def fetch(i):
 *       async with sem:
 *           async with limiter:
 *               return await get(i)        # tenacity @retry around it
 *   await asyncio.gather(*(fetch(i) for i in range(12)))
 *
 * Exits 0 when the limits held and every request succeeded.
 */
#include <errno.h>
#include <stdio.h>

#include "weft.h"

#define N 12

static weft_sem *sem;
static weft_limiter *limiter;
static int64_t t0;
static int in_flight, max_in_flight, tries[N];

/* One try of request i: the first try of every third request fails with
 * a transient error, as a flaky server would. */
static int get(void *arg) {
  int i = (int)(intptr_t)arg;
  int rc = weft_limiter_acquire(limiter); /* how often */
  if (rc) return rc;
  printf("  %6.1f ms  request %2d, try %d (%d in flight)\n",
         (double)(weft_now() - t0) / 1e6, i, tries[i] + 1, in_flight);
  rc = weft_sleep(WEFT_MS(40)); /* the round trip */
  if (rc) return rc;
  return tries[i]++ == 0 && i % 3 == 0 ? -EAGAIN : 0;
}

static int fetch(void *arg) {
  int rc = weft_sem_acquire(sem); /* how many at once */
  if (rc) return rc;
  if (++in_flight > max_in_flight) max_in_flight = in_flight;
  weft_retry_opts o;
  weft_retry_opts_init(&o);
  o.base_delay = WEFT_MS(20);
  static const int transient[] = {-EAGAIN, -ECONNRESET};
  o.codes = transient;
  o.ncodes = 2;
  rc = weft_retry(get, arg, &o);
  in_flight--;
  weft_sem_release(sem);
  return rc;
}

static int main_task(void *arg) {
  (void)arg;
  weft_call calls[N];
  int results[N];
  for (int i = 0; i < N; i++) calls[i] = (weft_call){fetch, (void *)(intptr_t)i};
  t0 = weft_now();
  int rc = weft_gather(calls, N, results, 0);
  double s = (double)(weft_now() - t0) / 1e9;
  int bad = rc != 0 || max_in_flight > 3;
  for (int i = 0; i < N; i++) bad |= results[i] != 0;
  printf("gather: %s; %d requests in %.2f s, at most %d in flight\n",
         rc ? weft_strerror(rc) : "all succeeded", N, s, max_in_flight);
  return bad;
}

int main(void) {
  sem = weft_sem_new(3);
  limiter = weft_limiter_new(20.0, 4);
  if (!sem || !limiter) return 1;
  int rc = weft_run(main_task, NULL);
  weft_limiter_free(limiter);
  weft_sem_free(sem);
  return rc == 0 ? 0 : 1;
}
