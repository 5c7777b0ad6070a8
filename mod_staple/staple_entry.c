#include <string.h>

#include "staple_entry.h"
#include "staple_util.h"

/* "STPL", version 1, three reserved bytes, fetched_at (8 bytes, big
 * endian, microseconds), DER length (4 bytes, big endian). */
static const unsigned char magic[4] = {'S', 'T', 'P', 'L'};
#define ENTRY_VERSION 1

static void put_be(unsigned char *p, apr_uint64_t v, int n)
{
    int i;

    for (i = n - 1; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static apr_uint64_t get_be(const unsigned char *p, int n)
{
    apr_uint64_t v = 0;
    int i;

    for (i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

apr_size_t staple_entry_encode(unsigned char *out, const unsigned char *der,
                               apr_size_t der_len, apr_time_t fetched_at)
{
    memcpy(out, magic, sizeof(magic));
    out[4] = ENTRY_VERSION;
    out[5] = out[6] = out[7] = 0;
    put_be(out + 8, (apr_uint64_t)fetched_at, 8);
    put_be(out + 16, (apr_uint64_t)der_len, 4);
    memcpy(out + STAPLE_ENTRY_HEADER_LEN, der, der_len);
    return STAPLE_ENTRY_HEADER_LEN + der_len;
}

apr_status_t staple_entry_decode(const unsigned char *buf, apr_size_t len,
                                 const unsigned char **der, apr_size_t *der_len,
                                 apr_time_t *fetched_at, const char **reason)
{
    apr_uint64_t dlen;

    if (len < STAPLE_ENTRY_HEADER_LEN || memcmp(buf, magic, sizeof(magic)) != 0) {
        *reason = "not a mod_staple cache entry";
        return APR_EINVAL;
    }
    if (buf[4] != ENTRY_VERSION) {
        *reason = "cache entry of an unknown version";
        return APR_EINVAL;
    }
    dlen = get_be(buf + 16, 4);
    if (dlen == 0 || dlen > STAPLE_MAX_RESPONSE_LEN ||
        dlen != len - STAPLE_ENTRY_HEADER_LEN) {
        *reason = "cache entry length does not match its header";
        return APR_EINVAL;
    }
    *fetched_at = (apr_time_t)get_be(buf + 8, 8);
    *der = buf + STAPLE_ENTRY_HEADER_LEN;
    *der_len = (apr_size_t)dlen;
    return APR_SUCCESS;
}
