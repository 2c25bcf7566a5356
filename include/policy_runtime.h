/*
 * policy_runtime.h - the long-lived objects behind the checks: resolver,
 * SPF/DKIM/DMARC library handles, the rate-limit store; and the startup
 * probe of the backend's capabilities.
 */
#ifndef RAVELIN_POLICY_RUNTIME_H
#define RAVELIN_POLICY_RUNTIME_H

#include <stddef.h>

struct server;
struct config;
struct evbuffer;

/* policy_runtime_start - create them from the current configuration. */
int policy_runtime_start(struct server *srv, char *err, size_t errlen);
/* policy_runtime_reload - a new configuration: refuse what cannot change live. */
int policy_runtime_reload(struct server *srv, struct config *cf, char *err, size_t errlen);
void policy_runtime_stop(struct server *srv);
/* policy_runtime_probe_backend - learn the first backend's EHLO keywords. */
void policy_runtime_probe_backend(struct server *srv);
/* For the stats socket. */
int policy_runtime_rl_show(void *arg, const char *key, struct evbuffer *out);
int policy_runtime_rl_clear(void *arg, const char *key, struct evbuffer *out);

#endif
