/*
 * test_error.c -- weft_strerror: every code weft returns is named and
 * explained in weft's words (not libc's), WEFT_E* codes, positive values,
 * codes weft does not know (libc's text), calls from several threads at
 * once, and the reports that print codes (weft_errors_print, debug).
 */
#include <limits.h>
#include <pthread.h>

#include "helpers.h"

typedef struct {
  int code; /* positive errno, or a WEFT_E* code (negative) */
  const char *name;
} named_code;

#define C(x) {x, #x}

/* Every code the library returns today or passes on from the system,
 * and those the socket layer will return. */
static const named_code codes[] = {
    /* weft's own */
    C(WEFT_EGROUP), C(WEFT_ENOTASK), C(WEFT_ELOOP),
    C(WEFT_ENOTSTARTED), C(WEFT_EINCOMPLETE), C(WEFT_ELIMIT),
    C(WEFT_EEND),
    /* errno */
    C(ECANCELED),     C(ETIMEDOUT),     C(EDEADLK),       C(EBUSY),
    C(EAGAIN),        C(EALREADY),      C(ECHILD),        C(ESRCH),
    C(EIDRM),         C(EOWNERDEAD),    C(ESHUTDOWN),     C(EPIPE),
    C(EOVERFLOW),     C(EPERM),         C(EXDEV),         C(EINVAL),        C(ERANGE),
    C(EEXIST),        C(ENOENT),        C(ENOSPC),        C(ENOMEM),
    C(EMFILE),        C(ENFILE),        C(ENOBUFS),       C(ENOSYS),
    C(EBADF),         C(EACCES),        C(EISDIR),        C(ENAMETOOLONG),
    C(EIO),           C(EINTR),         C(ECONNRESET),    C(ECONNREFUSED),
    C(ECONNABORTED),  C(EHOSTUNREACH),  C(ENETUNREACH),   C(ENETDOWN),
    C(EADDRINUSE),    C(EADDRNOTAVAIL), C(ENOTCONN),      C(EISCONN),
    C(EAFNOSUPPORT),  C(EMSGSIZE),      C(EPROTO),        C(ENOTSOCK),
    C(ENOTSUP),       C(ENXIO),         C(EDESTADDRREQ),
};
#define NCODES ((int)(sizeof codes / sizeof codes[0]))

/* The value weft returns for a code of the table. */
static int returned(const named_code *c) {
  return c->code < 0 ? c->code : -c->code;
}

/* s is "<name>: <something>". */
static bool starts_with_name(const char *s, const char *name) {
  size_t n = strlen(name);
  return strncmp(s, name, n) == 0 && s[n] == ':' && s[n + 1] == ' ' &&
         s[n + 2] != '\0';
}

/* ---------------------------------------------------------------- */
/* the texts                                                         */
/* ---------------------------------------------------------------- */

/* Each code weft returns gives "<NAME>: <meaning in weft>": the name
 * first, then a text that is not libc's (neither equal to it nor
 * containing it), and no two codes share a text. */
Test(error, every_code_named_in_weft_words, .timeout = 10) {
  for (int i = 0; i < NCODES; i++) {
    const char *s = weft_strerror(returned(&codes[i]));
    cr_assert_not_null(s, "%s", codes[i].name);
    cr_assert(starts_with_name(s, codes[i].name), "%s gives \"%s\"",
              codes[i].name, s);
    if (codes[i].code > 0) {
      const char *libc = strerror(codes[i].code);
      cr_assert_str_neq(s, libc, "%s", codes[i].name);
      cr_assert_null(strstr(s, libc), "%s gives libc's \"%s\"",
                     codes[i].name, libc);
    }
    cr_assert_null(strstr(s, "unknown"), "%s gives \"%s\"", codes[i].name,
                   s);
    for (int j = 0; j < i; j++)
      cr_assert_str_neq(s, weft_strerror(returned(&codes[j])), "%s and %s",
                        codes[i].name, codes[j].name);
  }
}

/* The texts the issue asked for read as weft means them. */
Test(error, texts_say_what_happened_in_weft, .timeout = 10) {
  cr_assert_str_eq(weft_strerror(-ECANCELED),
                   "ECANCELED: cancelled (a cancel scope around the call "
                   "was cancelled)");
  cr_assert_not_null(strstr(weft_strerror(-ETIMEDOUT), "a deadline passed"));
  cr_assert_not_null(strstr(weft_strerror(-ESHUTDOWN), "queue"));
  cr_assert_not_null(strstr(weft_strerror(-EOVERFLOW), "task_done"));
  cr_assert_not_null(strstr(weft_strerror(-EIDRM), "freed"));
  cr_assert_not_null(strstr(weft_strerror(-EOWNERDEAD), "lock"));
  cr_assert_not_null(strstr(weft_strerror(WEFT_EGROUP), "group"));
  cr_assert_str_eq(weft_strerror(0), "success");
}

/* Same pointer on every call: the strings are static. */
Test(error, texts_are_static, .timeout = 10) {
  for (int i = 0; i < NCODES; i++) {
    int c = returned(&codes[i]);
    cr_assert_eq((const void *)weft_strerror(c),
                 (const void *)weft_strerror(c), "%s", codes[i].name);
  }
  cr_assert_eq((const void *)weft_strerror(-EXDEV),
               (const void *)weft_strerror(-EXDEV));
}

static int noop(void *arg) {
  (void)arg;
  return 0;
}

/* A positive value names the same code as its negation, WEFT_E* codes
 * included; a constructor's errno is one the C library names too. */
Test(error, positive_codes, .timeout = 10) {
  for (int i = 0; i < NCODES; i++) {
    int c = returned(&codes[i]);
    cr_assert_str_eq(weft_strerror(-c), weft_strerror(c), "%s",
                     codes[i].name);
  }
  cr_assert_str_eq(weft_strerror(EROFS), weft_strerror(-EROFS));
  cr_assert_str_eq(weft_strerror(987654), "unknown error");
  /* errno from a constructor called with no loop on the thread */
  errno = 0;
  cr_assert_null(weft_spawn(noop, NULL, NULL));
  cr_assert_eq(errno, EPERM);
  cr_assert(starts_with_name(weft_strerror(errno), "EPERM"),
            "errno %d: %s", errno, weft_strerror(errno));
}

/* Codes weft does not name: libc's text for an errno value, "unknown
 * error" for what neither knows, INT_MIN and INT_MAX included. */
Test(error, unknown_codes, .timeout = 10) {
  int others[] = {EMLINK, EROFS, ESPIPE, ENOTEMPTY, ELOOP};
  for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
    const char *s = weft_strerror(-others[i]);
    cr_assert_not_null(s);
    cr_assert_str_eq(s, strerror(others[i]), "errno %d", others[i]);
  }
  cr_assert_str_eq(weft_strerror(-987654), "unknown error");
  cr_assert_str_eq(weft_strerror(-10000), "unknown error");
  cr_assert_str_eq(weft_strerror(-10099), "unknown error");
  cr_assert_str_eq(weft_strerror(INT_MIN), "unknown error");
  cr_assert_str_eq(weft_strerror(INT_MAX), "unknown error");
  cr_assert_str_eq(weft_strerror(-INT_MAX), "unknown error");
}

/* ---------------------------------------------------------------- */
/* codes as the library returns them                                 */
/* ---------------------------------------------------------------- */

typedef struct {
  int shutdown_put, task_done, in_scope, scope_close, bounded_release,
      barrier, join_self, release_unheld;
} got_state;

static int got_main(void *arg) {
  got_state *s = arg;
  int one = 1;
  weft_queue *q = weft_queue_new(1, sizeof(int));
  cr_assert_not_null(q);
  s->task_done = weft_queue_task_done(q);
  cr_assert_eq(weft_queue_shutdown(q, false), 0);
  s->shutdown_put = weft_queue_put(q, &one);
  cr_assert_eq(weft_queue_free(q), 0);

  weft_scope sc;
  cr_assert_eq(weft_scope_open_after(&sc, WEFT_MS(1)), 0);
  s->in_scope = weft_sleep(WEFT_SEC(10));
  s->scope_close = weft_scope_close(&sc);

  weft_sem *sem = weft_sem_new_bounded(1);
  cr_assert_not_null(sem);
  s->bounded_release = weft_sem_release(sem);
  cr_assert_eq(weft_sem_free(sem), 0);

  weft_barrier *b = weft_barrier_new(2);
  cr_assert_not_null(b);
  cr_assert_eq(weft_barrier_abort(b), 0);
  s->barrier = weft_barrier_wait(b);
  cr_assert_eq(weft_barrier_free(b), 0);

  s->join_self = weft_join(weft_current());

  weft_lock *l = weft_lock_new();
  cr_assert_not_null(l);
  s->release_unheld = weft_lock_release(l);
  cr_assert_eq(weft_lock_free(l), 0);
  return 0;
}

static void expect_named(int rc, int want, const char *name) {
  cr_assert_eq(rc, want, "%s: got %d (%s)", name, rc, weft_strerror(rc));
  cr_assert(starts_with_name(weft_strerror(rc), name), "%s: \"%s\"", name,
            weft_strerror(rc));
}

/* The codes real calls return carry their names: a put after shutdown,
 * task_done with nothing put, a scope's deadline, a bounded semaphore
 * released too often, a broken barrier, a self-join, an unheld lock, a
 * checkpoint outside a task. */
Test(error, codes_from_real_calls, .timeout = 10) {
  got_state s = {0};
  cr_assert_eq(weft_run(got_main, &s), 0);
  expect_named(s.shutdown_put, -ESHUTDOWN, "ESHUTDOWN");
  expect_named(s.task_done, -EOVERFLOW, "EOVERFLOW");
  expect_named(s.in_scope, -ECANCELED, "ECANCELED");
  expect_named(s.scope_close, -ETIMEDOUT, "ETIMEDOUT");
  expect_named(s.bounded_release, -EOVERFLOW, "EOVERFLOW");
  expect_named(s.barrier, -EPIPE, "EPIPE");
  expect_named(s.join_self, -EDEADLK, "EDEADLK");
  expect_named(s.release_unheld, -EPERM, "EPERM");
  expect_named(weft_sleep(WEFT_MS(1)), WEFT_ENOTASK, "WEFT_ENOTASK");
}

/* ---------------------------------------------------------------- */
/* threads                                                           */
/* ---------------------------------------------------------------- */

#define ROUNDS 2000

typedef struct {
  const char *want[NCODES + 4]; /* texts seen before the threads start */
  int extra[4];
  pthread_barrier_t start;
  int bad;
} mt_state;

static int mt_check(mt_state *s) {
  int bad = 0;
  for (int r = 0; r < ROUNDS; r++) {
    for (int i = 0; i < NCODES; i++) {
      /* positive and negative alike, in an order that differs by round */
      int k = (i + r) % NCODES;
      int c = returned(&codes[k]);
      const char *t = weft_strerror(r & 1 ? -c : c);
      bad += t != s->want[k] || !starts_with_name(t, codes[k].name);
    }
    for (int i = 0; i < 4; i++)
      bad += strcmp(weft_strerror(s->extra[i]), s->want[NCODES + i]) != 0;
  }
  return bad;
}

static void *mt_thread(void *arg) {
  mt_state *s = arg;
  pthread_barrier_wait(&s->start);
  return (void *)(intptr_t)mt_check(s);
}

static int mt_task(void *arg) {
  mt_state *s = arg;
  pthread_barrier_wait(&s->start);
  return mt_check(s);
}

/* Two threads (one of them inside a weft task) call weft_strerror at the
 * same time for every code, known and unknown: each gets the same string
 * (the same static pointer for weft's texts) as before, never a mix. */
Test(error, concurrent_calls, .timeout = 30) {
  static mt_state s; /* large-ish; not on the task's stack */
  s.extra[0] = -EXDEV;
  s.extra[1] = EROFS;
  s.extra[2] = -987654;
  s.extra[3] = 0;
  for (int i = 0; i < NCODES; i++)
    s.want[i] = weft_strerror(returned(&codes[i]));
  for (int i = 0; i < 4; i++) s.want[NCODES + i] = weft_strerror(s.extra[i]);
  cr_assert_eq(pthread_barrier_init(&s.start, NULL, 2), 0);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, mt_thread, &s), 0);
  int in_task = weft_run(mt_task, &s);
  void *in_thread = NULL;
  pthread_join(th, &in_thread);
  pthread_barrier_destroy(&s.start);
  cr_assert_eq(in_task, 0, "%d wrong texts in the task", in_task);
  cr_assert_eq((intptr_t)in_thread, 0, "%d wrong texts in the thread",
               (int)(intptr_t)in_thread);
}

/* ---------------------------------------------------------------- */
/* reports that print codes                                          */
/* ---------------------------------------------------------------- */

static int fail_with(void *arg) {
  return weft_fail((int)(intptr_t)arg, "while %s", "testing");
}

typedef struct {
  int close_rc, print_rc;
  char out[2048];
} report_state;

static int report_main(void *arg) {
  report_state *s = arg;
  weft_group *g = weft_group_open();
  cr_assert_not_null(g);
  gspawn_named(g, fail_with, (void *)(intptr_t)-ESHUTDOWN, "putter");
  gspawn_named(g, fail_with, (void *)(intptr_t)WEFT_ELIMIT, "reader");
  weft_errors *e = NULL;
  s->close_rc = weft_group_close(g, &e);
  int p[2];
  cr_assert_eq(pipe(p), 0);
  s->print_rc = weft_errors_print(e, p[1]);
  close(p[1]);
  drain_fd(p[0], s->out, sizeof s->out);
  close(p[0]);
  weft_errors_free(e);
  return 0;
}

/* weft_errors_print writes each failure with weft's text for its code. */
Test(error, errors_print_uses_weft_texts, .timeout = 10) {
  report_state s = {0};
  cr_assert_eq(weft_run(report_main, &s), 0);
  cr_assert_eq(s.close_rc, WEFT_EGROUP);
  cr_assert_eq(s.print_rc, 0);
  cr_assert_not_null(strstr(s.out, weft_strerror(-ESHUTDOWN)), "%s", s.out);
  cr_assert_not_null(strstr(s.out, "putter: ESHUTDOWN: "), "%s", s.out);
  cr_assert_not_null(strstr(s.out, "reader: WEFT_ELIMIT: "), "%s", s.out);
  cr_assert_null(strstr(s.out, strerror(ESHUTDOWN)), "%s", s.out);
}

/* Debug mode's report of a call made outside a loop names the code the
 * same way (WEFT_DEBUG is read once per process; Criterion runs each
 * test in its own process, and nothing ran before this one here). */
Test(error, debug_report_uses_weft_texts, .timeout = 10) {
  setenv("WEFT_DEBUG", "1", 1);
  int p[2];
  cr_assert_eq(pipe(p), 0);
  fflush(stderr);
  int saved = dup(2);
  cr_assert_geq(saved, 0);
  dup2(p[1], 2);
  int rc = weft_dump_tasks(stdout, WEFT_DUMP_TREE);
  dup2(saved, 2);
  close(saved);
  close(p[1]);
  char out[1024];
  drain_fd(p[0], out, sizeof out);
  close(p[0]);
  cr_assert_eq(rc, WEFT_ENOTASK);
  cr_assert_not_null(strstr(out, weft_strerror(WEFT_ENOTASK)), "%s", out);
  cr_assert_not_null(strstr(out, ": WEFT_ENOTASK: "), "%s", out);
}
