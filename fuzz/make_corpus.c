/* Writes a seed corpus for fuzz_frame: real spill files of a few sizes under several
 * filter chains, each prefixed with its object length. Usage: make_corpus DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spillpool/spillpool.h"

static int die(const char *what)
{
    fprintf(stderr, "make_corpus: %s: %s\n", what, sp_last_error());
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    const size_t sizes[] = {0, 1, 100, 5000, 20000}; /* 20000: 32-bit codes, which lz4 and zstd shuffle */
    const char *chains[] = {"", "zstd", "lz4", "gzip", "encrypt:xchacha20", "zstd,encrypt:xchacha20", "lz4,gzip"};
    unsigned char key[32];
    memset(key, 0x42, sizeof key); /* the fuzz target's key */
    sp_config c;
    sp_config_default(&c);
    char tmp[] = "/tmp/sp-corpus-XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    c.dir = tmp;
    c.memory_bound = 1 << 20;
    c.spill_ahead = 0;
    c.policy = SP_POLICY_LRU;
    c.key = key;
    for (size_t j = 0; j < sizeof chains / sizeof chains[0]; j++)
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        c.filters = chains[j];
        sp_pool *p;
        if (sp_pool_open(&p, &c) != SP_OK) die("open");
        sp_bytes *a = sp_bytes_new(sizes[i]);
        for (size_t k = 0; k < sizes[i]; k++)
            a->data[k] = sizes[i] == 20000 ? (unsigned char)(k % 4 ? 0 : k * 2654435761u >> 24)
                                           : (unsigned char)(k % 13 * 7);
        sp_ref ra;
        sp_put_options keep = {.tag = "seed", .retain = 1};
        if (sp_put(p, a, &sp_bytes_type, &keep, &ra) != SP_OK) die("put");
        sp_ref_info info;
        sp_ref_query(p, ra, &info);
        if (sp_release(p, ra) != SP_OK) die("release"); /* a retained object is written */
        FILE *in = fopen(info.path, "rb");
        char out_path[4096];
        snprintf(out_path, sizeof out_path, "%s/seed-%zu-%zu", argv[1], j, sizes[i]);
        FILE *out = fopen(out_path, "wb");
        if (!in || !out) die(info.path);
        unsigned char hdr[4] = {(unsigned char)sizes[i], (unsigned char)(sizes[i] >> 8), 0, 0};
        fwrite(hdr, 1, 4, out);
        int ch;
        while ((ch = fgetc(in)) != EOF) fputc(ch, out);
        fclose(in);
        fclose(out);
        remove(info.path);
        sp_pool_close(p);
    }
    remove(tmp);
    return 0;
}
