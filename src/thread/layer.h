/*
 * Internal API of the thread layer (src/thread/).
 *
 * The layer rests on core's cross-thread inbox and loop references
 * (src/core/inbox.c: weft__loop_post, weft_loop_ref/unref) and reaches
 * into a loop's life only through weft__layer hooks (internal.h), each
 * registered by a constructor in the object file that needs it, so that
 * a program linked with libweft.a that pulls in that file gets its hooks:
 *   future.c   spare future records per loop (loop_start, before_sleep,
 *              loop_stop, loop_release) and the end of a submitted task
 *              (task_exit);
 *   pool.c     a loop's end leaves the default pool (loop_stop).
 */
#ifndef WEFT_THREAD_INTERNAL_H
#define WEFT_THREAD_INTERNAL_H

#include "core/internal.h"

/* A pool thread that finished a job polls for the next one this long
 * before it sleeps (weft__spin; the loop that awaits a job's result polls
 * its inbox meanwhile: L->nexpected). */
#define WEFT__SPIN_WORKER_NS 50000

/* The default pool (pool.c), made on first use; NULL with errno. */
WEFT__HIDDEN weft_executor *weft__default_executor(void);

#endif
