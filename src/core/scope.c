/*
 * Cancel scopes.
 *
 * Scopes form one tree per loop: a task's nested scopes form a chain from
 * its root scope inwards (parent/inner: one store each way to open and
 * close), and the root scope of a group's child hangs in the child list
 * of the group's scope, which is itself a scope in the chain of the task
 * that opened the group. Cancelling a scope marks its subtree
 * "effectively cancelled" (SC_EFFECTIVE), stopping at shielded scopes, and wakes
 * every task parked with its innermost scope in the subtree. A checkpoint
 * then only tests one flag of the current task's innermost scope: O(1),
 * and level-triggered by construction since the flag stays until the
 * scope is left.
 *
 * Deadlines are armed lazily: opening a scope only records its deadline,
 * and the timer is put in the heap when the task next suspends (timers can
 * only fire while the task is suspended anyway). A timeout scope opened
 * and closed without suspending never touches the heap.
 */
#include <errno.h>
#include <stddef.h>

#include "core/debug.h"
#include "core/internal.h"

void weft__scope_link(weft__scope *parent, weft__scope *c) {
  c->parent = parent;
  c->prev = NULL;
  c->next = parent->child_head;
  if (c->next) c->next->prev = c;
  parent->child_head = c;
}

void weft__scope_unlink(weft__scope *s) {
  weft__scope *p = s->parent;
  if (!p) return;
  if (s->prev)
    s->prev->next = s->next;
  else
    p->child_head = s->next;
  if (s->next) s->next->prev = s->prev;
  s->parent = s->prev = s->next = NULL;
}

void weft__scope_push(weft_task *t, weft__scope *s, int64_t deadline,
                      unsigned flags) {
  weft__scope *p = t->scope;
  /* prev/next only matter in a child list (root scopes), and the timer's
   * fire function is set when it is armed: the timeout path stays short. */
  s->parent = p;
  s->inner = NULL;
  s->child_head = NULL;
  s->task = t;
  s->timer.id = WEFT__TIMER_IDLE;
  s->timer.when = deadline;
  p->inner = s;
  flags |= SC_OPEN;
  if (!(flags & SC_SHIELD) && (p->flags & SC_EFFECTIVE)) flags |= SC_EFFECTIVE;
  s->flags = flags;
  if (deadline != WEFT_FOREVER) {
    s->flags |= SC_UNARMED;
    t->n_unarmed++;
  }
  t->scope = s;
}

void weft__scope_pop(weft_loop *L, weft_task *t, weft__scope *s) {
  if (s->flags & SC_UNARMED)
    t->n_unarmed--;
  else if (weft__timer_armed(&s->timer))
    weft__timers_del(&L->timers, &s->timer);
  weft__scope *p = s->parent;
  p->inner = NULL;
  t->scope = p;
  s->parent = NULL;
  s->flags &= ~(SC_OPEN | SC_UNARMED);
  if (s->flags & SC_DELIVERED) {
    if ((s->flags & SC_CANCELLED) &&
        ((s->flags & SC_SHIELD) || !(p->flags & SC_EFFECTIVE)))
      s->flags |= SC_CAUGHT;
    else
      p->flags |= SC_DELIVERED;
  }
}

int weft__park_until(weft_loop *L, weft_task *t, void (*unpark)(weft_task *),
                     const weft__wait_kind *kind, const void *obj,
                     int64_t deadline, bool *expired) {
  weft_scope s;
  weft__scope *sc = (weft__scope *)&s;
  weft__scope_push(t, sc, deadline, 0);
  int rc = weft__park(L, t, unpark, kind, obj);
  weft__scope_pop(L, t, sc);
  if (expired)
    *expired = (sc->flags & (SC_FIRED | SC_CAUGHT)) == (SC_FIRED | SC_CAUGHT);
  return rc;
}

void weft__arm_deadlines(weft_loop *L, weft_task *t) {
  for (weft__scope *s = t->scope; s && s->task == t && t->n_unarmed;
       s = s->parent) {
    if (!(s->flags & SC_UNARMED)) continue;
    s->flags &= ~SC_UNARMED;
    t->n_unarmed--;
    s->timer.fire = weft__scope_fire;
    if (weft__timers_add(&L->timers, &s->timer) != 0) {
      /* No memory for the heap: fire now rather than never. */
      s->flags |= SC_FIRED;
      weft__scope_cancel(s);
    }
  }
}

/* The children of a scope, in walk order: its inner scope, then the root
 * scopes in its child list. Those with a flag of `skip` are left out
 * (with their subtrees). */
static inline weft__scope *skip_flagged(weft__scope *c, unsigned skip) {
  while (c && (c->flags & skip)) c = c->next;
  return c;
}
static inline weft__scope *first_child(weft__scope *s, unsigned skip) {
  if (s->inner && !(s->inner->flags & skip)) return s->inner;
  return skip_flagged(s->child_head, skip);
}
static inline weft__scope *next_sibling(weft__scope *x, unsigned skip) {
  weft__scope *p = x->parent;
  return p->inner == x ? skip_flagged(p->child_head, skip) : skip_flagged(x->next, skip);
}

/* Visits the subtree of `root` (root included) depth-first, without
 * recursion: a chain of groups may be as deep as the program likes. */
static void walk(weft__scope *root, unsigned skip, void (*visit)(weft__scope *)) {
  weft__scope *s = root;
  for (;;) {
    visit(s);
    weft__scope *c = first_child(s, skip);
    if (c) {
      s = c;
      continue;
    }
    for (;;) {
      if (s == root) return;
      weft__scope *n = next_sibling(s, skip);
      if (n) {
        s = n;
        break;
      }
      s = s->parent;
    }
  }
}

/* Marks a scope effectively cancelled and interrupts the task parked in
 * it, if it is that task's innermost scope. */
static void mark_cancelled(weft__scope *s) {
  s->flags |= SC_EFFECTIVE;
  if (s->task && s->task->scope == s) weft__interrupt(s->task);
}

static void mark_uncancelled(weft__scope *s) { s->flags &= ~SC_EFFECTIVE; }

static void propagate(weft__scope *root) {
  walk(root, SC_SHIELD | SC_EFFECTIVE, mark_cancelled);
}

void weft__scope_cancel(weft__scope *s) {
  if (s->flags & SC_CANCELLED) return;
  s->flags |= SC_CANCELLED;
  if (!(s->flags & SC_EFFECTIVE)) propagate(s);
}

/* Recomputes SC_EFFECTIVE below a scope that moved to a new parent. */
void weft__scope_reparent(weft__scope *s, weft__scope *parent) {
  weft__scope_unlink(s);
  weft__scope_link(parent, s);
  bool eff = (s->flags & SC_CANCELLED) ||
             (!(s->flags & SC_SHIELD) && (parent->flags & SC_EFFECTIVE));
  if (eff) {
    if (!(s->flags & SC_EFFECTIVE)) propagate(s);
    return;
  }
  /* Uncancel: clear SC_EFFECTIVE down the tree where nothing else sets it. */
  walk(s, SC_SHIELD | SC_CANCELLED, mark_uncancelled);
}

void weft__scope_fire(weft__timer *tm) {
  weft__scope *s = weft__container_of(tm, weft__scope, timer);
  s->flags |= SC_FIRED;
  weft__scope_cancel(s);
}

/* ---- public ----------------------------------------------------------- */

static int open_scope(weft_scope *ps, int64_t deadline, unsigned flags,
                      const char *func) {
  weft_task *t = weft__cur();
  if (!ps) return -EINVAL;
  if (!t) return weft__misuse(func, WEFT_ENOTASK);
  weft__scope_push(t, (weft__scope *)ps, deadline, flags);
  return 0;
}

int weft_scope_open(weft_scope *s, int64_t deadline) {
  return open_scope(s, deadline, 0, __func__);
}

int weft_scope_open_shielded(weft_scope *s, int64_t deadline) {
  return open_scope(s, deadline, SC_SHIELD, __func__);
}

int weft_scope_open_after(weft_scope *s, int64_t duration) {
  weft_loop *L = weft__tls_loop;
  weft_task *t;
  if (weft__unlikely(!s)) return -EINVAL;
  if (weft__unlikely(!L || !(t = L->current)))
    return weft__misuse(__func__, WEFT_ENOTASK);
  weft__scope_push(t, (weft__scope *)s, weft__deadline_after(L, duration), 0);
  return 0;
}

#define check_open(s) check_open_(s, __func__)
static int check_open_(const weft__scope *s, const char *func) {
  if (!s || !(s->flags & SC_OPEN) || !s->task) return -EINVAL;
  if (s->task->loop != weft__tls_loop) return weft__misuse(func, WEFT_ELOOP);
  return 0;
}

int weft_scope_cancel(weft_scope *ps) {
  weft__scope *s = (weft__scope *)ps;
  int rc = check_open(s);
  if (rc) return rc;
  weft__scope_cancel(s);
  return 0;
}

int weft_scope_reschedule(weft_scope *ps, int64_t deadline) {
  weft__scope *s = (weft__scope *)ps;
  int rc = check_open(s);
  if (rc) return rc;
  if (s->flags & SC_GROUP) return -EINVAL;
  if (s->flags & SC_FIRED) return -EALREADY;
  weft_task *t = s->task;
  weft_loop *L = t->loop;
  if (s->flags & SC_UNARMED) {
    if (deadline == WEFT_FOREVER) {
      s->flags &= ~SC_UNARMED;
      t->n_unarmed--;
    }
    s->timer.when = deadline;
  } else if (weft__timer_armed(&s->timer)) {
    if (deadline == WEFT_FOREVER) {
      weft__timers_del(&L->timers, &s->timer);
      s->timer.when = deadline;
    } else {
      weft__timers_move(&L->timers, &s->timer, deadline);
    }
  } else if (deadline != WEFT_FOREVER) {
    s->timer.when = deadline;
    if (L->current == t) { /* armed when t next suspends */
      s->flags |= SC_UNARMED;
      t->n_unarmed++;
    } else {
      s->timer.fire = weft__scope_fire;
      if (weft__timers_add(&L->timers, &s->timer) != 0) return -ENOMEM;
    }
  }
  return 0;
}

int64_t weft_scope_deadline(const weft_scope *ps) {
  const weft__scope *s = (const weft__scope *)ps;
  return s ? s->timer.when : WEFT_FOREVER;
}

bool weft_scope_cancelled(const weft_scope *ps) {
  const weft__scope *s = (const weft__scope *)ps;
  return s && (s->flags & SC_CANCELLED);
}

bool weft_scope_expired(const weft_scope *ps) {
  const weft__scope *s = (const weft__scope *)ps;
  if (!s) return false;
  if (s->flags & SC_FIRED) return true;
  /* The timer fires at a loop turn; the deadline may have passed before. */
  return s->timer.when != WEFT_FOREVER && weft_now() >= s->timer.when;
}

int weft_scope_close(weft_scope *ps) {
  weft__scope *s = (weft__scope *)ps;
  weft_task *t = weft__cur();
  if (!s) return -EINVAL;
  if (!t) return weft__misuse(__func__, WEFT_ENOTASK);
  if (t->scope != s || (s->flags & (SC_GROUP | SC_ROOT))) {
    if (weft__unlikely(t->loop->debug))
      weft__debug_bad_close(t, s, __func__, __builtin_return_address(0));
    return -EINVAL;
  }
  weft__scope_pop(t->loop, t, s);
  /* A timeout only if the deadline cut something short here (Trio's
   * cancelled_caught; asyncio raises TimeoutError only for a body that
   * ended in CancelledError), and no outer cancellation is in effect
   * (that one reports: test_nested_timeouts). */
  return (s->flags & (SC_FIRED | SC_CAUGHT)) == (SC_FIRED | SC_CAUGHT)
             ? -ETIMEDOUT
             : 0;
}
