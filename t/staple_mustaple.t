# A Must-Staple certificate gets a good staple.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;

plan tests => 4;

my $r = handshake(vhost_port('staple_mustaple'));

ok($r->{ok}, 'handshake completes') or diag($r->{error});
ok($r->{stapled}, 'a staple was sent');
ok($r->{verified}, 'response signature verifies')
    or diag($r->{verify_error} // $r->{resp_status} // 'no staple');
is($r->{cert_status}, 'good', 'status good') or diag($r->{error} // '');
