/*
 * StapleEventCmd: the program run for each event the registry reports, in
 * the refresher's process, never in a handshake. At most a few run at
 * once; the others wait in a bounded queue, so that a cold start or an
 * outage with thousands of certificates does not fork thousands of copies
 * of the server.
 *
 * A program gets the configured arguments, then the event, the
 * certificate's id, its subject and a detail; the same four in the
 * environment (STAPLE_EVENT, STAPLE_CERT_ID, STAPLE_SUBJECT, STAPLE_DETAIL)
 * with PATH, and nothing else. It starts in a process group of its own
 * with no signal blocked or ignored, stdin from /dev/null, stdout and
 * stderr to the error log, as the server's User. One still running after
 * StapleEventTimeout is killed with its whole process group.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <apr_strings.h>

#include <httpd.h>
#include <http_log.h>

#include "mod_staple_private.h"

/* Programs at once, and events waiting for one at most. */
#define STAPLE_EVENT_PARALLEL  4
#define STAPLE_EVENT_QUEUE_MAX 1000

#define STAPLE_EVENT_PATH                                                                \
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

typedef struct {
    apr_pool_t *pool; /* the event's own, freed when its program ended */
    staple_event_t e;
    pid_t pid; /* 0 while queued */
    apr_time_t started;
    const char *what;
} event_proc_t;

struct staple_events_t {
    apr_pool_t *pool;
    server_rec *s;
    const apr_array_header_t *argv; /* StapleEventCmd, NULL: none */
    apr_interval_time_t timeout;
    apr_array_header_t *running; /* event_proc_t * */
    apr_array_header_t *queue;   /* event_proc_t *, oldest first */
    int dropped;                 /* since the last warning */
};

staple_events_t *staple_events_make(apr_pool_t *pool, server_rec *s,
                                    const apr_array_header_t *argv,
                                    apr_interval_time_t timeout)
{
    staple_events_t *ev = apr_pcalloc(pool, sizeof(*ev));

    ev->pool = pool;
    ev->s = s;
    ev->argv = argv;
    ev->timeout = timeout;
    ev->running = apr_array_make(pool, STAPLE_EVENT_PARALLEL, sizeof(event_proc_t *));
    ev->queue = apr_array_make(pool, 16, sizeof(event_proc_t *));
    return ev;
}

static void reap(staple_events_t *ev, apr_time_t now)
{
    int i, status;

    for (i = 0; i < ev->running->nelts; i++) {
        event_proc_t *ep = APR_ARRAY_IDX(ev->running, i, event_proc_t *);
        pid_t w = waitpid(ep->pid, &status, WNOHANG);

        if (w == 0) {
            if (now - ep->started < ev->timeout) {
                continue;
            }
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ev->s,
                         "StapleEventCmd %s still runs after %s: killed with its process "
                         "group",
                         ep->what, staple_fmt_duration(ep->pool, now - ep->started));
            kill(-ep->pid, SIGKILL);
            while (waitpid(ep->pid, &status, 0) < 0 && errno == EINTR) {
            }
        } else if (w == ep->pid) {
            int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            ap_log_error(APLOG_MARK, ok ? APLOG_INFO : APLOG_WARNING, 0, ev->s,
                         "StapleEventCmd %s %s %d", ep->what,
                         WIFEXITED(status) ? "exited with status" : "died of signal",
                         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        }
        /* ended, killed, or not ours to wait for any more (w < 0) */
        apr_pool_destroy(ep->pool);
        APR_ARRAY_IDX(ev->running, i, event_proc_t *) =
            APR_ARRAY_IDX(ev->running, ev->running->nelts - 1, event_proc_t *);
        ev->running->nelts--;
        i--;
    }
}

static void start(staple_events_t *ev, event_proc_t *ep)
{
    const apr_array_header_t *cmd = ev->argv;
    const char *what = staple_event_name(ep->e.event);
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t fa;
    sigset_t none, all;
    char **argv, *envp[6];
    int i, rc;

    argv = apr_pcalloc(ep->pool, sizeof(char *) * (apr_size_t)(cmd->nelts + 5));
    for (i = 0; i < cmd->nelts; i++) {
        argv[i] = (char *)APR_ARRAY_IDX(cmd, i, const char *);
    }
    argv[i++] = (char *)what;
    argv[i++] = (char *)ep->e.id_hex;
    argv[i++] = (char *)ep->e.subject;
    argv[i++] = (char *)ep->e.detail;
    argv[i] = NULL;
    envp[0] = STAPLE_EVENT_PATH;
    envp[1] = apr_pstrcat(ep->pool, "STAPLE_EVENT=", what, NULL);
    envp[2] = apr_pstrcat(ep->pool, "STAPLE_CERT_ID=", ep->e.id_hex, NULL);
    envp[3] = apr_pstrcat(ep->pool, "STAPLE_SUBJECT=", ep->e.subject, NULL);
    envp[4] = apr_pstrcat(ep->pool, "STAPLE_DETAIL=", ep->e.detail, NULL);
    envp[5] = NULL;

    /* the refresher is a thread that blocks signals, and httpd ignores
     * some: the program starts with none blocked and all at default */
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    if ((rc = posix_spawnattr_init(&attr)) != 0) {
        goto fail;
    }
    if ((rc = posix_spawn_file_actions_init(&fa)) != 0) {
        posix_spawnattr_destroy(&attr);
        goto fail;
    }
    if ((rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
                                                  POSIX_SPAWN_SETSIGMASK |
                                                  POSIX_SPAWN_SETSIGDEF)) == 0 &&
        (rc = posix_spawnattr_setpgroup(&attr, 0)) == 0 &&
        (rc = posix_spawnattr_setsigmask(&attr, &none)) == 0 &&
        (rc = posix_spawnattr_setsigdefault(&attr, &all)) == 0 &&
        (rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) == 0) {
        rc = posix_spawn(&ep->pid, argv[0], &fa, &attr, argv, envp);
    }
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc == 0) {
        ep->started = apr_time_now();
        APR_ARRAY_PUSH(ev->running, event_proc_t *) = ep;
        return;
    }
fail:
    ap_log_error(APLOG_MARK, APLOG_WARNING, APR_FROM_OS_ERROR(rc), ev->s,
                 "StapleEventCmd %s: cannot run %s", ep->what, argv ? argv[0] : "");
    apr_pool_destroy(ep->pool);
}

/* Queue an event: its strings are copied into a pool of its own. */
static void enqueue(staple_events_t *ev, const staple_event_t *e)
{
    event_proc_t *ep;
    apr_pool_t *p;

    if (ev->queue->nelts >= STAPLE_EVENT_QUEUE_MAX) {
        ev->dropped++;
        return;
    }
    apr_pool_create(&p, ev->pool);
    apr_pool_tag(p, "staple_event");
    ep = apr_pcalloc(p, sizeof(*ep));
    ep->pool = p;
    ep->e.event = e->event;
    ep->e.id_hex = apr_pstrdup(p, e->id_hex);
    ep->e.subject = apr_pstrdup(p, e->subject);
    ep->e.detail = apr_pstrdup(p, e->detail);
    ep->what = apr_psprintf(p, "%s for %s", staple_event_name(e->event), ep->e.subject);
    APR_ARRAY_PUSH(ev->queue, event_proc_t *) = ep;
}

int staple_events_run(staple_events_t *ev, const apr_array_header_t *events)
{
    int i, started = 0;

    reap(ev, apr_time_now());
    for (i = 0; ev->argv && i < events->nelts; i++) {
        enqueue(ev, &APR_ARRAY_IDX(events, i, staple_event_t));
    }
    if (ev->dropped) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ev->s,
                     "StapleEventCmd: %d event(s) dropped, %d already waiting for one of "
                     "%d programs at a time",
                     ev->dropped, STAPLE_EVENT_QUEUE_MAX, STAPLE_EVENT_PARALLEL);
        ev->dropped = 0;
    }
    while (ev->running->nelts < STAPLE_EVENT_PARALLEL && started < ev->queue->nelts) {
        start(ev, APR_ARRAY_IDX(ev->queue, started, event_proc_t *));
        started++;
    }
    if (started > 0) {
        /* the oldest are gone from the queue */
        memmove(ev->queue->elts, ev->queue->elts + (apr_size_t)started * sizeof(void *),
                (apr_size_t)(ev->queue->nelts - started) * sizeof(void *));
        ev->queue->nelts -= started;
    }
    return ev->running->nelts + ev->queue->nelts;
}
