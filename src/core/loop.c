/*
 * The loop: run queue, switching between tasks, timers, the poller, and
 * the life cycle of weft_run and the runner.
 *
 * Scheduling. A task that suspends (parks, yields or exits) switches
 * directly to the next ready task: one context switch per hand-off. Every
 * WEFT__BUDGET dispatches, or when nothing is ready, it switches to the
 * scheduler instead (the thread's own stack), which takes a "loop turn":
 * fire due timers, poll file descriptors (without blocking when tasks are
 * ready; not at all when nobody waits on an fd), give surplus stacks back
 * when about to sleep. A task that exits always leaves its stack to be
 * freed on the far side of the switch (L->zombie), since it is still
 * running on it.
 *
 * Known limits: a task that never reaches a checkpoint starves the others
 * (cooperative scheduling; debug mode names it); the ready queue is FIFO
 * with no priorities.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"

__thread weft_loop *weft__tls_loop __attribute__((tls_model("initial-exec")));

/* ---- sanitizer fiber annotations ------------------------------------ */

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define WEFT_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define WEFT_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define WEFT_TSAN 1
#endif

#ifdef WEFT_ASAN
#include <sanitizer/asan_interface.h>
#endif
#ifdef WEFT_TSAN
#include <sanitizer/tsan_interface.h>
#endif

/* Per-loop sanitizer state: the scheduler's stack and fiber. */
static __thread const void *sched_stack_lo __attribute__((tls_model("initial-exec")));
static __thread size_t sched_stack_size __attribute__((tls_model("initial-exec")));
#ifdef WEFT_TSAN
static __thread void *sched_fiber __attribute__((tls_model("initial-exec")));
static __thread void *zombie_fiber __attribute__((tls_model("initial-exec")));
#endif

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
static bool tsc_invariant(void) {
  unsigned a, b, c, d;
  if (__get_cpuid_max(0x80000000, NULL) < 0x80000007) return false;
  __cpuid(0x80000007, a, b, c, d);
  (void)a, (void)b, (void)c;
  return (d >> 8) & 1;
}
#else
static bool tsc_invariant(void) { return false; }
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

weft_loop *weft_loop_current(void) { return weft__tls_loop; }

/* ---- switching --------------------------------------------------------- */

/* Runs on the far side of every switch, in the context that was resumed. */
static inline void after_switch(weft_loop *L, void *fake) {
#ifdef WEFT_ASAN
  __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#else
  (void)fake;
#endif
#ifdef WEFT_TSAN
  if (zombie_fiber) {
    __tsan_destroy_fiber(zombie_fiber);
    zombie_fiber = NULL;
  }
#endif
  if (L->zombie) {
    weft__stack_put(&L->stacks, L->zombie);
    L->zombie = NULL;
  }
}

/* Switches from ctx `from` to task `to` (or to the scheduler if to is
 * NULL). `dying`: the current context will never be resumed. */
static void do_switch(weft_loop *L, weft__ctx *from, weft_task *to, bool dying) {
  weft__ctx *dst = to ? &to->ctx : &L->sched_ctx;
#ifdef WEFT_ASAN
  void *fake = NULL;
  const void *lo = to ? (const void *)to->stack->lo : sched_stack_lo;
  size_t sz = to ? to->stack->size : sched_stack_size;
  __sanitizer_start_switch_fiber(dying ? NULL : &fake, lo, sz);
#else
  void *fake = NULL;
  (void)dying;
#endif
#ifdef WEFT_TSAN
  if (dying) zombie_fiber = __tsan_get_current_fiber();
  __tsan_switch_to_fiber(to ? weft__body(to)->san_fiber : sched_fiber, 0);
#endif
  weft__ctx_switch(from, dst);
  after_switch(L, fake);
}

void weft__task_entry(void *arg) {
  weft_task *t = arg;
  weft_loop *L = t->loop;
  after_switch(L, NULL);
  for (;;) { /* one task after another on this stack: see weft__task_exit */
    t->result = t->fn(t->arg);
    t = weft__task_exit(L, t);
  }
}

/* Gives t a stack and a context. False (and t finished with -ENOMEM) if
 * no stack could be had. */
static bool prepare(weft_loop *L, weft_task *t) {
  weft__stack *st = weft__stack_get(&L->stacks, (size_t)t->stack_size * 1024);
  if (unlikely(!st)) {
    t->state = T_RUNNING;
    t->result = -ENOMEM;
    weft__task_set_msg(t, strdup("no memory for a task stack"));
    weft__task_finish(L, t);
    return false;
  }
  t->stack = st;
#ifdef WEFT_ASAN
  /* A recycled stack still carries the redzones of its last task's frames. */
  ASAN_UNPOISON_MEMORY_REGION(st->lo, st->size);
#endif
  task_body *b = weft__body(t);
  weft__body_init(t, b);
#ifdef WEFT_TSAN
  b->san_fiber = __tsan_create_fiber(0);
#endif
  weft__ctx_init(&t->ctx, st->lo, (size_t)((char *)b - st->lo), weft__task_entry, t);
  return true;
}

static inline weft_task *rq_pop(weft_loop *L) {
  weft_task *t = L->rq_head;
  if (t) {
    L->rq_head = t->rq_next;
    if (!L->rq_head) L->rq_tail = NULL;
  }
  return t;
}

void weft__ready_front(weft_loop *L, weft_task *t) {
  t->state = T_READY;
  t->rq_next = L->rq_head;
  L->rq_head = t;
  if (!L->rq_tail) L->rq_tail = t;
  WEFT__INSTR(L, task_scheduled, t);
}

static inline void begin_step(weft_loop *L, weft_task *t) {
  t->state = T_RUNNING;
  L->current = t;
  WEFT__INSTR(L, step_begin, t);
}

enum { SW_PARK, SW_YIELD, SW_DIE };

/* The current task `cur` stops running (it parked, yielded or is dying):
 * run the next ready task, or the scheduler. Returns when cur resumes:
 * for a yield 0 or -ECANCELED, for a park its wake code.
 *
 * Every suspension goes through this one function, out of line, and
 * weft_yield and weft__park end in a tail call to it (so do the sync/
 * waits that end in weft__park). A resumed task returns along the return
 * addresses the CPU predicts from the task that suspended: with one
 * shared path only the return into the task's own code can be
 * mispredicted, not also one per library frame in between. Measured on
 * 100 tasks x {sem acquire; yield; release} over 10 permits (a task parks
 * in acquire, the next resumes from a yield): 67 -> 54 ns per cycle. */
__attribute__((noinline)) static int switch_away(weft_loop *L, weft_task *cur,
                                                 weft__ctx *save, int how) {
  bool dying = how == SW_DIE;
  if (!dying) { /* a dying task ended its step before it finished */
    WEFT__INSTR(L, step_end, cur);
    if (unlikely(L->debug)) weft__debug_switch_check(L, cur);
  }
  for (;;) {
    weft_task *next = NULL;
    if (likely(L->budget > 0)) next = rq_pop(L);
    if (!next) {
      L->current = NULL;
      do_switch(L, save, NULL, dying);
      break;
    }
    L->budget--;
    if (next == cur) { /* yielded with nobody else ready */
      begin_step(L, cur);
      break;
    }
    if (!next->stack && !prepare(L, next)) continue;
    begin_step(L, next);
    do_switch(L, save, next, dying);
    break;
  }
  if (how == SW_YIELD) return weft__checkpoint(cur);
  int rc = weft__body(cur)->wake_code;
  /* Woken by a cancellation (interrupted, or a wait that ends when the
   * cancellation ends what it waits for): a delivery, see
   * weft__checkpoint. */
  if (unlikely(rc == -ECANCELED) && weft__cancelled(cur))
    cur->scope->flags |= SC_DELIVERED;
  return rc;
}

int weft__park(weft_loop *L, weft_task *t, void (*unpark)(weft_task *)) {
  task_body *b = weft__body(t);
  b->unpark = unpark;
  t->state = T_PARKED;
  if (t->nunarmed) weft__arm_deadlines(L, t);
  return switch_away(L, t, &t->ctx, SW_PARK);
}

void weft__interrupt(weft_task *t) {
  void (*unpark)(weft_task *);
  if (t->state == T_PARKED && (unpark = weft__body(t)->unpark)) {
    unpark(t);
    weft__wake(t, -ECANCELED);
  }
}

void weft__run_eager(weft_loop *L, weft_task *cur, weft_task *child) {
  if (!prepare(L, child)) return;
  if (cur->nunarmed) weft__arm_deadlines(L, cur);
  weft__ready_front(L, cur);
  WEFT__INSTR(L, step_end, cur);
  begin_step(L, child);
  do_switch(L, &cur->ctx, child, false);
}

/* t returned. If the next ready task has never run, it inherits t's stack
 * and runs on it as soon as this returns it (see weft__task_entry): no
 * switch, no trip through the pool, and its first stack page is already
 * warm, which makes a burst of short tasks (spawn, gather) cheap.
 * Otherwise switches away for good. Never for the root task, whose end
 * hands control back to weft_run. */
weft_task *weft__task_exit(weft_loop *L, weft_task *t) {
  weft__stack *st = t->stack;
  bool root = t->flags & TF_ROOT;
  WEFT__INSTR(L, step_end, t);
  if (unlikely(L->debug)) {
    weft__debug_switch_check(L, t);
    weft__debug_task_exit(L, t);
  }
#ifdef WEFT_TSAN
  void *fiber = weft__body(t)->san_fiber;
#endif
  weft__task_finish(L, t); /* may recycle the record: only st from here */
  weft_task *next = L->rq_head;
  if (likely(next && !next->stack && !root && L->budget > 0 &&
             weft__stack_fits(&L->stacks, st,
                              (size_t)next->stack_size * 1024))) {
    rq_pop(L);
    L->budget--;
    next->stack = st;
    weft__body_init(next, weft__body(next));
#ifdef WEFT_TSAN
    weft__body(next)->san_fiber = fiber;
#endif
    begin_step(L, next);
    return next;
  }
  L->zombie = st;
  /* The dead context is saved in the (maybe recycled) record: harmless,
   * nothing runs before the switch and nothing reads it after. */
  switch_away(L, t, &t->ctx, SW_DIE);
  __builtin_unreachable();
}

/* ---- timers and fd waits --------------------------------------------- */

int weft_yield(void) {
  weft_loop *L = weft__tls_loop;
  weft_task *t = L ? L->current : NULL;
  if (unlikely(!t)) return WEFT_ENOTASK;
  if (unlikely(weft__checkpoint(t))) return -ECANCELED;
  if (t->nunarmed) weft__arm_deadlines(L, t);
  /* Alone: still give timers and I/O a turn, as asyncio's sleep(0). */
  if (!L->rq_head) L->budget = 0;
  weft__ready(L, t);
  return switch_away(L, t, &t->ctx, SW_YIELD);
}

int weft_check_cancel(void) {
  weft_task *t = weft__cur();
  if (!t) return WEFT_ENOTASK;
  return weft__checkpoint(t);
}

static void sleep_unpark(weft_task *t) {
  weft__timers_del(&t->loop->timers, &weft__body(t)->tm);
}

static int sleep_until(weft_loop *L, weft_task *t, int64_t deadline) {
  if (weft__checkpoint(t)) return -ECANCELED;
  if (deadline == WEFT_FOREVER) return weft__park(L, t, sleep_unpark);
  weft__timer *tm = &weft__body(t)->tm;
  tm->when = deadline;
  if (weft__timers_add(&L->timers, tm) != 0) return -ENOMEM;
  return weft__park(L, t, sleep_unpark);
}

int weft_sleep_until(int64_t deadline) {
  weft_loop *L = weft__tls_loop;
  weft_task *t = L ? L->current : NULL;
  if (!t) return WEFT_ENOTASK;
  return sleep_until(L, t, deadline);
}

int weft_sleep(int64_t duration) {
  weft_loop *L = weft__tls_loop;
  weft_task *t = L ? L->current : NULL;
  if (!t) return WEFT_ENOTASK;
  return sleep_until(L, t, weft__deadline_after(L, duration));
}

/* Timer of a task: a sleep ends (0) or an fd wait times out. */
static void task_timer_fire(weft__timer *tm) {
  weft_task *t = ((task_body *)((char *)tm - offsetof(task_body, tm)))->task;
  if (weft__body(t)->wait_fd >= 0) {
    weft__fd_unwait(t);
    weft__wake(t, -ETIMEDOUT);
  } else {
    weft__wake(t, 0);
  }
}

void weft__body_init(weft_task *t, task_body *b) {
  b->task = t;
  b->unpark = NULL;
  b->wake_code = 0;
  b->exit_hooks = NULL;
  b->wait_fd = -1;
  b->wait_events = 0;
  b->wait_obj = NULL;
  b->san_fiber = NULL;
  b->step_start = 0;
  weft__timer_init(&b->tm, task_timer_fire);
  weft__scope *r = &b->root;
  r->parent = r->inner = r->child_head = r->prev = r->next = NULL;
  r->task = t;
  weft__timer_init(&r->timer, weft__scope_fire);
  r->flags = SC_OPEN | SC_ROOT;
  if (t->flags & TF_CANCEL) r->flags |= SC_CANCELLED | SC_EFF;
  if (t->pscope) {
    weft__scope_link(t->pscope, r);
    if (t->pscope->flags & SC_EFF) r->flags |= SC_EFF;
  }
  t->scope = r;
}

/* ---- the loop turn ---------------------------------------------------- */

static void fire_timers(weft_loop *L) {
  weft__timer *tm;
  while ((tm = weft__timers_pop_due(&L->timers, L->now)) != NULL) tm->fire(tm);
}

static void loop_turn(weft_loop *L) {
  L->now = weft__clock_sample(L);
  fire_timers(L);
  if (weft__inbox_pending(L)) weft__inbox_drain(L);
  int64_t timeout;
  if (L->rq_head) {
    if (!L->nfd_waiters && !atomic_load_explicit(&L->wake_pending,
                                                 memory_order_relaxed))
      return;
    timeout = 0;
  } else {
    int64_t next = weft__timers_next(&L->timers);
    timeout = next == INT64_MAX ? -1 : next > L->now ? next - L->now : 0;
    /* About to sleep for a while: give back some surplus stacks. */
    if (timeout < 0 || timeout >= WEFT_MS(1)) weft__stacks_trim(&L->stacks, 64);
    timeout = weft__inbox_before_poll(L, timeout);
  }
  WEFT__INSTR(L, before_poll, timeout);
  weft__pevent ev[128];
  bool woken = false;
  int n = weft__poller_wait(L->poller, ev, 128, timeout, &woken);
  if (woken) atomic_store(&L->wake_pending, 0);
  WEFT__INSTR(L, after_poll, n < 0 ? 0 : n);
  for (int i = 0; i < n; i++) weft__fd_ready(L, ev[i].token, ev[i].events);
  weft__inbox_after_poll(L);
  if (timeout != 0) {
    L->now = weft__clock_sample(L);
    fire_timers(L);
  }
}

/* Runs the scheduler until `until` is done, or (until NULL) no task is
 * left. Called on the thread's own stack. */
static void run_until(weft_loop *L, weft_task *until) {
  for (;;) {
    if (until ? until->state == T_DONE : L->ntasks == 0) return;
    if (!L->rq_head || L->budget <= 0) {
      loop_turn(L);
      L->budget = WEFT__BUDGET;
    }
    weft_task *next = rq_pop(L);
    if (!next) continue;
    if (!next->stack && !prepare(L, next)) continue;
    L->budget--;
    begin_step(L, next);
    do_switch(L, &L->sched_ctx, next, false);
    L->current = NULL;
  }
}

/* ---- life cycle -------------------------------------------------------- */

void weft_config_init(weft_config *cfg) {
  if (!cfg) return;
  memset(cfg, 0, sizeof *cfg);
  cfg->guard_pages = 1;
  cfg->debug = -1;
}

static bool env_debug(void) {
  const char *e = getenv("WEFT_DEBUG");
  return e && *e && strcmp(e, "0") != 0;
}

static weft_loop *loop_new(const weft_config *cfg) {
  weft_config def;
  if (!cfg) {
    weft_config_init(&def);
    cfg = &def;
  }
  weft_loop *L = calloc(1, sizeof *L);
  if (!L) return NULL;
  L->debug = cfg->debug < 0 ? env_debug() : cfg->debug != 0;
  weft__stacks_init(&L->stacks, cfg->stack_size, cfg->stack_pool,
                    cfg->guard_pages != 0, L->debug);
  int err;
  if (!(L->poller = weft__poller_new())) {
    err = -errno;
    goto fail;
  }
  L->tsc_usable = tsc_invariant();
  weft__inbox_init(L);
  L->now = weft__clock_sample(L);
  if (cfg->instrument) {
    L->instr[L->ninstr].ins = cfg->instrument;
    L->instr[L->ninstr++].arg = cfg->instrument_arg;
  }
  {
    pthread_attr_t a;
    void *lo = NULL;
    size_t sz = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
      pthread_attr_getstack(&a, &lo, &sz);
      pthread_attr_destroy(&a);
    }
    sched_stack_lo = lo;
    sched_stack_size = sz;
  }
#ifdef WEFT_TSAN
  sched_fiber = __tsan_get_current_fiber();
#endif
  weft__tls_loop = L;
  if (L->debug) weft__debug_start(L);
  return L;
fail:
  weft__stacks_destroy(&L->stacks);
  free(L);
  errno = -err; /* EMFILE, ENFILE, ENOMEM... */
  return NULL;
}

/* Cancels every task left, runs until all have finished, frees it all. */
static void loop_free(weft_loop *L) {
  L->stopping = true;
  for (weft_task *t = L->all_head; t; t = t->all_next)
    if (t->state != T_DONE) weft__task_cancel(t);
  /* Other threads' messages that arrive meanwhile are still handled;
   * closing the inbox may run callbacks that spawn tasks: reap those too. */
  do run_until(L, NULL);
  while (weft__inbox_close(L));
  /* asyncio.run's shutdown_default_executor: wait for the jobs left
   * behind; the last loop using the pool stops it. Before the frees, so
   * that a pool thread that is still polling ends at once and the
   * munmaps below have no pool thread to shoot TLBs down on. */
  weft__default_pool_leave();
  if (L->debug) weft__debug_stop(L);
  for (weft_task *t = L->all_head, *n; t; t = n) {
    n = t->all_next;
    weft__task_free(L, t);
  }
  for (task_chunk *c = L->chunks, *n; c; c = n) {
    n = c->next;
    munmap(c, c->bytes);
  }
  weft__groups_free(L);
  weft__timers_free(&L->timers);
  weft__stacks_destroy(&L->stacks);
  weft__poller_stop(L->poller);
  weft__fds_free(L);
  weft__tls_loop = NULL;
  /* The struct (and the poller's wake channel, which holders of a
   * reference may still use) lives until the last weft_loop_unref. */
  weft_loop_unref(L);
}

static weft_task *spawn_root(weft_loop *L, weft_fn fn, void *arg) {
  weft_spawn_opts o = {.name = "main"};
  weft_task *t = weft__task_new(L, fn, arg, &o);
  if (!t) return NULL;
  t->flags |= TF_HANDLE | TF_ROOT;
  WEFT__INSTR(L, task_spawned, t);
  weft__ready(L, t);
  return t;
}

/* Runs fn as a root task to completion; returns its result. */
static int run_root(weft_loop *L, weft_fn fn, void *arg) {
  weft_task *t = spawn_root(L, fn, arg);
  if (!t) return -ENOMEM;
  run_until(L, t);
  int rc = t->result;
  t->flags &= ~TF_HANDLE;
  weft__task_free(L, t);
  return rc;
}

int weft_run_with(const weft_config *cfg, weft_fn main, void *arg) {
  if (!main) return -EINVAL;
  if (weft__tls_loop) return -EBUSY;
  weft_loop *L = loop_new(cfg);
  if (!L) return -errno;
  int rc = run_root(L, main, arg);
  loop_free(L);
  return rc;
}

int weft_run(weft_fn main, void *arg) { return weft_run_with(NULL, main, arg); }

struct weft_runner {
  weft_loop *loop;
  pthread_t thread;
};

weft_runner *weft_runner_open(const weft_config *cfg) {
  if (weft__tls_loop) {
    errno = EBUSY;
    return NULL;
  }
  weft_runner *r = malloc(sizeof *r);
  if (!r) return NULL;
  r->loop = loop_new(cfg);
  if (!r->loop) {
    int e = errno;
    free(r);
    errno = e;
    return NULL;
  }
  r->thread = pthread_self();
  return r;
}

static int runner_check(weft_runner *r) {
  if (!r) return -EINVAL;
  if (!pthread_equal(r->thread, pthread_self()) || weft__tls_loop != r->loop)
    return WEFT_ELOOP;
  if (r->loop->current) return -EBUSY;
  return 0;
}

int weft_runner_run(weft_runner *r, weft_fn fn, void *arg) {
  int rc = runner_check(r);
  if (rc) return rc;
  if (!fn) return -EINVAL;
  return run_root(r->loop, fn, arg);
}

int weft_runner_close(weft_runner *r) {
  int rc = runner_check(r);
  if (rc) return rc;
  loop_free(r->loop);
  free(r);
  return 0;
}

/* ---- instruments ------------------------------------------------------- */

int weft_instrument_add(const weft_instrument *ins, void *arg) {
  weft_loop *L = weft__tls_loop;
  if (!ins) return -EINVAL;
  if (!L) return WEFT_ENOTASK;
  if (L->ninstr == WEFT__MAX_INSTR) return -ENOSPC;
  L->instr[L->ninstr].ins = ins;
  L->instr[L->ninstr++].arg = arg;
  return 0;
}

int weft_instrument_remove(const weft_instrument *ins, void *arg) {
  weft_loop *L = weft__tls_loop;
  if (!ins) return -EINVAL;
  if (!L) return WEFT_ENOTASK;
  for (int i = 0; i < L->ninstr; i++) {
    if (L->instr[i].ins == ins && L->instr[i].arg == arg) {
      memmove(&L->instr[i], &L->instr[i + 1],
              (size_t)(L->ninstr - i - 1) * sizeof L->instr[0]);
      L->ninstr--;
      return 0;
    }
  }
  return -ENOENT;
}
