/* Sizes as people write them: "1073741824", "1GiB", "512M", "1.5G". */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "spillpool/pool.h"

typedef struct {
    const char *suffix;
    double mult;
} sp_unit;

static const sp_unit sp_units[] = {
    {"", 1.0},         {"b", 1.0},
    {"k", 1024.0},     {"kib", 1024.0},     {"kb", 1e3},
    {"m", 1048576.0},  {"mib", 1048576.0},  {"mb", 1e6},
    {"g", 1073741824.0}, {"gib", 1073741824.0}, {"gb", 1e9},
    {"t", 1099511627776.0}, {"tib", 1099511627776.0}, {"tb", 1e12},
};

sp_status sp_parse_size(const char *text, uint64_t *out)
{
    SP_RETURN_IF(text == NULL || out == NULL, SP_ERR_INVALID, "size: NULL argument");
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    SP_RETURN_IF(*p == '\0', SP_ERR_INVALID, "size '%s': empty", text);
    SP_RETURN_IF(!isdigit((unsigned char)*p), SP_ERR_INVALID,
                 "size '%s': expected a non-negative number of bytes, e.g. 1073741824 or 1GiB",
                 text);
    /* Integers are parsed exactly; a fraction only with a unit. */
    uint64_t whole = 0;
    int overflow = 0;
    while (isdigit((unsigned char)*p)) {
        unsigned d = (unsigned)(*p++ - '0');
        if (whole > (UINT64_MAX - d) / 10) overflow = 1;
        else whole = whole * 10 + d;
    }
    double frac = 0.0, scale = 0.1;
    int has_frac = 0;
    if (*p == '.') {
        p++;
        SP_RETURN_IF(!isdigit((unsigned char)*p), SP_ERR_INVALID, "size '%s': digits expected after '.'",
                     text);
        while (isdigit((unsigned char)*p)) {
            frac += scale * (*p++ - '0');
            scale /= 10;
            has_frac = 1;
        }
    }
    while (isspace((unsigned char)*p)) p++;
    char unit[8];
    size_t ul = 0;
    while (isalpha((unsigned char)*p) && ul + 1 < sizeof unit) unit[ul++] = (char)*p++;
    unit[ul] = '\0';
    while (isspace((unsigned char)*p)) p++;
    SP_RETURN_IF(*p != '\0', SP_ERR_INVALID,
                 "size '%s': unexpected '%s' (units: B, K, M, G, T, KiB..TiB, KB..TB)", text, p);
    const sp_unit *u = NULL;
    for (size_t i = 0; i < sizeof sp_units / sizeof sp_units[0]; i++)
        if (strcasecmp(unit, sp_units[i].suffix) == 0) u = &sp_units[i];
    SP_RETURN_IF(u == NULL, SP_ERR_INVALID,
                 "size '%s': unknown unit '%s' (units: B, K, M, G, T, KiB..TiB, KB..TB)", text, unit);
    SP_RETURN_IF(overflow, SP_ERR_INVALID, "size '%s': too large", text);
    if (u->mult == 1.0) {
        SP_RETURN_IF(has_frac, SP_ERR_INVALID, "size '%s': a fraction of a byte", text);
        *out = whole;
        return SP_OK;
    }
    if (!has_frac) { /* whole units: exact, however large */
        uint64_t v;
        SP_RETURN_IF(__builtin_mul_overflow(whole, (uint64_t)u->mult, &v), SP_ERR_INVALID, "size '%s': too large",
                     text);
        *out = v;
        return SP_OK;
    }
    double v = ((double)whole + frac) * u->mult;
    SP_RETURN_IF(v >= 18446744073709551615.0, SP_ERR_INVALID, "size '%s': too large", text);
    *out = (uint64_t)(v + 0.5); /* not llround: a long long stops at 2^63 */
    return SP_OK;
}

char *sp_format_size(uint64_t bytes, char *buf, size_t cap)
{
    static const char *names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int i = 0;
    while (v >= 1024.0 && i < 5) {
        v /= 1024.0;
        i++;
    }
    if (i == 0) snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
    else snprintf(buf, cap, "%.2f %s", v, names[i]);
    return buf;
}
