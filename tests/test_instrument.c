/*
 * test_instrument.c -- instruments (Trio-style scheduler hooks): every
 * hook is called, balanced, with the right argument; add/remove errors.
 */
#include "helpers.h"

typedef struct {
  int spawned, scheduled, step_begin, step_end, exited;
  int before_poll, after_poll;
  int64_t max_timeout;
  int max_events;
  weft_task *running;   /* task between step_begin and step_end */
  weft_task *expect_running; /* the task that added the instrument */
  int nesting_errors;   /* begin while running, end of another task */
  int order_errors;     /* first begin before spawned, etc. */
  int bad_arg;
  void *expect_arg;
  weft_task *seen[64];  /* tasks seen by task_spawned */
  int nseen;
} counts;

static int known(counts *c, weft_task *t) {
  for (int i = 0; i < c->nseen && i < 64; i++)
    if (c->seen[i] == t)
      return 1;
  return 0;
}

static void h_spawned(weft_task *t, void *arg) {
  counts *c = arg;
  if (arg != c->expect_arg)
    c->bad_arg++;
  c->spawned++;
  if (c->nseen < 64)
    c->seen[c->nseen++] = t;
}
static void h_scheduled(weft_task *t, void *arg) {
  counts *c = arg;
  (void)t;
  c->scheduled++;
}
static void h_begin(weft_task *t, void *arg) {
  counts *c = arg;
  if (c->running != NULL)
    c->nesting_errors++;
  c->running = t;
  c->step_begin++;
}
static void h_end(weft_task *t, void *arg) {
  counts *c = arg;
  if (c->running != t)
    c->nesting_errors++;
  c->running = NULL;
  c->step_end++;
}
static void h_exited(weft_task *t, void *arg) {
  counts *c = arg;
  (void)t;
  c->exited++;
}
static void h_before(int64_t timeout, void *arg) {
  counts *c = arg;
  c->before_poll++;
  if (timeout > c->max_timeout)
    c->max_timeout = timeout;
}
static void h_after(int n, void *arg) {
  counts *c = arg;
  c->after_poll++;
  if (n > c->max_events)
    c->max_events = n;
}

static const weft_instrument all_hooks = {
    .task_spawned = h_spawned,
    .task_scheduled = h_scheduled,
    .step_begin = h_begin,
    .step_end = h_end,
    .task_exited = h_exited,
    .before_poll = h_before,
    .after_poll = h_after,
};

/* ---------------------------------------------------------------- */

static int child_work(void *arg) {
  (void)arg;
  weft_sleep(WEFT_MS(2));
  weft_yield();
  return 0;
}

static int pipe_reader(void *arg) {
  int fd = *(int *)arg;
  int r = weft_wait_fd_until(fd, WEFT_READABLE, weft_now() + WEFT_SEC(5));
  return r > 0 ? 0 : r;
}

static int pipe_writer(void *arg) {
  int fd = *(int *)arg;
  weft_sleep(WEFT_MS(5));
  return write(fd, "x", 1) == 1 ? 0 : -errno;
}

static int ten_children_main(void *arg) {
  (void)arg;
  weft_task *t[10];
  int p[2];
  cr_assert_eq(pipe(p), 0);
  for (int i = 0; i < 8; i++)
    t[i] = weft_spawn(child_work, NULL, NULL);
  t[8] = weft_spawn(pipe_reader, &p[0], NULL);
  t[9] = weft_spawn(pipe_writer, &p[1], NULL);
  int rc = 0;
  for (int i = 0; i < 10; i++)
    rc |= weft_join(t[i]);
  close(p[0]);
  close(p[1]);
  return rc;
}

/* An instrument installed through weft_config sees the whole loop: one
 * task_spawned and one task_exited per task (main + 10), balanced
 * step_begin/step_end that never nest, each task spawned before it first
 * runs, scheduling, and before_poll/after_poll around each poll (a
 * positive timeout while tasks sleep, >= 1 event when a pipe becomes
 * readable); the hooks get instrument_arg. */
Test(instrument, config_instrument_counts, .timeout = 10) {
  counts c = {0};
  c.expect_arg = &c;
  c.max_timeout = -2;
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.instrument = &all_hooks;
  cfg.instrument_arg = &c;
  cr_assert_eq(weft_run_with(&cfg, ten_children_main, NULL), 0);
  cr_assert_eq(c.bad_arg, 0);
  cr_assert_eq(c.spawned, 11, "spawned %d", c.spawned);
  cr_assert_eq(c.exited, 11, "exited %d", c.exited);
  cr_assert_eq(c.step_begin, c.step_end);
  cr_assert_geq(c.step_begin, 11 + 8 * 2);
  cr_assert_eq(c.nesting_errors, 0);
  cr_assert_null(c.running);
  cr_assert_geq(c.scheduled, 10);
  cr_assert_geq(c.before_poll, 1);
  cr_assert_eq(c.before_poll, c.after_poll);
  cr_assert_gt(c.max_timeout, 0, "no poll with a timeout while sleeping");
  cr_assert_geq(c.max_events, 1, "no poll reported the pipe event");
}

/* ---------------------------------------------------------------- */

static int order_main(void *arg) {
  counts *c = arg;
  cr_assert_eq(weft_instrument_add(&all_hooks, c), 0);
  weft_task *t[5];
  for (int i = 0; i < 5; i++)
    t[i] = weft_spawn(child_work, NULL, NULL);
  int n_after_spawn = c->spawned;
  cr_expect_eq(n_after_spawn, 5, "task_spawned runs at spawn time");
  for (int i = 0; i < 5; i++)
    weft_join(t[i]);
  cr_assert_eq(weft_instrument_remove(&all_hooks, c), 0);
  /* after removal: not called any more */
  int before = c->spawned + c->exited + c->step_begin;
  weft_task *u = weft_spawn(child_work, NULL, NULL);
  weft_join(u);
  cr_expect_eq(c->spawned + c->exited + c->step_begin, before,
               "hooks still called after weft_instrument_remove");
  return 0;
}

/* An instrument added from a task (and removed before main returns)
 * counts exactly the tasks spawned meanwhile: 5 spawned, 5 exited;
 * step_begin and step_end balance (the add happens inside main's step
 * and the remove too, so the missing begin and end cancel out); after
 * removal nothing is called. */
Test(instrument, add_remove_at_runtime, .timeout = 10) {
  counts c = {0};
  c.expect_arg = &c;
  cr_assert_eq(weft_run(order_main, &c), 0);
  cr_assert_eq(c.spawned, 5);
  cr_assert_eq(c.exited, 5);
  cr_assert_eq(c.step_begin, c.step_end);
  cr_assert_geq(c.step_begin, 5);
  cr_assert_eq(c.bad_arg, 0);
}

/* ---------------------------------------------------------------- */

static void h_begin_order(weft_task *t, void *arg) {
  counts *c = arg;
  if (!known(c, t) && t != c->expect_running)
    c->order_errors++;
  h_begin(t, arg);
}

static const weft_instrument order_hooks = {
    .task_spawned = h_spawned,
    .step_begin = h_begin_order,
    .step_end = h_end,
};

static int spawn_then_run(void *arg) {
  counts *c = arg;
  /* we are inside main's step: pretend its step_begin was seen */
  c->expect_running = c->running = weft_current();
  cr_assert_eq(weft_instrument_add(&order_hooks, c), 0);
  weft_spawn_opts eager = {.eager = true};
  weft_task *a = weft_spawn(child_work, NULL, &eager);
  weft_task *b = weft_spawn(child_work, NULL, NULL);
  weft_join(a);
  weft_join(b);
  weft_instrument_remove(&order_hooks, c);
  return 0;
}

/* task_spawned is called for a task before its first step_begin, also
 * for an eager task (only hooks that are set are called: NULL members
 * are skipped). */
Test(instrument, spawned_before_first_step, .timeout = 10) {
  counts c = {0};
  c.expect_arg = &c;
  cr_assert_eq(weft_run(spawn_then_run, &c), 0);
  cr_assert_eq(c.spawned, 2);
  cr_assert_eq(c.order_errors, 0);
}

/* ---------------------------------------------------------------- */

typedef struct {
  int add[9];
  int rm_unknown, rm_twice, rm_null, add_null;
  int readd, rm_all[8];
  int add_empty, rm_empty;
} err_state;

static int errors_main(void *arg) {
  err_state *s = arg;
  static counts slots[9];
  static const weft_instrument other = {.step_begin = h_begin};
  static const weft_instrument empty = {0};
  for (int i = 0; i < 9; i++)
    s->add[i] = weft_instrument_add(&all_hooks, &slots[i]);
  s->rm_unknown = weft_instrument_remove(&other, NULL);
  s->rm_null = weft_instrument_remove(NULL, NULL);
  s->add_null = weft_instrument_add(NULL, NULL);
  cr_assert_eq(weft_instrument_remove(&all_hooks, &slots[3]), 0);
  s->rm_twice = weft_instrument_remove(&all_hooks, &slots[3]);
  s->readd = weft_instrument_add(&all_hooks, &slots[3]);
  for (int i = 0; i < 8; i++)
    s->rm_all[i] = weft_instrument_remove(&all_hooks, &slots[i]);
  s->add_empty = weft_instrument_add(&empty, NULL);
  weft_yield(); /* all-NULL hooks: nothing to call, nothing crashes */
  s->rm_empty = weft_instrument_remove(&empty, NULL);
  return 0;
}

/* weft_instrument_add/remove: 8 fit, the 9th is -ENOSPC; NULL is -EINVAL;
 * removing an unknown or already removed instrument is -ENOENT; a freed
 * slot can be reused; an instrument with every hook NULL is accepted. */
Test(instrument, add_remove_errors, .timeout = 10) {
  err_state s = {0};
  cr_assert_eq(weft_run(errors_main, &s), 0);
  for (int i = 0; i < 8; i++)
    cr_assert_eq(s.add[i], 0, "add %d", i);
  cr_assert_eq(s.add[8], -ENOSPC);
  cr_assert_eq(s.rm_unknown, -ENOENT);
  cr_assert_eq(s.rm_null, -EINVAL);
  cr_assert_eq(s.add_null, -EINVAL);
  cr_assert_eq(s.rm_twice, -ENOENT);
  cr_assert_eq(s.readd, 0);
  for (int i = 0; i < 8; i++)
    cr_assert_eq(s.rm_all[i], 0, "remove %d", i);
  cr_assert_eq(s.add_empty, 0);
  cr_assert_eq(s.rm_empty, 0);
}

/* Without a loop on the thread, add/remove return WEFT_ENOTASK. */
Test(instrument, no_loop, .timeout = 10) {
  counts c = {0};
  cr_assert_eq(weft_instrument_add(&all_hooks, &c), WEFT_ENOTASK);
  cr_assert_eq(weft_instrument_remove(&all_hooks, &c), WEFT_ENOTASK);
  cr_assert_eq(c.spawned, 0);
}

/* ---------------------------------------------------------------- */

typedef struct {
  counts a, b;
} two_counts;

static int two_main(void *arg) {
  two_counts *s = arg;
  cr_assert_eq(weft_instrument_add(&all_hooks, &s->a), 0);
  cr_assert_eq(weft_instrument_add(&all_hooks, &s->b), 0);
  weft_task *t = weft_spawn(child_work, NULL, NULL);
  weft_join(t);
  weft_instrument_remove(&all_hooks, &s->b);
  weft_instrument_remove(&all_hooks, &s->a);
  return 0;
}

/* The same hooks added twice with different args are two instruments:
 * each sees every event. */
Test(instrument, two_instruments, .timeout = 10) {
  two_counts s;
  memset(&s, 0, sizeof s);
  s.a.expect_arg = &s.a;
  s.b.expect_arg = &s.b;
  cr_assert_eq(weft_run(two_main, &s), 0);
  cr_assert_eq(s.a.spawned, 1);
  cr_assert_eq(s.b.spawned, 1);
  cr_assert_eq(s.a.exited, 1);
  cr_assert_eq(s.b.exited, 1);
  cr_assert_eq(s.a.step_begin, s.b.step_begin);
  cr_assert_eq(s.a.bad_arg + s.b.bad_arg, 0);
}
