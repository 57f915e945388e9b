/*
 * subprocess_pipeline.c -- a shell pipeline built by hand: three programs
 * joined by pipes, the last one's output read line by line as it comes,
 * the whole pipeline under a deadline and killed as one process group if
 * the deadline passes.
 *
 *   gcc -I include examples/subprocess_pipeline.c -L build/lib -lweft -o subprocess_pipeline && LD_LIBRARY_PATH=build/lib ./subprocess_pipeline [N [SECONDS]]
 *
 * asyncio.create_subprocess_exec(..., stdout=PIPE)   weft_proc_spawn(argv, &opts)
 * stdin=fd / stdout=fd                             {WEFT_STDIO_FD, fd}
 * start_new_session / process_group=0              opts.new_group
 * process_group=pgid                               opts.join_group
 * await proc.stdout.readline()                     weft_stream_readline(weft_proc_stdout(p), &line)
 * os.killpg(pgid, SIGKILL)                         weft_proc_signal_group(p, SIGKILL)
 * async with asyncio.timeout(s)                    weft_scope_open_after(&sc, s)
 * await proc.wait()                                weft_proc_wait(p, &status)
 *
 * With N (and an optional deadline in seconds) it runs
 *   seq 1 N | grep 7 | tr 7 X
 * and prints every line as it arrives, then the stages' exit statuses.
 * Without arguments it runs a self-test: the same for N = 100000, every
 * line checked against what C computes, then `yes | grep y | cat`, which
 * never ends, under a 300 ms deadline: the group must be killed (every
 * stage's status -9); it exits 0 when both came out right.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft.h"

#define NSTAGES 3

typedef struct pipeline {
  weft_proc *stage[NSTAGES];
  int status[NSTAGES];
} pipeline;

/* Starts argv[0] | argv[1] | argv[2]: each stage's stdout is the next
 * one's stdin (a plain pipe between two children: weft never touches
 * those bytes), the last stage's stdout is a pipe to us. The first stage
 * leads a new process group and the others join it, so that one killpg
 * reaches the whole pipeline. 0 or -errno (stages started are killed). */
static int pipeline_start(pipeline *pl, const char *const *argv[NSTAGES]) {
  int link[NSTAGES - 1][2];
  for (int i = 0; i < NSTAGES - 1; i++) link[i][0] = link[i][1] = -1;
  int rc = 0;
  for (int i = 0; i < NSTAGES - 1 && !rc; i++)
    if (pipe2(link[i], O_CLOEXEC) < 0) rc = -errno;
  for (int i = 0; i < NSTAGES && !rc; i++) {
    weft_proc_opts o = {0};
    o.in = i == 0 ? (weft_stdio){WEFT_STDIO_NULL, 0}
                  : (weft_stdio){WEFT_STDIO_FD, link[i - 1][0]};
    o.out = i == NSTAGES - 1 ? (weft_stdio){WEFT_STDIO_PIPE, 0}
                             : (weft_stdio){WEFT_STDIO_FD, link[i][1]};
    if (i == 0)
      o.new_group = true;
    else
      o.join_group = weft_proc_pid(pl->stage[0]);
    if (!(pl->stage[i] = weft_proc_spawn(argv[i], &o))) rc = -errno;
  }
  /* The children have their copies: ours must go, or the readers would
   * never see the end of their input. */
  for (int i = 0; i < NSTAGES - 1; i++) {
    if (link[i][0] >= 0) close(link[i][0]);
    if (link[i][1] >= 0) close(link[i][1]);
  }
  if (rc && pl->stage[0]) weft_proc_signal_group(pl->stage[0], SIGKILL);
  return rc;
}

/* Waits for every stage (shielded: also after a cancellation, so that the
 * statuses are known and nothing is left running) and closes them. */
static void pipeline_finish(pipeline *pl) {
  weft_scope sc;
  weft_scope_open_shielded(&sc, WEFT_FOREVER);
  for (int i = 0; i < NSTAGES; i++) {
    if (!pl->stage[i]) continue;
    weft_proc_wait(pl->stage[i], &pl->status[i]);
    weft_proc_close(pl->stage[i]);
    pl->stage[i] = NULL;
  }
  weft_scope_close(&sc);
}

/* Runs the pipeline, calling on_line for each line of the last stage's
 * output as it arrives, for at most `timeout` ns. Returns 0, -ETIMEDOUT
 * (the group was killed), or an error. */
static int pipeline_run(pipeline *pl, const char *const *argv[NSTAGES],
                        int64_t timeout,
                        int (*on_line)(const char *line, size_t len, void *arg),
                        void *arg) {
  memset(pl, 0, sizeof *pl);
  int rc = pipeline_start(pl, argv);
  if (rc) {
    pipeline_finish(pl);
    return rc;
  }
  weft_stream *out = weft_proc_stdout(pl->stage[NSTAGES - 1]);
  weft_scope sc;
  weft_scope_open_after(&sc, timeout);
  for (;;) {
    const char *line;
    ssize_t n = weft_stream_readline(out, &line);
    if (n <= 0) {
      rc = (int)n;
      break;
    }
    if ((rc = on_line(line, (size_t)n, arg)) != 0) break;
  }
  if (weft_scope_close(&sc) == -ETIMEDOUT) rc = -ETIMEDOUT;
  if (rc) /* the deadline, or an error: the whole pipeline goes */
    weft_proc_signal_group(pl->stage[0], SIGKILL);
  pipeline_finish(pl);
  return rc;
}

/* ---- the program -------------------------------------------------------- */

typedef struct args {
  const char *n;
  int64_t timeout;
} args;

static int print_line(const char *line, size_t len, void *arg) {
  (void)arg;
  fwrite(line, 1, len, stdout);
  fflush(stdout); /* as it arrives */
  return 0;
}

static int run_main(void *arg) {
  args *a = arg;
  const char *seq[] = {"seq", "1", a->n, NULL};
  const char *grep[] = {"grep", "7", NULL};
  const char *tr[] = {"tr", "7", "X", NULL};
  const char *const *argv[NSTAGES] = {seq, grep, tr};
  pipeline pl;
  int rc = pipeline_run(&pl, argv, a->timeout, print_line, NULL);
  fprintf(stderr, "subprocess_pipeline: %s; statuses %d %d %d\n",
          rc ? weft_strerror(rc) : "done", pl.status[0], pl.status[1],
          pl.status[2]);
  return rc == -ETIMEDOUT ? 0 : rc;
}

/* ---- self-test ------------------------------------------------------------ */

typedef struct check {
  long next;  /* the last number checked */
  long limit;
  long lines;
  int bad;
} check;

static bool has7(long v) {
  for (; v; v /= 10)
    if (v % 10 == 7) return true;
  return false;
}

/* Each line must be the next number that has a 7, with X for 7. */
static int check_line(const char *line, size_t len, void *arg) {
  check *c = arg;
  do c->next++;
  while (c->next <= c->limit && !has7(c->next));
  char want[32];
  int w = snprintf(want, sizeof want, "%ld\n", c->next);
  for (int i = 0; i < w; i++)
    if (want[i] == '7') want[i] = 'X';
  if ((size_t)w != len || memcmp(want, line, len)) c->bad++;
  c->lines++;
  return 0;
}

static int count_only(const char *line, size_t len, void *arg) {
  (void)line;
  (void)len;
  ((check *)arg)->lines++;
  return 0;
}

static int selftest_main(void *arg) {
  (void)arg;
  int failures = 0;

  /* 1. The pipeline ends by itself: every line right, all exit 0. */
  check c = {.limit = 100000};
  const char *seq[] = {"seq", "1", "100000", NULL};
  const char *grep[] = {"grep", "7", NULL};
  const char *tr[] = {"tr", "7", "X", NULL};
  const char *const *argv1[NSTAGES] = {seq, grep, tr};
  pipeline pl;
  int rc = pipeline_run(&pl, argv1, WEFT_SEC(30), check_line, &c);
  long want = 0;
  for (long v = 1; v <= c.limit; v++) want += has7(v);
  if (rc || c.bad || c.lines != want || pl.status[0] || pl.status[1] ||
      pl.status[2]) {
    fprintf(stderr, "pipeline 1: rc %d, %ld lines (want %ld), %d bad, "
            "statuses %d %d %d\n", rc, c.lines, want, c.bad, pl.status[0],
            pl.status[1], pl.status[2]);
    failures++;
  }

  /* 2. A pipeline that never ends: the deadline kills the group. */
  check c2 = {0};
  const char *yes[] = {"yes", NULL};
  const char *grepy[] = {"grep", "y", NULL};
  const char *cat[] = {"cat", NULL};
  const char *const *argv2[NSTAGES] = {yes, grepy, cat};
  int64_t t0 = weft_now();
  rc = pipeline_run(&pl, argv2, WEFT_MS(300), count_only, &c2);
  int64_t took = weft_now() - t0;
  if (rc != -ETIMEDOUT || c2.lines == 0 || pl.status[0] != -SIGKILL ||
      pl.status[1] != -SIGKILL || pl.status[2] != -SIGKILL ||
      took > WEFT_SEC(10)) {
    fprintf(stderr, "pipeline 2: rc %d, %ld lines, statuses %d %d %d, "
            "%.0f ms\n", rc, c2.lines, pl.status[0], pl.status[1],
            pl.status[2], (double)took / 1e6);
    failures++;
  }
  printf("subprocess_pipeline: self-test %s (%ld lines; killed after "
         "%.0f ms with %ld lines)\n", failures ? "FAILED" : "ok", c.lines,
         (double)took / 1e6, c2.lines);
  return failures ? -EPROTO : 0;
}

int main(int argc, char **argv) {
  if (argc < 2) return weft_run(selftest_main, NULL) ? 1 : 0;
  args a = {.n = argv[1], .timeout = WEFT_SEC(10)};
  if (argc > 2) a.timeout = (int64_t)(atof(argv[2]) * 1e9);
  return weft_run(run_main, &a) ? 1 : 0;
}
