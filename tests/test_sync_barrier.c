/*
 * test_sync_barrier.c -- weft_barrier: arrival indices over rounds,
 * abort, reset, a cancelled party (asyncio's semantics), deadlines, free
 * with waiters.
 */
#include "helpers.h"

typedef struct {
  weft_barrier *b;
  int rc[16][3]; /* per task, per round */
  int rounds;
  weft_task *t[16];
} bstate;

typedef struct {
  bstate *s;
  int id;
} barg;

static int party(void *arg) {
  barg *a = arg;
  for (int r = 0; r < a->s->rounds; r++) {
    a->s->rc[a->id][r] = weft_barrier_wait(a->s->b);
    if (a->s->rc[a->id][r] < 0) break;
  }
  return 0;
}

static int rounds_main(void *arg) {
  bstate *s = arg;
  barg a[3];
  for (int i = 0; i < 3; i++) {
    a[i] = (barg){s, i};
    s->t[i] = weft_spawn(party, &a[i], NULL);
  }
  for (int i = 0; i < 3; i++) weft_join(s->t[i]);
  return 0;
}

/* Three parties, three rounds; the barrier is reusable at once. Round 0:
 * they arrive in spawn order and get 0, 1, 2. The one that completes a
 * round goes on without a switch and arrives first in the next, then
 * the others in the order they were woken: index (i + r) mod 3. */
Test(sync_barrier, rounds, .timeout = 10) {
  bstate s = {.b = weft_barrier_new(3), .rounds = 3};
  cr_assert_not_null(s.b);
  cr_assert_eq(weft_barrier_parties(s.b), 3);
  cr_assert_eq(weft_run(rounds_main, &s), 0);
  for (int r = 0; r < 3; r++)
    for (int i = 0; i < 3; i++)
      cr_assert_eq(s.rc[i][r], (i + r) % 3, "round %d task %d: %d", r, i,
                   s.rc[i][r]);
  cr_assert_eq(weft_barrier_n_waiting(s.b), 0);
  cr_assert_not(weft_barrier_broken(s.b));
  cr_assert_eq(weft_barrier_free(s.b), 0);
}

static int one_main(void *arg) {
  weft_barrier *b = arg;
  int a = weft_barrier_wait(b), c = weft_barrier_wait(b);
  return a == 0 && c == 0 ? 0 : -EPROTO;
}

Test(sync_barrier, one_party, .timeout = 10) {
  weft_barrier *b = weft_barrier_new(1);
  cr_assert_eq(weft_run(one_main, b), 0);
  weft_barrier_free(b);
  errno = 0;
  cr_assert_null(weft_barrier_new(0));
  cr_assert_eq(errno, EINVAL);
  errno = 0;
  cr_assert_null(weft_barrier_new((size_t)INT32_MAX + 1));
  cr_assert_eq(errno, EINVAL);
}

/* ---------------------------------------------------------------- */

static int abort_main(void *arg) {
  bstate *s = arg;
  barg a[2] = {{s, 0}, {s, 1}};
  s->t[0] = weft_spawn(party, &a[0], NULL);
  s->t[1] = weft_spawn(party, &a[1], NULL);
  weft_yield();
  s->rc[10][0] = (int)weft_barrier_n_waiting(s->b);
  s->rc[10][1] = weft_barrier_abort(s->b);
  s->rc[10][2] = weft_barrier_wait(s->b); /* broken: at once */
  weft_join(s->t[0]);
  weft_join(s->t[1]);
  s->rc[11][0] = weft_barrier_broken(s->b);
  s->rc[11][1] = weft_barrier_reset(s->b);
  s->rc[11][2] = weft_barrier_broken(s->b);
  /* Usable again: three parties pass. */
  s->rounds = 1;
  barg b[2] = {{s, 2}, {s, 3}};
  s->t[2] = weft_spawn(party, &b[0], NULL);
  s->t[3] = weft_spawn(party, &b[1], NULL);
  weft_yield();
  s->rc[12][0] = weft_barrier_wait(s->b);
  weft_join(s->t[2]);
  weft_join(s->t[3]);
  return 0;
}

/* abort wakes every waiter with -EPIPE and fails later waits at once
 * until reset, which makes the barrier usable again. */
Test(sync_barrier, abort_and_reset, .timeout = 10) {
  bstate s = {.b = weft_barrier_new(3), .rounds = 1};
  cr_assert_eq(weft_run(abort_main, &s), 0);
  cr_assert_eq(s.rc[10][0], 2);
  cr_assert_eq(s.rc[10][1], 0);
  cr_assert_eq(s.rc[10][2], -EPIPE);
  cr_assert_eq(s.rc[0][0], -EPIPE);
  cr_assert_eq(s.rc[1][0], -EPIPE);
  cr_assert_eq(s.rc[11][0], 1);
  cr_assert_eq(s.rc[11][1], 0);
  cr_assert_eq(s.rc[11][2], 0);
  cr_assert_eq(s.rc[2][0], 0);
  cr_assert_eq(s.rc[3][0], 1);
  cr_assert_eq(s.rc[12][0], 2);
  weft_barrier_free(s.b);
}

static int reset_main(void *arg) {
  bstate *s = arg;
  barg a[2] = {{s, 0}, {s, 1}};
  s->t[0] = weft_spawn(party, &a[0], NULL);
  s->t[1] = weft_spawn(party, &a[1], NULL);
  weft_yield();
  s->rc[10][0] = weft_barrier_reset(s->b);
  s->rc[10][1] = weft_barrier_broken(s->b);
  s->rc[10][2] = (int)weft_barrier_n_waiting(s->b);
  weft_join(s->t[0]);
  weft_join(s->t[1]);
  return 0;
}

/* reset while parties wait: they get -EPIPE, the barrier is empty and
 * not broken. */
Test(sync_barrier, reset_while_waiting, .timeout = 10) {
  bstate s = {.b = weft_barrier_new(3), .rounds = 1};
  cr_assert_eq(weft_run(reset_main, &s), 0);
  cr_assert_eq(s.rc[10][0], 0);
  cr_assert_eq(s.rc[10][1], 0);
  cr_assert_eq(s.rc[10][2], 0);
  cr_assert_eq(s.rc[0][0], -EPIPE);
  cr_assert_eq(s.rc[1][0], -EPIPE);
  weft_barrier_free(s.b);
}

/* ---------------------------------------------------------------- */

static int cancel_main(void *arg) {
  bstate *s = arg;
  barg a[4] = {{s, 0}, {s, 1}, {s, 2}, {s, 3}};
  s->t[0] = weft_spawn(party, &a[0], NULL);
  weft_yield();
  s->t[1] = weft_spawn(party, &a[1], NULL);
  weft_yield();
  s->rc[10][0] = (int)weft_barrier_n_waiting(s->b);
  weft_cancel(s->t[0]);
  weft_yield();
  s->rc[10][1] = (int)weft_barrier_n_waiting(s->b);
  s->t[2] = weft_spawn(party, &a[2], NULL);
  weft_yield();
  s->rc[10][2] = (int)weft_barrier_n_waiting(s->b);
  s->t[3] = weft_spawn(party, &a[3], NULL);
  for (int i = 0; i < 4; i++) weft_join(s->t[i]);
  s->rc[11][0] = (int)weft_barrier_n_waiting(s->b);
  s->rc[11][1] = weft_barrier_broken(s->b);
  return 0;
}

/* asyncio's test_filling_tasks_cancel_one: a party cancelled while it
 * waits leaves (-ECANCELED) and the barrier is not broken; the others
 * wait for a full count and pass together. The indices have no gap. */
Test(sync_barrier, party_cancelled, .timeout = 10) {
  bstate s = {.b = weft_barrier_new(3), .rounds = 1};
  cr_assert_eq(weft_run(cancel_main, &s), 0);
  cr_assert_eq(s.rc[10][0], 2);
  cr_assert_eq(s.rc[10][1], 1);
  cr_assert_eq(s.rc[10][2], 2);
  cr_assert_eq(s.rc[0][0], -ECANCELED);
  cr_assert_eq(s.rc[1][0], 0);
  cr_assert_eq(s.rc[2][0], 1);
  cr_assert_eq(s.rc[3][0], 2);
  cr_assert_eq(s.rc[11][0], 0);
  cr_assert_eq(s.rc[11][1], 0);
  weft_barrier_free(s.b);
}

static int deadline_main(void *arg) {
  bstate *s = arg;
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(10));
  s->rc[0][0] = weft_barrier_wait(s->b);
  s->rc[0][1] = weft_scope_close(&sc);
  s->rc[0][2] = (int)weft_barrier_n_waiting(s->b);
  return 0;
}

Test(sync_barrier, deadline, .timeout = 10) {
  bstate s = {.b = weft_barrier_new(2)};
  cr_assert_eq(weft_run(deadline_main, &s), 0);
  cr_assert_eq(s.rc[0][0], -ECANCELED);
  cr_assert_eq(s.rc[0][1], -ETIMEDOUT);
  cr_assert_eq(s.rc[0][2], 0);
  weft_barrier_free(s.b);
}

static int free_main(void *arg) {
  bstate *s = arg;
  barg a[2] = {{s, 0}, {s, 1}};
  s->t[0] = weft_spawn(party, &a[0], NULL);
  s->t[1] = weft_spawn(party, &a[1], NULL);
  weft_yield();
  s->rc[10][0] = weft_barrier_free(s->b);
  weft_join(s->t[0]);
  weft_join(s->t[1]);
  return 0;
}

Test(sync_barrier, free_with_waiters, .timeout = 10) {
  bstate s = {.b = weft_barrier_new(3), .rounds = 1};
  cr_assert_eq(weft_run(free_main, &s), 0);
  cr_assert_eq(s.rc[10][0], 0);
  cr_assert_eq(s.rc[0][0], -EIDRM);
  cr_assert_eq(s.rc[1][0], -EIDRM);
}
