/* `spillpool inspect`: a spill file's layout, or its frames' payloads. */
#ifndef SP_CLI_INSPECT_H
#define SP_CLI_INSPECT_H
#include <stdint.h>

/* Returns the process exit status. */
int sp_inspect(const char *path, int payload);

#endif
