package StapleFaults;
# The certificates of the fault-injection tests, in one place: each gets a
# leaf in t/pki (scripts/mkpki), a <VirtualHost> (named by its vhost field)
# and a mode of t/bin/ocsp-proxy (both set up by t/TEST.PL), and the tests
# read here what to expect of it.
#
#   faults()   the fault matrix of t/staple_faults.t: the responder first
#              answers a valid short good response ("shortgood": thisUpdate
#              30 s ago, nextUpdate in 90 s, due for refresh 60 s after the
#              fetch), then every later answer is the fault
#   extras()   certificates of t/staple_recovery.t and t/staple_trusted.t
#   certs()    all of them
#
# Each is a hash: name (leaf, proxy NAME and vhost), mode (proxy mode),
# must_staple, and for faults: fault (what the responder does), what (a
# regexp matching the <what> of the module's warn line).
#
# Needs no Apache::Test: t/TEST.PL loads it before any configuration exists.
use strict;
use warnings;

# "fetch failed after X ms (GET|POST): <error>"
sub fetch_failed { my ($re) = @_; qr/fetch failed after [\d.]+ ms \((?:GET|POST)\): $re/ }

# "response rejected (<check>): <reason>", the reason containing $re
sub rejected {
    my ($check, $re) = @_;
    $re //= qr/\S/;
    qr/response rejected \(\Q$check\E\): [^;]*?$re/;
}

my @FAULTS = (
    # transport
    [fault_delay => 'delay:4', 'answers after 4 s (StapleResponderTimeout is 2)',
        fetch_failed(qr/Timeout was reached/)],
    [fault_hang => 'hang', 'never answers',
        fetch_failed(qr/Timeout was reached/)],
    [fault_refuse => 'close', 'reads the request and closes the connection',
        fetch_failed(qr/Server returned nothing/)],
    [fault_truncate => 'truncate', 'closes the connection mid-response',
        fetch_failed(qr/Transferred a partial file/)],
    # the Must-Staple one: an error line too once no valid response is left
    [fault_err500 => 'status:500', 'answers HTTP 500',
        fetch_failed(qr/HTTP status 500/), 1],
    [fault_err404 => 'status:404', 'answers HTTP 404',
        fetch_failed(qr/HTTP status 404/)],
    [fault_garbage => 'garbage', 'answers 64 random bytes',
        rejected('malformed', qr/not a DER OCSP response/)],
    [fault_oversize => 'oversize:100000', 'answers a body of 100006 bytes',
        fetch_failed(qr/response body larger than 65536 bytes, refused/)],
    # OCSP responseStatus other than successful
    [fault_malformed => 'malformed', 'answers malformedRequest',
        rejected('not-successful', qr/malformedrequest/i)],
    [fault_internal => 'internalerror', 'answers internalError',
        rejected('not-successful', qr/internalerror/i)],
    [fault_trylater => 'trylater', 'answers tryLater',
        rejected('not-successful', qr/trylater/i)],
    [fault_sigreq => 'sigrequired', 'answers sigRequired',
        rejected('not-successful', qr/sigrequired/i)],
    [fault_unauth => 'unauthorized', 'answers unauthorized',
        rejected('not-successful', qr/unauthorized/i)],
    # successful, but not acceptable
    [fault_stranger => 'sign:signer=stranger;nmin=5',
        'signs with an unrelated self-signed key', rejected('signature')],
    [fault_noeku => 'sign:signer=ocsp_noeku;nmin=5',
        'signs with a certificate of the issuer without OCSPSigning',
        rejected('signature')],
    [fault_otherca => 'sign:signer=other_ocsp;nmin=5',
        'signs with the responder certificate of another CA',
        rejected('signature')],
    [fault_othercert => 'sign:req=good;nmin=5',
        'answers about another certificate (good.crt)', rejected('wrong-cert')],
    [fault_unknown => 'sign:index=empty_index.txt;nmin=5',
        'answers status unknown', rejected('unknown-status')],
    [fault_expired => 'sign:shift=-10m;nmin=5',
        'answers a response whose nextUpdate passed 5 min ago', rejected('expired')],
    [fault_future => 'sign:shift=+10m;nmin=20',
        'answers a response whose thisUpdate is 10 min ahead (skew 5 min)',
        rejected('not-yet-valid')],
    [fault_nonext => 'sign:', 'answers a response without nextUpdate',
        rejected('no-next-update')],
    [fault_tooold => 'sign:shift=-2h;ndays=1',
        'answers a response 2 h old (StapleResponseMaxAge 3000)',
        rejected('too-old')],
);

my @FAULT_CERTS = map {
    my ($name, $mode, $fault, $what, $ms) = @$_;
    { name => $name, vhost => $name, mode => "shortgood,$mode", fault => $fault,
      fault_mode => $mode, what => $what, must_staple => $ms ? 1 : 0 }
} @FAULTS;

my @EXTRAS = (
    # t/staple_recovery.t: good once, then down until the test says otherwise
    { name => 'recover', vhost => 'staple_recover', mode => 'shortgood,close' },
    # t/staple_trusted.t: responses signed by the responder of a third CA,
    # whose root is in StapleTrustedCertificate ...
    { name => 'trusted3', vhost => 'staple_trusted',
      mode => 'sign:signer=third_ocsp;nmin=10' },
    # ... and by the responder of the other CA, which is not: never a valid
    # response, and Must-Staple, so an error line with every failed attempt
    { name => 'othersigned', vhost => 'staple_othersigned',
      mode => 'sign:signer=other_ocsp;nmin=10', must_staple => 1 },
);
$_->{must_staple} //= 0 for @EXTRAS;

sub faults { @FAULT_CERTS }
sub extras { @EXTRAS }
sub certs  { (@FAULT_CERTS, @EXTRAS) }

sub cert { my ($name) = @_; (grep { $_->{name} eq $name } certs())[0] }

# t/bin/ocsp-proxy needs faketime (Debian package faketime) for the
# time-shifted responses, "shortgood" included; the tests skip without it.
sub have_faketime { scalar grep { -x "$_/faketime" } split /:/, $ENV{PATH} // '' }
sub faketime_missing {
    'faketime is not installed (Debian package faketime): t/bin/ocsp-proxy '
        . 'needs it to forge the time-shifted responses of the fault tests';
}

# arguments for scripts/mkpki
sub mkpki_leaves { map { $_->{name} . ($_->{must_staple} ? ':must-staple' : '') } certs() }

# --mode arguments for t/bin/ocsp-proxy
sub proxy_modes { map { "$_->{name}=$_->{mode}" } certs() }

1;
