# Freshness only moves forward, on a server of its own (t/lib/StapleNode.pm),
# each refresh asked for on the status page (POST ?refresh=<id>):
#
#   fresh-old  the responder then answers an older response (signed five
#              minutes in the past, as a replay on plain HTTP would be):
#              refused, counted as "older", the staple is the same bytes
#   fresh-rev  revoked; the responder then answers a newer *good* response
#              (from an index where the serial is valid): refused, counted
#              as "unrevoked", the staple still says revoked
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StapleFaults ();
use StaplePKI qw(make_leaf);
use StapleProc qw(slurp spit tempdir wait_until);
use JSON::PP ();

plan skip_all => StapleFaults::faketime_missing() unless StapleFaults::have_faketime();
plan tests => 12;

my $dir = tempdir('freshness');
my $old = make_leaf($dir, 'fresh-old');
my $rev = make_leaf($dir, 'fresh-rev', serial_of => 'revoked');

# an index in which revoked.crt's serial is valid, for the "good" answer
my $index = slurp(pki_file('index.txt')) // die "no index.txt\n";
$index =~ s/^R\t(\S+)\t\S+\t(\S+)\t/V\t$1\t\t$2\t/mg;
spit(pki_file('index_unrevoked.txt'), $index, 0644);

my $node = StapleNode->new(
    name  => 'freshness',
    dir   => "$dir/server",
    cert  => $old,
    certs => [$rev],
    http  => 1,
    extra => qq{<Location "/staple-status">\n    SetHandler staple-status\n</Location>\n},
);
END { local $?; proxy_mode($_, 'default') for qw(fresh-old fresh-rev) }

my $ok = eval { $node->start; 1 };
ok($ok, 'server starts') or diag($@);
BAIL_OUT('cannot start the test server') unless $ok;

sub der_of { $node->http_get("/staple-status?der=$_[0]{id}")->{body} }
sub outcomes {
    my $j = eval { JSON::PP::decode_json($node->http_get('/staple-status?json')->{body}) };
    return $j ? $j->{fetches} : {};
}
sub refresh {
    my ($leaf) = @_;
    my $n = responder_count($leaf->{name});
    my $mark = $node->log_mark;
    my $r = $node->http_get("/staple-status?refresh=$leaf->{id}", method => 'POST');
    return $r->{status} == 202
        && wait_until(10, sub { scalar $node->log_lines(qr/OCSP for CN=\Q$leaf->{name}\E\.localhost .*(?:valid for|refused|rejected)/, $mark) }, 0.1)
        && responder_count($leaf->{name}) > $n;
}

# --- an older response replayed ---------------------------------------------------

my $r = $node->handshake;
ok(staple_good($r), 'fresh-old: stapled');
my $before = der_of($old);
ok(proxy_mode('fresh-old', 'sign:shift=-5m;nmin=30'),
   'the responder now answers with a response signed five minutes ago');
ok(refresh($old), 'fresh-old: refreshed');
ok(scalar $node->log_lines(qr/\[staple:warn\].*OCSP for CN=fresh-old\.localhost .*response refused \(older\): good, producedAt \S+, thisUpdate \S+, is older than the response held \(good, producedAt/),
   'the older response is refused, the log gives both times') or diag($node->log_tail(10));
is(der_of($old), $before, 'the response held is the same, byte for byte');
ok(staple_good($node->handshake), 'and it is stapled');
is(outcomes()->{older}, 1, 'the status page counts one "older"');

# --- revoked, then good ------------------------------------------------------------

my $rport = ($node->ports_of('fresh-rev'))[0];
$r = handshake($rport);
is($r->{cert_status}, 'revoked', 'fresh-rev: stapled, revoked');
ok(proxy_mode('fresh-rev', 'sign:index=index_unrevoked.txt;nmin=30'),
   'the responder now answers a newer "good"');
ok(refresh($rev) && scalar $node->log_lines(qr/\[staple:warn\].*OCSP for CN=fresh-rev\.localhost .*response refused \(unrevoked\): good, .* after the response held \(revoked, .*\): a revocation is never undone/),
   'the good response is refused: revoked is never replaced by good') or diag($node->log_tail(10));
is(handshake($rport)->{cert_status}, 'revoked', 'the staple still says revoked');
$node->stop;
