/*
 * dkim_keycache.h - decoded DKIM public keys kept between messages (the
 * executable's d2i_PUBKEY_bio() answers libopendkim from a cache; see
 * dkim_keycache.c for why).
 */
#ifndef RAVELIN_DKIM_KEYCACHE_H
#define RAVELIN_DKIM_KEYCACHE_H

/* dkim_keycache_init - call once before verifying (links the cache in). */
void dkim_keycache_init(void);
/* dkim_keycache_stats - hits and misses so far. */
void dkim_keycache_stats(unsigned long *hits, unsigned long *misses);
/* dkim_keycache_clear - drop every cached key. */
void dkim_keycache_clear(void);

#endif
