/*
 * test_proc.c -- weft_proc_*: exit statuses and signals, spawn errors
 * (missing program, not executable, bad cwd), cwd and environment, every
 * stdio mode, that only fds 0-2 reach the child, communicate (10 MiB both
 * ways, a child that stops reading, limits, cancellation), waits under
 * deadlines, several waiters, weft_proc_run's SIGTERM-then-SIGKILL,
 * 100 children at once, process groups, orphans and the end of a loop
 * (no zombie), the SIGCHLD fallback (forced with WEFT_PROC_PIDFD=0), fd
 * exhaustion in the middle of a spawn, bad input, another loop's thread,
 * shell pipelines, and the subprocess_pipeline example. Every test checks
 * that no fd is left open and no child is left unreaped.
 */
#define _GNU_SOURCE
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "helpers.h"

extern char **environ;

/* ---------------------------------------------------------------- */
/* Helpers                                                            */
/* ---------------------------------------------------------------- */

/* No child of this process is left to reap (a zombie). */
static void no_zombie(void) {
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int r = waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT);
  cr_assert(r < 0 ? errno == ECHILD : si.si_pid == 0,
            "a child is left unreaped: pid %d", (int)si.si_pid);
}

/* Runs fn under weft_run; checks its result, that no fd leaked and that
 * no zombie is left. */
static void run_checked(weft_fn fn, void *arg) {
  int before = count_fds();
  int rc = weft_run(fn, arg);
  cr_assert_eq(rc, 0, "main returned %d (%s)", rc, weft_strerror(rc));
  cr_assert_eq(count_fds(), before, "fd leak: %d before, %d after", before,
               count_fds());
  no_zombie();
}

/* The same in SIGCHLD mode (as on a kernel without pidfd_open). */
static void run_checked_sigchld(weft_fn fn, void *arg) {
  cr_assert_eq(setenv("WEFT_PROC_PIDFD", "0", 1), 0);
  run_checked(fn, arg);
  unsetenv("WEFT_PROC_PIDFD");
}

/* Spawns argv with opts; asserts success. */
static weft_proc *spawn_ok(const char *const *argv, const weft_proc_opts *o) {
  weft_proc *p = weft_proc_spawn(argv, o);
  cr_assert_not_null(p, "spawn %s: %s", argv[0], strerror(errno));
  cr_assert_gt(weft_proc_pid(p), 0);
  return p;
}

static weft_proc *shell_ok(const char *cmd, const weft_proc_opts *o) {
  weft_proc *p = weft_proc_shell(cmd, o);
  cr_assert_not_null(p, "shell %s: %s", cmd, strerror(errno));
  return p;
}

/* Waits for p, closes it, returns its status. */
static int wait_close(weft_proc *p) {
  int st = -1000;
  int rc = weft_proc_wait(p, &st);
  cr_assert_eq(rc, 0, "wait: %s", weft_strerror(rc));
  cr_assert_eq(weft_proc_close(p), 0);
  return st;
}

/* Runs a shell command with stdout (and stderr, if err_too) collected. */
static int sh_out(const char *cmd, const weft_proc_opts *base, char **out,
                  int *status) {
  weft_proc_opts o = base ? *base : (weft_proc_opts){0};
  o.out.mode = WEFT_STDIO_PIPE;
  weft_proc *p = shell_ok(cmd, &o);
  weft_proc_io io = {0};
  int rc = weft_proc_communicate(p, &io);
  *out = io.out;
  io.out = NULL;
  weft_proc_io_free(&io);
  if (status) *status = io.status;
  weft_proc_close(p);
  return rc;
}

/* Under valgrind (make valgrind traces children), posix_spawn's child is
 * a fork that valgrind runs: what fails in it before exec is no longer
 * the spawn's own error, and the traced children hold valgrind's fds,
 * run slowly, and exit 1 on their own leaks. qemu-user (make aarch64)
 * forks too, ignores signals of its own in the child and has no
 * PR_SET_CHILD_SUBREAPER. Tests of those details skip there
 * (under_valgrind, under_emulator: helpers.h); the rest runs. */

#define SKIP_UNDER_VALGRIND()                                              \
  do {                                                                     \
    if (under_valgrind())                                                  \
      cr_skip_test("valgrind changes how children start (see helpers)"); \
    if (under_emulator())                                                  \
      cr_skip_test("qemu-user forks where posix_spawn vforks, and keeps " \
                   "signals and prctl of its own");                        \
  } while (0)

static unsigned char pat(size_t i) { return (unsigned char)(i * 7 + i / 251); }

static volatile sig_atomic_t n_sigpipe;
static void on_sigpipe(int sig) {
  (void)sig;
  n_sigpipe++;
}

/* A unique temporary directory (removed by the test). */
static void tmpdir(char *buf, size_t cap) {
  snprintf(buf, cap, "/tmp/weft_proc_XXXXXX");
  cr_assert_not_null(mkdtemp(buf));
}

static bool file_has(const char *path, const char *text) {
  char buf[256] = "";
  FILE *f = fopen(path, "r");
  if (!f) return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return strstr(buf, text) != NULL;
}

/* ---------------------------------------------------------------- */
/* Exit statuses                                                      */
/* ---------------------------------------------------------------- */

static int status_main(void *arg) {
  (void)arg;
  const char *t[] = {"/bin/true", NULL};
  const char *f[] = {"/bin/false", NULL};
  const char *s7[] = {"sh", "-c", "exit 7", NULL};
  weft_proc *p = spawn_ok(t, NULL);
  cr_assert_eq(wait_close(p), 0);
  p = spawn_ok(f, NULL);
  cr_assert_eq(wait_close(p), 1);
  p = spawn_ok(s7, NULL); /* found on PATH */
  int st = -1;
  cr_assert_eq(weft_proc_wait(p, &st), 0);
  cr_assert_eq(st, 7);
  /* Once exited: at once, every time, and through status. */
  st = -1;
  cr_assert_eq(weft_proc_wait(p, &st), 0);
  cr_assert_eq(st, 7);
  cr_assert_eq(weft_proc_wait(p, NULL), 0);
  st = -1;
  cr_assert_eq(weft_proc_status(p, &st), 0);
  cr_assert_eq(st, 7);
  cr_assert_gt(weft_proc_pid(p), 0); /* also after it exited */
  cr_assert_eq(weft_proc_close(p), 0);
  /* status without waiting: -EAGAIN while it runs. */
  const char *sl[] = {"sleep", "0.2", NULL};
  p = spawn_ok(sl, NULL);
  cr_assert_eq(weft_proc_status(p, &st), -EAGAIN);
  cr_assert_eq(wait_close(p), 0);
  /* Exit codes above 127 stay positive. */
  const char *s200[] = {"sh", "-c", "exit 200", NULL};
  cr_assert_eq(wait_close(spawn_ok(s200, NULL)), 200);
  return 0;
}

Test(proc, exit_status, .timeout = 30) { run_checked(status_main, NULL); }

static int signal_main(void *arg) {
  (void)arg;
  const char *sl[] = {"sleep", "100", NULL};
  weft_proc *p = spawn_ok(sl, NULL);
  cr_assert_eq(weft_proc_kill(p), 0);
  cr_assert_eq(wait_close(p), -SIGKILL);
  p = spawn_ok(sl, NULL);
  cr_assert_eq(weft_proc_terminate(p), 0);
  int st;
  cr_assert_eq(weft_proc_wait(p, &st), 0);
  cr_assert_eq(st, -SIGTERM);
  /* Signals to an exited (and reaped) child: nothing, 0. */
  cr_assert_eq(weft_proc_kill(p), 0);
  cr_assert_eq(weft_proc_send_signal(p, SIGUSR1), 0);
  cr_assert_eq(weft_proc_send_signal(p, 0), 0);
  cr_assert_eq(weft_proc_close(p), 0);
  /* Killed by a signal it sends itself. */
  const char *self[] = {"sh", "-c", "kill -TERM $$; sleep 5", NULL};
  cr_assert_eq(wait_close(spawn_ok(self, NULL)), -SIGTERM);
  /* An exited child not yet reaped (a zombie): still 0, nothing sent. */
  const char *t[] = {"/bin/true", NULL};
  p = spawn_ok(t, NULL);
  siginfo_t si;
  memset(&si, 0, sizeof si);
  cr_assert_eq(waitid(P_PID, (id_t)weft_proc_pid(p), &si, WEXITED | WNOWAIT), 0);
  cr_assert_eq(weft_proc_send_signal(p, SIGKILL), 0);
  cr_assert_eq(wait_close(p), 0); /* its own status, not -9 */
  /* Bad signal numbers. */
  p = spawn_ok(sl, NULL);
  cr_assert_eq(weft_proc_send_signal(p, -1), -EINVAL);
  cr_assert_eq(weft_proc_send_signal(p, 100000), -EINVAL);
  cr_assert_eq(weft_proc_signal_group(p, -1), -EINVAL);
  /* Not in a group of its own: signal_group refuses (it would hit ours). */
  cr_assert_eq(weft_proc_signal_group(p, SIGTERM), -ESRCH);
  cr_assert_eq(weft_proc_kill(p), 0);
  cr_assert_eq(wait_close(p), -SIGKILL);
  return 0;
}

Test(proc, killed_by_signal, .timeout = 30) { run_checked(signal_main, NULL); }

/* ---------------------------------------------------------------- */
/* Spawn errors, cwd, environment                                     */
/* ---------------------------------------------------------------- */

static int errors_main(void *arg) {
  (void)arg;
  char dir[64], file[128];
  tmpdir(dir, sizeof dir);
  snprintf(file, sizeof file, "%s/not_exec", dir);
  FILE *f = fopen(file, "w");
  cr_assert_not_null(f);
  fputs("#!/bin/sh\nexit 0\n", f);
  fclose(f);
  chmod(file, 0644);
  int fds = count_fds();
  weft_proc_opts pipes = {.in = {.mode = WEFT_STDIO_PIPE}, .out = {.mode = WEFT_STDIO_PIPE},
                          .err = {.mode = WEFT_STDIO_PIPE}};

  const char *missing[] = {"/nonexistent/weft-no-such-program", NULL};
  errno = 0;
  cr_assert_null(weft_proc_spawn(missing, &pipes));
  cr_assert_eq(errno, ENOENT, "errno %d", errno);
  const char *missing_path[] = {"weft-no-such-program-on-path", NULL};
  errno = 0;
  cr_assert_null(weft_proc_spawn(missing_path, NULL));
  cr_assert_eq(errno, ENOENT, "errno %d", errno);

  const char *noexec[] = {file, NULL};
  errno = 0;
  cr_assert_null(weft_proc_spawn(noexec, &pipes));
  cr_assert_eq(errno, EACCES, "errno %d", errno);

  const char *t[] = {"/bin/true", NULL};
  weft_proc_opts badcwd = pipes;
  badcwd.cwd = "/nonexistent/weft-dir";
  errno = 0;
  cr_assert_null(weft_proc_spawn(t, &badcwd));
  cr_assert_eq(errno, ENOENT, "errno %d", errno);
  weft_proc_opts filecwd = {.cwd = file};
  errno = 0;
  cr_assert_null(weft_proc_spawn(t, &filecwd));
  cr_assert_eq(errno, ENOTDIR, "errno %d", errno);

  /* A program missing inside a shell command: the shell's 127. */
  weft_proc *p = shell_ok("weft-no-such-program-on-path 2>/dev/null", NULL);
  cr_assert_eq(wait_close(p), 127);

  cr_assert_eq(count_fds(), fds, "a failed spawn leaked an fd");
  unlink(file);
  rmdir(dir);
  return 0;
}

Test(proc, spawn_errors, .timeout = 30) {
  SKIP_UNDER_VALGRIND();
  run_checked(errors_main, NULL);
}

static int cwd_main(void *arg) {
  (void)arg;
  char dir[64], real[PATH_MAX];
  tmpdir(dir, sizeof dir);
  cr_assert_not_null(realpath(dir, real));
  weft_proc_opts o = {.cwd = dir};
  char *out = NULL;
  int st = -1;
  cr_assert_eq(sh_out("pwd -P", &o, &out, &st), 0);
  char want[PATH_MAX + 2];
  snprintf(want, sizeof want, "%s\n", real);
  cr_assert_str_eq(out, want);
  cr_assert_eq(st, 0);
  free(out);
  /* A relative program path is looked up from the new cwd. */
  char script[128];
  snprintf(script, sizeof script, "%s/hello.sh", dir);
  FILE *f = fopen(script, "w");
  cr_assert_not_null(f);
  fputs("#!/bin/sh\necho hello from cwd\n", f);
  fclose(f);
  chmod(script, 0755);
  const char *rel[] = {"./hello.sh", NULL};
  o.out.mode = WEFT_STDIO_PIPE;
  weft_proc *p = spawn_ok(rel, &o);
  weft_proc_io io = {0};
  cr_assert_eq(weft_proc_communicate(p, &io), 0);
  cr_assert_str_eq(io.out, "hello from cwd\n");
  weft_proc_io_free(&io);
  weft_proc_close(p);
  unlink(script);
  rmdir(dir);
  return 0;
}

Test(proc, cwd, .timeout = 30) { run_checked(cwd_main, NULL); }

static int env_main(void *arg) {
  (void)arg;
  cr_assert_eq(setenv("WEFT_T_X", "inherited", 1), 0);
  cr_assert_eq(setenv("WEFT_T_Z", "zed", 1), 0);
  char *out;
  /* Inherit. */
  cr_assert_eq(sh_out("echo \"$WEFT_T_X/$WEFT_T_Y/$WEFT_T_Z\"", NULL, &out, NULL), 0);
  cr_assert_str_eq(out, "inherited//zed\n");
  free(out);
  /* Add and replace (a later entry wins over an earlier one). */
  const char *add[] = {"WEFT_T_Y=added", "WEFT_T_X=first", "WEFT_T_X=replaced",
                       NULL};
  weft_proc_opts o = {.env = add};
  cr_assert_eq(sh_out("echo \"$WEFT_T_X/$WEFT_T_Y/$WEFT_T_Z\"", &o, &out, NULL), 0);
  cr_assert_str_eq(out, "replaced/added/zed\n");
  free(out);
  /* Clear: only what env gives (env(1) prints the whole environment). */
  const char *only[] = {"A=1", "B=two words", NULL};
  weft_proc_opts c = {.env = only, .env_clear = true,
                      .out = {.mode = WEFT_STDIO_PIPE}};
  const char *envp[] = {"env", NULL}; /* found on our PATH, not its */
  weft_proc *p = spawn_ok(envp, &c);
  weft_proc_io io = {0};
  cr_assert_eq(weft_proc_communicate(p, &io), 0);
  cr_assert_str_eq(io.out, "A=1\nB=two words\n");
  cr_assert_eq(io.status, 0);
  weft_proc_io_free(&io);
  weft_proc_close(p);
  /* Clear with nothing: empty. */
  weft_proc_opts e = {.env_clear = true, .out = {.mode = WEFT_STDIO_PIPE}};
  p = spawn_ok(envp, &e);
  cr_assert_eq(weft_proc_communicate(p, &io), 0);
  cr_assert_str_eq(io.out, "");
  cr_assert_eq(io.out_len, 0);
  weft_proc_io_free(&io);
  weft_proc_close(p);
  /* Not NAME=value: refused. */
  const char *bad[] = {"NOEQUALS", NULL};
  weft_proc_opts b = {.env = bad};
  errno = 0;
  cr_assert_null(weft_proc_spawn(envp, &b));
  cr_assert_eq(errno, EINVAL);
  const char *bad2[] = {"=value", NULL};
  b.env = bad2;
  cr_assert_null(weft_proc_spawn(envp, &b));
  unsetenv("WEFT_T_X");
  unsetenv("WEFT_T_Z");
  return 0;
}

Test(proc, environment, .timeout = 30) { run_checked(env_main, NULL); }

/* ---------------------------------------------------------------- */
/* Stdio modes                                                        */
/* ---------------------------------------------------------------- */

static int stdio_main(void *arg) {
  (void)arg;
  /* Pipes both ways, interactively, line by line. */
  weft_proc_opts o = {.in = {.mode = WEFT_STDIO_PIPE}, .out = {.mode = WEFT_STDIO_PIPE}};
  const char *cat[] = {"cat", NULL};
  weft_proc *p = spawn_ok(cat, &o);
  cr_assert_null(weft_proc_stderr(p));
  weft_stream *in = weft_proc_stdin(p), *out = weft_proc_stdout(p);
  cr_assert_not_null(in);
  cr_assert_not_null(out);
  for (int i = 0; i < 3; i++) {
    char msg[32];
    int n = snprintf(msg, sizeof msg, "line %d\n", i);
    cr_assert_eq(weft_stream_write(in, msg, (size_t)n), 0);
    const char *line;
    cr_assert_eq(weft_stream_readline(out, &line), n);
    cr_assert(!memcmp(line, msg, (size_t)n));
  }
  cr_assert_eq(weft_stream_write_eof(in), 0); /* closes the pipe: cat ends */
  const char *line;
  cr_assert_eq(weft_stream_readline(out, &line), 0);
  cr_assert_eq(wait_close(p), 0);

  /* stdin from /dev/null: cat ends at once with nothing. */
  weft_proc_opts n = {.in = {.mode = WEFT_STDIO_NULL}, .out = {.mode = WEFT_STDIO_PIPE}};
  p = spawn_ok(cat, &n);
  cr_assert_null(weft_proc_stdin(p));
  weft_proc_io io = {0};
  cr_assert_eq(weft_proc_communicate(p, &io), 0);
  cr_assert_str_eq(io.out, "");
  cr_assert_null(io.err);
  weft_proc_io_free(&io);
  weft_proc_close(p);

  /* stdout to /dev/null, stderr to a pipe. */
  weft_proc_opts e = {.out = {.mode = WEFT_STDIO_NULL}, .err = {.mode = WEFT_STDIO_PIPE}};
  p = shell_ok("echo out; echo err >&2", &e);
  cr_assert_eq(weft_proc_communicate(p, &io), 0);
  cr_assert_null(io.out);
  cr_assert_str_eq(io.err, "err\n");
  weft_proc_io_free(&io);
  weft_proc_close(p);

  /* stderr merged into stdout's pipe: one stream, in order. */
  weft_proc_opts m = {.out = {.mode = WEFT_STDIO_PIPE}, .err = {.mode = WEFT_STDIO_STDOUT}};
  p = shell_ok("echo a; echo b >&2; echo c; echo d >&2", &m);
  cr_assert_null(weft_proc_stderr(p));
  cr_assert_eq(weft_proc_communicate(p, &io), 0);
  cr_assert_str_eq(io.out, "a\nb\nc\nd\n");
  cr_assert_null(io.err);
  weft_proc_io_free(&io);
  weft_proc_close(p);

  /* Separate pipes. */
  weft_proc_opts s = {.out = {.mode = WEFT_STDIO_PIPE}, .err = {.mode = WEFT_STDIO_PIPE}};
  p = shell_ok("echo a; echo b >&2; echo c", &s);
  cr_assert_eq(weft_proc_communicate(p, &io), 0);
  cr_assert_str_eq(io.out, "a\nc\n");
  cr_assert_str_eq(io.err, "b\n");
  weft_proc_io_free(&io);
  weft_proc_close(p);

  /* A given fd (a temporary file) for stdout, and for stdin; the caller
   * keeps it. */
  char path[] = "/tmp/weft_proc_fd_XXXXXX";
  int fd = mkostemp(path, O_CLOEXEC);
  cr_assert_geq(fd, 0);
  unlink(path);
  weft_proc_opts fo = {.out = {.mode = WEFT_STDIO_FD, .fd = fd}, .err = {.mode = WEFT_STDIO_STDOUT}};
  p = shell_ok("echo to the file; echo err too >&2", &fo);
  cr_assert_eq(wait_close(p), 0);
  char buf[128] = "";
  cr_assert_eq(pread(fd, buf, sizeof buf - 1, 0), 20);
  cr_assert_str_eq(buf, "to the file\nerr too\n");
  cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
  weft_proc_opts fi = {.in = {.mode = WEFT_STDIO_FD, .fd = fd}, .out = {.mode = WEFT_STDIO_PIPE}};
  p = spawn_ok((const char *[]){"tr", "a-z", "A-Z", NULL}, &fi);
  cr_assert_eq(weft_proc_communicate(p, &io), 0);
  cr_assert_str_eq(io.out, "TO THE FILE\nERR TOO\n");
  weft_proc_io_free(&io);
  weft_proc_close(p);
  cr_assert_neq(fcntl(fd, F_GETFD), -1, "the caller's fd must stay open");
  close(fd);

  /* Inherit: the child's stdin is our fd 0 (a pipe we put there). */
  int saved = dup(0);
  cr_assert_geq(saved, 0);
  int pp[2];
  cr_assert_eq(pipe(pp), 0);
  cr_assert_eq(write(pp[1], "from our stdin\n", 15), 15);
  close(pp[1]);
  cr_assert_eq(dup2(pp[0], 0), 0);
  close(pp[0]);
  weft_proc_opts inh = {.out = {.mode = WEFT_STDIO_PIPE}};
  p = spawn_ok(cat, &inh);
  cr_assert_eq(weft_proc_communicate(p, &io), 0);
  cr_assert_str_eq(io.out, "from our stdin\n");
  weft_proc_io_free(&io);
  weft_proc_close(p);
  cr_assert_eq(dup2(saved, 0), 0);
  close(saved);
  return 0;
}

Test(proc, stdio_modes, .timeout = 30) { run_checked(stdio_main, NULL); }

/* Our fds 0-2 closed: pipe ends land on 0, 1, 2, and the file actions
 * must not overwrite one with another. */
static int lowfd_main(void *arg) {
  (void)arg;
  weft_proc_opts o = {.in = {.mode = WEFT_STDIO_PIPE}, .out = {.mode = WEFT_STDIO_PIPE},
                      .err = {.mode = WEFT_STDIO_PIPE}};
  const char *sh[] = {"sh", "-c", "cat; echo err >&2", NULL};
  weft_proc *p = spawn_ok(sh, &o);
  weft_proc_io io = {.input = "through low fds\n", .input_len = 16};
  cr_assert_eq(weft_proc_communicate(p, &io), 0);
  cr_assert_str_eq(io.out, "through low fds\n");
  cr_assert_str_eq(io.err, "err\n");
  cr_assert_eq(io.input_sent, 16);
  cr_assert_eq(io.status, 0);
  weft_proc_io_free(&io);
  weft_proc_close(p);
  return 0;
}

Test(proc, low_fds, .timeout = 30) {
  int saved[3];
  for (int i = 0; i < 3; i++) saved[i] = fcntl(i, F_DUPFD_CLOEXEC, 10);
  for (int i = 0; i < 3; i++) close(i);
  int before = count_fds();
  int rc = weft_run(lowfd_main, NULL);
  int after = count_fds();
  for (int i = 0; i < 3; i++) {
    dup2(saved[i], i);
    close(saved[i]);
  }
  cr_assert_eq(rc, 0, "%s", weft_strerror(rc));
  cr_assert_eq(after, before);
  no_zombie();
}

/* Only fds 0-2 reach the child, CLOEXEC or not. */
static int fds_main(void *arg) {
  (void)arg;
  int leak[4];
  for (int i = 0; i < 4; i++) {
    leak[i] = open("/dev/null", O_RDONLY); /* no O_CLOEXEC */
    cr_assert_geq(leak[i], 0);
  }
  weft_proc_opts o = {.in = {.mode = WEFT_STDIO_PIPE}, .out = {.mode = WEFT_STDIO_PIPE},
                      .err = {.mode = WEFT_STDIO_PIPE}};
  /* ls's own fds: 0-2 and the directory it reads (3). */
  const char *ls[] = {"ls", "-1", "/proc/self/fd", NULL};
  weft_proc *p = spawn_ok(ls, &o);
  weft_proc_io io = {0};
  cr_assert_eq(weft_proc_communicate(p, &io), 0);
  cr_assert_str_eq(io.out, "0\n1\n2\n3\n");
  cr_assert_eq(io.status, 0);
  weft_proc_io_free(&io);
  weft_proc_close(p);
  for (int i = 0; i < 4; i++) close(leak[i]);
  return 0;
}

Test(proc, only_stdio_fds, .timeout = 30) {
  SKIP_UNDER_VALGRIND();
  run_checked(fds_main, NULL);
}

/* Signals we ignore or block are reset in the child. */
static int sigdef_main(void *arg) {
  (void)arg;
  char *out;
  cr_assert_eq(sh_out("grep -E '^Sig(Blk|Ign)' /proc/self/status", NULL, &out, NULL), 0);
  unsigned long long blk = 1, ign = 1;
  cr_assert_eq(sscanf(out, "SigBlk:\t%llx\nSigIgn:\t%llx", &blk, &ign), 2, "[%s]", out);
  cr_assert_eq(blk, 0, "[%s]", out);
  /* glibc's posix_spawn ignores its own internal signals (32, 33) in
   * the child, whatever we ask; every other one is at its default. */
  cr_assert_eq(ign & ~0x180000000ULL, 0, "[%s]", out);
  free(out);
  /* A child that writes to a pipe nobody reads dies of SIGPIPE (as in a
   * shell), though we ignore SIGPIPE. */
  int pp[2];
  cr_assert_eq(pipe2(pp, O_CLOEXEC), 0);
  weft_proc_opts o = {.out = {.mode = WEFT_STDIO_FD, .fd = pp[1]}};
  const char *yes[] = {"yes", NULL};
  weft_proc *p = spawn_ok(yes, &o);
  close(pp[0]);
  close(pp[1]);
  cr_assert_eq(wait_close(p), -SIGPIPE);
  return 0;
}

Test(proc, signals_reset_in_child, .timeout = 30) {
  SKIP_UNDER_VALGRIND();
  signal(SIGPIPE, SIG_IGN);
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &s, NULL);
  run_checked(sigdef_main, NULL);
}

/* ---------------------------------------------------------------- */
/* communicate                                                        */
/* ---------------------------------------------------------------- */

#define BIG ((size_t)10 << 20)

static int big_main(void *arg) {
  (void)arg;
  unsigned char *in = malloc(BIG);
  cr_assert_not_null(in);
  for (size_t i = 0; i < BIG; i++) in[i] = pat(i);
  weft_proc_opts o = {.in = {.mode = WEFT_STDIO_PIPE}, .out = {.mode = WEFT_STDIO_PIPE},
                      .err = {.mode = WEFT_STDIO_PIPE}};
  /* cat both ways, and 10 MiB on stderr too (from another cat). */
  const char *sh[] = {"sh", "-c", "tee /dev/stderr", NULL};
  weft_proc *p = spawn_ok(sh, &o);
  weft_proc_io io = {.input = in, .input_len = BIG};
  int64_t t0 = weft_now();
  cr_assert_eq(weft_proc_communicate(p, &io), 0);
  cr_log_info("10 MiB in, 2 x 10 MiB out: %.0f ms", MS_OF(weft_now() - t0));
  cr_assert_eq(io.input_sent, BIG);
  cr_assert_eq(io.out_len, BIG);
  cr_assert_eq(io.err_len, BIG);
  cr_assert(!memcmp(io.out, in, BIG), "stdout differs");
  cr_assert(!memcmp(io.err, in, BIG), "stderr differs");
  cr_assert_eq(io.out[BIG], '\0');
  cr_assert_eq(io.status, 0);
  weft_proc_io_free(&io);
  cr_assert_null(io.out);
  weft_proc_close(p);
  free(in);
  return 0;
}

Test(proc, communicate_10mib, .timeout = 60) { run_checked(big_main, NULL); }

/* A child that reads 10 bytes and exits while we write 10 MiB: -EPIPE,
 * what it wrote is collected, no SIGPIPE. */
static int early_close_main(void *arg) {
  (void)arg;
  unsigned char *in = malloc(BIG);
  cr_assert_not_null(in);
  for (size_t i = 0; i < BIG; i++) in[i] = pat(i);
  weft_proc_opts o = {.in = {.mode = WEFT_STDIO_PIPE}, .out = {.mode = WEFT_STDIO_PIPE}};
  const char *head[] = {"head", "-c", "10", NULL};
  weft_proc *p = spawn_ok(head, &o);
  weft_proc_io io = {.input = in, .input_len = BIG};
  cr_assert_eq(weft_proc_communicate(p, &io), -EPIPE);
  cr_assert_eq(io.out_len, 10);
  cr_assert(!memcmp(io.out, in, 10));
  cr_assert_eq(io.status, 0);
  cr_assert_geq(io.input_sent, 10);
  cr_assert_lt(io.input_sent, BIG);
  cr_assert_eq(n_sigpipe, 0, "SIGPIPE raised");
  weft_proc_io_free(&io);
  weft_proc_close(p);
  /* A child that closes its stdin before reading anything, and writes on. */
  weft_proc_opts o2 = {.in = {.mode = WEFT_STDIO_PIPE}, .out = {.mode = WEFT_STDIO_PIPE}};
  const char *sh[] = {"sh", "-c", "exec 0<&-; sleep 0.1; echo still here", NULL};
  p = spawn_ok(sh, &o2);
  cr_assert_eq(weft_proc_communicate(p, &io), -EPIPE);
  cr_assert_str_eq(io.out, "still here\n");
  cr_assert_eq(io.status, 0);
  cr_assert_eq(n_sigpipe, 0, "SIGPIPE raised");
  weft_proc_io_free(&io);
  weft_proc_close(p);
  free(in);
  return 0;
}

Test(proc, child_closes_stdin_early, .timeout = 60) {
  struct sigaction sa = {.sa_handler = on_sigpipe};
  sigemptyset(&sa.sa_mask);
  cr_assert_eq(sigaction(SIGPIPE, &sa, NULL), 0);
  n_sigpipe = 0;
  run_checked(early_close_main, NULL);
}

static int limit_main(void *arg) {
  (void)arg;
  /* Endless output: WEFT_ELIMIT at once, the child still runs. */
  weft_proc_opts o = {.out = {.mode = WEFT_STDIO_PIPE}};
  const char *cat[] = {"cat", "/dev/zero", NULL};
  weft_proc *p = spawn_ok(cat, &o);
  weft_proc_io io = {.limit = 100000};
  cr_assert_eq(weft_proc_communicate(p, &io), WEFT_ELIMIT);
  cr_assert_eq(io.out_len, 100000);
  cr_assert_eq(io.out[0], 0);
  int st;
  cr_assert_eq(weft_proc_status(p, &st), -EAGAIN);
  cr_assert_eq(weft_proc_kill(p), 0);
  cr_assert_eq(wait_close(p), -SIGKILL);
  weft_proc_io_free(&io);
  /* Exactly the limit is fine; one more byte is not (stderr too). */
  weft_proc_opts e = {.out = {.mode = WEFT_STDIO_PIPE}, .err = {.mode = WEFT_STDIO_PIPE}};
  p = shell_ok("printf 12345; printf 1234 >&2", &e);
  io = (weft_proc_io){.limit = 5};
  cr_assert_eq(weft_proc_communicate(p, &io), 0);
  cr_assert_str_eq(io.out, "12345");
  cr_assert_str_eq(io.err, "1234");
  weft_proc_io_free(&io);
  cr_assert_eq(wait_close(p), 0);
  p = shell_ok("printf 1234 ; printf 123456 >&2; exec sleep 100", &e);
  io = (weft_proc_io){.limit = 5};
  cr_assert_eq(weft_proc_communicate(p, &io), WEFT_ELIMIT);
  cr_assert_eq(io.err_len, 5);
  cr_assert_str_eq(io.err, "12345");
  weft_proc_io_free(&io);
  cr_assert_eq(weft_proc_kill(p), 0);
  cr_assert_eq(wait_close(p), -SIGKILL);
  return 0;
}

Test(proc, communicate_limit, .timeout = 30) { run_checked(limit_main, NULL); }

/* Cancelled communicate: what came is kept, input_sent is exact. */
static int comm_cancel_main(void *arg) {
  (void)arg;
  weft_proc_opts o = {.in = {.mode = WEFT_STDIO_PIPE}, .out = {.mode = WEFT_STDIO_PIPE}};
  /* Reads 5 bytes, echoes them, then sleeps without reading. */
  const char *sh[] = {"sh", "-c", "head -c 5; exec sleep 100", NULL};
  weft_proc *p = spawn_ok(sh, &o);
  size_t n = (size_t)4 << 20; /* far more than a pipe holds */
  char *in = malloc(n);
  memset(in, 'x', n);
  weft_proc_io io = {.input = in, .input_len = n};
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(500));
  cr_assert_eq(weft_proc_communicate(p, &io), -ECANCELED);
  cr_assert_eq(weft_scope_close(&sc), -ETIMEDOUT);
  cr_assert_str_eq(io.out, "xxxxx");
  /* The pipe took some (at least the 5 bytes head read), not all. */
  cr_assert_geq(io.input_sent, 5);
  cr_assert_lt(io.input_sent, n);
  /* The stream holds exactly what was handed to it and not taken. */
  weft_stream *s = weft_proc_stdin(p);
  cr_assert_gt(weft_stream_write_buffered(s), 0);
  cr_assert_eq(weft_proc_terminate(p), 0);
  cr_assert_eq(wait_close(p), -SIGTERM);
  weft_proc_io_free(&io);
  free(in);
  return 0;
}

Test(proc, communicate_cancelled, .timeout = 30) {
  run_checked(comm_cancel_main, NULL);
}

/* ---------------------------------------------------------------- */
/* Waiting: deadlines, several waiters, close                         */
/* ---------------------------------------------------------------- */

static int deadline_main(void *arg) {
  (void)arg;
  const char *sl[] = {"sleep", "100", NULL};
  weft_proc *p = spawn_ok(sl, NULL);
  weft_scope sc;
  int64_t t0 = weft_now();
  weft_scope_open_after(&sc, WEFT_MS(100));
  int st = 12345;
  cr_assert_eq(weft_proc_wait(p, &st), -ECANCELED);
  /* Level-triggered: again at once. */
  cr_assert_eq(weft_proc_wait(p, &st), -ECANCELED);
  cr_assert_eq(weft_scope_close(&sc), -ETIMEDOUT);
  cr_assert_eq(st, 12345);
  cr_assert_geq(weft_now() - t0, WEFT_MS(100));
  cr_assert_lt(weft_now() - t0, WEFT_MS(100) + T_SLACK);
  /* The child is untouched and the status still to come. */
  cr_assert_eq(weft_proc_status(p, &st), -EAGAIN);
  cr_assert_eq(kill(weft_proc_pid(p), 0), 0);
  cr_assert_eq(weft_proc_kill(p), 0);
  cr_assert_eq(weft_proc_wait(p, &st), 0);
  cr_assert_eq(st, -SIGKILL);
  cr_assert_eq(weft_proc_close(p), 0);
  /* A child that exits after the wait was cancelled, while nobody
   * waits: collected later. (It lives a while: one that exits before the
   * wait looks is simply collected.) */
  const char *s3[] = {"sh", "-c", "sleep 0.2; exit 3", NULL};
  p = spawn_ok(s3, NULL);
  weft_scope_open_after(&sc, 0);
  cr_assert_eq(weft_proc_wait(p, &st), -ECANCELED);
  weft_scope_close(&sc);
  weft_sleep(WEFT_MS(400));
  cr_assert_eq(weft_proc_wait(p, &st), 0);
  cr_assert_eq(st, 3);
  weft_proc_close(p);
  return 0;
}

Test(proc, wait_deadline, .timeout = 30) { run_checked(deadline_main, NULL); }
Test(proc, wait_deadline_sigchld, .timeout = 30) {
  run_checked_sigchld(deadline_main, NULL);
}

typedef struct waiter {
  weft_proc *p;
  int status;
  int rc;
} waiter;

static int wait_task(void *arg) {
  waiter *w = arg;
  w->rc = weft_proc_wait(w->p, &w->status);
  return 0;
}

static int waiters_main(void *arg) {
  (void)arg;
  const char *sh[] = {"sh", "-c", "sleep 0.2; exit 5", NULL};
  weft_proc *p = spawn_ok(sh, NULL);
  waiter w[4];
  weft_task *t[4];
  for (int i = 0; i < 4; i++) {
    w[i] = (waiter){.p = p, .status = -1, .rc = 1};
    t[i] = spawn_named(wait_task, &w[i], "waiter");
  }
  weft_yield();
  weft_cancel(t[3]); /* one waiter gives up: the others are not affected */
  for (int i = 0; i < 4; i++) cr_assert_eq(weft_join(t[i]), 0);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(w[i].rc, 0);
    cr_assert_eq(w[i].status, 5);
  }
  cr_assert_eq(w[3].rc, -ECANCELED);
  cr_assert_eq(wait_close(p), 5);
  /* Closing a child that tasks wait on: they wake with -EBADF, and the
   * loop reaps it later. */
  const char *sl[] = {"sleep", "0.3", NULL};
  p = spawn_ok(sl, NULL);
  pid_t pid = weft_proc_pid(p);
  for (int i = 0; i < 2; i++) {
    w[i] = (waiter){.p = p, .status = -1, .rc = 1};
    t[i] = spawn_named(wait_task, &w[i], "waiter");
  }
  weft_yield();
  cr_assert_eq(weft_proc_close(p), 0);
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(weft_join(t[i]), 0);
    cr_assert_eq(w[i].rc, -EBADF);
  }
  /* Reaped by the loop once it exits (no zombie while the loop runs). */
  siginfo_t si;
  int64_t end = weft_now() + WEFT_SEC(5);
  for (;;) {
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0) break;
    cr_assert_lt(weft_now(), end, "the orphan was not reaped");
    weft_sleep(WEFT_MS(10));
  }
  cr_assert_eq(errno, ECHILD);
  return 0;
}

Test(proc, several_waiters, .timeout = 30) { run_checked(waiters_main, NULL); }
Test(proc, several_waiters_sigchld, .timeout = 30) {
  run_checked_sigchld(waiters_main, NULL);
}

/* ---------------------------------------------------------------- */
/* weft_proc_run                                                      */
/* ---------------------------------------------------------------- */

static int run_basic_main(void *arg) {
  (void)arg;
  weft_proc_opts o = {.in = {.mode = WEFT_STDIO_PIPE}, .out = {.mode = WEFT_STDIO_PIPE}};
  const char *tr[] = {"tr", "a-z", "A-Z", NULL};
  weft_proc_io io = {.input = "hello\n", .input_len = 6};
  cr_assert_eq(weft_proc_run(tr, &o, &io, 0), 0);
  cr_assert_str_eq(io.out, "HELLO\n");
  cr_assert_eq(io.status, 0);
  weft_proc_io_free(&io);
  /* io NULL: just the status... not even that; stdout pipe drained. */
  const char *yes10[] = {"sh", "-c", "head -c 1000000 /dev/zero; exit 4", NULL};
  weft_proc_opts po = {.out = {.mode = WEFT_STDIO_PIPE}};
  cr_assert_eq(weft_proc_run(yes10, &po, NULL, 0), 0);
  /* Spawn errors come back as -errno. */
  const char *missing[] = {"/nonexistent/prog", NULL};
  cr_assert_eq(weft_proc_run(missing, NULL, NULL, 0), -ENOENT);
  /* Input for a stdin that is not a pipe: refused, nothing started. */
  weft_proc_io bad = {.input = "x", .input_len = 1};
  cr_assert_eq(weft_proc_run(tr, NULL, &bad, 0), -EINVAL);
  return 0;
}

Test(proc, run_basic, .timeout = 30) {
  SKIP_UNDER_VALGRIND();
  run_checked(run_basic_main, NULL);
}

typedef struct run_job {
  const char *cmd;
  int64_t grace;
  weft_proc_io io;
  int rc;
} run_job;

static int run_task(void *arg) {
  run_job *j = arg;
  weft_proc_opts o = {.out = {.mode = WEFT_STDIO_PIPE}};
  const char *argv[] = {"sh", "-c", j->cmd, NULL};
  j->rc = weft_proc_run(argv, &o, &j->io, j->grace);
  return 0;
}

/* Polls for a file (the child says it is ready). */
static void wait_file(const char *path) {
  int64_t end = weft_now() + WEFT_SEC(10);
  while (access(path, F_OK) != 0) {
    cr_assert_lt(weft_now(), end, "%s never appeared", path);
    weft_sleep(WEFT_MS(5));
  }
}

static int run_cancel_main(void *arg) {
  (void)arg;
  char dir[64], ready[128], marker[128], cmd[512];
  tmpdir(dir, sizeof dir);
  snprintf(ready, sizeof ready, "%s/ready", dir);
  snprintf(marker, sizeof marker, "%s/marker", dir);

  /* 1. A child that handles SIGTERM: it exits by itself, in the grace. */
  snprintf(cmd, sizeof cmd,
           "trap 'echo term > %s; exit 3' TERM; echo started; touch %s; "
           "while :; do sleep 0.02; done", marker, ready);
  run_job j = {.cmd = cmd, .grace = WEFT_SEC(20)};
  weft_task *t = spawn_named(run_task, &j, "run");
  wait_file(ready);
  int64_t t0 = weft_now();
  cr_assert_eq(weft_cancel(t), 0);
  cr_assert_eq(weft_join(t), 0);
  cr_assert_eq(j.rc, -ECANCELED);
  cr_assert_lt(weft_now() - t0, WEFT_SEC(5), "it waited for the grace");
  cr_assert(file_has(marker, "term"), "the child got no SIGTERM");
  cr_assert_eq(j.io.status, 3);
  cr_assert_str_eq(j.io.out, "started\n"); /* kept across the cancel */
  weft_proc_io_free(&j.io);
  unlink(marker);
  unlink(ready);

  /* 2. A child that ignores SIGTERM: SIGKILL after the grace. */
  snprintf(cmd, sizeof cmd,
           "trap '' TERM; touch %s; while :; do sleep 0.02; done", ready);
  j = (run_job){.cmd = cmd, .grace = WEFT_MS(300)};
  t = spawn_named(run_task, &j, "run");
  wait_file(ready);
  t0 = weft_now();
  cr_assert_eq(weft_cancel(t), 0);
  cr_assert_eq(weft_join(t), 0);
  int64_t took = weft_now() - t0;
  cr_assert_eq(j.rc, -ECANCELED);
  cr_assert_eq(j.io.status, -SIGKILL);
  cr_assert_geq(took, WEFT_MS(300), "killed before the grace");
  cr_assert_lt(took, WEFT_MS(300) + T_SLACK);
  weft_proc_io_free(&j.io);
  unlink(ready);

  /* 3. Under a deadline (a scope around the call). */
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_MS(100));
  const char *sl[] = {"sleep", "100", NULL};
  weft_proc_io io = {0};
  cr_assert_eq(weft_proc_run(sl, NULL, &io, WEFT_SEC(1)), -ECANCELED);
  cr_assert_eq(weft_scope_close(&sc), -ETIMEDOUT);
  cr_assert_eq(io.status, -SIGTERM);
  rmdir(dir);
  return 0;
}

Test(proc, run_cancelled, .timeout = 60) { run_checked(run_cancel_main, NULL); }
Test(proc, run_cancelled_sigchld, .timeout = 60) {
  run_checked_sigchld(run_cancel_main, NULL);
}

/* ---------------------------------------------------------------- */
/* Many children                                                      */
/* ---------------------------------------------------------------- */

typedef struct many {
  int i;
  int status;
  int rc;
} many;

static int many_task(void *arg) {
  many *m = arg;
  char cmd[32];
  snprintf(cmd, sizeof cmd, "exit %d", m->i);
  const char *argv[] = {"sh", "-c", cmd, NULL};
  weft_proc *p = weft_proc_spawn(argv, NULL);
  if (!p) return m->rc = -errno;
  m->rc = weft_proc_wait(p, &m->status);
  weft_proc_close(p);
  return 0;
}

static int true_task(void *arg) {
  many *m = arg;
  const char *argv[] = {"/bin/true", NULL};
  weft_proc *p = weft_proc_spawn(argv, NULL);
  if (!p) return m->rc = -errno;
  m->rc = weft_proc_wait(p, &m->status);
  weft_proc_close(p);
  return 0;
}

static int many_main(void *arg) {
  (void)arg;
  many m[100];
  weft_group *g = weft_group_open();
  for (int i = 0; i < 100; i++) {
    m[i] = (many){.i = i * 2 + 1, .status = -1, .rc = 1};
    gspawn_named(g, many_task, &m[i], "child");
  }
  cr_assert_eq(weft_group_close(g, NULL), 0);
  for (int i = 0; i < 100; i++) {
    cr_assert_eq(m[i].rc, 0, "child %d: %s", i, weft_strerror(m[i].rc));
    cr_assert_eq(m[i].status, i * 2 + 1, "child %d: status %d", i, m[i].status);
  }
  g = weft_group_open();
  for (int i = 0; i < 100; i++) {
    m[i] = (many){.status = -1, .rc = 1};
    gspawn_named(g, true_task, &m[i], "true");
  }
  cr_assert_eq(weft_group_close(g, NULL), 0);
  for (int i = 0; i < 100; i++) {
    cr_assert_eq(m[i].rc, 0);
    cr_assert_eq(m[i].status, 0);
  }
  return 0;
}

Test(proc, hundred_children, .timeout = 60) { run_checked(many_main, NULL); }
Test(proc, hundred_children_sigchld, .timeout = 60) {
  run_checked_sigchld(many_main, NULL);
}

/* ---------------------------------------------------------------- */
/* Process groups                                                     */
/* ---------------------------------------------------------------- */

/* Orphaned grandchildren (the sleeps below, once their shell is gone)
 * come to us (a subreaper): reap those of group pgid. */
static void reap_group(pid_t pgid) {
  int64_t end = weft_now() + WEFT_SEC(5);
  for (;;) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = waitid(P_PGID, (id_t)pgid, &si, WEXITED | WNOHANG);
    if (r < 0 && errno == ECHILD && kill(-pgid, 0) < 0) return;
    cr_assert_lt(weft_now(), end, "group %d still has processes", (int)pgid);
    if (r < 0 || si.si_pid == 0) weft_sleep(WEFT_MS(5));
  }
}

static int group_main(void *arg) {
  (void)arg;
  weft_proc_opts o = {.new_group = true, .out = {.mode = WEFT_STDIO_PIPE}};
  weft_proc *p = shell_ok("sleep 100 & sleep 100 & echo go; wait", &o);
  pid_t pgid = weft_proc_pid(p);
  cr_assert_eq(getpgid(pgid), pgid, "not a group leader");
  cr_assert_neq(getpgid(pgid), getpgrp());
  const char *line;
  cr_assert_eq(weft_stream_readline(weft_proc_stdout(p), &line), 3);
  /* A process joining the group. */
  weft_proc_opts jo = {.join_group = pgid};
  const char *sl[] = {"sleep", "100", NULL};
  weft_proc *q = spawn_ok(sl, &jo);
  cr_assert_eq(getpgid(weft_proc_pid(q)), pgid);
  cr_assert_eq(weft_proc_signal_group(q, 0), 0);
  /* One signal reaches all of them. */
  cr_assert_eq(weft_proc_signal_group(p, SIGTERM), 0);
  cr_assert_eq(wait_close(p), -SIGTERM);
  cr_assert_eq(wait_close(q), -SIGTERM);
  reap_group(pgid);
  cr_assert_eq(kill(-pgid, 0), -1);
  cr_assert_eq(errno, ESRCH);
  /* Joining a group that does not exist: the spawn fails. */
  weft_proc_opts bad = {.join_group = pgid};
  errno = 0;
  cr_assert_null(weft_proc_spawn(sl, &bad));
  cr_assert(errno == EPERM || errno == ESRCH, "errno %d", errno);
  return 0;
}

Test(proc, process_group, .timeout = 30) {
  SKIP_UNDER_VALGRIND();
  cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  run_checked(group_main, NULL);
}

/* ---------------------------------------------------------------- */
/* No zombie: orphans and the end of the loop                         */
/* ---------------------------------------------------------------- */

static pid_t left_pid[2];

static int orphan_main(void *arg) {
  (void)arg;
  /* Closed while running, exits soon: the loop reaps it meanwhile. */
  const char *sh[] = {"sh", "-c", "sleep 0.1", NULL};
  weft_proc *p = spawn_ok(sh, NULL);
  pid_t pid = weft_proc_pid(p);
  cr_assert_eq(weft_proc_close(p), 0);
  int64_t end = weft_now() + WEFT_SEC(5);
  siginfo_t si;
  for (;;) {
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0) break;
    cr_assert_lt(weft_now(), end, "the orphan was not reaped");
    weft_sleep(WEFT_MS(10));
  }
  cr_assert_eq(errno, ECHILD);
  /* Closed while running, still running when the loop ends. */
  const char *sl[] = {"sleep", "100", NULL};
  p = spawn_ok(sl, NULL);
  left_pid[0] = weft_proc_pid(p);
  cr_assert_eq(weft_proc_close(p), 0);
  /* Never closed, running when the loop ends (with pipes: no fd leak). */
  weft_proc_opts o = {.in = {.mode = WEFT_STDIO_PIPE}, .out = {.mode = WEFT_STDIO_PIPE},
                      .err = {.mode = WEFT_STDIO_PIPE}};
  p = spawn_ok(sl, &o);
  left_pid[1] = weft_proc_pid(p);
  return 0;
}

static void orphans_check(void) {
  for (int i = 0; i < 2; i++) {
    cr_assert_gt(left_pid[i], 0);
    siginfo_t si;
    cr_assert_eq(waitid(P_PID, (id_t)left_pid[i], &si, WEXITED | WNOHANG), -1);
    cr_assert_eq(errno, ECHILD, "child %d not reaped", (int)left_pid[i]);
  }
}

Test(proc, orphans_and_loop_end, .timeout = 30) {
  run_checked(orphan_main, NULL);
  orphans_check();
}

Test(proc, orphans_and_loop_end_sigchld, .timeout = 30) {
  run_checked_sigchld(orphan_main, NULL);
  orphans_check();
}

/* A runner: children survive between runs, and close reaps them. */
static weft_proc *runner_p;
static int runner_a(void *arg) {
  (void)arg;
  const char *sh[] = {"sh", "-c", "sleep 0.2; exit 9", NULL};
  runner_p = spawn_ok(sh, NULL);
  return 0;
}
static int runner_b(void *arg) {
  (void)arg;
  int st;
  cr_assert_eq(weft_proc_wait(runner_p, &st), 0);
  cr_assert_eq(st, 9);
  cr_assert_eq(weft_proc_close(runner_p), 0);
  const char *sl[] = {"sleep", "100", NULL};
  runner_p = spawn_ok(sl, NULL); /* left for runner_close */
  left_pid[0] = weft_proc_pid(runner_p);
  return 0;
}

Test(proc, runner, .timeout = 30) {
  int before = count_fds();
  weft_runner *r = weft_runner_open(NULL);
  cr_assert_not_null(r);
  cr_assert_eq(weft_runner_run(r, runner_a, NULL), 0);
  cr_assert_eq(weft_runner_run(r, runner_b, NULL), 0);
  cr_assert_eq(kill(left_pid[0], 0), 0);
  cr_assert_eq(weft_runner_close(r), 0);
  cr_assert_eq(kill(left_pid[0], 0), -1);
  cr_assert_eq(count_fds(), before);
  no_zombie();
}

/* ---------------------------------------------------------------- */
/* SIGCHLD mode                                                       */
/* ---------------------------------------------------------------- */

static int has_reaper(weft_task *t, void *arg) {
  (void)arg;
  return !strcmp(weft_task_name(t), "weft-proc-reaper");
}

static int sigchld_main(void *arg) {
  bool want_reaper = arg != NULL;
  const char *sl[] = {"sleep", "100", NULL};
  weft_proc *a = spawn_ok(sl, NULL);
  int fds = count_fds();
  weft_proc *b = spawn_ok(sl, NULL);
  /* pidfd mode holds one fd per child; SIGCHLD mode none. */
  cr_assert_eq(count_fds(), fds + (want_reaper ? 0 : 1));
  cr_assert_eq(weft_tasks_foreach(has_reaper, NULL), want_reaper ? 1 : 0);
  weft_proc_kill(a);
  weft_proc_terminate(b);
  cr_assert_eq(wait_close(a), -SIGKILL);
  cr_assert_eq(wait_close(b), -SIGTERM);
  status_main(NULL);
#ifndef __SANITIZE_THREAD__
  /* Reaped when the SIGCHLD comes, not by the reaper's look every second
   * without one (the safety net for a lost SIGCHLD; TSan can hold a
   * signal back while the loop sleeps, so not checked there). */
  for (int i = 0; i < 3; i++) {
    const char *s3[] = {"sleep", "0.3", NULL};
    int64_t t0 = weft_now();
    cr_assert_eq(wait_close(spawn_ok(s3, NULL)), 0);
    cr_assert_lt(weft_now() - t0, WEFT_MS(800), "the exit was not seen at once");
  }
#endif
  /* Someone else's child (not weft's) is left alone. */
  pid_t other;
  char *argv[] = {"sh", "-c", "exit 6", NULL};
  cr_assert_eq(posix_spawnp(&other, "sh", NULL, NULL, argv, environ), 0);
  const char *t[] = {"sh", "-c", "sleep 0.1", NULL};
  cr_assert_eq(wait_close(spawn_ok(t, NULL)), 0);
  int st;
  cr_assert_eq(waitpid(other, &st, 0), other);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 6);
  return 0;
}

Test(proc, sigchld_forced, .timeout = 30) {
  SKIP_UNDER_VALGRIND();
  run_checked_sigchld(sigchld_main, (void *)1);
}
Test(proc, pidfd_default, .timeout = 30) {
  SKIP_UNDER_VALGRIND();
  run_checked(sigchld_main, NULL);
}

/* ---------------------------------------------------------------- */
/* Fd exhaustion in the middle of a spawn                             */
/* ---------------------------------------------------------------- */

/* The RLIMIT_NOFILE that leaves exactly `avail` fds free: the number of
 * the avail-th free fd (from 0), so that the free ones below it are the
 * only ones a new fd can take. */
static rlim_t limit_for(int avail) {
  for (int fd = 0, seen = 0; fd < 65536; fd++) {
    if (fcntl(fd, F_GETFD) != -1) continue;
    if (seen++ == avail) return (rlim_t)fd;
  }
  return 0;
}

static int emfile_main(void *arg) {
  (void)arg;
  const char *t[] = {"/bin/true", NULL};
  cr_assert_eq(wait_close(spawn_ok(t, NULL)), 0); /* the mode is decided */
  struct rlimit old;
  cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
  weft_proc_opts o = {.in = {.mode = WEFT_STDIO_PIPE}, .out = {.mode = WEFT_STDIO_PIPE},
                      .err = {.mode = WEFT_STDIO_PIPE}};
  int failed = 0;
  /* Three pipes need 6 fds, and the pidfd one more: every fd budget
   * below that fails somewhere else, with nothing left open. */
  for (int avail = 0; avail <= 8; avail++) {
    int before = count_fds();
    struct rlimit lim = old;
    lim.rlim_cur = limit_for(avail);
    cr_assert_gt(lim.rlim_cur, 0);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
    errno = 0;
    weft_proc *p = weft_proc_spawn(t, &o);
    int e = errno;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    if (!p) {
      cr_assert_eq(e, EMFILE, "avail %d: errno %d", avail, e);
      cr_assert_eq(count_fds(), before, "avail %d: fd leak", avail);
      failed++;
    } else {
      weft_proc_io io = {0};
      cr_assert_eq(weft_proc_communicate(p, &io), 0);
      weft_proc_io_free(&io);
      cr_assert_eq(io.status, 0);
      weft_proc_close(p);
      cr_assert_eq(count_fds(), before);
    }
  }
  cr_assert_geq(failed, 6);
  /* And spawns work again. */
  weft_proc *p = spawn_ok(t, &o);
  weft_proc_io io = {0};
  cr_assert_eq(weft_proc_communicate(p, &io), 0);
  weft_proc_io_free(&io);
  weft_proc_close(p);
  return 0;
}

Test(proc, fd_exhaustion, .timeout = 30) { run_checked(emfile_main, NULL); }

/* ---------------------------------------------------------------- */
/* Bad input, other loops                                             */
/* ---------------------------------------------------------------- */

static int badinput_main(void *arg) {
  (void)arg;
  const char *t[] = {"/bin/true", NULL};
  const char *empty[] = {NULL};
  errno = 0;
  cr_assert_null(weft_proc_spawn(NULL, NULL));
  cr_assert_eq(errno, EINVAL);
  errno = 0;
  cr_assert_null(weft_proc_spawn(empty, NULL));
  cr_assert_eq(errno, EINVAL);
  errno = 0;
  cr_assert_null(weft_proc_shell(NULL, NULL));
  cr_assert_eq(errno, EINVAL);
  weft_proc_opts o = {.in = {.mode = WEFT_STDIO_STDOUT}};
  errno = 0;
  cr_assert_null(weft_proc_spawn(t, &o));
  cr_assert_eq(errno, EINVAL);
  o = (weft_proc_opts){.out = {.mode = WEFT_STDIO_STDOUT}};
  cr_assert_null(weft_proc_spawn(t, &o));
  o = (weft_proc_opts){.err = {.mode = (weft_stdio_mode)42}};
  cr_assert_null(weft_proc_spawn(t, &o));
  o = (weft_proc_opts){.out = {.mode = WEFT_STDIO_FD, .fd = -1}};
  cr_assert_null(weft_proc_spawn(t, &o));
  o = (weft_proc_opts){.out = {.mode = WEFT_STDIO_FD, .fd = 987}}; /* not open */
  errno = 0;
  cr_assert_null(weft_proc_spawn(t, &o));
  cr_assert_eq(errno, EINVAL);
  o = (weft_proc_opts){.new_group = true, .join_group = 1};
  cr_assert_null(weft_proc_spawn(t, &o));
  o = (weft_proc_opts){.join_group = -5};
  cr_assert_null(weft_proc_spawn(t, &o));
  weft_stream_opts so = {.high_water = 10, .low_water = 20};
  o = (weft_proc_opts){.out = {.mode = WEFT_STDIO_PIPE}, .stream = &so};
  errno = 0;
  cr_assert_null(weft_proc_spawn(t, &o));
  cr_assert_eq(errno, EINVAL);
  /* NULL p everywhere. */
  cr_assert_eq(weft_proc_pid(NULL), -EINVAL);
  cr_assert_null(weft_proc_stdin(NULL));
  cr_assert_null(weft_proc_stdout(NULL));
  cr_assert_null(weft_proc_stderr(NULL));
  cr_assert_eq(weft_proc_wait(NULL, NULL), -EINVAL);
  cr_assert_eq(weft_proc_status(NULL, NULL), -EINVAL);
  cr_assert_eq(weft_proc_send_signal(NULL, SIGTERM), -EINVAL);
  cr_assert_eq(weft_proc_terminate(NULL), -EINVAL);
  cr_assert_eq(weft_proc_kill(NULL), -EINVAL);
  cr_assert_eq(weft_proc_signal_group(NULL, SIGTERM), -EINVAL);
  weft_proc_io io = {0};
  cr_assert_eq(weft_proc_communicate(NULL, &io), -EINVAL);
  cr_assert_eq(weft_proc_close(NULL), -EINVAL);
  weft_proc_io_free(NULL);
  cr_assert_eq(weft_proc_run(NULL, NULL, NULL, 0), -EINVAL);
  /* communicate: io NULL, or input for a stdin that is not a pipe. */
  weft_proc *p = spawn_ok(t, NULL);
  cr_assert_eq(weft_proc_communicate(p, NULL), -EINVAL);
  io = (weft_proc_io){.input = "x", .input_len = 1};
  cr_assert_eq(weft_proc_communicate(p, &io), -EINVAL);
  /* No pipes at all: communicate is a wait. */
  io = (weft_proc_io){0};
  cr_assert_eq(weft_proc_communicate(p, &io), 0);
  cr_assert_null(io.out);
  cr_assert_null(io.err);
  cr_assert_eq(io.status, 0);
  cr_assert_eq(weft_proc_close(p), 0);
  return 0;
}

Test(proc, bad_input, .timeout = 30) {
  const char *t[] = {"/bin/true", NULL};
  errno = 0;
  cr_assert_null(weft_proc_spawn(t, NULL)); /* no loop */
  cr_assert_eq(errno, EPERM);
  run_checked(badinput_main, NULL);
}

typedef struct other {
  weft_proc *p;
  int codes[8];
} other;

static int other_loop_main(void *arg) {
  other *o = arg;
  o->codes[0] = weft_proc_wait(o->p, NULL);
  o->codes[1] = weft_proc_status(o->p, NULL);
  o->codes[2] = weft_proc_kill(o->p);
  o->codes[3] = weft_proc_signal_group(o->p, SIGTERM);
  weft_proc_io io = {0};
  o->codes[4] = weft_proc_communicate(o->p, &io);
  o->codes[5] = weft_proc_close(o->p);
  return 0;
}

static void *other_thread(void *arg) {
  weft_run(other_loop_main, arg);
  return NULL;
}

static void *no_loop_thread(void *arg) {
  other *o = arg;
  o->codes[6] = weft_proc_status(o->p, NULL);
  o->codes[7] = weft_proc_close(o->p);
  return NULL;
}

static int eloop_main(void *arg) {
  (void)arg;
  const char *sl[] = {"sleep", "100", NULL};
  other o = {.p = spawn_ok(sl, NULL)};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, other_thread, &o), 0);
  pthread_join(th, NULL);
  cr_assert_eq(pthread_create(&th, NULL, no_loop_thread, &o), 0);
  pthread_join(th, NULL);
  for (int i = 0; i < 8; i++)
    cr_assert_eq(o.codes[i], WEFT_ELOOP, "call %d: %d", i, o.codes[i]);
  /* Nothing was done to it. */
  cr_assert_eq(kill(weft_proc_pid(o.p), 0), 0);
  cr_assert_eq(weft_proc_kill(o.p), 0);
  cr_assert_eq(wait_close(o.p), -SIGKILL);
  return 0;
}

Test(proc, other_loop, .timeout = 30) { run_checked(eloop_main, NULL); }

/* A wait outside a task. */
static int notask_main(void *arg) {
  (void)arg;
  return 0;
}

Test(proc, outside_task, .timeout = 30) {
  weft_runner *r = weft_runner_open(NULL);
  cr_assert_not_null(r);
  /* Between runs, on the loop's thread: spawn works (it does not wait),
   * a wait does not. */
  const char *t[] = {"/bin/true", NULL};
  weft_proc *p = weft_proc_spawn(t, NULL);
  cr_assert_not_null(p);
  cr_assert_eq(weft_proc_wait(p, NULL), WEFT_ENOTASK);
  weft_proc_io io = {0};
  cr_assert_eq(weft_proc_communicate(p, &io), WEFT_ENOTASK);
  cr_assert_eq(weft_proc_run(t, NULL, NULL, 0), WEFT_ENOTASK);
  cr_assert_eq(weft_runner_run(r, notask_main, NULL), 0);
  cr_assert_eq(weft_proc_close(p), 0);
  cr_assert_eq(weft_runner_close(r), 0);
  no_zombie();
}

/* ---------------------------------------------------------------- */
/* Shell, the example                                                 */
/* ---------------------------------------------------------------- */

static int shell_main(void *arg) {
  (void)arg;
  char *out;
  int st = -1;
  cr_assert_eq(sh_out("printf 'a\\nb\\n' | wc -l", NULL, &out, &st), 0);
  /* wc pads with spaces on some systems. */
  cr_assert_eq(atoi(out), 2, "[%s]", out);
  cr_assert_eq(st, 0);
  free(out);
  cr_assert_eq(sh_out("echo x | tr x y; exit 2", NULL, &out, &st), 0);
  cr_assert_str_eq(out, "y\n");
  cr_assert_eq(st, 2);
  free(out);
  return 0;
}

Test(proc, shell_pipeline, .timeout = 30) { run_checked(shell_main, NULL); }

static bool example_path(char *out, size_t cap) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return false;
  self[n] = '\0';
  snprintf(out, cap, "%s/example-subprocess_pipeline", dirname(self));
  return access(out, X_OK) == 0;
}

static char ex_path[PATH_MAX + 64];

static int example_main(void *arg) {
  (void)arg;
  /* A cross build runs its tests under an emulator, which cannot exec a
   * target binary by itself: CMake names it. */
  const char *emu = getenv("WEFT_TEST_EMULATOR");
  const char *argv[] = {ex_path, NULL};
  const char *eargv[] = {emu, ex_path, NULL};
  weft_proc_opts o = {.out = {.mode = WEFT_STDIO_PIPE}, .err = {.mode = WEFT_STDIO_STDOUT}};
  weft_proc_io io = {0};
  weft_scope sc;
  weft_scope_open_after(&sc, WEFT_SEC(60));
  int rc = weft_proc_run(emu && *emu ? eargv : argv, &o, &io, WEFT_SEC(1));
  weft_scope_close(&sc);
  cr_assert_eq(rc, 0, "%s", weft_strerror(rc));
  cr_assert_eq(io.status, 0, "output: %s", io.out);
  cr_assert(strstr(io.out, "self-test ok"), "output: %s", io.out);
  weft_proc_io_free(&io);
  return 0;
}

Test(proc, example_pipeline, .timeout = 90) {
  SKIP_UNDER_VALGRIND();
  if (!example_path(ex_path, sizeof ex_path))
    cr_skip_test("no example-subprocess_pipeline next to this test");
  run_checked(example_main, NULL);
}
