/* para: library and API versions (detect a header/library mismatch). */
#ifndef PARA_VERSION_H
#define PARA_VERSION_H

#include "para/export.h"

#define PARA_VERSION_MAJOR 0
#define PARA_VERSION_MINOR 2
#define PARA_VERSION_PATCH 0
/* "0.2.0": the three numbers above as a string literal. */
#define PARA_VERSION_STRING                                                    \
    PARA__VERSION_STR(PARA_VERSION_MAJOR)                                      \
    "." PARA__VERSION_STR(PARA_VERSION_MINOR) "." PARA__VERSION_STR(           \
        PARA_VERSION_PATCH)
#define PARA__VERSION_STR(x) PARA__VERSION_STR2(x)
#define PARA__VERSION_STR2(x) #x
#define PARA_VERSION_HEX                                                       \
    ((PARA_VERSION_MAJOR << 16) | (PARA_VERSION_MINOR << 8) |                  \
     PARA_VERSION_PATCH)
/* Bumped whenever a public struct or signature changes. */
#define PARA_API_VERSION 3

#ifdef __cplusplus
extern "C" {
#endif

/** @brief PARA_VERSION_HEX of the library actually linked. @note Any thread. */
PARA_API unsigned para_version(void);

/** @brief PARA_API_VERSION of the library actually linked. @note Any thread. */
PARA_API unsigned para_api_version(void);

#ifdef __cplusplus
}
#endif

#endif /* PARA_VERSION_H */
