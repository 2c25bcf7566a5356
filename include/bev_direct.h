/*
 * bev_direct.h - read a plain socket bufferevent's input without
 * libevent's per-read ioctl(FIONREAD); see bev_direct.c.
 */
#ifndef RAVELIN_BEV_DIRECT_H
#define RAVELIN_BEV_DIRECT_H

#include <stddef.h>

struct bufferevent;
struct bev_direct;

/* bev_direct_new - a reader for bev's socket; input stops at high octets
 * (0: no mark). bev's own reading is disabled. NULL on failure. */
struct bev_direct *bev_direct_new(struct bufferevent *bev, size_t high);
/* bev_direct_free - stop reading; returns NULL. */
struct bev_direct *bev_direct_free(struct bev_direct *d);
/* bev_direct_enable/disable - the owner wants input, or not for now. */
void bev_direct_enable(struct bev_direct *d);
void bev_direct_disable(struct bev_direct *d);
/* bev_direct_check - after consuming input: resume below the mark. */
void bev_direct_check(struct bev_direct *d);

#endif
