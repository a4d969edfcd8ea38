/* libFuzzer target: the spill file decoder, with every built-in filter (the chain is
 * taken from the file, the key is fixed). Input: u32 little-endian object length
 * (what the pool would remember), then the bytes of a spill file. The decoder must
 * return an error or the exact object, never crash, hang or read out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mem_file.h"
#include "store/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    uint32_t len = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
    len &= (1u << 22) - 1;
    mem_file f = {(uint8_t *)(uintptr_t)(data + 4), size - 4, size - 4, 0};
    sp_reader r;
    void *obj = NULL;
    unsigned char key[32];
    memset(key, 0x42, sizeof key); /* make_corpus's key */
    sp_status st = sp__reader_begin(&r, &mem_store, &f, f.len, "fuzz", NULL, key);
    if (st == SP_OK) st = sp_bytes_type.decode(&r, len, &obj);
    if (st == SP_OK) {
        st = sp__reader_finish(&r);
        sp_bytes_type.free(obj);
    }
    sp__reader_cleanup(&r);
    return 0;
}
