/* src/io/udp.c: being written. */
#include "io/internal.h"
