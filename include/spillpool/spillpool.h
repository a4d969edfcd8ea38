/* spillpool: keep more data than RAM. Include this for the whole public API. */
#ifndef SPILLPOOL_H
#define SPILLPOOL_H
#include "status.h"
#include "store.h"
#include "pool.h"
#include "filter.h"
#include "csv.h"
#include "dag.h"
#define SPILLPOOL_VERSION "0.1.0"
#endif
