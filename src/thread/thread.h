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
 * With one usable CPU (taskset -c 1), polling would only keep the other
 * thread off that CPU, so they yield it instead at every round.
 */
#define WEFT__SPIN_LOOP_NS 20000   /* loop awaiting a to_thread job */
#define WEFT__SPIN_WORKER_NS 50000 /* pool thread awaiting the next job */
#define WEFT__SPIN_PAUSE_NS 5000   /* pure polling before yielding */

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
  bool poll = weft__ncpu() > 1;
  for (unsigned n = 1;; n++) {
    if (ready(arg)) return true;
    if (poll) {
      weft__cpu_relax();
      if (n & 15) continue;
    } else {
      sched_yield();
    }
    int64_t spent = weft__clock() - start;
    if (spent >= budget_ns) return ready(arg);
    if (spent >= WEFT__SPIN_PAUSE_NS) poll = false;
  }
}

/* The default pool (pool.c), made on first use; NULL with errno. */
WEFT__HIDDEN weft_executor *weft__default_executor(void);

#endif
