# Operator control on the status handler, on a server of its own
# (t/lib/StapleNode.pm) with two certificates:
#
#   POST ?refresh=<id>   202 naming it, and the refresher asks the responder
#                        at once (its request count goes up within seconds);
#                        asked again within 5 s: 202 saying it was not
#                        scheduled, and no second fetch
#   POST ?refresh        202 naming both (the one asked for less than 5 s
#                        ago as not scheduled)
#   GET ?refresh         405; a POST from another site (Origin,
#                        Sec-Fetch-Site) 403; an unknown id 404; not an id 400
#   Host                 a name that is not the server's (DNS rebinding: the
#                        Origin matches it) 403, saying which and the fix;
#                        localhost and IP addresses are the server's, and
#                        in a virtual host its ServerName and ServerAlias
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
use StapleProc qw(free_port run_cmd spit tempdir wait_until);
use Time::HiRes ();

my $dir = tempdir('control');
my $a = make_leaf($dir, 'ctl-a');
my $b = make_leaf($dir, 'ctl-b');
my $vport = free_port(); # a virtual host with names of its own
my $node = StapleNode->new(
    name  => 'control',
    dir   => "$dir/server",
    cert  => $a,
    certs => [$b],
    http  => 1,
    modules => ['authz_host'],
    extra => <<"EOF",
<Location "/staple-status">
    SetHandler staple-status
    Require ip 127.0.0.1
</Location>
Listen 127.0.0.1:$vport http
<VirtualHost 127.0.0.1:$vport>
    ServerName ctl.example
    ServerAlias alias.example *.wild.example
</VirtualHost>
EOF
);

plan tests => 25;

my $ok = eval { $node->start; 1 };
ok($ok, 'server with two certificates starts') or diag($@);
BAIL_OUT('cannot start the test server') unless $ok;
ok(staple_good($node->handshake), 'stapled');

sub post { $node->http_get($_[0], method => 'POST', headers => $_[1] || {}) }

my ($n0, $nb0) = (responder_count('ctl-a'), responder_count('ctl-b'));
my $t_a = Time::HiRes::time();
my $r = post("/staple-status?refresh=$a->{id}");
is($r->{status}, 202, 'POST ?refresh=<id>: 202 Accepted');
like($r->{body}, qr/^refresh scheduled for 1 certificate\(s\):\n\Q$a->{id}\E CN=ctl-a\.localhost\n\z/,
     'the answer names what was scheduled') or diag($r->{body});

# at most one refresh per certificate every 5 s
$r = post("/staple-status?refresh=$a->{id}");
ok($r->{status} == 202 && $r->{body} eq "refresh scheduled for 0 certificate(s):\n"
   . "not scheduled, refresh asked for less than 5 s ago: 1 certificate(s):\n"
   . "$a->{id} CN=ctl-a.localhost\n",
   'asked again at once: 202, the answer says it was not scheduled') or diag($r->{body});
my $t_all = Time::HiRes::time();
$r = post('/staple-status?refresh');
ok($r->{status} == 202 && $r->{body} eq "refresh scheduled for 1 certificate(s):\n"
   . "$b->{id} CN=ctl-b.localhost\n"
   . "not scheduled, refresh asked for less than 5 s ago: 1 certificate(s):\n"
   . "$a->{id} CN=ctl-a.localhost\n",
   'POST ?refresh: the other one scheduled, not the one just asked for') or diag($r->{body});
ok(wait_until(10, sub { responder_count('ctl-a') > $n0 && responder_count('ctl-b') > $nb0 }, 0.1),
   'the refresher asked the responder at once') or diag($node->log_tail(10));
SKIP: {
    # once fetched, still within 5 s of the ask: not fetched again
    skip 'the first fetch came too late to ask again within 5 s of the ask', 1
        if Time::HiRes::time() - $t_a > 3.5;
    $r = post("/staple-status?refresh=$a->{id}");
    sleep 2;
    ok($r->{status} == 202 && $r->{body} =~ /^not scheduled, .*\n\Q$a->{id}\E /m
       && responder_count('ctl-a') == $n0 + 1,
       'asked again after the fetch, within 5 s: not scheduled, not fetched again')
        or diag($r->{body}, responder_count('ctl-a') - $n0, ' fetch(es)');
}

# 5 s after the last ask, both are scheduled again
my $wait = $t_all + 5.2 - Time::HiRes::time();
Time::HiRes::sleep($wait) if $wait > 0;
my ($na, $nb) = (responder_count('ctl-a'), responder_count('ctl-b'));
$r = post('/staple-status?refresh');
ok($r->{status} == 202 && $r->{body} =~ /^refresh scheduled for 2 certificate\(s\):/
   && $r->{body} =~ /\Q$a->{id}\E/ && $r->{body} =~ /\Q$b->{id}\E/
   && $r->{body} !~ /not scheduled/,
   'POST ?refresh 5 s later: both scheduled') or diag($r->{body});
ok(wait_until(10, sub { responder_count('ctl-a') > $na && responder_count('ctl-b') > $nb }, 0.1),
   'both fetched again');

# DNS rebinding: a page of evil.example whose name now resolves to this
# server makes same-origin requests, with its own name as Host
my $mark = $node->log_mark;
$r = post("/staple-status?refresh=$a->{id}",
          { Host => 'evil.example', Origin => 'http://evil.example' });
ok($r->{status} == 403 && $r->{body} =~ /Host evil\.example is not a name of this server/
   && $r->{body} =~ /ServerAlias evil\.example/,
   'Host evil.example, Origin the same: 403, the answer names the host and the fix')
    or diag("$r->{status} $r->{body}");
ok(scalar $node->log_lines(qr/\[staple:warn\].*refresh refused: Host evil\.example is not a name of this server \(ServerName localhost.*add "ServerAlias evil\.example"/, $mark),
   'and the error log says so') or diag($node->log_tail(5));
is(post("/staple-status?refresh=$a->{id}", { Host => 'evil.example' })->{status}, 403,
   'Host evil.example without Origin: 403 too');
my $port = $node->http_port;
my @own = map { [$_, { Host => $_, Origin => "http://$_" }] }
    ('localhost', "localhost:$port", "127.0.0.1:$port", "[::1]:$port");
is(join(' ', map { post("/staple-status?refresh=$a->{id}", $_->[1])->{status} } @own),
   '202 202 202 202', 'Host localhost, 127.0.0.1 or [::1], with or without a port: 202');
my @vhost = map { $node->http_get("/staple-status?refresh=$a->{id}", method => 'POST', port => $vport,
                                   headers => { Host => $_, Origin => "http://$_" }) }
    ('ctl.example', "alias.example:$vport", 'x.wild.example', 'localhost.example');
is(join(' ', map { $_->{status} } @vhost), '202 202 202 403',
   'a virtual host: its ServerName, a ServerAlias, a wildcard one: 202; another name: 403');
like($vhost[-1]{body}, qr/Host localhost\.example is not a name of this server \(ServerName ctl\.example,/,
     'the answer names its ServerName');

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
