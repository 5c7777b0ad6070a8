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
use StaplePKI qw(cert_serial);

plan tests => 11;

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
