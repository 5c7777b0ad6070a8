/*
 * StapleEventCmd: the program run for each event the registry reports,
 * with the event, the certificate's id, its subject and a detail appended
 * to its arguments. Runs in the refresher's process, never in a handshake.
 */
#include <signal.h>

#include <apr_strings.h>
#include <apr_thread_proc.h>

#include <httpd.h>
#include <http_log.h>

#include "mod_staple_private.h"

/* A program still running after this long is killed. */
#define STAPLE_EVENT_TIMEOUT apr_time_from_sec(60)

typedef struct {
    apr_pool_t *pool;
    apr_proc_t proc;
    apr_time_t started;
    const char *what;
} event_proc_t;

struct staple_events_t {
    apr_pool_t *pool;
    server_rec *s;
    const apr_array_header_t *argv; /* StapleEventCmd, NULL: none */
    apr_array_header_t *procs;      /* event_proc_t *, running */
};

staple_events_t *staple_events_make(apr_pool_t *pool, server_rec *s,
                                    const apr_array_header_t *argv)
{
    staple_events_t *ev = apr_pcalloc(pool, sizeof(*ev));

    ev->pool = pool;
    ev->s = s;
    ev->argv = argv;
    ev->procs = apr_array_make(pool, 4, sizeof(event_proc_t *));
    return ev;
}

static void reap(staple_events_t *ev, apr_time_t now)
{
    int i;

    for (i = 0; i < ev->procs->nelts; i++) {
        event_proc_t *ep = APR_ARRAY_IDX(ev->procs, i, event_proc_t *);
        apr_exit_why_e why;
        int code;

        if (apr_proc_wait(&ep->proc, &code, &why, APR_NOWAIT) != APR_CHILD_DONE) {
            if (now - ep->started < STAPLE_EVENT_TIMEOUT) {
                continue;
            }
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ev->s,
                         "StapleEventCmd %s still runs after %s: killed", ep->what,
                         staple_fmt_duration(ep->pool, now - ep->started));
            apr_proc_kill(&ep->proc, SIGKILL);
            apr_proc_wait(&ep->proc, &code, &why, APR_WAIT);
        } else {
            ap_log_error(APLOG_MARK,
                         (why == APR_PROC_EXIT && code == 0) ? APLOG_INFO : APLOG_WARNING,
                         0, ev->s, "StapleEventCmd %s %s %d", ep->what,
                         why == APR_PROC_EXIT ? "exited with status" : "died of signal",
                         code);
        }
        apr_pool_destroy(ep->pool);
        /* move the last one here */
        APR_ARRAY_IDX(ev->procs, i, event_proc_t *) =
            APR_ARRAY_IDX(ev->procs, ev->procs->nelts - 1, event_proc_t *);
        ev->procs->nelts--;
        i--;
    }
}

static void start(staple_events_t *ev, const staple_event_t *e)
{
    const apr_array_header_t *cmd = ev->argv;
    event_proc_t *ep;
    apr_procattr_t *attr;
    const char **argv;
    apr_pool_t *p;
    apr_status_t rv;
    int i;

    apr_pool_create(&p, ev->pool);
    apr_pool_tag(p, "staple_event");
    ep = apr_pcalloc(p, sizeof(*ep));
    ep->pool = p;
    ep->started = apr_time_now();
    ep->what = apr_psprintf(p, "%s for %s", staple_event_name(e->event), e->subject);
    argv = apr_pcalloc(p, sizeof(char *) * (apr_size_t)(cmd->nelts + 5));
    for (i = 0; i < cmd->nelts; i++) {
        argv[i] = APR_ARRAY_IDX(cmd, i, const char *);
    }
    argv[i++] = staple_event_name(e->event);
    argv[i++] = e->id_hex;
    argv[i++] = e->subject;
    argv[i++] = apr_pstrdup(p, e->detail);
    argv[i] = NULL;
    if ((rv = apr_procattr_create(&attr, p)) != APR_SUCCESS ||
        (rv = apr_procattr_cmdtype_set(attr, APR_PROGRAM)) != APR_SUCCESS ||
        (rv = apr_procattr_error_check_set(attr, 1)) != APR_SUCCESS ||
        (rv = apr_proc_create(&ep->proc, argv[0], argv, NULL, attr, p)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, ev->s,
                     "StapleEventCmd %s: cannot run %s", ep->what, argv[0]);
        apr_pool_destroy(p);
        return;
    }
    APR_ARRAY_PUSH(ev->procs, event_proc_t *) = ep;
}

int staple_events_run(staple_events_t *ev, const apr_array_header_t *events)
{
    int i;

    reap(ev, apr_time_now());
    for (i = 0; ev->argv && i < events->nelts; i++) {
        start(ev, &APR_ARRAY_IDX(events, i, staple_event_t));
    }
    return ev->procs->nelts;
}
