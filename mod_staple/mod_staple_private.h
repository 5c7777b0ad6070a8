/*
 * Shared between the httpd glue files of mod_staple.
 */
#ifndef MOD_STAPLE_PRIVATE_H
#define MOD_STAPLE_PRIVATE_H

#include <httpd.h>
#include <http_log.h>

extern module AP_MODULE_DECLARE_DATA staple_module;

APLOG_USE_MODULE(staple);

#define STAPLE_VERSION "0.1.0"

#endif /* MOD_STAPLE_PRIVATE_H */
