/* `spillpool query`: a where, group-by or reduce over CSV files, read lazily. */
#ifndef SP_CLI_QUERY_H
#define SP_CLI_QUERY_H

/* argv: the arguments after "query". Returns the process exit status: 0, 1 (a
 * failure while running, reported), 2 (bad usage, reported). */
int sp_cmd_query(int argc, char **argv);

#include <stdio.h>
/* s[0..n) as a JSON string, quoted and escaped (invalid UTF-8 as U+FFFD). */
void sp_json_string(FILE *f, const char *s, size_t n);

#endif
