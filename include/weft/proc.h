/*
 * weft/proc.h -- subprocesses and signals: asyncio's
 * create_subprocess_exec/_shell, Process.communicate/wait/send_signal/
 * terminate/kill, add_signal_handler, and asyncio.run's graceful end on
 * SIGINT. Included by weft.h (built with the I/O layer). Guide:
 * docs/guide/processes.md.
 *
 * Rules every call here follows (besides weft.h's and weft/io.h's):
 *   - Objects (processes, signal watches) belong to the loop of the thread
 *     that made them and are used from its tasks only; a call from another
 *     thread returns WEFT_ELOOP. Nothing here is thread-safe.
 *   - Every call that can wait is a checkpoint bounded by the caller's
 *     cancel scopes; a wait cut short returns -ECANCELED and loses nothing
 *     (an exit status not yet collected stays collectable, bytes read by
 *     communicate stay in its result).
 *   - No zombie on any path: a child is reaped by the loop whether or not
 *     anyone waits for it (see weft_proc_close and the end of a loop).
 *   - SIGPIPE is never raised: a write to a child that closed its stdin
 *     returns -EPIPE.
 */
#ifndef WEFT_PROC_H
#define WEFT_PROC_H
#ifndef WEFT_H
#error "include weft.h, not weft/proc.h"
#endif

#include <signal.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Subprocesses                                                        */
/* ------------------------------------------------------------------ */

/* What one of the child's stdin, stdout, stderr is. The zero value
 * (WEFT_STDIO_INHERIT) gives the child the parent's own fd 0, 1 or 2. */
typedef enum weft_stdio_mode {
  WEFT_STDIO_INHERIT = 0, /* the parent's fd 0/1/2 */
  WEFT_STDIO_NULL,        /* /dev/null */
  WEFT_STDIO_PIPE,        /* a pipe; the parent's end is a weft_stream */
  WEFT_STDIO_STDOUT,      /* stderr only: the same as the child's stdout
                             (2>&1, also into stdout's pipe) */
  WEFT_STDIO_FD,          /* the given fd (the caller keeps it open and
                             owns it; the child gets a copy) */
} weft_stdio_mode;

typedef struct weft_stdio {
  weft_stdio_mode mode;
  int fd; /* WEFT_STDIO_FD only */
} weft_stdio;

typedef struct weft_proc_opts {
  /* Working directory of the child (NULL: the parent's). A bad one is an
   * error of the spawn call itself. */
  const char *cwd;
  /* Environment: with env_clear false and env NULL, the parent's. With
   * env_clear, the child starts with an empty environment. Then each
   * "NAME=value" of env (NULL-terminated array) is added, replacing an
   * inherited NAME: inherit, replace and add are these two fields. */
  const char *const *env;
  bool env_clear;
  weft_stdio in, out, err;
  /* Process group: new_group makes the child the leader of a new group
   * (setpgid(0, 0)), so that weft_proc_signal_group reaches it and all it
   * starts; join_group > 0 puts it in that existing group instead (the
   * next stages of a pipeline). Neither: the parent's group. */
  bool new_group;
  pid_t join_group;
  /* Options for the pipe streams (limit, high/low water marks); NULL:
   * the stream defaults. */
  const weft_stream_opts *stream;
} weft_proc_opts;

typedef struct weft_proc weft_proc;

/* asyncio.create_subprocess_exec: starts argv[0] (searched on PATH when
 * it has no '/', as execvp) with arguments argv (NULL-terminated), with
 * posix_spawn (vfork semantics: no copy of the parent's memory). Only
 * fds 0, 1 and 2 as set by opts reach the child: every other fd of the
 * parent is closed in it, CLOEXEC or not. Signals the parent catches or
 * blocks are reset to default and unblocked in the child.
 * Returns the process, owned by the caller until weft_proc_close; NULL
 * with errno: ENOENT (no such program, or cwd missing), EACCES (not
 * executable, or cwd not searchable), ENOEXEC, ENOTDIR, E2BIG, EINVAL
 * (argv NULL or empty, a bad stdio mode or fd, STDOUT for in/out),
 * EMFILE/ENFILE (no fd for the pipes; none leaks), ENOMEM, EAGAIN
 * (process limit), EPERM (no loop on the thread). Does not wait. */
WEFT_API weft_proc *weft_proc_spawn(const char *const argv[],
                                    const weft_proc_opts *opts);
/* asyncio.create_subprocess_shell: weft_proc_spawn of
 * {"/bin/sh", "-c", cmd}. The shell's own errors (a missing program in
 * cmd) are its exit status 127, as in asyncio. */
WEFT_API weft_proc *weft_proc_shell(const char *cmd,
                                    const weft_proc_opts *opts);

/* The child's pid (> 0), also after it exited (the number may belong to
 * another process by then: signal through weft_proc_send_signal, which
 * knows), or -EINVAL. */
WEFT_API pid_t weft_proc_pid(const weft_proc *p);

/* The parent's end of a WEFT_STDIO_PIPE, or NULL (not a pipe, p NULL).
 * The streams belong to p: weft_proc_close frees them; do not
 * weft_stream_close them. End the child's input with
 * weft_stream_write_eof(weft_proc_stdin(p)), which closes the pipe. */
WEFT_API weft_stream *weft_proc_stdin(weft_proc *p);
WEFT_API weft_stream *weft_proc_stdout(weft_proc *p);
WEFT_API weft_stream *weft_proc_stderr(weft_proc *p);

/* asyncio Process.wait: waits until the child has exited and returns 0,
 * with its status in *status (may be NULL): the exit code (0..255), or
 * -N if signal N killed it (asyncio's returncode). Once exited, returns
 * 0 at once every time. Several tasks may wait. The wait is a pidfd the
 * loop watches (Linux 5.3+), or SIGCHLD on older kernels (chosen at run
 * time; WEFT_PROC_PIDFD=0 in the environment forces the fallback).
 * -ECANCELED (the child is untouched; wait again later), -EBADF
 * (another task closed p meanwhile: p is gone), -EINVAL, WEFT_ELOOP,
 * WEFT_ENOTASK. */
WEFT_API int weft_proc_wait(weft_proc *p, int *status);
/* The status if the child has exited (as weft_proc_wait's), without
 * waiting: 0 and *status set, or -EAGAIN (still running), -EINVAL. */
WEFT_API int weft_proc_status(weft_proc *p, int *status);

/* asyncio send_signal / terminate (SIGTERM) / kill (SIGKILL). Sending to
 * a child that has exited (reaped or not) does nothing and returns 0, as
 * asyncio: never another process that reused the pid. 0, -EINVAL (bad
 * signal number, p NULL), -EPERM, WEFT_ELOOP. */
WEFT_API int weft_proc_send_signal(weft_proc *p, int sig);
WEFT_API int weft_proc_terminate(weft_proc *p);
WEFT_API int weft_proc_kill(weft_proc *p);
/* killpg of the child's process group (new_group or join_group): the
 * whole pipeline. 0, -ESRCH (the group is gone, or the child was not
 * put in a group of its own: it would signal the parent's), -EINVAL,
 * -EPERM, WEFT_ELOOP. */
WEFT_API int weft_proc_signal_group(weft_proc *p, int sig);

/* What weft_proc_communicate sends and collects. Set input, input_len
 * and limit; the rest is filled in. */
typedef struct weft_proc_io {
  const void *input; /* written to the child's stdin (a pipe), then EOF */
  size_t input_len;
  /* Most bytes collected from stdout and from stderr each; over it,
   * communicate returns WEFT_ELIMIT. 0: 64 MiB. */
  size_t limit;
  /* Filled in, also when communicate fails or is cancelled (nothing read
   * is lost): */
  size_t input_sent;     /* bytes of input the child's stdin took */
  char *out, *err;       /* malloc'd, NUL-terminated (for text), or NULL */
  size_t out_len, err_len;
  int status;            /* weft_proc_wait's *status once it exited */
} weft_proc_io;

/* asyncio Process.communicate: writes io->input to the child's stdin
 * (if a pipe) and closes it, reads its stdout and stderr (those that are
 * pipes) to their ends, all at once (so 10 MiB each way through cat
 * never deadlocks), then waits for the child. 0; -EPIPE (the child
 * closed its stdin before taking all the input: the rest is dropped,
 * reading and waiting go on, and this is returned at the end unless
 * another error is); WEFT_ELIMIT (stdout or stderr went over the limit:
 * it returns at once, the child still runs); -ECANCELED; read errors;
 * -EINVAL (also: input_len > 0 and stdin is not a pipe); WEFT_ELOOP.
 * io->out / io->err are set anew (a pipe that gave nothing: "", not a
 * pipe: NULL). Free io's buffers with weft_proc_io_free. */
WEFT_API int weft_proc_communicate(weft_proc *p, weft_proc_io *io);
/* Frees io->out and io->err and sets them NULL (io NULL: nothing). */
WEFT_API void weft_proc_io_free(weft_proc_io *io);

/* Trio's run_process: spawns argv, communicates (io may be NULL: no
 * input, nothing collected), waits. If the caller is cancelled meanwhile
 * the child is sent SIGTERM, given `grace` ns to exit (0: 5 s), then
 * SIGKILL, and reaped before this returns -ECANCELED: the child never
 * outlives the call (so also after WEFT_ELIMIT or a read error). Returns
 * 0 with io->status (when io) set, or the errors of weft_proc_spawn (as
 * -errno) and weft_proc_communicate (-EINVAL for input without a stdin
 * pipe comes before any child starts). */
WEFT_API int weft_proc_run(const char *const argv[],
                           const weft_proc_opts *opts, weft_proc_io *io,
                           int64_t grace);

/* Frees p and its streams (bytes still buffered for stdin are dropped:
 * weft_stream_write_eof first to flush them). Tasks waiting in
 * weft_proc_wait on p wake with -EBADF; no other call on p may be under
 * way. A child still running is not signalled: it
 * runs on and the loop reaps it when it exits (no zombie). When the loop
 * ends (weft_run returns, weft_runner_close), children of the loop still
 * running, closed or not, are sent SIGKILL and reaped, so that none
 * outlives the program's run unseen; a program that wants a program to
 * outlive it starts it through a child that exits at once (e.g. argv
 * {"setsid", "-f", prog, ...}: the program is then not weft's child). The
 * handles not closed by then are freed with the loop (with their
 * streams): do not use them after it ended. 0, -EINVAL, WEFT_ELOOP. */
WEFT_API int weft_proc_close(weft_proc *p);

/* ------------------------------------------------------------------ */
/* Signals to the program                                              */
/* ------------------------------------------------------------------ */

/*
 * asyncio add_signal_handler, Go's signal.Notify: a watch catches the
 * signals of its set, process-wide, from open to close, and tasks take
 * them with weft_signal_wait. The signals are caught by a handler weft
 * installs (sigaction), whatever thread the kernel picks, and passed to
 * every watch of every loop that includes them; the handler replaces the
 * previous disposition while any watch includes the signal, and the
 * previous one is put back when the last such watch closes (or its loop
 * ends). The same signal arriving several times before it is taken
 * counts once (as the kernel's own pending signals).
 *
 * weft_config.shutdown_signals uses the same machinery: the first SIGINT
 * or SIGTERM cancels the main task (weft_run's, or the running
 * weft_runner_run's) for a graceful end, and a second SIGINT ends the
 * process at once (its default action), as asyncio.run since 3.11.
 */
typedef struct weft_signal weft_signal;

/* Starts catching the signals of *set on the current loop. NULL with
 * errno: EINVAL (set NULL or empty, or holding SIGKILL, SIGSTOP, or a
 * signal the program's own faults raise: SIGSEGV, SIGBUS, SIGFPE,
 * SIGILL, SIGTRAP, SIGSYS), ENOMEM, EMFILE, EPERM (no loop on the
 * thread). */
WEFT_API weft_signal *weft_signal_open(const sigset_t *set);
/* Waits for one of the watch's signals and returns its number (> 0),
 * the lowest first when several are pending. A checkpoint. Several tasks
 * may wait on one watch: each signal wakes one of them. -ECANCELED (the
 * signal, if it comes, stays pending in the watch), -EINVAL, WEFT_ELOOP,
 * WEFT_ENOTASK. */
WEFT_API int weft_signal_wait(weft_signal *w);
/* Stops the watch and frees it; its pending signals are dropped; tasks
 * waiting on it wake with -EBADF. 0, -EINVAL, WEFT_ELOOP. */
WEFT_API int weft_signal_close(weft_signal *w);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_PROC_H */
