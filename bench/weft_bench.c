/*
 * weft-bench -- weft's side of the peer micro-benchmarks.
 *
 *   weft-bench WORKLOAD [--n N]
 *
 * Prints one JSON line per run with the keys, order and definitions of the
 * peer kit (shared/bench/peers/README.md), so weft's lines can be put in
 * the same table as asyncio's and Go's:
 *
 *   {"peer":"weft-0.1","workload":"spawn","n":200000,"ns_per_op":..,
 *    "wall_s":..,"peak_rss_kib":..}            (+ "bytes_per_task" for idle)
 *
 * Every workload runs as the root task of weft_run (the peers' "coroutine
 * given to Runner.run" / Go's main goroutine). The timed region is only the
 * part between the two now_s() calls in each function below: loop creation,
 * teardown and setup (the sleepers delay table) are outside it. --n changes
 * the operation count that ns_per_op divides by (the README's n column);
 * the default is the README's n.
 *
 * Adding a workload is one function `static int w_NAME(struct bench *b)`
 * and one row in `workloads[]`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"

#define STR_(x) #x
#define STR(x) STR_(x)
#define PEER "weft-" STR(WEFT_VERSION_MAJOR) "." STR(WEFT_VERSION_MINOR)

/* One run: filled in by the workload function. */
struct bench {
  long n;               /* operations ns_per_op divides by (in: requested) */
  double wall;          /* seconds of the timed region */
  double ns_per_op;     /* set only when it is not wall / n (sleepers) */
  int has_ns_per_op;
  long bytes_per_task;  /* idle only */
  int has_bytes_per_task;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long maxrss_kib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss; /* KiB on Linux */
}

/* Rounds half away from zero (no libm needed). */
static long round_l(double x) { return (long)(x < 0 ? x - 0.5 : x + 0.5); }

/* Reports a failed weft call and passes its code on. */
static int fail(const char *what, int rc) {
  fprintf(stderr, "weft-bench: %s: %s (%d)\n", what, weft_strerror(rc), rc);
  return rc ? rc : -EPROTO;
}

/* Closes g; prints the error list if the group failed. */
static int close_group(weft_group *g) {
  weft_errors *errs = NULL;
  int rc = weft_group_close(g, &errs);
  if (rc != 0) {
    fail("weft_group_close", rc);
    if (errs) weft_errors_print(errs, 2);
  }
  weft_errors_free(errs);
  return rc;
}

/* ------------------------------------------------------------------ */
/* spawn: a group of n children that return at once                    */
/* ------------------------------------------------------------------ */

static int trivial(void *arg) {
  (void)arg;
  return 0;
}

static int spawn_n(struct bench *b, const weft_spawn_opts *opts) {
  double t0 = now_s();
  weft_group *g = weft_group_open();
  if (!g) return fail("weft_group_open", -errno);
  int rc = 0;
  for (long i = 0; i < b->n; i++) {
    if (!weft_group_spawn(g, trivial, NULL, opts)) {
      rc = fail("weft_group_spawn", -errno);
      weft_group_cancel(g);
      break;
    }
  }
  int crc = close_group(g);
  b->wall = now_s() - t0;
  return rc ? rc : crc;
}

static int w_spawn(struct bench *b) { return spawn_n(b, NULL); }

/* spawn_eager: weft only, not a peer workload. The same with eager start
 * (asyncio's eager_start=True, libdill's go()): each child runs at once and,
 * as it never suspends, never goes through the scheduler or needs its
 * record for longer than its run. */
static int w_spawn_eager(struct bench *b) {
  weft_spawn_opts o = {.eager = true};
  return spawn_n(b, &o);
}

/* ------------------------------------------------------------------ */
/* switch: two tasks in a group, each yields n/2 times                 */
/* ------------------------------------------------------------------ */

static int yielder(void *arg) {
  long iters = *(const long *)arg;
  for (long i = 0; i < iters; i++) {
    int rc = weft_yield();
    if (rc) return fail("weft_yield", rc);
  }
  return 0;
}

static int w_switch(struct bench *b) {
  long iters = b->n / 2;
  if (iters < 1) iters = 1;
  b->n = 2 * iters; /* n counts the yields of both */
  double t0 = now_s();
  weft_group *g = weft_group_open();
  if (!g) return fail("weft_group_open", -errno);
  int rc = 0;
  for (int i = 0; i < 2 && !rc; i++)
    if (!weft_group_spawn(g, yielder, &iters, NULL)) {
      rc = fail("weft_group_spawn", -errno);
      weft_group_cancel(g);
    }
  int crc = close_group(g);
  b->wall = now_s() - t0;
  return rc ? rc : crc;
}

/* ------------------------------------------------------------------ */
/* sleepers: n tasks sleeping xorshift32 delays of 0..999 ms           */
/* ------------------------------------------------------------------ */

static int sleeper(void *arg) {
  int64_t ms = (int64_t)(intptr_t)arg;
  int rc = weft_sleep(WEFT_MS(ms));
  return rc ? fail("weft_sleep", rc) : 0;
}

static int w_sleepers(struct bench *b) {
  /* Setup, before the clock: Marsaglia xorshift32 (13, 17, 5). */
  int *delay = malloc((size_t)b->n * sizeof *delay);
  if (!delay) return fail("malloc", -ENOMEM);
  uint32_t x = 2463534242u;
  for (long i = 0; i < b->n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    delay[i] = (int)(x % 1000);
  }

  double t0 = now_s();
  weft_group *g = weft_group_open();
  if (!g) {
    free(delay);
    return fail("weft_group_open", -errno);
  }
  int rc = 0;
  for (long i = 0; i < b->n; i++) {
    if (!weft_group_spawn(g, sleeper, (void *)(intptr_t)delay[i], NULL)) {
      rc = fail("weft_group_spawn", -errno);
      weft_group_cancel(g);
      break;
    }
  }
  int crc = close_group(g);
  b->wall = now_s() - t0;
  free(delay);
  /* The time past the ideal 1 s, as the peers define it (the longest delay
   * is 999 ms); with a small --n the longest delay is shorter, and this can
   * be negative. */
  b->ns_per_op = (b->wall - 1.0) * 1e9 / (double)b->n;
  b->has_ns_per_op = 1;
  return rc ? rc : crc;
}

/* ------------------------------------------------------------------ */
/* call_later / sleeper_task: n timer callbacks vs n sleeping tasks    */
/* ------------------------------------------------------------------ */

/*
 * weft only (no peer line). The same n delays, xorshift32 over 0..1 ms
 * (0..999,999 ns), and the same work when each delay ends: count, and the
 * last one sets the event the root waits on.
 *   call_later:   n x weft_call_later(&h[i], d[i], fire_work, &st), on
 *                 caller-owned handles (a zeroed array, allocated and
 *                 touched before the clock); the root waits on the event.
 *   sleeper_task: a group of n tasks, task i does weft_sleep(d[i]) and
 *                 then fire_work(&st); the root waits on the event and
 *                 closes the group.
 * ns_per_op = wall / n for both: arming to the last callback (and, for
 * tasks, their exit), so the 1 ms spread is in it (10 ns per op at n =
 * 100,000, for both).
 */
struct fire_state {
  long n, fired;
  weft_event *done;
};

static void fire_work(void *arg) {
  struct fire_state *st = arg;
  if (++st->fired == st->n) weft_event_set(st->done);
}

/* Setup: the delays, in ns. */
static int64_t *spread_delays(long n) {
  int64_t *d = malloc((size_t)n * sizeof *d);
  if (!d) return NULL;
  uint32_t x = 2463534242u;
  for (long i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    d[i] = (int64_t)(x % 1000000u);
  }
  return d;
}

static int w_call_later(struct bench *b) {
  struct fire_state st = {.n = b->n, .done = weft_event_new()};
  int64_t *d = spread_delays(b->n);
  weft_call_handle *h = calloc((size_t)b->n, sizeof *h);
  int rc = 0;
  if (!st.done || !d || !h) {
    rc = fail("setup", -ENOMEM);
    goto out;
  }
  /* The handles are the caller's memory (in a program, inside structures
   * it uses anyway): touch their pages before the clock. */
  memset(h, 0, (size_t)b->n * sizeof *h);
  double t0 = now_s();
  for (long i = 0; i < b->n && !rc; i++) {
    int r = weft_call_later(&h[i], d[i], fire_work, &st);
    if (r) rc = fail("weft_call_later", r);
  }
  if (!rc) {
    rc = weft_event_wait(st.done);
    if (rc) fail("root's wait for the last call", rc);
  }
  b->wall = now_s() - t0;
out:
  if (rc && h) /* none may fire once h is freed */
    for (long i = 0; i < b->n; i++) weft_call_cancel(&h[i]);
  free(h);
  free(d);
  if (st.done) weft_event_free(st.done);
  return rc;
}

struct sleeper_arg {
  int64_t delay;
  struct fire_state *st;
};

static int sleep_then_work(void *arg) {
  struct sleeper_arg *a = arg;
  int rc = weft_sleep(a->delay);
  if (rc) return fail("weft_sleep", rc);
  fire_work(a->st);
  return 0;
}

static int w_sleeper_task(struct bench *b) {
  struct fire_state st = {.n = b->n, .done = weft_event_new()};
  int64_t *d = spread_delays(b->n);
  struct sleeper_arg *a = malloc((size_t)b->n * sizeof *a);
  int rc = 0;
  if (!st.done || !d || !a) {
    rc = fail("setup", -ENOMEM);
    goto out;
  }
  for (long i = 0; i < b->n; i++) a[i] = (struct sleeper_arg){d[i], &st};
  double t0 = now_s();
  weft_group *g = weft_group_open();
  if (!g) {
    rc = fail("weft_group_open", -errno);
    goto out;
  }
  for (long i = 0; i < b->n; i++) {
    if (!weft_group_spawn(g, sleep_then_work, &a[i], NULL)) {
      rc = fail("weft_group_spawn", -errno);
      weft_group_cancel(g);
      break;
    }
  }
  if (!rc) {
    int wrc = weft_event_wait(st.done);
    if (wrc) rc = fail("root's wait for the last task", wrc);
  }
  int crc = close_group(g);
  b->wall = now_s() - t0;
  if (!rc) rc = crc;
out:
  free(a);
  free(d);
  if (st.done) weft_event_free(st.done);
  return rc;
}

/* ------------------------------------------------------------------ */
/* idle: n tasks start, park on one event, are woken once, exit        */
/* ------------------------------------------------------------------ */

/*
 * As the peers: the last child to start sets `all_started` (Python: a
 * future, Go: a second WaitGroup) and every child then waits on one event,
 * which the root sets after sampling peak RSS. Every task parks exactly
 * once and is woken exactly once.
 */
struct idle_state {
  long n, started;
  weft_event *all_started, *go;
  int bad; /* a wait returned something unexpected */
};

static int idle_waiter(void *arg) {
  struct idle_state *st = arg;
  if (++st->started == st->n) weft_event_set(st->all_started);
  int rc = weft_event_wait(st->go);
  if (rc) st->bad = rc;
  return 0;
}

static int w_idle(struct bench *b) {
  struct idle_state st = {.n = b->n};
  st.all_started = weft_event_new();
  st.go = weft_event_new();
  if (!st.all_started || !st.go) return fail("weft_event_new", -ENOMEM);
  int rc = 0;
  long base = maxrss_kib();
  double t0 = now_s();
  weft_group *g = weft_group_open();
  if (!g) return fail("weft_group_open", -errno);
  for (long i = 0; i < b->n; i++) {
    if (!weft_group_spawn(g, idle_waiter, &st, NULL)) {
      rc = fail("weft_group_spawn", -errno);
      weft_group_cancel(g);
      break;
    }
  }
  if (!rc) {
    int wrc = weft_event_wait(st.all_started);
    if (wrc) rc = fail("root's wait for all started", wrc);
  }
  long peak = maxrss_kib();
  weft_event_set(st.go);
  int crc = close_group(g);
  b->wall = now_s() - t0;
  weft_event_free(st.all_started);
  weft_event_free(st.go);
  if (!rc && st.bad) rc = fail("a task's wait for the event", st.bad);
  b->bytes_per_task = round_l((double)(peak - base) * 1024.0 / (double)b->n);
  b->has_bytes_per_task = 1;
  return rc ? rc : crc;
}

/* ------------------------------------------------------------------ */
/* timeout: n x {open a 10 s deadline scope, close it}, root alone     */
/* ------------------------------------------------------------------ */

static int w_timeout(struct bench *b) {
  weft_scope s;
  int rc = 0;
  double t0 = now_s();
  for (long i = 0; i < b->n; i++) {
    int r1 = weft_scope_open_after(&s, WEFT_SEC(10));
    int r2 = r1 ? 0 : weft_scope_close(&s);
    if (r1 | r2) {
      rc = fail(r1 ? "weft_scope_open_after" : "weft_scope_close", r1 ? r1 : r2);
      break;
    }
  }
  b->wall = now_s() - t0;
  return rc;
}

/* ------------------------------------------------------------------ */
/* gather: 1,000 rounds of weft_gather over 100 fresh trivial tasks    */
/* ------------------------------------------------------------------ */

#define GATHER_WIDTH 100

static int w_gather(struct bench *b) {
  long rounds = b->n / GATHER_WIDTH;
  if (rounds < 1) rounds = 1;
  b->n = rounds * GATHER_WIDTH; /* n counts the gathered tasks */
  weft_call calls[GATHER_WIDTH];
  int results[GATHER_WIDTH];
  for (int j = 0; j < GATHER_WIDTH; j++)
    calls[j] = (weft_call){trivial, NULL};
  int rc = 0;
  double t0 = now_s();
  for (long r = 0; r < rounds && !rc; r++) {
    rc = weft_gather(calls, GATHER_WIDTH, results, 0);
    if (rc) fail("weft_gather", rc);
    for (int j = 0; j < GATHER_WIDTH && !rc; j++)
      if (results[j] != 0) rc = fail("a gathered task", results[j]);
  }
  b->wall = now_s() - t0;
  return rc;
}

/* ------------------------------------------------------------------ */
/* queue: a producer and a consumer over a FIFO of capacity 128        */
/* ------------------------------------------------------------------ */

struct queue_state {
  weft_queue *q;
  long n;
};

static int q_producer(void *arg) {
  struct queue_state *st = arg;
  for (long i = 0; i < st->n; i++) {
    int rc = weft_queue_put(st->q, &i);
    if (rc) return fail("weft_queue_put", rc);
  }
  return 0;
}

static int q_consumer(void *arg) {
  struct queue_state *st = arg;
  for (long i = 0; i < st->n; i++) {
    long v;
    int rc = weft_queue_get(st->q, &v);
    if (rc) return fail("weft_queue_get", rc);
    if (v != i) return fail("weft_queue_get: item out of order", -EPROTO);
  }
  return 0;
}

static int w_queue(struct bench *b) {
  struct queue_state st = {weft_queue_new(128, sizeof(long)), b->n};
  if (!st.q) return fail("weft_queue_new", -errno);
  double t0 = now_s();
  weft_group *g = weft_group_open();
  int rc = g ? 0 : fail("weft_group_open", -errno);
  if (g) {
    if (!weft_group_spawn(g, q_producer, &st, NULL) ||
        !weft_group_spawn(g, q_consumer, &st, NULL)) {
      rc = fail("weft_group_spawn", -errno);
      weft_group_cancel(g);
    }
    int crc = close_group(g);
    if (!rc) rc = crc;
  }
  b->wall = now_s() - t0;
  weft_queue_free(st.q);
  return rc;
}

/* ------------------------------------------------------------------ */
/* semaphore: 1,000 tasks x 100 {acquire; yield; release}, 10 permits  */
/* ------------------------------------------------------------------ */

#define SEM_TASKS 1000

struct sem_state {
  weft_sem *s;
  long iters;
};

static int sem_user(void *arg) {
  struct sem_state *st = arg;
  for (long i = 0; i < st->iters; i++) {
    int rc = weft_sem_acquire(st->s);
    if (rc) return fail("weft_sem_acquire", rc);
    rc = weft_yield();
    weft_sem_release(st->s);
    if (rc) return fail("weft_yield", rc);
  }
  return 0;
}

static int w_semaphore(struct bench *b) {
  struct sem_state st = {weft_sem_new(10), b->n / SEM_TASKS};
  if (!st.s) return fail("weft_sem_new", -errno);
  if (st.iters < 1) st.iters = 1;
  b->n = st.iters * SEM_TASKS; /* n counts the cycles of all tasks */
  double t0 = now_s();
  weft_group *g = weft_group_open();
  int rc = g ? 0 : fail("weft_group_open", -errno);
  for (int i = 0; g && i < SEM_TASKS && !rc; i++)
    if (!weft_group_spawn(g, sem_user, &st, NULL)) {
      rc = fail("weft_group_spawn", -errno);
      weft_group_cancel(g);
    }
  if (g) {
    int crc = close_group(g);
    if (!rc) rc = crc;
  }
  b->wall = now_s() - t0;
  weft_sem_free(st.s);
  return rc;
}

/* ------------------------------------------------------------------ */
/* to_thread: n x weft_to_thread(f) in sequence, f returns at once     */
/* ------------------------------------------------------------------ */

static void *return_arg(void *arg) { return arg; }

/* The default pool's thread is started lazily, inside the clock (as
 * asyncio's default executor's is). */
static int w_to_thread(struct bench *b) {
  double t0 = now_s();
  for (long i = 0; i < b->n; i++) {
    void *r = &r;
    int rc = weft_to_thread(return_arg, NULL, &r);
    if (rc) return fail("weft_to_thread", rc);
    if (r) return fail("weft_to_thread result", -EPROTO);
  }
  b->wall = now_s() - t0;
  return 0;
}

/* ------------------------------------------------------------------ */
/* submit: a plain thread submits n trivial tasks to the loop          */
/* ------------------------------------------------------------------ */

/* weft only (asyncio's run_coroutine_threadsafe / Go have no peer line).
 * The root opens a scope and sleeps in it; a plain thread submits n
 * trivial tasks with weft_loop_submit (freeing each future but the last),
 * waits for the last one's future, stops its clock and has the loop
 * cancel the root's scope with weft_loop_call. ns_per_op = its wall / n. */
struct submit_state {
  weft_loop *loop;
  long n;
  weft_scope done; /* on the root's stack */
  double wall;
  int rc;
};

static void submit_stop(void *arg) {
  struct submit_state *st = arg;
  weft_scope_cancel(&st->done);
}

static void *submitter(void *arg) {
  struct submit_state *st = arg;
  double t0 = now_s();
  weft_future *last = NULL;
  for (long i = 0; i < st->n; i++) {
    weft_future *f = weft_loop_submit(st->loop, trivial, NULL);
    if (!f) {
      st->rc = fail("weft_loop_submit", -errno);
      break;
    }
    if (i + 1 < st->n)
      weft_future_free(f);
    else
      last = f;
  }
  if (last) {
    int res = -1;
    int rc = weft_future_wait(last, &res);
    if (rc || res) st->rc = fail("weft_future_wait", rc ? rc : res);
    weft_future_free(last);
  }
  st->wall = now_s() - t0;
  int rc = weft_loop_call(st->loop, submit_stop, st);
  if (rc) st->rc = fail("weft_loop_call", rc);
  return NULL;
}

static int w_submit(struct bench *b) {
  struct submit_state st = {.loop = weft_loop_current(), .n = b->n};
  int rc = weft_scope_open(&st.done, WEFT_FOREVER);
  if (rc) return fail("weft_scope_open", rc);
  pthread_t th;
  int e = pthread_create(&th, NULL, submitter, &st);
  if (e) {
    weft_scope_close(&st.done);
    return fail("pthread_create", -e);
  }
  rc = weft_sleep_until(WEFT_FOREVER); /* until submit_stop */
  weft_scope_close(&st.done);
  pthread_join(th, NULL);
  if (rc != -ECANCELED) return fail("root's wait", rc ? rc : -EPROTO);
  b->wall = st.wall;
  return st.rc;
}

/* ------------------------------------------------------------------ */
/* fdwait: n round trips of weft_wait_fd over a socketpair            */
/* ------------------------------------------------------------------ */

/*
 * weft only (no peer line). A socketpair (AF_UNIX, SOCK_STREAM, both ends
 * non-blocking), two tasks in a group:
 *   pinger: n x {write 1 byte to end 0; weft_wait_fd(end 0, READABLE);
 *                read 1 byte (and check it is the byte it sent)}
 *   echoer: n x {weft_wait_fd(end 1, READABLE); read 1 byte; write it back}
 * ns_per_op = wall / n round trips (two waits, two reads, two writes and
 * two wake-ups each). The socketpair is made before the clock and closed
 * after it. A read that finds nothing (EAGAIN after a wake-up) waits again,
 * as any caller of weft_wait_fd must; level-triggered readiness should
 * never make it happen.
 */
struct fdwait_state {
  int fd[2];
  long n;
};

/* Waits until fd is readable and reads one byte into *c. */
static int fd_read1(int fd, unsigned char *c) {
  for (;;) {
    int ev = weft_wait_fd(fd, WEFT_READABLE);
    if (ev < 0) return fail("weft_wait_fd", ev);
    ssize_t r = read(fd, c, 1);
    if (r == 1) return 0;
    if (r == 0) return fail("read: end of stream", -EPIPE);
    if (errno != EAGAIN && errno != EINTR) return fail("read", -errno);
  }
}

static int fd_write1(int fd, unsigned char c) {
  ssize_t r;
  do r = write(fd, &c, 1);
  while (r < 0 && errno == EINTR);
  /* One byte in flight at a time: the buffer never fills. */
  return r == 1 ? 0 : fail("write", r < 0 ? -errno : -EIO);
}

static int fd_pinger(void *arg) {
  struct fdwait_state *st = arg;
  for (long i = 0; i < st->n; i++) {
    unsigned char out = (unsigned char)i, in;
    int rc = fd_write1(st->fd[0], out);
    if (!rc) rc = fd_read1(st->fd[0], &in);
    if (rc) return rc;
    if (in != out) return fail("fdwait: echoed byte differs", -EPROTO);
  }
  return 0;
}

static int fd_echoer(void *arg) {
  struct fdwait_state *st = arg;
  for (long i = 0; i < st->n; i++) {
    unsigned char c;
    int rc = fd_read1(st->fd[1], &c);
    if (!rc) rc = fd_write1(st->fd[1], c);
    if (rc) return rc;
  }
  return 0;
}

static int w_fdwait(struct bench *b) {
  struct fdwait_state st = {.n = b->n};
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                 st.fd) != 0)
    return fail("socketpair", -errno);
  double t0 = now_s();
  weft_group *g = weft_group_open();
  int rc = g ? 0 : fail("weft_group_open", -errno);
  if (g) {
    if (!weft_group_spawn(g, fd_echoer, &st, NULL) ||
        !weft_group_spawn(g, fd_pinger, &st, NULL)) {
      rc = fail("weft_group_spawn", -errno);
      weft_group_cancel(g);
    }
    int crc = close_group(g);
    if (!rc) rc = crc;
  }
  b->wall = now_s() - t0;
  close(st.fd[0]);
  close(st.fd[1]);
  return rc;
}

/* ------------------------------------------------------------------ */
/* spawn_proc: n runs of /bin/true, 10 at a time                       */
/* ------------------------------------------------------------------ */

/*
 * Peers: bench/peers/spawn_proc.go (os/exec, 10 goroutines) and
 * bench/peers/spawn_proc.py (asyncio create_subprocess_exec, 10 workers);
 * bench/proc.sh runs all three. 10 worker tasks in a group, each doing
 * n / 10 x {weft_proc_spawn("/bin/true") with every stdio inherited;
 * weft_proc_wait; weft_proc_close}, and checking the status is 0.
 * ns_per_op = wall / n processes: the fork (vfork) and exec, the child's
 * run, the pidfd, the wait and the reap.
 */
#define PROC_WORKERS 10

struct proc_state {
  long left; /* processes not yet started */
  int rc;
};

static int proc_worker(void *arg) {
  struct proc_state *st = arg;
  static const char *const argv[] = {"/bin/true", NULL};
  while (st->left > 0) {
    st->left--;
    weft_proc *p = weft_proc_spawn(argv, NULL);
    if (!p) return st->rc = fail("weft_proc_spawn", -errno);
    int status = -1;
    int rc = weft_proc_wait(p, &status);
    weft_proc_close(p);
    if (rc) return st->rc = fail("weft_proc_wait", rc);
    if (status) return st->rc = fail("/bin/true's status", -EPROTO);
  }
  return 0;
}

static int w_spawn_proc(struct bench *b) {
  struct proc_state st = {.left = b->n};
  double t0 = now_s();
  weft_group *g = weft_group_open();
  if (!g) return fail("weft_group_open", -errno);
  int rc = 0;
  for (int i = 0; i < PROC_WORKERS; i++)
    if (!weft_group_spawn(g, proc_worker, &st, NULL)) {
      rc = fail("weft_group_spawn", -errno);
      weft_group_cancel(g);
      break;
    }
  int crc = close_group(g);
  b->wall = now_s() - t0;
  return rc ? rc : crc ? crc : st.rc;
}

/* ------------------------------------------------------------------ */
/* The table                                                           */
/* ------------------------------------------------------------------ */

static const struct workload {
  const char *name;
  long n; /* the README's n */
  int (*run)(struct bench *b);
} workloads[] = {
    {"spawn", 200000, w_spawn},
    {"spawn_eager", 200000, w_spawn_eager},
    {"switch", 2000000, w_switch},
    {"sleepers", 100000, w_sleepers},
    {"call_later", 100000, w_call_later},
    {"sleeper_task", 100000, w_sleeper_task},
    {"idle", 100000, w_idle},
    {"timeout", 1000000, w_timeout},
    {"to_thread", 10000, w_to_thread},
    {"submit", 1000000, w_submit},
    {"queue", 1000000, w_queue},
    {"semaphore", 100000, w_semaphore},
    {"gather", 100000, w_gather},
    {"fdwait", 100000, w_fdwait},
    {"spawn_proc", 1000, w_spawn_proc},
};

#define NWORKLOADS (sizeof workloads / sizeof workloads[0])

struct root_arg {
  const struct workload *w;
  struct bench *b;
};

static int root(void *arg) {
  struct root_arg *ra = arg;
  return ra->w->run(ra->b);
}

static void usage(void) {
  fprintf(stderr, "usage: weft-bench WORKLOAD [--n N]\nworkloads:");
  for (size_t i = 0; i < NWORKLOADS; i++)
    fprintf(stderr, " %s (n=%ld)", workloads[i].name, workloads[i].n);
  fprintf(stderr, "\n");
}

static int parse_n(const char *s, long *n) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < 1) return -1;
  *n = v;
  return 0;
}

int main(int argc, char **argv) {
  const struct workload *w = NULL;
  long n = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--n") && i + 1 < argc) {
      if (parse_n(argv[++i], &n)) goto bad;
    } else if (!strncmp(a, "--n=", 4)) {
      if (parse_n(a + 4, &n)) goto bad;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage();
      return 0;
    } else if (!w) {
      for (size_t k = 0; k < NWORKLOADS; k++)
        if (!strcmp(a, workloads[k].name)) w = &workloads[k];
      if (!w) goto bad;
    } else {
      goto bad;
    }
  }
  if (!w) goto bad;

  struct bench b = {.n = n ? n : w->n};
  struct root_arg ra = {w, &b};
  int rc = weft_run(root, &ra);
  if (rc) {
    fprintf(stderr, "weft-bench: %s failed: %s (%d)\n", w->name,
            weft_strerror(rc), rc);
    return 1;
  }
  double ns = b.has_ns_per_op ? b.ns_per_op : b.wall * 1e9 / (double)b.n;
  printf("{\"peer\":\"%s\",\"workload\":\"%s\",\"n\":%ld,\"ns_per_op\":%.1f,"
         "\"wall_s\":%.4f,\"peak_rss_kib\":%ld",
         PEER, w->name, b.n, ns, b.wall, maxrss_kib());
  if (b.has_bytes_per_task) printf(",\"bytes_per_task\":%ld", b.bytes_per_task);
  printf("}\n");
  return 0;

bad:
  usage();
  return 2;
}
