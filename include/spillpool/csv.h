/* spillpool CSV: a loader that turns CSV bytes into typed columns.
 *
 * RFC 4180: fields separated by a delimiter (default ','), records by "\n" or
 * "\r\n"; a field in double quotes may hold the delimiter, quotes (doubled) and line
 * breaks. A UTF-8 byte order mark at the start is skipped. The first record names
 * the columns unless the options say there is no header (then they are c1, c2, ...,
 * as is a column whose header field is empty: c<position>, or c<position>_2, ... when
 * the header has that name too); two columns of one name are an error. Each column is int64, double, or string; strings are stored
 * dictionary-coded (a code per row into a table of distinct values, like the
 * article's PooledArray). Types are inferred from the data (int64 if every value is
 * an integer that fits, else double if every value is a number and every integer
 * among them is exact as a double, at most 2^53 in magnitude, else string: no
 * inferred type changes a value) unless a schema is given, in which case a value
 * that does not fit is an error (a schema's double takes any number within a double's
 * range, rounded). A number is
 * decimal: [+-]digits[.digits][(e|E)[+-]digits], with a digit before or after the
 * point ("nan", "inf", hex and spaces are text). An empty value (unquoted or "") is
 * a missing number, NaN, whether the column's type is inferred (a column of
 * integers with one becomes double) or given by a schema; in an int64 column of a
 * schema it is an error, as an int64 has no missing value.
 *
 * Errors name the source, the line (1-based, counting line breaks inside quotes),
 * the field and the byte column (counted after a byte order mark): unterminated
 * quote, a record with the wrong number of fields, a value that does not fit the
 * schema's type, an empty file. A repeated column name is named with both columns.
 */
#ifndef SPILLPOOL_CSV_H
#define SPILLPOOL_CSV_H

#include <stddef.h>
#include <stdint.h>
#include "pool.h"
#include "table.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_csv_options {
    char delim;                /* 0: ',' */
    int no_header;             /* columns are then named c1, c2, ... */
    const sp_col_type *schema; /* NULL: infer; else ncols types */
    uint32_t schema_cols;
    /* For messages: where the schema came from (say, the file it was inferred from),
     * named when a value does not fit its column's type. NULL: not named. */
    const char *schema_from;
} sp_csv_options;

/* Parse len bytes of CSV. `what` names the source in messages. Errors:
 * SP_ERR_CORRUPT (malformed CSV, a value that does not fit, an empty file) with the
 * line, field and column, or a header that repeats a name, SP_ERR_NOMEM. */
sp_status sp_csv_parse(const char *buf, size_t len, const sp_csv_options *opt, const char *what,
                       sp_table **out);

/* A loader for sp_put_lazy (and a type for sp_put): decode parses CSV from a source,
 * or reads back the binary columns that encode wrote when the table was spilled.
 * sp_csv_type uses the default options; sp_csv_loader makes one with others (opt
 * must outlive every use of the type). */
extern const sp_type sp_csv_type;
void sp_csv_loader(const sp_csv_options *opt, sp_type *out);

#ifdef __cplusplus
}
#endif
#endif
