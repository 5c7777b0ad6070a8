package StapleProc;
# Processes, ports and bounded waits, in one place for the tests (t/TEST.PL,
# the .t files, the other t/lib modules) and for the scripts (scripts/lib.sh
# runs them with perl -I t/lib):
#
#   wait_until($secs, sub { ... }, $interval)   bounded polling
#   free_port($range), free_ports($n, $range)   TCP ports free on every interface
#   port_open($port)                   does 127.0.0.1:$port accept a connection?
#   run_cmd(\@cmd, %opt)               (exit code, stdout, stderr), time-limited
#   spawn(\@cmd, %opt)                 a background process, output to a file
#   alive($pid), children_of($pid)     is it running; its children (from /proc)
#   find_program($name)                its path on PATH, or undef
#   wait_gone($pid, $secs), stop_pid($pid, %opt)   bounded stops, SIGKILL last
#   read_reply($sock, $secs, $done)    what a socket sends within a time limit
#   request($port, $data, $secs, $done)   send, then read_reply, on loopback
#   http_get($port, $path, %opt)       one bounded HTTP/1.0 GET on loopback
#   slurp, spit, tempdir               files
#   track($obj, $rank), stop_on_signals()   stop what a test started, at exit
#
# Only core Perl modules: t/TEST.PL loads this before any Apache::Test
# configuration exists, and the scripts run without Apache::Test.
use strict;
use warnings;

use Exporter 'import';
use File::Basename ();
use File::Path ();
use File::Temp ();
use IO::Socket::INET ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

our @EXPORT_OK = qw(wait_until free_port free_ports port_open run_cmd spawn alive
                    children_of find_program wait_gone stop_pid read_reply request
                    http_get slurp spit tempdir);

my $MAIN_PID = $$;    # END blocks and signal handlers also run in forked children

my $CMD_TIMEOUT = 20;    # run_cmd's default limit (openssl, httpd -k, ...)

# Poll $cond every $interval (default 0.05) seconds until it returns true or
# $timeout seconds have passed; returns its last value.  $cond runs at least
# once.
sub wait_until {
    my ($timeout, $cond, $interval) = @_;
    $interval ||= 0.05;
    my $until = time + $timeout;
    while (1) {
        my $v = $cond->();
        return $v if $v || time >= $until;
        sleep $interval;
    }
}

# --- ports ---------------------------------------------------------------------

# Each kind of user picks from a range of its own, so that the suite's
# responders, the test nodes and a bench or demo running at the same time
# do not take each other's ports between the check and the bind.
# Apache::Test takes 8529 and up; everything stays below Linux's ephemeral
# range (32768-60999), where outgoing connections get their local ports.
my %RANGE = (
    node   => [10000, 19999],    # test nodes (StapleNode, StapleDaemon, tests)
    suite  => [20000, 29999],    # t/TEST: OCSP proxy, responder, cache daemon
    script => [30000, 32767],    # scripts/demo, scripts/bench, t/bench
);
my %HANDED;    # ports handed out by this process

# A TCP port of $range (default 'node') free on 0.0.0.0 and on 127.0.0.1
# (openssl ocsp binds every interface), never the same twice in a process.
sub free_port {
    my ($range) = @_;
    my ($lo, $hi) = @{ $RANGE{ $range // 'node' } || die "no port range '$range'\n" };
    for (1 .. 200) {
        my $port = $lo + int rand($hi - $lo + 1);
        next if $HANDED{$port};
        my $ok = 1;
        for my $addr ('0.0.0.0', '127.0.0.1') {
            my $s = IO::Socket::INET->new(LocalAddr => $addr, LocalPort => $port,
                                          Proto => 'tcp', Listen => 1, ReuseAddr => 1);
            if ($s) { close $s } else { $ok = 0; last }
        }
        next unless $ok;
        $HANDED{$port} = 1;
        return $port;
    }
    die "no free port found\n";
}

# $n distinct free ports of $range.
sub free_ports {
    my ($n, $range) = @_;
    return map { free_port($range) } 1 .. $n;
}

# Does 127.0.0.1:$port accept a TCP connection?  Never for `openssl ocsp`:
# a connection that sends nothing wedges it (StapleResponder asks it a real
# query instead).
sub port_open {
    my ($port, $timeout) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => $timeout || 1) or return 0;
    close $s;
    return 1;
}

# --- processes -------------------------------------------------------------------

# spawn(\@cmd, %opt) -> pid: the command in the background (never through a
# shell), stdin from /dev/null, so that it never holds the caller's
# terminal or pipes open.
#   out     file its stdout is appended to (default /dev/null)
#   err     file for its stderr (default: with stdout)
#   dir     directory to run it in
#   env     hashref of variables added to its environment
#   setsid  1: a session and process group of its own (a prefork httpd
#           signals its whole process group when it stops)
sub spawn {
    my ($cmd, %o) = @_;
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    return $pid if $pid;
    open STDIN, '<', '/dev/null';
    open STDOUT, '>>', $o{out} // '/dev/null' or POSIX::_exit(126);
    if (defined $o{err}) {
        open STDERR, '>>', $o{err} or POSIX::_exit(126);
    }
    else {
        open STDERR, '>&', \*STDOUT;
    }
    if (defined $o{dir}) {
        chdir $o{dir} or POSIX::_exit(127);
    }
    @ENV{ keys %{ $o{env} } } = values %{ $o{env} } if $o{env};
    POSIX::setsid() if $o{setsid};
    { no warnings 'exec'; exec { $cmd->[0] } @$cmd; }
    POSIX::_exit(127);
}

# run_cmd(\@cmd, %opt) -> ($code, $stdout, $stderr): the command (see
# spawn), waited for at most `timeout` seconds (default 20), then killed.
# $code is its exit status, 128 + N when signal N ended it, -1 when it was
# killed at the limit (then $stderr ends with a line saying so).
#   timeout  seconds
#   env      hashref of variables added to its environment
#   merge    1: stderr goes to $stdout, in order; $stderr is ''
sub run_cmd {
    my ($cmd, %o) = @_;
    my $timeout = $o{timeout} || $CMD_TIMEOUT;
    my $out = File::Temp->new(TEMPLATE => 'staple-cmd-XXXXXX', TMPDIR => 1);
    my $err = $o{merge} ? undef : File::Temp->new(TEMPLATE => 'staple-cmd-XXXXXX', TMPDIR => 1);
    my $pid = spawn($cmd, out => $out->filename, err => $err && $err->filename,
                    env => $o{env});
    my $status;
    my $done = wait_until($timeout, sub {
        return 0 unless waitpid($pid, WNOHANG) == $pid;
        $status = $?;
        return 1;
    });
    my $code;
    unless ($done) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
        $code = -1;
    }
    else {
        $code = $status & 127 ? 128 + ($status & 127) : $status >> 8;
    }
    my $stdout = slurp($out->filename) // '';
    my $stderr = $err ? slurp($err->filename) // '' : '';
    $stderr .= "killed after $timeout s: @$cmd\n" if $code == -1;
    return ($code, $stdout, $stderr);
}

# Is $pid running?  Reaps it when it is our child.  A zombie that is not
# ours (a shell's background job it has not waited for yet) is gone too.
sub alive {
    my ($pid) = @_;
    return 0 unless $pid && $pid > 0;
    return 0 if waitpid($pid, WNOHANG) == $pid;
    return 0 unless kill 0, $pid;
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $st = <$fh> // '';
        close $fh;
        return 0 if $st =~ /^.*\)\s+Z\s/s;
    }
    return 1;
}

# The pids whose parent is $ppid, in order, from /proc/PID/stat: "pid (comm)
# state ppid ...", where comm may hold spaces and parentheses.
sub children_of {
    my ($ppid) = @_;
    my @kids;
    opendir my $dh, '/proc' or return;
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        open my $st, '<', "/proc/$pid/stat" or next;
        my $line = <$st> // '';
        close $st;
        my ($parent) = $line =~ /^.*\)\s+\S+\s+(\d+)/s or next;
        push @kids, $pid if $parent == $ppid;
    }
    closedir $dh;
    return sort { $a <=> $b } @kids;
}

# The first executable $name on PATH (a path given as it is), or undef.
sub find_program {
    my ($name) = @_;
    return -x $name ? $name : undef if $name =~ m{/};
    for my $d (split /:/, $ENV{PATH} // '') {
        my $f = ($d eq '' ? '.' : $d) . "/$name";
        return $f if -f $f && -x _;
    }
    return;
}

# Wait up to $secs for $pid to exit; SIGKILL it after that.  Returns 1 when
# it exited by itself.
sub wait_gone {
    my ($pid, $secs) = @_;
    return 1 if wait_until($secs, sub { !alive($pid) });
    kill 'KILL', $pid;
    wait_until(3, sub { !alive($pid) });
    return 0;
}

# stop_pid($pid, %opt): send the signal (default TERM), then wait_gone.
# Returns 1 when it stopped within the time (or was not running).
#   signal   signal name
#   timeout  seconds (default 5)
#   cont     1: SIGCONT right after the signal (for a stopped process)
sub stop_pid {
    my ($pid, %o) = @_;
    # never kill(0) or kill(-1): our process group, or every process
    return 1 unless $pid && $pid > 1 && alive($pid);
    kill $o{signal} || 'TERM', $pid;
    kill 'CONT', $pid if $o{cont};
    return wait_gone($pid, $o{timeout} // 5);
}

# --- loopback sockets --------------------------------------------------------------

# read_reply($sock, $secs, $complete) -> ($data, $eof): what $sock sends
# until it closes ($eof 1), $secs seconds pass, or $complete->($data) says
# the reply is whole.
sub read_reply {
    my ($s, $secs, $complete) = @_;
    my ($buf, $eof) = ('', 0);
    my $until = time + $secs;
    while (1) {
        my $left = $until - time;
        last unless $left > 0;
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        my $ready = select($rin, undef, undef, $left);
        next if $ready < 0;    # a signal: look at the clock again
        last unless $ready;
        my $n = sysread $s, $buf, 65536, length $buf;
        unless ($n) { $eof = 1; last }
        last if $complete && $complete->($buf);
    }
    return ($buf, $eof);
}

# request($port, $data, $secs, $complete) -> ($reply, $eof), or () when
# 127.0.0.1:$port refuses: one connection, $data sent, then read_reply;
# $secs bounds the connect and, again, the reply.
sub request {
    my ($port, $data, $secs, $complete) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => $secs) or return;
    $s->autoflush(1);
    print $s $data;
    my ($buf, $eof) = read_reply($s, $secs, $complete);
    close $s;
    return ($buf, $eof);
}

# http_get($port, $path, %opt) -> { status, headers (lowercase names), body }:
# one GET over HTTP/1.0 from 127.0.0.1:$port, one connection, bounded by
# `timeout` seconds (default 5) for the connect and again for the answer;
# status 0 and an error when no complete answer came.  Options: method
# (default GET), headers (hashref, sent as they are), body (sent with its
# Content-Length).
sub http_get {
    my ($port, $path, %o) = @_;
    my $timeout = $o{timeout} || 5;
    my %res = (status => 0, headers => {}, body => '');
    my %h = (Host => 'localhost', Connection => 'close', %{ $o{headers} || {} });
    $h{'Content-Length'} = length $o{body} if defined $o{body};
    my $req = ($o{method} || 'GET') . " $path HTTP/1.0\r\n"
            . join('', map { "$_: $h{$_}\r\n" } sort keys %h) . "\r\n"
            . ($o{body} // '');
    my ($buf, $eof) = request($port, $req, $timeout)
        or return { %res, error => "connect: $!" };
    return { %res, error => 'timeout' } unless $eof;
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my ($line, @lines) = split /\r\n/, $head // '';
    ($res{status}) = ($line // '') =~ m{^HTTP/\d\.\d (\d{3})}
        or return { %res, error => 'no HTTP answer' };
    for (@lines) {
        $res{headers}{lc $1} = $2 if /^([^:]+):\s*(.*)$/;
    }
    $res{body} = $body // '';
    return \%res;
}

# --- files -------------------------------------------------------------------------

# The whole file, bytes as they are; undef when it cannot be read.
sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return;
    local $/;
    my $data = <$fh>;
    close $fh;
    return $data;
}

# Write $data to $file (its directory made if missing), then chmod $mode
# if given; dies on failure.
sub spit {
    my ($file, $data, $mode) = @_;
    my $dir = File::Basename::dirname($file);
    File::Path::make_path($dir) unless -d $dir;
    open my $fh, '>:raw', $file or die "$file: $!\n";
    print $fh $data;
    close $fh or die "$file: $!\n";
    chmod $mode, $file if defined $mode;
}

# A temporary directory that httpd children (User nobody) can traverse,
# removed at exit unless STAPLE_KEEP_TMP is set.
sub tempdir {
    my ($tag) = @_;
    my $dir = File::Temp::tempdir("staple-$tag-XXXXXX", TMPDIR => 1,
                                  CLEANUP => !$ENV{STAPLE_KEEP_TMP});
    chmod 0755, $dir or die "chmod $dir: $!\n";
    return $dir;
}

# --- what a test started is stopped when it ends --------------------------------

my %TRACKED;    # "$obj" => [rank, obj]: objects with a stop method

# track($obj, $rank): $obj->stop at exit, lower ranks first (servers, rank 0,
# before the daemons they use, rank 1); untrack($obj) when it stopped.
sub track   { my ($obj, $rank) = @_; $TRACKED{"$obj"} = [$rank // 0, $obj] }
sub untrack { delete $TRACKED{"$_[0]"} }

# A test killed by SIGTERM, SIGINT or SIGHUP still runs the END blocks that
# stop its servers and remove its temporary directories.
my $SIGNALS_SET;
sub stop_on_signals {
    return if $SIGNALS_SET++;
    for my $sig (qw(TERM INT HUP)) {
        $SIG{$sig} = sub {
            if ($$ == $MAIN_PID) {
                print STDERR "# caught SIG$sig, stopping test servers\n";
                exit 1;
            }
            $SIG{$sig} = 'DEFAULT';
            kill $sig, $$;
        };
    }
}

END {
    local $?;
    if ($$ == $MAIN_PID) {
        $_->[1]->stop for sort { $a->[0] <=> $b->[0] } values %TRACKED;
    }
}

1;
