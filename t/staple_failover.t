# Responder failover and the request method, on servers of their own
# (t/lib/StapleNode.pm):
#
#   fo-aia     its AIA names two OCSP URIs, the first dead (a closed port):
#              stapled at startup from the second, which is then the URL in
#              use; a refresh goes straight to it
#   fo-noget   its responder answers GET with HTTP 405 (ocsp-proxy's noget):
#              asked again at once with POST, stapled, and with POST only
#              from then on
#   fo-force   StapleForceURL with two URLs (the first dead) and
#              StapleRequestMethod post: stapled through the second, every
#              request a POST, the certificate's own AIA never asked
#
# The status page lists the responders for the firewall: URL, host, port,
# addresses, whether through StapleProxy, and each one's failures.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(free_port tempdir wait_until);
use JSON::PP ();

my $dir = tempdir('failover');
my $dead = 'http://127.0.0.1:' . free_port() . '/';    # nothing listens there
my $live = 'http://127.0.0.1:' . proxy_port() . '/fo-aia/';
my $aia = make_leaf($dir, 'fo-aia', aia => [$dead, $live]);
my $noget = make_leaf($dir, 'fo-noget');

my $status = qq{<Location "/staple-status">\n    SetHandler staple-status\n</Location>\n};
my $node = StapleNode->new(name => 'failover', dir => "$dir/a", cert => $aia,
                           certs => [$noget], http => 1, extra => $status);

plan tests => 19;

ok(proxy_mode('fo-noget', 'noget:405'), 'the responder of fo-noget refuses GET');
END { local $?; proxy_mode('fo-noget', 'default') }
my $ok = eval { $node->start; 1 };
ok($ok, 'server starts') or diag($@);
BAIL_OUT('cannot start the test server') unless $ok;

sub json {
    my $r = $node->http_get('/staple-status?json');
    return eval { JSON::PP::decode_json($r->{body}) } || {};
}
sub cert_of {
    my ($j, $leaf) = @_;
    return (grep { $_->{id} eq $leaf->{id} } @{ $j->{certificates} || [] })[0] || {};
}
sub responder_of {
    my ($j, $url) = @_;
    return (grep { $_->{url} eq $url } @{ $j->{responders} || [] })[0] || {};
}

# --- failover across the AIA's URLs -----------------------------------------------

ok(staple_good($node->handshake), 'fo-aia: first URL dead, stapled at startup from the second')
    or diag($node->log_tail(10));
my $j = json();
is(cert_of($j, $aia)->{responder}, $live, 'fo-aia: the status page names the second URL in use');
is_deeply(cert_of($j, $aia)->{responders}, [$dead, $live], 'fo-aia: both URLs listed, in order');
my $d = responder_of($j, $dead);
ok(($d->{fetches_failed} // 0) == 1 && ($d->{fetches_ok} // -1) == 0 && $d->{last_error},
   'the dead URL: one failure, its error') or diag(explain($d));
my $n = responder_count('fo-aia');
my $r = $node->http_get("/staple-status?refresh=$aia->{id}", method => 'POST');
is($r->{status}, 202, 'fo-aia: a refresh asked for');
ok(wait_until(10, sub { responder_count('fo-aia') > $n }, 0.1), 'fo-aia: fetched again');
is(responder_of(json(), $dead)->{fetches_failed}, 1,
   'fo-aia: straight to the second URL: the dead one was not asked again');
my $l = responder_of(json(), $live);
ok($l->{host} eq '127.0.0.1' && $l->{port} == proxy_port() && !$l->{via_proxy}
   && grep({ $_ eq '127.0.0.1' } @{ $l->{addresses} || [] }),
   'for the firewall: host, port, addresses, not through StapleProxy') or diag(explain($l));

# --- a responder that refuses GET ---------------------------------------------------------

ok(staple_good(handshake(($node->ports_of('fo-noget'))[0])), 'fo-noget: stapled');
ok(scalar $node->log_lines(qr/\[staple:info\].*OCSP responder http:\S+\/fo-noget\/ answers GET with HTTP status 405: asking it with POST from now on/),
   'fo-noget: the log says POST from now on') or diag($node->log_tail(10));
my @m = map { (split ' ')[2] } responder_requests('fo-noget');
is("@m[0,1]", 'GET POST', 'fo-noget: the GET refused, then the same fetch with POST');
$n = @m;
$r = $node->http_get("/staple-status?refresh=$noget->{id}", method => 'POST');
ok($r->{status} == 202 && wait_until(10, sub { responder_count('fo-noget') > $n }, 0.1),
   'fo-noget: fetched again');
@m = map { (split ' ')[2] } responder_requests('fo-noget');
is($m[-1], 'POST', 'fo-noget: with POST at once');
is(responder_of(json(), 'http://127.0.0.1:' . proxy_port() . '/fo-noget/')->{method}, 'POST',
   'fo-noget: the status page says POST');
$node->stop;

# --- StapleForceURL with two URLs, StapleRequestMethod post -----------------------------

my $force = make_leaf($dir, 'fo-force', aia => ['http://127.0.0.1:' . proxy_port() . '/fo-force-aia/']);
my $node2 = StapleNode->new(
    name => 'failover-force', dir => "$dir/b", cert => $force,
    directives => "StapleForceURL $dead http://127.0.0.1:" . proxy_port() . "/fo-force/\n"
                . "StapleRequestMethod post\n");
$ok = eval { $node2->start; 1 };
ok($ok && staple_good($node2->handshake), 'fo-force: stapled through the second StapleForceURL')
    or diag($@ // '', $node2->log_tail(10));
@m = map { (split ' ')[2] } responder_requests('fo-force');
ok(@m && !grep({ $_ ne 'POST' } @m), 'StapleRequestMethod post: every request a POST')
    or diag("@m");
is(responder_count('fo-force-aia'), 0, "the certificate's own AIA was never asked");
$node2->stop;
