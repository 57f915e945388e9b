/*
 * The loop: the run queue, switching between tasks, sleeping, and the
 * loop turn (due timers, the cross-thread inbox, the poller). Around it:
 * fd.c (the tasks waiting on fds), clock.c (the clocks), fiber.h (what
 * the sanitizers must be told at each switch), runner.c (weft_run and the
 * runner: making, running and freeing a loop).
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
 * A task whose I/O is always ready never suspends by itself (a reader
 * that always finds data): the I/O layers' entry checkpoint
 * (weft__checkpoint_io) yields after WEFT__COOP_OPS such calls in one
 * step, so that timers fire and others run (Tokio's cooperative budget).
 *
 * Known limits: a task that never reaches a checkpoint starves the others
 * (cooperative scheduling; debug mode names it); the ready queue is FIFO
 * with no priorities.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fiber.h"
#include "core/internal.h"

__thread weft_loop *weft__tls_loop __attribute__((tls_model("initial-exec")));

weft_loop *weft_loop_current(void) { return weft__tls_loop; }

/* ---- switching --------------------------------------------------------- */

/* Runs on the far side of every switch, in the context that was resumed. */
static inline void after_switch(weft_loop *L, void *fake) {
  weft__fiber_after(fake);
  if (L->zombie) {
    weft__stack_put(&L->stacks, L->zombie);
    L->zombie = NULL;
  }
}

/* Switches from ctx `from` to task `to` (or to the scheduler if to is
 * NULL). `dying`: the current context will never be resumed. */
static void do_switch(weft_loop *L, weft__ctx *from, weft_task *to, bool dying) {
  weft__ctx *dst = to ? &to->ctx : &L->sched_ctx;
  void *fake;
  weft__fiber_before(to, dying, &fake);
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
  if (weft__unlikely(!st)) {
    t->state = WEFT__T_RUNNING;
    t->result = -ENOMEM;
    weft__task_set_msg(t, strdup("no memory for a task stack"));
    weft__task_finish(L, t);
    return false;
  }
  t->stack = st;
  weft__task_body *b = weft__body(t);
  weft__body_init(t, b);
  weft__fiber_task_new(t);
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
  t->state = WEFT__T_READY;
  t->rq_next = L->rq_head;
  L->rq_head = t;
  if (!L->rq_tail) L->rq_tail = t;
  WEFT__INSTR(L, task_scheduled, t);
}

static inline void begin_step(weft_loop *L, weft_task *t) {
  t->state = WEFT__T_RUNNING;
  L->current = t;
  L->coop_left = WEFT__COOP_OPS;
  weft__body(t)->nsteps++;
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
    if (weft__unlikely(L->debug)) weft__debug_switch_check(L, cur);
  }
  for (;;) {
    weft_task *next = NULL;
    if (weft__likely(L->budget > 0)) next = rq_pop(L);
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
  if (weft__unlikely(rc == -ECANCELED) && weft__cancelled(cur))
    cur->scope->flags |= SC_DELIVERED;
  return rc;
}

int weft__park(weft_loop *L, weft_task *t, void (*unpark)(weft_task *),
               const weft__wait_kind *kind, const void *obj) {
  weft__task_body *b = weft__body(t);
  b->unpark = unpark;
  b->wait_kind = kind;
  b->wait_obj = obj;
  b->wait_since = L->now;
  t->state = WEFT__T_PARKED;
  if (t->n_unarmed) weft__arm_deadlines(L, t);
  return switch_away(L, t, &t->ctx, SW_PARK);
}

void weft__interrupt(weft_task *t) {
  void (*unpark)(weft_task *);
  if (t->state == WEFT__T_PARKED && (unpark = weft__body(t)->unpark)) {
    unpark(t);
    weft__wake(t, -ECANCELED);
  }
}

void weft__run_eager(weft_loop *L, weft_task *cur, weft_task *child) {
  if (!prepare(L, child)) return;
  if (cur->n_unarmed) weft__arm_deadlines(L, cur);
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
  if (weft__unlikely(L->debug)) {
    weft__debug_switch_check(L, t);
    weft__debug_task_exit(L, t);
  }
  void *fiber = weft__fiber_of(t);
  weft__task_finish(L, t); /* may recycle the record: only st from here */
  weft_task *next = L->rq_head;
  if (weft__likely(next && !next->stack && !root && L->budget > 0 &&
             weft__stack_fits(&L->stacks, st,
                              (size_t)next->stack_size * 1024))) {
    rq_pop(L);
    L->budget--;
    next->stack = st;
    weft__body_init(next, weft__body(next));
    weft__fiber_give(next, fiber);
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
  if (weft__unlikely(!t)) return weft__misuse(__func__, WEFT_ENOTASK);
  if (weft__unlikely(weft__checkpoint(t))) return -ECANCELED;
  if (t->n_unarmed) weft__arm_deadlines(L, t);
  /* Alone: still give timers and I/O a turn, as asyncio's sleep(0). */
  if (!L->rq_head) L->budget = 0;
  weft__ready(L, t);
  return switch_away(L, t, &t->ctx, SW_YIELD);
}

int weft_check_cancel(void) {
  weft_task *t = weft__cur();
  if (!t) return weft__misuse(__func__, WEFT_ENOTASK);
  return weft__checkpoint(t);
}

static void sleep_unpark(weft_task *t) {
  weft__timers_del(&t->loop->timers, &weft__body(t)->tm);
}

const weft__wait_kind weft__wk_sleep = {"sleep", NULL};

static int sleep_until(weft_loop *L, weft_task *t, int64_t deadline) {
  if (weft__checkpoint(t)) return -ECANCELED;
  if (deadline == WEFT_FOREVER)
    return weft__park(L, t, sleep_unpark, &weft__wk_sleep, NULL);
  weft__timer *tm = &weft__body(t)->tm;
  tm->when = deadline;
  if (weft__timers_add(&L->timers, tm) != 0) return -ENOMEM;
  return weft__park(L, t, sleep_unpark, &weft__wk_sleep, NULL);
}

int weft_sleep_until(int64_t deadline) {
  weft_loop *L = weft__tls_loop;
  weft_task *t = L ? L->current : NULL;
  if (!t) return weft__misuse(__func__, WEFT_ENOTASK);
  return sleep_until(L, t, deadline);
}

int weft_sleep(int64_t duration) {
  weft_loop *L = weft__tls_loop;
  weft_task *t = L ? L->current : NULL;
  if (!t) return weft__misuse(__func__, WEFT_ENOTASK);
  return sleep_until(L, t, weft__deadline_after(L, duration));
}

/* Timer of a task: a sleep ends (0) or an fd wait times out. */
static void task_timer_fire(weft__timer *tm) {
  weft_task *t = (weft__container_of(tm, weft__task_body, tm))->task;
  if (weft__body(t)->wait_fd >= 0) {
    weft__fd_unwait(t);
    weft__wake(t, -ETIMEDOUT);
  } else {
    weft__wake(t, 0);
  }
}

void weft__body_init(weft_task *t, weft__task_body *b) {
  b->task = t;
  b->unpark = NULL;
  b->wake_code = 0;
  b->exit_hooks = NULL;
  b->wait_fd = -1;
  b->wait_events = 0;
  b->wait_on.layer = NULL;
  b->san_fiber = NULL;
  b->step_start = 0;
  b->wait_kind = NULL;
  b->wait_obj = NULL;
  b->wait_since = 0;
  b->nsteps = 0;
  b->run_ns = 0;
  b->stats_start = 0;
  b->trace_start = 0;
  b->trace_park = 0;
  b->trace_fd = -1;
  weft__timer_init(&b->tm, task_timer_fire);
  weft__scope *r = &b->root;
  r->parent = r->inner = r->child_head = r->prev = r->next = NULL;
  r->task = t;
  weft__timer_init(&r->timer, weft__scope_fire);
  r->flags = SC_OPEN | SC_ROOT;
  if (t->flags & TF_CANCEL) r->flags |= SC_CANCELLED | SC_EFFECTIVE;
  if (t->parent_scope) {
    weft__scope_link(t->parent_scope, r);
    if (t->parent_scope->flags & SC_EFFECTIVE) r->flags |= SC_EFFECTIVE;
  }
  t->scope = r;
}

/* ---- the loop turn ---------------------------------------------------- */

static void fire_timers(weft_loop *L) {
  weft__timer *tm;
  while ((tm = weft__timers_pop_due(&L->timers, L->now)) != NULL) tm->fire(tm);
}

/* Waits for reports. While tasks wait on fds, and before blocking, it
 * polls without blocking for up to L->spin_ns (bounded by the timeout): on
 * a VM, waking a thread that sleeps in epoll_wait costs tens of µs, more
 * than a round trip on loopback, so an answer that comes within the spin
 * is taken at a fraction of the cost. Each spin polls with epoll_wait(0),
 * so the kernel's own work goes on; an idle loop blocks after spin_ns. */
static int poll_events(weft_loop *L, weft__pevent *ev, int max,
                       int64_t timeout, bool *woken) {
  if (timeout == 0 || !L->nfd_waiters || !L->spin_ns)
    return weft__poller_wait(L->poller, ev, max, timeout, woken);
  int64_t limit = timeout > 0 && timeout < L->spin_ns ? timeout : L->spin_ns;
  int64_t start = weft__clock(), spent;
  do {
    int n = weft__poller_wait(L->poller, ev, max, 0, woken);
    if (n != 0 || *woken) return n;
    spent = weft__clock() - start;
  } while (spent < limit);
  if (timeout > 0) timeout = timeout > spent ? timeout - spent : 0;
  return weft__poller_wait(L->poller, ev, max, timeout, woken);
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
  int n = poll_events(L, ev, 128, timeout, &woken);
  if (woken) {
    atomic_store(&L->wake_pending, 0);
    if (L->sig_slot >= 0) weft__shutdown_check(L);
  }
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
void weft__run_until(weft_loop *L, weft_task *until) {
  for (;;) {
    if (until ? until->state == WEFT__T_DONE : L->ntasks == 0) return;
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

