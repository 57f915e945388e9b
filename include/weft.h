/*
 * weft.h -- Python asyncio's programming model as a C library.
 *
 * One event loop per thread runs many tasks ("green threads" on their own
 * stacks). A task is a plain C function `int fn(void *arg)`; a call that can
 * block (weft_sleep, weft_join, weft_wait_fd, ...) suspends only the calling
 * task and lets the loop run the others meanwhile.
 *
 * Conventions (see docs/):
 *   - Functions return 0 on success or a negative error code: a negative
 *     errno (-ECANCELED, -ETIMEDOUT, -EINVAL, ...) or a WEFT_E* code below.
 *     Functions that make an object return it, or NULL with errno set
 *     to a value the C library names: where a call would return
 *     WEFT_ENOTASK, a constructor sets EPERM; for WEFT_ELOOP, EXDEV.
 *   - Time is int64_t nanoseconds of CLOCK_MONOTONIC. Parameters named
 *     `deadline` are absolute (compare with weft_now()); parameters named
 *     `duration` are relative. Negative durations count as 0.
 *   - Every call that can block is a checkpoint: inside a cancelled cancel
 *     scope it returns -ECANCELED, every time, until the code leaves the
 *     scope (level-triggered cancellation).
 *   - Unless a function says "thread-safe", call it only from a task (or for
 *     loop-level calls, from the thread) of the loop that owns the object.
 *     Called elsewhere, it returns WEFT_ENOTASK or WEFT_ELOOP.
 */
#ifndef WEFT_H
#define WEFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define WEFT_API __attribute__((visibility("default")))
#define WEFT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define WEFT_API
#define WEFT_PRINTF(a, b)
#endif

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0
#define WEFT_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/* weft's own codes: negative, far outside errno's range. */
#define WEFT_EGROUP (-10001)      /* a group had one or more failures */
#define WEFT_ENOTASK (-10002)     /* blocking call outside a weft task */
#define WEFT_ELOOP (-10003)       /* object belongs to another loop/thread */
#define WEFT_ENOTSTARTED (-10004) /* child of weft_group_start returned
                                     without calling weft_started() */
/* The stream reads of weft/io.h: */
#define WEFT_EINCOMPLETE (-10005) /* stream ended before the read completed */
#define WEFT_ELIMIT (-10006)      /* a read went over the buffer limit */
#define WEFT_EEND (-10007)        /* the end: no item will ever come (see
                                     "End of items" below) */

/* End of items. A consumer loops until its source says nothing more will
 * come, and every source says it with the one code WEFT_EEND:
 *   while ((rc = weft_chan_recv(rx, &item)) == 0) use(&item);
 *   if (rc != WEFT_EEND) return rc;   // an error, not the end
 * weft_chan_recv (every send handle closed, the buffer drained),
 * weft_queue_get (shut down, the items left taken) and
 * weft_as_completed_next (every task returned). A stream read says it
 * as read(2) does, with 0 bytes. A producer is refused for one of two
 * reasons, each with its code:
 *   -ESHUTDOWN  the object was shut down and takes no more work (a queue
 *               after weft_queue_shutdown, an executor, a failed group,
 *               a freed loop);
 *   -EPIPE      nobody is left to take it (every receive handle of the
 *               channel closed; the peer of a connection gone). A broken
 *               barrier says -EPIPE too: the other parties are gone.
 *
 * Predicates are named for asyncio's adjective on the noun:
 * weft_task_done, weft_lock_locked, weft_sem_locked, weft_barrier_broken,
 * weft_scope_cancelled, weft_scope_expired, weft_queue_empty/_full,
 * weft_call_pending. "is_" is added only where the adjective is also the
 * noun's verb: weft_event_is_set, since weft_event_set sets it. */

/* Names a code and says what it means in weft: for every code this
 * library returns (negative errno or WEFT_E*), the code's name, then its
 * meaning here, e.g. "ESHUTDOWN: shut down: the queue, executor or loop
 * takes no more work", "WEFT_EGROUP: one or more tasks of the group
 * failed ...". A positive value gives the same text as its negation
 * (so errno from a constructor is named too). 0
 * gives "success". Another errno value gives the C library's text for
 * it, without the name; a code neither knows gives "unknown error".
 * Never NULL.
 * Thread-safe: callable from any thread, with or without a loop. The
 * string is static (never freed or overwritten; do not modify it), except
 * on a C library other than glibc 2.32 or later, where the text of an
 * errno value weft does not name lives in a thread-local buffer that the
 * same thread's next such call overwrites. */
WEFT_API const char *weft_strerror(int code);

/* ------------------------------------------------------------------ */
/* Time                                                                */
/* ------------------------------------------------------------------ */

#define WEFT_NS(x) ((int64_t)(x))
#define WEFT_US(x) ((int64_t)(x) * 1000LL)
#define WEFT_MS(x) ((int64_t)(x) * 1000000LL)
#define WEFT_SEC(x) ((int64_t)(x) * 1000000000LL)
/* A deadline that never comes. */
#define WEFT_FOREVER INT64_MAX

/* CLOCK_MONOTONIC now, in nanoseconds. Thread-safe; callable anywhere. */
WEFT_API int64_t weft_now(void);

/* ------------------------------------------------------------------ */
/* Loop and configuration                                              */
/* ------------------------------------------------------------------ */

typedef struct weft_loop weft_loop;
typedef struct weft_task weft_task;
typedef struct weft_group weft_group;

/* A task body. Returns 0 or a negative error code (see weft_fail). */
typedef int (*weft_fn)(void *arg);

/* Instrument hooks (Trio's instruments). Any member may be NULL. They run
 * on the loop's thread, inside the scheduler: they must not block or call
 * checkpoints. `arg` is the pointer given with the instrument. */
typedef struct weft_instrument {
  void (*task_spawned)(weft_task *t, void *arg);
  void (*task_scheduled)(weft_task *t, void *arg); /* made ready to run */
  void (*step_begin)(weft_task *t, void *arg);     /* about to run t */
  void (*step_end)(weft_task *t, void *arg);       /* t suspended or exited */
  void (*task_exited)(weft_task *t, void *arg);
  void (*before_poll)(int64_t timeout_ns, void *arg); /* -1: block */
  void (*after_poll)(int nevents, void *arg);
} weft_instrument;

typedef struct weft_config {
  /* Usable stack bytes per task (rounded up to pages). 0: 128 KiB. */
  size_t stack_size;
  /* Free stacks kept for reuse; the rest are given back to the kernel
   * when the loop is idle. 0: 1024. */
  size_t stack_pool;
  /* Guard pages below stacks: 1 (default) = below every stack on Linux
   * 6.13+ (MADV_GUARD_INSTALL); on older kernels while the mapping budget
   * (vm.max_map_count) allows, then stacks without guards; 0 = never. */
  int guard_pages;
  /* Debug mode: 1 on, 0 off, -1 (default) from the environment variable
   * WEFT_DEBUG=1. Reports mistakes on stderr, each in lines that start
   * "weft: debug: " and name the task (name and id) and where (its
   * function; for a bad call, the caller): a step over 100 ms without a
   * checkpoint; a step that blocked the loop's thread over 10 ms (a
   * blocking system call); a scope or group closed out of order, twice,
   * or by a task that did not open it; a cancellation swallowed (a task
   * got -ECANCELED and returned 0 while still cancelled; the root task
   * is exempt, as asyncio.run's main may end a cancellation cleanly); a
   * task that returned with a scope open or holding a lock; tasks never
   * joined or detached (at the loop's end); weft calls from the wrong
   * thread; stack overflows (with the task's name); guard fallbacks. At
   * the end, "weft: debug (info): " gives the stack high-water mark.
   * docs/guide/debugging.md shows each report. Costs some 70 ns a step. */
  int debug;
  /* Optional instrument installed for the loop's lifetime. */
  const weft_instrument *instrument;
  void *instrument_arg;
  /* Before the loop sleeps while tasks wait on fds, it polls without
   * blocking for up to this many ns, so that an answer arriving within
   * that time is taken without the cost of waking a sleeping thread (tens
   * of µs on a VM). A loop kept busy never spins; an idle one gives the
   * CPU up after this long. 0: 50 µs; < 0: never spin. */
  int64_t poll_spin;
  /* asyncio.run's graceful end: true makes the first SIGINT or SIGTERM
   * cancel the main task (weft_run's main, or the root task of the
   * running weft_runner_run), and a second SIGINT end the process at
   * once (its default action). The handler is installed while a root
   * task runs (not between weft_runner_run calls, not during the final
   * clean-up) and the previous dispositions are restored after. A
   * signal watch (weft_signal_open) that includes SIGINT or SIGTERM
   * takes them instead while it is open. The run returns -ENOSPC if 64
   * loops of the process already use this. */
  bool shutdown_signals;
  /* A trace file (docs/guide/debugging.md): task spawns, run steps, waits
   * (with what they waited on) and exits, in the Chrome trace-event JSON
   * format that Perfetto (ui.perfetto.dev) and chrome://tracing open.
   * NULL: the environment variable WEFT_TRACE names it, if set. Every
   * loop of the process that traces writes into the one file, which is
   * finished when the last of them ends. A file that cannot be opened is
   * reported on stderr and the loop runs untraced. */
  const char *trace_path;
  /* The trace file's size limit in bytes: events past it are dropped and
   * their number written at the end. 0: WEFT_TRACE_MAX (bytes) if set,
   * else 64 MiB. */
  size_t trace_max_bytes;
  /* The weft-ps socket (docs/guide/debugging.md): 1 lets the weft-ps and
   * weft-pstree tools of the same user (or root) show this loop's tasks,
   * 0 not, -1 (default) from the environment variable WEFT_PS=1. */
  int ps_socket;
} weft_config;

/* Fills *cfg with the defaults. */
WEFT_API void weft_config_init(weft_config *cfg);

/* asyncio.run: makes a loop on the calling thread, runs main(arg) as the
 * root task (named "main"), and when main returns cancels and reaps every
 * task still alive, then frees the loop. Like asyncio.run's
 * shutdown_default_executor, it also waits for the blocking functions it
 * started on the default pool (weft_to_thread) whose callers were
 * cancelled, and if no other loop uses the pool, stops and joins the
 * pool's threads: no thread weft started for the run outlives it
 * (include/weft/thread.h). Timer callbacks still pending are dropped.
 * Returns main's result, or
 * -EINVAL (main NULL), -EBUSY (the thread already runs a loop), -ENOMEM,
 * -EMFILE/-ENFILE (no file descriptor for the poller). */
WEFT_API int weft_run(weft_fn main, void *arg);
/* weft_run with a configuration (NULL: defaults). */
WEFT_API int weft_run_with(const weft_config *cfg, weft_fn main, void *arg);

/* asyncio.Runner: one loop for several top-level calls on one thread.
 * Tasks left running (detached or not joined) by one call keep running
 * during the next calls; weft_runner_close cancels and reaps them.
 * open returns NULL with errno EBUSY (thread already has a loop), ENOMEM,
 * EMFILE. */
typedef struct weft_runner weft_runner;
WEFT_API weft_runner *weft_runner_open(const weft_config *cfg);
/* Runs fn(arg) as a root task until it returns; returns its result, or
 * -EINVAL (NULL), WEFT_ELOOP (other thread), -EBUSY (called from a task). */
WEFT_API int weft_runner_run(weft_runner *r, weft_fn fn, void *arg);
/* Cancels and reaps what is left and frees the loop. 0, -EINVAL, -EBUSY
 * (called from a task), WEFT_ELOOP (other thread). */
WEFT_API int weft_runner_close(weft_runner *r);

/* The loop running on the calling thread, or NULL. */
WEFT_API weft_loop *weft_loop_current(void);

/*
 * Lifetime of a loop handle used from other threads. The weft_loop pointer
 * of weft_loop_current() is valid while the loop runs (until weft_run
 * returns, or weft_runner_close). To use it from another thread without
 * knowing that, hold a reference: take it with weft_loop_ref where the
 * pointer is known valid (on the loop's thread, or from a thread that holds
 * one already) and give it back with weft_loop_unref. A referenced loop
 * that has been freed keeps a small record alive: submissions and calls
 * to it fail with -ESHUTDOWN, never hang. Using a pointer after its loop
 * was freed and its last reference given back is undefined.
 */

/* Takes a reference on loop and returns it (NULL: returns NULL). Thread-safe. */
WEFT_API weft_loop *weft_loop_ref(weft_loop *loop);
/* Gives one back (NULL: nothing). Thread-safe. */
WEFT_API void weft_loop_unref(weft_loop *loop);

/* Adds/removes an instrument on the current loop (at most 8, including
 * the library's own: debug mode, a trace and the weft-ps socket's run-time
 * measuring take one each). 0, -EINVAL, -ENOSPC, -ENOENT (remove of an
 * unknown one), WEFT_ENOTASK (no loop). */
WEFT_API int weft_instrument_add(const weft_instrument *ins, void *arg);
WEFT_API int weft_instrument_remove(const weft_instrument *ins, void *arg);

/* ------------------------------------------------------------------ */
/* Tasks                                                               */
/* ------------------------------------------------------------------ */

typedef struct weft_spawn_opts {
  /* Copied (one allocation, freed with the record). NULL: "task-N" with
   * N the task id, formatted only if someone asks for the name. */
  const char *name;
  /* Usable stack bytes; 0: the loop's default. */
  size_t stack_size;
  /* Eager start: the child runs at once, before spawn returns, until its
   * first suspension; one that finishes without suspending never goes
   * through the scheduler. */
  bool eager;
} weft_spawn_opts;

/* asyncio.create_task: starts fn(arg) as a new task on the current loop.
 * The task holds no stack until it first runs. The returned handle belongs
 * to the caller, who must weft_join or weft_detach it exactly once.
 * NULL with errno: EINVAL (fn NULL), ENOMEM, EPERM (no loop on the
 * thread: the WEFT_ENOTASK of the conventions above). */
WEFT_API weft_task *weft_spawn(weft_fn fn, void *arg,
                               const weft_spawn_opts *opts);

/* Waits for t to finish and returns its result (0 or its error code); the
 * handle is then released. A checkpoint: inside a cancelled scope returns
 * -ECANCELED and leaves the handle valid (t keeps running).
 * Errors: -EINVAL (NULL, or a group child's handle), -EDEADLK (t is the
 * caller), -EBUSY (another task is already joining t), -ESRCH (handle
 * already joined or detached, while its record is not reused), WEFT_ENOTASK,
 * WEFT_ELOOP. */
WEFT_API int weft_join(weft_task *t);

/* asyncio.wait_for: as weft_join, but if t is not done by `deadline` (or
 * the caller is cancelled) t is cancelled and waited for. Then, as asyncio
 * >= 3.12 (gh-86296): if t did not end with -ECANCELED (it caught the
 * cancellation and returned a value, or its cleanup failed), its own code
 * is returned; if it did, -ETIMEDOUT when this call's deadline cancelled
 * it (and no outer cancellation is in effect: then -ECANCELED, and the
 * outer scope reports), -ECANCELED when the caller was cancelled. The
 * handle is released in every case but -EINVAL, -EDEADLK, -EBUSY, -ESRCH,
 * WEFT_ENOTASK and WEFT_ELOOP. */
WEFT_API int weft_join_until(weft_task *t, int64_t deadline);

/* Gives up the handle: the task runs on and frees itself when done.
 * 0, -EINVAL, -ESRCH, WEFT_ELOOP. */
WEFT_API int weft_detach(weft_task *t);

/* Cancels t: every checkpoint in t returns -ECANCELED until t returns.
 * Cancelling a finished task does nothing and returns 0. -EINVAL, -ESRCH,
 * WEFT_ELOOP. Not a checkpoint. */
WEFT_API int weft_cancel(weft_task *t);

/* True when t has returned (false for NULL). */
WEFT_API bool weft_task_done(const weft_task *t);

/* task.exception(): the result code of a finished task (0 on success),
 * and in *msg (if msg not NULL) its weft_fail message or NULL; the message
 * lives as long as the handle. -EAGAIN if t has not finished, -EINVAL. */
WEFT_API int weft_task_error(const weft_task *t, const char **msg);

/* The task's name ("task-N" if none was given); valid while the handle is.
 * "" for NULL. */
WEFT_API const char *weft_task_name(const weft_task *t);
/* The task's id: unique within its loop, starting at 1 (0 for NULL). */
WEFT_API uint64_t weft_task_id(const weft_task *t);

/* Runs cb(t, arg) on the loop when t finishes (at once if it has). Not
 * thread-safe. cb must not block. 0, -EINVAL, -ENOMEM, WEFT_ELOOP. */
WEFT_API int weft_task_on_done(weft_task *t, void (*cb)(weft_task *t, void *arg),
                               void *arg);

/* The calling task, or NULL outside a task. */
WEFT_API weft_task *weft_current(void);

/* Calls cb(t, arg) for every live task of the current loop (spawn order),
 * stopping at the first non-zero return, which is returned. 0 at the end,
 * -EINVAL (cb NULL), WEFT_ENOTASK (no loop). cb must not block, spawn, or
 * end tasks. */
WEFT_API int weft_tasks_foreach(int (*cb)(weft_task *t, void *arg), void *arg);

/* Attaches a message to the current task's failure and returns `code`:
 *   return weft_fail(-EPROTO, "bad header from %s", peer);
 * The message appears in group error reports and weft_task_error. Outside
 * a task, returns code and records nothing. */
WEFT_API int weft_fail(int code, const char *fmt, ...) WEFT_PRINTF(2, 3);

/* weft_dump_tasks: the form (one of the first three) and what to show. */
enum {
  WEFT_DUMP_TREE = 0,     /* the task tree, for people */
  WEFT_DUMP_TABLE = 1,    /* one line per task (what weft-ps shows) */
  WEFT_DUMP_JSON = 2,     /* one JSON document, for tools */
  WEFT_DUMP_ALL = 0x100,  /* every loop of the process, not only the caller's */
};

/* asyncio's `ps`/`pstree`: writes the calling loop's tasks to `out`:
 * groups and their children, cancel scopes (deadline, cancelled,
 * shielded), and for each task its id, name, state, what it waits on
 * (a sleep and until when, an fd and its direction, a lock, queue,
 * event, semaphore, channel or stream by name or address, a join on
 * which task, a thread-pool job, a process...) and for how long, its
 * stack's high-water mark, how many times it ran, and its run time (when
 * the loop measures it: in debug mode or with the weft-ps socket; a
 * trace's run spans say it too). docs/guide/debugging.md shows and explains each form.
 * Not a checkpoint: the caller keeps running. With WEFT_DUMP_ALL, other
 * loops of the process are asked to dump themselves between two of their
 * tasks; one that does not answer within a second (a task of it runs
 * without a checkpoint) is listed as busy. Callable from any thread with
 * WEFT_DUMP_ALL; without, only on a loop's thread.
 * 0, -EINVAL (out NULL, or an unknown form), WEFT_ENOTASK (no loop on
 * the thread, without WEFT_DUMP_ALL), -ENOMEM, -EIO (writing to out
 * failed). */
WEFT_API int weft_dump_tasks(FILE *out, int flags);

/* Names a weft object for the task dump and traces: a lock, event,
 * condition, semaphore, barrier, queue, channel end, rate limiter,
 * stream, server, UDP socket, process, signal watch, executor or
 * future: wherever a task waits on it, the dump shows this name beside
 * its address. The name is copied. NULL removes it; freeing the object
 * (its _free or _close function) removes it too. Thread-safe. 0, -EINVAL
 * (object NULL), -ENOMEM. */
WEFT_API int weft_set_name(const void *object, const char *name);

/* ------------------------------------------------------------------ */
/* Sleeping and checkpoints                                            */
/* ------------------------------------------------------------------ */

/* asyncio.sleep(0): lets every other ready task run once (and timers and
 * I/O get a look, as in a loop iteration). 0, -ECANCELED, WEFT_ENOTASK. */
WEFT_API int weft_yield(void);
/* Sleeps for `duration` ns (negative: 0); never returns early. 0,
 * -ECANCELED, -ENOMEM (timer heap), WEFT_ENOTASK. */
WEFT_API int weft_sleep(int64_t duration);
/* Sleeps until `deadline` (WEFT_FOREVER: until cancelled). 0, -ECANCELED,
 * -ENOMEM, WEFT_ENOTASK. */
WEFT_API int weft_sleep_until(int64_t deadline);
/* Returns -ECANCELED if the caller is in a cancelled scope, else 0,
 * without suspending. WEFT_ENOTASK outside a task. */
WEFT_API int weft_check_cancel(void);

/* Waits until fd is ready for `events` (WEFT_READABLE, WEFT_WRITABLE); the
 * _until form also returns -ETIMEDOUT when `deadline` passes. Returns the
 * ready events
 * (> 0, may include WEFT_HANGUP and WEFT_ERROR), or -ETIMEDOUT, -ECANCELED,
 * -EBADF (fd not open, or closed through weft_fd_close / weft_fd_forget
 * while waiting), -EPERM (fd cannot be polled, e.g. a regular file),
 * -EINVAL (no event asked), -ENOMEM, WEFT_ENOTASK. Readiness is
 * level-triggered: waiting again without reading returns at once.
 * Several tasks may wait for the same event on one fd (acceptors on a
 * listening socket): each report of readiness wakes the one that has
 * waited longest, and the next report (at once, if the fd is still
 * ready) the next one. weft keeps fd registered with the kernel after
 * the wait (one system call per wait, not three): close it with
 * weft_fd_close. An fd closed behind weft's back (plain close) while a
 * task waits on it is not noticed: that task sleeps until its deadline or
 * cancellation (or until a new file that gets the same number is ready);
 * later waits on the same number work. */
#define WEFT_READABLE 0x1
#define WEFT_WRITABLE 0x4
#define WEFT_ERROR 0x8
#define WEFT_HANGUP 0x10
WEFT_API int weft_wait_fd(int fd, int events);
WEFT_API int weft_wait_fd_until(int fd, int events, int64_t deadline);

/* Trio's notify_closing: weft stops watching fd and every task waiting on
 * it wakes at once with -EBADF. Call it before closing an fd that tasks
 * may wait on when the close is done elsewhere (a library's own close:
 * PQfinish, curl); weft_fd_close does both. fd stays open. Not a
 * checkpoint; callable from a task or a callback of the loop's thread.
 * 0, -EBADF (fd < 0), WEFT_ENOTASK (no loop on this thread). */
WEFT_API int weft_fd_forget(int fd);
/* weft_fd_forget(fd) (if the thread runs a loop), then close(fd). 0, or
 * -errno from close (-EBADF: not open). */
WEFT_API int weft_fd_close(int fd);

/* ------------------------------------------------------------------ */
/* Timer callbacks (loop.call_later / call_at)                         */
/* ------------------------------------------------------------------ */

/* A plain function run at a time, without a task: asyncio's
 * loop.call_later/call_at, libuv's uv_timer_t, Go's time.AfterFunc. The
 * handle is caller-owned storage (no allocation): the caller keeps it
 * valid, and does not move or copy it, while the call is pending. Its
 * contents are private. Zero it before its first use (= {0}, calloc or
 * memset: an idle handle), as libuv's uv_timer_init would. A handle that
 * has run or been cancelled can be armed again, and may be freed (even
 * from inside its own function) once it is not pending.
 * (asyncio's TimerHandle; weft_call, {fn, arg}, is weft_gather's.)
 *
 * The function runs on the loop's thread during a loop turn, between
 * tasks, not in a task: it must not block, and checkpoints called from it
 * (weft_sleep, waits, joins...) return WEFT_ENOTASK; weft_current() is
 * NULL. It may spawn tasks, set events, release semaphores, put on
 * queues with weft_queue_try_put, cancel tasks and scopes (anything that
 * does not block), and arm, re-arm and cancel handles
 * (its own too: re-arming it from inside makes a periodic timer). Calls
 * run in the order of their deadlines; equal deadlines in the order they
 * were armed. Never before the deadline (fn may compare weft_now() with
 * it), and never synchronously inside weft_call_at: a deadline already
 * past runs at the next loop turn. The loop takes a turn when no task is
 * ready, or else after every 64 task steps, so a call may run that many
 * steps late while tasks keep the loop busy, as a sleeping task wakes.
 * A call armed from inside another call with a deadline already past
 * runs at the next turn, not in the same one (such calls run in the order
 * armed), so a function that re-arms itself in the past cannot hold up
 * the loop or the other calls.
 *
 * Pending calls do not keep the loop alive: weft_run ends when main
 * returns (and the tasks left are reaped), as it does without them; calls
 * that come due while the tasks left are being reaped still run. Calls
 * still pending when weft_run (or weft_runner_close) ends are dropped,
 * never run, and their storage is not touched again: free it or reuse it
 * (a dropped handle can be armed on another loop). Under weft_runner,
 * calls pending when weft_runner_run returns stay armed and run during
 * later weft_runner_run calls.
 *
 * Every function here is for the loop's thread only (a task, a callback,
 * or between weft_runner_run calls); none is thread-safe (from another
 * thread use weft_loop_call). On a thread with no loop they return
 * WEFT_ENOTASK; on a handle pending on another thread's loop, WEFT_ELOOP. */
typedef struct weft_call_handle {
  uint64_t opaque_[8];
} weft_call_handle;

/* loop.call_at: arms c to run fn(arg) once, at `deadline` (absolute,
 * weft_now()'s clock; WEFT_FOREVER: never, pending until cancelled).
 * Re-arming a pending handle moves it (as libuv's uv_timer_start on an
 * active timer, Go's Timer.Reset): it then runs once, at the new deadline,
 * with the new fn and arg, after the calls already armed for that same
 * deadline. Returns 0, or -EINVAL (c or fn NULL), -ENOMEM (the timer heap
 * cannot grow; c is left as it was), WEFT_ENOTASK (no loop on this
 * thread), WEFT_ELOOP (c is pending on another thread's loop). */
WEFT_API int weft_call_at(weft_call_handle *c, int64_t deadline,
                          void (*fn)(void *arg), void *arg);
/* loop.call_later: weft_call_at at now + duration (negative: 0), on the
 * loop's clock (see weft_scope_open_after). Same codes. */
WEFT_API int weft_call_later(weft_call_handle *c, int64_t duration,
                             void (*fn)(void *arg), void *arg);
/* TimerHandle.cancel: if c is pending, disarms it: fn will not run (for
 * this arming) and 0 is returned. Otherwise nothing changes and it says
 * why:
 *   -EALREADY   fn has been called for the last arming: it has run, or is
 *               running now (a function cancelling its own handle)
 *   -ENOENT     nothing to cancel: c was cancelled already, is zeroed
 *               (never armed), or was dropped at the end of its loop
 *   -EINVAL     c NULL
 *   WEFT_ENOTASK no loop on this thread
 *   WEFT_ELOOP  c is pending on another thread's loop
 * Not a checkpoint. */
WEFT_API int weft_call_cancel(weft_call_handle *c);
/* True while c is armed on the calling thread's loop and its function has
 * not been called yet; false for NULL, a zeroed handle, or with no loop.
 * (Inside its own function a handle is not pending, unless it re-armed
 * itself.) */
WEFT_API bool weft_call_pending(const weft_call_handle *c);

/* ------------------------------------------------------------------ */
/* Cancel scopes                                                       */
/* ------------------------------------------------------------------ */

/* A cancel scope lives on the caller's stack (no allocation). Its storage
 * is private; do not copy or move an open scope. */
typedef struct weft_scope {
  uint64_t opaque_[12];
} weft_scope;

/* Opens a scope around the following code of the calling task, with an
 * absolute deadline (WEFT_FOREVER: none). Scopes nest; close them in
 * reverse order. 0, -EINVAL (s NULL), WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API int weft_scope_open(weft_scope *s, int64_t deadline);
/* asyncio.timeout(duration): deadline = now + duration. */
WEFT_API int weft_scope_open_after(weft_scope *s, int64_t duration);
/* A shielded scope: cancellation from outside does not reach inside (its
 * own deadline and weft_scope_cancel still do). */
WEFT_API int weft_scope_open_shielded(weft_scope *s, int64_t deadline);

/* Cancels the scope: every checkpoint inside returns -ECANCELED. Any task
 * of the loop may call it; not a checkpoint. 0, -EINVAL (NULL or not
 * open), WEFT_ELOOP (another loop's scope). Do not call after close. */
WEFT_API int weft_scope_cancel(weft_scope *s);
/* Moves the deadline (later or earlier, or WEFT_FOREVER). -EALREADY if the
 * deadline has already fired. 0, -EINVAL. */
WEFT_API int weft_scope_reschedule(weft_scope *s, int64_t deadline);
/* The scope's deadline (WEFT_FOREVER: none). */
WEFT_API int64_t weft_scope_deadline(const weft_scope *s);
/* True if the scope was cancelled (by its deadline or weft_scope_cancel);
 * false if only an outer scope is. */
WEFT_API bool weft_scope_cancelled(const weft_scope *s);
/* asyncio's Timeout.expired(): true once the scope's deadline has passed
 * (whether or not that cut anything short), also after close; false for
 * no deadline, a deadline still ahead, or NULL. Not a checkpoint. */
WEFT_API bool weft_scope_expired(const weft_scope *s);

/* Leaves the scope. Returns -ETIMEDOUT only if the scope's deadline cut
 * something short: a checkpoint inside it returned -ECANCELED because of
 * that deadline (Trio's cancelled_caught; asyncio raises TimeoutError only
 * when the body ended in CancelledError), and no enclosing scope's
 * cancellation is in effect (for an unshielded scope: then the outer one
 * reports, as in asyncio's test_nested_timeouts). Otherwise 0: a deadline
 * that passed while nothing inside was interrupted (say, during a
 * shielded sleep that completed) is no timeout -- weft_scope_expired
 * tells whether it passed. A scope cancelled by weft_scope_cancel also
 * closes with 0 (the cancellation is "caught" by the scope it targeted).
 * -EINVAL if s is not the innermost open scope of the calling task
 * (nothing is closed then). */
WEFT_API int weft_scope_close(weft_scope *s);

/* ------------------------------------------------------------------ */
/* Groups (asyncio.TaskGroup / Trio nursery)                           */
/* ------------------------------------------------------------------ */

/* Opens a group in the calling task. The code up to weft_group_close is
 * the group's body: it runs inside the group's cancel scope, so when a
 * child fails the body's checkpoints return -ECANCELED too. A cancelled
 * caller cancels its open groups. Close in reverse order of scopes.
 * NULL with errno ENOMEM, or EPERM (not called from a task). */
WEFT_API weft_group *weft_group_open(void);

/* Spawns a child into g (any task of the loop may spawn into an open
 * group, including its children). The handle is borrowed and valid only
 * while the child runs: its record is recycled as soon as it finishes, so
 * that a long-lived group (a server's) does not grow. Use it to cancel or
 * name a running child; never join or detach it. To keep a result, have
 * the child store it, or use weft_spawn + weft_join. (An eager child that
 * finishes before spawn returns gives a handle that is already stale.)
 * NULL with errno EINVAL (g or fn NULL), EPIPE (g is closed), ESHUTDOWN
 * (a child or the body already failed: the group is shutting down, and fn
 * never runs, as asyncio's "TaskGroup is shutting down"; a group
 * cancelled without a failure, by weft_group_cancel or an outer scope,
 * still takes children, which start cancelled), EXDEV (another
 * loop's group), ENOMEM. A closed group's record is reused only
 * after every other free one, so EPIPE is reliable for a while after close
 * but not forever: do not use a group after closing it. */
WEFT_API weft_task *weft_group_spawn(weft_group *g, weft_fn fn, void *arg,
                                     const weft_spawn_opts *opts);

/* Trio's nursery.start: spawns fn(arg) into g and waits until the child
 * calls weft_started(value); stores value in *value (if not NULL) and
 * returns 0. If the child fails or returns before that, start returns its
 * code (WEFT_ENOTSTARTED for a return of 0) and the group is not affected.
 * If the caller is cancelled while waiting, the child is cancelled and
 * waited for, and start returns -ECANCELED. -EINVAL, -EPIPE (g closed),
 * -ESHUTDOWN (the group had a failure: see weft_group_spawn), -ENOMEM,
 * WEFT_ENOTASK. */
WEFT_API int weft_group_start(weft_group *g, weft_fn fn, void *arg,
                              const weft_spawn_opts *opts, void **value);
/* Called by a child of weft_group_start: reports readiness. From then on
 * its failures go to the group. -EINVAL if the caller was not started
 * with weft_group_start or already reported, WEFT_ENOTASK. */
WEFT_API int weft_started(void *value);

/* Records a failure of the body (code < 0, message as weft_fail) in the
 * group and cancels the group's children and body: the `raise` inside
 * `async with TaskGroup()`. -EINVAL (g NULL or code >= 0). */
WEFT_API int weft_group_fail(weft_group *g, int code, const char *fmt, ...)
    WEFT_PRINTF(3, 4);

/* asyncio 3.15 TaskGroup.cancel: cancels the children and the body
 * without that being an error; weft_group_close then returns 0 (unless
 * something failed). Callable from the body, a child, or another task.
 * 0, -EINVAL. */
WEFT_API int weft_group_cancel(weft_group *g);

/* The errors of a closed group: the ExceptionGroup of C. */
typedef struct weft_errors weft_errors;

/* Waits for every child (even when the caller is cancelled: the children
 * are cancelled then and waited for), closes the group's scope and frees
 * g. Returns:
 *   0               all children succeeded (or were cancelled by
 *                   weft_group_cancel)
 *   WEFT_EGROUP     one or more children (or the body, weft_group_fail)
 *                   failed; the failures are in *errs if errs is not NULL
 *   -ECANCELED      the caller was cancelled from outside and nothing
 *                   failed
 *   -EINVAL         g NULL or already closed, or g is not the innermost
 *                   open scope of the caller (nothing closed)
 * *errs (if errs not NULL) receives NULL or a list the caller frees with
 * weft_errors_free. Cancelled children are never errors (a child that
 * returns -ECANCELED ended cancelled, whatever cancelled it, as asyncio's
 * TaskGroup ignores a task ending in CancelledError). After close the
 * handle is dead (its record is recycled: see weft_group_spawn). */
WEFT_API int weft_group_close(weft_group *g, weft_errors **errs);

/* Number of failures in the list (0 for NULL). */
WEFT_API size_t weft_errors_count(const weft_errors *e);
/* The i-th failure, in the order they happened: task name, code, message
 * (NULL if none). Strings live as long as the list. 0, or -ERANGE/-EINVAL. */
WEFT_API int weft_errors_get(const weft_errors *e, size_t i, const char **name,
                             int *code, const char **message);
/* except*: the number of failures with this code. */
WEFT_API size_t weft_errors_match(const weft_errors *e, int code);
/* Writes one line per failure ("name: code-name (code): message") to fd.
 * 0 or -errno. */
WEFT_API int weft_errors_print(const weft_errors *e, int fd);
/* Frees the list (NULL is fine). */
WEFT_API void weft_errors_free(weft_errors *e);

#ifdef __cplusplus
}
#endif

/* The other areas, each in its own header (each has its own extern "C"). */
#include "weft/sync.h"
#include "weft/combine.h"
#include "weft/thread.h"
#include "weft/io.h"
#include "weft/proc.h"

#endif /* WEFT_H */
