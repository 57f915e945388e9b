/*
 * weft/thread.h -- blocking code and other threads: thread pool,
 * to_thread, submitting to a loop from any thread, futures, several loops.
 * Included by weft.h. See docs/guide/threads.md.
 *
 * Thread-safety is stated per function. "From a task" functions suspend
 * only the calling task; the others may be called from any thread.
 */
#ifndef WEFT_THREAD_H
#define WEFT_THREAD_H
#ifndef WEFT_H
#error "include weft.h, not weft/thread.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Blocking code on a thread pool (asyncio.to_thread, run_in_executor) */
/* ------------------------------------------------------------------ */

/* A pool of threads running blocking functions (concurrent.futures'
 * ThreadPoolExecutor). Threads start on demand, up to the pool's size,
 * and end after an idle time. There is one default pool per process,
 * sized min(32, CPUs + 4) (Python's default), with a 10 s idle time.
 * Pool threads block all signals. After fork(), the child gets a default
 * pool of its own; executors made before the fork must not be used in
 * the child.
 *
 * The default pool is shared by every loop of the process and stops with
 * the last loop that used it (asyncio.run's shutdown_default_executor).
 * As a loop ends, weft_run, weft_run_with or weft_runner_close first waits
 * for the loop's jobs still running there whose callers were cancelled
 * (their cleanups included: queued ones never run); then, if no other
 * loop uses the pool, it stops the pool's threads and joins them before
 * returning. So when the last loop has returned, no thread weft started
 * is left. A loop that ends while another still uses the pool leaves it
 * running; a later job starts threads again. (A loop run inside one of
 * the default pool's own jobs does not stop it: it would wait for its own
 * thread; the threads end after their idle time.) Executors made with
 * weft_executor_new are not waited for nor stopped by a loop's end: shut
 * them down. */
typedef struct weft_executor weft_executor;

/* A blocking function run on a pool thread; what it returns is the job's
 * result. It must not call weft functions that need a loop. */
typedef void *(*weft_blocking_fn)(void *arg);

/* Takes over `arg` (and `result`) of a job whose result the caller did not
 * receive: called exactly once for every weft_executor_run that returns
 * an error (fn not NULL). status is 0 if fn ran (result is what it
 * returned: the caller was cancelled while it ran); otherwise fn never ran,
 * result is NULL and status says why: -ECANCELED (cancelled before a
 * thread took the job), -ESHUTDOWN (dropped by a shutdown), or the error
 * the call returned. It runs on a pool thread, on the caller's loop
 * thread, or on the thread calling weft_executor_shutdown; it must not
 * block for long. */
typedef void (*weft_cleanup_fn)(void *arg, void *result, int status);

/* asyncio.to_thread: runs fn(arg) on the default pool and suspends only
 * the calling task until it returns; stores its return value in *result
 * (if result is not NULL) and returns 0. A checkpoint: if the task is
 * cancelled while waiting it gets -ECANCELED at once; fn, if it had
 * started, finishes in the background and its result is dropped (use
 * weft_executor_run with a cleanup to free it). So `arg` must stay valid
 * until fn returns, which may be after this call returned -ECANCELED, but
 * not after the loop's weft_run (or weft_runner_close) returned: the
 * loop's end waits for fn (see weft_executor), so an fn that never
 * returns keeps it from returning.
 * Errors: -EINVAL (fn NULL), -ECANCELED, -ENOMEM, -EAGAIN (no thread
 * could be started), -ESHUTDOWN (the loop is being freed), WEFT_ENOTASK
 * (not called from a task). */
WEFT_API int weft_to_thread(weft_blocking_fn fn, void *arg, void **result);

/* loop.run_in_executor: weft_to_thread on executor `ex` (NULL: the default
 * pool), with an optional cleanup. The one rule: if this returns 0, *result
 * holds fn's return value and cleanup is not called; if it returns an
 * error (other than -EINVAL for fn NULL), cleanup(arg, result, status) is
 * called exactly once, before the return or, when the caller was cancelled
 * while fn ran, on the pool thread once fn returns (on the default pool,
 * before the loop's weft_run returns). So arg (and a result
 * that needs freeing) can be handed over safely:
 *
 *   char *buf;
 *   rc = weft_executor_run(NULL, slurp, req, free_req, (void **)&buf);
 *
 * Errors: those of weft_to_thread, and -ESHUTDOWN (ex shut down, or the
 * job was dropped by weft_executor_shutdown(ex, WEFT_EXECUTOR_DROP)). A
 * job whose caller is cancelled before a thread took it never runs
 * (status -ECANCELED). From a task. */
WEFT_API int weft_executor_run(weft_executor *ex, weft_blocking_fn fn,
                               void *arg, weft_cleanup_fn cleanup,
                               void **result);

/* A pool of at most max_threads threads (0: the default pool's size).
 * NULL with errno ENOMEM, or EAGAIN/EINVAL from the system. Thread-safe.
 * Release it with weft_executor_free. */
WEFT_API weft_executor *weft_executor_new(size_t max_threads);

/* How long a thread of ex waits for work before it ends (negative: 0;
 * WEFT_FOREVER: threads never end while ex lives); for threads that go
 * idle from now on. ex NULL: the default pool, whose threads also end
 * with the last loop that uses it, whatever this says; the setting stays
 * for the threads it starts again. 0 or -EINVAL. Thread-safe. */
WEFT_API int weft_executor_set_idle(weft_executor *ex, int64_t duration);

/* Number of threads ex has now (ex NULL: the default pool; 0 while no
 * loop uses it). Thread-safe. */
WEFT_API size_t weft_executor_threads(weft_executor *ex);

#define WEFT_EXECUTOR_WAIT 0 /* run what is queued, then stop */
#define WEFT_EXECUTOR_DROP 1 /* drop what is queued (cleanups run) */

/* executor.shutdown: ex refuses new jobs (-ESHUTDOWN) and, with
 * WEFT_EXECUTOR_DROP, drops the queued ones (their callers get
 * -ESHUTDOWN; their cleanups run). Then waits until every job that was
 * not dropped has finished and every thread has ended and been joined:
 * from a task, only the task waits (cancelled: -ECANCELED, and the
 * shutdown completes in the background, on the default pool: the loop's
 * end waits for it); from any other thread, the thread blocks. Calling it again is fine (a later DROP still drops).
 * The default pool cannot be shut down: it stops with the last loop that
 * uses it (see weft_executor). 0, -EINVAL (ex NULL or a bad
 * `how`), -ECANCELED, -EDEADLK (called from one of ex's own jobs, which
 * the wait would include: ex is shut down, not waited for); from a task
 * also -ENOMEM, -EAGAIN or -ESHUTDOWN (the wait, which runs on the default
 * pool, could not be started: ex is shut down all the same, the rest
 * completes in the background). Thread-safe. */
WEFT_API int weft_executor_shutdown(weft_executor *ex, int how);

/* Releases ex: if it was not shut down, it is now with WEFT_EXECUTOR_WAIT
 * (queued jobs still run), without waiting; its memory goes when its last
 * thread ends, and threads still running then end on their own, unjoined
 * (to know they are gone, weft_executor_shutdown first). Do not use ex
 * afterwards. 0, -EINVAL (NULL). Thread-safe. */
WEFT_API int weft_executor_free(weft_executor *ex);

/* ------------------------------------------------------------------ */
/* Loops from other threads (run_coroutine_threadsafe,                 */
/* call_soon_threadsafe)                                               */
/* ------------------------------------------------------------------ */

/* Hold a loop from another thread with weft_loop_ref/weft_loop_unref
 * (weft.h). */

/* The result of a function submitted to a loop: waited for, polled or
 * cancelled from any thread, and released with weft_future_free. */
typedef struct weft_future weft_future;

/* asyncio.run_coroutine_threadsafe: runs fn(arg) as a new task of `loop`
 * and returns a future of its result. Thread-safe: any thread, including
 * the loop's own and other loops' tasks. The loop is woken through its
 * eventfd only when it may be asleep; submissions are handled in batches.
 * A submission that the loop has not started by the time its root task
 * returned (weft_run is ending) completes with -ESHUTDOWN without running;
 * one that was cancelled before it started completes with -ECANCELED
 * without running. The submissions of one thread start in the order it
 * made them, each after the weft_loop_calls it posted before. NULL with errno EINVAL (loop or fn NULL), ENOMEM,
 * ESHUTDOWN (the loop has been freed). The caller owns the future and
 * must weft_future_free it (freeing it does not cancel the task). */
WEFT_API weft_future *weft_loop_submit(weft_loop *loop, weft_fn fn, void *arg);

/* loop.call_soon_threadsafe: runs cb(arg) on the loop's thread, between
 * tasks, soon; the calls of one thread run in the order it made them.
 * cb must not block (it is not in a task: checkpoints return
 * WEFT_ENOTASK) but may spawn tasks, cancel them or wake them. Every call
 * that returned 0 runs exactly once, also when the loop is ending.
 * Thread-safe. 0, -EINVAL, -ENOMEM, -ESHUTDOWN (the loop has been freed). */
WEFT_API int weft_loop_call(weft_loop *loop, void (*cb)(void *arg), void *arg);

/* future.result(): waits until the submitted task has finished; the
 * _until form (future.result(timeout)) also returns when `deadline` (absolute) has
 * passed. 0 with the task's result in *result (if not NULL), or
 * -ETIMEDOUT (wait again later).
 * From a task, only the task waits (a checkpoint: -ECANCELED); from any
 * other thread, the thread blocks. One waiter at a time: a second
 * concurrent waiter gets -EBUSY; waiting again after it finished returns
 * the same result again. Other errors: -EINVAL (NULL), -EDEADLK (a task
 * waiting for its own future, or the loop's thread outside a task waiting
 * for an unfinished future of that loop), -ESHUTDOWN (the calling task's
 * loop is being freed), WEFT_ENOTASK never (plain threads may wait). */
WEFT_API int weft_future_wait(weft_future *f, int *result);
WEFT_API int weft_future_wait_until(weft_future *f, int *result,
                                    int64_t deadline);

/* future.done() + result(): 0 with the result in *result (if not NULL) if
 * the task has finished, else -EAGAIN; -EINVAL. Never blocks. Thread-safe. */
WEFT_API int weft_future_poll(weft_future *f, int *result);

/* future.cancel(): cancels the submitted task (weft_cancel); one not started
 * yet never runs and completes with -ECANCELED. Cancelling a finished
 * future does nothing. Returns at once (the task sees the cancellation
 * soon after); 0 or -EINVAL. Thread-safe. */
WEFT_API int weft_future_cancel(weft_future *f);

/* Releases the future; the task, if still running, runs on. 0, -EINVAL,
 * -EBUSY (a wait on it is in progress: nothing is released). Thread-safe;
 * do not use f afterwards. */
WEFT_API int weft_future_free(weft_future *f);

/* ------------------------------------------------------------------ */
/* Several loops                                                        */
/* ------------------------------------------------------------------ */

/* Starts n threads (named "weft-loop-I"), runs weft_run(main, args[i])
 * on thread i (args NULL: arg NULL), waits for all and stores main's
 * results in results[i] (if results is not NULL). The loops are
 * independent: share data between them with weft_loop_submit /
 * weft_loop_call, or with the usual thread-safe means. They share the
 * default pool, which the last of them to end stops (see weft_executor):
 * when this returns, the loops' threads are joined, and so are the
 * pool's unless a loop elsewhere still uses it. 0, -EINVAL (n 0
 * or main NULL), -ENOMEM (nothing started), or the error of the first
 * thread that could not be started (-EAGAIN...): the threads started
 * before it are still waited for, and the results of those that never ran
 * are that error. Blocks the calling thread; call it outside any loop (or
 * from a task through weft_to_thread). */
WEFT_API int weft_run_threads(size_t n, weft_fn main, void *const *args,
                              int *results);

/* ------------------------------------------------------------------ */
/* Files, on the default pool                                           */
/* ------------------------------------------------------------------ */

/* Reads the whole file at path: *data gets a malloc'd buffer (the caller
 * frees it) of *len bytes plus a terminating NUL not counted in *len.
 * From a task; a checkpoint (cancelled: -ECANCELED at once; a read under
 * way finishes in the background and its buffer is freed). 0, -EINVAL
 * (NULL argument), -errno of open/read (-ENOENT, -EACCES, -EISDIR...),
 * -ENOMEM, and the errors of weft_to_thread. */
WEFT_API int weft_file_read(const char *path, char **data, size_t *len);

/* Replaces the file at path with len bytes of data, atomically: writes a
 * temporary file in the same directory, fsyncs it, renames it over path
 * and fsyncs the directory, so readers (and a crash) see the old contents
 * or the new, never a mix. The new file keeps the old one's permission
 * bits (new files: 0666 less the umask). data is copied: it may be freed
 * as soon as the call returns. A cancelled write stops before the rename
 * (the file is left as it was) unless it had already got there. From a
 * task; a checkpoint. 0, -EINVAL, -errno of open/write/fsync/rename
 * (-ENOENT, -EACCES, -ENOSPC...), -ENOMEM, the errors of weft_to_thread. */
WEFT_API int weft_file_write_atomic(const char *path, const void *data,
                                    size_t len);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_THREAD_H */
