# StapleTrustedCertificate: responses for trusted3.pem are signed by the
# delegated responder of a third CA, whose root is in the server-wide
# StapleTrustedCertificate (t/conf/extra.conf.in): they are stapled.  The
# same kind of response signed by the responder of the "other" CA, which is
# not trusted (othersigned.pem), is refused; othersigned.pem is Must-Staple,
# and each of its failed attempts logs an error line.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleFaults;
use StaplePKI qw(cert_serial make_leaf);
use StapleNode ();
use StapleProc qw(tempdir);

plan tests => 16;

my $trusted = StapleFaults::cert('trusted3');
my $other   = StapleFaults::cert('othersigned');

# a client that trusts the third CA to sign OCSP responses
my $r = handshake(vhost_port($trusted->{vhost}), ca => pki_file('roots_with_third.pem'));
ok($r->{ok}, 'trusted3: handshake completes') or diag($r->{error});
ok($r->{stapled}, 'trusted3: stapled');
ok($r->{verified}, 'trusted3: the response verifies with the third CA trusted')
    or diag($r->{verify_error} // 'no error recorded');
is($r->{cert_status}, 'good', 'trusted3: status good') or diag($r->{error} // '');

# a client that trusts only our root: the staple is the third CA's
$r = handshake(vhost_port($trusted->{vhost}));
ok($r->{stapled} && !$r->{verified},
   'trusted3: a client trusting only the issuing root cannot verify it '
   . '(signed by the third CA indeed)')
    or diag($r->{stapled} ? 'verified' : 'no staple');

my @good = grep { /\[staple:info\].*OCSP for CN=trusted3\.localhost .*: good in / }
    server_log_lines(qr/OCSP for CN=/);
ok(scalar @good, 'trusted3: the fetch is logged as good');

# the other CA stays untrusted
$r = handshake(vhost_port($other->{vhost}), ca => pki_file('roots_with_third.pem'));
ok($r->{ok}, 'othersigned: handshake completes') or diag($r->{error});
ok(!$r->{stapled}, 'othersigned: no staple');
ok(responder_count('othersigned') >= 1, 'othersigned: the responder was asked');
my $serial = cert_serial('othersigned');
my @warn = grep {
    /\[staple:warn\].*OCSP for CN=othersigned\.localhost \(serial \Q$serial\E\) from .*: response rejected \(signature\): /
} server_log_lines(qr/OCSP for CN=/);
ok(scalar @warn, 'othersigned: a warn line says the signature was rejected')
    or diag(grep { /othersigned/ } server_log_lines());

# one Must-Staple error line with each failed attempt (all of them: it never
# had a valid response)
my @attempts = grep { /\[staple:warn\].*OCSP for CN=othersigned\.localhost .*; no valid response to staple; / }
    server_log_lines(qr/OCSP for CN=/);
my ($count, @problems) = must_staple_errors('othersigned');
ok($count && !@problems && $count >= @attempts - 1,
   sprintf 'othersigned: %d Must-Staple error lines for %d failed attempts',
   $count, scalar @attempts)
    or diag(@problems);

# --- several StapleTrustedCertificate lines add up ------------------------------------
# A server of its own with two lines: the third CA (admits the OCSPSigning
# certificates it issued) and the other CA's responder certificate itself
# (trusted exactly). Responses for one leaf are signed by the third CA's
# responder, for another by the other CA's responder, for a third by the
# "stranger" certificate, which no line names.

my $dir = tempdir('trusted-lines');
my %leaf = map { $_ => make_leaf($dir, "tl-$_") } qw(third other stranger);
my %signer = (third => 'third_ocsp', other => 'other_ocsp', stranger => 'stranger');
for my $k (keys %leaf) {
    proxy_mode("tl-$k", "sign:signer=$signer{$k};nmin=10")
        or BAIL_OUT("cannot set the responder's mode for tl-$k");
}
END { local $?; proxy_mode("tl-$_", 'default') for qw(third other stranger) }
my $node = StapleNode->new(
    name  => 'trusted-lines',
    dir   => "$dir/server",
    cert  => $leaf{third},
    certs => [$leaf{other}, $leaf{stranger}],
    directives => 'StapleTrustedCertificate "' . pki_file('third_root.pem') . "\"\n"
                . 'StapleTrustedCertificate "' . pki_file('other_ocsp.pem') . "\"\n",
);
my $started = eval { $node->start; 1 };
ok($started, 'a server with two StapleTrustedCertificate lines starts') or diag($@);
my $trust = pki_file('roots_with_third.pem');
$r = handshake(($node->ports_of('tl-third'))[0], ca => $trust);
ok($r->{stapled} && ($r->{cert_status} // '') eq 'good',
   'first line: a response of the third CA\'s responder is stapled')
    or diag(explain($r), $node->log_tail(10));
$r = handshake(($node->ports_of('tl-other'))[0]);
ok($r->{stapled} && ($r->{cert_status} // '') eq 'good',
   'second line: a response of the other CA\'s responder is stapled too')
    or diag(explain($r), $node->log_tail(10));
$r = handshake(($node->ports_of('tl-stranger'))[0]);
ok(!$r->{stapled}, 'a signer no line names: not stapled') or diag(explain($r));
ok(scalar $node->start_lines(qr/OCSP for CN=tl-stranger\.localhost .*response rejected \(signature\)/),
   'its response is rejected for its signature') or diag($node->log_tail(10));
$node->stop;
