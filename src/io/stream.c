/* src/io/stream.c: being written. */
#include "io/internal.h"
