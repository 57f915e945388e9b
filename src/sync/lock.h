/* The lock's internals, shared with the condition (cond.c). */
#ifndef WEFT_SYNC_LOCK_H
#define WEFT_SYNC_LOCK_H

#include "sync/sobj.h"

struct weft_lock {
  weft__sobj h;
  weft_task *owner;
  bool broken;           /* its owner returned holding it */
  weft__watch hook;  /* in the owner's exit hooks while held */
  weft__wlist waiters;
  /* The conditions over this lock: when the lock breaks or is freed,
   * their waiters could never be notified again, so they are woken. */
  weft_cond *conds;
};

/* Sets up a lock in place; `release` frees its memory (a condition's own
 * lock lives inside the condition). */
WEFT__HIDDEN void weft__lock_init(weft_lock *l, void (*release)(weft__sobj *));
/* Releases l held by its owner: hands it to the first waiter, if any. */
WEFT__HIDDEN void weft__lock_handoff(weft_lock *l);
/* Acquires l for t, which has passed the entry checks, waiting for it;
 * `interruptible` false: cancellation does not end the wait. 0,
 * -ECANCELED, -EOWNERDEAD, -EIDRM. */
WEFT__HIDDEN int weft__lock_wait(weft_loop *L, weft_task *t, weft_lock *l,
                                 bool interruptible);
/* Marks l dead and wakes its waiters with -EIDRM (the `wake` of a free). */
WEFT__HIDDEN void weft__lock_kill(weft__sobj *o);

#endif
