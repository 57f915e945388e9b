/*
 * The cross-thread inbox of a loop, loop references, and the hooks of
 * the layers above core (weft__layer in internal.h): what links a loop
 * to the world beyond its own thread and its own layer.
 *
 * Other threads hand a loop work by posting a message (weft__msg) to an
 * intrusive MPSC FIFO queue in the loop (Dmitry Vyukov's: a post is one
 * atomic exchange and one store; the loop pops without atomic
 * read-modify-writes). The loop pops at most INBOX_BATCH messages per
 * turn, so that a task spawned by a message runs while the message is
 * still in the cache, instead of first spawning a backlog of a million
 * tasks. A poster wakes the loop's poller only when the loop has
 * announced that it is about to sleep (L->polling), and only the first of
 * a burst does (L->wake_pending): a busy loop costs its posters no system
 * call. The announcement is a Dekker handshake: the loop stores polling
 * and then looks at the queue; a poster pushes and then looks at polling;
 * with sequentially consistent operations one of them sees the other.
 * Before it announces a sleep, a loop that expects messages soon
 * (L->nexpected, counted by the upper layer that awaits them) polls the
 * queue for a short while: see weft__spin in internal.h.
 *
 * Known limit of the queue: a poster preempted between its exchange and
 * its store leaves the messages behind its own invisible until it resumes;
 * the loop then polls without sleeping (the queue is not empty) and yields
 * its CPU meanwhile.
 *
 * Lifetime: the loop struct is reference counted. The running loop holds
 * one reference and gives it back when it is freed; weft_loop_ref holders
 * hold others (upper layers take one for each piece of work that will
 * post a reply), so whoever may still post to a loop can. When the loop
 * is freed, its inbox is closed (posts under way are waited for, later
 * ones fail with -ESHUTDOWN and the poster deals with its message
 * itself). The poller's wake channel is freed with the last reference
 * (after the upper layers' loop_release), so a poster never writes into
 * a recycled descriptor.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/internal.h"

#define INBOX_BATCH 256

void weft__inbox_init(weft_loop *L) {
  atomic_init(&L->inbox_anchor.next, NULL);
  L->inbox_head = &L->inbox_anchor;
  atomic_init(&L->inbox_tail, &L->inbox_anchor);
  atomic_init(&L->refs, 1); /* the running loop's own: see loop_free */
}

static void push(weft_loop *L, weft__msg *m) {
  atomic_store_explicit(&m->next, NULL, memory_order_relaxed);
  weft__msg *prev = atomic_exchange(&L->inbox_tail, m);
  atomic_store_explicit(&prev->next, m, memory_order_release);
}

int weft__loop_post(weft_loop *L, weft__msg *m) {
  int rc = 0;
  atomic_fetch_add(&L->inbox_pushers, 1);
  if (atomic_load(&L->inbox_closed)) {
    rc = -ESHUTDOWN;
  } else {
    push(L, m);
    if (atomic_load(&L->polling) && !atomic_exchange(&L->wake_pending, 1))
      weft__poller_wake(L->poller);
  }
  atomic_fetch_sub_explicit(&L->inbox_pushers, 1, memory_order_release);
  return rc;
}

/* The oldest message, or NULL if none can be taken now. */
static weft__msg *pop(weft_loop *L) {
  weft__msg *head = L->inbox_head;
  weft__msg *next = atomic_load_explicit(&head->next, memory_order_acquire);
  if (head == &L->inbox_anchor) {
    if (!next) return NULL;
    L->inbox_head = head = next;
    next = atomic_load_explicit(&head->next, memory_order_acquire);
  }
  if (next) {
    L->inbox_head = next;
    return head;
  }
  if (atomic_load(&L->inbox_tail) != head) return NULL; /* being linked */
  push(L, &L->inbox_anchor); /* head is the last: put the anchor behind it */
  next = atomic_load_explicit(&head->next, memory_order_acquire);
  if (!next) return NULL;
  L->inbox_head = next;
  return head;
}

/* References the loop gave back while running (weft__loop_unref_lazy: it
 * holds its own, so the count cannot reach zero meanwhile), returned in
 * one atomic operation. */
static void flush_refs(weft_loop *L) {
  if (L->refs_drop) {
    atomic_fetch_sub_explicit(&L->refs, L->refs_drop, memory_order_release);
    L->refs_drop = 0;
  }
}

/* Runs up to `max` messages; false if the queue could not be emptied. */
static bool run_some(weft_loop *L, int max) {
  weft__msg *m;
  for (int i = 0; i < max; i++) {
    if (!(m = pop(L))) break;
    m->run(L, m);
  }
  flush_refs(L);
  return !weft__inbox_pending(L);
}

void weft__inbox_drain(weft_loop *L) {
  if (!run_some(L, INBOX_BATCH) && !L->rq_head)
    sched_yield(); /* a poster is between its exchange and its store */
}

static bool inbox_ready(void *arg) { return weft__inbox_pending(arg); }

int64_t weft__inbox_before_poll(weft_loop *L, int64_t timeout) {
  if (timeout == 0) return 0;
  if (L->nexpected) {
    int64_t budget = WEFT__SPIN_LOOP_NS;
    if (timeout > 0 && timeout < budget) budget = timeout;
    if (weft__spin(inbox_ready, L, budget)) return 0;
  }
  atomic_store(&L->polling, 1);
  /* The Dekker half of the loop: this load must be seq_cst like the
   * store, not weft__inbox_pending's relaxed one, which may be performed
   * before the store is visible (aarch64: ldr passes stlr), so that a
   * poster pushing meanwhile and reading polling 0 would go unseen. */
  if (weft__inbox_pending_mo(L, memory_order_seq_cst))
    return 0; /* after_poll drains it */
  for (int i = 0; i < weft__nlayers; i++)
    if (weft__layers[i]->before_sleep) weft__layers[i]->before_sleep(L);
  return timeout;
}

void weft__inbox_after_poll(weft_loop *L) {
  /* A poster that still sees 1 wakes the poller once for nothing. */
  atomic_store_explicit(&L->polling, 0, memory_order_relaxed);
  if (weft__inbox_pending(L)) weft__inbox_drain(L);
}

bool weft__inbox_close(weft_loop *L) {
  size_t before = L->ntasks;
  atomic_store(&L->inbox_closed, 1);
  while (atomic_load(&L->inbox_pushers)) sched_yield();
  while (!run_some(L, INT_MAX)) sched_yield();
  return L->ntasks > before;
}

/* ---- references ------------------------------------------------------ */

weft_loop *weft_loop_ref(weft_loop *L) {
  if (L) atomic_fetch_add_explicit(&L->refs, 1, memory_order_relaxed);
  return L;
}

void weft_loop_unref(weft_loop *L) {
  if (!L) return;
  if (atomic_fetch_sub_explicit(&L->refs, 1, memory_order_acq_rel) != 1)
    return;
  for (int i = weft__nlayers; i-- > 0;)
    if (weft__layers[i]->loop_release) weft__layers[i]->loop_release(L);
  weft__poller_free(L->poller);
  free(L);
}

/* ---- upper layers' hooks ---------------------------------------------- */

/* Filled by constructors before any loop exists: see weft__layer. */
const weft__layer *weft__layers[WEFT__MAX_LAYERS];
int weft__nlayers;

int weft__layer_register(const weft__layer *ly) {
  if (weft__nlayers == WEFT__MAX_LAYERS) return -ENOSPC;
  weft__layers[weft__nlayers] = ly;
  return weft__nlayers++;
}

int weft__layers_start(weft_loop *L) {
  for (int i = 0; i < weft__nlayers; i++) {
    int rc = weft__layers[i]->loop_start ? weft__layers[i]->loop_start(L) : 0;
    if (rc) { /* the ones that started let go again */
      while (i-- > 0)
        if (weft__layers[i]->loop_release) weft__layers[i]->loop_release(L);
      return rc;
    }
  }
  return 0;
}

void weft__layers_stop(weft_loop *L) {
  for (int i = weft__nlayers; i-- > 0;)
    if (weft__layers[i]->loop_stop) weft__layers[i]->loop_stop(L);
}

/* ---- CPUs (weft__spin) ------------------------------------------------- */

static int ncpu_cached;
static pthread_once_t ncpu_once = PTHREAD_ONCE_INIT;

static void ncpu_init(void) {
  cpu_set_t set;
  int n = 0;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  if (n < 1) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    n = c > 0 ? (int)c : 1;
  }
  __atomic_store_n(&ncpu_cached, n, __ATOMIC_RELEASE);
}

int weft__ncpu(void) {
  int n = __atomic_load_n(&ncpu_cached, __ATOMIC_ACQUIRE);
  if (weft__likely(n)) return n;
  pthread_once(&ncpu_once, ncpu_init);
  return __atomic_load_n(&ncpu_cached, __ATOMIC_ACQUIRE);
}
