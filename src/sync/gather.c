/*
 * gather and race: functions run as children of a group that the call
 * opens and closes, so they cannot outlive it and a cancelled caller
 * cancels them (the group's scope is inside the caller's).
 *
 * Each child runs a small wrapper that calls the user's function, stores
 * its code, and decides the outcome: the first failure (gather) or the
 * first success (race) cancels the group with weft_group_cancel, which is
 * not an error, so the wrappers return 0 (or -ECANCELED when they were
 * cancelled: a cancellation is passed on, never swallowed) and the group
 * never builds an error list. The wrapper's argument is a slot {state, index};
 * slots live on the caller's stack up to STACK_SLOTS children and in one
 * allocation per call beyond, never one per child.
 */
#include <errno.h>
#include <stdlib.h>

#include "core/internal.h"

/* 128 slots: 2 KiB of the caller's stack. */
#define STACK_SLOTS 128

typedef struct combo {
  const weft_call *calls;
  int *results;
  weft_group *grp;
  size_t n;
  size_t winner; /* race: index of the first success; n while none */
  int fail;      /* first failure, 0 while none; gather: or -ECANCELED
                    for a child cancelled from outside, if that came first */
  bool all;      /* gather: WEFT_GATHER_ALL */
  bool cancelling; /* gather: a failure cancelled the group */
} combo;

typedef struct slot {
  combo *c;
  size_t i;
} slot;

/* Runs call i unless the child was cancelled before it started: as in
 * asyncio, a task cancelled before its first step never runs. */
static inline int run_call(weft_task *t, const slot *s) {
  const weft_call *k = &s->c->calls[s->i];
  int rc = weft__cancelled(t) ? -ECANCELED : k->fn(k->arg);
  if (s->c->results) s->c->results[s->i] = rc;
  return rc;
}

/* True if t's cancellation came from outside the call: not from the
 * group (a failure, or the caller's cancellation reaching it) but from
 * weft_cancel on the child or a scope of its own. */
static inline bool cancelled_outside(const weft_task *t, int rc) {
  return rc == -ECANCELED && !(t->parent_scope->flags & SC_EFFECTIVE);
}

static int gather_child(void *arg) {
  slot *s = arg;
  combo *c = s->c;
  weft_task *t = weft__cur();
  int rc = run_call(t, s);
  if (c->all) return weft__cancelled(t) ? -ECANCELED : 0;
  if (cancelled_outside(t, rc)) {
    /* A missing result, so not a success (asyncio: test_one_cancellation
     * raises CancelledError); as there, it cancels no sibling. */
    if (!c->fail) c->fail = -ECANCELED;
  } else if (!c->cancelling && weft__failed(rc)) {
    if (!c->fail) c->fail = rc;
    c->cancelling = true;
    weft_group_cancel(c->grp);
  }
  return weft__cancelled(t) ? -ECANCELED : 0;
}

static int race_child(void *arg) {
  slot *s = arg;
  combo *c = s->c;
  weft_task *t = weft__cur();
  int rc = run_call(t, s);
  if (rc >= 0) {
    if (c->winner == c->n) {
      c->winner = s->i;
      weft_group_cancel(c->grp);
    }
  } else if (!c->fail && weft__failed(rc)) {
    c->fail = rc;
  }
  return weft__cancelled(t) ? -ECANCELED : 0;
}

/* Spawns every call into a group wrapped by `child` and waits for all.
 * 0, -ECANCELED (the caller was cancelled), -ENOMEM. */
static int run_all(combo *c, weft_fn child) {
  slot stack_slots[STACK_SLOTS];
  slot *slots = stack_slots;
  size_t n = c->n;
  if (n > STACK_SLOTS) {
    if (n > SIZE_MAX / sizeof *slots || !(slots = malloc(n * sizeof *slots)))
      return -ENOMEM;
  }
  int rc = 0;
  c->grp = weft_group_open();
  if (!c->grp) {
    rc = -ENOMEM;
    goto out;
  }
  size_t i = 0;
  for (; i < n; i++) {
    slots[i].c = c;
    slots[i].i = i;
    /* Overwritten when the wrapper runs; it never does for a child that
     * gets no stack (the core ends it with -ENOMEM). */
    if (c->results) c->results[i] = -ENOMEM;
    if (!weft_group_spawn(c->grp, child, &slots[i], NULL)) break;
  }
  if (i < n) { /* out of memory: what did not start counts as cancelled */
    rc = -ENOMEM;
    if (c->results)
      for (size_t k = i; k < n; k++) c->results[k] = k == i ? -ENOMEM : -ECANCELED;
    weft_group_cancel(c->grp);
  }
  int crc = weft_group_close(c->grp, NULL);
  /* The wrappers never fail: a group failure is a child that got no
   * stack, and it cancelled the others. */
  if (crc == WEFT_EGROUP) crc = -ENOMEM;
  if (!rc) rc = crc;
out:
  if (slots != stack_slots) free(slots);
  return rc;
}

/* Common checks: 0, or the code to return. */
static int check(const char *func, const weft_call *calls, size_t n,
                 int *results) {
  weft_task *t = weft__cur();
  if (weft__unlikely(!t)) return weft__misuse(func, WEFT_ENOTASK);
  if (n && !calls) return -EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!calls[i].fn) return -EINVAL;
  if (weft__checkpoint(t)) {
    if (results)
      for (size_t i = 0; i < n; i++) results[i] = -ECANCELED;
    return -ECANCELED;
  }
  return 0;
}

int weft_gather(const weft_call *calls, size_t n, int *results,
                unsigned flags) {
  if (flags & ~WEFT_GATHER_ALL) return -EINVAL;
  int rc = check(__func__, calls, n, results);
  if (rc || !n) return rc;
  combo c = {.calls = calls, .results = results, .n = n, .winner = n,
             .all = flags & WEFT_GATHER_ALL};
  rc = run_all(&c, gather_child);
  if (c.fail && rc != -ENOMEM) return c.fail;
  return rc;
}

int weft_race(const weft_call *calls, size_t n, int *results, size_t *winner) {
  if (winner) *winner = n;
  int rc = check(__func__, calls, n, results);
  if (rc) return rc;
  if (!n) return -EINVAL;
  combo c = {.calls = calls, .results = results, .n = n, .winner = n};
  int results_local[STACK_SLOTS];
  /* The winner's code is needed even when the caller passes no array. */
  if (!results && n <= STACK_SLOTS) c.results = results_local;
  int *heap = NULL;
  if (!c.results) {
    if (n > SIZE_MAX / sizeof(int) || !(heap = malloc(n * sizeof(int))))
      return -ENOMEM;
    c.results = heap;
  }
  rc = run_all(&c, race_child);
  if (c.winner < n) {
    if (winner) *winner = c.winner;
    rc = c.results[c.winner];
  } else if (rc != -ECANCELED && rc != -ENOMEM) {
    rc = c.fail ? c.fail : -ECANCELED;
  }
  free(heap);
  return rc;
}
