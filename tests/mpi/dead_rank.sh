#!/usr/bin/env bash
# A rank that dies (--die: exits in a node function) or stops (--stop:
# SIGSTOP) during para_mpi_run() must end the job with a failure, promptly:
# mpirun aborts a job that lost a process, and the live ranks of a job with
# a stopped one give up after PARA_MPI_TIMEOUT and call MPI_Abort(). A hang
# (the outer timeout) or a success fails this test.
#   tests/mpi/dead_rank.sh --die|--stop SECONDS mpiexec [mpiexec args...]
set -uo pipefail
mode=$1 limit=$2
shift 2
start=$(date +%s)
PARA_MPI_TIMEOUT=3 timeout -s KILL "$limit" "$@" "$mode"
rc=$?
took=$(($(date +%s) - start))
if [ "$rc" -eq 0 ]; then
  echo "dead_rank $mode: the job succeeded; it should have failed" >&2
  exit 1
fi
if [ "$rc" -eq 137 ]; then
  echo "dead_rank $mode: still running after ${limit}s: hung" >&2
  exit 1
fi
echo "dead_rank $mode: job failed as it should (status $rc) in ${took}s"
