/* Error names and messages, generated from PARA_ERRNO_MAP; versions. */
#include "para/errors.h"
#include "para/version.h"

const char *para_strerror(int err)
{
    if (err == 0)
        return "success";
    switch (err) {
#define PARA_ERR_MSG_CASE(name, value, msg)                                    \
    case (value):                                                              \
        return msg;
        PARA_ERRNO_MAP(PARA_ERR_MSG_CASE)
#undef PARA_ERR_MSG_CASE
    default:
        return "unknown error";
    }
}

const char *para_err_name(int err)
{
    if (err == 0)
        return "PARA_OK";
    switch (err) {
#define PARA_ERR_NAME_CASE(name, value, msg)                                   \
    case (value):                                                              \
        return "PARA_" #name;
        PARA_ERRNO_MAP(PARA_ERR_NAME_CASE)
#undef PARA_ERR_NAME_CASE
    default:
        return "PARA_EUNKNOWN";
    }
}

unsigned para_version(void)
{
    return PARA_VERSION_HEX;
}

unsigned para_api_version(void)
{
    return PARA_API_VERSION;
}
