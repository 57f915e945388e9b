/* src/io/addr.c: being written. */
#include "io/internal.h"
