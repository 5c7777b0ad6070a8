/*
 * libFuzzer target: the input is a DER OCSP response, as it comes from a
 * responder, the shared cache or a StapleStore file, checked by
 * staple_ocsp_check() for the fixed certificate and issuer of fuzz_pki.h.
 *
 * Seeds: t/fuzz/corpus/ocsp_check (t/fuzz/mkseeds), among them responses
 * that verify (good, revoked, delegated responder) so that mutations start
 * past the signature check.
 */
#include "fuzz_common.h"

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
    fuzz_check(data, size);
    return 0;
}
