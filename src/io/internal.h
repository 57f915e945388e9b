/* Between the files of src/io/. Nothing here is public. */
#ifndef WEFT_IO_INTERNAL_H
#define WEFT_IO_INTERNAL_H

#include "core/internal.h"
#include "weft.h"

/* Server-owned streams (server.c). A held stream is one the server gives
 * to a handler: weft_stream_close / _abort on it end the connection (the
 * fd is closed, buffers freed) but keep the record, so the pointer stays
 * valid until the handler returns; every call then returns -EBADF.
 * weft__stream_release then closes it as weft_stream_close does (if the
 * handler did not) and frees the record. Returns what that close returned
 * (0 if the handler had closed it; -EINVAL for NULL). As that close, the
 * flush waits only when called from a task (bounded by its scopes: call
 * it inside a scope with a deadline to bound it); outside a task it sends
 * what the fd takes at once and returns -EAGAIN if bytes were left.
 * weft__stream_hold(NULL) does nothing. Both on the stream's loop only. */
WEFT__HIDDEN void weft__stream_hold(weft_stream *s);
WEFT__HIDDEN int weft__stream_release(weft_stream *s);

#endif
