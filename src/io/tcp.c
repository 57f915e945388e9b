/* src/io/tcp.c: being written. */
#include "io/internal.h"
