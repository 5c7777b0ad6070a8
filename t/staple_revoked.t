# A revoked certificate is stapled with a verified "revoked" response.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;

plan tests => 5;

my $r = handshake(vhost_port('staple_revoked'));

ok($r->{ok}, 'handshake completes (the client does not enforce)') or diag($r->{error});
ok($r->{stapled}, 'a staple was sent');
is($r->{resp_status}, 'successful', 'response status successful');
ok($r->{verified}, 'response signature verifies')
    or diag($r->{verify_error} // 'no error recorded');
is($r->{cert_status}, 'revoked', 'status revoked') or diag($r->{error} // '');
