/*
 * OpenCL status codes: names (para__cl_err_name), the mapping to PARA_E*
 * codes (para__cl_to_err) and the report behind PARA_CL_CHECK
 * (para__cl_report).
 *
 * The names come from one X-macro of every core status code, 0 .. -72
 * (OpenCL 1.0 to 3.0), written with literal values so that the table does
 * not depend on the version of the installed headers or on
 * CL_TARGET_OPENCL_VERSION (which hides the 2.x codes). Extension codes
 * (KHR, EXT, vendor) come from the extension headers, each behind #ifdef,
 * since older or trimmed headers may lack them. Anything else is printed as
 * "CL_UNKNOWN(<value>)", as the Khronos ICD loader and PoCL do.
 *
 * Tests: tests/devices/test_opencl.c (names of known and unknown codes) and
 * tests/devices/test_opencl_faults.c (the messages of failed calls).
 */
#include <stdio.h>
#include <string.h>

#include "cl_internal.h"
#include "para/errors.h"
#include "util.h"

#ifndef __APPLE__
#include <CL/cl_ext.h>
#include <CL/cl_gl.h>
#if defined(__has_include)
#if __has_include(<CL/cl_egl.h>)
#include <CL/cl_egl.h>
#endif
#endif
#endif

/* XX(name, value): every core OpenCL status code. */
#define PARA_CL_STATUS_MAP(XX)                                                 \
    XX(CL_SUCCESS, 0)                                                          \
    XX(CL_DEVICE_NOT_FOUND, -1)                                                \
    XX(CL_DEVICE_NOT_AVAILABLE, -2)                                            \
    XX(CL_COMPILER_NOT_AVAILABLE, -3)                                          \
    XX(CL_MEM_OBJECT_ALLOCATION_FAILURE, -4)                                   \
    XX(CL_OUT_OF_RESOURCES, -5)                                                \
    XX(CL_OUT_OF_HOST_MEMORY, -6)                                              \
    XX(CL_PROFILING_INFO_NOT_AVAILABLE, -7)                                    \
    XX(CL_MEM_COPY_OVERLAP, -8)                                                \
    XX(CL_IMAGE_FORMAT_MISMATCH, -9)                                           \
    XX(CL_IMAGE_FORMAT_NOT_SUPPORTED, -10)                                     \
    XX(CL_BUILD_PROGRAM_FAILURE, -11)                                          \
    XX(CL_MAP_FAILURE, -12)                                                    \
    XX(CL_MISALIGNED_SUB_BUFFER_OFFSET, -13)                                   \
    XX(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST, -14)                      \
    XX(CL_COMPILE_PROGRAM_FAILURE, -15)                                        \
    XX(CL_LINKER_NOT_AVAILABLE, -16)                                           \
    XX(CL_LINK_PROGRAM_FAILURE, -17)                                           \
    XX(CL_DEVICE_PARTITION_FAILED, -18)                                        \
    XX(CL_KERNEL_ARG_INFO_NOT_AVAILABLE, -19)                                  \
    XX(CL_INVALID_VALUE, -30)                                                  \
    XX(CL_INVALID_DEVICE_TYPE, -31)                                            \
    XX(CL_INVALID_PLATFORM, -32)                                               \
    XX(CL_INVALID_DEVICE, -33)                                                 \
    XX(CL_INVALID_CONTEXT, -34)                                                \
    XX(CL_INVALID_QUEUE_PROPERTIES, -35)                                       \
    XX(CL_INVALID_COMMAND_QUEUE, -36)                                          \
    XX(CL_INVALID_HOST_PTR, -37)                                               \
    XX(CL_INVALID_MEM_OBJECT, -38)                                             \
    XX(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR, -39)                                \
    XX(CL_INVALID_IMAGE_SIZE, -40)                                             \
    XX(CL_INVALID_SAMPLER, -41)                                                \
    XX(CL_INVALID_BINARY, -42)                                                 \
    XX(CL_INVALID_BUILD_OPTIONS, -43)                                          \
    XX(CL_INVALID_PROGRAM, -44)                                                \
    XX(CL_INVALID_PROGRAM_EXECUTABLE, -45)                                     \
    XX(CL_INVALID_KERNEL_NAME, -46)                                            \
    XX(CL_INVALID_KERNEL_DEFINITION, -47)                                      \
    XX(CL_INVALID_KERNEL, -48)                                                 \
    XX(CL_INVALID_ARG_INDEX, -49)                                              \
    XX(CL_INVALID_ARG_VALUE, -50)                                              \
    XX(CL_INVALID_ARG_SIZE, -51)                                               \
    XX(CL_INVALID_KERNEL_ARGS, -52)                                            \
    XX(CL_INVALID_WORK_DIMENSION, -53)                                         \
    XX(CL_INVALID_WORK_GROUP_SIZE, -54)                                        \
    XX(CL_INVALID_WORK_ITEM_SIZE, -55)                                         \
    XX(CL_INVALID_GLOBAL_OFFSET, -56)                                          \
    XX(CL_INVALID_EVENT_WAIT_LIST, -57)                                        \
    XX(CL_INVALID_EVENT, -58)                                                  \
    XX(CL_INVALID_OPERATION, -59)                                              \
    XX(CL_INVALID_GL_OBJECT, -60)                                              \
    XX(CL_INVALID_BUFFER_SIZE, -61)                                            \
    XX(CL_INVALID_MIP_LEVEL, -62)                                              \
    XX(CL_INVALID_GLOBAL_WORK_SIZE, -63)                                       \
    XX(CL_INVALID_PROPERTY, -64)                                               \
    XX(CL_INVALID_IMAGE_DESCRIPTOR, -65)                                       \
    XX(CL_INVALID_COMPILER_OPTIONS, -66)                                       \
    XX(CL_INVALID_LINKER_OPTIONS, -67)                                         \
    XX(CL_INVALID_DEVICE_PARTITION_COUNT, -68)                                 \
    XX(CL_INVALID_PIPE_SIZE, -69)                                              \
    XX(CL_INVALID_DEVICE_QUEUE, -70)                                           \
    XX(CL_INVALID_SPEC_ID, -71)                                                \
    XX(CL_MAX_SIZE_RESTRICTION_EXCEEDED, -72)

/* An extension code, if the headers define it. */
#define PARA_CL_EXT_CASE(name)                                                 \
    case name:                                                                 \
        return #name;

static const char *extension_name(int32_t code)
{
    switch (code) {
#ifdef CL_INVALID_GL_SHAREGROUP_REFERENCE_KHR
        PARA_CL_EXT_CASE(CL_INVALID_GL_SHAREGROUP_REFERENCE_KHR)
#endif
#ifdef CL_PLATFORM_NOT_FOUND_KHR
        PARA_CL_EXT_CASE(CL_PLATFORM_NOT_FOUND_KHR)
#endif
#ifdef CL_INVALID_D3D10_DEVICE_KHR
        PARA_CL_EXT_CASE(CL_INVALID_D3D10_DEVICE_KHR)
        PARA_CL_EXT_CASE(CL_INVALID_D3D10_RESOURCE_KHR)
        PARA_CL_EXT_CASE(CL_D3D10_RESOURCE_ALREADY_ACQUIRED_KHR)
        PARA_CL_EXT_CASE(CL_D3D10_RESOURCE_NOT_ACQUIRED_KHR)
#endif
#ifdef CL_INVALID_D3D11_DEVICE_KHR
        PARA_CL_EXT_CASE(CL_INVALID_D3D11_DEVICE_KHR)
        PARA_CL_EXT_CASE(CL_INVALID_D3D11_RESOURCE_KHR)
        PARA_CL_EXT_CASE(CL_D3D11_RESOURCE_ALREADY_ACQUIRED_KHR)
        PARA_CL_EXT_CASE(CL_D3D11_RESOURCE_NOT_ACQUIRED_KHR)
#endif
#ifdef CL_INVALID_DX9_MEDIA_ADAPTER_KHR
        PARA_CL_EXT_CASE(CL_INVALID_DX9_MEDIA_ADAPTER_KHR)
        PARA_CL_EXT_CASE(CL_INVALID_DX9_MEDIA_SURFACE_KHR)
        PARA_CL_EXT_CASE(CL_DX9_MEDIA_SURFACE_ALREADY_ACQUIRED_KHR)
        PARA_CL_EXT_CASE(CL_DX9_MEDIA_SURFACE_NOT_ACQUIRED_KHR)
#endif
#ifdef CL_DEVICE_PARTITION_FAILED_EXT
        PARA_CL_EXT_CASE(CL_DEVICE_PARTITION_FAILED_EXT)
        PARA_CL_EXT_CASE(CL_INVALID_PARTITION_COUNT_EXT)
        PARA_CL_EXT_CASE(CL_INVALID_PARTITION_NAME_EXT)
#endif
#ifdef CL_EGL_RESOURCE_NOT_ACQUIRED_KHR
        PARA_CL_EXT_CASE(CL_EGL_RESOURCE_NOT_ACQUIRED_KHR)
        PARA_CL_EXT_CASE(CL_INVALID_EGL_OBJECT_KHR)
#endif
#ifdef CL_INVALID_ACCELERATOR_INTEL
        PARA_CL_EXT_CASE(CL_INVALID_ACCELERATOR_INTEL)
        PARA_CL_EXT_CASE(CL_INVALID_ACCELERATOR_TYPE_INTEL)
        PARA_CL_EXT_CASE(CL_INVALID_ACCELERATOR_DESCRIPTOR_INTEL)
        PARA_CL_EXT_CASE(CL_ACCELERATOR_TYPE_NOT_SUPPORTED_INTEL)
#endif
#ifdef CL_INVALID_VA_API_MEDIA_ADAPTER_INTEL
        PARA_CL_EXT_CASE(CL_INVALID_VA_API_MEDIA_ADAPTER_INTEL)
        PARA_CL_EXT_CASE(CL_INVALID_VA_API_MEDIA_SURFACE_INTEL)
        PARA_CL_EXT_CASE(CL_VA_API_MEDIA_SURFACE_ALREADY_ACQUIRED_INTEL)
        PARA_CL_EXT_CASE(CL_VA_API_MEDIA_SURFACE_NOT_ACQUIRED_INTEL)
#endif
#ifdef CL_COMMAND_TERMINATED_ITSELF_WITH_FAILURE_ARM
        PARA_CL_EXT_CASE(CL_COMMAND_TERMINATED_ITSELF_WITH_FAILURE_ARM)
#endif
#ifdef CL_CONTEXT_TERMINATED_KHR
        PARA_CL_EXT_CASE(CL_CONTEXT_TERMINATED_KHR)
#endif
#ifdef CL_INVALID_COMMAND_BUFFER_KHR
        PARA_CL_EXT_CASE(CL_INVALID_COMMAND_BUFFER_KHR)
        PARA_CL_EXT_CASE(CL_INVALID_SYNC_POINT_WAIT_LIST_KHR)
        PARA_CL_EXT_CASE(CL_INCOMPATIBLE_COMMAND_QUEUE_KHR)
#endif
#ifdef CL_INVALID_MUTABLE_COMMAND_KHR
        PARA_CL_EXT_CASE(CL_INVALID_MUTABLE_COMMAND_KHR)
#endif
#ifdef CL_INVALID_SEMAPHORE_KHR
        PARA_CL_EXT_CASE(CL_INVALID_SEMAPHORE_KHR)
#endif
    default:
        return NULL;
    }
}

const char *para__cl_err_name(int32_t code, char *buf, size_t buf_len)
{
    switch (code) {
#define PARA_CL_NAME_CASE(name, value)                                         \
    case (value):                                                              \
        return #name;
        PARA_CL_STATUS_MAP(PARA_CL_NAME_CASE)
#undef PARA_CL_NAME_CASE
    default:
        break;
    }
    const char *ext = extension_name(code);
    if (ext != NULL)
        return ext;
    if (buf == NULL || buf_len == 0)
        return "CL_UNKNOWN";
    snprintf(buf, buf_len, "CL_UNKNOWN(%d)", (int)code);
    return buf;
}

int para__cl_to_err(cl_int status)
{
    switch (status) {
    case CL_SUCCESS:
        return 0;
    case CL_OUT_OF_HOST_MEMORY:
    case CL_MEM_OBJECT_ALLOCATION_FAILURE:
        return PARA_ENOMEM;
    case CL_COMPILER_NOT_AVAILABLE:
    case CL_BUILD_PROGRAM_FAILURE:
    case CL_COMPILE_PROGRAM_FAILURE:
    case CL_LINKER_NOT_AVAILABLE:
    case CL_LINK_PROGRAM_FAILURE:
    case CL_INVALID_BUILD_OPTIONS:
    case CL_INVALID_COMPILER_OPTIONS:
    case CL_INVALID_LINKER_OPTIONS:
        return PARA_EKERNEL_BUILD;
    case CL_INVALID_KERNEL_NAME:
    case CL_INVALID_KERNEL_DEFINITION:
    case CL_INVALID_ARG_INDEX:
    case CL_INVALID_ARG_VALUE:
    case CL_INVALID_ARG_SIZE:
        return PARA_EINVAL;
    default:
        return PARA_EDEVICE;
    }
}

int para__cl_report(cl_int status, const char *call, const char *func,
                    const char *file, int line, char *msg, size_t msg_len)
{
    char buf[32];
    const char *name = para__cl_err_name(status, buf, sizeof buf);
    /* The called function: the call text up to its argument list. */
    size_t what_len = strcspn(call, "(");
    const char *base = strrchr(file, '/');
    base = base != NULL ? base + 1 : file;
    para__log(1, "opencl: %s (%s:%d): %s -> %s (%d)", func, base, line, call,
              name, (int)status);
    if (msg != NULL && msg_len > 0)
        snprintf(msg, msg_len, "%.*s -> %s (%d)", (int)what_len, call, name,
                 (int)status);
    return para__cl_to_err(status);
}
