/*
 * Addresses and name resolution (include/weft/io.h), and the socket
 * helpers tcp.c and server.c share (io/sock.h).
 *
 * weft_getaddrinfo resolves a numeric host (and a numeric or absent
 * service) on the loop's thread: getaddrinfo with AI_NUMERICHOST never
 * blocks. Any other name goes to the default thread pool, as asyncio's
 * loop.getaddrinfo does: the job record carries copies of the arguments
 * and receives the result, and the pool's cleanup frees both when the
 * caller was cancelled before it could take them.
 *
 * Names under ".invalid" fail at once with -ENXIO, as RFC 6761 section
 * 6.4 asks of resolver APIs (no query is sent).
 */
#define _GNU_SOURCE /* accept4, SOCK_NONBLOCK */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/sock.h"

/* ---- getaddrinfo ------------------------------------------------------- */

static int eai_code(int eai) {
  switch (eai) {
  case 0: return 0;
  case EAI_NONAME:
#ifdef EAI_NODATA
  case EAI_NODATA:
#endif
    return -ENXIO;
  case EAI_AGAIN: return -EAGAIN;
  case EAI_FAMILY:
#ifdef EAI_ADDRFAMILY
  case EAI_ADDRFAMILY:
#endif
    return -EAFNOSUPPORT;
  case EAI_SERVICE:
  case EAI_SOCKTYPE:
  case EAI_BADFLAGS: return -EINVAL;
  case EAI_MEMORY: return -ENOMEM;
  default: return -EIO;
  }
}

static bool all_digits(const char *s) {
  if (!*s) return false;
  for (; *s; s++)
    if (!isdigit((unsigned char)*s)) return false;
  return true;
}

/* A literal IPv4 or IPv6 address (without a zone: "fe80::1%eth0" names an
 * interface, which may take a lookup). */
static bool numeric_host(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* RFC 6761 6.4: "invalid" and names under it never resolve. */
static bool invalid_name(const char *host) {
  size_t n = strlen(host);
  while (n && host[n - 1] == '.') n--; /* a fully qualified "x.invalid." */
  if (n == 7) return strncasecmp(host, "invalid", 7) == 0;
  return n > 8 && strncasecmp(host + n - 8, ".invalid", 8) == 0;
}

typedef struct gai_job {
  char *host, *service; /* copies: the job may outlive the caller */
  struct addrinfo hints;
  bool has_hints;
  int eai;
  struct addrinfo *res;
} gai_job;

static void gai_job_free(gai_job *j) {
  free(j->host);
  free(j->service);
  free(j);
}

static void *gai_run(void *arg) {
  gai_job *j = arg;
  j->res = NULL;
  j->eai = getaddrinfo(j->host, j->service, j->has_hints ? &j->hints : NULL,
                       &j->res);
  return j;
}

/* The caller did not take the result (cancelled, or the job never ran). */
static void gai_cleanup(void *arg, void *result, int status) {
  gai_job *j = arg;
  (void)result;
  if (status == 0 && j->eai == 0 && j->res) freeaddrinfo(j->res);
  gai_job_free(j);
}

int weft_getaddrinfo(const char *host, const char *service,
                     const struct addrinfo *hints, struct addrinfo **res) {
  if (!res || (!host && !service)) return -EINVAL;
  *res = NULL;
  weft_task *cur = weft__cur();
  if (!cur) return weft__misuse(__func__, WEFT_ENOTASK);
  if (weft__checkpoint(cur)) return -ECANCELED;
  if (host && invalid_name(host)) return -ENXIO;
  bool num_serv = !service || all_digits(service);
  if (num_serv && (!host || numeric_host(host))) {
    /* No lookup: on the loop. */
    struct addrinfo h = {0};
    if (hints) h = *hints;
    h.ai_flags |= AI_NUMERICHOST | (service ? AI_NUMERICSERV : 0);
    h.ai_addr = NULL;
    h.ai_canonname = NULL;
    h.ai_next = NULL;
    return eai_code(getaddrinfo(host, service, &h, res));
  }
  gai_job *j = calloc(1, sizeof *j);
  if (!j) return -ENOMEM;
  if ((host && !(j->host = strdup(host))) ||
      (service && !(j->service = strdup(service)))) {
    gai_job_free(j);
    return -ENOMEM;
  }
  if (hints) {
    j->hints = *hints;
    j->hints.ai_addr = NULL;
    j->hints.ai_canonname = NULL;
    j->hints.ai_next = NULL;
    j->has_hints = true;
  }
  void *out = NULL;
  /* On an error the cleanup has taken j (and any result). */
  int rc = weft_executor_run(NULL, gai_run, j, gai_cleanup, &out);
  if (rc) return rc;
  rc = eai_code(j->eai);
  if (!rc) *res = j->res;
  else if (j->res) freeaddrinfo(j->res); /* not set on failure; to be safe */
  gai_job_free(j);
  return rc;
}

/* ---- formatting -------------------------------------------------------- */

int weft_addr_format(const struct sockaddr *addr, socklen_t len, char *buf,
                     size_t size) {
  if (!addr || (!buf && size)) return -EINVAL;
  if (len < (socklen_t)sizeof(sa_family_t)) return -EINVAL;
  char host[INET6_ADDRSTRLEN + 16];
  switch (addr->sa_family) {
  case AF_INET: {
    if (len < (socklen_t)sizeof(struct sockaddr_in)) return -EINVAL;
    const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
    if (!inet_ntop(AF_INET, &in->sin_addr, host, sizeof host)) return -EINVAL;
    return snprintf(buf, size, "%s:%u", host, (unsigned)ntohs(in->sin_port));
  }
  case AF_INET6: {
    if (len < (socklen_t)sizeof(struct sockaddr_in6)) return -EINVAL;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
    if (!inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host)) return -EINVAL;
    if (in6->sin6_scope_id)
      return snprintf(buf, size, "[%s%%%u]:%u", host,
                      (unsigned)in6->sin6_scope_id,
                      (unsigned)ntohs(in6->sin6_port));
    return snprintf(buf, size, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
  }
  case AF_UNIX: {
    const struct sockaddr_un *un = (const struct sockaddr_un *)addr;
    size_t off = offsetof(struct sockaddr_un, sun_path);
    if ((size_t)len <= off) return snprintf(buf, size, "unix:");
    size_t n = (size_t)len - off;
    if (n > sizeof un->sun_path) n = sizeof un->sun_path;
    if (un->sun_path[0] == '\0') /* abstract: the name may hold NULs */
      return snprintf(buf, size, "@%.*s", (int)(n - 1), un->sun_path + 1);
    return snprintf(buf, size, "%.*s", (int)strnlen(un->sun_path, n),
                    un->sun_path);
  }
  default:
    if (size) buf[0] = '\0';
    return -EAFNOSUPPORT;
  }
}

/* ---- helpers of io/sock.h ---------------------------------------------- */

int weft__resolve(const char *host, int port, int family, int socktype,
                  int flags, struct addrinfo **res) {
  char serv[8];
  snprintf(serv, sizeof serv, "%d", port);
  struct addrinfo hints = {.ai_family = family,
                           .ai_socktype = socktype,
                           .ai_flags = flags | AI_NUMERICSERV};
  return weft_getaddrinfo(host, serv, &hints, res);
}

int weft__unix_addr(const char *path, struct sockaddr_un *sun, socklen_t *len) {
  if (!path || !*path) return -EINVAL;
  memset(sun, 0, sizeof *sun);
  sun->sun_family = AF_UNIX;
  size_t off = offsetof(struct sockaddr_un, sun_path);
  size_t n = strlen(path);
  if (path[0] == '@') { /* abstract: sun_path[0] = 0, then the name */
    if (n > sizeof sun->sun_path) return -ENAMETOOLONG;
    memcpy(sun->sun_path + 1, path + 1, n - 1);
    *len = (socklen_t)(off + n);
  } else { /* a path, with its NUL */
    if (n >= sizeof sun->sun_path) return -ENAMETOOLONG;
    memcpy(sun->sun_path, path, n + 1);
    *len = (socklen_t)(off + n + 1);
  }
  return 0;
}

void weft__sock_tune(int fd, bool nagle, int keepalive) {
  int one = 1;
  if (!nagle) (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (keepalive > 0) {
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &keepalive, sizeof keepalive);
  }
}

size_t weft__he_order(const struct addrinfo *list, const struct addrinfo **out,
                      size_t max) {
  int first = 0;
  size_t n4 = 0, n6 = 0;
  for (const struct addrinfo *a = list; a; a = a->ai_next) {
    if (a->ai_family == AF_INET) n4++;
    else if (a->ai_family == AF_INET6) n6++;
    else continue;
    if (!first) first = a->ai_family;
  }
  /* Walk both families in their own order, alternating. */
  const struct addrinfo *p[2] = {list, list}; /* [0]: first family */
  int fam[2] = {first, first == AF_INET ? AF_INET6 : AF_INET};
  size_t total = n4 + n6, k = 0;
  for (int turn = 0; k < total; turn ^= 1) {
    const struct addrinfo *a = p[turn];
    while (a && a->ai_family != fam[turn]) a = a->ai_next;
    if (!a) {
      p[turn] = NULL;
      continue;
    }
    if (k < max) out[k] = a;
    k++;
    p[turn] = a->ai_next;
  }
  return total;
}
