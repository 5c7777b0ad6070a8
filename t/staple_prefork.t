# Many full handshakes from parallel clients, spread over the server's
# processes: every one is stapled (verified, good), and the responder was
# asked only once for the certificate.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use POSIX ();
use Time::HiRes qw(time);

my $CLIENTS = 8;
my $PER_CLIENT = 25;
my $TOTAL = $CLIENTS * $PER_CLIENT;
my $prefork = (Apache::Test::vars('staple_mpm') // '') eq 'prefork';

plan tests => 4 + ($prefork ? 1 : 0);

if ($prefork) {
    # StartServers 8 / MinSpareServers 8: give the parent a moment if it is
    # still spawning
    wait_until(10, sub { server_children() >= 8 });
    my @kids = server_children();
    diag(scalar(@kids) . " httpd children under prefork");
    ok(@kids >= 8, 'at least 8 httpd children run');
}

my $port = vhost_port('staple_good');
my @pids;
my %pipe;
my $t0 = time;
for my $c (1 .. $CLIENTS) {
    pipe(my $rd, my $wr) or die "pipe: $!";
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        close $rd;
        alarm 120;
        for (1 .. $PER_CLIENT) {
            my $r = handshake($port, timeout => 5);
            printf $wr "%d %d %d %s %.4f %s\n", $r->{ok} ? 1 : 0,
                $r->{stapled} ? 1 : 0, $r->{verified} ? 1 : 0,
                $r->{cert_status} // '-', $r->{elapsed},
                ($r->{error} // '') =~ s/\s+/_/gr;
        }
        close $wr;
        POSIX::_exit(0);    # no Test::More END blocks in the children
    }
    close $wr;
    $pipe{$pid} = $rd;
    push @pids, $pid;
}

my @results;
for my $pid (@pids) {
    my $rd = $pipe{$pid};
    push @results, <$rd>;
    close $rd;
    waitpid $pid, 0;
}
my $wall = time - $t0;

my ($ok, $stapled, $good, @bad) = (0, 0, 0);
for (@results) {
    my ($hs, $st, $ver, $status, $elapsed, $err) = split ' ';
    $ok++ if $hs;
    $stapled++ if $st;
    if ($st && $ver && $status eq 'good') {
        $good++;
    }
    elsif (@bad < 5) {
        push @bad, $_;
    }
}
diag(sprintf "%d handshakes from %d clients in %.2f s", scalar @results, $CLIENTS, $wall);

is($ok, $TOTAL, "all $TOTAL handshakes complete");
is($stapled, $TOTAL, 'all stapled');
is($good, $TOTAL, 'all staples verified and good') or diag("e.g.:\n", @bad);

my $count = responder_count('good');
diag("responder requests for good: $count");
is($count, 1, 'the responder was asked exactly once for good');
