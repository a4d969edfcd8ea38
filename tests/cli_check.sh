#!/bin/sh
# The command's JSON carries the keys the issues name: demo (under a bound that
# spills, with a filter chain) and bench filters; query gives the answers worked
# out by hand below, and clear errors. Usage: cli_check.sh SPILLPOOL
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
# small partitions (fewer rows than their pooled column has values) spill and come back
SPILLPOOL_DIR="$dir" SPILLPOOL_MEMORY_BOUND=64KiB "$cli" demo --parts 200 --rows 100 >/dev/null
bench=$(SPILLPOOL_DIR="$dir" "$cli" bench filters --parts 6 --rows 100000 --chains 'plain;zstd;lz4,encrypt' --json)
need "$bench" chain page_cache disk_bytes spill_mb_s restore_mb_s seconds
case "$bench" in \[*\]) ;; *) echo "bench --json is not an array: $bench" >&2; exit 1 ;; esac
# every chain with the page cache kept, then dropped
[ "$(printf '%s' "$bench" | grep -o '"chain"' | wc -l)" -eq 6 ] || { echo "want 6 rows: $bench" >&2; exit 1; }
[ "$(printf '%s' "$bench" | grep -o '"page_cache":"drop"' | wc -l)" -eq 3 ] || { echo "want 3 drop rows: $bench" >&2; exit 1; }
bench=$(SPILLPOOL_DIR="$dir" "$cli" bench filters --parts 4 --rows 100000 --chains 'plain;lz4' --page-cache drop --json)
[ "$(printf '%s' "$bench" | grep -o '"page_cache":"drop"' | wc -l)" -eq 2 ] || { echo "want 2 drop rows only: $bench" >&2; exit 1; }
if SPILLPOOL_PAGE_CACHE=sometimes "$cli" config 2>"$dir/err"; then echo "a bad page cache mode was accepted" >&2; exit 1; fi
grep -q "SPILLPOOL_PAGE_CACHE" "$dir/err" || { cat "$dir/err" >&2; exit 1; }
lazy=$(TMPDIR="$dir" SPILLPOOL_DIR="$dir" "$cli" bench lazy --files 300 --runs 2 --json)
need "$lazy" files ns_per_file files_opened
case "$lazy" in *'"files_opened":24,'*) ;; *) echo "one day must open 24 files: $lazy" >&2; exit 1 ;; esac
csv=$(TMPDIR="$dir" "$cli" bench csv --mb 2 --runs 1 --json)
need "$csv" wc_l_seconds parse_seconds parse_mb_s parse_vs_wc_l column_bytes touch_seconds read_touch_vs_wc_l
# bad input: a clear message and a failing status
if SPILLPOOL_DIR="$dir" SPILLPOOL_FILTERS=zstd:99 "$cli" demo --parts 1 --rows 10 2>"$dir/err"; then
    echo "a bad chain was accepted" >&2; exit 1
fi
grep -q "SPILLPOOL_FILTERS" "$dir/err" || { cat "$dir/err" >&2; exit 1; }
# query: three small files of the same columns, quoted fields, a quoted comma
q="$dir/q"
mkdir -p "$q/data" "$q/empty" "$q/bad"
printf 'sym,price,qty\nAAA,10.5,2\n"BBB",20,1\n"C,C",7.25,4\n' >"$q/data/a.csv"
printf 'sym,price,qty\n"AAA",12.5,3\nBBB,19.75,5\n' >"$q/data/b.csv"
printf 'sym,price,qty\n"C,C",8,1\nAAA,11,"4"\nDDD,3.5,10\n' >"$q/data/c.csv"
printf 'not csv\n' >"$q/data/notes.txt"
cp "$q/data/a.csv" "$q/bad/a.csv"
printf 'sym,price,volume\nAAA,1.5,2\n' >"$q/bad/b.csv"
query() { SPILLPOOL_DIR="$dir" SPILLPOOL_MEMORY_BOUND=1MiB "$cli" query "$@"; }
same() { # same WHAT GOT WANT
    [ "$2" = "$3" ] || { printf '%s: got\n%s\nwant\n%s\n' "$1" "$2" "$3" >&2; exit 1; }
}
nostats() { printf '%s' "$1" | sed 's/,"stats":.*//'; } # the stats vary from run to run
# AAA: 10.5x2 12.5x3 11x4; BBB: 20x1 19.75x5; C,C: 7.25x4 8x1; DDD: 3.5x10
out=$(query "$q/data" --group-by sym --agg count --agg sum:qty --agg max:price)
same "group-by" "$out" "$(printf '%s\n' \
    'sym  count  sum(qty)  max(price)' \
    'AAA      3         9        12.5' \
    'BBB      2         6          20' \
    'C,C      2         5           8' \
    'DDD      1        10         3.5' \
    '4 groups from 3 files')"
out=$(query "$q/data/a.csv" "$q/data/b.csv" "$q/data/c.csv" --group-by sym --agg count --agg sum:qty \
    --agg max:price --json)
need "$out" stats memory hits
same "group-by --json" "$(nostats "$out")" '{"files":3,"groups":[{"sym":"AAA","count":3,"sum(qty)":9,"max(price)":12.5},'\
'{"sym":"BBB","count":2,"sum(qty)":6,"max(price)":20},{"sym":"C,C","count":2,"sum(qty)":5,"max(price)":8},'\
'{"sym":"DDD","count":1,"sum(qty)":10,"max(price)":3.5}]'
# reduce: 8 rows, qty 2+1+4+3+5+1+4+10, prices summing to 92.5
out=$(query "$q/data" --agg count --agg sum:qty --agg min:price --agg mean:price)
same "reduce" "$out" "$(printf '%s\n' 'count = 8' 'sum(qty) = 30' 'min(price) = 3.5' 'mean(price) = 11.5625')"
out=$(query "$q/data" --json)
need "$out" stats
same "reduce --json" "$(nostats "$out")" '{"files":3,"result":{"count":8}'
# where: a string and a number comparison joined by and
out=$(query "$q/data" --where "sym > 'B' and qty < 5" --agg count --agg sum:qty)
same "where" "$out" "$(printf '%s\n' 'count = 3' 'sum(qty) = 6')"
out=$(query "$q/data" --where "sym != 'AAA' and price >= 8" --group-by sym --json)
same "where, group-by" "$(nostats "$out")" '{"files":3,"groups":[{"sym":"BBB","count":2},{"sym":"C,C","count":1}]'
out=$(query "$q/data" --where "sym = 'C,C' and qty > 1" --agg sum:qty)
same "where, quoted comma" "$out" 'sum(qty) = 4'
# double keys: -0 and 0 are one group, empty fields (NaN) one group, sorted last
printf 'x,v\n3,1\n,1\n1,1\n-0,1\n2,1\n5,1\n,1\n0.5,1\n4,1\n0,1\n' >"$q/keys.csv"
out=$(query "$q/keys.csv" --group-by x)
same "double keys" "$out" "$(printf '%s\n' '  x  count' '  0      2' '0.5      1' '  1      1' '  2      1' \
    '  3      1' '  4      1' '  5      1' 'nan      2' '8 groups from 1 file')"
# a sum, min or mean of no values (only NaNs here) is nan, with or without group-by
printf 'k,d\na,1.5\nb,\nb,\n' >"$q/nan.csv"
out=$(query "$q/nan.csv" --where "k = 'b'" --agg sum:d --agg min:d --agg mean:d --agg count)
same "reduce of NaNs" "$out" "$(printf '%s\n' 'sum(d) = nan' 'min(d) = nan' 'mean(d) = nan' 'count = 2')"
out=$(query "$q/nan.csv" --where "k = 'b'" --group-by k --agg sum:d)
same "group-by of NaNs" "$out" "$(printf '%s\n' 'k  sum(d)' 'b     nan' '1 group from 1 file')"
out=$(query "$q/nan.csv" --where "k = 'b'" --agg sum:d --json)
same "reduce of NaNs --json" "$(nostats "$out")" '{"files":1,"result":{"sum(d)":null}'
# a key named like an aggregate: the aggregate is numbered
printf 'count,v\na,1\nb,2\na,3\n' >"$q/count.csv"
out=$(query "$q/count.csv" --group-by count)
same "key named count" "$out" "$(printf '%s\n' 'count  count#1' 'a            2' 'b            1' \
    '2 groups from 1 file')"
# an int64 sum past the range fails; max and mean of the same values do not
printf 'k,v\na,9223372036854775807\na,1\n' >"$q/big.csv"
out=$(query "$q/big.csv" --group-by k --agg max:v --agg mean:v)
same "max, mean past int64" "$out" "$(printf '%s\n' 'k               max(v)                mean(v)' \
    'a  9223372036854775807  4.611686018427388e+18' '1 group from 1 file')"
# aggregate names are never cut: two long ones stay apart, in reduce and group-by
L=$(printf 'c%.0s' $(seq 1 120))
printf 'k,%s1,%s2\na,1,2\n' "$L" "$L" >"$q/long.csv"
out=$(query "$q/long.csv" --agg "sum:${L}1" --agg "sum:${L}2")
same "long names" "$out" "$(printf '%s\n' "sum(${L}1) = 1" "sum(${L}2) = 2")"
out=$(query "$q/long.csv" --group-by k --agg "sum:${L}1" --agg "sum:${L}2" --json)
case "$out" in *"\"sum(${L}1)\":1,\"sum(${L}2)\":2"*) ;; *) echo "long names, group-by: $out" >&2; exit 1 ;; esac
# an integer mean is rounded once, from the exact sum: 9007199254740993.5 is ...994
printf 'x\n9007199254740993\n9007199254740994\n' >"$q/mean.csv"
out=$(query "$q/mean.csv" --agg mean:x)
same "exact mean" "$out" 'mean(x) = 9007199254740994'
# doubles print in full: the shortest form that reads back exactly
printf 'p\n12345678901.25\n0.5\n' >"$q/prec.csv"
out=$(query "$q/prec.csv" --agg sum:p)
same "full doubles" "$out" 'sum(p) = 12345678901.75'
# errors: a failing status and a message naming the problem
qfail() { # qfail STATUS TEXT ARGS...: the query exits with STATUS, TEXT in its message
    want=$1 text=$2
    shift 2
    got=0
    query "$@" >"$dir/out" 2>"$dir/err" || got=$?
    [ "$got" -eq "$want" ] || { echo "query $*: status $got, want $want" >&2; cat "$dir/err" >&2; exit 1; }
    grep -qF -- "$text" "$dir/err" || { echo "query $*: no '$text' in:" >&2; cat "$dir/err" >&2; exit 1; }
}
qfail 2 "--delim given twice" "$q/big.csv" --delim ';' --delim ','
qfail 2 "--types: column 'v' given twice" "$q/big.csv" --types 'v:double,v:string' --agg sum:v
qfail 1 "column 'nope' does not exist" "$q/data" --where "nope = 1"
qfail 1 "column 'nope' does not exist" "$q/data" --group-by nope
qfail 1 "column 'nope' does not exist" "$q/data" --agg sum:nope
qfail 1 "column 'sym' is a string" "$q/data" --where "sym = 1"
qfail 1 "sum of column 'sym'" "$q/data" --agg sum:sym
qfail 1 "$q/bad/b.csv" "$q/bad" --group-by sym
qfail 1 "$q/data/missing.csv" "$q/data" "$q/data/missing.csv"
qfail 1 "$q/empty" "$q/empty"
qfail 2 "--frob" "$q/data" --frob
qfail 2 "aggregate 'median:qty'" "$q/data" --agg median:qty
qfail 1 "sum of column 'v' in the group k = 'a' overflows int64" "$q/big.csv" --group-by k --agg sum:v
qfail 1 "sum of column 'v' overflows int64" "$q/big.csv" --agg sum:v
# a later file's value that does not fit names the file the types came from
mkdir -p "$q/types"
printf 'k,v\na,1\n' >"$q/types/a.csv"
printf 'k,v\nc,1.5\n' >"$q/types/c.csv"
qfail 1 "(the column's type comes from $q/types/a.csv)" "$q/types"
same "--types" "$(query "$q/types" --types v:double --agg sum:v 2>/dev/null)" "sum(v) = 2.5"
qfail 2 "--types: column 'w' does not exist" "$q/types" --types w:double
qfail 2 "--types: 'float' for column 'v'" "$q/types" --types v:float
# config: the user's text escaped in JSON
cfg=$(SPILLPOOL_DIR="$dir/a\"b" "$cli" config --json)
case "$cfg" in *'a\"b"'*) ;; *) echo "config --json did not escape the quote: $cfg" >&2; exit 1 ;; esac
# config refuses what opening a pool would
if SPILLPOOL_MEMORY_BOUND=1MiB SPILLPOOL_SPILL_AHEAD=1GiB "$cli" config 2>"$dir/err"; then
    echo "config accepted a spill-ahead over the bound" >&2; exit 1
fi
grep -q "spill-ahead" "$dir/err" || { cat "$dir/err" >&2; exit 1; }
# output that cannot be written is a failure
if [ -w /dev/full ]; then
    if "$cli" config >/dev/full 2>"$dir/err"; then echo "output lost to a full disk, but exit 0" >&2; exit 1; fi
    grep -q "writing the output" "$dir/err" || { cat "$dir/err" >&2; exit 1; }
    if query "$q/data" --group-by sym >/dev/full 2>"$dir/err"; then echo "query output lost, but exit 0" >&2; exit 1; fi
    [ "$(grep -c "writing the output" "$dir/err")" -eq 1 ] || { echo "said more than once:" >&2; cat "$dir/err" >&2; exit 1; }
fi
# bench filters: the plain run is the baseline, added when not asked for
bench=$(SPILLPOOL_DIR="$dir" "$cli" bench filters --parts 4 --rows 10000 --chains 'zstd' --page-cache keep --json)
case "$bench" in '[{"chain":"plain"'*) ;; *) echo "plain is not the first row: $bench" >&2; exit 1 ;; esac
if "$cli" bench filters --chains 2>"$dir/err"; then echo "--chains without a value was accepted" >&2; exit 1; fi
grep -q "needs a value" "$dir/err" || { cat "$dir/err" >&2; exit 1; }
echo ok
