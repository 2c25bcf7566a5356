/*
 * milter.c - ravelin -M (not yet implemented: issue 8).
 *
 * Public: milter_run()
 */

/* System. */
#include <stdio.h>

/* Project. */
#include "config.h"
#include "milter.h"

/* milter_run - refuse clearly until milter mode exists. */
int
milter_run(const char *config_path, struct config *cf)
{
	fprintf(stderr, "%s: milter mode is not implemented in this version\n", config_path);
	config_unref(cf);
	return 1;
}
