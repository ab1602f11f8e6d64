/*
 * Internal interface of the MPI part (runtime/mpi): placement (place.c) and
 * the run across ranks (mpi_run.c). Built into the separate library
 * para_mpi, so that libpara itself never depends on MPI.
 */
#ifndef PARA_MPI_INTERNAL_H
#define PARA_MPI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "para/mpi.h"

/* Fill place[node index] from para_mpi_place() and PARA_MPI_PLACE, and
 * check it for @p ranks ranks. 0, or PARA_EINVAL / PARA_ENOMEM with the
 * reason (naming the node or the edge) in @p msg. */
int para__mpi_placement(const para_graph_t *g, int ranks, int *place, char *msg,
                        size_t len);
/* Does an edge between nodes placed @p from and @p to leave its rank? */
bool para__mpi_edge_crosses(int from, int to);
/* Credit (bytes) this rank grants each other rank (PARA_MPI_WINDOW). */
uint64_t para__mpi_window(const para_runtime_t *rt, int ranks);
/* PARA_MPI_TIMEOUT in seconds. */
double para__mpi_timeout_s(void);
/* Environment variable @p name as an integer in [@p min, @p max], or
 * @p def when unset (or, logged, when it does not parse). */
uint64_t para__mpi_env_uint(const char *name, uint64_t def, uint64_t min,
                            uint64_t max);

#endif /* PARA_MPI_INTERNAL_H */
