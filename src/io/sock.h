/*
 * Socket helpers shared by src/io/addr.c, tcp.c and server.c (and by
 * tests that check the Happy Eyeballs race directly). Nothing here is
 * public.
 */
#ifndef WEFT_IO_SOCK_H
#define WEFT_IO_SOCK_H

#include <netdb.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "io/internal.h"

/* Resolves host:port (port 0..65535, given as a number) for `socktype`
 * with weft_getaddrinfo; family AF_UNSPEC, AF_INET or AF_INET6; flags
 * the AI_* flags to add (AI_PASSIVE for a server). Same codes. */
WEFT__HIDDEN int weft__resolve(const char *host, int port, int family,
                               int socktype, int flags, struct addrinfo **res);

/* A Unix socket address for path ("@name": abstract namespace, with the
 * length counted exactly, no trailing NUL). 0, -EINVAL (path NULL or
 * empty), -ENAMETOOLONG. */
WEFT__HIDDEN int weft__unix_addr(const char *path, struct sockaddr_un *sun,
                                 socklen_t *len);

/* TCP_NODELAY unless nagle; SO_KEEPALIVE + TCP_KEEPIDLE when keepalive
 * > 0. Best effort: failures are ignored (a Unix socket has neither). */
WEFT__HIDDEN void weft__sock_tune(int fd, bool nagle, int keepalive);

/* RFC 8305 section 4: the addresses of `list` (AF_INET and AF_INET6 only,
 * others skipped) with the two families interleaved, starting with the
 * family of the first one. Stores at most max pointers into out; returns
 * how many there are in all (may be more than max). */
WEFT__HIDDEN size_t weft__he_order(const struct addrinfo *list,
                                   const struct addrinfo **out, size_t max);

/* The Happy Eyeballs race over the addresses of `list`, ordered by
 * weft__he_order: starts a connect to the first address, then to the next one `delay`
 * after (delay < 0: only once the one before has failed) or as soon as
 * an attempt fails; the first to connect wins and the others are closed.
 * local (may be NULL) is bound first (SO_REUSEADDR): the first address of
 * the attempt's family is used; none of that family: the attempt fails
 * with -EADDRNOTAVAIL. Under the caller's scopes. Returns the connected
 * fd (non-blocking, close-on-exec), or -errno: the last attempt's error
 * when all failed, -ECANCELED, -ENXIO (empty list). */
WEFT__HIDDEN int weft__he_connect(const struct addrinfo *list, int64_t delay,
                                  const struct addrinfo *local);

#endif
