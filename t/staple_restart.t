# Staples survive restarts: a server of its own (t/lib/StapleNode.pm) with
# StapleStore in a temporary directory staples the first handshake after
# -k restart, -k graceful and stop + start while its responder hangs, from
# the response it stored; the store file is private to the server's User;
# a corrupt or an expired store file is logged, removed and replaced by a
# fetch, never fatal.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(run_cmd slurp tempdir);
use Time::HiRes qw(time);
use Time::Local qw(timegm);

plan tests => 31;

my $NAME = 'restart';    # proxy counter and mode name of our certificate
my $dir  = tempdir('restart');
my $leaf = make_leaf($dir, $NAME);
my $store = "$dir/store";
my $file  = "$store/$leaf->{id}.der";
my $node  = StapleNode->new(name => 'restart', cert => $leaf, store => $store,
                            dir => "$dir/server");

my $mode_set;
END { proxy_mode($NAME, 'default') if $mode_set }

# one ok() for "stapled, successful, verified, good, not expired"
sub staple_ok {
    my ($r, $what) = @_;
    my @bad = staple_problems($r);
    push @bad, 'nextUpdate not in the future'
        if $r->{stapled} && !($r->{next_update} && $r->{next_update} > time);
    ok(!@bad, $what) or diag(join("\n", @bad) . "\n" . $node->log_tail(25));
}

sub try_start {
    my ($what) = @_;
    my $ok = eval { $node->start; 1 };
    ok($ok, $what) or diag($@);
    return $ok;
}

# --- first start, responder reachable ------------------------------------------

my $c0 = responder_count($NAME);
try_start('server starts') or BAIL_OUT('cannot start a test server');
my $r = $node->handshake;
staple_ok($r, 'first start: first handshake stapled (good, verified)');
is(responder_count($NAME) - $c0, 1, 'one responder request for the first start');

# the store: a private directory of User, the file readable by it only
my $uid = $> == 0 ? scalar getpwnam('nobody') : $>;
my @fst = stat $file;
ok(@fst, "store file <id>.der exists") or diag(`ls -la $store 2>&1`);
is(sprintf('%04o', ($fst[2] // 0) & 07777), '0600', 'store file mode 0600');
is($fst[4], $uid, 'store file owned by the server\'s User');
my @dst = stat $store;
is(sprintf('%04o', ($dst[2] // 0) & 07777), '0700', 'store directory mode 0700');
is($dst[4], $uid, 'store directory owned by the server\'s User');
ok(defined $r->{der} && (slurp($file) // '') eq $r->{der},
   'the store file holds the response that was stapled');

# --- the responder hangs: every kind of restart staples from the store -------

ok(proxy_mode($NAME, 'hang'), 'responder for our certificate made to hang');
$mode_set = 1;
my $c1 = responder_count($NAME);

for my $how (qw(restart graceful)) {
    my $ok = eval { $node->restart($how); 1 };
    ok($ok, "-k $how: a new generation comes up") or diag($@);
    diag(sprintf "-k %s took %.2f s", $how, $node->{restart_time} // -1);
    staple_ok($node->handshake, "-k $how: first handshake stapled while the responder hangs");
}

ok($node->stop, 'stop: clean');
my $t0 = time;
try_start('start again while the responder hangs');
diag(sprintf "stop + start took %.2f s", time - $t0);
staple_ok($node->handshake, 'stop + start: first handshake stapled while the responder hangs');
is(responder_count($NAME) - $c1, 0,
   'no responder request while the stored response is fresh');

ok(proxy_mode($NAME, 'default'), 'responder reachable again');
$mode_set = 0;

# --- a corrupt store file ------------------------------------------------------

$node->stop;
{
    # overwrite in place: owner and mode stay the server's
    open my $fh, '+<:raw', $file or die "$file: $!";
    truncate $fh, 0;
    print $fh map { chr(int rand 256) } 1 .. 700;
    close $fh;
}
my $c2 = responder_count($NAME);
try_start('starts with a corrupt store file');
staple_ok($node->handshake, 'corrupt store file: first handshake stapled after a fetch');
my @logged = $node->start_lines(qr/\Q$file\E/);
ok(@logged, 'the error log names the corrupt file')
    or diag($node->log_tail(20));
diag("logged: $_") for @logged;
is(responder_count($NAME) - $c2, 1, 'the corrupt file was replaced by one fetch');
$r = $node->handshake;
ok(defined $r->{der} && (slurp($file) // '') eq $r->{der},
   'the store file holds the new response');

# --- an expired store file -----------------------------------------------------

SKIP: {
    skip 'faketime is not installed: cannot make an expired response', 6
        unless system('sh', '-c', 'command -v faketime >/dev/null 2>&1') == 0;

    my $req   = "$dir/stale.req";
    my $stale = "$dir/stale.der";
    my ($rc, $out) = run_cmd(['openssl', 'ocsp', '-issuer', pki_file('inter.pem'),
                              '-cert', $leaf->{crt}, '-no_nonce', '-reqout', $req],
                             merge => 1);
    ($rc, $out) = run_cmd(['faketime', '-f', '-10m', 'openssl', 'ocsp',
                           '-index', pki_file('index.txt'), '-CA', pki_file('inter.pem'),
                           '-rsigner', pki_file('ocsp.pem'), '-rkey', pki_file('ocsp.key'),
                           '-reqin', $req, '-respout', $stale, '-nmin', '5'], merge => 1)
        unless $rc;
    my $next = $rc ? undef : next_update_of($stale);
    ok(!$rc && defined $next && $next < time,
       'made a response whose nextUpdate is past')
        or diag("status $rc: $out; nextUpdate " . ($next // 'unknown'));

    $node->stop;
    {
        open my $fh, '+<:raw', $file or die "$file: $!";
        truncate $fh, 0;
        print $fh slurp($stale);
        close $fh;
    }
    my $c3 = responder_count($NAME);
    try_start('starts with an expired store file');
    my $r = $node->handshake;
    staple_ok($r, 'expired store file: first handshake stapled after a fetch');
    ok($r->{der} && $r->{der} ne slurp($stale), 'not the expired response');
    my @logged = $node->start_lines(qr/\Q$file\E/);
    ok(@logged, 'the error log names the expired file')
        or diag($node->log_tail(20));
    diag("logged: $_") for @logged;
    is(responder_count($NAME) - $c3, 1, 'the expired file was replaced by one fetch');
}

ok($node->stop, 'server stops cleanly');

# nextUpdate of a DER response, epoch seconds (undef when absent)
sub next_update_of {
    my ($der) = @_;
    my ($rc, $text) = run_cmd(['openssl', 'ocsp', '-respin', $der, '-resp_text',
                               '-noverify'], merge => 1);
    my ($mon, $day, $h, $m, $s, $y) =
        $text =~ /Next Update:\s+(\w{3})\s+(\d+)\s+(\d+):(\d+):(\d+)\s+(\d{4})\s+GMT/
        or return;
    my %mon = (Jan => 0, Feb => 1, Mar => 2, Apr => 3, May => 4, Jun => 5, Jul => 6,
               Aug => 7, Sep => 8, Oct => 9, Nov => 10, Dec => 11);
    return timegm($s, $m, $h, $day, $mon{$mon}, $y);
}
