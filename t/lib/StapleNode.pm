package StapleNode;
# Extra httpd instances for the mod_staple tests that restart servers or run
# several of them: each instance has its own ServerRoot in a temporary
# directory, its own free loopback port, its own error log and PidFile, and
# reuses the suite's PKI (t/pki) and OCSP proxy (t/bin/ocsp-proxy, started
# by t/TEST).
#
#   my $dir  = StapleProc::tempdir('restart');
#   my $leaf = StaplePKI::make_leaf($dir, 'restart');
#   my $node = StapleNode->new(name => 'a', cert => $leaf, store => "$dir/store",
#                              cache => 'redis:127.0.0.1:PORT',
#                              modules => ['socache_redis']);
#   $node->start;                 # bounded: pid file, then a handshake
#   my $r = $node->handshake;     # StapleTest::handshake on its port
#   $node->restart('graceful');   # or 'restart'; waits for the new generation
#   $node->stop;                  # -k stop, bounded, SIGKILL by PID at last
#
#   # more certificates, each in an SSL <VirtualHost> on a port of its own,
#   # and a plain HTTP port (the main server) for status pages:
#   my $ms   = make_leaf($dir, 'ms', must_staple => 1);
#   my $rev  = make_leaf($dir, 'rev', serial_of => 'revoked');  # answered revoked
#   my $node = StapleNode->new(name => 'b', cert => $leaf, certs => [$ms, $rev],
#                              http => 1, extra => "<Location /x>...</Location>\n");
#   $node->ports_of('ms');        # the SSL ports serving certificate "ms"
#
#   # many certificates behind one port, told apart by SNI: each hashref
#   # has a host (its ServerName), and ports_of gives that one port
#   my $node = StapleNode->new(name => 'c', cert => $leaf, certs => \@leaves, sni => 1);
#   my $res = $node->http_get('/staple-status?json');  # {status, headers, body}
#   # (status => 1: that port serves /staple-status to 127.0.0.1)
#
#   # a configuration only checked with httpd -t (t/config.t, staple_migrate.t):
#   my $text = StapleNode::minimal_conf($dir, qw(mpm_event ssl staple));
#   my ($rc, $out) = StapleNode::httpd_t($conf);
#
# Every instance is stopped by an END block of the process that started it
# (StapleProc::track; forked test clients leave with POSIX::_exit).  The MPM
# is the suite's (STAPLE_MPM), or STAPLE_NODE_MPM, or new()'s mpm option;
# set STAPLE_KEEP_TMP=1 to keep the temporary directories (configurations,
# logs).  redis-server and memcached: StapleDaemon; handshake load:
# StapleLoad.  A script run outside t/TEST (t/bench/soak), without an
# Apache::Test configuration, tells what it would with set_vars(httpd =>
# ..., staple_libexecdir => ..., top_dir => ...).
use strict;
use warnings;

use Apache::Test ();
use File::Spec::Functions qw(catfile);
use Time::HiRes qw(time);

use StapleProc qw(alive children_of free_port run_cmd slurp spawn spit tempdir
                  wait_until);
use StapleTest ();

StapleProc::stop_on_signals();

my $START_TIMEOUT = 20;    # pid file + first handshake
my $STOP_TIMEOUT  = 10;    # -k stop until the parent is gone

my %VARS;    # set_vars: instead of Apache::Test's configuration

sub set_vars {
    my (%v) = @_;
    @VARS{ keys %v } = values %v;
}

sub vars {
    my ($key) = @_;
    return exists $VARS{$key} ? $VARS{$key} : Apache::Test::vars($key);
}

sub mpm {
    return lc($ENV{STAPLE_NODE_MPM} || vars('staple_mpm') || $ENV{STAPLE_MPM} || 'event');
}

# httpd's module directory: what t/TEST asked `apxs -q LIBEXECDIR`, saved in
# its configuration.
sub libexecdir {
    return vars('staple_libexecdir') if vars('staple_libexecdir');
    my $apxs = vars('apxs') || 'apxs';
    return `"$apxs" -q LIBEXECDIR` =~ s/\s+$//r;
}

sub httpd_bin { vars('httpd') || '/usr/sbin/apache2' }

# mod_staple as built in the tree: the tests load it from there.
sub module_so { catfile(vars('top_dir'), 'mod_staple', '.libs', 'mod_staple.so') }

# LoadModule lines for module names (mpm_event, ssl, socache_redis, ...;
# "staple": the build tree's mod_staple), each once, in order.
sub load_lines {
    my (@names) = @_;
    my $lib = libexecdir();
    my %seen;
    return join '', map {
        $_ eq 'staple' ? 'LoadModule staple_module "' . module_so() . "\"\n"
                       : "LoadModule ${_}_module \"$lib/mod_$_.so\"\n"
    } grep { !$seen{$_}++ } @names;
}

# The head of a configuration that `httpd -t` checks and nothing starts:
# ServerRoot, runtime files and logs in $dir, a Listen that is never
# bound, and the modules' LoadModule lines (see load_lines).
sub minimal_conf {
    my ($dir, @modules) = @_;
    return <<"EOF" . load_lines(@modules);
ServerRoot "$dir"
DefaultRuntimeDir "$dir"
PidFile "$dir/httpd.pid"
ErrorLog "$dir/error_log"
ServerName localhost
Listen 127.0.0.1:1
EOF
}

# httpd_t($conf, root => DIR, env => \%env) -> ($exit code, output):
# `httpd -t` of a configuration file (ServerRoot DIR when given), stdout and
# stderr together, bounded to 60 s.
sub httpd_t {
    my ($conf, %o) = @_;
    my @cmd = (httpd_bin(), '-t', (defined $o{root} ? ('-d', $o{root}) : ()), '-f', $conf);
    my ($rc, $out) = run_cmd(\@cmd, env => $o{env}, timeout => 60, merge => 1);
    return ($rc, $out);
}

# --- httpd instances --------------------------------------------------------

# new(%opt):
#   name        tag for directories and messages
#   cert        hashref from make_leaf, or { pem => ..., key => ... }
#   dir         ServerRoot (default: a new tempdir)
#   cache       StapleCache argument (default: none, the module's default)
#   store       StapleStore argument (default: none, the module's default)
#   directives  more configuration text (server level)
#   modules     extra module names to load: socache_dbm, socache_memcache, ...
#   mpm         event|prefork|worker (default: the suite's MPM)
#   certs       more certificates (hashrefs as cert), each in an SSL
#               <VirtualHost> with a port of its own (ports_of); the same
#               certificate may be given twice (two virtual hosts)
#   sni         1: the certs' virtual hosts share one port instead, each
#               named by its hashref's host (ServerName, the SNI to ask)
#   http        1: a plain HTTP port (http_port) served by the main server
#   status      1: the plain HTTP port, with SetHandler staple-status at
#               /staple-status for 127.0.0.1
#   extra       more configuration text, after the virtual hosts
#   port        the main SSL port (default: a free one)
#   start_timeout  seconds for the pid file and for the first handshake
#               (default 20; more for thousands of virtual hosts)
#   env         hashref of environment variables for httpd (LD_PRELOAD, ...)
sub new {
    my ($class, %o) = @_;
    my $self = bless {
        name       => $o{name} || 'node',
        cert       => $o{cert} || die("cert needed\n"),
        cache      => $o{cache},
        store      => $o{store},
        directives => $o{directives} // '',
        modules    => $o{modules} || [],
        mpm        => $o{mpm} || mpm(),
        certs      => $o{certs} || [],
        status     => $o{status},
        extra      => $o{extra} // '',
        start_timeout => $o{start_timeout} || $START_TIMEOUT,
        env        => $o{env},
    }, $class;
    push @{ $self->{modules} }, 'authz_host' if $o{status};
    $self->{dir}  = $o{dir} || tempdir($self->{name});
    unless (-d $self->{dir}) {
        mkdir $self->{dir} or die "mkdir $self->{dir}: $!\n";
    }
    chmod 0755, $self->{dir};
    $self->{port} = $o{port} || free_port();
    my $shared = $o{sni} && free_port();
    $self->{cert_ports} = [map { $shared || free_port() } @{ $self->{certs} }];
    $self->{http_port} = free_port() if $o{http} || $o{status};
    for my $sub (qw(conf logs run htdocs)) {
        my $d = catfile($self->{dir}, $sub);
        mkdir $d unless -d $d;
        chmod 0755, $d;
    }
    $self->{conf}    = catfile($self->{dir}, 'conf', 'httpd.conf');
    $self->{pidfile} = catfile($self->{dir}, 'run', 'httpd.pid');
    $self->{log}     = catfile($self->{dir}, 'logs', 'error_log');
    $self->{out}     = catfile($self->{dir}, 'logs', 'httpd.out');
    return $self;
}

sub port    { $_[0]{port} }
sub dir     { $_[0]{dir} }
sub name    { $_[0]{name} }
sub pid     { $_[0]{pid} }
sub rundir  { catfile($_[0]{dir}, 'run') }
sub logfile { $_[0]{log} }
sub http_port { $_[0]{http_port} }

# The SSL ports whose virtual host serves the certificate named $name.
sub ports_of {
    my ($self, $name) = @_;
    my @ports;
    push @ports, $self->{port} if ($self->{cert}{name} // '') eq $name;
    for my $i (0 .. $#{ $self->{certs} }) {
        push @ports, $self->{cert_ports}[$i] if ($self->{certs}[$i]{name} // '') eq $name;
    }
    return @ports;
}

sub conf_text {
    my ($self) = @_;
    my $mpm = $self->{mpm};
    my $user  = $> == 0 ? "User nobody\nGroup nogroup\n" : '';
    my $load = load_lines("mpm_$mpm", qw(authz_core ssl socache_shmcb), @{ $self->{modules} });
    my $so = module_so();
    my $cert = $self->{cert};
    my $cache = defined $self->{cache} ? "StapleCache $self->{cache}\n" : '';
    my $store = defined $self->{store} ? "StapleStore \"$self->{store}\"\n" : '';
    my $http = $self->{http_port} ? "Listen 127.0.0.1:$self->{http_port} http\n" : '';
    my $status = $self->{status} ? <<'S' : '';
<Location "/staple-status">
    SetHandler staple-status
    Require ip 127.0.0.1
</Location>
S
    my ($vhosts, %listen) = ('');
    for my $i (0 .. $#{ $self->{certs} }) {
        my ($c, $port) = ($self->{certs}[$i], $self->{cert_ports}[$i]);
        my $server_name = $c->{host} // 'localhost';
        $vhosts .= "Listen 127.0.0.1:$port https\n" unless $listen{$port}++;
        $vhosts .= <<"V";
<VirtualHost 127.0.0.1:$port>
    ServerName $server_name
    SSLEngine on
    SSLCertificateFile "$c->{pem}"
    SSLCertificateKeyFile "$c->{key}"
    SSLSessionTickets off
    SSLUseStapling off
</VirtualHost>
V
    }
    my $mpm_conf = $mpm eq 'prefork' ? <<'P' : <<'T';
StartServers          4
MinSpareServers       4
MaxSpareServers       8
ServerLimit          32
MaxRequestWorkers    32
MaxConnectionsPerChild 0
P
StartServers          2
ServerLimit           4
ThreadsPerChild      16
MaxRequestWorkers    64
MinSpareThreads      16
MaxSpareThreads      64
MaxConnectionsPerChild 0
T
    return <<"EOF";
# generated by t/lib/StapleNode.pm for the test node "$self->{name}"
ServerRoot "$self->{dir}"
ServerName localhost
DefaultRuntimeDir "$self->{dir}/run"
PidFile "$self->{pidfile}"
ErrorLog "$self->{log}"
LogLevel info staple:debug ssl:warn
${user}Listen 127.0.0.1:$self->{port} https
${http}DocumentRoot "$self->{dir}/htdocs"
$load
LoadModule staple_module "$so"
$mpm_conf
StapleStartupTimeout 3
StapleResponderTimeout 2
$cache$store$self->{directives}
SSLSessionCache none
<VirtualHost 127.0.0.1:$self->{port}>
    ServerName localhost
    SSLEngine on
    SSLCertificateFile "$cert->{pem}"
    SSLCertificateKeyFile "$cert->{key}"
    SSLSessionTickets off
    SSLUseStapling off
</VirtualHost>
$vhosts$status$self->{extra}
EOF
}

# Write the configuration file; returns its path (for httpd_t).
sub write_conf {
    my ($self) = @_;
    spit($self->{conf}, $self->conf_text, 0644);
    return $self->{conf};
}

# httpd -k CMD with this instance's configuration; returns (status, output).
sub ctl {
    my ($self, $cmd) = @_;
    return run_cmd([httpd_bin(), '-d', $self->{dir}, '-f', $self->{conf}, '-k', $cmd],
                   merge => 1);
}

sub read_pidfile {
    my ($self) = @_;
    my $v = slurp($self->{pidfile}) // return;
    return $v =~ /^(\d+)/ ? $1 : undef;
}

# Error log: size now (a mark), lines since a mark, matching lines.
sub log_mark { -s $_[0]{log} || 0 }

sub log_lines {
    my ($self, $re, $mark) = @_;
    open my $fh, '<', $self->{log} or return;
    seek $fh, $mark || 0, 0;
    my @lines = <$fh>;
    close $fh;
    return $re ? grep { $_ =~ $re } @lines : @lines;
}

sub log_tail {
    my ($self, $n) = @_;
    my @l = $self->log_lines;
    $n ||= 30;
    @l = @l[-$n .. -1] if @l > $n;
    return join '', map { "[$self->{name}] $_" } @l;
}

my $GENERATION_RE = qr/resuming normal operations/;

# Start httpd in the foreground as our child, wait (bounded) for its pid
# file and a handshake without a staple request (so that the test's first
# staple request is really the first one).  Dies on failure.
sub start {
    my ($self) = @_;
    $self->launch;
    return $self->wait_started;
}

# launch + wait_started: start several servers at the same time.
sub launch {
    my ($self) = @_;
    die "$self->{name} is running\n" if $self->{pid} && alive($self->{pid});
    $self->write_conf;
    unlink $self->{pidfile};
    $self->{start_mark} = $self->log_mark;
    my $t0 = time;
    # a process group of its own: on stop, the prefork MPM signals its
    # whole process group, which would otherwise include the test
    my $pid = spawn([httpd_bin(), '-d', $self->{dir}, '-f', $self->{conf}, '-DFOREGROUND'],
                    out => $self->{out}, setsid => 1, env => $self->{env});
    $self->{pid} = $pid;
    $self->{t0} = $t0;
    StapleProc::track($self, 0);    # before the daemons it may use
    return $self;
}

sub wait_started {
    my ($self) = @_;
    my $pid = $self->{pid} or die "$self->{name} was not launched\n";
    my $ok = wait_until($self->{start_timeout}, sub {
        return -1 unless alive($pid);
        my $p = $self->read_pidfile;
        return $p && $p == $pid;
    }, 0.02);
    if (!$ok || $ok == -1) {
        my $why = alive($pid) ? 'no pid file' : 'httpd exited';
        $self->kill_all;
        die "$self->{name}: httpd did not start ($why):\n"
          . (slurp($self->{out}) // '') . $self->log_tail(20);
    }
    $self->wait_ready or do {
        my $tail = $self->log_tail(20);
        $self->stop;
        die "$self->{name}: httpd does not answer handshakes on port $self->{port}\n$tail";
    };
    $self->{start_time} = time - $self->{t0};
    return $self;
}

sub wait_ready {
    my ($self, $timeout) = @_;
    return wait_until($timeout || $self->{start_timeout}, sub {
        return 0 unless alive($self->{pid});
        my $r = StapleTest::handshake($self->{port}, staple => 0, verify => 0,
                                      timeout => 2);
        return $r->{ok};
    }, 0.05);
}

sub generations { scalar(my @l = $_[0]->log_lines($GENERATION_RE)) }

# restart('graceful') or restart('restart'): signal with httpd -k and wait
# (bounded) until the new generation logged "resuming normal operations".
# The listening socket stays open throughout, so no readiness probe is
# made: the caller's next handshake is the first of the new generation.
sub restart {
    my ($self, $how) = @_;
    $how ||= 'graceful';
    my $gen = $self->generations;
    my $mark = $self->log_mark;
    my $t0 = time;
    my ($rc, $out) = $self->ctl($how);
    die "$self->{name}: httpd -k $how failed: $out\n" if $rc;
    my $ok = wait_until($START_TIMEOUT, sub { $self->generations > $gen }, 0.02);
    die "$self->{name}: no new generation after -k $how\n" . $self->log_tail(20)
        unless $ok;
    $self->{restart_time} = time - $t0;
    $self->{start_mark} = $mark;
    return $self;
}

# Error log lines since the last start or restart.
sub start_lines {
    my ($self, $re) = @_;
    return $self->log_lines($re, $self->{start_mark});
}

sub kill_all {
    my ($self) = @_;
    my $pid = $self->{pid} or return;
    my @kids = children_of($pid);
    kill 'KILL', $pid if alive($pid);
    for my $k (@kids) {
        kill 'KILL', $k if kill 0, $k;
    }
    wait_until(3, sub { !alive($pid) });
    delete $self->{pid};
}

# httpd -k stop, bounded wait for the parent to be gone, SIGKILL by PID
# (parent and its children) as a last resort.  Returns 1 for a clean stop.
sub stop {
    my ($self) = @_;
    my $pid = $self->{pid};
    StapleProc::untrack($self);
    return 1 unless $pid;
    unless (alive($pid)) {
        delete $self->{pid};
        return 1;
    }
    my @kids = children_of($pid);
    my ($rc, $out) = $self->ctl('stop');
    kill 'TERM', $pid if $rc;    # no usable pid file: signal it ourselves
    my $clean = wait_until($STOP_TIMEOUT, sub { !alive($pid) });
    unless ($clean) {
        warn "# $self->{name}: httpd $pid did not stop, killing it\n";
        @kids = (@kids, children_of($pid));
        kill 'KILL', $pid;
        wait_until(3, sub { !alive($pid) });
    }
    # whatever children are left (there should be none)
    for my $k (@kids) {
        kill 'KILL', $k if kill 0, $k;
    }
    delete $self->{pid};
    return $clean ? 1 : 0;
}

sub handshake {
    my ($self, %o) = @_;
    return StapleTest::handshake($self->{port}, %o);
}

# GET $path from this instance's plain HTTP port (new(http => 1)), one
# connection per call, bounded: { status, headers (lowercase names), body };
# status 0 and an error when no complete answer came.
sub http_get {
    my ($self, $path, %o) = @_;
    my $port = $o{port} || $self->{http_port} or die "$self->{name} has no HTTP port\n";
    return StapleProc::http_get($port, $path, %o);
}

sub store_file {
    my ($self, $store) = @_;
    return catfile($store, $self->{cert}{id} . '.der');
}
1;
