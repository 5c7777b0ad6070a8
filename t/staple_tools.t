# scripts/staple-check, the operator's outside view of OCSP stapling: exit
# codes and JSON fields against the suite's virtual hosts (mod_staple's good,
# hanging-responder, revoked and Must-Staple ones, and one stapled by plain
# mod_ssl, from t/conf/extra.last.conf.in).
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use File::Spec::Functions qw(catfile rel2abs);
use FindBin;
use JSON::PP ();
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleProc qw(free_port run_cmd wait_until);

my $vars  = Apache::Test::vars();
my $top   = rel2abs(catfile($vars->{t_dir}, '..'));
my $check = catfile($top, 'scripts', 'staple-check');

plan tests => 59;

# run(@args) -> (exit code, stdout, stderr); bounded to 120 s
sub run { return run_cmd([$^X, $check, @_], timeout => 120) }

# check_json($vhost, @options) -> (exit code, decoded JSON or undef, raw)
sub check_json {
    my ($vhost, @opt) = @_;
    my $port = vhost_port($vhost);
    my ($rc, $out, $err) = run('--json', '-n', 3, '--timeout', 5, @opt,
                               "127.0.0.1:$port", 'localhost');
    my $j = eval { JSON::PP::decode_json($out) };
    diag("$vhost: not JSON: $@\n$out$err") unless $j;
    return ($rc, $j // {}, "$out$err");
}

my $T = JSON::PP::true;

# --- a good staple from mod_staple -------------------------------------------------
{
    my ($rc, $j, $raw) = check_json('staple_good');
    is($rc, 0, 'staple_good: exit 0 (OK)') or diag($raw);
    is($j->{status}, 'OK', 'staple_good: status OK');
    ok($j->{stapled}, 'staple_good: stapled true');
    is($j->{stapled_handshakes}, 3, 'staple_good: stapled in each of the 3 handshakes');
    is($j->{response_status}, 'successful', 'staple_good: response status successful');
    is($j->{cert_status}, 'good', 'staple_good: certificate status good');
    ok($j->{signature_verified}, 'staple_good: signature verified')
        or diag($j->{signature_error} // '');
    ok($j->{issuer_in_chain}, 'staple_good: the server sent the issuer');
    ok(defined $j->{time_left} && $j->{time_left} > 0, 'staple_good: time left > 0')
        or diag($j->{time_left} // 'undef');
    ok(defined $j->{validity} && $j->{validity} > 0
       && $j->{time_left} <= $j->{validity}, 'staple_good: time left within the validity');
    like($j->{this_update} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
         'staple_good: thisUpdate in ISO 8601');
    like($j->{next_update} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
         'staple_good: nextUpdate in ISO 8601');
    ok(!$j->{must_staple}, 'staple_good: not Must-Staple');
    like($j->{certificate}{subject} // '', qr/good\.localhost/, 'staple_good: certificate subject');
    ok(defined $j->{handshake_ms_stapling} && $j->{handshake_ms_stapling} > 0
       && defined $j->{handshake_ms_no_stapling} && $j->{handshake_ms_no_stapling} > 0,
       'staple_good: median handshake times with and without stapling');
    is(scalar @{ $j->{handshake_ms_all}{no_stapling} // [] }, 3,
       'staple_good: 3 handshakes without status_request');
    is_deeply($j->{messages}, [], 'staple_good: no messages');
}

{
    my $port = vhost_port('staple_good');
    my ($rc, $out, $err) = run('-n', 2, "127.0.0.1:$port", 'localhost');
    is($rc, 0, 'staple_good, text: exit 0') or diag("$out$err");
    like($out, qr/^STAPLE OK - 127\.0\.0\.1:$port \(localhost\): stapled, good, signature verified, \S+ left/,
         'staple_good, text: Nagios-style first line');
    like($out, qr/\| time_left=\d+s;\d+;0 handshake_stapling=[\d.]+ms handshake_no_stapling=[\d.]+ms$/m,
         'staple_good, text: performance data');

    # without SNI and with the port as an option
    ($rc, $out, $err) = run('-n', 1, '-p', $port, '127.0.0.1');
    is($rc, 0, 'staple_good, --port and no SNI: exit 0') or diag("$out$err");
}

# --- thresholds and the chain check ----------------------------------------------------
{
    # less than 100 % of the validity is always left of a response made in
    # the past
    my ($rc, $j, $raw) = check_json('staple_good', '--warn-pct', 100);
    is($rc, 1, '--warn-pct 100: exit 1 (WARNING)') or diag($raw);
    like(join(' ', @{ $j->{messages} // [] }), qr/only \S+ left \([\d.]+% of the \S+ validity, threshold 100%\)/,
         '--warn-pct 100: the message says how much is left');

    ($rc, $j, $raw) = check_json('staple_good', '--cafile', pki_file('root.pem'));
    is($rc, 0, '--cafile root.pem: exit 0') or diag($raw);
    ok($j->{chain_verified}, '--cafile root.pem: chain verified');

    ($rc, $j, $raw) = check_json('staple_good', '--cafile', pki_file('selfsigned.crt'));
    is($rc, 2, '--cafile of an unrelated CA: exit 2 (CRITICAL)') or diag($raw);
    ok(defined $j->{chain_verified} && !$j->{chain_verified}, '--cafile of an unrelated CA: chain not verified');
    ok($j->{signature_verified}, '--cafile of an unrelated CA: the staple still verifies against the served issuer');
}

# --- no staple: the responder hangs, nothing is cached ---------------------------------
{
    my ($rc, $j, $raw) = check_json('staple_hang');
    is($rc, 2, 'staple_hang: exit 2 (CRITICAL)') or diag($raw);
    is($j->{status}, 'CRITICAL', 'staple_hang: status CRITICAL');
    ok(defined $j->{stapled} && !$j->{stapled}, 'staple_hang: stapled false');
    is($j->{stapled_handshakes}, 0, 'staple_hang: no handshake stapled');
    like(join(' ', @{ $j->{messages} // [] }), qr/no staple/, 'staple_hang: "no staple"');
    ok($j->{handshake_ok}, 'staple_hang: the handshakes themselves succeed');
}

# --- revoked -------------------------------------------------------------------------
{
    my ($rc, $j, $raw) = check_json('staple_revoked');
    is($rc, 2, 'staple_revoked: exit 2 (CRITICAL)') or diag($raw);
    ok($j->{stapled}, 'staple_revoked: stapled');
    is($j->{cert_status}, 'revoked', 'staple_revoked: certificate status revoked');
    ok($j->{signature_verified}, 'staple_revoked: signature verified');
    like(join(' ', @{ $j->{messages} // [] }), qr/REVOKED/, 'staple_revoked: says REVOKED');
    like($j->{revocation_reason} // '', qr/keyCompromise/i, 'staple_revoked: revocation reason');
}

# --- Must-Staple ----------------------------------------------------------------------
{
    my ($rc, $j, $raw) = check_json('staple_mustaple');
    is($rc, 0, 'staple_mustaple: exit 0') or diag($raw);
    ok($j->{must_staple}, 'staple_mustaple: Must-Staple reported');
    is($j->{cert_status}, 'good', 'staple_mustaple: status good');
    my $port = vhost_port('staple_mustaple');
    my ($trc, $out) = run('-n', 1, "127.0.0.1:$port", 'localhost');
    like($out, qr/^\s+Must-Staple:\s+yes$/m, 'staple_mustaple, text: "Must-Staple: yes"');
}

# --- plain mod_ssl stapling (t/conf/extra.last.conf.in) -------------------------------
{
    my ($rc, $j, $raw) = check_json('staple_modssl');
    is($rc, 0, 'mod_ssl: exit 0 (mod_ssl fetches on the first handshake)') or diag($raw);
    ok($j->{stapled}, 'mod_ssl: stapled');
    is($j->{cert_status}, 'good', 'mod_ssl: status good');
    ok($j->{signature_verified}, 'mod_ssl: signature verified') or diag($j->{signature_error} // '');
    ok(responder_count('shared') >= 1, 'mod_ssl: it asked the responder itself');

    # A response signed by a certificate the issuer never delegated: mod_ssl
    # staples it (it does not check signatures), staple-check must not accept it.
    SKIP: {
        skip 'the OCSP proxy does not take the sign mode', 5
            unless proxy_mode('shared', 'sign:signer=stranger;nmin=10');
        my @r;
        # mod_ssl fetches again once its 2 s cache entry is stale
        wait_until(15, sub {
            @r = check_json('staple_modssl', '-n', 1);
            return $r[0] == 2;
        }, 0.5);
        proxy_mode('shared', 'default');
        ($rc, $j, $raw) = @r;
        is($rc, 2, 'forged signature: exit 2 (CRITICAL)') or diag($raw);
        ok($j->{stapled}, 'forged signature: stapled');
        is($j->{cert_status}, 'good', 'forged signature: the response says good');
        ok(defined $j->{signature_verified} && !$j->{signature_verified},
           'forged signature: signature not verified');
        like(join(' ', @{ $j->{messages} // [] }), qr/bad signature/, 'forged signature: "bad signature"');
    }
}

# --- no server, bad usage -----------------------------------------------------------
{
    my $free = free_port();    # nothing listens there
    my ($rc, $out, $err) = run('--json', '-n', 1, '--timeout', 3, "127.0.0.1:$free");
    is($rc, 3, 'nothing listening: exit 3 (UNKNOWN)') or diag("$out$err");
    my $j = eval { JSON::PP::decode_json($out) } // {};
    is($j->{status}, 'UNKNOWN', 'nothing listening: status UNKNOWN in JSON');

    ($rc, $out) = run('-h');
    is($rc, 0, '-h: exit 0');
    like($out, qr/^usage: staple-check /, '-h: usage text');
    ($rc, $out, $err) = run('--no-such-option', 'localhost');
    is($rc, 3, 'bad option: exit 3');
}
