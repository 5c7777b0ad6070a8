# The clock check: a server of its own (t/lib/StapleNode.pm) run under
# libfaketime (Debian package faketime) with its clock two minutes ahead.
# The responder's HTTP Date and the responses' producedAt say so: a
# warning names the offset and the responder, once, and the status page
# and the metrics give the offset. Within StapleResponseTimeSkew (300 s)
# the responses are still stapled.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(tempdir wait_until);
use JSON::PP ();

my ($lib) = grep { -f } map { "$_/faketime/libfaketime.so.1" }
    '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib';
plan skip_all => 'libfaketime is not installed (Debian package faketime)' unless $lib;
# libfaketime and the AddressSanitizer runtime hang when both are preloaded
# (each intercepts the other's start-up calls): under the sanitizer the
# clock check is left to the registry's unit tests.
plan skip_all => 'libfaketime cannot be preloaded with AddressSanitizer'
    if $ENV{STAPLE_SANITIZER_CC};
plan tests => 7;

my $dir  = tempdir('clock');
my $leaf = make_leaf($dir, 'clock-behind');
my $node = StapleNode->new(
    name  => 'clock',
    dir   => "$dir/server",
    cert  => $leaf,
    http  => 1,
    env   => { LD_PRELOAD => $lib, FAKETIME => '+120s', FAKETIME_DONT_RESET => 1 },
    extra => qq{<Location "/staple-status">\n    SetHandler staple-status\n</Location>\n},
);
my $ok = eval { $node->start; 1 };
ok($ok, 'server starts with its clock 120 s ahead') or diag($@);
BAIL_OUT('cannot start the test server') unless $ok;

ok(staple_good($node->handshake), 'stapled all the same (within StapleResponseTimeSkew)');
my $url = 'http://127.0.0.1:' . proxy_port() . '/clock-behind/';
my @w = $node->log_lines(qr/\[staple:warn\].*the system clock is 1[12]\d s ahead of responder \Q$url\E: check NTP/);
is(scalar @w, 1, 'one warning names the offset and the responder') or diag($node->log_tail(10));

my $j = eval { JSON::PP::decode_json($node->http_get('/staple-status?json')->{body}) } || {};
my ($r) = grep { $_->{url} eq $url } @{ $j->{responders} || [] };
my $off = $r ? $r->{clock_offset_seconds} : undef;
ok(defined $off && $off >= 110 && $off <= 130, 'status JSON: clock_offset_seconds about 120')
    or diag(explain($r));
my $prom = $node->http_get('/staple-status?prometheus')->{body};
my ($m) = $prom =~ /^staple_responder_clock_offset_seconds\{responder="\Q$url\E"\} (-?\d+)$/m;
ok(defined $m && $m >= 110 && $m <= 130, 'metric staple_responder_clock_offset_seconds about 120')
    or diag($prom);

# another fetch within the hour: no second warning
my $n = responder_count('clock-behind');
$node->http_get("/staple-status?refresh=$leaf->{id}", method => 'POST');
ok(wait_until(10, sub { responder_count('clock-behind') > $n }, 0.1), 'fetched again');
@w = $node->log_lines(qr/the system clock is \d+ s ahead/);
is(scalar @w, 1, 'still one warning: at most one an hour per responder');
$node->stop;
