/*
 * test_call.c -- timer callbacks: weft_call_at, weft_call_later,
 * weft_call_cancel, weft_call_pending (asyncio's loop.call_at/call_later).
 *
 * Order of deadlines, FIFO among equal deadlines, never early, never
 * synchronously, cancel codes, cancel and re-arm from inside callbacks,
 * periodic timers, what a callback may and may not call, handles pending
 * at the end of a run, runners, bad input, another thread's loop, many
 * calls.
 */
#include "core/timer.h"
#include "helpers.h"

/* What the callbacks record: the order they ran in and when. */
typedef struct {
  tlog log;
  int64_t at[LOG_MAX]; /* weft_now() when entry i was logged */
  int64_t base;
} call_state;

typedef struct {
  call_state *s;
  int id;
  int64_t deadline; /* to check "never early" against */
} call_arg;

static void log_call(void *arg) {
  call_arg *a = arg;
  int64_t now = weft_now();
  if (a->s->log.n < LOG_MAX) a->s->at[a->s->log.n] = now;
  log_add(&a->s->log, a->id);
}

/* The entries of s->log all ran at or after their own deadline. */
static void expect_never_early(const call_state *s, const call_arg *a, int n) {
  for (int i = 0; i < s->log.n && i < LOG_MAX; i++) {
    int id = s->log.v[i];
    cr_assert(id >= 0 && id < n, "bad id %d", id);
    cr_assert_geq(s->at[i], a[id].deadline, "call %d ran %.3f ms early", id,
                  MS_OF(a[id].deadline - s->at[i]));
  }
}

/* ---------------------------------------------------------------- */
/* Order                                                             */
/* ---------------------------------------------------------------- */

typedef struct {
  call_state s;
  call_arg a[8];
  weft_call_handle c[8];
  int rc[8];
} order_state;

static int order_main(void *arg) {
  order_state *o = arg;
  int64_t ms[5] = {50, 10, 40, 20, 30};
  o->s.base = weft_now() + WEFT_MS(100); /* all armed long before */
  for (int i = 0; i < 5; i++) {
    o->a[i] = (call_arg){&o->s, (int)ms[i], o->s.base + WEFT_MS(ms[i])};
    o->rc[i] = weft_call_at(&o->c[i], o->a[i].deadline, log_call, &o->a[i]);
  }
  return weft_sleep_until(o->s.base + WEFT_MS(80));
}

/* Calls run in the order of their deadlines, not the order armed, and
 * none before its deadline. */
Test(call, deadline_order, .timeout = 10) {
  static order_state o;
  memset(&o, 0, sizeof o);
  cr_assert_eq(weft_run(order_main, &o), 0);
  for (int i = 0; i < 5; i++) cr_assert_eq(o.rc[i], 0);
  int want[] = {10, 20, 30, 40, 50};
  log_expect(&o.s.log, want, 5);
  for (int i = 0; i < 5; i++) {
    int k = o.s.log.v[i];
    int64_t dl = o.s.base + WEFT_MS(k);
    cr_assert_geq(o.s.at[i], dl, "call %d ran early", k);
  }
}

static int fifo_main(void *arg) {
  order_state *o = arg;
  int64_t d = weft_now() + WEFT_MS(20);
  for (int i = 0; i < 8; i++) {
    o->a[i] = (call_arg){&o->s, i, d};
    o->rc[i] = weft_call_at(&o->c[i], d, log_call, &o->a[i]);
  }
  return weft_sleep_until(d + WEFT_MS(10));
}

/* Equal deadlines run in the order armed. */
Test(call, equal_deadlines_fifo, .timeout = 10) {
  static order_state o;
  memset(&o, 0, sizeof o);
  cr_assert_eq(weft_run(fifo_main, &o), 0);
  for (int i = 0; i < 8; i++) cr_assert_eq(o.rc[i], 0);
  int want[] = {0, 1, 2, 3, 4, 5, 6, 7};
  log_expect(&o.s.log, want, 8);
  expect_never_early(&o.s, o.a, 8);
}

typedef struct {
  call_state s;
  call_arg a[4];
  weft_call_handle c[4];
  int64_t armed[4];
  int rc[4];
} later_state;

static int later_main(void *arg) {
  later_state *o = arg;
  int64_t d[4] = {WEFT_MS(3), WEFT_US(500), WEFT_MS(1), 0};
  for (int i = 0; i < 4; i++) {
    o->armed[i] = weft_now();
    o->a[i] = (call_arg){&o->s, i, o->armed[i] + d[i]};
    o->rc[i] = weft_call_later(&o->c[i], d[i], log_call, &o->a[i]);
  }
  return weft_sleep(WEFT_MS(20));
}

/* weft_call_later never runs before now + duration (weft_now()'s clock).
 * (Not an order check: under valgrind arming takes long enough to mix the
 * deadlines up.) */
Test(call, later_never_early, .timeout = 10) {
  static later_state o;
  memset(&o, 0, sizeof o);
  cr_assert_eq(weft_run(later_main, &o), 0);
  for (int i = 0; i < 4; i++) cr_assert_eq(o.rc[i], 0);
  cr_assert_eq(o.s.log.n, 4);
  int seen = 0;
  for (int i = 0; i < 4; i++) seen |= 1 << o.s.log.v[i];
  cr_assert_eq(seen, 0xf, "a call ran twice");
  expect_never_early(&o.s, o.a, 4);
}

/* ---------------------------------------------------------------- */
/* Never synchronously; past deadlines at the next loop turn         */
/* ---------------------------------------------------------------- */

typedef struct {
  int ran[3];
  int ran_after_arm[3];
  int ran_after_yield[3];
  int rc[3];
  weft_call_handle c[3];
} past_state;

static void set_flag(void *arg) { ++*(int *)arg; }

static int past_main(void *arg) {
  past_state *p = arg;
  p->rc[0] = weft_call_at(&p->c[0], 0, set_flag, &p->ran[0]);
  p->rc[1] = weft_call_at(&p->c[1], INT64_MIN, set_flag, &p->ran[1]);
  p->rc[2] = weft_call_later(&p->c[2], -WEFT_SEC(5), set_flag, &p->ran[2]);
  for (int i = 0; i < 3; i++) p->ran_after_arm[i] = p->ran[i];
  int rc = weft_yield(); /* alone: the loop takes a turn */
  for (int i = 0; i < 3; i++) p->ran_after_yield[i] = p->ran[i];
  if (!rc) rc = weft_sleep(WEFT_MS(2));
  return rc;
}

/* A deadline in the past does not run fn inside weft_call_at: it runs at
 * the next loop turn, once. A negative duration counts as 0, "now" on the
 * loop's fast clock, which errs late by up to a microsecond or so: it runs
 * at the first turn after that, so only the end result is checked. */
Test(call, past_deadline_next_turn, .timeout = 10) {
  past_state p = {0};
  cr_assert_eq(weft_run(past_main, &p), 0);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(p.rc[i], 0, "case %d", i);
    cr_assert_eq(p.ran_after_arm[i], 0, "case %d ran synchronously", i);
    if (i < 2) cr_assert_eq(p.ran_after_yield[i], 1, "case %d", i);
    cr_assert_eq(p.ran[i], 1, "case %d", i);
  }
}

/* ---------------------------------------------------------------- */
/* Cancel                                                            */
/* ---------------------------------------------------------------- */

typedef struct {
  int ran, ran2;
  int rc_arm, rc_cancel, rc_again, rc_zero, rc_after_run, rc_arm2;
  bool pend_armed, pend_cancelled, pend_zero, pend_ran;
  weft_call_handle c, zero, c2;
} cancel_state;

static int cancel_main(void *arg) {
  cancel_state *s = arg;
  s->rc_arm = weft_call_later(&s->c, WEFT_MS(10), set_flag, &s->ran);
  s->pend_armed = weft_call_pending(&s->c);
  s->rc_cancel = weft_call_cancel(&s->c);
  s->pend_cancelled = weft_call_pending(&s->c);
  s->rc_again = weft_call_cancel(&s->c);
  s->pend_zero = weft_call_pending(&s->zero);
  s->rc_zero = weft_call_cancel(&s->zero);
  s->rc_arm2 = weft_call_later(&s->c2, 0, set_flag, &s->ran2);
  int rc = weft_sleep(WEFT_MS(30));
  s->pend_ran = weft_call_pending(&s->c2);
  s->rc_after_run = weft_call_cancel(&s->c2);
  return rc;
}

/* Cancel of a pending call: 0, and it never runs; cancel again or of a
 * zeroed handle: -ENOENT; after it ran: -EALREADY. */
Test(call, cancel_codes, .timeout = 10) {
  static cancel_state s;
  memset(&s, 0, sizeof s);
  cr_assert_eq(weft_run(cancel_main, &s), 0);
  cr_assert_eq(s.rc_arm, 0);
  cr_assert(s.pend_armed);
  cr_assert_eq(s.rc_cancel, 0);
  cr_assert_not(s.pend_cancelled);
  cr_assert_eq(s.rc_again, -ENOENT);
  cr_assert_not(s.pend_zero);
  cr_assert_eq(s.rc_zero, -ENOENT);
  cr_assert_eq(s.ran, 0, "a cancelled call ran");
  cr_assert_eq(s.rc_arm2, 0);
  cr_assert_eq(s.ran2, 1);
  cr_assert_not(s.pend_ran);
  cr_assert_eq(s.rc_after_run, -EALREADY);
}

/* A callback cancels others, itself, and one due in the same turn. */
typedef struct {
  weft_call_handle a, b, c, d;
  int ran_a, ran_b, ran_c, ran_d;
  int rc_b, rc_c, rc_self, rc_d;
  bool self_pending;
} xcancel_state;

static void canceller(void *arg) {
  xcancel_state *s = arg;
  s->ran_a++;
  s->self_pending = weft_call_pending(&s->a);
  s->rc_b = weft_call_cancel(&s->b); /* later deadline */
  s->rc_c = weft_call_cancel(&s->c); /* same deadline, armed after a */
  s->rc_self = weft_call_cancel(&s->a);
  s->rc_d = weft_call_cancel(&s->d); /* same deadline, armed before a: ran */
}

static int xcancel_main(void *arg) {
  xcancel_state *s = arg;
  int64_t d = weft_now() + WEFT_MS(10);
  int rc = 0;
  rc |= weft_call_at(&s->d, d, set_flag, &s->ran_d);
  rc |= weft_call_at(&s->a, d, canceller, s);
  rc |= weft_call_at(&s->c, d, set_flag, &s->ran_c);
  rc |= weft_call_at(&s->b, d + WEFT_MS(10), set_flag, &s->ran_b);
  if (rc) return rc;
  return weft_sleep_until(d + WEFT_MS(40));
}

Test(call, cancel_from_callback, .timeout = 10) {
  static xcancel_state s;
  memset(&s, 0, sizeof s);
  cr_assert_eq(weft_run(xcancel_main, &s), 0);
  cr_assert_eq(s.ran_a, 1);
  cr_assert_eq(s.ran_d, 1);
  cr_assert_not(s.self_pending, "a handle is pending inside its own fn");
  cr_assert_eq(s.rc_b, 0);
  cr_assert_eq(s.rc_c, 0);
  cr_assert_eq(s.rc_self, -EALREADY);
  cr_assert_eq(s.rc_d, -EALREADY);
  cr_assert_eq(s.ran_b, 0, "cancelled call b ran");
  cr_assert_eq(s.ran_c, 0, "cancelled call c ran (same turn)");
}

/* ---------------------------------------------------------------- */
/* Re-arming                                                         */
/* ---------------------------------------------------------------- */

#define PERIODS 5

typedef struct {
  weft_call_handle c;
  weft_event *done;
  int n;
  int64_t at[PERIODS + 2];
  int rc_rearm;
  bool pending_after_rearm;
  bool pending_at_end;
} periodic_state;

static void tick(void *arg) {
  periodic_state *p = arg;
  if (p->n < PERIODS + 2) p->at[p->n] = weft_now();
  if (++p->n < PERIODS) {
    int rc = weft_call_later(&p->c, WEFT_MS(2), tick, p);
    if (rc) p->rc_rearm = rc;
    p->pending_after_rearm = weft_call_pending(&p->c);
  } else {
    weft_event_set(p->done);
  }
}

static int periodic_main(void *arg) {
  periodic_state *p = arg;
  p->done = weft_event_new();
  if (!p->done) return -ENOMEM;
  int rc = weft_call_later(&p->c, WEFT_MS(2), tick, p);
  if (!rc) rc = weft_event_wait(p->done); /* only a callback sets it */
  if (!rc) rc = weft_sleep(WEFT_MS(10));  /* and it does not run again */
  p->pending_at_end = weft_call_pending(&p->c);
  weft_event_free(p->done);
  return rc;
}

/* A callback re-arming its own handle makes a periodic timer: it runs
 * exactly PERIODS times, at least a period apart. */
Test(call, periodic_rearm, .timeout = 10) {
  static periodic_state p;
  memset(&p, 0, sizeof p);
  cr_assert_eq(weft_run(periodic_main, &p), 0);
  cr_assert_eq(p.rc_rearm, 0);
  cr_assert(p.pending_after_rearm);
  cr_assert_not(p.pending_at_end);
  cr_assert_eq(p.n, PERIODS);
  for (int i = 1; i < PERIODS; i++)
    cr_assert_geq(p.at[i] - p.at[i - 1], WEFT_MS(2), "period %d: %.3f ms", i,
                  MS_OF(p.at[i] - p.at[i - 1]));
}

typedef struct {
  weft_call_handle c;
  int n;
  bool stop;
  int yields;
} spin_state;

static void spin(void *arg) {
  spin_state *s = arg;
  s->n++;
  if (!s->stop) weft_call_at(&s->c, 0, spin, s); /* always in the past */
}

static int stopper(void *arg) {
  spin_state *s = arg;
  for (int i = 0; i < 100; i++) {
    if (weft_yield() != 0) return -EIO;
    s->yields++;
  }
  int rc = weft_sleep(WEFT_MS(5));
  s->stop = true;
  return rc;
}

static int spin_main(void *arg) {
  spin_state *s = arg;
  int rc = weft_call_at(&s->c, 0, spin, s);
  if (rc) return rc;
  weft_task *t = weft_spawn(stopper, s, NULL);
  if (!t) return -errno;
  return weft_join(t);
}

/* A callback that keeps re-arming itself in the past runs once per loop
 * turn and holds up neither the tasks nor the other timers (were it run
 * again within the same turn, or kept at the head of the heap, the
 * stopper's sleep would never end). */
Test(call, rearm_in_past_does_not_starve, .timeout = 10) {
  static spin_state s;
  memset(&s, 0, sizeof s);
  cr_assert_eq(weft_run(spin_main, &s), 0);
  cr_assert_eq(s.yields, 100);
  cr_assert_geq(s.n, 2);
}

typedef struct {
  call_state s;
  call_arg a[6];
  weft_call_handle c[4];
  int rc[8];
  bool pend[2];
  int ran_early_check; /* log length at d0 + 15 ms */
  int64_t d0;
} move_state;

static int move_main(void *arg) {
  move_state *m = arg;
  int64_t d = weft_now() + WEFT_MS(20);
  m->d0 = d;
  for (int i = 0; i < 6; i++) m->a[i] = (call_arg){&m->s, i, 0};
  /* c0: armed for an hour, moved to d with another fn/arg (a[1]). */
  m->a[0].deadline = d + WEFT_SEC(3600);
  m->rc[0] = weft_call_at(&m->c[0], m->a[0].deadline, log_call, &m->a[0]);
  m->a[1].deadline = d;
  m->rc[1] = weft_call_at(&m->c[0], d, log_call, &m->a[1]);
  m->pend[0] = weft_call_pending(&m->c[0]);
  /* c1 at d, then c2 at d, then c1 moved to d again: it goes after c2. */
  m->a[2].deadline = m->a[3].deadline = d;
  m->rc[2] = weft_call_at(&m->c[1], d, log_call, &m->a[2]);
  m->rc[3] = weft_call_at(&m->c[2], d, log_call, &m->a[3]);
  m->rc[4] = weft_call_at(&m->c[1], d, log_call, &m->a[2]);
  /* c3: armed at d - 10 ms, moved later to d + 200 ms. */
  m->a[4].deadline = d + WEFT_MS(200);
  m->rc[5] = weft_call_at(&m->c[3], d - WEFT_MS(10), log_call, &m->a[4]);
  m->rc[6] = weft_call_at(&m->c[3], d + WEFT_MS(200), log_call, &m->a[4]);
  m->pend[1] = weft_call_pending(&m->c[3]);
  int rc = weft_sleep_until(d + WEFT_MS(10));
  m->ran_early_check = m->s.log.n;
  if (!rc) rc = weft_sleep_until(d + WEFT_MS(250));
  return rc;
}

/* Arming a pending handle moves it (earlier or later, new fn and arg):
 * it runs once, at the new deadline, after calls already armed for it. */
Test(call, rearm_pending_moves, .timeout = 10) {
  static move_state m;
  memset(&m, 0, sizeof m);
  cr_assert_eq(weft_run(move_main, &m), 0);
  for (int i = 0; i < 7; i++) cr_assert_eq(m.rc[i], 0, "rc[%d]", i);
  cr_assert(m.pend[0]);
  cr_assert(m.pend[1]);
  cr_assert_eq(m.ran_early_check, 3, "only the calls at d by d + 10 ms");
  int want[] = {1, 3, 2, 4};
  log_expect(&m.s.log, want, 4);
  expect_never_early(&m.s, m.a, 6);
}

/* ---------------------------------------------------------------- */
/* What a callback may do                                            */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_event *ev;
  weft_sem *sem;
  weft_queue *q;
  weft_task *spawned;
  int spawned_ran;
  int waiter_rc, acquirer_rc, getter_rc, got;
  weft_call_handle c;
  bool cur_null;
  int spawn_errno;
} may_state;

static int spawned_fn(void *arg) {
  may_state *s = arg;
  s->spawned_ran = 1;
  return 7;
}

static int ev_waiter(void *arg) {
  may_state *s = arg;
  s->waiter_rc = weft_event_wait(s->ev);
  return 0;
}

static int sem_acquirer(void *arg) {
  may_state *s = arg;
  s->acquirer_rc = weft_sem_acquire(s->sem);
  return 0;
}

static int q_getter(void *arg) {
  may_state *s = arg;
  s->getter_rc = weft_queue_get(s->q, &s->got);
  return 0;
}

static void may_cb(void *arg) {
  may_state *s = arg;
  s->cur_null = weft_current() == NULL;
  s->spawned = weft_spawn(spawned_fn, s, NULL);
  if (!s->spawned) s->spawn_errno = errno;
  weft_event_set(s->ev);
  weft_sem_release(s->sem);
  int v = 42;
  weft_queue_try_put(s->q, &v);
}

static int may_main(void *arg) {
  may_state *s = arg;
  s->ev = weft_event_new();
  s->sem = weft_sem_new(0);
  s->q = weft_queue_new(4, sizeof(int));
  if (!s->ev || !s->sem || !s->q) return -ENOMEM;
  weft_task *t[3] = {weft_spawn(ev_waiter, s, NULL),
                     weft_spawn(sem_acquirer, s, NULL),
                     weft_spawn(q_getter, s, NULL)};
  int rc = weft_call_later(&s->c, WEFT_MS(5), may_cb, s);
  for (int i = 0; i < 3; i++) rc |= t[i] ? weft_join(t[i]) : -ENOMEM;
  int64_t until = weft_now() + T_SLACK;
  while (!s->spawned && weft_now() < until) weft_sleep(WEFT_MS(1));
  int jrc = s->spawned ? weft_join(s->spawned) : -1;
  if (jrc != 7) rc = -EIO;
  weft_event_free(s->ev);
  weft_sem_free(s->sem);
  weft_queue_free(s->q);
  return rc;
}

/* A callback runs with no current task and may spawn a task, set an
 * event, release a semaphore and put on a queue; the tasks waiting on
 * those wake. */
Test(call, callback_spawns_and_wakes, .timeout = 10) {
  static may_state s;
  memset(&s, 0, sizeof s);
  cr_assert_eq(weft_run(may_main, &s), 0);
  cr_assert(s.cur_null);
  cr_assert_eq(s.spawn_errno, 0);
  cr_assert_eq(s.spawned_ran, 1);
  cr_assert_eq(s.waiter_rc, 0);
  cr_assert_eq(s.acquirer_rc, 0);
  cr_assert_eq(s.getter_rc, 0);
  cr_assert_eq(s.got, 42);
}

typedef struct {
  weft_call_handle c;
  weft_event *ev;
  weft_sem *sem;
  weft_task *t;
  int rc[9];
  int ran;
} cp_state;

static void checkpoint_cb(void *arg) {
  cp_state *s = arg;
  weft_scope sc;
  s->ran = 1;
  s->rc[0] = weft_yield();
  s->rc[1] = weft_sleep(WEFT_MS(1));
  s->rc[2] = weft_sleep_until(weft_now() + WEFT_MS(1));
  s->rc[3] = weft_check_cancel();
  s->rc[4] = weft_event_wait(s->ev);
  s->rc[5] = weft_sem_acquire(s->sem);
  s->rc[6] = weft_join(s->t);
  s->rc[7] = weft_scope_open(&sc, WEFT_FOREVER);
  s->rc[8] = weft_wait_fd(0, WEFT_READABLE);
}

static int sleeper_20ms(void *arg) {
  (void)arg;
  return weft_sleep(WEFT_MS(20));
}

static int cp_main(void *arg) {
  cp_state *s = arg;
  s->ev = weft_event_new();
  s->sem = weft_sem_new(0);
  s->t = weft_spawn(sleeper_20ms, NULL, NULL);
  if (!s->ev || !s->sem || !s->t) return -ENOMEM;
  int rc = weft_call_later(&s->c, WEFT_MS(1), checkpoint_cb, s);
  if (!rc) rc = weft_sleep(WEFT_MS(10));
  int jrc = weft_join(s->t); /* the callback's join did not consume it */
  weft_event_free(s->ev);
  weft_sem_free(s->sem);
  return rc ? rc : jrc;
}

/* Checkpoints called from a callback return WEFT_ENOTASK (it is not a
 * task: it cannot block). */
Test(call, checkpoints_in_callback_enotask, .timeout = 10) {
  static cp_state s;
  memset(&s, 0, sizeof s);
  cr_assert_eq(weft_run(cp_main, &s), 0);
  cr_assert_eq(s.ran, 1);
  for (int i = 0; i < 9; i++)
    cr_assert_eq(s.rc[i], WEFT_ENOTASK, "checkpoint %d returned %d (%s)", i,
                 s.rc[i], weft_strerror(s.rc[i]));
}

/* ---------------------------------------------------------------- */
/* Storage                                                           */
/* ---------------------------------------------------------------- */

typedef struct {
  weft_call_handle c;
  int *count;
  int left;
} owned_call;

static void owned_fn(void *arg) {
  owned_call *o = arg;
  ++*o->count;
  if (--o->left > 0 && weft_call_later(&o->c, 0, owned_fn, o) == 0) return;
  free(o); /* the handle's own memory, from inside its function */
}

#define NOWNED 50
#define OWNED_RUNS (NOWNED / 3 * 6 + (NOWNED % 3 == 2 ? 3 : NOWNED % 3))

static int free_main(void *arg) {
  int *count = arg;
  for (int i = 0; i < NOWNED; i++) {
    owned_call *o = calloc(1, sizeof *o);
    if (!o) return -ENOMEM;
    o->count = count;
    o->left = 1 + i % 3;
    int rc = weft_call_later(&o->c, WEFT_US(100 * (i % 7)), owned_fn, o);
    if (rc) return rc;
  }
  int64_t until = weft_now() + T_SLACK;
  while (*count < OWNED_RUNS && weft_now() < until) {
    int rc = weft_sleep(WEFT_MS(1));
    if (rc) return rc;
  }
  return 0;
}

/* A callback may free the memory its handle lives in (nothing touches the
 * handle after fn returns; ASan and valgrind check it). */
Test(call, callback_frees_its_handle, .timeout = 10) {
  int count = 0;
  cr_assert_eq(weft_run(free_main, &count), 0);
  int want = 0;
  for (int i = 0; i < NOWNED; i++) want += 1 + i % 3;
  cr_assert_eq(want, OWNED_RUNS);
  cr_assert_eq(count, want);
}

typedef struct {
  weft_call_handle c[3];
  int ran[3];
  int rc[3];
  int64_t run_time;
} end_state;

static int end_main(void *arg) {
  end_state *s = arg;
  s->rc[0] = weft_call_later(&s->c[0], WEFT_SEC(10), set_flag, &s->ran[0]);
  s->rc[1] = weft_call_at(&s->c[1], weft_now() + WEFT_SEC(3600), set_flag,
                          &s->ran[1]);
  s->rc[2] = weft_call_at(&s->c[2], WEFT_FOREVER, set_flag, &s->ran[2]);
  return 0;
}

typedef struct {
  end_state *old;
  int rc_cancel_dropped, rc_arm, ran, ran_after;
  bool pend_dropped;
} reuse_state;

static int reuse_main(void *arg) {
  reuse_state *r = arg;
  r->pend_dropped = weft_call_pending(&r->old->c[0]);
  r->rc_cancel_dropped = weft_call_cancel(&r->old->c[1]);
  r->rc_arm = weft_call_at(&r->old->c[0], 0, set_flag, &r->ran);
  int rc = weft_yield();
  r->ran_after = r->ran;
  return rc;
}

/* Calls pending when main returns neither keep the loop alive nor run:
 * they are dropped. Their handles are left alone and can be armed again
 * on a later loop. */
Test(call, pending_at_end_of_run, .timeout = 10) {
  end_state *s = calloc(1, sizeof *s); /* freed below: leak checkers see it */
  cr_assert_not_null(s);
  int64_t t0 = weft_now();
  cr_assert_eq(weft_run(end_main, s), 0);
  s->run_time = weft_now() - t0;
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(s->rc[i], 0);
    cr_assert_eq(s->ran[i], 0, "call %d ran", i);
  }
  cr_assert_lt(s->run_time, T_SLACK, "weft_run waited for pending calls");
  /* No loop now. */
  cr_assert_not(weft_call_pending(&s->c[0]));
  cr_assert_eq(weft_call_cancel(&s->c[0]), WEFT_ENOTASK);
  /* A new loop: the handles were dropped, not pending. */
  reuse_state r = {.old = s};
  cr_assert_eq(weft_run(reuse_main, &r), 0);
  cr_assert_not(r.pend_dropped);
  cr_assert_eq(r.rc_cancel_dropped, -ENOENT);
  cr_assert_eq(r.rc_arm, 0);
  cr_assert_eq(r.ran_after, 1);
  for (int i = 0; i < 3; i++) cr_assert_eq(s->ran[i], 0);
  free(s);
}

typedef struct {
  weft_call_handle c;
  int ran;
  int reaped_rc;
} reap_state;

static int shielded_nap(void *arg) {
  reap_state *s = arg;
  (void)weft_sleep(WEFT_SEC(3600)); /* until weft_run cancels it */
  weft_scope sc;
  weft_scope_open_shielded(&sc, WEFT_FOREVER);
  s->reaped_rc = weft_sleep(WEFT_MS(30)); /* the call comes due meanwhile */
  weft_scope_close(&sc);
  return 0;
}

static int reap_main(void *arg) {
  reap_state *s = arg;
  weft_task *t = weft_spawn(shielded_nap, s, NULL);
  if (!t) return -errno;
  weft_detach(t);
  return weft_call_later(&s->c, WEFT_MS(10), set_flag, &s->ran);
}

/* A call that comes due while weft_run reaps the tasks main left still
 * runs (asyncio runs its callbacks while asyncio.run cancels the rest). */
Test(call, runs_while_reaping, .timeout = 10) {
  static reap_state s;
  memset(&s, 0, sizeof s);
  cr_assert_eq(weft_run(reap_main, &s), 0);
  cr_assert_eq(s.reaped_rc, 0);
  cr_assert_eq(s.ran, 1);
}

typedef struct {
  weft_call_handle soon, never;
  int ran_soon, ran_never;
  int rc[2];
  int ran_soon_in_run2;
} runner_state;

static int runner_arm(void *arg) {
  runner_state *s = arg;
  s->rc[0] = weft_call_later(&s->soon, WEFT_MS(5), set_flag, &s->ran_soon);
  s->rc[1] = weft_call_later(&s->never, WEFT_SEC(3600), set_flag,
                             &s->ran_never);
  return 0;
}

static int runner_wait(void *arg) {
  runner_state *s = arg;
  int rc = weft_sleep(WEFT_MS(20));
  s->ran_soon_in_run2 = s->ran_soon;
  return rc;
}

/* Under a runner, calls stay armed between weft_runner_run calls, run
 * during later ones, and are dropped by weft_runner_close. */
Test(call, runner_keeps_and_drops, .timeout = 10) {
  static runner_state s;
  memset(&s, 0, sizeof s);
  weft_runner *r = weft_runner_open(NULL);
  cr_assert_not_null(r);
  cr_assert_eq(weft_runner_run(r, runner_arm, &s), 0);
  cr_assert_eq(s.rc[0], 0);
  cr_assert_eq(s.rc[1], 0);
  /* Between runs: the loop's thread, no task. */
  cr_assert(weft_call_pending(&s.never));
  cr_assert_eq(weft_runner_run(r, runner_wait, &s), 0);
  cr_assert_eq(s.ran_soon_in_run2, 1);
  cr_assert(weft_call_pending(&s.never));
  cr_assert_eq(weft_runner_close(r), 0);
  cr_assert_eq(s.ran_never, 0);
  cr_assert_not(weft_call_pending(&s.never));
}

/* ---------------------------------------------------------------- */
/* Bad input                                                         */
/* ---------------------------------------------------------------- */

static void nop(void *arg) { (void)arg; }

/* No loop on the thread: WEFT_ENOTASK; NULL handle or fn: -EINVAL. */
Test(call, no_loop_and_null, .timeout = 10) {
  weft_call_handle c = {0};
  cr_assert_eq(weft_call_at(&c, 0, nop, NULL), WEFT_ENOTASK);
  cr_assert_eq(weft_call_later(&c, 0, nop, NULL), WEFT_ENOTASK);
  cr_assert_eq(weft_call_cancel(&c), WEFT_ENOTASK);
  cr_assert_not(weft_call_pending(&c));
  cr_assert_eq(weft_call_at(NULL, 0, nop, NULL), -EINVAL);
  cr_assert_eq(weft_call_at(&c, 0, NULL, NULL), -EINVAL);
  cr_assert_eq(weft_call_later(NULL, 0, nop, NULL), -EINVAL);
  cr_assert_eq(weft_call_later(&c, 0, NULL, NULL), -EINVAL);
  cr_assert_eq(weft_call_cancel(NULL), -EINVAL);
  cr_assert_not(weft_call_pending(NULL));
}

typedef struct {
  int rc[6];
  bool pend;
} null_state;

static int null_main(void *arg) {
  null_state *s = arg;
  weft_call_handle c;
  memset(&c, 0, sizeof c);
  s->rc[0] = weft_call_at(NULL, 0, nop, NULL);
  s->rc[1] = weft_call_at(&c, 0, NULL, NULL);
  s->rc[2] = weft_call_later(NULL, 0, nop, NULL);
  s->rc[3] = weft_call_later(&c, 0, NULL, NULL);
  s->rc[4] = weft_call_cancel(NULL);
  s->pend = weft_call_pending(NULL) || weft_call_pending(&c);
  /* Stale contents (not a zeroed handle: a user error) are not taken for
   * a pending call: arming and cancelling still work. */
  weft_call_handle g;
  memset(&g, 0xa5, sizeof g);
  s->rc[5] = weft_call_later(&g, WEFT_SEC(1), nop, NULL);
  if (!s->rc[5] && weft_call_cancel(&g) != 0) s->rc[5] = -EIO;
  return 0;
}

Test(call, null_in_loop, .timeout = 10) {
  null_state s = {0};
  cr_assert_eq(weft_run(null_main, &s), 0);
  for (int i = 0; i < 5; i++) cr_assert_eq(s.rc[i], -EINVAL, "case %d", i);
  cr_assert_not(s.pend);
  cr_assert_eq(s.rc[5], 0);
}

typedef struct {
  weft_call_handle c;
  int ran;
  int rc_arm, rc_thread, rc_other_run, rc_cancel_home;
  bool pend_home;
  /* seen from the other thread's loop: */
  int o_cancel, o_at, o_later, o_own;
  bool o_pend;
} xloop_state;

static int other_main(void *arg) {
  xloop_state *s = arg;
  s->o_cancel = weft_call_cancel(&s->c);
  s->o_at = weft_call_at(&s->c, 0, nop, NULL);
  s->o_later = weft_call_later(&s->c, 0, nop, NULL);
  s->o_pend = weft_call_pending(&s->c);
  weft_call_handle own = {0};
  int own_ran = 0;
  s->o_own = weft_call_later(&own, 0, set_flag, &own_ran);
  if (!s->o_own) s->o_own = weft_yield();
  if (!s->o_own && own_ran != 1) s->o_own = -EIO;
  return 0;
}

static void *other_thread(void *arg) {
  xloop_state *s = arg;
  s->rc_other_run = weft_run(other_main, s);
  return NULL;
}

static int xloop_main(void *arg) {
  xloop_state *s = arg;
  s->rc_arm = weft_call_later(&s->c, WEFT_SEC(3600), set_flag, &s->ran);
  s->rc_thread = weft_to_thread(other_thread, s, NULL);
  s->pend_home = weft_call_pending(&s->c);
  s->rc_cancel_home = weft_call_cancel(&s->c);
  return 0;
}

/* A handle pending on one loop, touched from another thread's loop:
 * WEFT_ELOOP, and it stays pending on its own loop. */
Test(call, other_loop_eloop, .timeout = 10) {
  static xloop_state s;
  memset(&s, 0, sizeof s);
  cr_assert_eq(weft_run(xloop_main, &s), 0);
  cr_assert_eq(s.rc_arm, 0);
  cr_assert_eq(s.rc_thread, 0);
  cr_assert_eq(s.rc_other_run, 0);
  cr_assert_eq(s.o_cancel, WEFT_ELOOP);
  cr_assert_eq(s.o_at, WEFT_ELOOP);
  cr_assert_eq(s.o_later, WEFT_ELOOP);
  cr_assert_not(s.o_pend);
  cr_assert_eq(s.o_own, 0);
  cr_assert(s.pend_home);
  cr_assert_eq(s.rc_cancel_home, 0);
  cr_assert_eq(s.ran, 0);
}

/* ---------------------------------------------------------------- */
/* Many                                                              */
/* ---------------------------------------------------------------- */

#define NMANY 10000

typedef struct {
  call_state s; /* log of the first LOG_MAX; order checked on all */
  call_arg a[NMANY];
  weft_call_handle c[NMANY];
  int order[NMANY];
  int n, cancelled, rc;
  int64_t late_max;
} many_state;

static void many_fn(void *arg) {
  call_arg *a = arg;
  many_state *m = (many_state *)a->s;
  int64_t late = weft_now() - a->deadline;
  if (late < 0 || m->n >= NMANY) m->rc = -EIO;
  if (late > m->late_max) m->late_max = late;
  if (m->n < NMANY) m->order[m->n] = a->id;
  m->n++;
}

static int many_main(void *arg) {
  many_state *m = arg;
  uint32_t x = 2463534242u;
  m->s.base = weft_now() + WEFT_MS(300); /* all armed before any is due */
  for (int i = 0; i < NMANY; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    m->a[i] = (call_arg){&m->s, i, m->s.base + WEFT_US(x % 50000)};
    int rc = weft_call_at(&m->c[i], m->a[i].deadline, many_fn, &m->a[i]);
    if (rc) return rc;
  }
  /* Every 10th cancelled. */
  for (int i = 0; i < NMANY; i += 10) {
    if (weft_call_cancel(&m->c[i]) != 0) return -EIO;
    m->cancelled++;
  }
  return weft_sleep_until(m->s.base + WEFT_MS(60));
}

/* 10,000 calls with random deadlines (many equal), a tenth cancelled:
 * the rest run once each, sorted by deadline, ties in arming order, none
 * early. */
Test(call, many, .timeout = 30) {
  many_state *m = calloc(1, sizeof *m);
  cr_assert_not_null(m);
  cr_assert_eq(weft_run(many_main, m), 0);
  cr_assert_eq(m->rc, 0, "a call ran early or too often");
  cr_assert_eq(m->cancelled, NMANY / 10);
  cr_assert_eq(m->n, NMANY - NMANY / 10);
  for (int i = 0; i < m->n; i++)
    cr_assert_neq(m->order[i] % 10, 0, "cancelled call %d ran", m->order[i]);
  for (int i = 1; i < m->n; i++) {
    const call_arg *p = &m->a[m->order[i - 1]], *q = &m->a[m->order[i]];
    cr_assert(p->deadline < q->deadline ||
                  (p->deadline == q->deadline && p->id < q->id),
              "call %d ran before %d", p->id, q->id);
  }
  cr_log_info("max lateness %.2f ms", MS_OF(m->late_max));
  free(m);
}

/* ---------------------------------------------------------------- */
/* The timer heap's part (src/core/timer.c)                          */
/* ---------------------------------------------------------------- */

typedef struct {
  weft__timer tm;
  int fired;
} htimer;

static void hfire(weft__timer *tm) { ((htimer *)tm)->fired++; }

/* A timer armed or moved during a pass of pop_due with a deadline already
 * due waits for the next pass and does not hold up the others; its
 * t->when is left as given. */
Test(call_heap, armed_during_pass_waits, .timeout = 10) {
  weft__timers h = {0};
  htimer t[5];
  for (int i = 0; i < 5; i++) weft__timer_init(&t[i].tm, hfire), t[i].fired = 0;
  t[0].tm.when = 10;
  t[1].tm.when = 20;
  t[3].tm.when = 30;
  cr_assert_eq(weft__timers_add(&h, &t[0].tm), 0);
  cr_assert_eq(weft__timers_add(&h, &t[1].tm), 0);
  cr_assert_eq(weft__timers_add(&h, &t[3].tm), 0);
  t[4].tm.when = 21; /* due at now + 1, armed before the pass */
  cr_assert_eq(weft__timers_add(&h, &t[4].tm), 0);
  cr_assert_eq(weft__timers_pop_due(&h, 20), &t[0].tm); /* a pass at 20 */
  t[2].tm.when = 5; /* armed in the pass, in the past */
  cr_assert_eq(weft__timers_add(&h, &t[2].tm), 0);
  weft__timers_move(&h, &t[3].tm, 0); /* moved in the pass, into the past */
  cr_assert_eq(weft__timers_pop_due(&h, 20), &t[1].tm);
  cr_assert_null(weft__timers_pop_due(&h, 20)); /* the pass ends */
  cr_assert_eq(t[2].tm.when, 5);
  cr_assert_eq(t[3].tm.when, 0);
  cr_assert_eq(weft__timers_next(&h), 21);
  /* Next pass: t4 (due at 21, armed before them), then t2 and t3 in the
   * order armed or moved (not by their deadlines, 5 and 0). */
  cr_assert_eq(weft__timers_pop_due(&h, 21), &t[4].tm);
  cr_assert_eq(weft__timers_pop_due(&h, 21), &t[2].tm);
  cr_assert_eq(weft__timers_pop_due(&h, 21), &t[3].tm);
  cr_assert_null(weft__timers_pop_due(&h, 21));
  /* Outside a pass, the past is keyed as it is. */
  t[0].tm.when = 1;
  t[1].tm.when = 0;
  cr_assert_eq(weft__timers_add(&h, &t[0].tm), 0);
  cr_assert_eq(weft__timers_add(&h, &t[1].tm), 0);
  cr_assert_eq(weft__timers_next(&h), 0);
  cr_assert_eq(weft__timers_pop_due(&h, 5), &t[1].tm);
  cr_assert_eq(weft__timers_pop_due(&h, 5), &t[0].tm);
  cr_assert_null(weft__timers_pop_due(&h, 5));
  weft__timers_free(&h);
}

/* weft__timers_holds trusts only the heap: armed yes; disarmed, popped,
 * re-armed under another id, or a made-up id, no. */
Test(call_heap, holds_is_exact, .timeout = 10) {
  weft__timers h = {0};
  htimer t[4];
  for (int i = 0; i < 4; i++) {
    weft__timer_init(&t[i].tm, hfire);
    t[i].tm.when = 100 + i;
    cr_assert_not(weft__timers_holds(&h, &t[i].tm));
    cr_assert_eq(weft__timers_add(&h, &t[i].tm), 0);
    cr_assert(weft__timers_holds(&h, &t[i].tm));
  }
  uint32_t old = t[1].tm.id;
  weft__timers_del(&h, &t[1].tm);
  cr_assert_not(weft__timers_holds(&h, &t[1].tm));
  t[1].tm.id = old; /* stale contents naming its old, now free, id */
  cr_assert_not(weft__timers_holds(&h, &t[1].tm));
  t[1].tm.id = t[2].tm.id; /* another timer's id */
  cr_assert_not(weft__timers_holds(&h, &t[1].tm));
  t[1].tm.id = 12345; /* out of range */
  cr_assert_not(weft__timers_holds(&h, &t[1].tm));
  cr_assert_eq(weft__timers_pop_due(&h, 100), &t[0].tm);
  cr_assert_null(weft__timers_pop_due(&h, 100));
  cr_assert_not(weft__timers_holds(&h, &t[0].tm));
  cr_assert(weft__timers_holds(&h, &t[2].tm));
  cr_assert(weft__timers_holds(&h, &t[3].tm));
  weft__timers_free(&h);
  cr_assert_not(weft__timers_holds(&h, &t[2].tm));
}

/* Generations: one per heap, never given twice, alive until freed. */
Test(call_heap, generations, .timeout = 10) {
  weft__timers a = {0}, b = {0};
  uint64_t ga = weft__timers_gen(&a);
  cr_assert_neq(ga, 0);
  cr_assert_eq(weft__timers_gen(&a), ga);
  uint64_t gb = weft__timers_gen(&b);
  cr_assert_neq(gb, 0);
  cr_assert_neq(gb, ga);
  cr_assert(weft__timers_gen_live(ga));
  cr_assert(weft__timers_gen_live(gb));
  cr_assert_not(weft__timers_gen_live(0));
  weft__timers_free(&a);
  cr_assert_not(weft__timers_gen_live(ga));
  cr_assert(weft__timers_gen_live(gb));
  uint64_t ga2 = weft__timers_gen(&a); /* the same struct, a new heap */
  cr_assert_neq(ga2, ga);
  cr_assert_neq(ga2, gb);
  weft__timers_free(&a);
  weft__timers_free(&b);
  cr_assert_not(weft__timers_gen_live(gb));
}
