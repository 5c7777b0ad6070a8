package StapleDaemon;
# redis-server and memcached for the tests of shared StapleCache backends:
# each on a free loopback port, persisting nothing, stopped by PID at the
# end of the test that started it.
#
#   my $redis = StapleDaemon->start('redis', $dir);   # or 'memcached'
#   $redis->addr;  $redis->pause;  $redis->resume;  $redis->stop;
#   $redis->has_key(StapleDaemon::staple_key($leaf->{id}));
#   $redis->redis_cmd('SET', $key, $bytes);  $redis->redis_get($key);
#   StapleDaemon::staple_entry($der, $fetched_at_us)   # mod_staple's cache entry
#
# t/TEST.PL starts the suite's own (STAPLE_CACHE) from the same command
# line (argv) and waits for it with the same probe (answers).
use strict;
use warnings;

use File::Spec::Functions qw(catfile);

use StapleProc qw(alive free_port request slurp spawn stop_pid wait_until);

# The command line of a $kind ('redis' or 'memcached') daemon on
# 127.0.0.1:$port that persists nothing ($dir: redis' working directory).
sub argv {
    my ($kind, $port, $dir) = @_;
    if ($kind eq 'redis') {
        return ('redis-server', '--port', $port, '--bind', '127.0.0.1',
                '--save', '', '--appendonly', 'no', '--protected-mode', 'no',
                '--daemonize', 'no', '--dir', $dir, '--logfile', '');
    }
    if ($kind eq 'memcached') {
        return ('memcached', '-l', '127.0.0.1', '-p', $port, '-U', '0', '-m', '16',
                ($> == 0 ? ('-u', 'nobody') : ()));
    }
    die "unknown daemon $kind\n";
}

# Send a raw protocol line to 127.0.0.1:$port, return what comes back
# within $timeout seconds (default 2; undef when nothing).
sub send_line {
    my ($port, $line, $timeout) = @_;
    # a complete reply for the line protocols used here
    my ($buf) = request($port, $line, $timeout || 2, sub {
        my ($reply) = @_;
        return 1 if $reply =~ /\r\n\z/ && $reply !~ /^\*/;
        if ($reply =~ /^\*(\d+)\r\n/) {
            my $lines = () = $reply =~ /\r\n/g;
            return $lines >= 1 + 2 * $1;
        }
        return 0;
    }) or return;
    return length $buf ? $buf : undef;
}

# Does a $kind daemon answer on $port (PING, or version)?
sub answers {
    my ($kind, $port) = @_;
    my $r = send_line($port, $kind eq 'redis' ? "PING\r\n" : "version\r\n", 1);
    return defined $r && $r =~ /^(\+PONG|VERSION)/ ? 1 : 0;
}

# start($kind, $dir): a $kind daemon on a free port, output in $dir/$kind.log.
sub start {
    my ($class, $kind, $dir) = @_;
    StapleProc::stop_on_signals();
    my $port = free_port();
    my $log = catfile($dir, "$kind.log");
    my $pid = spawn([argv($kind, $port, $dir)], out => $log);
    my $self = bless { kind => $kind, port => $port, pid => $pid, log => $log }, $class;
    StapleProc::track($self, 1);    # after the servers that use it
    my $ok = wait_until(10, sub {
        return -1 unless alive($pid);
        return answers($kind, $port);
    }, 0.05);
    if (!$ok || $ok == -1) {
        $self->stop;
        die "$kind did not come up on port $port: " . (slurp($log) // '') . "\n";
    }
    return $self;
}

sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }
sub kind { $_[0]{kind} }
sub addr { "127.0.0.1:$_[0]{port}" }

# Send a raw protocol line, return what comes back within $timeout (undef
# when nothing).  For the tests' own inspection (PING, DBSIZE, KEYS...).
sub command {
    my ($self, $line, $timeout) = @_;
    return send_line($self->{port}, $line, $timeout);
}

# Keys in redis (KEYS *), or undef when it does not answer.
sub redis_keys {
    my ($self) = @_;
    my $r = $self->command("KEYS *\r\n") // return;
    my @k = $r =~ /\$\d+\r\n([^\r\n]*)\r\n/g;
    return \@k;
}

# A redis command in the protocol's array form, so that any bytes pass;
# returns the raw reply (undef when none).
sub redis_cmd {
    my ($self, @args) = @_;
    my $line = '*' . scalar(@args) . "\r\n";
    $line .= '$' . length($_) . "\r\n$_\r\n" for @args;
    return $self->command($line);
}

# The value redis holds under $key, bytes as they are; undef when none.
sub redis_get {
    my ($self, $key) = @_;
    my $r = $self->redis_cmd('GET', $key) // return;
    return $r =~ /^\$(\d+)\r\n/ ? substr($r, length("\$$1\r\n"), $1) : undef;
}

# Does the daemon hold $key?  1, 0, or undef when it does not answer.
sub has_key {
    my ($self, $key) = @_;
    if ($self->{kind} eq 'redis') {
        my $r = $self->command("EXISTS $key\r\n") // return;
        return $r =~ /^:(\d+)/ ? ($1 > 0 ? 1 : 0) : undef;
    }
    my $r = $self->command("get $key\r\n") // return;
    return $r =~ /^VALUE / ? 1 : $r =~ /^END/ ? 0 : undef;
}

# The key under which mod_socache_redis / mod_socache_memcache keep
# mod_staple's response for a certificate id (hex): the namespace, then
# the hex of mod_staple's own key, the certificate's SHA-1: its id.
sub staple_key {
    my ($id) = @_;
    return "mod_staple:$id";
}

# mod_staple's cache entry for a DER response (mod_staple/staple_entry.c):
# "STPL", version 1, three reserved bytes, fetched_at (microseconds, 8
# bytes big-endian), the DER's length (4 bytes big-endian), the DER.
sub staple_entry {
    my ($der, $fetched_at_us) = @_;
    my $t = int $fetched_at_us;
    return 'STPL' . pack('C4', 1, 0, 0, 0) . pack('NN', int($t / 2**32), $t % 2**32)
         . pack('N', length $der) . $der;
}

# SIGSTOP / SIGCONT: a server that hangs (connections accepted by the
# kernel, never answered).  Never with an unset pid: kill(0) would signal
# our own process group.
sub pause  { my $p = $_[0]{pid} or return 0; kill 'STOP', $p }
sub resume { my $p = $_[0]{pid} or return 0; kill 'CONT', $p }

# stop($signal): the signal (default TERM) and SIGCONT (it may be paused),
# SIGKILL after 5 s.
sub stop {
    my ($self, $signal) = @_;
    StapleProc::untrack($self);
    my $pid = delete $self->{pid} or return;
    stop_pid($pid, signal => $signal, cont => 1, timeout => 5);
}

1;
