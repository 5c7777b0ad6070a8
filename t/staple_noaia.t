# Certificates without an OCSP responder URL (no AIA, self-signed) are
# served without a staple and reported once, at info level, at startup.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;

plan tests => 6;

my $r = handshake(vhost_port('staple_noaia'));
ok($r->{ok}, 'noaia: handshake completes') or diag($r->{error});
ok(!$r->{stapled}, 'noaia: no staple');

my @noaia = server_log_lines(qr/no OCSP responder URL/);
@noaia = grep { /noaia\.localhost/ } @noaia;
is(scalar @noaia, 1, 'noaia: exactly one "no OCSP responder URL" line since start')
    or diag("lines:\n", @noaia);
like($noaia[0] // '', qr/:info\]/, 'noaia: the line is at info level');

$r = handshake(vhost_port('staple_selfsigned'), ca => pki_file('selfsigned.crt'));
ok($r->{ok} && !$r->{stapled}, 'selfsigned: handshake completes without a staple')
    or diag($r->{error} // 'stapled');

my @self = grep { /selfsigned\.localhost/ } server_log_lines(qr/self-signed/);
is(scalar @self, 1, 'selfsigned: exactly one "self-signed" line since start')
    or diag("lines:\n", @self);
