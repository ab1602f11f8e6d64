/* para: symbol visibility and attribute macros shared by the public headers. */
#ifndef PARA_EXPORT_H
#define PARA_EXPORT_H

/*
 * PARA_API marks the functions of the public API. libpara is compiled with
 * hidden visibility, so these are the only symbols libpara.so exports
 * (tests/exports.sh checks it). Programs see the same default visibility in
 * the declarations, so a caller that compiles its own code with hidden
 * visibility (-fvisibility=hidden, #pragma GCC visibility push(hidden))
 * still links with libpara's symbols.
 */
#if defined(__GNUC__)
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
