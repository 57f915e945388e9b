/*
 * weft_config.shutdown_signals: asyncio.run's graceful end on SIGINT and
 * SIGTERM, the second SIGINT that ends the process, the Runner's per-run
 * handler, several loops, and the dispositions put back afterwards.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "helpers.h"

static weft_config shutdown_cfg(void) {
  weft_config c;
  weft_config_init(&c);
  c.shutdown_signals = true;
  return c;
}

static void (*handler_of(int sig))(int) {
  struct sigaction sa;
  sigaction(sig, NULL, &sa);
  return sa.sa_handler;
}

/* Sleeps long; records what the sleep returned. */
static int sleep_main(void *arg) {
  int *got = arg;
  *got = weft_sleep(WEFT_SEC(20));
  return *got;
}

static int raise_main(void *arg) {
  int sig = *(int *)arg;
  raise(sig);
  int rc = weft_sleep(WEFT_SEC(20));
  *(int *)arg = rc;
  return rc;
}

Test(shutdown, sigint_cancels_main, .timeout = 10) {
  void (*before_int)(int) = handler_of(SIGINT);
  void (*before_term)(int) = handler_of(SIGTERM);
  weft_config c = shutdown_cfg();
  int v = SIGINT;
  cr_assert_eq(weft_run_with(&c, raise_main, &v), -ECANCELED);
  cr_assert_eq(v, -ECANCELED);
  cr_assert_eq(handler_of(SIGINT), before_int);
  cr_assert_eq(handler_of(SIGTERM), before_term);
}

Test(shutdown, sigterm_cancels_main, .timeout = 10) {
  weft_config c = shutdown_cfg();
  int v = SIGTERM;
  cr_assert_eq(weft_run_with(&c, raise_main, &v), -ECANCELED);
  cr_assert_eq(v, -ECANCELED);
}

/* The main task may clean up after the cancel: the rest of its body runs
 * (a shielded scope lets it wait), and the run returns what it returns. */
static int graceful_main(void *arg) {
  int *steps = arg;
  raise(SIGTERM);
  if (weft_sleep(WEFT_SEC(20)) != -ECANCELED) return -EPROTO;
  (*steps)++;
  weft_scope sc;
  weft_scope_open_shielded(&sc, WEFT_FOREVER);
  int rc = weft_sleep(WEFT_MS(20));
  weft_scope_close(&sc);
  if (rc == 0) (*steps)++;
  return 0;
}

Test(shutdown, main_cleans_up, .timeout = 10) {
  weft_config c = shutdown_cfg();
  int steps = 0;
  cr_assert_eq(weft_run_with(&c, graceful_main, &steps), 0);
  cr_assert_eq(steps, 2);
}

/* A signal sent by another thread (the kernel picks any thread that does
 * not block it) reaches the loop all the same. */
static void *kill_later(void *arg) {
  usleep(50 * 1000);
  kill(getpid(), *(int *)arg);
  return NULL;
}

Test(shutdown, from_another_thread, .timeout = 10) {
  weft_config c = shutdown_cfg();
  int sig = SIGTERM, got = 1;
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, kill_later, &sig), 0);
  int64_t t0 = weft_now();
  cr_assert_eq(weft_run_with(&c, sleep_main, &got), -ECANCELED);
  cr_assert_eq(got, -ECANCELED);
  cr_assert_lt(weft_now() - t0, T_SLACK);
  pthread_join(th, NULL);
}

/* Without the option the signal is not caught by weft. */
static int check_default(void *arg) {
  (void)arg;
  return handler_of(SIGINT) == SIG_DFL ? 0 : -EPROTO;
}

Test(shutdown, off_by_default, .timeout = 10) {
  signal(SIGINT, SIG_DFL);
  cr_assert_eq(weft_run(check_default, NULL), 0);
}

/* In a child: the first SIGINT cancels main; main then ignores that and
 * waits shielded; the second SIGINT ends the process by SIGINT. */
static int stubborn_main(void *arg) {
  (void)arg;
  raise(SIGINT);
  if (weft_sleep(WEFT_SEC(20)) != -ECANCELED) return -EPROTO;
  weft_scope sc;
  weft_scope_open_shielded(&sc, WEFT_FOREVER);
  raise(SIGINT); /* the second: the process ends here */
  weft_sleep(WEFT_SEC(20));
  weft_scope_close(&sc);
  return 0;
}

Test(shutdown, second_sigint_ends_process, .timeout = 20) {
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    weft_config c = shutdown_cfg();
    int rc = weft_run_with(&c, stubborn_main, NULL);
    _exit(rc == 0 ? 3 : 4);
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFSIGNALED(st), "status %#x", st);
  cr_assert_eq(WTERMSIG(st), SIGINT);
}

/* A second SIGTERM is not a SIGINT: it cancels again (a no-op for a
 * cancelled task) and the run ends normally. */
static int two_terms(void *arg) {
  (void)arg;
  raise(SIGTERM);
  if (weft_sleep(WEFT_SEC(20)) != -ECANCELED) return -EPROTO;
  raise(SIGTERM);
  weft_scope sc;
  weft_scope_open_shielded(&sc, WEFT_FOREVER);
  int rc = weft_sleep(WEFT_MS(10));
  weft_scope_close(&sc);
  return rc == 0 ? 7 : rc;
}

Test(shutdown, second_sigterm_is_not_fatal, .timeout = 10) {
  weft_config c = shutdown_cfg();
  cr_assert_eq(weft_run_with(&c, two_terms, NULL), 7);
}

/* asyncio.Runner: each run counts its own signals, and between runs the
 * old disposition is back. */
static int plain_main(void *arg) {
  *(void (**)(int))arg = handler_of(SIGINT);
  return 0;
}

Test(shutdown, runner_per_run, .timeout = 10) {
  signal(SIGINT, SIG_IGN);
  weft_config c = shutdown_cfg();
  weft_runner *r = weft_runner_open(&c);
  cr_assert_not_null(r);
  int v = SIGINT;
  cr_assert_eq(weft_runner_run(r, raise_main, &v), -ECANCELED);
  cr_assert_eq(handler_of(SIGINT), SIG_IGN); /* between runs */
  /* A SIGINT now is the old disposition's (ignored), and does not cancel
   * the next run. */
  raise(SIGINT);
  void (*inside)(int) = NULL;
  cr_assert_eq(weft_runner_run(r, plain_main, &inside), 0);
  cr_assert_neq(inside, SIG_IGN);
  cr_assert_neq(inside, SIG_DFL);
  /* The second run's first SIGINT only cancels (the count starts again). */
  v = SIGINT;
  cr_assert_eq(weft_runner_run(r, raise_main, &v), -ECANCELED);
  cr_assert_eq(weft_runner_close(r), 0);
  cr_assert_eq(handler_of(SIGINT), SIG_IGN);
  signal(SIGINT, SIG_DFL);
}

/* Two loops on two threads with the option: one SIGTERM cancels both
 * mains. */
static void *loop_thread(void *arg) {
  weft_config c = shutdown_cfg();
  int *got = arg;
  weft_run_with(&c, sleep_main, got);
  return NULL;
}

Test(shutdown, two_loops, .timeout = 10) {
  int got[2] = {1, 1};
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    cr_assert_eq(pthread_create(&th[i], NULL, loop_thread, &got[i]), 0);
  usleep(100 * 1000); /* both in their sleep */
  kill(getpid(), SIGTERM);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  cr_assert_eq(got[0], -ECANCELED);
  cr_assert_eq(got[1], -ECANCELED);
  cr_assert_eq(handler_of(SIGTERM), SIG_DFL);
}

/* Child tasks of the cancelled main: a group's children are cancelled
 * with it, as asyncio's TaskGroup inside the main coroutine. */
static int child_sleep(void *arg) {
  int *n = arg;
  int rc = weft_sleep(WEFT_SEC(20));
  if (rc == -ECANCELED) (*n)++;
  return rc;
}

static int group_main(void *arg) {
  weft_group *g = weft_group_open();
  if (!g) return -errno;
  for (int i = 0; i < 3; i++) weft_group_spawn(g, child_sleep, arg, NULL);
  weft_yield();
  raise(SIGINT);
  int rc = weft_group_close(g, NULL);
  return rc;
}

Test(shutdown, group_children_cancelled, .timeout = 10) {
  weft_config c = shutdown_cfg();
  int n = 0;
  cr_assert_eq(weft_run_with(&c, group_main, &n), -ECANCELED);
  cr_assert_eq(n, 3);
}

/* A signal watch that includes SIGINT takes it while it is open (the
 * main task is not cancelled); once closed, SIGINT cancels again. */
static int watch_main(void *arg) {
  int *rc = arg;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  weft_signal *w = weft_signal_open(&set);
  if (!w) return -errno;
  raise(SIGINT);
  rc[0] = weft_signal_wait(w);
  rc[1] = weft_sleep(WEFT_MS(20)); /* not cancelled */
  weft_signal_close(w);
  raise(SIGINT);
  rc[2] = weft_sleep(WEFT_SEC(20));
  return 0;
}

Test(shutdown, watch_takes_precedence, .timeout = 10) {
  weft_config c = shutdown_cfg();
  int rc[3] = {1, 1, 1};
  cr_assert_eq(weft_run_with(&c, watch_main, rc), 0);
  cr_assert_eq(rc[0], SIGINT);
  cr_assert_eq(rc[1], 0);
  cr_assert_eq(rc[2], -ECANCELED);
}
