/*
 * The record kept for a response in the shared cache: a small header with
 * the time it was fetched, then the DER response as the responder sent it.
 * Whatever decodes here is still untrusted: the DER must be verified.
 */
#ifndef STAPLE_ENTRY_H
#define STAPLE_ENTRY_H

#include <apr_pools.h>
#include <apr_time.h>

/** Bytes before the DER in an encoded entry. */
#define STAPLE_ENTRY_HEADER_LEN 20

/**
 * Encode a response for the cache.
 * @param out buffer of at least STAPLE_ENTRY_HEADER_LEN + der_len bytes
 * @return the encoded length
 */
apr_size_t staple_entry_encode(unsigned char *out, const unsigned char *der,
                               apr_size_t der_len, apr_time_t fetched_at);

/**
 * Decode a cache record. The DER points into buf.
 * @return APR_SUCCESS, or APR_EINVAL with a reason when the record is not
 *         one of ours (wrong magic, version, or length)
 */
apr_status_t staple_entry_decode(const unsigned char *buf, apr_size_t len,
                                 const unsigned char **der, apr_size_t *der_len,
                                 apr_time_t *fetched_at, const char **reason);

#endif /* STAPLE_ENTRY_H */
