/*
 * t/bench/handshake.c -- a TLS handshake load client that asks for an OCSP staple.
 *
 * Every handshake is a full one (a new TCP connection, no session resumption,
 * no tickets) with the status_request extension (SSL_set_tlsext_status_type).
 * After the handshake the client sends close_notify and reads until the
 * server closes, so that the server's whole work for the connection is done
 * before the next one starts on that thread. N handshakes are spread over C
 * threads.
 *
 * Output: one line of text on stdout; with --json FILE ("-": stdout) the same
 * figures as a JSON object.
 *
 *   handshakes=N ok=N failed=N seconds=S rate=R/s latency_ms p50=.. p99=.. max=..
 *   stapled=N successful=N good=N
 *
 * "stapled": the server sent a staple; "successful": it parses as an
 * OCSPResponse (d2i_OCSP_RESPONSE) whose responseStatus is successful;
 * "good": (with --ca only) its signature verifies (OCSP_basic_verify against
 * the CA file and the chain the server sent) and it holds a SingleResponse
 * for the server's certificate with status good. "checked": how many
 * successful staples were verified that way: all of them, or with
 * --verify-every K those of every K-th handshake. Verifying a staple costs
 * the client two signature checks, which a client sharing the machine's
 * CPUs with the server makes the server pay for too (caches, scheduling):
 * a benchmark comparing servers that staple with one that does not should
 * verify a sample only.
 *
 * Latency is the time from connect() to the end of SSL_connect().
 *
 * Everything is bounded: each socket operation times out (--timeout,
 * default 30 s) and no handshake is started after --max-seconds (default
 * 600) have passed.
 *
 * Build: cc -O2 -o handshake handshake.c $(pkg-config --cflags --libs openssl) -lpthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static const char *opt_host = "127.0.0.1";
static const char *opt_port = "443";
static const char *opt_servername = NULL;
static long opt_names = 0; /* with %d in the servername: names 1..opt_names */
static const char *opt_ca = NULL;
static const char *opt_json = NULL;
static const char *opt_label = NULL;
static long opt_n = 1000;
static int opt_c = 8;
static int opt_timeout = 30;
static int opt_max_seconds = 600;
static int opt_tls12 = 0;
static int opt_quiet_errors = 0;
static long opt_verify_every = 1;

static SSL_CTX *ctx;
static X509_STORE *ocsp_store; /* for verifying staples (--ca) */
static struct addrinfo *addr;

static atomic_long next_index;
static atomic_long n_ok, n_failed, n_stapled, n_successful, n_good, n_checked,
    n_errors_printed;
static double *latencies; /* seconds, per handshake index; <0: failed */
static double t_start, t_deadline;

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: handshake [options]\n"
        "  -H, --host HOST         server address (default 127.0.0.1)\n"
        "  -p, --port PORT         server port (default 443)\n"
        "  -s, --servername NAME   SNI name (default: none)\n"
        "  -N, --names N           NAME holds one %%d: handshake i asks for the name\n"
        "                          with (i mod N) + 1 in its place\n"
        "  -A, --ca FILE           CA file: verify the chain and the staple (counts "
        "\"good\")\n"
        "  -V, --verify-every K    with --ca, verify the staple of every K-th "
        "handshake only\n"
        "  -n, --handshakes N      number of handshakes (default 1000)\n"
        "  -c, --concurrency C     threads (default 8)\n"
        "  -t, --timeout SEC       per socket operation (default 30)\n"
        "  -T, --max-seconds SEC   start no handshake after SEC seconds (default 600)\n"
        "  -2, --tls12             TLS 1.2 only (default: the best both support)\n"
        "  -j, --json FILE         also write the figures as JSON (\"-\": stdout)\n"
        "  -l, --label TEXT        label written into the JSON\n"
        "  -q, --quiet-errors      do not print handshake errors\n");
}

static void report_error(const char *what, SSL *ssl, int ret)
{
    unsigned long e;
    char buf[256];

    /* print the first few only: a failing server would flood the terminal */
    if (opt_quiet_errors || atomic_fetch_add(&n_errors_printed, 1) >= 5) {
        ERR_clear_error();
        return;
    }
    if (ssl != NULL) {
        fprintf(stderr, "handshake: %s: SSL error %d, errno %d (%s)\n", what,
                SSL_get_error(ssl, ret), errno, strerror(errno));
    } else {
        fprintf(stderr, "handshake: %s: %s\n", what, strerror(errno));
    }
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
        fprintf(stderr, "handshake:   %s\n", buf);
    }
}

/* 1 when the staple verifies and says good for the server's certificate */
static int staple_is_good(SSL *ssl, OCSP_RESPONSE *resp)
{
    OCSP_BASICRESP *br = NULL;
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    X509 *leaf = SSL_get0_peer_certificate(ssl);
    X509 *issuer = NULL;
    OCSP_CERTID *id = NULL;
    int status = -1, reason, good = 0, i;
    ASN1_GENERALIZEDTIME *rev, *thisupd, *nextupd;

    if (ocsp_store == NULL || chain == NULL || leaf == NULL) {
        return 0;
    }
    for (i = 0; i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        if (X509_check_issued(x, leaf) == X509_V_OK) {
            issuer = x;
            break;
        }
    }
    if (issuer == NULL || (br = OCSP_response_get1_basic(resp)) == NULL) {
        goto done;
    }
    if (OCSP_basic_verify(br, chain, ocsp_store, 0) <= 0) {
        goto done;
    }
    if ((id = OCSP_cert_to_id(NULL, leaf, issuer)) == NULL) {
        goto done;
    }
    if (OCSP_resp_find_status(br, id, &status, &reason, &rev, &thisupd, &nextupd) == 1 &&
        status == V_OCSP_CERTSTATUS_GOOD &&
        OCSP_check_validity(thisupd, nextupd, 300, -1) == 1) {
        good = 1;
    }
done:
    OCSP_CERTID_free(id);
    OCSP_BASICRESP_free(br);
    ERR_clear_error();
    return good;
}

static int set_timeouts(int fd)
{
    struct timeval tv = {opt_timeout, 0};
    int one = 1;

    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

static void one_handshake(long idx)
{
    int fd, ret;
    SSL *ssl = NULL;
    double t0, t1;
    const unsigned char *p;
    long len;
    char buf[256];

    latencies[idx] = -1;
    t0 = now_sec();
    fd = socket(addr->ai_family, SOCK_STREAM, 0);
    if (fd < 0) {
        report_error("socket", NULL, 0);
        atomic_fetch_add(&n_failed, 1);
        return;
    }
    if (set_timeouts(fd) != 0 || connect(fd, addr->ai_addr, addr->ai_addrlen) != 0) {
        report_error("connect", NULL, 0);
        atomic_fetch_add(&n_failed, 1);
        close(fd);
        return;
    }
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_status_type(ssl, TLSEXT_STATUSTYPE_ocsp);
    if (opt_servername && opt_names > 0) {
        /* the one %d was checked in main */
        snprintf(buf, sizeof(buf), opt_servername, (int)(idx % opt_names) + 1);
        SSL_set_tlsext_host_name(ssl, buf);
    } else if (opt_servername) {
        SSL_set_tlsext_host_name(ssl, opt_servername);
    }
    ret = SSL_connect(ssl);
    t1 = now_sec();
    if (ret != 1) {
        report_error("SSL_connect", ssl, ret);
        atomic_fetch_add(&n_failed, 1);
        SSL_free(ssl);
        close(fd);
        return;
    }
    latencies[idx] = t1 - t0;
    atomic_fetch_add(&n_ok, 1);

    len = SSL_get_tlsext_status_ocsp_resp(ssl, &p);
    if (len > 0 && p != NULL) {
        OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, len);
        atomic_fetch_add(&n_stapled, 1);
        if (resp != NULL &&
            OCSP_response_status(resp) == OCSP_RESPONSE_STATUS_SUCCESSFUL) {
            atomic_fetch_add(&n_successful, 1);
            if (ocsp_store != NULL && idx % opt_verify_every == 0) {
                atomic_fetch_add(&n_checked, 1);
                if (staple_is_good(ssl, resp)) {
                    atomic_fetch_add(&n_good, 1);
                }
            }
        }
        OCSP_RESPONSE_free(resp);
    }

    /* Let the server finish its side: close_notify, then read to EOF. */
    if (SSL_shutdown(ssl) == 0) {
        while (SSL_read(ssl, buf, sizeof(buf)) > 0) {
        }
    }
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
}

static void *worker(void *arg)
{
    long idx;

    (void)arg;
    while ((idx = atomic_fetch_add(&next_index, 1)) < opt_n) {
        if (now_sec() > t_deadline) {
            break;
        }
        one_handshake(idx);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* nearest-rank percentile of a sorted array */
static double percentile(const double *v, long n, double pct)
{
    long rank;

    if (n == 0) {
        return 0;
    }
    rank = (long)(pct / 100.0 * (double)n + 0.999999999);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > n) {
        rank = n;
    }
    return v[rank - 1];
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            fprintf(f, "\\%c", *s);
        } else if ((unsigned char)*s < 0x20) {
            fprintf(f, "\\u%04x", *s);
        } else {
            fputc(*s, f);
        }
    }
    fputc('"', f);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"servername", required_argument, NULL, 's'},
        {"names", required_argument, NULL, 'N'},
        {"ca", required_argument, NULL, 'A'},
        {"handshakes", required_argument, NULL, 'n'},
        {"concurrency", required_argument, NULL, 'c'},
        {"timeout", required_argument, NULL, 't'},
        {"max-seconds", required_argument, NULL, 'T'},
        {"tls12", no_argument, NULL, '2'},
        {"json", required_argument, NULL, 'j'},
        {"label", required_argument, NULL, 'l'},
        {"quiet-errors", no_argument, NULL, 'q'},
        {"verify-every", required_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    struct addrinfo hints;
    pthread_t *threads;
    double elapsed, *ok_lat, p50, p99, max;
    long i, n_lat = 0, done;
    int opt, rc;

    while ((opt = getopt_long(argc, argv, "H:p:s:N:A:V:n:c:t:T:2j:l:qh", longopts, NULL)) !=
           -1) {
        switch (opt) {
        case 'H':
            opt_host = optarg;
            break;
        case 'p':
            opt_port = optarg;
            break;
        case 's':
            opt_servername = optarg;
            break;
        case 'N':
            opt_names = strtol(optarg, NULL, 10);
            break;
        case 'A':
            opt_ca = optarg;
            break;
        case 'V':
            opt_verify_every = atol(optarg);
            if (opt_verify_every < 1) {
                fprintf(stderr, "handshake: --verify-every needs a positive number\n");
                return 2;
            }
            break;
        case 'n':
            opt_n = atol(optarg);
            break;
        case 'c':
            opt_c = atoi(optarg);
            break;
        case 't':
            opt_timeout = atoi(optarg);
            break;
        case 'T':
            opt_max_seconds = atoi(optarg);
            break;
        case '2':
            opt_tls12 = 1;
            break;
        case 'j':
            opt_json = optarg;
            break;
        case 'l':
            opt_label = optarg;
            break;
        case 'q':
            opt_quiet_errors = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || opt_n < 1 || opt_n > 100000000 || opt_c < 1 || opt_c > 1024 ||
        opt_timeout < 1 || opt_max_seconds < 1) {
        usage(stderr);
        return 2;
    }
    if (opt_c > opt_n) {
        opt_c = (int)opt_n;
    }
    if (opt_names != 0) {
        const char *pct = opt_servername ? strchr(opt_servername, '%') : NULL;
        if (opt_names < 0 || pct == NULL || pct[1] != 'd' || strchr(pct + 1, '%') ||
            strlen(opt_servername) > 200) {
            fprintf(stderr, "handshake: --names needs a --servername with one %%d\n");
            return 2;
        }
    }

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    if ((rc = getaddrinfo(opt_host, opt_port, &hints, &addr)) != 0) {
        fprintf(stderr, "handshake: %s:%s: %s\n", opt_host, opt_port, gai_strerror(rc));
        return 1;
    }

    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    /* no resumption: no client session cache, no tickets */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (opt_tls12) {
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    }
    if (opt_ca != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, opt_ca, NULL) != 1) {
            fprintf(stderr, "handshake: cannot load CA file %s\n", opt_ca);
            ERR_print_errors_fp(stderr);
            return 1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        ocsp_store = SSL_CTX_get_cert_store(ctx);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }

    latencies = calloc((size_t)opt_n, sizeof(double));
    ok_lat = calloc((size_t)opt_n, sizeof(double));
    threads = calloc((size_t)opt_c, sizeof(pthread_t));
    if (latencies == NULL || ok_lat == NULL || threads == NULL) {
        fprintf(stderr, "handshake: out of memory\n");
        return 1;
    }
    for (i = 0; i < opt_n; i++) {
        latencies[i] = -2; /* never started */
    }

    t_start = now_sec();
    t_deadline = t_start + opt_max_seconds;
    for (i = 0; i < opt_c; i++) {
        if (pthread_create(&threads[i], NULL, worker, NULL) != 0) {
            fprintf(stderr, "handshake: pthread_create failed\n");
            return 1;
        }
    }
    for (i = 0; i < opt_c; i++) {
        pthread_join(threads[i], NULL);
    }
    elapsed = now_sec() - t_start;

    for (i = 0; i < opt_n; i++) {
        if (latencies[i] >= 0) {
            ok_lat[n_lat++] = latencies[i];
        }
    }
    qsort(ok_lat, (size_t)n_lat, sizeof(double), cmp_double);
    p50 = percentile(ok_lat, n_lat, 50) * 1e3;
    p99 = percentile(ok_lat, n_lat, 99) * 1e3;
    max = n_lat ? ok_lat[n_lat - 1] * 1e3 : 0;
    done = atomic_load(&n_ok) + atomic_load(&n_failed);

    printf("handshakes=%ld ok=%ld failed=%ld seconds=%.3f rate=%.1f/s "
           "latency_ms p50=%.3f p99=%.3f max=%.3f stapled=%ld successful=%ld good=%s%ld "
           "checked=%ld\n",
           done, atomic_load(&n_ok), atomic_load(&n_failed), elapsed,
           elapsed > 0 ? (double)atomic_load(&n_ok) / elapsed : 0.0, p50, p99, max,
           atomic_load(&n_stapled), atomic_load(&n_successful), opt_ca ? "" : "-",
           opt_ca ? atomic_load(&n_good) : 0L, atomic_load(&n_checked));

    if (opt_json != NULL) {
        FILE *f = strcmp(opt_json, "-") ? fopen(opt_json, "w") : stdout;
        if (f == NULL) {
            fprintf(stderr, "handshake: cannot write %s: %s\n", opt_json,
                    strerror(errno));
            return 1;
        }
        fprintf(f, "{");
        if (opt_label) {
            fprintf(f, "\"label\":");
            json_string(f, opt_label);
            fprintf(f, ",");
        }
        fprintf(f, "\"host\":");
        json_string(f, opt_host);
        fprintf(f, ",\"port\":");
        json_string(f, opt_port);
        fprintf(
            f,
            ",\"concurrency\":%d,\"handshakes\":%ld,\"ok\":%ld,\"failed\":%ld,"
            "\"seconds\":%.6f,\"rate\":%.3f,\"latency_ms\":{\"p50\":%.4f,\"p99\":%.4f,"
            "\"max\":%.4f},\"stapled\":%ld,\"successful\":%ld,\"good\":",
            opt_c, done, atomic_load(&n_ok), atomic_load(&n_failed), elapsed,
            elapsed > 0 ? (double)atomic_load(&n_ok) / elapsed : 0.0, p50, p99, max,
            atomic_load(&n_stapled), atomic_load(&n_successful));
        if (opt_ca) {
            fprintf(f, "%ld", atomic_load(&n_good));
        } else {
            fprintf(f, "null");
        }
        fprintf(f, ",\"checked\":%ld}\n", atomic_load(&n_checked));
        if (f != stdout) {
            fclose(f);
        }
    }
    freeaddrinfo(addr);
    SSL_CTX_free(ctx);
    free(latencies);
    free(ok_lat);
    free(threads);
    return atomic_load(&n_failed) > 0 ? 1 : 0;
}
