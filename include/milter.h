/*
 * milter.h - ravelin -M: the policy engine behind libmilter.
 */
#ifndef RAVELIN_MILTER_H
#define RAVELIN_MILTER_H

struct config;

/* milter_run - register with libmilter and serve until stopped. */
int milter_run(const char *config_path, struct config *cf);

#endif
