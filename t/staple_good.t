# The first handshake to a vhost after start is stapled with a good,
# verified response for its certificate.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;

plan tests => 7;

my $r = handshake(vhost_port('staple_good'));
diag(sprintf "first handshake to staple_good: %.3f s", $r->{elapsed});

ok($r->{ok}, 'handshake completes') or diag($r->{error});
ok($r->{stapled}, 'a staple was sent');
is($r->{resp_status}, 'successful', 'response status successful');
ok($r->{verified}, 'response signature verifies against the CA')
    or diag($r->{verify_error} // 'no error recorded');
is($r->{cert_status}, 'good', 'status good for the leaf\'s CertID')
    or diag($r->{error} // '');
ok(defined $r->{next_update} && $r->{next_update} > time,
   'nextUpdate in the future');
ok(defined $r->{this_update} && $r->{this_update} <= time + 300,
   'thisUpdate not in the future');
