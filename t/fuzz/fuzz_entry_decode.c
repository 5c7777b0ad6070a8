/*
 * libFuzzer target: the input is a record read from the shared cache
 * (shmcb, memcache, redis: other processes, other hosts). It goes through
 * staple_entry_decode() and, when that accepts it, the DER inside through
 * staple_ocsp_check() for the fixed certificate of fuzz_pki.h, as mod_staple
 * does with cache entries.
 *
 * Seeds: t/fuzz/corpus/entry_decode (t/fuzz/mkseeds).
 */
#include "fuzz_common.h"
#include "staple_entry.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_init_apr();
    fuzz_init_cert();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const unsigned char *der = NULL, *der2 = NULL;
    apr_size_t der_len = 0, der_len2 = 0, len;
    apr_time_t fetched_at = 0, fetched_at2 = 0;
    const char *reason = NULL;
    unsigned char *again;

    if (staple_entry_decode(data, size, &der, &der_len, &fetched_at, &reason) !=
        APR_SUCCESS) {
        FUZZ_ASSERT(reason != NULL && reason[0] != '\0');
        fuzz_feature(0x200u, reason);
        if (fuzz_verbose) {
            fprintf(stderr, "fuzz: entry: %s\n", reason);
        }
        return 0;
    }
    /* The DER is all of the record after the header, within the input. */
    FUZZ_ASSERT(size >= STAPLE_ENTRY_HEADER_LEN);
    FUZZ_ASSERT(der == data + STAPLE_ENTRY_HEADER_LEN);
    FUZZ_ASSERT(der_len > 0 && der_len == size - STAPLE_ENTRY_HEADER_LEN);
    FUZZ_ASSERT(der_len <= STAPLE_MAX_RESPONSE_LEN);

    /* Encoding what was decoded gives a record that decodes the same. */
    again = malloc(STAPLE_ENTRY_HEADER_LEN + der_len);
    FUZZ_ASSERT(again != NULL);
    len = staple_entry_encode(again, der, der_len, fetched_at);
    FUZZ_ASSERT(len == size);
    FUZZ_ASSERT(staple_entry_decode(again, len, &der2, &der_len2, &fetched_at2,
                                    &reason) == APR_SUCCESS);
    FUZZ_ASSERT(der_len2 == der_len && fetched_at2 == fetched_at);
    FUZZ_ASSERT(memcmp(der2, der, der_len) == 0);
    /* only the three reserved bytes may differ */
    FUZZ_ASSERT(memcmp(again, data, 5) == 0);
    FUZZ_ASSERT(memcmp(again + 8, data + 8, len - 8) == 0);
    free(again);

    if (fuzz_verbose) {
        fprintf(stderr,
                "fuzz: entry: %" APR_SIZE_T_FMT
                " bytes of DER, fetched at %" APR_TIME_T_FMT "\n",
                der_len, fetched_at);
    }
    fuzz_check(der, der_len);
    return 0;
}
