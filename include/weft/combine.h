/*
 * weft/combine.h -- combinators over tasks: gather, wait, as_completed,
 * race, retry, rate limiter. Included by weft.h.
 *
 * gather and race run functions as tasks of their own and never let them
 * outlive the call (they are built on groups): when the caller is
 * cancelled, every child is cancelled and waited for before the call
 * returns. wait and as_completed watch tasks the caller spawned and still
 * holds (weft_spawn handles); they cancel nothing and release nothing.
 * Everything here must be called from a task of the loop that owns the
 * tasks or objects involved; nothing is thread-safe. See
 * docs/guide/combinators.md.
 */
#ifndef WEFT_COMBINE_H
#define WEFT_COMBINE_H
#ifndef WEFT_H
#error "include weft.h, not weft/combine.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* gather and race                                                     */
/* ------------------------------------------------------------------ */

/* One function to run as a task: fn(arg). */
typedef struct weft_call {
  weft_fn fn;
  void *arg;
} weft_call;

/* weft_gather flag: return_exceptions=True. A failure cancels nothing;
 * every function runs to its end and its code lands in results[]. */
#define WEFT_GATHER_ALL 0x1u

/* asyncio.gather: runs calls[0..n) concurrently, each as a task of its
 * own, waits for all of them, and stores the code each returned in
 * results[i] (in the order of calls, whatever the order they finished
 * in; results may be NULL). A function counts as failed when it returns
 * a negative code other than -ECANCELED (one that returns -ECANCELED
 * ended cancelled: see below for one cancelled from outside).
 *
 * By default the first failure cancels the others (as a task group
 * does) and gather returns that code once all have finished; the
 * cancelled ones usually report -ECANCELED in results[] (one cancelled
 * before it started is not called at all and reports -ECANCELED).
 * With WEFT_GATHER_ALL (return_exceptions=True) failures cancel nothing
 * and gather returns 0 once every function has returned.
 *
 * A child cancelled from outside the call (weft_cancel on its task, or a
 * scope of its own) that ends with -ECANCELED leaves a result missing:
 * by default gather then returns -ECANCELED, or the first failure if one
 * came before (asyncio's test_one_cancellation: gather raises
 * CancelledError); it cancels no sibling, and every code stays in
 * results[]. WEFT_GATHER_ALL still returns 0.
 *
 * If the caller is cancelled (or a scope's deadline around the call
 * fires) every child is cancelled and waited for; gather then returns
 * -ECANCELED (by default, a failure recorded before takes precedence).
 * Children never outlive the call.
 *
 * Returns 0, a child's failure code, -ECANCELED, -EINVAL (calls NULL
 * with n > 0, a NULL fn, or unknown flags), -ENOMEM (no memory for the
 * call, or for a child's stack: that child reports -ENOMEM and the others
 * are cancelled), WEFT_ENOTASK. n == 0 returns 0 at once, but it is still
 * a checkpoint: -ECANCELED inside a cancelled scope. calls and results
 * must stay valid until it returns. */
WEFT_API int weft_gather(const weft_call *calls, size_t n, int *results,
                         unsigned flags);

/* The "first to finish" pattern (happy eyeballs, hedged requests): runs
 * calls[0..n) concurrently as tasks; the first to succeed (return >= 0)
 * wins, the others are cancelled and waited for. Returns the winner's
 * code and stores its index in *winner (if not NULL). Every function's
 * code goes to results[i] (if not NULL): the losers' usually
 * -ECANCELED; one that succeeded anyway before it saw the cancellation
 * keeps its code, so it can be cleaned up.
 *
 * When every function fails, returns the first failure's code (in the
 * order they failed; results[] has them all) and *winner = n. When the
 * caller is cancelled before anyone won: -ECANCELED, *winner = n.
 * Children never outlive the call.
 * Errors: -EINVAL (calls NULL, n == 0, a NULL fn), -ENOMEM,
 * WEFT_ENOTASK. A checkpoint. The arguments follow weft_gather's order:
 * the calls, then what comes back (results[], then the winner). */
WEFT_API int weft_race(const weft_call *calls, size_t n, int *results,
                       size_t *winner);

/* ------------------------------------------------------------------ */
/* wait and as_completed                                               */
/* ------------------------------------------------------------------ */

/* When weft_wait returns (asyncio's return_when). */
#define WEFT_FIRST_COMPLETED 1 /* at least one task is done */
#define WEFT_FIRST_EXCEPTION 2 /* one failed (code < 0 other than
                                  -ECANCELED), or all are done */
#define WEFT_ALL_COMPLETED 3   /* all are done */

/* asyncio.wait: waits until the condition `mode` holds over tasks[0..n),
 * and returns the number of tasks that are done; weft_wait_until also
 * returns when `deadline` passes (asyncio's timeout=), whichever comes
 * first. done[i] (if done is not
 * NULL) is set to whether tasks[i] is done; the others are pending.
 * Like asyncio, a deadline is not an error: the call returns normally,
 * with fewer tasks done than asked (possibly 0).
 *
 * Cancels nothing and releases nothing: the caller still joins or
 * detaches every handle (a done task's weft_join returns at once).
 * Returns at once when the condition already holds. Handles must come
 * from weft_spawn and stay held by the caller during the call; the same
 * handle may appear twice (it counts twice).
 *
 * Returns the count (>= 0), or -ECANCELED (the caller was cancelled),
 * -EINVAL (tasks NULL, n == 0, a NULL entry, a group child's handle, an
 * unknown mode), -ESRCH (a handle already joined or detached),
 * -EDEADLK (the caller is among the tasks), -ENOMEM, WEFT_ENOTASK,
 * WEFT_ELOOP (a task of another loop). A checkpoint. */
WEFT_API int weft_wait(weft_task *const *tasks, size_t n, int mode,
                       bool *done);
WEFT_API int weft_wait_until(weft_task *const *tasks, size_t n, int mode,
                             bool *done, int64_t deadline);

/* asyncio.as_completed: an iterator, on the caller's stack, over tasks in
 * the order they finish.
 *
 *   weft_as_completed it;
 *   weft_as_completed_init_until(&it, tasks, n, weft_now() + WEFT_SEC(5));
 *   weft_task *t;
 *   while ((rc = weft_as_completed_next(&it, &t)) == 0)
 *     use(weft_join(t));
 *   weft_as_completed_close(&it);   // rc: WEFT_EEND (all done), -ETIMEDOUT...
 *
 * Its storage is private; do not copy an initialised iterator. */
typedef struct weft_as_completed {
  uint64_t opaque_[4];
} weft_as_completed;

/* Starts watching tasks[0..n) (weft_spawn handles the caller holds, as
 * for weft_wait); the _until form sets an absolute deadline for the whole
 * iteration (asyncio's timeout=). Tasks already done come out first, in array
 * order. The array may be freed after init; the handles must stay held
 * until next() has returned them. Allocates (one block). Not a
 * checkpoint. n == 0 is allowed (next returns WEFT_EEND at once).
 * 0, -EINVAL (it NULL, tasks NULL with n > 0, a NULL entry or group
 * child), -ESRCH, -EDEADLK (the caller is among them), -ENOMEM,
 * WEFT_ENOTASK, WEFT_ELOOP. On error the iterator is closed. */
WEFT_API int weft_as_completed_init(weft_as_completed *it,
                                   weft_task *const *tasks, size_t n);
WEFT_API int weft_as_completed_init_until(weft_as_completed *it,
                                         weft_task *const *tasks, size_t n,
                                         int64_t deadline);

/* Waits for the next task to finish and stores its handle in *task: a
 * done task the caller still owns (join it to release it). Returns 0;
 * WEFT_EEND when every task has been returned (the end; the iterator
 * frees its memory then); -ETIMEDOUT when the deadline has passed and
 * no finished task is left to return (later calls return tasks that
 * finish after all, else -ETIMEDOUT again, without blocking);
 * -ECANCELED (caller cancelled; nothing is lost, a later call returns
 * the task); -EBUSY (another task is waiting in next on this iterator:
 * an iterator serves one task at a time); -EINVAL (NULL, or a closed
 * iterator), WEFT_ENOTASK, WEFT_ELOOP. A checkpoint. */
WEFT_API int weft_as_completed_next(weft_as_completed *it, weft_task **task);

/* Stops watching and frees the iterator's memory. Required when the
 * iteration stops before WEFT_EEND (harmless after it, and on an iterator
 * whose init failed). Call it from the loop's thread, before the tasks
 * not yet returned are released, and never while a task waits in next
 * on it. NULL is ignored. */
WEFT_API void weft_as_completed_close(weft_as_completed *it);

/* ------------------------------------------------------------------ */
/* retry                                                               */
/* ------------------------------------------------------------------ */

typedef struct weft_retry_opts {
  /* Calls in all, the first included; 0: no limit (until success, a
   * code that is not retryable, or cancellation). */
  unsigned max_attempts;
  /* The nominal delay after the first failure; it grows by `multiplier`
   * after each failure, up to `max_delay`. */
  int64_t base_delay;
  int64_t max_delay; /* cap on each delay; WEFT_FOREVER: none */
  double multiplier; /* >= 1 */
  /* Each delay is the nominal delay reduced by a random fraction of up
   * to `jitter` (0: exact delays; 1: "full jitter", anywhere in
   * [0, nominal]); in [0, 1]. */
  double jitter;
  /* Which failure codes are retried: if `retryable` is set, those for
   * which it returns true; else if `codes` is set, the ncodes codes in
   * it; else every code < 0. -ECANCELED is never retried. */
  bool (*retryable)(int code, void *arg);
  void *retryable_arg;
  const int *codes;
  size_t ncodes;
  /* Optional: called before each backoff sleep with the attempt that
   * just failed (1-based), its code and the delay chosen. Must not
   * block. */
  void (*on_retry)(unsigned attempt, int code, int64_t delay, void *arg);
  void *on_retry_arg;
} weft_retry_opts;

/* Fills *o with the defaults: 3 attempts, base delay 100 ms, multiplier
 * 2, max delay 10 s, jitter 0.5, every failure retryable, no hooks. */
WEFT_API void weft_retry_opts_init(weft_retry_opts *o);

/* Calls fn(arg) in the calling task until it returns >= 0 (returned
 * as is), with exponential backoff between attempts. Gives up and
 * returns fn's last code after max_attempts calls, or at once when fn
 * returns a code that is not retryable or -ECANCELED. The backoff
 * sleeps are checkpoints: if the caller is cancelled (or a scope's
 * deadline around the call fires: the way to bound the total time)
 * retry returns -ECANCELED. opts NULL: the defaults.
 * Errors of its own: -EINVAL (fn NULL, multiplier < 1 or not a number,
 * jitter outside [0, 1], a negative delay, ncodes > 0 with codes NULL),
 * -ECANCELED (cancelled at entry or while sleeping), -ENOMEM (timer),
 * WEFT_ENOTASK. */
WEFT_API int weft_retry(weft_fn fn, void *arg, const weft_retry_opts *opts);

/* ------------------------------------------------------------------ */
/* Rate limiter (token bucket)                                         */
/* ------------------------------------------------------------------ */

/* A token bucket: holds up to `burst` tokens, refilled at `rate` tokens
 * per second; each acquire takes one. Waiters are served in FIFO order.
 * It follows the rules of the objects of weft/sync.h (made on any
 * thread, bound to the loop that first uses it, -EIDRM once freed).
 * It limits how often, a semaphore limits how many at once: a task that
 * holds a semaphore's permit and then acquires a token obeys both
 * (docs/guide/combinators.md, examples/combine_fetcher.c). */
typedef struct weft_limiter weft_limiter;

/* Makes a limiter with a full bucket (`burst` tokens available at once).
 * NULL with errno EINVAL (rate not a finite number > 0, or burst 0) or
 * ENOMEM. */
WEFT_API weft_limiter *weft_limiter_new(double rate, size_t burst);

/* Takes a token, waiting for one if the bucket is empty or other tasks
 * are already waiting (FIFO: no overtaking). A token handed to a waiter
 * is its own even if it is cancelled right after (it returns 0 then and
 * sees the cancellation at its next checkpoint). A checkpoint.
 * 0, -ECANCELED, -EIDRM (freed, also while waiting), -EINVAL (NULL or
 * not a limiter), -ENOMEM (timer), WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API int weft_limiter_acquire(weft_limiter *l);

/* Takes a token if one is available now and nobody waits, else
 * -EAGAIN. Not a checkpoint; callable outside a task. 0, -EAGAIN,
 * -EIDRM, -EINVAL, WEFT_ELOOP. */
WEFT_API int weft_limiter_try_acquire(weft_limiter *l);

/* Frees the limiter. Tasks waiting in acquire wake up with -EIDRM.
 * 0, -EINVAL (NULL), -EIDRM (already freed), WEFT_ELOOP (from a thread
 * running another loop; nothing freed). */
WEFT_API int weft_limiter_free(weft_limiter *l);

#ifdef __cplusplus
}
#endif

#endif
