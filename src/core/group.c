/*
 * Groups (TaskGroup / nursery) and their error lists.
 *
 * A group is a cancel scope of the task that opened it (the body) plus a
 * count of live children, whose root scopes hang below the group's scope.
 * A child failure is recorded and cancels that scope, so siblings and the
 * body see -ECANCELED at their next checkpoint. weft_group_close waits,
 * uninterruptibly, until the count reaches zero.
 *
 * A child spawned with weft_group_start runs under the starter's scope
 * until it calls weft_started(), so cancelling the starter cancels it and
 * its early failure goes to the starter, not the group (Trio's semantics).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/debug.h"
#include "core/internal.h"


typedef struct err_entry {
  struct err_entry *next;
  char *name;
  char *msg;
  int code;
} err_entry;

struct weft_group {
  weft__scope sc;
  weft_group *all_next;  /* every group record of the loop */
  weft_group *free_next; /* FIFO of closed records */
  weft_task *owner;
  weft_task *waiter; /* owner, parked in close */
  size_t nchildren;
  err_entry *errs, **errs_tail;
  size_t nerrs;
  bool failed; /* a child or the body failed: no more spawns */
};

struct weft_errors {
  size_t n;
  struct {
    char *name;
    char *msg;
    int code;
  } e[];
};

static void add_error(weft_group *g, const char *name, int code, char *msg) {
  g->failed = true;
  err_entry *e = malloc(sizeof *e);
  if (!e) {
    free(msg);
    return; /* the group still fails: it was cancelled below */
  }
  e->next = NULL;
  e->name = strdup(name);
  e->msg = msg;
  e->code = code;
  *g->errs_tail = e;
  g->errs_tail = &e->next;
  g->nerrs++;
}

weft_group *weft_group_open(void) {
  weft_task *t = weft__cur();
  if (!t) return weft__null_errno(weft__misuse(__func__, WEFT_ENOTASK));
  weft_loop *L = t->loop;
  weft_group *g = L->groups_free_head, *all;
  if (g) {
    L->groups_free_head = g->free_next;
    if (!L->groups_free_head) L->groups_free_tail = NULL;
    all = g->all_next;
  } else {
    if (!(g = malloc(sizeof *g))) return NULL;
    all = L->groups_all;
    L->groups_all = g;
  }
  memset(g, 0, sizeof *g);
  g->all_next = all;
  g->owner = t;
  g->errs_tail = &g->errs;
  weft__scope_push(t, &g->sc, WEFT_FOREVER, SC_GROUP);
  return g;
}

static weft_task *child_new(weft_loop *L, weft_group *g, weft_fn fn, void *arg,
                            const weft_spawn_opts *opts) {
  weft_task *t = weft__task_new(L, fn, arg, opts);
  if (!t) {
    errno = ENOMEM;
    return NULL;
  }
  t->flags |= TF_GROUP;
  t->group = g;
  g->nchildren++;
  return t;
}

static int group_describe(const weft_task *t, const void *obj, char *buf,
                          size_t n) {
  (void)t;
  const weft_group *g = obj;
  return snprintf(buf, n, "%zu %s left", g->nchildren,
                  g->nchildren == 1 ? "child" : "children");
}
const weft__wait_kind weft__wk_group = {"group close", group_describe};

/* Its object: the child that has not called weft_started yet. */
const weft__wait_kind weft__wk_started = {"group start",
                                          weft__describe_task};

#define check_group(L, g) check_group_(L, g, __func__)
static int check_group_(weft_loop *L, weft_group *g, const char *func) {
  if (!g) return -EINVAL;
  /* The owner's record may be recycled, but only within its loop. */
  if (!L || g->owner->loop != L) return weft__misuse(func, WEFT_ELOOP);
  if (!(g->sc.flags & SC_OPEN)) return -EPIPE; /* closed */
  return 0;
}

/* A group that had a failure is shutting down: it takes no new children,
 * and their functions never run (asyncio: "TaskGroup is shutting down",
 * test_taskgroup_no_create_task_after_failure). A group cancelled
 * without a failure (weft_group_cancel, an outer scope) still takes them:
 * they start cancelled. */
static int check_spawn(weft_group *g, weft_fn fn) {
  if (!fn) return -EINVAL;
  return g->failed ? -ESHUTDOWN : 0;
}

void weft__groups_free(weft_loop *L) {
  for (weft_group *g = L->groups_all, *n; g; g = n) {
    n = g->all_next;
    free(g);
  }
  L->groups_all = L->groups_free_head = L->groups_free_tail = NULL;
}

weft_task *weft_group_spawn(weft_group *g, weft_fn fn, void *arg,
                            const weft_spawn_opts *opts) {
  weft_loop *L = weft__tls_loop;
  int rc = check_group(L, g);
  if (!rc) rc = check_spawn(g, fn);
  if (rc) return weft__null_errno(rc);
  weft_task *t = child_new(L, g, fn, arg, opts);
  if (!t) return NULL;
  t->parent_scope = &g->sc; /* linked there when it first runs */
  weft__task_start(L, L->current, t, opts && opts->eager);
  return t;
}

int weft_group_start(weft_group *g, weft_fn fn, void *arg,
                     const weft_spawn_opts *opts, void **value) {
  weft_loop *L = weft__tls_loop;
  weft_task *cur = L ? L->current : NULL;
  if (!g || !fn) return -EINVAL;
  if (!cur) return weft__misuse(__func__, WEFT_ENOTASK);
  int rc = check_group(L, g);
  if (!rc) rc = check_spawn(g, fn);
  if (rc) return rc;
  if (weft__checkpoint(cur)) return -ECANCELED;
  weft_task *t = child_new(L, g, fn, arg, opts);
  if (!t) return -ENOMEM;
  t->flags |= TF_STARTING;
  /* Until it is ready the child lives under the starter's scope, so
   * t->parent_scope->task is the starter; the starter keeps `value` in its body
   * while it waits. */
  t->parent_scope = cur->scope;
  weft__task_body *b = weft__body(cur);
  b->wait_on.started = value;
  /* Never eager: the child's report must find the starter parked. */
  weft__task_start(L, cur, t, false);
  rc = weft__park(L, cur, NULL, &weft__wk_started, t);
  b->wait_on.started = NULL;
  return rc;
}

int weft_started(void *value) {
  weft_task *t = weft__cur();
  if (!t) return weft__misuse(__func__, WEFT_ENOTASK);
  if (!(t->flags & TF_STARTING)) return -EINVAL;
  t->flags &= ~TF_STARTING;
  weft_task *st = t->parent_scope->task;
  void **out = weft__body(st)->wait_on.started;
  if (out) *out = value;
  t->parent_scope = &t->group->sc;
  weft__scope_reparent(&weft__body(t)->root, t->parent_scope);
  weft__wake(st, 0);
  return 0;
}

void weft__group_child_exit(weft_loop *L, weft_task *t) {
  weft_group *g = t->group;
  if (t->flags & TF_STARTING) {
    t->flags &= ~TF_STARTING;
    weft__wake(t->parent_scope->task, t->result < 0 ? t->result : WEFT_ENOTSTARTED);
  } else if (weft__failed(t->result) && !(t->flags & TF_OWNER)) {
    /* A task an upper layer owns is that layer's to report (its task_exit
     * hook sees its end): a server's handler that got no stack fails its
     * connection, not the server's group.
     * A child that ends with -ECANCELED ended cancelled, whatever
     * cancelled it (the group, weft_cancel, or a scope of its own whose
     * -ECANCELED it passed on): as asyncio's TaskGroup ignores a task that
     * ends in CancelledError, it is not a failure. */
    add_error(g, weft_task_name(t), t->result, weft__task_take_msg(t));
    weft__scope_cancel(&g->sc);
  }
  t->group = NULL;
  if (--g->nchildren == 0 && g->waiter) {
    weft_task *w = g->waiter;
    g->waiter = NULL;
    weft__wake(w, 0);
  }
  (void)L;
}

int weft_group_fail(weft_group *g, int code, const char *fmt, ...) {
  weft_loop *L = weft__tls_loop;
  if (code >= 0) return -EINVAL;
  int rc = check_group(L, g);
  if (rc) return rc;
  char *msg = NULL;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    msg = weft__vformat(fmt, ap);
    va_end(ap);
  }
  weft_task *cur = L->current ? L->current : g->owner;
  add_error(g, weft_task_name(cur), code, msg);
  weft__scope_cancel(&g->sc);
  return 0;
}

int weft_group_cancel(weft_group *g) {
  weft_loop *L = weft__tls_loop;
  int rc = check_group(L, g);
  if (rc) return rc;
  weft__scope_cancel(&g->sc);
  return 0;
}

static weft_errors *take_errors(weft_group *g) {
  weft_errors *e = malloc(sizeof *e + g->nerrs * sizeof e->e[0]);
  size_t i = 0;
  for (err_entry *x = g->errs, *n; x; x = n) {
    n = x->next;
    if (e) {
      e->e[i].name = x->name;
      e->e[i].msg = x->msg;
      e->e[i].code = x->code;
      i++;
    } else {
      free(x->name);
      free(x->msg);
    }
    free(x);
  }
  if (e) e->n = i;
  g->errs = NULL;
  return e;
}

int weft_group_close(weft_group *g, weft_errors **errs) {
  weft_loop *L = weft__tls_loop;
  weft_task *cur = L ? L->current : NULL;
  if (errs) *errs = NULL;
  if (!g) return -EINVAL;
  if (g->owner->loop != L) return weft__misuse(__func__, WEFT_ELOOP);
  if (!cur) return weft__misuse(__func__, WEFT_ENOTASK);
  /* Closed already, another task's, or not the innermost scope. */
  if (!(g->sc.flags & SC_OPEN) || g->owner != cur || cur->scope != &g->sc) {
    if (weft__unlikely(L->debug))
      weft__debug_bad_close(cur, &g->sc, __func__,
                            __builtin_return_address(0));
    return -EINVAL;
  }
  while (g->nchildren) {
    g->waiter = cur;
    weft__park(L, cur, NULL, &weft__wk_group, g);
  }
  bool outer = g->sc.parent && (g->sc.parent->flags & SC_EFFECTIVE);
  int rc = g->failed ? WEFT_EGROUP : outer ? -ECANCELED : 0;
  weft__scope_pop(L, cur, &g->sc);
  if (rc == -ECANCELED) weft__checkpoint(cur); /* a delivery */
  weft_errors *e = take_errors(g);
  if (errs && e && e->n)
    *errs = e;
  else
    weft_errors_free(e);
  g->free_next = NULL;
  if (L->groups_free_tail)
    L->groups_free_tail->free_next = g;
  else
    L->groups_free_head = g;
  L->groups_free_tail = g;
  return rc;
}

size_t weft_errors_count(const weft_errors *e) { return e ? e->n : 0; }

int weft_errors_get(const weft_errors *e, size_t i, const char **name,
                    int *code, const char **message) {
  if (!e) return -EINVAL;
  if (i >= e->n) return -ERANGE;
  if (name) *name = e->e[i].name ? e->e[i].name : "?";
  if (code) *code = e->e[i].code;
  if (message) *message = e->e[i].msg;
  return 0;
}

size_t weft_errors_match(const weft_errors *e, int code) {
  size_t n = 0;
  if (e)
    for (size_t i = 0; i < e->n; i++) n += e->e[i].code == code;
  return n;
}

int weft_errors_print(const weft_errors *e, int fd) {
  if (!e) return 0;
  for (size_t i = 0; i < e->n; i++) {
    const char *name = e->e[i].name ? e->e[i].name : "?";
    int r = e->e[i].msg
                ? weft__fdprintf(fd, "%s: %s (%d): %s\n", name,
                                 weft_strerror(e->e[i].code), e->e[i].code,
                                 e->e[i].msg)
                : weft__fdprintf(fd, "%s: %s (%d)\n", name,
                                 weft_strerror(e->e[i].code), e->e[i].code);
    if (r) return r;
  }
  return 0;
}

void weft_errors_free(weft_errors *e) {
  if (!e) return;
  for (size_t i = 0; i < e->n; i++) {
    free(e->e[i].name);
    free(e->e[i].msg);
  }
  free(e);
}
