/*
 * Signal watches (include/weft/proc.h): asyncio's add_signal_handler, Go's
 * signal.Notify.
 *
 * Why a handler and not signalfd: a signalfd sees a signal only while it
 * is blocked in every thread of the process (else the kernel delivers it
 * to a thread that has it unblocked, with the default action), and a
 * library cannot block it in threads the program makes itself; a blocked
 * mask is also inherited across exec by every child. So weft installs a
 * sigaction handler for each signal some watch includes, and the handler
 * passes the signal on to the loops, whatever thread the kernel picked.
 *
 * The pieces:
 *
 *  - A dispatcher per loop (made by the loop's first weft_signal_open,
 *    freed when the loop ends: the loop_stop hook): an eventfd, the set of
 *    signals its watches want and a pending set, both atomic. The handler
 *    sets the signal's bit in the pending set of every dispatcher that
 *    wants it and writes 1 to its eventfd: atomics and write(2) only,
 *    which are async-signal-safe.
 *
 *  - The dispatchers are found through a fixed table of atomic pointers
 *    (slots), so that the handler takes no lock. A dispatcher is freed
 *    only after its slot is cleared and no handler runs anywhere (the
 *    handler counts itself in in_handler before it looks at a slot), so no
 *    handler writes to a freed record or to a closed and reused fd number.
 *
 *  - Per signal, the number of watches (of every loop) that include it:
 *    the first installs the handler and saves the disposition it replaces,
 *    the last puts that one back. Registration and dispositions change
 *    under reg_lock, never in the handler.
 *
 *  - In a loop, a signal goes from the dispatcher's pending set to the
 *    pending set of every watch whose set includes it (collect): every
 *    watch gets it (a broadcast, as Notify). A watch's signals are handed
 *    out, lowest first, to the tasks parked on it, first come first
 *    served: the waker does the waiter's work (as src/sync/ does), so a
 *    woken waiter owns its signal and never touches the watch again, and
 *    a watch freed while it is in the run queue harms nobody.
 *
 *  - One waiting task of the loop, the reader, waits on the eventfd (the
 *    fd registry: weft__fd_wait) and collects when it is readable; the
 *    others park on their watches. When the reader leaves (it got a
 *    signal, was cancelled, or its watch was closed), it passes the role
 *    to a parked waiter. The role, and the watch it waits for, live in the
 *    dispatcher (reader, reader_w): closing the reader's watch clears
 *    reader_w and wakes it off the eventfd with -EBADF, so the reader
 *    never follows a pointer to a freed watch either.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/internal.h"

/* Sets of signals 1 .. _NSIG - 1 (SIGRTMAX), one bit each (sig - 1). */
#define NSIGW ((_NSIG - 1 + 63) / 64)

typedef struct sigbits {
  uint64_t w[NSIGW];
} sigbits;

static inline int word_of(int sig) { return (sig - 1) / 64; }
static inline uint64_t bit_of(int sig) { return 1ull << ((sig - 1) % 64); }

/* The handler's atomics must not be emulated with a lock. */
_Static_assert(ATOMIC_LONG_LOCK_FREE == 2 && ATOMIC_LLONG_LOCK_FREE == 2 &&
                   ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_POINTER_LOCK_FREE == 2,
               "the signal handler needs lock-free atomics");

typedef struct disp disp;

struct weft_signal {
  disp *d;
  weft_signal *prev, *next; /* d's watches */
  sigbits set;              /* what it catches */
  sigbits pending;          /* caught, not yet taken */
  weft_task *whead, *wtail; /* parked waiters, FIFO (links: waiter_links) */
};

struct disp {
  int efd;                  /* the handler writes 1 here */
  int slot;                 /* in slots[] */
  weft_loop *loop;
  _Atomic uint64_t want[NSIGW];    /* union of the watches' sets: the loop's
                                      thread writes, handlers read */
  _Atomic uint64_t pending[NSIGW]; /* handlers set, collect takes */
  weft_signal *watches;
  weft_task *reader;        /* the task waiting on efd (or woken to) */
  weft_signal *reader_w;    /* its watch; NULL once that one is closed */
};

/* A parked waiter's links, in its body's wait_node (a task waits on one
 * thing at a time). */
typedef struct waiter_links {
  weft_task *next, *prev;
  weft_signal *w;
} waiter_links;

_Static_assert(sizeof(waiter_links) <=
                   sizeof(((weft__task_body *)0)->wait_node),
               "weft__task_body.wait_node too small for signal waiters");

static inline waiter_links *links(weft_task *t) {
  return (waiter_links *)weft__body(t)->wait_node;
}

/* ---- process-wide state --------------------------------------------- */

/* Loops with a dispatcher at the same time. 128 threads with loops that
 * watch signals is far beyond what a program runs; the handler scans only
 * up to the highest slot in use. */
#define NSLOTS 128

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static disp *_Atomic slots[NSLOTS];
static atomic_int nslots;     /* every used slot is below this */
static atomic_int in_handler; /* handlers running now, on any thread */
/* Under reg_lock: */
static unsigned watching[_NSIG];      /* watches including the signal */
static struct sigaction saved[_NSIG]; /* what weft's handler replaced */

static void on_signal(int sig, siginfo_t *si, void *uc) {
  (void)si;
  (void)uc;
  int e = errno;
  /* Counted before any slot is read: see quiesce. */
  atomic_fetch_add(&in_handler, 1);
  if (sig > 0 && sig < _NSIG) {
    int wi = word_of(sig);
    uint64_t m = bit_of(sig);
    int n = atomic_load(&nslots);
    for (int i = 0; i < n; i++) {
      disp *d = atomic_load(&slots[i]);
      if (!d || !(atomic_load(&d->want[wi]) & m)) continue;
      /* The bit before the write: whoever reads the eventfd and then
       * takes the bits sees this signal (see collect). */
      atomic_fetch_or(&d->pending[wi], m);
      uint64_t one = 1;
      ssize_t r = write(d->efd, &one, sizeof one); /* EAGAIN: full, fine */
      (void)r;
    }
  }
  atomic_fetch_sub(&in_handler, 1);
  errno = e;
}

/* Waits until no handler runs. Called after a slot was cleared: a handler
 * that counted itself after that reads the cleared slot (the counter and
 * the slots are sequentially consistent), so once the count has been 0,
 * none can still hold the dispatcher. A handler is short and never
 * blocks: the wait is a few yields at most. */
static void quiesce(void) {
  while (atomic_load(&in_handler) != 0) sched_yield();
}

/* Takes one watch of sig: the first installs the handler. Under reg_lock.
 * 0 or -errno (EINVAL: a signal sigaction refuses, as glibc's own). */
static int sig_take(int sig) {
  if (watching[sig] == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&sa.sa_mask);
    if (sigaction(sig, &sa, &saved[sig]) != 0) return -errno;
  }
  watching[sig]++;
  return 0;
}

/* Gives one back: the last restores what was there before. Under reg_lock. */
static void sig_drop(int sig) {
  if (--watching[sig] == 0) sigaction(sig, &saved[sig], NULL);
}

/* ---- dispatchers ------------------------------------------------------ */

static int layer_id = -1; /* weft__layer_register's, from the constructor */

/* L's dispatcher (the loop's thread only: L->layer_data[layer_id] is set
 * here, lazily, and read on that thread only), made on first use. NULL
 * with errno: EMFILE/ENFILE, ENOMEM (also: every slot taken). */
static disp *disp_get(weft_loop *L) {
  disp *d = L->layer_data[layer_id];
  if (d) return d;
  d = calloc(1, sizeof *d);
  if (!d) return weft__null_errno(-ENOMEM);
  d->loop = L;
  d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (d->efd < 0) {
    int e = errno;
    free(d);
    errno = e;
    return NULL;
  }
  weft__fd_adopt(d->efd);
  pthread_mutex_lock(&reg_lock);
  int i = 0;
  while (i < NSLOTS && atomic_load(&slots[i])) i++;
  if (i < NSLOTS) {
    d->slot = i;
    atomic_store(&slots[i], d);
    if (i >= atomic_load(&nslots)) atomic_store(&nslots, i + 1);
  }
  pthread_mutex_unlock(&reg_lock);
  if (i == NSLOTS) {
    weft_fd_close(d->efd);
    free(d);
    return weft__null_errno(-ENOMEM);
  }
  L->layer_data[layer_id] = d;
  return d;
}

/* Stores the union of d's watches' sets as what its handlers look for. */
static void want_update(disp *d) {
  sigbits u = {{0}};
  for (weft_signal *w = d->watches; w; w = w->next)
    for (int i = 0; i < NSIGW; i++) u.w[i] |= w->set.w[i];
  for (int i = 0; i < NSIGW; i++) atomic_store(&d->want[i], u.w[i]);
}

static inline bool bits_any(const sigbits *b) {
  for (int i = 0; i < NSIGW; i++)
    if (b->w[i]) return true;
  return false;
}

/* The lowest signal of b, taken out of it, or 0. */
static int bits_take(sigbits *b) {
  for (int i = 0; i < NSIGW; i++)
    if (b->w[i]) {
      int k = __builtin_ctzll(b->w[i]);
      b->w[i] &= b->w[i] - 1;
      return i * 64 + k + 1;
    }
  return 0;
}

/* ---- waiters ---------------------------------------------------------- */

static void wq_push(weft_signal *w, weft_task *t) {
  waiter_links *l = links(t);
  l->w = w;
  l->next = NULL;
  l->prev = w->wtail;
  if (w->wtail)
    links(w->wtail)->next = t;
  else
    w->whead = t;
  w->wtail = t;
}

static void wq_remove(weft_signal *w, weft_task *t) {
  waiter_links *l = links(t);
  if (l->prev)
    links(l->prev)->next = l->next;
  else
    w->whead = l->next;
  if (l->next)
    links(l->next)->prev = l->prev;
  else
    w->wtail = l->prev;
}

static weft_task *wq_pop(weft_signal *w) {
  weft_task *t = w->whead;
  if (t) wq_remove(w, t);
  return t;
}

/* A parked waiter was cancelled: off its watch's queue. */
static void waiter_unpark(weft_task *t) { wq_remove(links(t)->w, t); }

/* Hands w's pending signals, lowest first, to its parked waiters. */
static void hand_out(weft_signal *w) {
  while (w->whead && bits_any(&w->pending)) {
    int sig = bits_take(&w->pending);
    weft__wake(wq_pop(w), sig);
  }
}

/* Turns the signals the handlers left in d into pending signals of its
 * watches, and hands them to waiters. The eventfd first, the bits next: a
 * signal whose bit is set after the exchange writes after the read, so
 * the eventfd is readable again and the reader comes back for it.
 * `first` (may be NULL): the reader's watch; the reader is the longest
 * waiting task of it (it was first in line when it took the role), so it
 * takes its pick, into *sig, before the parked waiters. */
static void collect(disp *d, weft_signal *first, int *sig) {
  if (weft__fd_cached(d->efd) & WEFT_READABLE) {
    uint64_t n;
    ssize_t r = read(d->efd, &n, sizeof n);
    if (r == (ssize_t)sizeof n) /* the counter is 0: drained */
      weft__fd_drained(d->efd, WEFT_READABLE);
    else /* EAGAIN (anything else: let the wait tell) */
      weft__fd_clear(d->efd, WEFT_READABLE);
  }
  sigbits got;
  bool any = false;
  for (int i = 0; i < NSIGW; i++) {
    got.w[i] = atomic_load_explicit(&d->pending[i], memory_order_relaxed)
                   ? atomic_exchange(&d->pending[i], 0)
                   : 0;
    any |= got.w[i] != 0;
  }
  if (!any) return;
  for (weft_signal *w = d->watches; w; w = w->next) {
    for (int i = 0; i < NSIGW; i++) w->pending.w[i] |= got.w[i] & w->set.w[i];
    if (w == first && !*sig) *sig = bits_take(&w->pending);
    hand_out(w);
  }
}

/* The reader is leaving: the role goes to the first parked waiter found,
 * so that someone watches the eventfd while anyone waits. That waiter
 * wakes with 0 (see weft_signal_wait). */
static void reader_leave(disp *d) {
  d->reader = NULL;
  d->reader_w = NULL;
  for (weft_signal *w = d->watches; w; w = w->next) {
    weft_task *t = wq_pop(w);
    if (!t) continue;
    d->reader = t;
    d->reader_w = w;
    weft__wake(t, 0);
    return;
  }
}

/* Unlinks w from d and gives back its signals (restoring dispositions).
 * Does not free it. */
static void watch_drop(disp *d, weft_signal *w) {
  if (w->prev)
    w->prev->next = w->next;
  else
    d->watches = w->next;
  if (w->next) w->next->prev = w->prev;
  want_update(d); /* before the handler may go: a late signal is dropped */
  pthread_mutex_lock(&reg_lock);
  for (int sig = 1; sig < _NSIG; sig++)
    if (w->set.w[word_of(sig)] & bit_of(sig)) sig_drop(sig);
  pthread_mutex_unlock(&reg_lock);
}

/* ---- the API ------------------------------------------------------------ */

/* The signals the program's own faults raise (a handler that returns
 * would run the faulting instruction again), and those nobody can catch. */
static bool uncatchable(int sig) {
  switch (sig) {
    case SIGKILL: case SIGSTOP: case SIGSEGV: case SIGBUS:
    case SIGFPE: case SIGILL: case SIGTRAP: case SIGSYS:
      return true;
    default:
      return false;
  }
}

weft_signal *weft_signal_open(const sigset_t *set) {
  weft_loop *L = weft__tls_loop;
  if (!L) return weft__null_errno(weft__misuse(__func__, WEFT_ENOTASK));
  if (!set) return weft__null_errno(-EINVAL);
  sigbits want = {{0}};
  for (int sig = 1; sig < _NSIG; sig++) {
    if (sigismember(set, sig) != 1) continue;
    if (uncatchable(sig)) return weft__null_errno(-EINVAL);
    want.w[word_of(sig)] |= bit_of(sig);
  }
  if (!bits_any(&want)) return weft__null_errno(-EINVAL);
  disp *d = disp_get(L);
  if (!d) return NULL;
  weft_signal *w = calloc(1, sizeof *w);
  if (!w) return weft__null_errno(-ENOMEM);
  w->d = d;
  w->set = want;
  /* Signals caught before the watch existed belong to the others. */
  collect(d, NULL, NULL);
  /* Wanted before the handler is installed, so that it drops nothing. */
  w->next = d->watches;
  if (w->next) w->next->prev = w;
  d->watches = w;
  want_update(d);
  int rc = 0, sig;
  pthread_mutex_lock(&reg_lock);
  for (sig = 1; sig < _NSIG; sig++)
    if ((want.w[word_of(sig)] & bit_of(sig)) && (rc = sig_take(sig)) != 0)
      break;
  if (rc) /* give back those taken */
    while (--sig > 0)
      if (want.w[word_of(sig)] & bit_of(sig)) sig_drop(sig);
  pthread_mutex_unlock(&reg_lock);
  if (rc) {
    d->watches = w->next;
    if (w->next) w->next->prev = NULL;
    want_update(d);
    free(w);
    return weft__null_errno(rc);
  }
  return w;
}

static const weft__wait_kind signal_kind = {"signal", NULL};

/* The reader's part of a wait: the calling task holds the role
 * (d->reader), for the watch d->reader_w. Collects
 * whenever the eventfd is readable, until its watch has a signal for it,
 * the watch is closed (reader_w cleared), or the wait is cancelled. */
static int read_loop(disp *d) {
  for (;;) {
    weft_signal *w = d->reader_w;
    if (!w) {
      reader_leave(d);
      return -EBADF; /* the watch was closed */
    }
    /* Left over from a collect while the role was on its way to us. */
    int sig = bits_take(&w->pending);
    if (!sig) collect(d, w, &sig);
    if (sig) {
      reader_leave(d);
      return sig;
    }
    int rc = weft__fd_wait(d->efd, WEFT_READABLE, WEFT_FOREVER, &signal_kind,
                           d->reader_w);
    if (rc < 0) {
      /* -ECANCELED: what came meanwhile stays pending in the watches;
       * -EBADF: the watch was closed (weft_signal_close forgot efd). */
      reader_leave(d);
      return rc;
    }
  }
}

int weft_signal_wait(weft_signal *w) {
  if (!w) return -EINVAL;
  weft_loop *L = weft__tls_loop;
  if (weft__unlikely(!L)) return weft__misuse(__func__, WEFT_ENOTASK);
  disp *d = w->d;
  if (weft__unlikely(L != d->loop)) return weft__misuse(__func__, WEFT_ELOOP);
  weft_task *t = L->current;
  if (weft__unlikely(!t)) return weft__misuse(__func__, WEFT_ENOTASK);
  if (weft__checkpoint(t)) return -ECANCELED;
  collect(d, NULL, NULL); /* the parked waiters first: they came before */
  int sig = bits_take(&w->pending);
  if (sig) return sig;
  if (!d->reader) {
    d->reader = t;
    d->reader_w = w;
    return read_loop(d);
  }
  wq_push(w, t);
  /* A signal (handed over), -EBADF (w closed), -ECANCELED, or 0: the
   * reader left and gave t its role; w is then d->reader_w, unless it was
   * closed since (read_loop looks, not at w). */
  int rc = weft__park(L, t, waiter_unpark, &signal_kind, w);
  if (rc != 0) return rc;
  return read_loop(d);
}

int weft_signal_close(weft_signal *w) {
  if (!w) return -EINVAL;
  disp *d = w->d;
  if (weft__tls_loop != d->loop) return weft__misuse(__func__, WEFT_ELOOP);
  weft__name_forget(w);
  watch_drop(d, w);
  if (d->reader_w == w) {
    /* The reader waits on the eventfd for w: wake it with -EBADF (if it
     * is in the run queue already, it finds reader_w cleared). The next
     * wait registers the fd again. */
    d->reader_w = NULL;
    weft_fd_forget(d->efd);
  }
  weft_task *t;
  while ((t = wq_pop(w)) != NULL) weft__wake(t, -EBADF);
  free(w);
  return 0;
}

/* ---- the end of a loop ------------------------------------------------ */

/* The loop is being freed on its thread (every task has finished, so no
 * task waits): closes the watches left open, which puts the dispositions
 * back, then frees the dispatcher once no handler can reach it. */
static void signals_stop(weft_loop *L) {
  disp *d = L->layer_data[layer_id];
  if (!d) return;
  while (d->watches) {
    weft_signal *w = d->watches;
    watch_drop(d, w);
    free(w);
  }
  pthread_mutex_lock(&reg_lock);
  atomic_store(&slots[d->slot], NULL);
  int n = atomic_load(&nslots);
  while (n > 0 && !atomic_load(&slots[n - 1])) n--;
  atomic_store(&nslots, n);
  pthread_mutex_unlock(&reg_lock);
  quiesce();
  weft_fd_close(d->efd);
  free(d);
  L->layer_data[layer_id] = NULL;
}

/* Registered before any loop exists; in a program linked with libweft.a,
 * only if it pulls this file in (it opens a watch). */
WEFT__LAYER_CTOR static void signals_layer_register(void) {
  static const weft__layer layer = {.loop_stop = signals_stop};
  layer_id = weft__layer_register(&layer); /* cannot fail: WEFT__MAX_LAYERS */
}
