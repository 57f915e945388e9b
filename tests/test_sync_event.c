/*
 * test_sync_event.c -- weft_event: set/clear/is_set, waking every waiter,
 * set-then-clear, cancellation, deadlines, use before the loop, free with
 * waiters.
 */
#include "helpers.h"

typedef struct {
  weft_event *e;
  int rc[8];
  int woke;
  tlog log;
} estate;

typedef struct {
  estate *s;
  int id;
} earg;

static int waiter(void *arg) {
  earg *a = arg;
  a->s->rc[a->id] = weft_event_wait(a->s->e);
  log_add(&a->s->log, a->id);
  a->s->woke++;
  return 0;
}

static int basic_main(void *arg) {
  estate *s = arg;
  s->rc[0] = weft_event_wait(s->e); /* set before the loop: at once */
  s->rc[1] = weft_event_clear(s->e);
  s->rc[2] = weft_event_is_set(s->e);
  earg a[3] = {{s, 3}, {s, 4}, {s, 5}};
  weft_task *t[3];
  for (int i = 0; i < 3; i++) t[i] = weft_spawn(waiter, &a[i], NULL);
  weft_yield();
  weft_yield();
  s->rc[6] = s->woke; /* nobody woke yet */
  weft_event_set(s->e);
  weft_event_clear(s->e); /* they were woken by the set: still 0 */
  for (int i = 0; i < 3; i++) weft_join(t[i]);
  s->rc[7] = weft_event_is_set(s->e);
  return 0;
}

/* set before the loop (from a thread with no loop, on an unbound event),
 * wait returning at once, clear, three waiters woken by one set even
 * though the flag is cleared before they run, in the order they came. */
Test(sync_event, set_clear_wait, .timeout = 10) {
  estate s = {.e = weft_event_new()};
  cr_assert_not_null(s.e);
  cr_assert_not(weft_event_is_set(s.e));
  cr_assert_eq(weft_event_set(s.e), 0);
  cr_assert(weft_event_is_set(s.e));
  cr_assert_eq(weft_event_set(s.e), 0); /* twice is fine */
  cr_assert_eq(weft_run(basic_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[1], 0);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.rc[3], 0);
  cr_assert_eq(s.rc[4], 0);
  cr_assert_eq(s.rc[5], 0);
  cr_assert_eq(s.rc[6], 0);
  cr_assert_eq(s.rc[7], 0);
  int want[] = {3, 4, 5};
  log_expect(&s.log, want, 3);
  cr_assert_eq(weft_event_free(s.e), 0);
}

static int cancel_main(void *arg) {
  estate *s = arg;
  earg a[2] = {{s, 1}, {s, 2}};
  weft_task *t1 = weft_spawn(waiter, &a[0], NULL);
  weft_task *t2 = weft_spawn(waiter, &a[1], NULL);
  weft_yield();
  weft_cancel(t1);
  weft_yield();
  s->rc[3] = s->woke; /* t1 only */
  weft_event_set(s->e);
  weft_join(t1);
  weft_join(t2);
  /* A deadline around a wait that is never satisfied. */
  weft_event_clear(s->e);
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(10));
  s->rc[4] = weft_event_wait(s->e);
  s->rc[5] = weft_scope_close(&sc);
  /* In a cancelled scope, wait fails even when the flag is set. */
  weft_event_set(s->e);
  weft_scope_open(&sc, WEFT_FOREVER);
  weft_scope_cancel(&sc);
  s->rc[6] = weft_event_wait(s->e);
  weft_scope_close(&sc);
  return 0;
}

Test(sync_event, cancel_and_deadline, .timeout = 10) {
  estate s = {.e = weft_event_new()};
  cr_assert_eq(weft_run(cancel_main, &s), 0);
  cr_assert_eq(s.rc[1], -ECANCELED);
  cr_assert_eq(s.rc[2], 0);
  cr_assert_eq(s.rc[3], 1);
  cr_assert_eq(s.rc[4], -ECANCELED);
  cr_assert_eq(s.rc[5], -ETIMEDOUT);
  cr_assert_eq(s.rc[6], -ECANCELED);
  weft_event_free(s.e);
}

static int free_main(void *arg) {
  estate *s = arg;
  earg a[2] = {{s, 1}, {s, 2}};
  weft_task *t1 = weft_spawn(waiter, &a[0], NULL);
  weft_task *t2 = weft_spawn(waiter, &a[1], NULL);
  weft_yield();
  s->rc[0] = weft_event_free(s->e);
  weft_join(t1);
  weft_join(t2);
  return 0;
}

/* Freeing an event with waiters: they wake with -EIDRM. */
Test(sync_event, free_with_waiters, .timeout = 10) {
  estate s = {.e = weft_event_new()};
  cr_assert_eq(weft_run(free_main, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[1], -EIDRM);
  cr_assert_eq(s.rc[2], -EIDRM);
}

/* Many waiters, one set: all wake, each once. */
static int many_main(void *arg) {
  estate *s = arg;
  enum { N = 1000 };
  static earg a[N];
  weft_group *g = weft_group_open();
  for (int i = 0; i < N; i++) {
    a[i] = (earg){s, 7};
    weft_group_spawn(g, waiter, &a[i], NULL);
  }
  weft_yield();
  weft_event_set(s->e);
  return weft_group_close(g, NULL);
}

Test(sync_event, thousand_waiters, .timeout = 10) {
  estate s = {.e = weft_event_new()};
  cr_assert_eq(weft_run(many_main, &s), 0);
  cr_assert_eq(s.woke, 1000);
  cr_assert_eq(s.rc[7], 0);
  weft_event_free(s.e);
}
