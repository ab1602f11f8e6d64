/*
 * para: error codes.
 *
 * Every fallible call returns 0 or one of the negative codes below. OS-level
 * failures reuse -errno (as libuv does); runtime-specific codes live in the
 * -3000 range so that they never collide with errno values.
 *
 * The table is an X-macro so that para_err_name() and para_strerror() can never
 * drift from the enum.
 */
#ifndef PARA_ERRORS_H
#define PARA_ERRORS_H

#include <errno.h>

#include "para/export.h"

/* XX(name, value, message) */
#define PARA_ERRNO_MAP(XX)                                                     \
    XX(EINVAL, -EINVAL, "invalid argument")                                    \
    XX(ENOMEM, -ENOMEM, "out of memory")                                       \
    XX(EBUSY, -EBUSY, "resource busy")                                         \
    XX(ECANCELED, -ECANCELED, "operation canceled")                            \
    XX(EOVERFLOW, -EOVERFLOW, "value too large for the destination")           \
    XX(EAGAIN, -EAGAIN, "resource temporarily unavailable")                    \
    XX(ENOSYS, -ENOSYS, "not supported by this build")                         \
    XX(ECYCLE, -3001, "graph has a cycle")                                     \
    XX(EUNCONNECTED, -3002, "node has an unconnected port")                    \
    XX(ESIZE, -3003, "item sizes differ across an edge")                       \
    XX(EFOREIGN, -3004, "node belongs to another graph")                       \
    XX(EORDER, -3005, "ordered node is fed by more than one source")           \
    XX(ENOSOURCE, -3006, "graph has no source")                                \
    XX(ENODE, -3007, "a node's function failed")                               \
    XX(EPOLICY, -3008, "unknown scheduling policy")                            \
    XX(ENODEV, -3010, "no such device")                                        \
    XX(EDEVICE, -3011, "device error")                                         \
    XX(EKERNEL_BUILD, -3012, "kernel build failed")

typedef enum para_errno {
#define PARA_ERRNO_ENUM(name, value, msg) PARA_##name = (value),
    PARA_ERRNO_MAP(PARA_ERRNO_ENUM)
#undef PARA_ERRNO_ENUM
} para_errno_t;

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @brief A human-readable description of an error code.
 * @param[in] err 0 or a negative PARA_E* code.
 * @return A static string; "unknown error" for codes outside the table.
 * @note Any thread; never fails.
 */
PARA_API const char *para_strerror(int err);

/**
 * @brief The symbolic name of an error code, e.g. "PARA_ECYCLE".
 * @param[in] err 0 or a negative PARA_E* code.
 * @return A static string; "PARA_EUNKNOWN" for codes outside the table.
 * @note Any thread; never fails.
 */
PARA_API const char *para_err_name(int err);

#ifdef __cplusplus
}
#endif

#endif /* PARA_ERRORS_H */
