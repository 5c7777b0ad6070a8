# Operator control on the status handler, on a server of its own
# (t/lib/StapleNode.pm) with two certificates:
#
#   POST ?refresh=<id>   202 naming it, and the refresher asks the responder
#                        at once (its request count goes up within seconds)
#   POST ?refresh        202 naming both
#   GET ?refresh         405; a POST from another site (Origin,
#                        Sec-Fetch-Site) 403; an unknown id 404; not an id 400
#   GET ?der=<id>        the response held, application/ocsp-response, as
#                        openssl ocsp -respin reads it; 404 for an unknown id
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(run_cmd spit tempdir wait_until);

my $dir = tempdir('control');
my $a = make_leaf($dir, 'ctl-a');
my $b = make_leaf($dir, 'ctl-b');
my $node = StapleNode->new(
    name  => 'control',
    dir   => "$dir/server",
    cert  => $a,
    certs => [$b],
    http  => 1,
    modules => ['authz_host'],
    extra => <<'EOF',
<Location "/staple-status">
    SetHandler staple-status
    Require ip 127.0.0.1
</Location>
EOF
);

plan tests => 16;

my $ok = eval { $node->start; 1 };
ok($ok, 'server with two certificates starts') or diag($@);
BAIL_OUT('cannot start the test server') unless $ok;
ok(staple_good($node->handshake), 'stapled');

sub post { $node->http_get($_[0], method => 'POST', headers => $_[1] || {}) }

my $n0 = responder_count('ctl-a');
my $r = post("/staple-status?refresh=$a->{id}");
is($r->{status}, 202, 'POST ?refresh=<id>: 202 Accepted');
like($r->{body}, qr/^refresh scheduled for 1 certificate\(s\):\n\Q$a->{id}\E CN=ctl-a\.localhost\n\z/,
     'the answer names what was scheduled') or diag($r->{body});
ok(wait_until(10, sub { responder_count('ctl-a') > $n0 }, 0.1),
   'the refresher asked the responder at once') or diag($node->log_tail(10));

my ($na, $nb) = (responder_count('ctl-a'), responder_count('ctl-b'));
$r = post('/staple-status?refresh');
ok($r->{status} == 202 && $r->{body} =~ /^refresh scheduled for 2 certificate\(s\):/
   && $r->{body} =~ /\Q$a->{id}\E/ && $r->{body} =~ /\Q$b->{id}\E/,
   'POST ?refresh: both scheduled') or diag($r->{body});
ok(wait_until(10, sub { responder_count('ctl-a') > $na && responder_count('ctl-b') > $nb }, 0.1),
   'both fetched again');

is($node->http_get('/staple-status?refresh')->{status}, 405, 'GET ?refresh: 405');
is(post("/staple-status?refresh=$a->{id}", { Origin => 'http://attacker.example' })->{status},
   403, 'a POST with a foreign Origin: 403');
is(post("/staple-status?refresh=$a->{id}", { 'Sec-Fetch-Site' => 'cross-site' })->{status},
   403, 'a POST with Sec-Fetch-Site: cross-site: 403');
is(post('/staple-status?refresh=' . ('0' x 40))->{status}, 404, 'an id not stapled here: 404');
is(post('/staple-status?refresh=xyz')->{status}, 400, 'not an id: 400');

$r = $node->http_get("/staple-status?der=$a->{id}");
ok($r->{status} == 200 && ($r->{headers}{'content-type'} // '') eq 'application/ocsp-response',
   'GET ?der=<id>: 200, application/ocsp-response');
my $der = "$dir/a.der";
spit($der, $r->{body});
my ($rc, $out) = run_cmd(['openssl', 'ocsp', '-respin', $der, '-issuer', pki_file('inter.pem'),
                          '-cert', $a->{crt}, '-CAfile', pki_file('root.pem')], merge => 1);
ok($rc == 0 && $out =~ /Response verify OK/ && $out =~ /: good/,
   'openssl ocsp -respin reads and verifies it') or diag($out);
is($node->http_get('/staple-status?der=' . ('0' x 40))->{status}, 404,
   'GET ?der= for an id not stapled here: 404');
is(post('/staple-status')->{status}, 405, 'POST without refresh: 405');
$node->stop;
