# scripts/staple-check's verdict without a network: handshake records in
# (as its handshake() and inspect() make them), level and messages out, for
# every check the usage text lists, the single_unmatched warning included.
# The servers' side of the same checks is t/staple_tools.t.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use File::Spec::Functions qw(catfile);
use FindBin;

# the script defines package StapleCheck and runs nothing when loaded
require(catfile($FindBin::Bin, '..', 'scripts', 'staple-check'));

my $NOW = 1_800_000_000;

# A handshake that brought a good staple, verified against the issuer the
# server sent, thisUpdate 10 min ago, nextUpdate in 50 min; %o overrides.
sub stapled {
    my (%o) = @_;
    my %r = (ok => 1, stapled => 1, connect => 0.001, handshake => 0.004,
             der => "\x30\x03\x0a\x01\x00", response_size => 5,
             resp_status => 'successful', signature_verified => 1,
             issuer_in_chain => 1, cert_status => 'good',
             this_update => $NOW - 600, next_update => $NOW + 3000,
             cert => { subject => 'CN=localhost', must_staple => 0 });
    @r{ keys %o } = values %o;
    return \%r;
}

sub unstapled { return { ok => 1, stapled => 0, connect => 0.001, handshake => 0.003, @_ } }

# verdict of $n handshakes each way, the first one examined
sub judge {
    my ($examined, %o) = @_;
    my $n = $o{n} // 3;
    my @with = ($examined, map { $o{later} // stapled() } 2 .. $n);
    my @without = map { unstapled() } 1 .. $n;
    push @without, @{ $o{failed} } if $o{failed};
    return StapleCheck::verdict(with => \@with, without => \@without,
                                examined => $examined, first => $o{first} // $examined,
                                now => $NOW, warn_pct => $o{warn_pct} // 10,
                                cafile => $o{cafile}, name => 'localhost');
}

# one test: level, status and messages
sub verdict_is {
    my ($v, $level, $messages, $what) = @_;
    my $status = (qw(OK WARNING CRITICAL UNKNOWN))[$level];
    my $got = { level => $v->{level}, status => $v->{status}, messages => $v->{messages} };
    my $want = { level => $level, status => $status };
    my $ok = $got->{level} == $level && $got->{status} eq $status
        && @{ $got->{messages} } == @$messages
        && !grep { $got->{messages}[$_] !~ $messages->[$_] } 0 .. $#$messages;
    ok($ok, $what) or diag(explain($got), 'want ', explain({ %$want, messages => $messages }));
}

plan tests => 25;

# --- OK -----------------------------------------------------------------------------

my $v = judge(stapled());
verdict_is($v, 0, [], 'a good, verified staple: OK, no message');
is_deeply($v->{info}, ['signature verified'], 'OK: the info says the signature verified');
is($v->{stapled_n}, 3, 'OK: stapled in 3 handshakes');
ok(abs($v->{pct} - 3000 / 3600 * 100) < 1e-9 && $v->{time_left} == 3000
   && $v->{validity} == 3600 && $v->{age} == 600,
   'OK: time left, validity, its share and the age');

# --- no staple, or not each time ----------------------------------------------------

my $none = unstapled(cert => { must_staple => 0 });
verdict_is(judge($none, later => unstapled()), 2,
           [qr/^no staple \(the server sent no OCSP response\)$/],
           'no staple at all: CRITICAL');
verdict_is(judge(unstapled(cert => { must_staple => 1 }), later => unstapled()), 2,
           [qr/^no staple .*: a Must-Staple certificate, clients refuse the handshake$/],
           'no staple, Must-Staple: CRITICAL, says so');
verdict_is(judge(unstapled(cert => {}), later => stapled()), 1,
           [qr/^a staple came, but not in the examined handshake$/],
           'a staple only in later handshakes, none examined: WARNING');
verdict_is(judge(stapled(), later => unstapled()), 1,
           [qr/^stapled in only 1 of 3 handshakes$/],
           'stapled in 1 of 3 handshakes: WARNING');
verdict_is(judge(stapled(cert => { must_staple => 1 }), later => unstapled()), 2,
           [qr/^stapled in only 1 of 3 handshakes \(Must-Staple certificate\)$/],
           'stapled in 1 of 3, Must-Staple: CRITICAL');

# --- the response -------------------------------------------------------------------

verdict_is(judge(stapled(staple_error => 'the stapled data is not a DER OCSP response',
                         resp_status => undef)), 2,
           [qr/^the stapled data is not a DER OCSP response$/], 'not DER: CRITICAL');
verdict_is(judge(stapled(resp_status => 'trylater')), 2,
           [qr/^OCSP response status trylater, not successful$/], 'tryLater: CRITICAL');
verdict_is(judge(stapled(signature_verified => 0, issuer_in_chain => 0,
                         signature_error => 'the server did not send the issuer certificate')),
           1, [qr/^signature not checked: the server did not send the issuer certificate \(give --cafile\)$/],
           'no issuer sent, no --cafile: WARNING, signature not checked');
verdict_is(judge(stapled(signature_verified => 0, signature_error => 'signed by a stranger')), 2,
           [qr/^bad signature: signed by a stranger$/], 'bad signature: CRITICAL');
verdict_is(judge(stapled(single_error => 'the response has no entry for this certificate',
                         cert_status => undef)), 2,
           [qr/^the response has no entry for this certificate$/], 'no entry: CRITICAL');

# the promised WARNING: without the issuer, the status comes from the only
# entry, unchecked
verdict_is(judge(stapled(signature_verified => 0, issuer_in_chain => 0,
                         signature_error => 'the server did not send the issuer certificate',
                         single_unmatched => 1)), 1,
           [qr/^signature not checked: /,
            qr/^certificate status read from the response's only entry, which could not be matched to this certificate without its issuer \(give --cafile\)$/],
           'single_unmatched: WARNING, says the entry is unmatched');
verdict_is(judge(stapled(single_unmatched => 1, cert_status => 'revoked')), 2,
           [qr/^certificate REVOKED$/, qr/^certificate status read from the response's only entry/],
           'single_unmatched and revoked: CRITICAL first, the warning too');

# --- the certificate status and the times -------------------------------------------

verdict_is(judge(stapled(cert_status => 'revoked', revocation_time => $NOW - 86400,
                         revocation_reason => 'keyCompromise')), 2,
           [qr/^certificate REVOKED at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(keyCompromise\)$/],
           'revoked: CRITICAL, when and why');
verdict_is(judge(stapled(cert_status => 'unknown')), 2,
           [qr/^certificate status unknown$/], 'unknown: CRITICAL');
verdict_is(judge(stapled(this_update => $NOW + 600, next_update => $NOW + 4200)), 2,
           [qr/^response not yet valid: thisUpdate \S+ is 10m0s in the future$/],
           'thisUpdate 10 min ahead (skew 5 min): CRITICAL');
verdict_is(judge(stapled(next_update => undef)), 1,
           [qr/^response has no nextUpdate \(never expires\)$/], 'no nextUpdate: WARNING');
verdict_is(judge(stapled(this_update => $NOW - 3600, next_update => $NOW - 60)), 2,
           [qr/^response EXPIRED 1m0s ago \(nextUpdate \S+\)$/], 'expired: CRITICAL');
verdict_is(judge(stapled(), warn_pct => 90), 1,
           [qr/^only 50m0s left \(83\.3% of the 1h0m validity, threshold 90%\)$/],
           'less left than --warn-pct: WARNING');

# --- the chain (--cafile) and failed handshakes ------------------------------------

$v = judge(stapled(chain_errors => [], name_verified => 1), cafile => 1);
verdict_is($v, 0, [], '--cafile, chain and name verify: OK');
verdict_is(judge(stapled(chain_errors => ['depth 0: unable to get local issuer certificate'],
                         name_verified => 0), cafile => 1), 2,
           [qr/^certificate chain does not verify: depth 0: unable to get local issuer certificate$/,
            qr/^certificate does not match the name localhost$/],
           '--cafile, chain and name do not verify: CRITICAL, both said');
verdict_is(judge(stapled(), failed => [{ ok => 0, error => 'TLS handshake failed: reset' }]), 1,
           [qr/^1 of 7 handshakes failed \(TLS handshake failed: reset\)$/],
           'a failed handshake: WARNING');
