/*
 * Valgrind's client requests when its header is installed (Debian's
 * valgrind package), harmless stand-ins otherwise: weft builds without it,
 * and then valgrind only misses the stack annotations.
 */
#ifndef WEFT_VALGRIND_COMPAT_H
#define WEFT_VALGRIND_COMPAT_H

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>) && !defined(WEFT_NO_VALGRIND)
#include <valgrind/valgrind.h>
#define WEFT_HAVE_VALGRIND 1
#endif
#endif

#ifndef WEFT_HAVE_VALGRIND
#define RUNNING_ON_VALGRIND 0
#define VALGRIND_STACK_REGISTER(lo, hi) 0u
#define VALGRIND_STACK_DEREGISTER(id) ((void)(id))
#endif

#endif
