/*
 * weft/io.h -- sockets and streams: asyncio's open_connection,
 * start_server, StreamReader/StreamWriter and datagram endpoints.
 * Included by weft.h. Guide: docs/guide/streams.md.
 *
 * Rules every call here follows (besides weft.h's conventions):
 *   - Objects (streams, servers, UDP endpoints) belong to the loop of the
 *     thread that made them and are used from its tasks only; a call from
 *     another thread returns WEFT_ELOOP. Nothing here is thread-safe.
 *   - Every call that can wait is a checkpoint and is bounded by the
 *     caller's cancel scopes: a read with a deadline is a read inside
 *     weft_scope_open_after(). A wait cut short returns -ECANCELED and
 *     loses nothing: bytes read stay in the stream's buffer for the next
 *     read, bytes written stay in its write buffer, a datagram not
 *     received stays in the socket.
 *   - Byte counts are ssize_t: >= 0 is a count, < 0 an error code.
 *   - SIGPIPE is never raised: a write to a connection whose peer has gone
 *     returns -EPIPE (or -ECONNRESET).
 *   - Constructors return the object, or NULL with errno set to a value
 *     weft_strerror names (ECONNREFUSED, ETIMEDOUT, ECANCELED, ENXIO for a
 *     name that does not resolve, ...).
 */
#ifndef WEFT_IO_H
#define WEFT_IO_H
#ifndef WEFT_H
#error "include weft.h, not weft/io.h"
#endif

#include <netdb.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Addresses and name resolution                                       */
/* ------------------------------------------------------------------ */

/* getaddrinfo(3) on the thread pool, so the loop keeps running while the
 * resolver waits. Same arguments and result as getaddrinfo (free *res
 * with freeaddrinfo). A checkpoint; cancellation returns -ECANCELED at
 * once and the result that comes later is freed for you. 0, -ENXIO (the
 * name does not resolve: EAI_NONAME, EAI_NODATA), -EAGAIN (temporary
 * failure: EAI_AGAIN), -EAFNOSUPPORT (EAI_FAMILY, EAI_ADDRFAMILY),
 * -EINVAL (res NULL, both host and service NULL, EAI_SERVICE,
 * EAI_SOCKTYPE, EAI_BADFLAGS), -ENOMEM, -EIO (any other failure),
 * -ECANCELED, WEFT_ENOTASK. A numeric host resolves without the pool;
 * "invalid" and names under it fail at once with -ENXIO (RFC 6761). */
WEFT_API int weft_getaddrinfo(const char *host, const char *service,
                              const struct addrinfo *hints,
                              struct addrinfo **res);

/* Formats an IPv4, IPv6 or Unix address as text: "127.0.0.1:8080",
 * "[::1]:8080", a socket path, "@name" for an abstract one, "unix:" for an
 * unnamed one. Always NUL-terminates (truncating if needed). Returns the
 * length it needed (as snprintf), or -EAFNOSUPPORT, -EINVAL (NULL). */
WEFT_API int weft_addr_format(const struct sockaddr *addr, socklen_t len,
                              char *buf, size_t size);

/* ------------------------------------------------------------------ */
/* Streams: buffered reading and writing over a connected fd           */
/* ------------------------------------------------------------------ */

/* A stream reads from and writes to one connected non-blocking fd (a TCP
 * or Unix socket, a pipe, a tty). Reads are buffered (readline and
 * readuntil need to look ahead); writes go straight to the fd while it
 * takes them, and what it does not take is kept in a write buffer that
 * weft_stream_drain, _write_eof and _close flush (and the next write, and
 * a read while it waits for data: a buffered reply never stalls a
 * request-response exchange). Both buffers are
 * allocated when needed and given back when empty: an idle stream costs a
 * small record, no buffer. */
typedef struct weft_stream weft_stream;

typedef struct weft_stream_opts {
  /* readline / readuntil: the most bytes before the separator (asyncio's
   * limit). 0: 64 KiB. */
  size_t limit;
  /* weft_stream_drain waits while more than high_water bytes are buffered
   * for writing, until at most low_water are. 0: 64 KiB and high_water/4
   * (asyncio's defaults). */
  size_t high_water;
  size_t low_water;
} weft_stream_opts;

/* Makes a stream over fd, which it owns from now on (closed by
 * weft_stream_close or _abort, also when this fails) and switches to
 * non-blocking mode. opts may be NULL; it is copied. Callable from a
 * task or the loop's thread. NULL with errno EBADF (fd < 0), EINVAL
 * (low_water > high_water), ENOMEM, EPERM (no loop on this thread). */
WEFT_API weft_stream *weft_stream_open(int fd, const weft_stream_opts *opts);

/* The stream's fd (-1 once closed). For setsockopt, fstat and the like:
 * reading or writing it directly bypasses the buffers. */
WEFT_API int weft_stream_fd(const weft_stream *s);

/* -- reading -- */

/* asyncio read(n): up to n bytes, waiting only while none is there.
 * Returns the count (0 at end of stream, or n == 0), -ECANCELED,
 * -ECONNRESET, -EBADF (closed), another -errno of read(2), -EINVAL,
 * WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API ssize_t weft_stream_read(weft_stream *s, void *buf, size_t n);

/* asyncio readexactly(n): exactly n bytes into buf. 0, WEFT_EINCOMPLETE
 * (the stream ended first: the bytes that came are still in the stream,
 * for weft_stream_read to take; buf is unspecified), -ECANCELED (all the
 * bytes that came are still in the stream), other codes as read. */
WEFT_API int weft_stream_read_exactly(weft_stream *s, void *buf, size_t n);

/* asyncio readuntil(sep): waits until the buffered bytes contain sep and
 * returns them up to and including it, consumed. *data points into the
 * stream's buffer and stays valid until the next call on s (copy what you
 * keep). Returns the length (> 0), or:
 *   WEFT_ELIMIT        more than `limit` bytes come before sep (or no sep
 *                      in the first limit + seplen bytes); nothing is
 *                      consumed: read past them with weft_stream_read;
 *   WEFT_EINCOMPLETE   the stream ended before sep; the bytes that came
 *                      stay readable;
 *   -EINVAL            s, sep or data NULL, seplen 0;
 *   and read's codes. */
WEFT_API ssize_t weft_stream_readuntil(weft_stream *s, const void *sep,
                                       size_t seplen, const char **data);

/* A separator for weft_stream_readuntil_any. */
typedef struct weft_bytes {
  const void *data;
  size_t len;
} weft_bytes;

/* readuntil with several separators (asyncio 3.13's tuple): the shortest
 * result that ends with any of them. WEFT_ELIMIT when more than `limit`
 * bytes come before that separator, or none is in the first limit +
 * (longest seplen) bytes. -EINVAL also for nseps 0 or an empty
 * separator. */
WEFT_API ssize_t weft_stream_readuntil_any(weft_stream *s,
                                           const weft_bytes *seps,
                                           size_t nseps, const char **data);

/* asyncio readline: readuntil "\n", except that at the end of the stream
 * it returns what is left without a newline (0: nothing left; *data is
 * then ""). */
WEFT_API ssize_t weft_stream_readline(weft_stream *s, const char **data);

/* asyncio at_eof: true when the peer has ended the stream and every byte
 * has been read. Not a checkpoint. false for NULL. */
WEFT_API bool weft_stream_at_eof(const weft_stream *s);

/* Bytes buffered for reading (a read of up to that many will not wait). */
WEFT_API size_t weft_stream_read_buffered(const weft_stream *s);

/* -- writing -- */

/* asyncio write: sends data, or buffers what the fd does not take now.
 * Never waits, so not a checkpoint; follow a burst of writes with
 * weft_stream_drain to wait for room. 0, -EPIPE / -ECONNRESET (the peer
 * has gone; also every write after that), -ESHUTDOWN (after write_eof),
 * -EBADF (closed), -ENOMEM (the buffer could not grow; nothing of data
 * was taken -- unless the fd had already taken part of it: then the
 * stream cannot go on, and every later write returns -ENOMEM too),
 * -EINVAL, WEFT_ELOOP. Callable from a task or the loop's thread. */
WEFT_API int weft_stream_write(weft_stream *s, const void *data, size_t n);
/* write of several pieces, in order (asyncio writelines), one writev(2)
 * when the buffer is empty. iovcnt 0..IOV_MAX. Same codes. */
WEFT_API int weft_stream_writev(weft_stream *s, const struct iovec *iov,
                                int iovcnt);

/* asyncio drain: if more than high_water bytes are buffered for writing,
 * waits until at most low_water are. 0, -ECANCELED (the bytes not yet
 * sent stay buffered, in order), the write errors. */
WEFT_API int weft_stream_drain(weft_stream *s);

/* Bytes buffered for writing, not yet taken by the fd. */
WEFT_API size_t weft_stream_write_buffered(const weft_stream *s);

/* Sends count bytes of file_fd from *offset (sendfile(2)), after flushing
 * the write buffer, waiting for room as needed; *offset advances by what
 * was sent, also when it stops early (so a retry resumes there). 0,
 * WEFT_EINCOMPLETE (the file ended before count bytes), -ECANCELED, the
 * write errors, -errno of sendfile (-EINVAL: file_fd cannot be mapped,
 * e.g. a pipe). */
WEFT_API int weft_stream_sendfile(weft_stream *s, int file_fd, off_t *offset,
                                  size_t count);

/* asyncio write_eof: flushes the write buffer, then shuts the write side
 * (shutdown(SHUT_WR); for a pipe, closes the fd if the stream only
 * writes). Reading still works. 0, -ECANCELED (nothing shut; the buffer
 * stays), the write errors, -ENOTSOCK (not a socket and not a pipe). */
WEFT_API int weft_stream_write_eof(weft_stream *s);

/* -- ending -- */

/* asyncio close + wait_closed, in one call since C needs one owner:
 * flushes the write buffer (waiting while the peer is slow to read,
 * bounded by the caller's scopes), closes the fd and frees s, always,
 * even when it returns an error. 0 when every buffered byte was sent;
 * otherwise the bytes left are dropped and it returns -ECANCELED (a scope
 * cut the flush short), -ETIMEDOUT (weft_stream_close_until's deadline),
 * or the write error, or -EBADF (another task aborted s during the
 * flush; a second close meanwhile returns -EBADF and does nothing).
 * -EINVAL (NULL), WEFT_ELOOP (s is not freed then).
 * Outside a task (on the loop's thread) it flushes only what the fd takes
 * at once, and returns -EAGAIN if bytes were left. */
WEFT_API int weft_stream_close(weft_stream *s);
/* close with a deadline for the flush. */
WEFT_API int weft_stream_close_until(weft_stream *s, int64_t deadline);

/* Closes at once, dropping buffered bytes; a TCP peer gets a reset (RST)
 * rather than an orderly end. Frees s. Tasks waiting on s wake with
 * -EBADF (as with weft_stream_close); s is gone by then, so a call that
 * returned -EBADF must not touch s again. 0, -EINVAL, WEFT_ELOOP. */
WEFT_API int weft_stream_abort(weft_stream *s);

/* getpeername / getsockname of the stream's socket into *addr (*len in:
 * its size, out: the address's). 0, -EINVAL, -ENOTSOCK, -ENOTCONN, -EBADF. */
WEFT_API int weft_stream_peer_addr(const weft_stream *s,
                                   struct sockaddr_storage *addr,
                                   socklen_t *len);
WEFT_API int weft_stream_local_addr(const weft_stream *s,
                                    struct sockaddr_storage *addr,
                                    socklen_t *len);

/* Two connected streams over socketpair(AF_UNIX, SOCK_STREAM), each
 * closed by its owner. Both NULL with errno on failure (EMFILE, ENOMEM,
 * EPERM). */
typedef struct weft_stream_pair {
  weft_stream *a;
  weft_stream *b;
} weft_stream_pair;
WEFT_API weft_stream_pair weft_stream_socketpair(const weft_stream_opts *opts);

/* ------------------------------------------------------------------ */
/* TCP and Unix connections                                            */
/* ------------------------------------------------------------------ */

typedef struct weft_connect_opts {
  /* The whole connect, resolution included, is bounded by the caller's
   * scopes and, if > 0, by this duration (then -ETIMEDOUT). */
  int64_t timeout;
  /* Happy Eyeballs (RFC 8305): the next address is tried this long after
   * the previous attempt started, or at once when it fails. 0: 250 ms;
   * < 0: one address after another, no racing. */
  int64_t happy_eyeballs_delay;
  int family;             /* AF_UNSPEC (0), AF_INET or AF_INET6 */
  const char *local_host; /* bind to this address first (NULL: any) */
  int local_port;         /* ... and port (0: any) */
  bool nagle;             /* true: leave Nagle on (TCP_NODELAY is set) */
  int keepalive;          /* > 0: SO_KEEPALIVE, this many seconds idle
                             before the first probe (TCP_KEEPIDLE) */
  weft_stream_opts stream;
} weft_connect_opts;

/* asyncio open_connection: resolves host off the loop, connects to its
 * addresses with Happy Eyeballs (IPv6 and IPv4 interleaved, the next
 * attempt after happy_eyeballs_delay or when one fails; the first to
 * connect wins and the others are closed) and returns a stream. opts may
 * be NULL. A checkpoint. NULL with errno: ECONNREFUSED, ETIMEDOUT,
 * ECANCELED, ENETUNREACH, EHOSTUNREACH (the last attempt's error when all
 * failed), ENXIO (host does not resolve), EINVAL (host NULL, port not in
 * 1..65535), EMFILE, ENOMEM, EPERM (not called from a task). */
WEFT_API weft_stream *weft_tcp_connect(const char *host, int port,
                                       const weft_connect_opts *opts);

/* Connects to a Unix stream socket: a path, or "@name" for Linux's
 * abstract namespace. NULL with errno ENOENT, ECONNREFUSED,
 * ENAMETOOLONG, ECANCELED, EMFILE, ENOMEM, EINVAL, EPERM. */
WEFT_API weft_stream *weft_unix_connect(const char *path,
                                        const weft_stream_opts *opts);

/* ------------------------------------------------------------------ */
/* Servers                                                             */
/* ------------------------------------------------------------------ */

typedef struct weft_server weft_server;

/* Runs one connection. The server owns conn: it closes it (flushing, as
 * weft_stream_close) when the handler returns. The handler may close or
 * abort it earlier; the pointer stays valid (every call then returns
 * -EBADF) until it returns. A negative return is reported (see on_error)
 * and the server goes on. */
typedef int (*weft_conn_fn)(weft_stream *conn, void *arg);

typedef struct weft_listen_opts {
  int backlog;     /* listen(2) backlog; 0: SOMAXCONN */
  bool reuse_port; /* SO_REUSEPORT: several sockets (one loop per core)
                      share the port and the kernel spreads connections */
  bool v6_only;    /* with an IPv6 host ("::"): IPv6 only (default: both) */
  bool nagle;      /* as weft_connect_opts, for accepted connections */
  int keepalive;
  size_t stack_size; /* handler tasks' stack; 0: the loop's default */
  /* A handler returned < 0 (other than -ECANCELED): called on the
   * loop's thread, in the handler's task, with the peer's address as
   * text, the code, the message of weft_fail (or NULL) and serve's arg.
   * NULL: one line on stderr. */
  void (*on_error)(weft_server *srv, const char *peer, int code,
                   const char *msg, void *arg);
  weft_stream_opts stream;
} weft_listen_opts;

/* asyncio start_server, first half: binds host:port and listens. host
 * NULL or "" listens on every address (IPv6 and IPv4 on one socket where
 * the system allows, else IPv4). A name with several addresses
 * ("localhost": ::1 and 127.0.0.1) gets a socket on each, as in asyncio,
 * all on one port (up to 8; an address the system cannot bind is
 * skipped if another binds). Port 0 picks a free port (read it with
 * weft_server_port). SO_REUSEADDR is always set. A checkpoint (host is
 * resolved off the loop). NULL with errno EADDRINUSE, EACCES, ENXIO,
 * EINVAL, EMFILE, ENOMEM, ECANCELED, EPERM. */
WEFT_API weft_server *weft_tcp_listen(const char *host, int port,
                                      const weft_listen_opts *opts);
/* The same on a Unix socket path ("@name": abstract namespace). A stale
 * socket file at path is replaced; the file is removed by
 * weft_server_close. */
WEFT_API weft_server *weft_unix_listen(const char *path,
                                       const weft_listen_opts *opts);

/* The bound port (host order; 0 for a Unix server, -EINVAL for NULL).
 * With several sockets, all share it; weft_server_addr gives the
 * first socket's address. */
WEFT_API int weft_server_port(const weft_server *srv);
/* The bound address, as weft_stream_local_addr. */
WEFT_API int weft_server_addr(const weft_server *srv,
                              struct sockaddr_storage *addr, socklen_t *len);

/* Accepts connections and runs fn(conn, arg) for each in a task of the
 * server's own group, named after the peer ("127.0.0.1:53012"), until
 * weft_server_stop or _shutdown, or until the caller is cancelled (then
 * the handlers are cancelled too). If the calling task was started with
 * weft_group_start, serve calls weft_started(srv) once it accepts, so
 * the starter can read the port. Out of fds (EMFILE, ENFILE) or of
 * memory for a handler's task (its stack), it keeps serving the
 * connections it has, backs off (10 ms, doubling to 1 s) and accepts
 * again later; a connection whose handler got no stack is closed and
 * reported (-ENOMEM, through on_error). Returns after the handlers have
 * all returned: 0 (stopped), -ECANCELED, -EBUSY (already serving),
 * -EINVAL, WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API int weft_server_serve(weft_server *srv, weft_conn_fn fn, void *arg);

/* Stops accepting (the listening socket is closed); serve returns once
 * the handlers running now have returned. Not a checkpoint; callable from
 * any task of the loop. 0, -EINVAL, WEFT_ELOOP. */
WEFT_API int weft_server_stop(weft_server *srv);
/* Graceful shutdown: stop, then wait until the handlers have returned or
 * `deadline` passes, then cancel those left and wait for them; returns
 * once serve has returned (so weft_server_close may follow). Called
 * from a task other than serve's and its handlers'. 0 (all returned in
 * time), -ETIMEDOUT (some were cancelled), -ECANCELED (the caller was;
 * the handlers are cancelled), -EDEADLK (called from serve's task or a
 * handler: use weft_server_stop there), -EBUSY (another shutdown of srv
 * is waiting), -EINVAL, WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API int weft_server_shutdown(weft_server *srv, int64_t deadline);
/* Connections being handled now. */
WEFT_API size_t weft_server_connections(const weft_server *srv);
/* Frees a server that is not serving (serve has returned or never ran):
 * closes the listening socket, removes a Unix socket's file. 0, -EBUSY
 * (serving), -EINVAL, WEFT_ELOOP. */
WEFT_API int weft_server_close(weft_server *srv);

/* ------------------------------------------------------------------ */
/* UDP                                                                 */
/* ------------------------------------------------------------------ */

typedef struct weft_udp weft_udp;

typedef struct weft_udp_opts {
  bool reuse_port; /* SO_REUSEPORT */
  bool broadcast;  /* SO_BROADCAST */
  int family;      /* with host NULL: AF_INET (0) or AF_INET6; with a
                      host, AF_INET or AF_INET6 keeps only that family's
                      addresses (0: any) */
} weft_udp_opts;

/* asyncio create_datagram_endpoint(local_addr=): a UDP socket bound to
 * host:port (host NULL: any; port 0: a free one). A numeric host ("::1"
 * or "[::1]" too) is parsed at once, from a task or the loop's thread;
 * a name is resolved off the loop (weft_getaddrinfo: from a task only, a
 * checkpoint) and its addresses are tried in order. The endpoint belongs
 * to the calling thread's loop. NULL with errno EADDRINUSE, ENXIO,
 * EINVAL, EMFILE, ENOMEM, ECANCELED, EPERM (no loop on this thread). */
WEFT_API weft_udp *weft_udp_bind(const char *host, int port,
                                 const weft_udp_opts *opts);
/* create_datagram_endpoint(remote_addr=): a UDP socket connected to
 * host:port (send without an address; only its datagrams are received).
 * As bind; host NULL or port not in 1..65535: EINVAL. */
WEFT_API weft_udp *weft_udp_connect(const char *host, int port,
                                    const weft_udp_opts *opts);
/* The local port (host order), -EINVAL for NULL. Callable from any
 * thread, as weft_udp_fd (they only read the socket). */
WEFT_API int weft_udp_port(const weft_udp *u);

/* Sends one datagram (connected endpoint). Waits only while the socket
 * buffer is full. A checkpoint (from a task of u's loop only). 0,
 * -EMSGSIZE, -ECONNREFUSED (an earlier datagram was refused: ICMP port
 * unreachable), -EDESTADDRREQ (not connected), -ECANCELED (nothing
 * sent), -EBADF (u closed by another task meanwhile), -EINVAL,
 * WEFT_ENOTASK, WEFT_ELOOP; other -errno of sendto(2). */
WEFT_API int weft_udp_send(weft_udp *u, const void *buf, size_t n);
/* Sends one datagram to addr. Same codes, -EISCONN on a connected one. */
WEFT_API int weft_udp_send_to(weft_udp *u, const void *buf, size_t n,
                              const struct sockaddr *addr, socklen_t len);
/* Receives one datagram into buf, waiting for one; from/fromlen (may be
 * NULL) get the sender: *fromlen is set (not read) to its length, 0 when
 * from is NULL; from without fromlen is -EINVAL. Returns its length, or
 * -EMSGSIZE when it was longer than n (the first n bytes are in buf, the
 * rest is dropped, as recv(2) does; n 0 takes a datagram too),
 * -ECONNREFUSED (connected endpoint: an earlier send was refused),
 * -ECANCELED (no datagram taken), -EBADF (closed meanwhile), -EINVAL,
 * WEFT_ENOTASK, WEFT_ELOOP. */
WEFT_API ssize_t weft_udp_recv(weft_udp *u, void *buf, size_t n,
                               struct sockaddr_storage *from,
                               socklen_t *fromlen);
/* Closes and frees u; tasks waiting on it wake with -EBADF. From the
 * loop's thread (a task or not), or from a thread with no loop (after
 * weft_run has returned). 0, -EINVAL, WEFT_ELOOP (another loop's thread;
 * u stays open). */
WEFT_API int weft_udp_close(weft_udp *u);
/* The socket's fd, for setsockopt (multicast and the like). */
WEFT_API int weft_udp_fd(const weft_udp *u);

#ifdef __cplusplus
}
#endif

#endif
