/*
 * The kernels shipped in kernels/, embedded at build time
 * (kernels/embed.cmake), served by name.
 */
#include <string.h>

#include "para.h"
#include "para_kernels.h"

typedef struct builtin_kernel {
    const char *name;
    const char *source;
} builtin_kernel;

static const builtin_kernel builtin_kernels[] = {
    {"mandelbrot", para_kernel_mandelbrot_src},
    {"mandelbrot_fixed", para_kernel_mandelbrot_fixed_src},
    {"empty", para_kernel_empty_src},
    {"copy", para_kernel_copy_src},
};

const char *para_kernel_source(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof builtin_kernels / sizeof *builtin_kernels;
         i++)
        if (strcmp(builtin_kernels[i].name, name) == 0)
            return builtin_kernels[i].source;
    return NULL;
}
