/*
 * Internal API of the thread layer (src/thread/): spinning, CPU count.
 */
#ifndef WEFT_THREAD_INTERNAL_H
#define WEFT_THREAD_INTERNAL_H

#include <sched.h>

#include "core/internal.h"

/*
 * Spinning before sleeping. Waking a thread that sleeps on the other,
 * halted vCPU costs tens of microseconds on the VMs weft is measured on;
 * a hand-off to a thread that is still polling costs a cache-line transfer.
 * So a pool thread polls for the next job, and a loop that awaits a
 * to_thread result polls its inbox, for a short while before they sleep.
 * Between short rounds of polling they yield the CPU: when the other
 * thread shares it (taskset -c 1, or the scheduler put both there), that
 * is what lets it run; otherwise sched_yield returns at once. With one
 * usable CPU they only yield.
 */
#define WEFT__SPIN_LOOP_NS 20000   /* loop awaiting a to_thread job */
#define WEFT__SPIN_WORKER_NS 50000 /* pool thread awaiting the next job */
#define WEFT__SPIN_ROUND 8         /* polls between two yields */

/* CPUs this process may run on (sched_getaffinity), at least 1. */
WEFT__HIDDEN int weft__ncpu(void);

static inline void weft__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* Polls ready(arg) for at most budget_ns: true as soon as it holds. */
static inline bool weft__spin(bool (*ready)(void *), void *arg,
                              int64_t budget_ns) {
  if (budget_ns <= 0) return false;
  int64_t start = weft__clock();
  int round = weft__ncpu() > 1 ? WEFT__SPIN_ROUND : 1;
  for (;;) {
    for (int i = 0; i < round; i++) {
      if (ready(arg)) return true;
      weft__cpu_relax();
    }
    if (weft__clock() - start >= budget_ns) return ready(arg);
    sched_yield();
  }
}

/* The default pool (pool.c), made on first use; NULL with errno. */
WEFT__HIDDEN weft_executor *weft__default_executor(void);

#endif
