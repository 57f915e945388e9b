/*
 * The poller: the loop's one window onto the kernel's readiness API, as
 * Redis's ae_epoll.c is ae's. A backend is one file, poll_<name>.c, that
 * defines struct weft__poller (its own state: nobody else touches it) and
 * the functions below; CMake builds exactly one (WEFT_POLL_BACKEND, the
 * rule that picks the context switch of src/ctx/), so another backend
 * (io_uring: poll_uring.c) is one more file and no edit elsewhere.
 *
 * The model is one-shot readiness keyed by a token, which a completion
 * based backend can serve as well: the fd registry (fd.c) arms an fd for
 * the events its waiters want, with a 64-bit token of its choosing; one
 * report of readiness comes back with that token and disarms the fd. An
 * fd stays registered from its first arming until weft__poller_forget
 * (or until it is closed, which the kernel notices by itself), so a wait
 * costs one arming call, not a registration and a removal.
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

typedef struct weft__pevent {
  uint64_t token;  /* as given to weft__poller_arm */
  unsigned events; /* WEFT_READABLE | WEFT_WRITABLE | WEFT_ERROR | WEFT_HANGUP */
} weft__pevent;

/* Makes a poller with its wake channel. NULL with errno (EMFILE, ENFILE,
 * ENOMEM). */
weft__poller *weft__poller_new(void);
/* Gives back what polling needs; only weft__poller_wake may be called
 * after it, until weft__poller_free. */
void weft__poller_stop(weft__poller *p);
/* Frees the poller and its wake channel (after weft__poller_stop). */
void weft__poller_free(weft__poller *p);

/* Arms fd for one report of `events` (WEFT_READABLE and/or WEFT_WRITABLE,
 * not 0), carrying `token`; replaces the interest and token of an earlier
 * arming. `fresh`: the caller has not registered fd before (or since it
 * was forgotten). Readiness is level-triggered: an fd that is ready now is
 * reported at the next wait. 0, or -errno: -ENOENT (not fresh, but the
 * kernel does not know fd: it was closed and the number reused; arm it
 * again as fresh), -EEXIST (fresh, but known: arm it again as not fresh),
 * -EBADF (not open, or one of the poller's own fds), -EPERM (fd cannot be
 * polled: a regular file), -ENOMEM, -ENOSPC. */
int weft__poller_arm(weft__poller *p, int fd, uint64_t token, unsigned events,
                     bool fresh);
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
