#!/bin/sh
# The command's JSON carries the keys the issues name: demo (under a bound that
# spills, with a filter chain) and bench filters. Usage: cli_check.sh SPILLPOOL
set -eu
cli=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
need() { # need JSON KEY...
    out=$1; shift
    for k in "$@"; do
        case "$out" in *"\"$k\""*) ;; *) echo "missing key $k in: $out" >&2; exit 1 ;; esac
    done
}
demo=$(SPILLPOOL_DIR="$dir" SPILLPOOL_MEMORY_BOUND=4MiB SPILLPOOL_FILTERS=lz4 "$cli" demo --parts 6 --rows 100000 --json)
need "$demo" memory used bound disk policy hits misses evictions bytes_spilled bytes_restored checksum seconds \
    bytes_before_filters bytes_after_filters compression_ratio filters
plain=$(SPILLPOOL_DIR="$dir" SPILLPOOL_MEMORY_BOUND=4MiB "$cli" demo --parts 6 --rows 100000 --json)
# the checksum depends on the data only, not on bounds or filters
sum() { printf '%s' "$1" | sed 's/.*"checksum":"\([0-9a-f]*\)".*/\1/'; }
[ "$(sum "$demo")" = "$(sum "$plain")" ] || { echo "checksums differ: $demo / $plain" >&2; exit 1; }
bench=$(SPILLPOOL_DIR="$dir" "$cli" bench filters --parts 6 --rows 100000 --chains 'plain;zstd;lz4,encrypt' --json)
need "$bench" chain disk_bytes spill_mb_s restore_mb_s seconds
case "$bench" in \[*\]) ;; *) echo "bench --json is not an array: $bench" >&2; exit 1 ;; esac
[ "$(printf '%s' "$bench" | grep -o '"chain"' | wc -l)" -eq 3 ] || { echo "want 3 rows: $bench" >&2; exit 1; }
lazy=$(TMPDIR="$dir" SPILLPOOL_DIR="$dir" "$cli" bench lazy --files 300 --runs 2 --json)
need "$lazy" files ns_per_file files_opened
case "$lazy" in *'"files_opened":24,'*) ;; *) echo "one day must open 24 files: $lazy" >&2; exit 1 ;; esac
csv=$(TMPDIR="$dir" "$cli" bench csv --mb 2 --runs 1 --json)
need "$csv" wc_l_seconds parse_seconds parse_mb_s parse_vs_wc_l
# bad input: a clear message and a failing status
if SPILLPOOL_DIR="$dir" SPILLPOOL_FILTERS=zstd:99 "$cli" demo --parts 1 --rows 10 2>"$dir/err"; then
    echo "a bad chain was accepted" >&2; exit 1
fi
grep -q "SPILLPOOL_FILTERS" "$dir/err" || { cat "$dir/err" >&2; exit 1; }
echo ok
