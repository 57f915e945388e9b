/*
 * Cancel scopes.
 *
 * Scopes form one tree per loop: a task's nested scopes hang below its
 * root scope, and the root scope of a group's child hangs below the
 * group's scope, which is itself a scope of the task that opened the
 * group. Cancelling a scope marks its subtree "effectively cancelled"
 * (SC_EFF), stopping at shielded scopes, and wakes every task parked with
 * its innermost scope in the subtree. A checkpoint then only tests one
 * flag of the current task's innermost scope: O(1), and level-triggered
 * by construction since the flag stays until the scope is left.
 *
 * Deadlines are armed lazily: opening a scope only records its deadline,
 * and the timer is put in the heap when the task next suspends (timers can
 * only fire while the task is suspended anyway). A timeout scope opened
 * and closed without suspending never touches the heap.
 */
#include <errno.h>
#include <stddef.h>

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
  s->flags = SC_OPEN | flags;
  s->task = t;
  s->child_head = NULL;
  weft__timer_init(&s->timer, weft__scope_fire);
  s->timer.when = deadline;
  weft__scope *p = t->scope;
  weft__scope_link(p, s);
  if (!(flags & SC_SHIELD) && (p->flags & SC_EFF)) s->flags |= SC_EFF;
  if (deadline != WEFT_FOREVER) {
    s->flags |= SC_UNARMED;
    t->nunarmed++;
  }
  t->scope = s;
}

void weft__scope_pop(weft_loop *L, weft_task *t, weft__scope *s) {
  if (s->flags & SC_UNARMED)
    t->nunarmed--;
  else if (weft__timer_armed(&s->timer))
    weft__timers_del(&L->timers, &s->timer);
  t->scope = s->parent;
  weft__scope_unlink(s);
  s->flags &= ~(SC_OPEN | SC_UNARMED);
}

int weft__arm_deadlines(weft_loop *L, weft_task *t) {
  for (weft__scope *s = t->scope; s && s->task == t && t->nunarmed;
       s = s->parent) {
    if (!(s->flags & SC_UNARMED)) continue;
    s->flags &= ~SC_UNARMED;
    t->nunarmed--;
    if (weft__timers_add(&L->timers, &s->timer) != 0) {
      /* No memory for the heap: fire now rather than never. */
      s->flags |= SC_FIRED;
      weft__scope_cancel(s);
    }
  }
  return 0;
}

static inline weft__scope *eligible(weft__scope *s) {
  while (s && (s->flags & (SC_SHIELD | SC_EFF))) s = s->next;
  return s;
}

/* Marks the subtree of `root` effectively cancelled (root included),
 * without recursion, and interrupts the tasks parked in it. */
static void propagate(weft__scope *root) {
  weft__scope *s = root;
  for (;;) {
    s->flags |= SC_EFF;
    if (s->task && s->task->scope == s) weft__interrupt(s->task);
    weft__scope *c = eligible(s->child_head);
    if (c) {
      s = c;
      continue;
    }
    for (;;) {
      if (s == root) return;
      weft__scope *n = eligible(s->next);
      if (n) {
        s = n;
        break;
      }
      s = s->parent;
    }
  }
}

void weft__scope_cancel(weft__scope *s) {
  if (s->flags & SC_CANCELLED) return;
  s->flags |= SC_CANCELLED;
  if (!(s->flags & SC_EFF)) propagate(s);
}

/* Recomputes SC_EFF below a scope that moved to a new parent. */
WEFT__HIDDEN void weft__scope_reparent(weft__scope *s, weft__scope *parent);
void weft__scope_reparent(weft__scope *s, weft__scope *parent) {
  weft__scope_unlink(s);
  weft__scope_link(parent, s);
  bool eff = (s->flags & SC_CANCELLED) ||
             (!(s->flags & SC_SHIELD) && (parent->flags & SC_EFF));
  if (eff) {
    if (!(s->flags & SC_EFF)) propagate(s);
    return;
  }
  /* Uncancel: clear SC_EFF down the tree where nothing else sets it. */
  weft__scope *x = s;
  for (;;) {
    x->flags &= ~SC_EFF;
    weft__scope *c = x->child_head;
    while (c && (c->flags & (SC_SHIELD | SC_CANCELLED))) c = c->next;
    if (c) {
      x = c;
      continue;
    }
    for (;;) {
      if (x == s) return;
      weft__scope *n = x->next;
      while (n && (n->flags & (SC_SHIELD | SC_CANCELLED))) n = n->next;
      if (n) {
        x = n;
        break;
      }
      x = x->parent;
    }
  }
}

void weft__scope_fire(weft__timer *tm) {
  weft__scope *s = (weft__scope *)((char *)tm - offsetof(weft__scope, timer));
  s->flags |= SC_FIRED;
  weft__scope_cancel(s);
}

/* ---- public ----------------------------------------------------------- */

static int open_scope(weft_scope *ps, int64_t deadline, unsigned flags) {
  weft_task *t = weft__cur();
  if (!ps) return -EINVAL;
  if (!t) return WEFT_ENOTASK;
  weft__scope_push(t, (weft__scope *)ps, deadline, flags);
  return 0;
}

int weft_scope_open(weft_scope *s, int64_t deadline) {
  return open_scope(s, deadline, 0);
}

int weft_scope_open_shielded(weft_scope *s, int64_t deadline) {
  return open_scope(s, deadline, SC_SHIELD);
}

int weft_scope_open_after(weft_scope *s, int64_t duration) {
  if (duration < 0) duration = 0;
  int64_t now = weft__clock();
  return open_scope(s, duration > WEFT_FOREVER - now ? WEFT_FOREVER
                                                     : now + duration, 0);
}

static int check_open(const weft__scope *s) {
  if (!s || !(s->flags & SC_OPEN) || !s->task) return -EINVAL;
  if (s->task->loop != weft__tls_loop) return WEFT_ELOOP;
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
      t->nunarmed--;
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
      t->nunarmed++;
    } else if (weft__timers_add(&L->timers, &s->timer) != 0) {
      return -ENOMEM;
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

int weft_scope_close(weft_scope *ps) {
  weft__scope *s = (weft__scope *)ps;
  weft_task *t = weft__cur();
  if (!s) return -EINVAL;
  if (!t) return WEFT_ENOTASK;
  if (t->scope != s || (s->flags & (SC_GROUP | SC_ROOT))) return -EINVAL;
  weft__scope_pop(t->loop, t, s);
  return (s->flags & SC_FIRED) ? -ETIMEDOUT : 0;
}
