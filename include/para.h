/*
 * para: dataflow pipelines on every core (and, later, every OpenCL device).
 *
 * Include this header only. See README.md for a walk-through.
 */
#ifndef PARA_H
#define PARA_H

#include "para/errors.h"
#include "para/graph.h"
#include "para/items.h"
#include "para/pipeline.h"
#include "para/records.h"
#include "para/reduce.h"
#include "para/runtime.h"
#include "para/version.h"

#endif /* PARA_H */
