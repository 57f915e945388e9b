/*
 * The poller: the loop's one window onto the kernel's readiness API, as
 * Redis's ae_epoll.c is ae's. A backend is one file, poll_<name>.c, that
 * defines struct weft__poller (its own state: nobody else touches it) and
 * the functions below; CMake builds exactly one (WEFT_POLL_BACKEND, the
 * rule that picks the context switch of src/ctx/), so another backend
 * (io_uring: poll_uring.c) is one more file and no edit elsewhere.
 *
 * The model is persistent, edge-triggered readiness keyed by a token,
 * which a completion based backend can serve as well (io_uring: a
 * multishot poll): the fd registry (fd.c) watches an fd once, with a
 * 64-bit token of its choosing, for all of readable, writable, error and
 * hang-up; from then on the poller reports the fd (with that token)
 * whenever it becomes ready for more (new data, room to write, the end,
 * an error), whether anybody waits or not: a change toward readiness
 * after any moment is reported at a wait after that moment. Correctness
 * rests on that alone: the registry only sets bits from reports, so a
 * report that is stale by the time it is seen costs its reader one try
 * (EAGAIN), never a missed wake-up. (epoll looks at the fd again before
 * it reports it, so its reports are never older than the wait.) Reports
 * stop at weft__poller_forget (or when the fd is closed, which the
 * kernel notices by itself). The registry keeps what the reports say
 * (fd.c's readiness cache), so a caller that knows an fd is ready does
 * not ask the kernel again, and the steady state costs no call per wait:
 * only the poll.
 *
 * Watching an fd that is watched already (fresh false) asks for one more
 * report of its current readiness, if it is ready now (a level-triggered
 * look: the public weft_wait_fd's), and tells whether the kernel still
 * knows the fd (-ENOENT: it was closed and the number reused).
 *
 * The poller also owns the loop's wake channel: weft__poller_wake, from
 * any thread, makes a weft__poller_wait under way (or the next one)
 * return at once. That channel outlives weft__poller_stop, until
 * weft__poller_free, because other threads holding a reference to the
 * loop may still call it.
 */
#ifndef WEFT_POLLER_H
#define WEFT_POLLER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct weft__poller weft__poller;

/* In a report, besides the public WEFT_* bits: the peer shut its writing
 * side (or the fd hung up or failed): the fd stays readable (end of
 * stream) and no further report may come for that. */
#define WEFT__EV_RDHUP 0x100u

typedef struct weft__pevent {
  uint64_t token;  /* as given to weft__poller_watch */
  unsigned events; /* WEFT_READABLE | WEFT_WRITABLE | WEFT_ERROR | WEFT_HANGUP
                      | WEFT__EV_RDHUP */
} weft__pevent;

/* Makes a poller with its wake channel. NULL with errno (EMFILE, ENFILE,
 * ENOMEM). */
weft__poller *weft__poller_new(void);
/* Gives back what polling needs; only weft__poller_wake may be called
 * after it, until weft__poller_free. */
void weft__poller_stop(weft__poller *p);
/* Frees the poller and its wake channel (after weft__poller_stop). */
void weft__poller_free(weft__poller *p);

/* Watches fd (see above) with `token`. fresh: fd is not watched yet (or
 * was forgotten since): register it; the next wait reports it if it is
 * ready now. Not fresh: fd is watched: replace the token and report fd
 * again at the next wait if it is ready now. 0, or -errno: -ENOENT (not
 * fresh, but the kernel does not know fd: it was closed and the number
 * reused; watch it again as fresh), -EEXIST (fresh, but known: watch it
 * again as not fresh), -EBADF (not open, or one of the poller's own
 * fds), -EPERM (fd cannot be polled: a regular file), -ENOMEM, -ENOSPC. */
int weft__poller_watch(weft__poller *p, int fd, uint64_t token, bool fresh);
/* Forgets fd: no report comes for it any more. Call it while fd is still
 * open (the kernel forgets closed fds by itself). 0 or -errno. */
int weft__poller_forget(weft__poller *p, int fd);

/* Waits up to timeout_ns (-1: forever, 0: do not block) for reports, and
 * fills out[0..max). *woken is set true if weft__poller_wake was called
 * since the last wait that set it. Returns the number of reports, or
 * -errno (an interrupted wait returns 0). */
int weft__poller_wait(weft__poller *p, weft__pevent *out, int max,
                      int64_t timeout_ns, bool *woken);

/* Makes the current or next weft__poller_wait return. Thread-safe,
 * async-signal-safe, and valid until weft__poller_free. */
void weft__poller_wake(weft__poller *p);

#endif
