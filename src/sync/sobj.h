/*
 * What every sync object shares: a header (type tag, loop binding) and
 * intrusive FIFO lists of waiter records. A task's waiter record lives in
 * its body (weft__task_body.wait_node): a task waits on one thing at a time,
 * and so a wait can end in a tail call to weft__park (see switch_away in
 * core/loop.c for why that matters).
 *
 * The hand-off rule: a waker does the waiter's work for it (gives it the
 * lock, the permit, the item) and then wakes it with weft__wake, so a
 * woken waiter owns the result and only returns it. A parked waiter that
 * is cancelled is unlinked by the loop (weft__sobj_unpark) before anything
 * can be handed to it. Nothing ever has to be passed on to "the next
 * waiter", and a woken waiter never touches the object again.
 *
 * Freeing: the object is tagged SO_DEAD and its parked waiters are woken
 * with -EIDRM. Since woken waiters never come back to it, the memory can
 * go at once; the exception is the condition, whose waiters re-take its
 * lock after waking: they are counted in `inside` (of the condition and
 * of the lock), and the last one out releases the memory.
 */
#ifndef WEFT_SYNC_SOBJ_H
#define WEFT_SYNC_SOBJ_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

/* Type tags; SO_DEAD once freed. Distinct values catch a pointer of the
 * wrong type as well as a freed one still in memory. */
enum {
  SO_LOCK = 0x4c6f636bu,
  SO_EVENT = 0x4576656eu,
  SO_COND = 0x436f6e64u,
  SO_SEM = 0x53656d61u,
  SO_BARRIER = 0x42617272u,
  SO_QUEUE = 0x51756575u,
  SO_CHAN = 0x4368616eu,
  SO_CHAN_TX = 0x43685478u,
  SO_CHAN_RX = 0x43685278u,
  SO_DEAD = 0xdeadd00du,
};

typedef struct weft__sobj weft__sobj;
struct weft__sobj {
  uint32_t magic;
  /* Tasks that still touch the object after being woken (here: those in
   * weft_cond_wait, counted in the condition and in its lock). Memory of
   * a dead object lives until this is 0. */
  uint32_t inside;
  weft_loop *loop; /* NULL until first used from a loop's thread */
  void (*release)(weft__sobj *o); /* frees the memory */
};

typedef struct weft__waiter weft__waiter;
typedef struct weft__wlist {
  weft__waiter *head, *tail;
  size_t n;
} weft__wlist;

struct weft__waiter {
  weft__waiter *next, *prev;
  weft__wlist *list; /* the list it is on, for the unpark callback */
  weft_task *task;
  void *item;        /* queue and channel: the item to give or to fill */
  uintptr_t data;    /* barrier: arrival index; channel: its handle */
};

static inline void sobj_init(weft__sobj *o, uint32_t magic,
                             void (*release)(weft__sobj *)) {
  o->magic = magic;
  o->inside = 0;
  o->loop = NULL;
  o->release = release;
}

/* Entry checks shared by every call: 0, or the code to return. Binds an
 * unbound object to the caller's loop. */
static inline int sobj_check(weft__sobj *o, uint32_t magic, weft_loop *L,
                             const char *fn) {
  if (weft__unlikely(!o)) return -EINVAL;
  if (weft__unlikely(o->magic != magic)) return o->magic == SO_DEAD ? -EIDRM : -EINVAL;
  if (weft__likely(o->loop == L)) return 0;
  if (!o->loop) {
    o->loop = L;
    return 0;
  }
  return weft__misuse(fn, WEFT_ELOOP);
}

/* The same for a call that needs a task (*tp): the order of the codes
 * is -EINVAL, -EIDRM, WEFT_ENOTASK, WEFT_ELOOP. */
static inline int sobj_check_task(weft__sobj *o, uint32_t magic, weft_loop *L,
                                  weft_task **tp, const char *fn) {
  weft_task *t = L ? L->current : NULL;
  *tp = t;
  if (weft__unlikely(!o)) return -EINVAL;
  if (weft__unlikely(o->magic != magic)) return o->magic == SO_DEAD ? -EIDRM : -EINVAL;
  if (weft__unlikely(!t)) return weft__misuse(fn, WEFT_ENOTASK);
  if (weft__unlikely(o->loop != L)) {
    if (o->loop) return weft__misuse(fn, WEFT_ELOOP);
    o->loop = L;
  }
  return 0;
}

/* The same for a blocking call, which is also a checkpoint. */
static inline int sobj_check_wait(weft__sobj *o, uint32_t magic, weft_loop *L,
                                  weft_task **tp, const char *fn) {
  int rc = sobj_check_task(o, magic, L, tp, fn);
  if (weft__unlikely(rc)) return rc;
  return weft__checkpoint(*tp);
}

/* Every object starts with its header, so a pointer to it is one to the
 * header (also when NULL, with no member access). */
#define SOBJ(x) ((weft__sobj *)(x))

/* A read-only query: true if o looks like a live object of its type. */
static inline bool sobj_live(const void *p, uint32_t magic) {
  const weft__sobj *o = p;
  return o && o->magic == magic;
}

/* ---- wait lists ----------------------------------------------------- */

static inline void wl_push(weft__wlist *l, weft__waiter *w) {
  w->list = l;
  w->next = NULL;
  w->prev = l->tail;
  if (l->tail)
    l->tail->next = w;
  else
    l->head = w;
  l->tail = w;
  l->n++;
}

/* The head's prev is stale, never read: popping the head then touches no
 * other waiter's record (each lives on another task's stack, likely out
 * of cache). So removing the head must not read it either: a head that is
 * also the tail leaves an empty list, not a tail pointing at a waiter
 * popped earlier (which lost every later wakeup: issue 9). */
static inline void wl_remove(weft__wlist *l, weft__waiter *w) {
  if (l->head == w) {
    l->head = w->next;
    if (!w->next) l->tail = NULL; /* w->next's prev goes stale: fine */
  } else {
    w->prev->next = w->next;
    if (l->tail == w)
      l->tail = w->prev;
    else
      w->next->prev = w->prev;
  }
  l->n--;
}

/* Pops the head. The record of the next head is fetched into the cache
 * now: it sits in a task that parked long ago (a semaphore's waiters go
 * round 1,000 tasks), and reading it at the next pop was the largest cost
 * of a release. */
static inline weft__waiter *wl_pop(weft__wlist *l) {
  weft__waiter *w = l->head;
  if (w) {
    l->head = w->next;
    if (l->head) { /* it may straddle two lines */
      __builtin_prefetch(l->head);
      __builtin_prefetch((char *)l->head + sizeof *w - 1);
    } else {
      l->tail = NULL;
    }
    l->n--;
  }
  return w;
}

/* Wakes every waiter of l with `code`, in order. */
static inline void wl_wake_all(weft__wlist *l, int code) {
  weft__waiter *w;
  while ((w = wl_pop(l)) != NULL) weft__wake(w->task, code);
}

/* ---- parking -------------------------------------------------------- */

_Static_assert(sizeof(weft__waiter) <= sizeof(((weft__task_body *)0)->wait_node),
               "weft__task_body.wait_node too small for a waiter record");

/* The waiter record of t (in its body). */
static inline weft__waiter *task_waiter(weft_task *t) {
  return (weft__waiter *)weft__body(t)->wait_node;
}

/* The loop's unpark callback: a cancelled waiter leaves its list. */
WEFT__HIDDEN void weft__sobj_unpark(weft_task *t);

/* Parks t at the end of l until woken; returns the wake code. `item` and
 * `data` are for the waker. `interruptible` false: only a waker can end
 * the wait. kind and obj: what t waits on, for the task dump (obj: the
 * handle the program holds). Callers end with `return sobj_wait(...)`: a
 * tail call. */
static inline int sobj_wait(weft_loop *L, weft_task *t, weft__wlist *l,
                            void *item, uintptr_t data, bool interruptible,
                            const weft__wait_kind *kind, const void *obj) {
  weft__waiter *w = task_waiter(t);
  w->task = t;
  w->item = item;
  w->data = data;
  wl_push(l, w);
  return weft__park(L, t, interruptible ? weft__sobj_unpark : NULL, kind,
                    obj);
}

/* A task counted in `inside` is done with the object. */
static inline void sobj_leave(weft__sobj *o) {
  if (weft__unlikely(--o->inside == 0 && o->magic == SO_DEAD)) o->release(o);
}

/* The common part of every free: 0 and the object is dead (released now
 * or by the last task counted in `inside`), or the error code. `wake`
 * wakes its waiters with -EIDRM. From a thread running another loop:
 * WEFT_ELOOP. From a thread with no loop, the object's loop must be over
 * (nobody can tell a finished loop from one running elsewhere). */
static inline int sobj_free(weft__sobj *o, uint32_t magic, const char *fn,
                            void (*wake)(weft__sobj *o)) {
  weft_loop *L = weft__tls_loop;
  if (!o) return -EINVAL;
  if (o->magic != magic) return o->magic == SO_DEAD ? -EIDRM : -EINVAL;
  if (o->loop && L && o->loop != L) return weft__misuse(fn, WEFT_ELOOP);
  o->magic = SO_DEAD;
  weft__name_forget(o);
  wake(o);
  if (!o->inside) o->release(o);
  return 0;
}

/* ---- items ---------------------------------------------------------- */

/* memcpy of an item, with the common sizes inlined as single moves. */
static inline void item_copy(void *dst, const void *src, size_t n) {
  switch (n) {
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    default: memcpy(dst, src, n); break;
  }
}

#endif
