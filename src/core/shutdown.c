/*
 * asyncio.run's graceful end (weft_config.shutdown_signals): the first
 * SIGINT or SIGTERM cancels the running root task, a second SIGINT ends
 * the process at once by its default action.
 *
 * A plain sigaction handler does it, on whatever thread the kernel picks
 * (weft's pool threads block every signal; the program's own threads may
 * not): it marks each loop that asked for this and wakes it through its
 * poller's wake channel (an eventfd write: async-signal-safe). The loop
 * sees the mark after its poll and cancels its root task there, on its
 * own thread. Each loop is in the table while a root task runs
 * (weft_run's main, a weft_runner_run call). The handler reads the table of loops without a lock; a loop
 * leaving the table waits until no handler is running before its memory
 * can go. The previous dispositions are saved when the first such loop
 * starts and put back when the last one ends, unless someone installed
 * another handler meanwhile (a signal watch of weft/proc.h that took
 * SIGINT saves ours and restores it itself).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>

#include "core/internal.h"

#define SLOTS 64 /* loops with the option at once (one per thread) */

static weft_loop *_Atomic slots[SLOTS];
static atomic_int running; /* handlers under way */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int nloops;         /* under mu */
static struct sigaction old_int, old_term;

static void on_signal(int sig) {
  int saved = errno;
  atomic_fetch_add(&running, 1);
  bool again = false;
  for (int i = 0; i < SLOTS; i++) {
    weft_loop *L = atomic_load(&slots[i]);
    if (!L) continue;
    if (atomic_exchange(&L->sig_seen, 1)) again = true;
    atomic_store(&L->sig_cancel, 1);
    atomic_store(&L->wake_pending, 1);
    weft__poller_wake(L->poller);
  }
  atomic_fetch_sub(&running, 1);
  if (again && sig == SIGINT) {
    /* The second one: the default action, now. SIGINT is blocked while
     * this handler runs, so the raised one is delivered on return. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGINT, &dfl, NULL);
    raise(SIGINT);
  }
  errno = saved;
}

/* Puts back `old` for sig if our handler is still the one installed. */
static void restore(int sig, const struct sigaction *old) {
  struct sigaction cur;
  if (sigaction(sig, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
      cur.sa_handler == on_signal)
    sigaction(sig, old, NULL);
}

int weft__shutdown_add(weft_loop *L) {
  pthread_mutex_lock(&mu);
  int slot = -1;
  for (int i = 0; i < SLOTS && slot < 0; i++)
    if (!atomic_load(&slots[i])) slot = i;
  if (slot < 0) {
    pthread_mutex_unlock(&mu);
    return -ENOSPC;
  }
  if (nloops == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, &old_int) != 0 ||
        sigaction(SIGTERM, &sa, &old_term) != 0) {
      int e = -errno;
      restore(SIGINT, &old_int);
      pthread_mutex_unlock(&mu);
      return e;
    }
  }
  nloops++;
  L->sig_slot = slot;
  atomic_store(&L->sig_seen, 0);
  atomic_store(&L->sig_cancel, 0);
  atomic_store(&slots[slot], L);
  pthread_mutex_unlock(&mu);
  return 0;
}

void weft__shutdown_remove(weft_loop *L) {
  if (L->sig_slot < 0) return;
  pthread_mutex_lock(&mu);
  atomic_store(&slots[L->sig_slot], NULL);
  L->sig_slot = -1;
  /* A handler that loaded L before the store may still be using it. */
  while (atomic_load(&running)) sched_yield();
  if (--nloops == 0) {
    restore(SIGINT, &old_int);
    restore(SIGTERM, &old_term);
  }
  pthread_mutex_unlock(&mu);
}

void weft__shutdown_check(weft_loop *L) {
  if (!atomic_exchange(&L->sig_cancel, 0)) return;
  weft_task *root = L->root;
  if (root && root->state != WEFT__T_DONE) weft__task_cancel(root);
}
