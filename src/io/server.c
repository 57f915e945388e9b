/* src/io/server.c: being written. */
#include "io/internal.h"
