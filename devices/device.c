/*
 * Opening a device by selector, over the back-ends of device.h.
 */
#include <stdio.h>
#include <string.h>

#include "device.h"
#include "para/errors.h"

int para__device_open(const char *selector, const para__device_ops **ops,
                      void **dev, char *msg, size_t msg_len)
{
    if (strcmp(selector, "cpu") == 0) {
        *ops = &para__cpu_ops;
        return para__cpu_open(dev, msg, msg_len);
    }
#ifdef PARA_WITH_OPENCL
    para__device *cl = NULL;
    int rc = para__cl_open(selector, &cl, msg, msg_len);
    if (rc == 0) {
        *ops = &para__cl_ops;
        *dev = cl;
    }
    return rc;
#else
    snprintf(msg, msg_len,
             "no device matches \"%s\": para was built without OpenCL "
             "(only \"cpu\" is available)",
             selector);
    return PARA_ENODEV;
#endif
}
