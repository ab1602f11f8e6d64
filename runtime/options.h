/*
 * Options (api layer, options.c): attributes and PARA_* variables, checked.
 */
#ifndef PARA_OPTIONS_H
#define PARA_OPTIONS_H

#include <stddef.h>

#include "para.h"
#include "scheduler.h"

/* Options (options.c): PARA_* variables that do not parse, and attr fields
 * out of range, as PARA_EINVAL with the variable (or field) and its
 * accepted values named in @p msg. */
int para__options_check_env(char *msg, size_t msg_len);
int para__options_check_attr(const para_runtime_attr_t *a, char *msg,
                             size_t msg_len);
/* PARA_MIXED, checked by para__options_check_env(). */
para__mixed_mode para__options_mixed(void);
/* PARA_PINNED: -1 auto, 1 on, 0 off (device_node.c). */
int para__options_pinned(void);

#endif /* PARA_OPTIONS_H */
