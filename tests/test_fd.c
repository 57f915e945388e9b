/*
 * test_fd.c -- weft_wait_fd: readiness, deadlines, cancellation, bad fds,
 * several waiters.
 */
#include <sys/socket.h>

#include "helpers.h"

typedef struct {
  int p[2];
  tlog log;
  int wait_rc;
  int64_t elapsed;
  char got;
} rd_state;

static int delayed_writer(void *arg) {
  rd_state *s = arg;
  weft_sleep(WEFT_MS(20));
  log_add(&s->log, 1);
  return write(s->p[1], "z", 1) == 1 ? 0 : -errno;
}

static int reader_main(void *arg) {
  rd_state *s = arg;
  cr_assert_eq(pipe(s->p), 0);
  weft_task *w = weft_spawn(delayed_writer, s, NULL);
  int64_t t0 = weft_now();
  s->wait_rc = weft_wait_fd(s->p[0], WEFT_READABLE);
  s->elapsed = weft_now() - t0;
  log_add(&s->log, 2);
  if (read(s->p[0], &s->got, 1) != 1)
    s->got = 0;
  int rc = weft_join(w);
  close(s->p[0]);
  close(s->p[1]);
  return rc;
}

/* weft_wait_fd on an empty pipe blocks (letting other tasks run) until
 * another task writes, then returns a value with WEFT_READABLE set. */
Test(fd, wait_readable, .timeout = 10) {
  rd_state s = {0};
  cr_assert_eq(weft_run(reader_main, &s), 0);
  cr_assert_gt(s.wait_rc, 0);
  cr_assert(s.wait_rc & WEFT_READABLE, "returned 0x%x", s.wait_rc);
  cr_assert_geq(s.elapsed, WEFT_MS(20));
  cr_assert_lt(s.elapsed, T_SLACK);
  int want[] = {1, 2};
  log_expect(&s.log, want, 2);
  cr_assert_eq(s.got, 'z');
}

typedef struct {
  int rc, rc_past;
  int64_t el, el_past;
} to_state;

static int timeout_main(void *arg) {
  to_state *s = arg;
  int p[2];
  cr_assert_eq(pipe(p), 0);
  int64_t t0 = weft_now();
  s->rc = weft_wait_fd_until(p[0], WEFT_READABLE, t0 + WEFT_MS(20));
  s->el = weft_now() - t0;
  t0 = weft_now();
  s->rc_past = weft_wait_fd_until(p[0], WEFT_READABLE, t0 - WEFT_MS(1));
  s->el_past = weft_now() - t0;
  close(p[0]);
  close(p[1]);
  return 0;
}

/* A wait that reaches its deadline returns -ETIMEDOUT (after >= 20 ms);
 * a deadline already past times out at once. */
Test(fd, wait_timeout, .timeout = 10) {
  to_state s = {0};
  cr_assert_eq(weft_run(timeout_main, &s), 0);
  cr_assert_eq(s.rc, -ETIMEDOUT);
  cr_assert_geq(s.el, WEFT_MS(20));
  cr_assert_lt(s.el, T_SLACK);
  cr_assert_eq(s.rc_past, -ETIMEDOUT);
  cr_assert_lt(s.el_past, WEFT_MS(500));
}

typedef struct {
  int p[2];
  int rc_task, rc_scope, scope_close;
  int64_t el_task, t0;
} cn_state;

static int waiting_task(void *arg) {
  cn_state *s = arg;
  s->rc_task = weft_wait_fd(s->p[0], WEFT_READABLE);
  s->el_task = weft_now() - s->t0; /* from before the root's 10 ms sleep */
  return s->rc_task;
}

static int cancel_main(void *arg) {
  cn_state *s = arg;
  cr_assert_eq(pipe(s->p), 0);
  weft_task *t = weft_spawn(waiting_task, s, NULL);
  s->t0 = weft_now();
  weft_sleep(WEFT_MS(10));
  weft_cancel(t);
  cr_assert_eq(weft_join(t), -ECANCELED);
  /* a scope deadline cancels it too */
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(10));
  s->rc_scope = weft_wait_fd(s->p[0], WEFT_READABLE);
  s->scope_close = weft_scope_close(&sc);
  close(s->p[0]);
  close(s->p[1]);
  return 0;
}

/* A task waiting on an fd returns -ECANCELED when cancelled (task cancel
 * or a scope's deadline, which then closes with -ETIMEDOUT). */
Test(fd, wait_cancelled, .timeout = 10) {
  cn_state s = {0};
  cr_assert_eq(weft_run(cancel_main, &s), 0);
  cr_assert_eq(s.rc_task, -ECANCELED);
  cr_assert_geq(s.el_task, WEFT_MS(10));
  cr_assert_lt(s.el_task, T_SLACK);
  cr_assert_eq(s.rc_scope, -ECANCELED);
  cr_assert_eq(s.scope_close, -ETIMEDOUT);
}

typedef struct {
  int closed_rc, neg_rc, file_rc, noev_rc;
} bad_state;

static int bad_fds_main(void *arg) {
  bad_state *s = arg;
  int p[2];
  cr_assert_eq(pipe(p), 0);
  close(p[0]);
  close(p[1]);
  s->closed_rc = weft_wait_fd_until(p[0], WEFT_READABLE, weft_now() + WEFT_SEC(1));
  s->neg_rc = weft_wait_fd_until(-1, WEFT_READABLE, weft_now() + WEFT_SEC(1));
  FILE *f = tmpfile();
  cr_assert_not_null(f);
  s->file_rc = weft_wait_fd_until(fileno(f), WEFT_READABLE, weft_now() + WEFT_SEC(1));
  s->noev_rc = weft_wait_fd_until(fileno(f), 0, weft_now() + WEFT_SEC(1));
  fclose(f);
  return 0;
}

/* A closed fd (or -1) gives -EBADF; a regular file, which epoll refuses,
 * gives -EPERM; no events is -EINVAL. None of them blocks. */
Test(fd, wait_bad_fds, .timeout = 10) {
  bad_state s = {0};
  cr_assert_eq(weft_run(bad_fds_main, &s), 0);
  cr_assert_eq(s.closed_rc, -EBADF);
  cr_assert_eq(s.neg_rc, -EBADF);
  cr_assert_eq(s.file_rc, -EPERM);
  cr_assert_eq(s.noev_rc, -EINVAL);
}

typedef struct {
  int rc;
  int64_t el;
  int rc_both;
} wr_state;

static int writable_main(void *arg) {
  wr_state *s = arg;
  int p[2];
  cr_assert_eq(pipe(p), 0);
  int64_t t0 = weft_now();
  s->rc = weft_wait_fd_until(p[1], WEFT_WRITABLE, weft_now() + WEFT_SEC(5));
  s->el = weft_now() - t0;
  s->rc_both = weft_wait_fd_until(p[1], WEFT_READABLE | WEFT_WRITABLE,
                            weft_now() + WEFT_SEC(5));
  close(p[0]);
  close(p[1]);
  return 0;
}

/* The write end of a fresh pipe is writable at once. */
Test(fd, wait_writable_fresh_pipe, .timeout = 10) {
  wr_state s = {0};
  cr_assert_eq(weft_run(writable_main, &s), 0);
  cr_assert_gt(s.rc, 0);
  cr_assert(s.rc & WEFT_WRITABLE, "returned 0x%x", s.rc);
  cr_assert_not(s.rc & WEFT_READABLE);
  cr_assert_lt(s.el, WEFT_MS(500));
  cr_assert_gt(s.rc_both, 0);
  cr_assert(s.rc_both & WEFT_WRITABLE);
}

typedef struct {
  int first, second;
} lvl_state;

static int level_main(void *arg) {
  lvl_state *s = arg;
  int p[2];
  cr_assert_eq(pipe(p), 0);
  cr_assert_eq(write(p[1], "ab", 2), 2);
  s->first = weft_wait_fd_until(p[0], WEFT_READABLE, weft_now() + WEFT_SEC(2));
  /* data not consumed: still readable (level-triggered readiness) */
  s->second = weft_wait_fd_until(p[0], WEFT_READABLE, weft_now() + WEFT_SEC(2));
  close(p[0]);
  close(p[1]);
  return 0;
}

/* Readiness is reported as a level: waiting again without reading the
 * data returns readable at once. */
Test(fd, readiness_is_level, .timeout = 10) {
  lvl_state s = {0};
  cr_assert_eq(weft_run(level_main, &s), 0);
  cr_assert_gt(s.first, 0);
  cr_assert(s.first & WEFT_READABLE);
  cr_assert_gt(s.second, 0, "second wait returned %d", s.second);
  cr_assert(s.second & WEFT_READABLE);
}

typedef struct {
  int rc;
} hup_state;

static int hangup_main(void *arg) {
  hup_state *s = arg;
  int p[2];
  cr_assert_eq(pipe(p), 0);
  close(p[1]);
  s->rc = weft_wait_fd_until(p[0], WEFT_READABLE, weft_now() + WEFT_SEC(2));
  close(p[0]);
  return 0;
}

/* A pipe whose write end is closed wakes a reader (readable and/or
 * WEFT_HANGUP). */
Test(fd, hangup_wakes_reader, .timeout = 10) {
  hup_state s = {0};
  cr_assert_eq(weft_run(hangup_main, &s), 0);
  cr_assert_gt(s.rc, 0, "returned %d", s.rc);
  cr_assert(s.rc & (WEFT_READABLE | WEFT_HANGUP));
}

typedef struct {
  int sv[2];
  int a_rc, b_rc, dup_rc;
  tlog log;
} two_state;

static int wait_read_a(void *arg) {
  two_state *s = arg;
  s->a_rc = weft_wait_fd_until(s->sv[0], WEFT_READABLE, weft_now() + WEFT_SEC(5));
  log_add(&s->log, 3);
  return 0;
}

static int two_waiters_main(void *arg) {
  two_state *s = arg;
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, s->sv), 0);
  weft_task *a = weft_spawn(wait_read_a, s, NULL);
  weft_yield(); /* a is now waiting for READABLE on sv[0] */
  weft_yield();
  /* same fd and event from a second task: it waits too (nothing comes) */
  s->dup_rc = weft_wait_fd_until(s->sv[0], WEFT_READABLE, weft_now() + WEFT_MS(50));
  log_add(&s->log, 1);
  /* same fd, other event: fine, and ready at once */
  s->b_rc = weft_wait_fd_until(s->sv[0], WEFT_WRITABLE, weft_now() + WEFT_SEC(1));
  log_add(&s->log, 2);
  cr_assert_eq(write(s->sv[1], "q", 1), 1);
  weft_join(a);
  close(s->sv[0]);
  close(s->sv[1]);
  return 0;
}

/* One task waits for READABLE on a socket; a second task waits for the
 * same fd and event too (until its deadline: nothing arrives); a wait for
 * WRITABLE on the same fd works at once without waking the reader, which
 * wakes when data arrives. */
Test(fd, two_waiters_one_fd, .timeout = 10) {
  two_state s = {0};
  cr_assert_eq(weft_run(two_waiters_main, &s), 0);
  cr_assert_eq(s.dup_rc, -ETIMEDOUT);
  cr_assert_gt(s.b_rc, 0);
  cr_assert(s.b_rc & WEFT_WRITABLE);
  cr_assert_gt(s.a_rc, 0);
  cr_assert(s.a_rc & WEFT_READABLE);
  int want[] = {1, 2, 3};
  log_expect(&s.log, want, 3);
}

typedef struct {
  int rc_reused;
  int timeouts;
} reuse_state;

static int fd_reuse_main(void *arg) {
  reuse_state *s = arg;
  for (int i = 0; i < 3; i++) {
    int p[2];
    cr_assert_eq(pipe(p), 0);
    if (weft_wait_fd_until(p[0], WEFT_READABLE, weft_now() + WEFT_MS(2)) ==
        -ETIMEDOUT)
      s->timeouts++;
    close(p[0]);
    close(p[1]);
  }
  /* the kernel hands out the same numbers again */
  int p[2];
  cr_assert_eq(pipe(p), 0);
  cr_assert_eq(write(p[1], "k", 1), 1);
  s->rc_reused = weft_wait_fd_until(p[0], WEFT_READABLE, weft_now() + WEFT_SEC(2));
  close(p[0]);
  close(p[1]);
  return 0;
}

/* Closing an fd after waiting on it and reusing its number for a new
 * pipe works: no stale registration hides the new fd's readiness. */
Test(fd, fd_number_reuse, .timeout = 10) {
  reuse_state s = {0};
  cr_assert_eq(weft_run(fd_reuse_main, &s), 0);
  cr_assert_eq(s.timeouts, 3);
  cr_assert_gt(s.rc_reused, 0, "returned %d", s.rc_reused);
  cr_assert(s.rc_reused & WEFT_READABLE);
}

#define NPIPES 100

typedef struct {
  int p[NPIPES][2];
  int rc[NPIPES];
  int order[NPIPES];
  int n;
} many_state;

typedef struct {
  many_state *s;
  int i;
} many_arg;

static int many_reader(void *arg) {
  many_arg *a = arg;
  a->s->rc[a->i] =
      weft_wait_fd_until(a->s->p[a->i][0], WEFT_READABLE, weft_now() + WEFT_SEC(5));
  a->s->order[a->s->n++] = a->i;
  return 0;
}

static int many_main(void *arg) {
  many_state *s = arg;
  static many_arg a[NPIPES];
  weft_task *t[NPIPES];
  for (int i = 0; i < NPIPES; i++) {
    cr_assert_eq(pipe(s->p[i]), 0);
    a[i] = (many_arg){s, i};
    t[i] = weft_spawn(many_reader, &a[i], NULL);
  }
  weft_sleep(WEFT_MS(5));
  for (int i = NPIPES - 1; i >= 0; i--) {
    cr_assert_eq(write(s->p[i][1], "m", 1), 1);
    weft_sleep(WEFT_US(200)); /* one wake-up per poll */
  }
  for (int i = 0; i < NPIPES; i++) {
    weft_join(t[i]);
    close(s->p[i][0]);
    close(s->p[i][1]);
  }
  return 0;
}

/* 100 tasks wait on 100 pipes; written to in reverse order, each reader
 * wakes with READABLE, in the order of the writes. */
Test(fd, many_fds, .timeout = 10) {
  static many_state s;
  memset(&s, 0, sizeof s);
  cr_assert_eq(weft_run(many_main, &s), 0);
  cr_assert_eq(s.n, NPIPES);
  for (int i = 0; i < NPIPES; i++) {
    cr_assert_gt(s.rc[i], 0, "reader %d: %d", i, s.rc[i]);
    cr_assert(s.rc[i] & WEFT_READABLE);
    cr_assert_eq(s.order[i], NPIPES - 1 - i);
  }
}

/* ---- the bounded spin before the loop sleeps (weft_config.poll_spin) ---- */

#include <pthread.h>

typedef struct {
  int p[2];
  int64_t sleep_took;
  int64_t cpu_ns;
  int rc;
} spin_state;

static int64_t cpu_now(void) { /* CPU time of the calling thread */
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int never_ready(void *arg) {
  spin_state *s = arg;
  return weft_wait_fd(s->p[0], WEFT_READABLE); /* cancelled at the end */
}

static int spin_timer_main(void *arg) {
  spin_state *s = arg;
  cr_assert_eq(pipe(s->p), 0);
  weft_task *w = weft_spawn(never_ready, s, NULL);
  weft_yield(); /* w waits on the fd: the loop would spin before sleeping */
  int64_t t0 = weft_now();
  weft_sleep(WEFT_MS(10));
  s->sleep_took = weft_now() - t0;
  weft_cancel(w);
  s->rc = weft_join(w);
  close(s->p[0]);
  close(s->p[1]);
  return 0;
}

/* A spin longer than the next timer is cut at the timer: a 10 ms sleep
 * with a 10 s spin configured takes about 10 ms, not 10 s. */
Test(fd, spin_bounded_by_timers, .timeout = 10) {
  spin_state s = {0};
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.poll_spin = WEFT_SEC(10);
  cr_assert_eq(weft_run_with(&cfg, spin_timer_main, &s), 0);
  cr_assert_geq(s.sleep_took, WEFT_MS(10));
  cr_assert_lt(s.sleep_took, WEFT_MS(10) + T_SLACK, "%lld", (long long)s.sleep_took);
  cr_assert_eq(s.rc, -ECANCELED);
}

static void *late_writer(void *arg) {
  spin_state *s = arg;
  struct timespec ts = {0, 300 * 1000 * 1000};
  nanosleep(&ts, NULL);
  return write(s->p[1], "x", 1) == 1 ? NULL : (void *)1;
}

static int idle_main(void *arg) {
  spin_state *s = arg;
  cr_assert_eq(pipe(s->p), 0);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, late_writer, s), 0);
  int64_t c0 = cpu_now();
  s->rc = weft_wait_fd(s->p[0], WEFT_READABLE);
  s->cpu_ns = cpu_now() - c0;
  pthread_join(th, NULL);
  close(s->p[0]);
  close(s->p[1]);
  return 0;
}

/* With the default spin, a loop idle for 300 ms gives the CPU up: its
 * thread uses a few ms of CPU at most, and the wait still completes when
 * the fd becomes ready (from another thread). */
Test(fd, idle_loop_sleeps, .timeout = 10) {
  spin_state s = {0};
  cr_assert_eq(weft_run(idle_main, &s), 0);
  cr_assert_eq(s.rc, WEFT_READABLE);
  cr_assert_lt(s.cpu_ns, WEFT_MS(60), "cpu %lld ns", (long long)s.cpu_ns);
}

static int nospin_main(void *arg) {
  spin_state *s = arg;
  cr_assert_eq(pipe(s->p), 0);
  cr_assert_eq(write(s->p[1], "y", 1), 1);
  s->rc = weft_wait_fd(s->p[0], WEFT_READABLE);
  close(s->p[0]);
  close(s->p[1]);
  return 0;
}

/* poll_spin < 0 turns the spin off; waits work the same. */
Test(fd, spin_off, .timeout = 10) {
  spin_state s = {0};
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.poll_spin = -1;
  cr_assert_eq(weft_run_with(&cfg, nospin_main, &s), 0);
  cr_assert_eq(s.rc, WEFT_READABLE);
}
