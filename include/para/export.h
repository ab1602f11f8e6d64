/* para: symbol visibility and attribute macros shared by the public headers. */
#ifndef PARA_EXPORT_H
#define PARA_EXPORT_H

#if defined(PARA_BUILDING_LIBRARY) && defined(__GNUC__)
#define PARA_API __attribute__((visibility("default")))
#else
#define PARA_API
#endif

#if defined(__GNUC__)
#define PARA_NODISCARD __attribute__((warn_unused_result))
#else
#define PARA_NODISCARD
#endif

#endif /* PARA_EXPORT_H */
