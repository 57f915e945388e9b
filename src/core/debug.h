/*
 * Debug mode's reports made by other files than debug.c (scope.c,
 * group.c, task.c, sync/lock.c). Each is called only when the loop is in
 * debug mode, behind `if (weft__unlikely(L->debug))`, so that the code
 * stays off the paths of a loop that is not.
 */
#ifndef WEFT_CORE_DEBUG_H
#define WEFT_CORE_DEBUG_H

#include "core/internal.h"

/* weft_scope_close or weft_group_close (func) on s (a group's: its scope)
 * failed with -EINVAL in task cur: says why (s is not open, another task
 * opened it, or a scope opened inside it is still open), with the
 * caller's return address. */
WEFT__HIDDEN void weft__debug_bad_close(weft_task *cur, const weft__scope *s,
                                        const char *func, const void *caller);
/* t returned with s, one of its scopes, still open (weft__task_finish). */
WEFT__HIDDEN void weft__debug_open_at_exit(weft_task *t, const weft__scope *s);
/* t finished, its scopes closed: reports a cancellation it swallowed. */
WEFT__HIDDEN void weft__debug_finished(weft_task *t);
/* Task t took (or is about to wait for) lock `lock` in a call made at
 * `site`: remembered, for a report if t returns holding it. */
WEFT__HIDDEN void weft__debug_lock_site(weft_task *t, const void *lock,
                                        const void *site);
/* Around a call by which the library blocks L's thread on purpose, in
 * the running task's step (proc/: posix_spawn waits until the child has
 * called exec, a few ms on a loaded machine): the time between is not
 * counted as a blocking call of the task. The part of the step before
 * begin is judged at begin; measuring starts again at end. */
WEFT__HIDDEN void weft__debug_blocking_begin(weft_loop *L);
WEFT__HIDDEN void weft__debug_blocking_end(weft_loop *L);
/* t returned holding `lock` (the lock's owner-exit hook). */
WEFT__HIDDEN void weft__debug_lock_held(weft_task *t, const void *lock);

#endif
