/*
 * weft/sync.h -- coordination between tasks of one loop: lock, event,
 * condition, semaphore, barrier, queue, channel. Included by weft.h.
 *
 * Rules common to every object here (see docs/guide/sync.md):
 *
 *   - Made with weft_<noun>_new (malloc; any thread, no loop needed) and
 *     released with weft_<noun>_free. Constructors return NULL with errno
 *     EINVAL (bad argument), EOVERFLOW (sizes overflow) or ENOMEM.
 *   - Not thread-safe. An object binds to the loop of the first thread
 *     that uses it with a loop running (a call from a task, or from a
 *     done-callback), for the rest of its life. After that, a call from
 *     any other thread returns WEFT_ELOOP. Before it, the non-blocking
 *     calls (set, release, try_put, ...) work from any thread, e.g. to
 *     fill a queue before weft_run; the caller keeps them from racing.
 *   - Blocking calls (acquire, wait, put, get, send, recv, join) are
 *     checkpoints: in a cancelled scope they return -ECANCELED at once,
 *     without taking anything, and a task cancelled while it waits wakes
 *     with -ECANCELED. Called outside a task they return WEFT_ENOTASK.
 *     Deadlines come from cancel scopes: weft_scope_open_after(&s, d)
 *     around the wait, then weft_scope_close(&s) returns -ETIMEDOUT.
 *   - Nothing is lost to cancellation: whatever is handed to a waiter (the
 *     lock, a permit, an item, a notification) is handed over when it is
 *     woken, and a woken waiter can no longer be cancelled: its call
 *     returns success and the cancellation shows at its next checkpoint.
 *     FIFO order among waiters everywhere.
 *   - NULL, or a pointer that is not a live object of the type: -EINVAL
 *     (queries return false or 0).
 *   - Freeing an object that tasks wait on wakes them with -EIDRM (as a
 *     System V semaphore set removed under semop). A woken waiter never
 *     touches the object again, so the memory is released at once. The
 *     exception is a condition: its waiters re-take its lock after waking,
 *     so a condition and its lock stay in memory until the last of them
 *     has returned from weft_cond_wait, and meanwhile every call on them
 *     returns -EIDRM. After free, do not use the pointer again: a call
 *     after the memory is released is undefined. Freeing from a thread
 *     that runs another loop returns WEFT_ELOOP (and frees nothing); from
 *     a thread with no loop, only once the object's loop is over (objects
 *     made for a weft_run are freed after it returns).
 */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H
#ifndef WEFT_H
#error "include weft.h, not weft/sync.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Lock (asyncio.Lock)                                                 */
/* ------------------------------------------------------------------ */

/* A mutual-exclusion lock owned by a task. FIFO-fair: release hands the
 * lock straight to the longest waiter, so a task that releases and
 * re-acquires at once queues behind it. If the owner task returns while
 * holding the lock, the lock is broken for good: its waiters, and the
 * waiters of every condition over it, wake with -EOWNERDEAD, and every
 * later acquire returns -EOWNERDEAD. */
typedef struct weft_lock weft_lock;

/* A new, unlocked lock; NULL with errno ENOMEM. */
WEFT_API weft_lock *weft_lock_new(void);
/* Frees l (see the rules at the top). If a task holds it, the lock is
 * simply gone: that task must not release it. The waiters of conditions
 * over l wake with -EIDRM, and those conditions return -EIDRM from then
 * on (weft_cond_lock gives NULL). 0, -EINVAL, -EIDRM (the
 * lock of a freed condition whose waiters are still leaving), WEFT_ELOOP. */
WEFT_API int weft_lock_free(weft_lock *l);
/* Acquires l, waiting (FIFO) while another task holds it. 0, -EDEADLK
 * (the caller holds it), -EOWNERDEAD (its owner returned holding it),
 * -ECANCELED, -EIDRM (freed), -EINVAL, WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API int weft_lock_acquire(weft_lock *l);
/* Acquires l if that needs no wait. Not a checkpoint. 0, -EAGAIN (held,
 * or tasks wait for it), -EDEADLK, -EOWNERDEAD, -EIDRM, -EINVAL,
 * WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API int weft_lock_try_acquire(weft_lock *l);
/* Releases l, handing it to the first waiter if any. Not a checkpoint.
 * 0, -EPERM (the caller does not hold it), -EIDRM, -EINVAL, WEFT_ENOTASK,
 * WEFT_ELOOP. */
WEFT_API int weft_lock_release(weft_lock *l);
/* True if a task holds l (false for NULL, or a broken lock). */
WEFT_API bool weft_lock_locked(const weft_lock *l);

/* ------------------------------------------------------------------ */
/* Event (asyncio.Event)                                               */
/* ------------------------------------------------------------------ */

typedef struct weft_event weft_event;

/* A new event, not set; NULL with errno ENOMEM. */
WEFT_API weft_event *weft_event_new(void);
/* Frees e (see the rules at the top). 0, -EINVAL, -EIDRM, WEFT_ELOOP. */
WEFT_API int weft_event_free(weft_event *e);
/* Sets the flag and wakes every waiter: each returns 0, even if the flag
 * is cleared again before it runs. Not a checkpoint; callable outside a
 * task. 0, -EINVAL, -EIDRM, WEFT_ELOOP. */
WEFT_API int weft_event_set(weft_event *e);
/* Clears the flag. 0, -EINVAL, -EIDRM, WEFT_ELOOP. */
WEFT_API int weft_event_clear(weft_event *e);
/* Waits until the flag is set (returns at once if it is). 0, -ECANCELED,
 * -EIDRM, -EINVAL, WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API int weft_event_wait(weft_event *e);
/* The flag (false for NULL). */
WEFT_API bool weft_event_is_set(const weft_event *e);

/* ------------------------------------------------------------------ */
/* Condition (asyncio.Condition)                                       */
/* ------------------------------------------------------------------ */

typedef struct weft_cond weft_cond;

/* A condition variable over `lock`, or over a lock of its own if lock is
 * NULL (freed with it; get it with weft_cond_lock). If a lock given here
 * is freed first, the condition's calls return -EIDRM (its memory stays
 * valid until weft_cond_free). NULL with errno ENOMEM, EINVAL (lock is
 * not a live lock). */
WEFT_API weft_cond *weft_cond_new(weft_lock *lock);
/* Frees c, and its own lock if it made one (whose waiters also wake with
 * -EIDRM). 0, -EINVAL, -EIDRM, WEFT_ELOOP. */
WEFT_API int weft_cond_free(weft_cond *c);
/* The condition's lock (NULL for NULL, or once that lock was freed). */
WEFT_API weft_lock *weft_cond_lock(const weft_cond *c);
/* The caller must hold the lock. Releases it, waits for a notification,
 * and re-acquires the lock before returning, also when cancelled while
 * waiting (the re-acquisition itself cannot be interrupted). Returns 0
 * (notified), -ECANCELED (the lock is held again; at entry nothing is
 * released), -EPERM (the caller does not hold the lock), and, with the
 * lock NOT held: -EIDRM (the condition or its lock was freed),
 * -EOWNERDEAD (the lock's owner returned holding it, while the caller
 * waited for a notification or for the lock). -EINVAL,
 * WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API int weft_cond_wait(weft_cond *c);
/* Waits until pred(arg) is true: evaluates it (with the lock held; it
 * must not block, as asyncio's predicate cannot await) and calls
 * weft_cond_wait until it holds. 0 when it holds, else the first
 * error of weft_cond_wait (with the lock as described there). A
 * checkpoint at entry; after each wake the predicate is tested before
 * the cancellation, so a waiter notified and then cancelled before it
 * ran returns 0 when the predicate holds (it sees the cancellation at
 * its next checkpoint): the notification is never dropped while another
 * waiter sleeps. -EINVAL also for a NULL pred. */
WEFT_API int weft_cond_wait_for(weft_cond *c, bool (*pred)(void *arg),
                                void *arg);
/* Wakes up to n waiters (FIFO); each then re-acquires the lock. The
 * caller must hold the lock. Returns how many were woken (>= 0), or
 * -EPERM, -EIDRM, -EINVAL, WEFT_ENOTASK, WEFT_ELOOP. Not a checkpoint. */
WEFT_API int weft_cond_notify(weft_cond *c, size_t n);
/* weft_cond_notify of every waiter. */
WEFT_API int weft_cond_notify_all(weft_cond *c);

/* ------------------------------------------------------------------ */
/* Semaphore (asyncio.Semaphore, asyncio.BoundedSemaphore)             */
/* ------------------------------------------------------------------ */

typedef struct weft_sem weft_sem;

/* A semaphore holding `value` permits. NULL with errno ENOMEM. */
WEFT_API weft_sem *weft_sem_new(size_t value);
/* A bounded semaphore: releasing it past `value` permits is an error. */
WEFT_API weft_sem *weft_sem_new_bounded(size_t value);
/* Frees s (see the rules at the top). 0, -EINVAL, -EIDRM, WEFT_ELOOP. */
WEFT_API int weft_sem_free(weft_sem *s);
/* Takes a permit, waiting (FIFO) while there is none. A permit released
 * while tasks wait goes straight to the first of them, never to a later
 * caller. 0, -ECANCELED, -EIDRM, -EINVAL, WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API int weft_sem_acquire(weft_sem *s);
/* Takes a permit if that needs no wait. Not a checkpoint; callable
 * outside a task. 0, -EAGAIN, -EIDRM, -EINVAL, WEFT_ELOOP. */
WEFT_API int weft_sem_try_acquire(weft_sem *s);
/* Gives a permit back, to the first waiter if any. Callable outside a
 * task. 0, -EOVERFLOW (a bounded semaphore released past its initial
 * value, or the count would overflow), -EIDRM, -EINVAL, WEFT_ELOOP. */
WEFT_API int weft_sem_release(weft_sem *s);
/* Permits available now (0 for NULL). */
WEFT_API size_t weft_sem_value(const weft_sem *s);
/* True if an acquire would wait: no permit left (false for NULL). */
WEFT_API bool weft_sem_locked(const weft_sem *s);

/* ------------------------------------------------------------------ */
/* Barrier (asyncio.Barrier)                                           */
/* ------------------------------------------------------------------ */

typedef struct weft_barrier weft_barrier;

/* A barrier for `parties` tasks (1..INT_MAX). NULL with errno EINVAL
 * (parties 0 or too large), ENOMEM. */
WEFT_API weft_barrier *weft_barrier_new(size_t parties);
/* Frees b (see the rules at the top). 0, -EINVAL, -EIDRM, WEFT_ELOOP. */
WEFT_API int weft_barrier_free(weft_barrier *b);
/* Waits until `parties` tasks are waiting, then releases them all at once
 * and the barrier is ready for the next round. Returns the caller's
 * arrival index in its round (0 for the first, parties - 1 for the one
 * that released the others). A task cancelled while it waits leaves
 * (-ECANCELED) and the others go on waiting for a full count, as in
 * asyncio. -EPIPE: the barrier is broken (weft_barrier_abort) or was
 * reset while waiting. -EIDRM, -EINVAL, WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API int weft_barrier_wait(weft_barrier *b);
/* Breaks the barrier: every waiter, and every later wait until a reset,
 * returns -EPIPE. 0, -EINVAL, -EIDRM, WEFT_ELOOP. */
WEFT_API int weft_barrier_abort(weft_barrier *b);
/* Back to the empty, unbroken state; tasks waiting now return -EPIPE.
 * 0, -EINVAL, -EIDRM, WEFT_ELOOP. */
WEFT_API int weft_barrier_reset(weft_barrier *b);
/* Number of parties (0 for NULL). */
WEFT_API size_t weft_barrier_parties(const weft_barrier *b);
/* Tasks waiting now (0 for NULL). */
WEFT_API size_t weft_barrier_n_waiting(const weft_barrier *b);
/* True after abort, until reset (false for NULL). */
WEFT_API bool weft_barrier_broken(const weft_barrier *b);

/* ------------------------------------------------------------------ */
/* Queue (asyncio.Queue, LifoQueue, PriorityQueue)                     */
/* ------------------------------------------------------------------ */

/* Items are copied in and out by value; every item is elem_size bytes.
 * capacity 0 means unbounded (the buffer grows as needed). An item put
 * while a getter waits goes straight to that getter; a slot freed while
 * putters wait goes straight to the first putter. */
typedef struct weft_queue weft_queue;

/* A FIFO queue. NULL with errno EINVAL (elem_size 0), EOVERFLOW
 * (capacity * elem_size overflows), ENOMEM. */
WEFT_API weft_queue *weft_queue_new(size_t capacity, size_t elem_size);
/* A LIFO queue (last in, first out). */
WEFT_API weft_queue *weft_queue_new_lifo(size_t capacity, size_t elem_size);
/* A priority queue: get returns the smallest item by cmp (negative, 0 or
 * positive as for qsort; it receives pointers to items, aligned as the
 * items' type if elem_size is its size), and items that compare equal
 * in the order they were put. cmp must not call weft. EINVAL also for a
 * NULL cmp. */
WEFT_API weft_queue *weft_queue_new_priority(size_t capacity, size_t elem_size,
                                             int (*cmp)(const void *a,
                                                        const void *b));
/* Frees q (see the rules at the top); items left are dropped. 0, -EINVAL,
 * -EIDRM, WEFT_ELOOP. */
WEFT_API int weft_queue_free(weft_queue *q);
/* Copies *item in, waiting while the queue is full. 0, -ESHUTDOWN (shut
 * down, before or while waiting: the item is not added), -ECANCELED,
 * -ENOMEM (the buffer, allocated as it fills, could not grow), -EIDRM,
 * -EINVAL, WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API int weft_queue_put(weft_queue *q, const void *item);
/* Moves the next item into *out, waiting while the queue is empty.
 * 0, WEFT_EEND (shut down and empty: the end; after a graceful shutdown
 * the items left are still returned first), -ECANCELED, -EIDRM, -EINVAL,
 * WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API int weft_queue_get(weft_queue *q, void *out);
/* put without waiting: -EAGAIN if full. Not a checkpoint; callable
 * outside a task. Same other codes but -ECANCELED and WEFT_ENOTASK. */
WEFT_API int weft_queue_try_put(weft_queue *q, const void *item);
/* get without waiting: -EAGAIN if empty (and not shut down), WEFT_EEND
 * if empty and shut down. */
WEFT_API int weft_queue_try_get(weft_queue *q, void *out);
/* Tells the queue that an item taken earlier is fully processed. Every
 * put counts one unfinished item; join returns when none is left. 0,
 * -EOVERFLOW (more calls than items put), -EIDRM, -EINVAL, WEFT_ELOOP. */
WEFT_API int weft_queue_task_done(weft_queue *q);
/* Waits until every item put has been marked done. Only items put so far
 * count: with none unfinished it returns 0 at once, even if a producer
 * was spawned but has not run yet (as asyncio's Queue.join). To wait for
 * a producer's items, spawn it eagerly, or join after its group closed
 * (docs/guide/sync.md). 0, -ECANCELED, -EIDRM, -EINVAL, WEFT_ENOTASK,
 * WEFT_ELOOP. */
WEFT_API int weft_queue_join(weft_queue *q);
/* Python 3.13's Queue.shutdown. From now on put fails with -ESHUTDOWN
 * (refused) and blocked putters wake with it. Graceful (immediate
 * false): get returns the items left, then WEFT_EEND (the end, as for a
 * channel whose senders closed); blocked getters (the queue is empty
 * then) wake with WEFT_EEND. Immediate: the items left are dropped and
 * counted as done (so join can return), blocked getters wake with
 * WEFT_EEND and blocked putters with -ESHUTDOWN. asyncio raises
 * QueueShutDown on both sides; weft gives the consumer the one end code
 * every consumer loop tests (weft.h, "End of items"). Calling it again is allowed (e.g. graceful
 * then immediate). Not a checkpoint. 0, -EIDRM, -EINVAL, WEFT_ELOOP. */
WEFT_API int weft_queue_shutdown(weft_queue *q, bool immediate);
/* Items in the queue (0 for NULL). */
WEFT_API size_t weft_queue_size(const weft_queue *q);
/* The capacity given at creation (0: unbounded; 0 for NULL). */
WEFT_API size_t weft_queue_capacity(const weft_queue *q);
/* No items (true for NULL). */
WEFT_API bool weft_queue_empty(const weft_queue *q);
/* A bounded queue holding capacity items (false for NULL). */
WEFT_API bool weft_queue_full(const weft_queue *q);

/* ------------------------------------------------------------------ */
/* Channels (Trio's memory channels)                                   */
/* ------------------------------------------------------------------ */

/* A channel is a buffer of `capacity` items of elem_size bytes reached
 * through handles: send handles (weft_chan_tx) and receive handles
 * (weft_chan_rx), each owned by whoever holds it and closed exactly once.
 * Clone a handle to give each producer or consumer its own. When every
 * send handle is closed, receivers get what is buffered, then
 * WEFT_EEND. When every receive handle is closed, the buffer is
 * dropped and sends fail at once with -EPIPE. The channel is freed with
 * its last handle. The common rules apply with "close" for "free": a
 * task blocked on a handle that another task closes wakes with -EBADF. */
typedef struct weft_chan_tx weft_chan_tx;
typedef struct weft_chan_rx weft_chan_rx;

/* capacity: 0 for a rendezvous (a send waits for a receiver to take its
 * item), WEFT_CHAN_UNBOUNDED for a buffer that grows without limit. */
#define WEFT_CHAN_UNBOUNDED SIZE_MAX

/* The first two handles of a new channel, owned by the caller (each
 * closed once, with weft_chan_tx_close / weft_chan_rx_close). */
typedef struct weft_chan_ends {
  weft_chan_tx *tx;
  weft_chan_rx *rx;
} weft_chan_ends;

/* Opens a channel and returns its first send and receive handles, or
 * both NULL with errno EINVAL (elem_size 0), EOVERFLOW (capacity *
 * elem_size overflows), ENOMEM. Any thread, no loop needed.
 *   weft_chan_ends ch = weft_chan_open(16, sizeof(int));
 *   if (!ch.tx) return -errno;                                      */
WEFT_API weft_chan_ends weft_chan_open(size_t capacity, size_t elem_size);
/* Another send handle on tx's channel, to be closed on its own. NULL
 * with errno EINVAL, ENOMEM, EXDEV (tx belongs to another loop). */
WEFT_API weft_chan_tx *weft_chan_tx_clone(weft_chan_tx *tx);
/* Another receive handle on rx's channel. */
WEFT_API weft_chan_rx *weft_chan_rx_clone(weft_chan_rx *rx);
/* Closes a send handle and frees it (see the common rules). 0, -EINVAL,
 * WEFT_ELOOP. */
WEFT_API int weft_chan_tx_close(weft_chan_tx *tx);
/* Closes a receive handle and frees it. */
WEFT_API int weft_chan_rx_close(weft_chan_rx *rx);
/* Copies *item into the channel, waiting while the buffer is full (for a
 * rendezvous: until a receiver takes it). An item sent while a receiver
 * waits goes straight to it. 0, -EPIPE (every receive handle closed),
 * -EBADF (tx closed while waiting), -ECANCELED (the item was not sent),
 * -ENOMEM (the buffer, allocated as it fills, could not grow), -EINVAL,
 * WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API int weft_chan_send(weft_chan_tx *tx, const void *item);
/* Moves the next item into *out, waiting while there is none. An item
 * handed to a waiting receiver is its own, even if it is cancelled before
 * it runs. 0, WEFT_EEND, -EBADF (rx closed while waiting),
 * -ECANCELED, -EINVAL, WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API int weft_chan_recv(weft_chan_rx *rx, void *out);
/* send without waiting: -EAGAIN if it would wait. Not a checkpoint;
 * callable outside a task. */
WEFT_API int weft_chan_try_send(weft_chan_tx *tx, const void *item);
/* recv without waiting: -EAGAIN if it would wait. */
WEFT_API int weft_chan_try_recv(weft_chan_rx *rx, void *out);

#ifdef __cplusplus
}
#endif

#endif
