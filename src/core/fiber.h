/*
 * The sanitizers' view of task switches: AddressSanitizer and
 * ThreadSanitizer must be told when the thread moves to another stack
 * (their "fiber" annotations), or they report false errors and lose
 * track of stacks. Every switch in loop.c goes through these inline
 * functions, which compile to nothing without the sanitizers. valgrind
 * learns of stacks in src/ctx/stack.c (VALGRIND_STACK_REGISTER).
 *
 * Per thread (a thread runs one loop): the scheduler's own stack (the
 * thread's) and, under TSan, its fiber and a dying task's fiber, which
 * can only be destroyed from the far side of the switch away from it.
 */
#ifndef WEFT_FIBER_H
#define WEFT_FIBER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/internal.h"

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

extern __thread const void *weft__sched_stack_lo
    __attribute__((tls_model("initial-exec"))) WEFT__HIDDEN;
extern __thread size_t weft__sched_stack_size
    __attribute__((tls_model("initial-exec"))) WEFT__HIDDEN;
#ifdef WEFT_TSAN
extern __thread void *weft__sched_fiber
    __attribute__((tls_model("initial-exec"))) WEFT__HIDDEN;
extern __thread void *weft__zombie_fiber
    __attribute__((tls_model("initial-exec"))) WEFT__HIDDEN;
#endif

/* The calling thread becomes a loop's scheduler: records its stack. */
WEFT__HIDDEN void weft__fiber_thread_init(void);

/* Before switching to task `to` (NULL: the scheduler). `dying`: the
 * current context will never be resumed. *fake (in the switching frame)
 * is for weft__fiber_after on this side, once the context resumes. */
static inline void weft__fiber_before(weft_task *to, bool dying, void **fake) {
  *fake = NULL;
#ifdef WEFT_ASAN
  const void *lo = to ? (const void *)to->stack->lo : weft__sched_stack_lo;
  size_t sz = to ? to->stack->size : weft__sched_stack_size;
  __sanitizer_start_switch_fiber(dying ? NULL : fake, lo, sz);
#endif
#ifdef WEFT_TSAN
  if (dying) weft__zombie_fiber = __tsan_get_current_fiber();
  __tsan_switch_to_fiber(to ? weft__body(to)->san_fiber : weft__sched_fiber, 0);
#else
  (void)to;
  (void)dying;
#endif
}

/* On the far side of a switch, in the context that was resumed. */
static inline void weft__fiber_after(void *fake) {
#ifdef WEFT_ASAN
  __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#else
  (void)fake;
#endif
#ifdef WEFT_TSAN
  if (weft__zombie_fiber) {
    __tsan_destroy_fiber(weft__zombie_fiber);
    weft__zombie_fiber = NULL;
  }
#endif
}

/* A task gets a stack to run on: a recycled stack still carries the
 * ASan redzones of its last task's frames; TSan needs a fiber. */
static inline void weft__fiber_task_new(weft_task *t) {
#ifdef WEFT_ASAN
  ASAN_UNPOISON_MEMORY_REGION(t->stack->lo, t->stack->size);
#endif
#ifdef WEFT_TSAN
  weft__body(t)->san_fiber = __tsan_create_fiber(0);
#else
  (void)t;
#endif
}

/* A task that just returned hands its stack (and under TSan its fiber)
 * to `next`, which never ran: see weft__task_exit. */
static inline void *weft__fiber_of(weft_task *t) {
#ifdef WEFT_TSAN
  return weft__body(t)->san_fiber;
#else
  (void)t;
  return NULL;
#endif
}
static inline void weft__fiber_give(weft_task *next, void *fiber) {
#ifdef WEFT_TSAN
  weft__body(next)->san_fiber = fiber;
#else
  (void)next;
  (void)fiber;
#endif
}

#endif
