/*
 * wait and as_completed: watching tasks the caller holds.
 *
 * A watcher links a node of its own to each pending task with
 * weft__watch_add rather than weft_task_on_done, because a watch must be
 * able to stop: weft_wait returns on the first completion and an
 * as_completed loop may end early, while those tasks run on. A node is
 * linked exactly while its task has not finished (a finishing task
 * unlinks it before calling it), so the watcher unlinks what is still
 * linked when it stops, and those records, not finished, are alive.
 */
#include <errno.h>
#include <stdlib.h>

#include "core/internal.h"

typedef struct watch_node {
  weft__watch w; /* first: the callback's weft__watch * is the node */
  void *owner;
} watch_node;

/* Links node to t on behalf of owner. 0 or -ENOMEM. */
static int node_link(watch_node *node, weft_task *t,
                     void (*fn)(weft__watch *, weft_task *), void *owner) {
  node->owner = owner;
  node->w.fn = fn;
  return weft__watch_add(t, &node->w);
}

/* Unlinks every node still linked (weft__watch_del ignores the others). */
static void nodes_unlink(watch_node *nodes, size_t n) {
  for (size_t i = 0; i < n; i++) weft__watch_del(&nodes[i].w);
}

/* ---- weft_wait --------------------------------------------------------- */

#define WAIT_STACK_NODES 16

typedef struct waiter {
  weft_task *task; /* the caller */
  size_t n, ndone, nfail;
  int mode;
  bool woken; /* woken or interrupted: no second wake */
} waiter;

static int wait_describe(const weft_task *t, const void *obj, char *buf,
                         size_t n) {
  (void)t;
  const waiter *w = obj;
  return snprintf(buf, n, "%zu of %zu tasks done", w->ndone, w->n);
}
static const weft__wait_kind wait_kind = {"wait", wait_describe};

static bool satisfied(const waiter *w) {
  switch (w->mode) {
    case WEFT_FIRST_COMPLETED: return w->ndone > 0;
    case WEFT_FIRST_EXCEPTION: return w->nfail > 0 || w->ndone == w->n;
    default: return w->ndone == w->n;
  }
}

static void wait_done(weft__watch *node, weft_task *t) {
  waiter *w = ((watch_node *)node)->owner;
  w->ndone++;
  if (weft__failed(t->result)) w->nfail++;
  if (!w->woken && satisfied(w)) {
    w->woken = true;
    weft__wake(w->task, 0);
  }
}

static void wait_unpark(weft_task *t) {
  ((waiter *)weft__body(t)->wait_on.layer)->woken = true;
}

/* Parks until the callbacks say the condition holds or the deadline (or
 * an outer cancellation) interrupts. 0, -ECANCELED (outer), -ENOMEM. */
static int wait_park(weft_loop *L, weft_task *cur, waiter *w,
                     weft_task *const *tasks, int64_t deadline) {
  watch_node stack_nodes[WAIT_STACK_NODES];
  watch_node *nodes = stack_nodes;
  if (w->n > WAIT_STACK_NODES) {
    if (w->n > SIZE_MAX / sizeof *nodes ||
        !(nodes = malloc(w->n * sizeof *nodes)))
      return -ENOMEM;
  }
  int rc = 0;
  for (size_t i = 0; i < w->n; i++) {
    nodes[i].w.pprev = NULL;
    if (!rc && tasks[i]->state != WEFT__T_DONE)
      rc = node_link(&nodes[i], tasks[i], wait_done, w);
  }
  if (rc) goto out;
  weft__body(cur)->wait_on.layer = w;
  weft__park_until(L, cur, wait_unpark, &wait_kind, w, deadline, NULL);
  weft__body(cur)->wait_on.layer = NULL;
  /* Our own deadline is a normal return; an outer cancellation is not. */
  rc = weft__checkpoint(cur);
out:
  nodes_unlink(nodes, w->n);
  if (nodes != stack_nodes) free(nodes);
  return rc;
}

static int wait_until(weft_task *const *tasks, size_t n, int mode, bool *done,
                      int64_t deadline, const char *func) {
  weft_loop *L = weft__tls_loop;
  weft_task *cur = L ? L->current : NULL;
  if (weft__unlikely(!cur)) return weft__misuse(func, WEFT_ENOTASK);
  if (!tasks || !n) return -EINVAL;
  if (mode < WEFT_FIRST_COMPLETED || mode > WEFT_ALL_COMPLETED) return -EINVAL;
  waiter w = {.task = cur, .n = n, .mode = mode};
  for (size_t i = 0; i < n; i++) {
    int rc = weft__task_check_joinable(L, cur, tasks[i], func);
    if (rc) return rc;
    if (tasks[i]->state == WEFT__T_DONE) {
      w.ndone++;
      w.nfail += weft__failed(tasks[i]->result);
    }
  }
  if (weft__checkpoint(cur)) return -ECANCELED;
  if (!satisfied(&w) && (deadline == WEFT_FOREVER || weft_now() < deadline)) {
    int rc = wait_park(L, cur, &w, tasks, deadline);
    if (rc) return rc;
  }
  int count = 0;
  for (size_t i = 0; i < n; i++) {
    bool d = tasks[i]->state == WEFT__T_DONE;
    if (done) done[i] = d;
    count += d;
  }
  return count;
}

int weft_wait(weft_task *const *tasks, size_t n, int mode, bool *done) {
  return wait_until(tasks, n, mode, done, WEFT_FOREVER, __func__);
}

int weft_wait_until(weft_task *const *tasks, size_t n, int mode, bool *done,
                    int64_t deadline) {
  return wait_until(tasks, n, mode, done, deadline, __func__);
}

/* ---- as_completed ------------------------------------------------------- */

/* What the callbacks touch lives in one allocation, not in the iterator
 * on the caller's stack: an iterator abandoned without close then costs
 * a leak, not a write into a dead stack frame. */
typedef struct ac_core {
  weft_loop *loop;
  weft_task *waiter; /* parked in next(), or NULL */
  size_t n, head, tail, returned;
  weft_task **ready; /* finished, in completion order: [head, tail) */
  watch_node nodes[];
} ac_core;

typedef struct ac_iter {
  ac_core *core;
  int64_t deadline;
  uint64_t magic;
} ac_iter;

#define AC_MAGIC 0x7765667461637465ull /* an initialised iterator */

_Static_assert(sizeof(ac_iter) <= sizeof(weft_as_completed),
               "weft_as_completed too small");

static int ac_describe(const weft_task *t, const void *obj, char *buf,
                       size_t n) {
  (void)t;
  const ac_core *c = ((const ac_iter *)obj)->core;
  return snprintf(buf, n, "%zu of %zu tasks done", c->tail, c->n);
}
static const weft__wait_kind ac_kind = {"as_completed", ac_describe};

static void ac_done(weft__watch *node, weft_task *t) {
  ac_core *c = ((watch_node *)node)->owner;
  c->ready[c->tail++] = t;
  if (c->waiter) {
    weft_task *w = c->waiter;
    c->waiter = NULL;
    weft__wake(w, 0);
  }
}

static void ac_unpark(weft_task *t) {
  ((ac_core *)weft__body(t)->wait_on.layer)->waiter = NULL;
}

static void ac_free(ac_iter *it) {
  ac_core *c = it->core;
  if (!c) return;
  nodes_unlink(c->nodes, c->n);
  free(c);
  it->core = NULL;
}

/* The core watching tasks[0..n), or NULL (-ENOMEM). */
static ac_core *ac_new(weft_loop *L, weft_task *const *tasks, size_t n) {
  size_t hdr = sizeof(ac_core);
  if (n > (SIZE_MAX - hdr) / (sizeof(watch_node) + sizeof(weft_task *)))
    return NULL;
  ac_core *c = malloc(hdr + n * (sizeof(watch_node) + sizeof(weft_task *)));
  if (!c) return NULL;
  c->loop = L;
  c->waiter = NULL;
  c->n = n;
  c->head = c->tail = c->returned = 0;
  c->ready = (weft_task **)&c->nodes[n];
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    c->nodes[i].w.pprev = NULL;
    if (rc) continue;
    if (tasks[i]->state == WEFT__T_DONE)
      c->ready[c->tail++] = tasks[i];
    else
      rc = node_link(&c->nodes[i], tasks[i], ac_done, c);
  }
  if (rc) {
    nodes_unlink(c->nodes, n);
    free(c);
    return NULL;
  }
  return c;
}

static int ac_init(weft_as_completed *pit, weft_task *const *tasks, size_t n,
                   int64_t deadline, const char *func) {
  ac_iter *it = (ac_iter *)pit;
  weft_loop *L = weft__tls_loop;
  weft_task *cur = L ? L->current : NULL;
  if (!it) return -EINVAL;
  it->core = NULL;
  it->magic = 0;
  if (weft__unlikely(!cur)) return weft__misuse(func, WEFT_ENOTASK);
  if (n && !tasks) return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    int rc = weft__task_check_joinable(L, cur, tasks[i], func);
    if (rc) return rc;
  }
  /* n == 0: no core, and next() says WEFT_EEND at once. */
  if (n && !(it->core = ac_new(L, tasks, n))) return -ENOMEM;
  it->deadline = deadline;
  it->magic = AC_MAGIC;
  return 0;
}

int weft_as_completed_init(weft_as_completed *it, weft_task *const *tasks,
                           size_t n) {
  return ac_init(it, tasks, n, WEFT_FOREVER, __func__);
}

int weft_as_completed_init_until(weft_as_completed *it,
                                 weft_task *const *tasks, size_t n,
                                 int64_t deadline) {
  return ac_init(it, tasks, n, deadline, __func__);
}

/* Hands out the oldest finished task not yet returned. */
static int ac_pop(ac_iter *it, weft_task **task) {
  ac_core *c = it->core;
  *task = c->ready[c->head++];
  if (++c->returned == c->n) ac_free(it); /* every node is unlinked */
  return 0;
}

int weft_as_completed_next(weft_as_completed *pit, weft_task **task) {
  ac_iter *it = (ac_iter *)pit;
  weft_loop *L = weft__tls_loop;
  weft_task *cur = L ? L->current : NULL;
  if (!it || !task || it->magic != AC_MAGIC) return -EINVAL;
  *task = NULL;
  if (weft__unlikely(!cur)) return weft__misuse(__func__, WEFT_ENOTASK);
  ac_core *c = it->core;
  if (!c) return WEFT_EEND;
  if (c->loop != L) return weft__misuse(__func__, WEFT_ELOOP);
  if (c->waiter) return -EBUSY; /* another task is waiting in next() */
  if (weft__checkpoint(cur)) return -ECANCELED;
  if (c->head < c->tail) return ac_pop(it, task);
  if (it->deadline != WEFT_FOREVER && weft_now() >= it->deadline)
    return -ETIMEDOUT;
  c->waiter = cur;
  weft__body(cur)->wait_on.layer = c;
  int rc = weft__park_until(L, cur, ac_unpark, &ac_kind, it, it->deadline,
                            NULL);
  weft__body(cur)->wait_on.layer = NULL;
  if (rc == 0) return ac_pop(it, task); /* woken by a completion: ours */
  if (weft__checkpoint(cur)) return -ECANCELED; /* nothing lost: queued */
  /* The deadline: a task may have finished after it fired, before we ran. */
  return c->head < c->tail ? ac_pop(it, task) : -ETIMEDOUT;
}

void weft_as_completed_close(weft_as_completed *pit) {
  ac_iter *it = (ac_iter *)pit;
  if (!it || it->magic != AC_MAGIC) return;
  ac_free(it);
  it->magic = 0;
}
