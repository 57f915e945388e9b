/*
 * Internal structures of the core layer: loop, task, scope, group. Only
 * src/ sees this header; nothing here is exported.
 */
#ifndef WEFT_CORE_INTERNAL_H
#define WEFT_CORE_INTERNAL_H

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/poller.h"
#include "core/timer.h"
#include "ctx/ctx.h"
#include "ctx/stack.h"
#include "weft.h"

#define WEFT__HIDDEN __attribute__((visibility("hidden")))
#define weft__likely(x) __builtin_expect(!!(x), 1)
#define weft__unlikely(x) __builtin_expect(!!(x), 0)
/* The struct of type `type` whose member `member` is at p. */
#define weft__container_of(p, type, member) \
  ((type *)((char *)(p) - offsetof(type, member)))

/* ---- scopes ---------------------------------------------------------- */

enum {
  SC_CANCELLED = 1u << 0, /* cancelled itself (deadline or explicit) */
  SC_EFFECTIVE = 1u << 1,       /* effectively cancelled: itself or an unshielded
                             ancestor */
  SC_SHIELD = 1u << 2,
  SC_FIRED = 1u << 3,     /* its deadline fired */
  SC_OPEN = 1u << 4,
  SC_GROUP = 1u << 5,     /* the scope of a weft_group */
  SC_ROOT = 1u << 6,      /* a task's root scope */
  SC_UNARMED = 1u << 7,   /* has a deadline not yet in the timer heap */
  SC_DELIVERED = 1u << 8, /* a checkpoint inside returned -ECANCELED (or an
                             inner scope passed such a delivery on) */
  SC_CAUGHT = 1u << 9,    /* closed having caught a delivery of its own
                             cancellation (see weft__scope_pop) */
};

typedef struct weft__scope {
  struct weft__scope *parent;
  struct weft__scope *inner; /* the next scope in, in the same task */
  /* Root scopes of the tasks under this scope (group children), linked
   * through prev/next: */
  struct weft__scope *child_head, *prev, *next;
  weft_task *task; /* the task whose code the scope encloses */
  weft__timer timer;
  unsigned flags;
} weft__scope;

_Static_assert(sizeof(weft__scope) <= sizeof(weft_scope),
               "weft_scope too small for the internal scope");
_Static_assert(_Alignof(weft__scope) <= _Alignof(weft_scope),
               "weft_scope under-aligned");

/* ---- what a parked task waits on ------------------------------------- */

/* The kind of a wait, for the task dump and traces (dump.c, trace.c): a
 * static descriptor, defined by the layer whose call parks (core: sleep,
 * fd, join, group; sync/: lock, queue get...; io/: stream read...). Each
 * weft__park names one, with the object waited on (or NULL). */
typedef struct weft__wait_kind {
  const char *what; /* "sleep", "lock", "queue get", "stream read" */
  /* Optional: writes what else is known of t's wait on obj (a queue's
   * fill, a stream's fd) into buf, snprintf's way; on the loop's thread,
   * while t is parked. NULL: nothing more. */
  int (*describe)(const weft_task *t, const void *obj, char *buf, size_t n);
} weft__wait_kind;

/* ---- tasks ----------------------------------------------------------- */

enum task_state {
  WEFT__T_NEW,     /* spawned, never run, holds no stack */
  WEFT__T_READY,   /* in the run queue */
  WEFT__T_RUNNING,
  WEFT__T_PARKED,  /* suspended on a wait */
  WEFT__T_DONE,
  WEFT__T_FREE,    /* record recycled */
};

enum {
  TF_HANDLE = 1u << 0,   /* a handle is held (spawn's caller) */
  TF_GROUP = 1u << 1,    /* child of a group */
  TF_STARTING = 1u << 2, /* group_start child that has not reported ready */
  TF_ROOT = 1u << 3,     /* root task of weft_run / runner */
  TF_CANCEL = 1u << 4,   /* cancelled before it first ran */
  /* Bits 12-15: 1 + the id of the upper layer that owns the task (0:
   * none), whose task_exit hook is told when it finishes: see
   * weft__task_set_owner. */
  TF_OWNER_SHIFT = 12,
  TF_OWNER = 0xfu << TF_OWNER_SHIFT,
};

typedef struct done_cb {
  struct done_cb *next;
  void (*cb)(weft_task *, void *);
  void *arg;
} done_cb;

/* A removable callback on a task's end, unlike weft_task_on_done's,
 * which stay until the record is freed. The node lives with its owner, in
 * one of two lists: the task's exit hooks (in its body, so only for a
 * running task; sync/: the locks it holds) or its watches (in its extra
 * part, so a task that has not run can be watched; sync/: weft_wait,
 * as_completed). A finishing task unlinks each node, then calls w->fn(w,
 * t), which may not block. */
typedef struct weft__watch {
  struct weft__watch **pprev, *next; /* pprev NULL: not linked */
  void (*fn)(struct weft__watch *w, weft_task *t);
} weft__watch;

static inline void weft__watch_link(weft__watch **head, weft__watch *w) {
  w->next = *head;
  if (w->next) w->next->pprev = &w->next;
  w->pprev = head;
  *head = w;
}
/* Unlinks w if it is linked (a no-op after it fired or was unlinked). */
static inline void weft__watch_del(weft__watch *w) {
  if (!w->pprev) return;
  *w->pprev = w->next;
  if (w->next) w->next->pprev = w->pprev;
  w->pprev = NULL;
}

/* The parts of a task most tasks never use, allocated on first need so
 * that the record stays at two cache lines. */
typedef struct task_extra {
  char *msg;          /* weft_fail message */
  done_cb *on_done;
  weft__watch *watches;
  char *name;         /* NULL: "task-N", made on first use */
} task_extra;

/* What a task needs only while it has a stack: it lives at the top of the
 * stack, in the page the task touches first anyway, so a task that is
 * spawned but has not run yet costs only its (small) record. */
typedef struct weft__task_body {
  weft_task *task;
  /* Called when a parked task is cancelled: takes the task off whatever
   * it waits on. NULL: the wait cannot be interrupted. */
  void (*unpark)(weft_task *t);
  int wake_code;      /* set by whoever woke a parked task */
  int wait_fd;        /* fd waited on, or -1 */
  unsigned wait_events;
  union {             /* what a parked task waits on, for its unpark: */
    weft_task *joinee;  /* weft_join, weft_join_until */
    void **started;     /* weft_group_start: where weft_started puts
                           the child's value */
    void *layer;        /* an upper layer's waiter record (sync/: a
                           weft_wait or as_completed; thread/: a job or
                           a future) */
  } wait_on;
  void *san_fiber;    /* ThreadSanitizer fiber */
  int64_t step_start; /* debug: when the current step began */
  /* What the task waits on while parked (set by weft__park; stale once
   * it runs again), and since when (the loop's clock at the park). */
  const weft__wait_kind *wait_kind;
  const void *wait_obj;
  int64_t wait_since;
  uint64_t nsteps;    /* steps run (times it was switched to) */
  int64_t run_ns;     /* time spent running, when the loop measures it
                         (L->stats: debug mode, weft-ps) */
  int64_t stats_start; /* when the current step began (L->stats) */
  uint64_t trace_start; /* traces (trace.c): when the step began, and */
  uint64_t trace_park;  /* when the task parked (0: it did not), in ticks */
  int trace_fd;         /* the fd it parked on (-1: none) */
  weft__scope root;   /* the task's own scope: weft_cancel cancels it */
  weft__timer tm;     /* sleeps and fd-wait deadlines */
  weft__watch *exit_hooks; /* see weft__watch */
  /* The waiter record of what a task is parked on (a sync/ object, or
   * the queues of an fd: a task waits on one thing at a time). Here
   * rather than in the waiting call's frame, so that the call can end in
   * a tail call to weft__park: see switch_away in loop.c. */
  void *wait_node[6];
} weft__task_body;

struct weft_task {
  weft__ctx ctx;      /* saved context (the stack pointer): every switch */
  weft_task *rq_next; /* run queue link */
  weft_loop *loop;
  weft__stack *stack; /* NULL until it first runs and once it has exited;
                         its body (weft__body) is at the top of it */
  weft__scope *scope; /* innermost open scope (while it has a stack) */
  weft_fn fn;
  void *arg;
  uint64_t id;
  uint16_t state;     /* enum task_state */
  uint16_t flags;     /* TF_* */
  int result;
  uint32_t stack_size; /* requested, in KiB (0: default) */
  uint32_t n_unarmed;  /* scopes of this task with an unarmed deadline */
  /* The scope the task's root scope hangs under once it runs: its
   * group's, or for a group_start child not yet ready, its starter's (so
   * parent_scope->task is the starter). */
  weft__scope *parent_scope;
  weft_group *group;
  weft_task *joiner;  /* task blocked in weft_join on this one */
  weft_task *all_prev, *all_next; /* every task record of the loop */
  task_extra *x;      /* NULL until a name, message or callback needs it */
};
/* Two cache lines with a switch that saves one stack pointer (the
 * ucontext fallback keeps a whole ucontext_t). */
_Static_assert(sizeof(weft_task) <= 128 + sizeof(weft__ctx) - sizeof(void *),
               "task record over two cache lines");

/* ---- loop ------------------------------------------------------------ */

#define WEFT__MAX_INSTR 8
#define WEFT__MAX_LAYERS 8 /* weft__layer registrations: room for all the
                              library's upper layers make */
#define WEFT__BUDGET 64 /* dispatches between two looks at timers and I/O */

typedef struct instr_slot {
  const weft_instrument *ins;
  void *arg;
} instr_slot;

typedef struct fd_entry fd_entry; /* fd.c */

typedef struct task_chunk {
  struct task_chunk *next;
  size_t bytes;
} task_chunk;

/* A message from another thread to a loop (inbox.c): `run` is called on
 * the loop's thread, between tasks (L->current is NULL). */
typedef struct weft__msg {
  struct weft__msg *_Atomic next;
  void (*run)(weft_loop *L, struct weft__msg *m);
} weft__msg;

struct weft_loop {
  weft_task *current;     /* running task; NULL in the scheduler */
  weft_task *rq_head, *rq_tail;
  int budget;             /* dispatches left before the next loop turn */
  weft__ctx sched_ctx;    /* the thread's own stack: the scheduler */
  weft__stack *zombie;    /* stack of a task that just exited: free it on
                             the other side of the switch */
  weft__stacks stacks;
  weft__timers timers;
  weft__poller *poller;   /* also wakes the loop from other threads */
  fd_entry *fds;          /* the fd registry (fd.c), by fd number */
  size_t nfds_cap;
  size_t nfd_waiters;     /* tasks blocked in weft_wait_fd, weft__fd_wait */
  atomic_int wake_pending; /* the poller's wake was called, not yet seen */
  int64_t now;            /* clock at the last loop turn */
  /* Fast clock for relative deadlines (weft__fast_now below; clock.c). */
  bool tsc_usable;
  uint64_t tsc_mult;      /* ns per TSC tick, 32.32 fixed point; 0: not yet */
  int64_t cal_ns;         /* calibration start */
  uint64_t cal_tsc;
  int64_t anchor_ns;      /* last (clock, tsc) pair */
  uint64_t anchor_tsc;
  uint64_t next_id;
  size_t ntasks;          /* live (not finished) tasks */
  weft_task *all_head, *all_tail;
  weft_task *free_tasks;  /* recycled task records */
  /* Closed groups, reused first-in first-out so that a stale handle stays
   * recognisably closed for as long as possible; freed with the loop. */
  weft_group *groups_free_head, *groups_free_tail;
  weft_group *groups_all;
  task_chunk *chunks;     /* task record memory, freed with the loop */
  size_t chunk_left;
  size_t chunk_records;   /* size of the last chunk, in records */
  char *chunk_next;
  int ninstr;
  instr_slot instr[WEFT__MAX_INSTR];
  bool debug;
  bool stats;             /* measure run time per task (dump.c) */
  uint64_t seq;           /* the loop's number in the process, from 1 */
  int tid;                /* its thread (gettid) */
  weft_loop *reg_next;    /* the process's list of loops (dump.c) */
  void *trace;            /* the trace writer's state (trace.c), or NULL */
  int64_t spin_ns;        /* weft_config.poll_spin: 0 never */
  bool stopping;          /* root finished: cancel and reap the rest */
  weft_task *root;        /* the running root task (weft_run's main) */
  int coop_left;          /* I/O calls the running step may make before
                             one yields (weft__checkpoint_io) */
  /* weft_config.shutdown_signals (shutdown.c): the slot in the table its
   * signal handler reads (-1: not asked for), and what the handler
   * marks: a first signal was seen during this run, one awaits the
   * loop's cancelling of root. */
  bool shutdown_signals;
  int sig_slot;
  atomic_int sig_seen;
  atomic_int sig_cancel;
  int64_t debug_max_step;
  size_t debug_hw_max;
  char debug_hw_task[64];
  void *altstack;
  void *old_segv;         /* struct sigaction saved by debug mode */
  /* Upper layers' own data for this loop, by layer id (see weft__layer):
   * set by their loop_start, read-only afterwards (other threads may
   * read it), let go of by their loop_release. */
  void *layer_data[WEFT__MAX_LAYERS];
  /* Other threads (inbox.c): loop-thread-only fields, then what other
   * threads write, on a cache line of its own. */
  int nexpected;          /* messages expected soon from other threads
                             (an upper layer counts what it awaits): the
                             loop polls its inbox a while before sleeping */
  int refs_drop;          /* references given back lazily by the loop */
  weft__msg *inbox_head;  /* the inbox's consumer end */
  char xpad_[64];
  weft__msg *_Atomic inbox_tail; /* MPSC queue (Vyukov); producers' end */
  atomic_int inbox_pushers; /* posts under way */
  atomic_int inbox_closed;  /* the loop is freed: posts fail */
  atomic_int polling;     /* in, or about to enter, a blocking poll */
  atomic_int refs;        /* the running loop's own + weft_loop_ref + jobs
                             and submissions in flight */
  weft__msg inbox_anchor;   /* the queue's permanent node (Vyukov) */
  char xpad2_[32];
};

/* The loop of the calling thread (initial-exec TLS: one %fs load). */
extern __thread weft_loop *weft__tls_loop
    __attribute__((tls_model("initial-exec"))) WEFT__HIDDEN;

/* ---- internal API between core files --------------------------------- */

/* Scheduling (loop.c) */
static inline void weft__ready(weft_loop *L, weft_task *t);
WEFT__HIDDEN void weft__ready_front(weft_loop *L, weft_task *t);
/* Parks t (the current task) until woken: unpark takes it off what it
 * waits on if it is cancelled (NULL: the wait cannot be interrupted);
 * kind and obj say what that is (for the task dump and traces). */
WEFT__HIDDEN int weft__park(weft_loop *L, weft_task *t,
                            void (*unpark)(weft_task *),
                            const weft__wait_kind *kind, const void *obj);
static inline void weft__wake(weft_task *t, int code);
WEFT__HIDDEN void weft__interrupt(weft_task *t);
WEFT__HIDDEN void weft__run_eager(weft_loop *L, weft_task *cur, weft_task *child);
WEFT__HIDDEN void weft__task_entry(void *arg);
WEFT__HIDDEN weft_task *weft__task_exit(weft_loop *L, weft_task *t);
WEFT__HIDDEN void weft__arm_deadlines(weft_loop *L, weft_task *t);
WEFT__HIDDEN void weft__body_init(weft_task *t, weft__task_body *b);

/* Tasks (task.c) */
WEFT__HIDDEN weft_task *weft__task_new(weft_loop *L, weft_fn fn, void *arg,
                                       const weft_spawn_opts *opts);
WEFT__HIDDEN void weft__task_free(weft_loop *L, weft_task *t);
WEFT__HIDDEN void weft__task_finish(weft_loop *L, weft_task *t);
WEFT__HIDDEN void weft__task_start(weft_loop *L, weft_task *cur, weft_task *t,
                                   bool eager);
/* The checks on a task handle the caller holds and wants to wait for
 * (weft_join, weft_wait, weft_as_completed): -EINVAL (NULL, a group's
 * body or a root task), WEFT_ELOOP through the misuse path (another
 * loop's task; func names the caller), -ESRCH (freed, detached or
 * already joined), -EDEADLK (cur itself). */
WEFT__HIDDEN int weft__task_check_joinable(weft_loop *L, const weft_task *cur,
                                           const weft_task *t, const char *func);

/* Scopes (scope.c) */
WEFT__HIDDEN void weft__scope_push(weft_task *t, weft__scope *s,
                                   int64_t deadline, unsigned flags);
/* Closes s, t's innermost scope. A cancellation that reached a checkpoint
 * inside s is caught by s if s was cancelled itself and no enclosing
 * cancellation is in effect there (s is shielded, or its parent is not
 * cancelled); then s gets SC_CAUGHT. Otherwise it passes to the parent,
 * as an exception would in asyncio and Trio. */
WEFT__HIDDEN void weft__scope_pop(weft_loop *L, weft_task *t, weft__scope *s);
/* weft__park inside a private scope with `deadline`: the wait of a call
 * that takes a deadline of its own (weft_join_until, weft_wait_until,
 * weft_as_completed_next). Returns weft__park's code. *expired (may be
 * NULL) tells whether this deadline, not an outer cancellation, ended the
 * wait: the scope fired and caught the delivery. */
WEFT__HIDDEN int weft__park_until(weft_loop *L, weft_task *t,
                                  void (*unpark)(weft_task *),
                                  const weft__wait_kind *kind, const void *obj,
                                  int64_t deadline, bool *expired);
WEFT__HIDDEN void weft__scope_link(weft__scope *parent, weft__scope *child);
WEFT__HIDDEN void weft__scope_unlink(weft__scope *s);
WEFT__HIDDEN void weft__scope_cancel(weft__scope *s);
WEFT__HIDDEN void weft__scope_fire(weft__timer *tm);
/* Moves s (a root scope) under a new parent and recomputes whether its
 * subtree is cancelled (weft_started moves a child into its group). */
WEFT__HIDDEN void weft__scope_reparent(weft__scope *s, weft__scope *parent);

/* Groups (group.c) */
WEFT__HIDDEN void weft__groups_free(weft_loop *L);
WEFT__HIDDEN void weft__group_child_exit(weft_loop *L, weft_task *t);

/* The fd registry (fd.c): a task's fd wait ends (its timer fired); a
 * report from the poller (token and events as in poller.h); the table is
 * freed with the loop. */
WEFT__HIDDEN void weft__fd_unwait(weft_task *t);
WEFT__HIDDEN void weft__fd_ready(weft_loop *L, uint64_t token, unsigned ev);
WEFT__HIDDEN void weft__fds_free(weft_loop *L);

/* The fd registry's readiness cache, for src/io/ (fd.c explains why
 * these lose no readiness). Only on fds the caller owns: it took them
 * with weft__fd_adopt and closes them with weft_fd_close (or forgets them
 * with weft_fd_forget first); a close behind weft's back is not noticed.
 *
 * weft__fd_adopt: the caller takes fd (a stream opens on it): what the
 * registry knew of the number is not trusted (it may be another file's
 * since a close behind weft's back); fd counts as ready until a clear.
 * No system call. Call it on the loop's thread.
 *
 * weft__fd_wait: waits until fd is ready for `events` (WEFT_READABLE
 * and/or WEFT_WRITABLE) as far as the cache knows (kind, obj: what the
 * wait is for the dump, as for weft__park; NULL kind: "fd"): returns the cached
 * ready ones at once if any (no system call, no switch), else parks
 * until a report names one of them (no system call once the fd is
 * registered). A checkpoint. Returns what weft_wait_fd_until does (the
 * ready events, -ETIMEDOUT, -ECANCELED, -EBADF after weft_fd_close /
 * weft_fd_forget, -EPERM, -ENOMEM, WEFT_ENOTASK). A return at once from
 * the cache may be stale (another task read the fd meanwhile): the
 * caller tries its system call, and clears on EAGAIN.
 *
 * weft__fd_cached: the ready bits (WEFT_READABLE, WEFT_WRITABLE) the
 * cache holds for fd: both if it knows nothing. No system call.
 *
 * weft__fd_clear: the caller's read (readable) or write (writable) of fd
 * just failed with EAGAIN: not ready. weft__fd_drained: the caller's read
 * or write on a stream socket or pipe was short (less than it asked): the
 * fd was drained (or filled) at that moment; readable stays set once the
 * read side has ended. Call either right after the system call, with no
 * switch in between. */
WEFT__HIDDEN void weft__fd_adopt(int fd);
WEFT__HIDDEN int weft__fd_wait(int fd, int events, int64_t deadline,
                               const weft__wait_kind *kind, const void *obj);
WEFT__HIDDEN unsigned weft__fd_cached(int fd);
WEFT__HIDDEN void weft__fd_clear(int fd, int events);
WEFT__HIDDEN void weft__fd_drained(int fd, int events);

/* Cross-thread inbox and loop references (inbox.c). Other threads post
 * messages (weft__loop_post: 0, or -ESHUTDOWN once the loop is being
 * freed, when the poster deals with its message itself). The loop drains
 * the inbox at every turn, calls before_poll (polls the inbox a while if
 * L->nexpected, then announces the sleep so that posters wake the
 * poller, then runs the layers' before_sleep) and after_poll around a
 * poll, and closes it while it is being freed (true: what was left made
 * tasks; run them and close again). */
static inline bool weft__inbox_pending_mo(weft_loop *L, memory_order mo) {
  return L->inbox_head != &L->inbox_anchor ||
         atomic_load_explicit(&L->inbox_tail, mo) != &L->inbox_anchor;
}
static inline bool weft__inbox_pending(weft_loop *L) {
  return weft__inbox_pending_mo(L, memory_order_relaxed);
}
/* The inbox is closed: a post would fail (on the loop's thread, a hint
 * that a reply posted later could not be delivered). */
static inline bool weft__inbox_closed(weft_loop *L) {
  return atomic_load_explicit(&L->inbox_closed, memory_order_relaxed);
}
WEFT__HIDDEN void weft__inbox_init(weft_loop *L);
WEFT__HIDDEN int weft__loop_post(weft_loop *L, weft__msg *m);
WEFT__HIDDEN void weft__inbox_drain(weft_loop *L);
WEFT__HIDDEN int64_t weft__inbox_before_poll(weft_loop *L, int64_t timeout);
WEFT__HIDDEN void weft__inbox_after_poll(weft_loop *L);
WEFT__HIDDEN bool weft__inbox_close(weft_loop *L);
/* Gives back a reference to L (weft_loop_unref) on L's thread while L
 * runs, without an atomic operation: counted, and returned all at once
 * after the messages of the next drain. */
static inline void weft__loop_unref_lazy(weft_loop *L) { L->refs_drop++; }

/*
 * Upper layers' hooks. Core names no layer above it. A layer (a folder
 * of src/ above core, or one file of it) that keeps state per loop, or
 * must act at points of a loop's life, registers a weft__layer and gets
 * an id: its per-loop data lives in L->layer_data[id], and a task it
 * owns carries the id in its flags (weft__task_set_owner). Every hook is
 * optional (NULL).
 *
 * Layers register from a constructor (WEFT__LAYER_CTOR, in the object
 * file whose code needs the hooks), so that all of them are registered
 * before any loop exists (no lock: nothing reads the table meanwhile),
 * and a program linked with libweft.a, which pulls in only the object
 * files it uses, gets exactly the hooks of those. The constructors have
 * the first priority open to programs: in a static link they run before
 * the program's own constructors (which run first in link order
 * otherwise), in case one of those runs a loop; libweft.so's run before
 * the program's anyway. The order among layers is that of the
 * constructors (link order): no layer may rely on it. WEFT__MAX_LAYERS
 * has room for every registration in the library, so registering does
 * not fail there.
 */
typedef struct weft__layer {
  /* loop_new, on the loop's thread, before any task and before L is
   * the thread's loop: may set L->layer_data[id]. 0, or -errno: then the
   * loop is not made (the layers whose loop_start ran before get their
   * loop_release). */
  int (*loop_start)(weft_loop *L);
  /* The loop is about to sleep in the poller (nothing ready, nothing in
   * the inbox): a time to give back caches. */
  void (*before_sleep)(weft_loop *L);
  /* The loop is being freed, on its thread (L still its current loop):
   * every task has finished and the inbox is closed, nothing is freed
   * yet. A layer waits here for work of its own the loop left behind. */
  void (*loop_stop)(weft_loop *L);
  /* The last reference to L is gone (on any thread; after loop_stop),
   * or loop_new failed after this layer's loop_start: L's struct is
   * freed right after. Lets go of L->layer_data[id]. */
  void (*loop_release)(weft_loop *L);
  /* A task the layer owns finished (ran or not), on the loop's thread,
   * inside weft__task_finish (as a group child's exit is reported): its
   * result is set; it may not block. */
  void (*task_exit)(weft_loop *L, weft_task *t);
} weft__layer;

#define WEFT__LAYER_CTOR __attribute__((constructor(101)))
/* Registers ly (static storage). Its id (0 .. WEFT__MAX_LAYERS - 1), or
 * -ENOSPC. From a WEFT__LAYER_CTOR function only (inbox.c). */
WEFT__HIDDEN int weft__layer_register(const weft__layer *ly);
extern const weft__layer *weft__layers[WEFT__MAX_LAYERS] WEFT__HIDDEN;
extern int weft__nlayers WEFT__HIDDEN;
/* loop_new: the loop_start hooks, in registration order (0, or the
 * first error, after the loop_release of those that ran); loop_free: the
 * loop_stop hooks, in reverse. weft_loop_unref runs the loop_release
 * hooks (reverse), the inbox the before_sleep ones. */
WEFT__HIDDEN int weft__layers_start(weft_loop *L);
WEFT__HIDDEN void weft__layers_stop(weft_loop *L);
/* Marks t (not started yet) as owned by layer `id`. */
static inline void weft__task_set_owner(weft_task *t, int id) {
  t->flags = (uint16_t)((t->flags & ~TF_OWNER) |
                        (unsigned)(id + 1) << TF_OWNER_SHIFT);
}
_Static_assert(WEFT__MAX_LAYERS <= (TF_OWNER >> TF_OWNER_SHIFT),
               "too many layers for TF_OWNER");
/* The layer that owns finished task t: its task_exit hook (in
 * weft__task_finish). */
static inline void weft__task_owner_exit(weft_loop *L, weft_task *t) {
  const weft__layer *ly =
      weft__layers[((t->flags & TF_OWNER) >> TF_OWNER_SHIFT) - 1];
  if (ly->task_exit) ly->task_exit(L, t);
}

/* weft_config.shutdown_signals (shutdown.c), for the time of one root
 * task's run. add: the signal handler serves L from now (0, -ENOSPC: 64
 * loops have it already, -errno of sigaction); remove: no longer (waits
 * out a handler under way; nothing if L was not added). check: after a
 * poll that was woken, on L's thread: cancels the root task if a signal
 * asked for it. */
WEFT__HIDDEN int weft__shutdown_add(weft_loop *L);
WEFT__HIDDEN void weft__shutdown_remove(weft_loop *L);
WEFT__HIDDEN void weft__shutdown_check(weft_loop *L);

/* Errors (error.c) */
WEFT__HIDDEN char *weft__vformat(const char *fmt, __builtin_va_list ap);
/* printf to an fd with a write loop (dprintf leaks when write fails).
 * 0 or -errno. */
WEFT__HIDDEN int weft__fdprintf(int fd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Core's kinds of wait (loop.c, fd.c, task.c, group.c). */
extern const weft__wait_kind weft__wk_sleep, weft__wk_fd, weft__wk_join,
    weft__wk_group, weft__wk_started WEFT__HIDDEN;
/* A describe function for a wait whose object is a task: "task N 'x'". */
WEFT__HIDDEN int weft__describe_task(const weft_task *t, const void *obj,
                                     char *buf, size_t n);

/* Looking inside (dump.c). Object names (weft_set_name): the name of obj
 * copied into buf (NUL-terminated, cut to n - 1): its length, or 0 if it
 * has none (buf then ""). forget: obj is being freed; every free
 * function of an object that can be named calls it. Both are cheap while
 * no object has a name, and thread-safe. */
WEFT__HIDDEN size_t weft__name_get(const void *obj, char *buf, size_t n);
WEFT__HIDDEN void weft__name_forget(const void *obj);
/* The process's list of loops: a loop joins when made (numbered, its
 * thread noted) and leaves when freed. */
WEFT__HIDDEN void weft__loop_register(weft_loop *L);
WEFT__HIDDEN void weft__loop_unregister(weft_loop *L);
/* Calls fn(L, arg) for every registered loop, newest first, under the
 * list's mutex, until fn returns non-zero (returned). fn must not block:
 * to use a loop after, it takes a reference (weft_loop_ref). */
WEFT__HIDDEN int weft__loops_foreach(int (*fn)(weft_loop *L, void *arg),
                                     void *arg);
/* The task dump of every loop of the process (weft_dump_tasks with
 * WEFT_DUMP_ALL; the weft-ps socket): callable from any thread, loop
 * threads included. Other loops are asked through their inbox and given
 * `timeout` ns each to answer (then listed as busy). 0 or -errno. */
WEFT__HIDDEN int weft__dump_process(FILE *out, int flags, int64_t timeout);
/* Run-time measurement (L->stats): an instrument that adds each step's
 * time to the task's run_ns. */
extern const weft_instrument weft__stats_instrument WEFT__HIDDEN;
/* Traces (trace.c): start (on loop_new; path from the config or
 * WEFT_TRACE; nothing if neither) and stop (loop_free: flushes, and the
 * last loop to stop finishes the file). */
WEFT__HIDDEN void weft__trace_start(weft_loop *L, const weft_config *cfg);
WEFT__HIDDEN void weft__trace_stop(weft_loop *L);
/* The weft-ps socket (ps.c): a loop that asks for it (config or
 * WEFT_PS=1) joins the process's listener, started with the first. */
WEFT__HIDDEN void weft__ps_start(weft_loop *L, const weft_config *cfg);
WEFT__HIDDEN void weft__ps_stop(weft_loop *L);

/* Debug mode (debug.c) */
WEFT__HIDDEN void weft__debug_start(weft_loop *L);
WEFT__HIDDEN void weft__debug_stop(weft_loop *L);
WEFT__HIDDEN void weft__debug_task_exit(weft_loop *L, weft_task *t);
WEFT__HIDDEN void weft__debug_switch_check(weft_loop *L, weft_task *t);
extern const weft_instrument weft__debug_instrument WEFT__HIDDEN;

/* A loop-only function was called where it cannot run: on a thread with
 * no loop or no current task (code WEFT_ENOTASK), or on an object of
 * another loop (WEFT_ELOOP). Returns code; in debug mode (WEFT_DEBUG=1, or
 * the calling thread's loop is in debug mode) it also prints the
 * function's name and the thread to stderr. Use as
 *   if (!t) return weft__misuse(__func__, WEFT_ENOTASK);                 */
WEFT__HIDDEN int weft__misuse(const char *func, int code);

/* For a constructor that fails with `code`: sets errno to a value the
 * C library names (weft's own codes have none): WEFT_ENOTASK becomes
 * EPERM, WEFT_ELOOP EXDEV, a negative errno its positive value. Returns
 * NULL, so that it reads `return weft__null_errno(rc);`. */
static inline void *weft__null_errno(int code) {
  errno = code == WEFT_ENOTASK ? EPERM : code == WEFT_ELOOP ? EXDEV : -code;
  return NULL;
}

/* Instrument dispatch. */
#define WEFT__INSTR(L, hook, ...)                                   \
  do {                                                              \
    if (weft__unlikely((L)->ninstr))                                      \
      for (int i_ = 0; i_ < (L)->ninstr; i_++)                      \
        if ((L)->instr[i_].ins->hook)                               \
          (L)->instr[i_].ins->hook(__VA_ARGS__, (L)->instr[i_].arg); \
  } while (0)

/* The calling task, or NULL; and the usual preamble of a checkpoint. */
static inline weft_task *weft__cur(void) {
  weft_loop *L = weft__tls_loop;
  return L ? L->current : NULL;
}
static inline bool weft__cancelled(const weft_task *t) {
  return t->scope->flags & SC_EFFECTIVE;
}
/* A task's code that is a failure: negative, and not -ECANCELED (a task
 * that ends with -ECANCELED ended cancelled, whatever cancelled it, as
 * asyncio's tasks that end in CancelledError). Groups, gather, race and
 * wait all judge outcomes by this. */
static inline bool weft__failed(int code) {
  return code < 0 && code != -ECANCELED;
}
/* What a checkpoint returns for t before it suspends: -ECANCELED if t is
 * in a cancelled scope, else 0. A -ECANCELED is a delivery: the innermost
 * scope records it, so that closing the scope that was cancelled reports
 * the timeout or catches the cancellation only if it cut something short
 * (Trio's cancelled_caught). Every checkpoint tests through this before
 * it suspends; a park that ends in -ECANCELED while t is cancelled
 * records the same (switch_away in loop.c). */
static inline int weft__checkpoint(weft_task *t) {
  if (weft__likely(!(t->scope->flags & SC_EFFECTIVE))) return 0;
  t->scope->flags |= SC_DELIVERED;
  return -ECANCELED;
}
/* The checkpoint at the entry of a call that does I/O and waits only
 * when its fd is not ready: weft__checkpoint, and every WEFT__COOP_OPS
 * such calls within one step (a task whose data is always there would
 * never suspend), a yield (see loop.c). 0 or -ECANCELED. */
#define WEFT__COOP_OPS 64
static inline int weft__checkpoint_io(weft_loop *L, weft_task *t) {
  if (weft__unlikely(--L->coop_left <= 0)) return weft_yield();
  return weft__checkpoint(t);
}
/* The body of a task that has a stack: at the top of it, below the
 * stack's descriptor. Derived, not stored: the record stays small. */
static inline weft__task_body *weft__body(const weft_task *t) {
  return (weft__task_body *)(((uintptr_t)t->stack - sizeof(weft__task_body)) &
                       ~(uintptr_t)63);
}
/* t's failure message (NULL if none); sets it, taking ownership of m
 * (freed if there is no memory to keep it); takes it out (the caller
 * frees it). */
static inline const char *weft__task_msg(const weft_task *t) {
  return t->x ? t->x->msg : NULL;
}
WEFT__HIDDEN void weft__task_set_msg(weft_task *t, char *m);
WEFT__HIDDEN char *weft__task_take_msg(weft_task *t);
/* Links w (fn set by the caller) to t's watches; t must not have
 * finished. 0, or -ENOMEM (for t's extra part). */
WEFT__HIDDEN int weft__watch_add(weft_task *t, weft__watch *w);
/* Links w to t's exit hooks; t must be running (it has a body). */
static inline void weft__exit_hook_add(weft_task *t, weft__watch *w) {
  weft__watch_link(&weft__body(t)->exit_hooks, w);
}
/* Cancels t's root scope, or marks a task that has not run yet. */
WEFT__HIDDEN void weft__task_cancel(weft_task *t);

WEFT__HIDDEN int64_t weft__clock(void);
/* x86-64 with an invariant TSC (clock.c): the fast clock may use it. */
WEFT__HIDDEN bool weft__tsc_invariant(void);

/*
 * Spinning before sleeping. Waking a thread that sleeps on the other,
 * halted vCPU costs tens of microseconds on the VMs weft is measured on;
 * a hand-off to a thread that is still polling costs a cache-line
 * transfer. So a loop that expects a message soon (L->nexpected) polls
 * its inbox for a short while before it sleeps, and an upper layer's own
 * threads may poll for their work the same way. Between short rounds of
 * polling they yield the CPU: when the other thread shares it (taskset
 * -c 1, or the scheduler put both there), that is what lets it run;
 * otherwise sched_yield returns at once. With one usable CPU they only
 * yield.
 */
#define WEFT__SPIN_LOOP_NS 20000 /* loop expecting a message (nexpected) */
#define WEFT__SPIN_ROUND 8       /* polls between two yields */

/* CPUs this process may run on (sched_getaffinity), at least 1 (inbox.c). */
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

/* The scheduler (loop.c): runs tasks until `until` is done, or (NULL)
 * until no task is left. On the thread's own stack (runner.c). */
WEFT__HIDDEN void weft__run_until(weft_loop *L, weft_task *until);
/* ns (a duration or a CLOCK_MONOTONIC time, >= 0) as a timespec. */
static inline struct timespec weft__timespec(int64_t ns) {
  return (struct timespec){.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
}
/* The TSC on x86-64, 0 elsewhere (where the loop never calibrates it). */
static inline uint64_t weft__tsc(void) {
#if defined(__x86_64__)
  return __builtin_ia32_rdtsc();
#else
  return 0;
#endif
}
/* Reads CLOCK_MONOTONIC and feeds the fast clock's calibration (clock.c). */
WEFT__HIDDEN int64_t weft__clock_sample(weft_loop *L);
/* A cheap clock for relative deadlines: see clock.c. */
static inline int64_t weft__fast_now(weft_loop *L) {
  if (weft__likely(L->tsc_mult)) {
    uint64_t d = weft__tsc() - L->anchor_tsc;
    int64_t dn = (int64_t)(((unsigned __int128)d * L->tsc_mult) >> 32);
    /* Err late, never early: a sleep must not end before its time. The
     * margin covers the anchor's error (<= 0.4 us) and the rate's (<= 4e-4
     * of the time since the anchor). */
    return L->anchor_ns + dn + 1000 + (dn >> 10);
  }
  return weft__clock_sample(L);
}
/* The deadline `duration` from now on the fast clock: negative durations
 * count as 0, and a sum past WEFT_FOREVER is WEFT_FOREVER. */
static inline int64_t weft__deadline_after(weft_loop *L, int64_t duration) {
  if (duration < 0) duration = 0;
  int64_t now = weft__fast_now(L);
  return duration > WEFT_FOREVER - now ? WEFT_FOREVER : now + duration;
}

/* ---- scheduling fast paths (inline: every waker of sync/ calls them) -- */

/* Appends t to the run queue. */
static inline void weft__ready(weft_loop *L, weft_task *t) {
  t->state = WEFT__T_READY;
  t->rq_next = NULL;
  if (L->rq_tail)
    L->rq_tail->rq_next = t;
  else
    L->rq_head = t;
  L->rq_tail = t;
  WEFT__INSTR(L, task_scheduled, t);
}

/* Wakes parked t: weft__park returns `code`. t must be parked, and every
 * waker owns the wait it ends (the waiter was registered with it, and
 * unpark unregisters it on cancellation). */
static inline void weft__wake(weft_task *t, int code) {
  weft__task_body *b = weft__body(t);
  b->wake_code = code;
  b->unpark = NULL;
  weft__ready(t->loop, t);
}

#endif
