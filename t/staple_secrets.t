# No secrets in the open: a server of its own (t/lib/StapleNode.pm) with a
# password in StapleProxy (a closed port, so every fetch fails and says so)
# and in StapleForceURL. Neither password appears in the error log, on the
# status page (HTML, ?json, ?auto, ?prometheus), nor in the arguments of
# StapleEventCmd; the URLs are shown without it ("user@host").
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(free_port slurp tempdir wait_until);

my ($PROXY_PW, $FORCE_PW) = ('proxy-s3cret', 'force-s3cret');
my $dir  = tempdir('secrets');
my $leaf = make_leaf($dir, 'secret-x');

my ($recorder, $evlog) = event_program($dir, 'record-event');

my $closed = free_port();    # nothing listens there
my $force  = 'http://forceuser:' . $FORCE_PW . '@127.0.0.1:' . proxy_port() . '/secret-x/';
my $node = StapleNode->new(
    name  => 'secrets',
    dir   => "$dir/server",
    cert  => $leaf,
    http  => 1,
    directives => <<"EOF",
StapleProxy http://proxyuser:$PROXY_PW\@127.0.0.1:$closed/
StapleForceURL $force
StapleRetryDelay 1
StapleErrorCacheTimeout 2
StapleEventCmd "$recorder" "$evlog"
EOF
    extra => qq{<Location "/staple-status">\n    SetHandler staple-status\n</Location>\n},
);

plan tests => 9;

my $ok = eval { $node->start; 1 };
ok($ok, 'server with passwords in StapleProxy and StapleForceURL starts') or diag($@);
BAIL_OUT('cannot start the test server') unless $ok;

ok(wait_until(15, sub { -s $evlog && scalar $node->log_lines(qr/fetch failed/) >= 2 }, 0.1),
   'fetches through the proxy fail, are logged, and an event ran')
    or diag($node->log_tail(10));

my $log = slurp($node->logfile) // '';
unlike($log, qr/\Q$PROXY_PW\E|\Q$FORCE_PW\E/, 'error log: no password');
like($log, qr{fetch failed after [\d.]+ ms \(GET via StapleProxy http://proxyuser\@127\.0\.0\.1:$closed/\)},
     'error log: the proxy shown without its password');
like($log, qr{OCSP for CN=secret-x\.localhost \(serial \w+\) from http://forceuser\@127\.0\.0\.1:\d+/secret-x/: },
     'error log: the responder shown without its password');

my %page = map { $_ => $node->http_get("/staple-status$_") } ('', '?json', '?auto', '?prometheus');
my @leaks = grep { $page{$_}{body} =~ /\Q$PROXY_PW\E|\Q$FORCE_PW\E/ } sort keys %page;
ok(!@leaks, 'status page, every format: no password') or diag("leaks in: @leaks");
ok((grep { $page{$_}{status} == 200 } keys %page) == 4, 'every format answered');
like($page{'?json'}{body}, qr{"responder":"http://forceuser\@127\.0\.0\.1:\d+/secret-x/"},
     'status JSON: the responder without its password');

unlike(slurp($evlog) // '', qr/\Q$PROXY_PW\E|\Q$FORCE_PW\E/, 'event arguments: no password');
$node->stop;
