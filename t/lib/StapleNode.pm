package StapleNode;
# Extra httpd instances (and the redis-server / memcached they share) for
# the mod_staple tests that restart servers or run several of them: each
# instance has its own ServerRoot in a temporary directory, its own free
# loopback port, its own error log and PidFile, and reuses the suite's PKI
# (t/pki) and OCSP proxy (t/bin/ocsp-proxy, started by t/TEST).
#
#   my $dir  = StapleNode::tempdir('restart');
#   my $leaf = StapleNode::make_leaf($dir, 'restart');   # see below
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
#   my $res = $node->http_get('/staple-status?json');  # {status, headers, body}
#
#   my $redis = StapleNode::Daemon->start('redis', $dir);
#   $redis->port; $redis->pause; $redis->resume; $redis->stop;
#
# Everything started here is stopped by an END block of the process that
# started it (forked test clients leave with POSIX::_exit).  The MPM is the
# suite's (STAPLE_MPM), or STAPLE_NODE_MPM, or new()'s mpm option; set
# STAPLE_KEEP_TMP=1 to keep the temporary directories (configurations, logs).
use strict;
use warnings;

use Apache::Test ();
use Digest::SHA ();
use Exporter 'import';
use File::Spec::Functions qw(catfile);
use File::Temp ();
use IO::Socket::INET ();
use MIME::Base64 ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

use StapleTest qw(wait_until pki_file proxy_port);

our @EXPORT_OK = qw(tempdir free_port make_leaf cert_id_hex run_cmd slurp);

my $MAIN_PID = $$;
my %LIVE;    # "$obj" => obj: nodes and daemons to stop at END
my %PORTS;   # ports handed out by this process

# A test killed by SIGTERM, SIGINT or SIGHUP still runs the END blocks that
# stop its servers and remove its temporary directories.
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

my $START_TIMEOUT = 20;    # pid file + first handshake
my $STOP_TIMEOUT  = 10;    # -k stop until the parent is gone
my $CMD_TIMEOUT   = 20;    # any helper command (openssl, httpd -k)

sub vars { Apache::Test::vars(@_) }

sub mpm {
    return lc($ENV{STAPLE_NODE_MPM} || vars('staple_mpm') || $ENV{STAPLE_MPM} || 'event');
}

sub libexecdir { vars('staple_libexecdir') || `apxs -q LIBEXECDIR` =~ s/\s+$//r }

sub httpd_bin { vars('httpd') || '/usr/sbin/apache2' }

sub module_so { catfile(vars('top_dir'), 'mod_staple', '.libs', 'mod_staple.so') }

# A temporary directory that httpd children (User nobody) can traverse;
# removed at exit unless STAPLE_KEEP_TMP is set.
sub tempdir {
    my ($tag) = @_;
    my $dir = File::Temp::tempdir("staple-$tag-XXXXXX", TMPDIR => 1,
                                  CLEANUP => !$ENV{STAPLE_KEEP_TMP});
    chmod 0755, $dir or die "chmod $dir: $!\n";
    return $dir;
}

# A TCP port free on 127.0.0.1 (and on every interface), below the range
# the proxy and responder use (20000-29999) and above Apache::Test's.
sub free_port {
    for (1 .. 200) {
        my $port = 10000 + int rand 10000;
        next if $PORTS{$port};
        my $ok = 1;
        for my $addr ('0.0.0.0', '127.0.0.1') {
            my $s = IO::Socket::INET->new(LocalAddr => $addr, LocalPort => $port,
                                          Proto => 'tcp', Listen => 1, ReuseAddr => 1);
            if ($s) { close $s } else { $ok = 0; last }
        }
        next unless $ok;
        $PORTS{$port} = 1;
        return $port;
    }
    die "no free port found\n";
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return;
    local $/;
    my $data = <$fh>;
    close $fh;
    return $data;
}

sub spit {
    my ($file, $data, $mode) = @_;
    open my $fh, '>:raw', $file or die "$file: $!\n";
    print $fh $data;
    close $fh or die "$file: $!\n";
    chmod $mode, $file if defined $mode;
}

# Run a command with a time limit; returns (exit status, output).  Output
# (stdout and stderr) goes to $out_file when given.
sub run_cmd {
    my ($cmd, %o) = @_;
    my $timeout = $o{timeout} || $CMD_TIMEOUT;
    my $out = $o{out} // File::Temp->new(TEMPLATE => 'staple-cmd-XXXXXX', TMPDIR => 1);
    my $outname = ref $out ? $out->filename : $out;
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $outname or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec { $cmd->[0] } @$cmd; }
        POSIX::_exit(127);
    }
    my $status;
    my $done = wait_until($timeout, sub {
        my $r = waitpid($pid, WNOHANG);
        $status = $? if $r == $pid;
        return $r == $pid;
    });
    unless ($done) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
        $status = -1;
    }
    my $text = slurp($outname) // '';
    return wantarray ? ($status, $text) : $status;
}

# --- certificates ----------------------------------------------------------

# The DER of the first certificate in a PEM file.
sub pem_der {
    my ($file) = @_;
    my $pem = slurp($file) // die "cannot read $file\n";
    my ($b64) = $pem =~ /-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----/s
        or die "no certificate in $file\n";
    return MIME::Base64::decode_base64($b64);
}

# mod_staple's id of a certificate: SHA-1 of its DER, lowercase hex (the
# socache key and the StapleStore file name).
sub cert_id_hex { Digest::SHA::sha1_hex(pem_der($_[0])) }

# A fresh leaf NAME issued by t/pki's intermediate, with
#   authorityInfoAccess = OCSP;URI:http://127.0.0.1:<proxy>/NAME/
# so that the proxy counts its requests under NAME, and the serial number
# of t/pki's "shared" leaf: the responder (`openssl ocsp`, which reads
# t/pki/index.txt and looks up serials only) answers "good" for it, and
# the response's CertID (issuer name and key hash, serial) is exactly this
# leaf's.  Each test gets certificates no other test or server uses: its
# own request counter, its own StapleStore file, its own proxy mode.
# Options: must_staple => 1 adds the TLS Feature status_request (RFC 7633);
# serial_of => 'revoked' takes the serial of another t/pki leaf instead of
# "shared" (the responder then answers what index.txt says about that one:
# "revoked" for t/pki/revoked.crt).
# Returns { name, pem (leaf + intermediate), key, crt, id, must_staple }.
sub make_leaf {
    my ($dir, $name, %o) = @_;
    die "bad leaf name $name\n" unless $name =~ /^[a-z][a-z0-9_-]{0,31}$/;
    print STDERR "# the suite's OCSP proxy (port " . proxy_port() . ") does not answer: "
               . "run this test through t/TEST\n"
        unless proxy_alive();
    my $donor;
    if ($o{serial_of}) {
        die "bad donor name $o{serial_of}\n" unless $o{serial_of} =~ /^[a-z][a-z0-9_-]*$/;
        $donor = pki_file("$o{serial_of}.crt");
        die "no certificate $donor\n" unless -e $donor;
    }
    else {
        $donor = pki_file('shared.crt');
        $donor = pki_file('good.crt') unless -e $donor;
    }
    my ($st, $serial) = run_cmd(['openssl', 'x509', '-in', $donor, '-noout', '-serial']);
    $serial =~ /serial=([0-9A-Fa-f]+)/ or die "cannot read the serial of $donor: $serial\n";
    $serial = $1;

    my $base = catfile($dir, $name);
    my $url = 'http://127.0.0.1:' . proxy_port() . "/$name/";
    my $feature = $o{must_staple} ? "tlsfeature             = status_request\n" : '';
    spit("$base.cnf", <<"EOF");
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = $name.localhost
[ v3 ]
basicConstraints       = critical,CA:false
keyUsage               = critical,digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
authorityInfoAccess    = OCSP;URI:$url
$feature
EOF
    my @steps = (
        [qw(openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out), "$base.key"],
        ['openssl', 'req', '-new', '-config', "$base.cnf", '-key', "$base.key",
         '-out', "$base.csr"],
        ['openssl', 'x509', '-req', '-in', "$base.csr", '-CA', pki_file('inter.pem'),
         '-CAkey', pki_file('inter.key'), '-set_serial', "0x$serial", '-days', '30',
         '-sha256', '-extfile', "$base.cnf", '-extensions', 'v3', '-out', "$base.crt"],
    );
    for my $cmd (@steps) {
        my ($rc, $out) = run_cmd($cmd);
        die "@$cmd failed: $out\n" if $rc;
    }
    spit("$base.pem", slurp("$base.crt") . slurp(pki_file('inter.pem')), 0644);
    chmod 0644, "$base.key", "$base.crt";
    return { name => $name, pem => "$base.pem", key => "$base.key", crt => "$base.crt",
             id => cert_id_hex("$base.crt"), must_staple => $o{must_staple} ? 1 : 0 };
}

# Does the suite's OCSP proxy answer /_ping?
sub proxy_alive {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => proxy_port(),
                                  Proto => 'tcp', Timeout => 2) or return 0;
    $s->autoflush(1);
    print $s "GET /_ping HTTP/1.0\r\n\r\n";
    my $resp = '';
    my $until = time + 2;
    while (time < $until) {
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        my $left = $until - time;
        last unless $left > 0 && select($rin, undef, undef, $left);
        last unless sysread $s, $resp, 1024, length $resp;
    }
    close $s;
    return $resp =~ /\nok\n/ ? 1 : 0;
}

# --- processes --------------------------------------------------------------

sub alive {
    my ($pid) = @_;
    return 0 unless $pid;
    my $r = waitpid($pid, WNOHANG);    # reap it if it is our child
    return 0 if $r == $pid;
    return kill(0, $pid) ? 1 : 0;
}

# pids whose parent is $ppid
sub children_of {
    my ($ppid) = @_;
    my @kids;
    opendir my $dh, '/proc' or return;
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        open my $st, '<', "/proc/$pid/stat" or next;
        my $line = <$st> // '';
        close $st;
        my ($parent) = $line =~ /\)\s+\S+\s+(\d+)/ or next;
        push @kids, $pid if $parent == $ppid;
    }
    closedir $dh;
    return sort { $a <=> $b } @kids;
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
#   http        1: a plain HTTP port (http_port) served by the main server
#   extra       more configuration text, after the virtual hosts
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
        extra      => $o{extra} // '',
    }, $class;
    $self->{dir}  = $o{dir} || tempdir($self->{name});
    unless (-d $self->{dir}) {
        mkdir $self->{dir} or die "mkdir $self->{dir}: $!\n";
    }
    chmod 0755, $self->{dir};
    $self->{port} = $o{port} || free_port();
    $self->{cert_ports} = [map { free_port() } @{ $self->{certs} }];
    $self->{http_port} = free_port() if $o{http};
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
    my $lib = libexecdir();
    my $mpm = $self->{mpm};
    my $user  = $> == 0 ? "User nobody\nGroup nogroup\n" : '';
    my @mods = ("mpm_$mpm", qw(authz_core ssl socache_shmcb), @{ $self->{modules} });
    my %seen;
    my $load = join '', map {
        "LoadModule ${_}_module \"$lib/mod_$_.so\"\n"
    } grep { !$seen{$_}++ } @mods;
    my $so = module_so();
    my $cert = $self->{cert};
    my $cache = defined $self->{cache} ? "StapleCache $self->{cache}\n" : '';
    my $store = defined $self->{store} ? "StapleStore \"$self->{store}\"\n" : '';
    my $http = $self->{http_port} ? "Listen 127.0.0.1:$self->{http_port} http\n" : '';
    my $vhosts = '';
    for my $i (0 .. $#{ $self->{certs} }) {
        my ($c, $port) = ($self->{certs}[$i], $self->{cert_ports}[$i]);
        $vhosts .= <<"V";
Listen 127.0.0.1:$port https
<VirtualHost 127.0.0.1:$port>
    ServerName localhost
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
$vhosts$self->{extra}
EOF
}

sub write_conf {
    my ($self) = @_;
    spit($self->{conf}, $self->conf_text, 0644);
}

# httpd -k CMD with this instance's configuration; returns (status, output).
sub ctl {
    my ($self, $cmd) = @_;
    return run_cmd([httpd_bin(), '-d', $self->{dir}, '-f', $self->{conf}, '-k', $cmd]);
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
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $self->{out} or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT;
        # a process group of its own: on stop, the prefork MPM signals its
        # whole process group, which would otherwise include the test
        POSIX::setsid();
        my @cmd = (httpd_bin(), '-d', $self->{dir}, '-f', $self->{conf}, '-DFOREGROUND');
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    $self->{t0} = $t0;
    $LIVE{"$self"} = $self;
    return $self;
}

sub wait_started {
    my ($self) = @_;
    my $pid = $self->{pid} or die "$self->{name} was not launched\n";
    my $ok = wait_until($START_TIMEOUT, sub {
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
    return wait_until($timeout || $START_TIMEOUT, sub {
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
    delete $LIVE{"$self"};
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
    my $timeout = $o{timeout} || 5;
    my %res = (status => 0, headers => {}, body => '');
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => $timeout)
        or return { %res, error => "connect: $!" };
    $s->autoflush(1);
    print $s "GET $path HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    my $buf = '';
    my $eof = 0;
    my $until = time + $timeout;
    while (time < $until) {
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        my $left = $until - time;
        last unless $left > 0 && select($rin, undef, undef, $left);
        my $n = sysread $s, $buf, 65536, length $buf;
        unless ($n) { $eof = 1; last }
    }
    close $s;
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

sub store_file {
    my ($self, $store) = @_;
    return catfile($store, $self->{cert}{id} . '.der');
}

# --- handshake load -------------------------------------------------------------

# Forked clients making full handshakes (asking for a staple) to $port:
#   my $load = StapleNode::load_start($port, clients => 4, duration => 6);
#   my $load = StapleNode::load_start($port, clients => 8, count => 10);
#   ... (the clients run meanwhile) ...
#   my $sum = StapleNode::load_collect($load);
# $sum: total, ok (completed), good (stapled, successful, verified, good),
# max (slowest handshake, s), missing (clients that did not report),
# bad (up to 5 descriptions per client of handshakes that were not good).
sub load_start {
    my ($port, %o) = @_;
    my $clients = $o{clients} || 4;
    my $tmp = File::Temp::tempdir('staple-load-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $start = time + ($o{delay} // 0.1);
    my $until = $start + ($o{duration} || 0);
    my %kids;
    for my $i (1 .. $clients) {
        my $out = "$tmp/client$i";
        my $pid = fork;
        die "fork: $!\n" unless defined $pid;
        if ($pid == 0) {
            my ($n, $ok, $good, $max, @bad) = (0, 0, 0, 0);
            sleep($start - time) if $start > time;
            while ($o{count} ? $n < $o{count} : time < $until) {
                my $h = StapleTest::handshake($port, timeout => $o{timeout} || 5);
                $n++;
                $max = $h->{elapsed} if $h->{elapsed} > $max;
                $ok++ if $h->{ok};
                my $fine = $h->{ok} && $h->{stapled} && $h->{verified}
                    && ($h->{resp_status} // '') eq 'successful'
                    && ($h->{cert_status} // '') eq 'good';
                $good++ if $fine;
                push @bad, sprintf('+%.3fs client %d #%d: ok=%d stapled=%d verified=%d '
                                   . 'status=%s %s', time - $start, $i, $n, $h->{ok},
                                   $h->{stapled}, $h->{verified},
                                   $h->{cert_status} // '-', $h->{error} // '')
                    if !$fine && @bad < 5;
            }
            if (open my $fh, '>', "$out.tmp") {
                print $fh "$n $ok $good $max\n", map { "$_\n" } @bad;
                close $fh;
                rename "$out.tmp", $out;
            }
            POSIX::_exit(0);
        }
        $kids{$pid} = $out;
    }
    my $limit = $o{count} ? $o{count} * (($o{timeout} || 5) + 1) : ($o{duration} || 0) + 15;
    return { kids => \%kids, deadline => $start + $limit, start => $start };
}

sub load_collect {
    my ($load) = @_;
    my $kids = $load->{kids};
    wait_until($load->{deadline} - time, sub {
        my $running = 0;
        for my $pid (keys %$kids) {
            next if ref $kids->{$pid};
            if (waitpid($pid, WNOHANG) == $pid) {
                $kids->{$pid} = [$kids->{$pid}];
            }
            else {
                $running++;
            }
        }
        return !$running;
    });
    my %sum = (total => 0, ok => 0, good => 0, max => 0, missing => 0, bad => [],
               elapsed => time - $load->{start});
    for my $pid (keys %$kids) {
        my $v = $kids->{$pid};
        unless (ref $v) {    # still running past the deadline
            kill 'KILL', $pid;
            waitpid($pid, 0);
            $v = [$v];
        }
        my @l = split /\n/, slurp($v->[0]) // '';
        my $head = shift @l;
        unless ($head && $head =~ /^(\d+) (\d+) (\d+) (\S+)$/) {
            $sum{missing}++;
            next;
        }
        $sum{total} += $1;
        $sum{ok}    += $2;
        $sum{good}  += $3;
        $sum{max} = $4 if $4 > $sum{max};
        push @{ $sum{bad} }, @l;
    }
    return \%sum;
}

# --- redis-server and memcached ----------------------------------------------

package StapleNode::Daemon;

use File::Spec::Functions qw(catfile);
use IO::Socket::INET ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

# start($kind, $dir): 'redis' (redis-server) or 'memcached', on a free
# loopback port, persisting nothing, output in $dir/$kind.log.
sub start {
    my ($class, $kind, $dir) = @_;
    my $port = StapleNode::free_port();
    my $log = catfile($dir, "$kind.log");
    my @cmd;
    if ($kind eq 'redis') {
        @cmd = ('redis-server', '--port', $port, '--bind', '127.0.0.1',
                '--save', '', '--appendonly', 'no', '--protected-mode', 'no',
                '--daemonize', 'no', '--dir', $dir, '--logfile', '');
    }
    elsif ($kind eq 'memcached') {
        @cmd = ('memcached', '-l', '127.0.0.1', '-p', $port, '-U', '0', '-m', '16');
        push @cmd, '-u', 'nobody' if $> == 0;
    }
    else {
        die "unknown daemon $kind\n";
    }
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);
    }
    my $self = bless { kind => $kind, port => $port, pid => $pid, log => $log }, $class;
    $LIVE{"$self"} = $self;
    my $ok = StapleTest::wait_until(10, sub {
        return -1 unless StapleNode::alive($pid);
        my $r = $self->command($kind eq 'redis' ? "PING\r\n" : "version\r\n", 1);
        return defined $r && $r =~ /^(\+PONG|VERSION)/;
    }, 0.05);
    if (!$ok || $ok == -1) {
        $self->stop;
        die "$kind did not come up on port $port: " . (StapleNode::slurp($log) // '') . "\n";
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
    $timeout ||= 2;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port},
                                  Proto => 'tcp', Timeout => $timeout) or return;
    $s->autoflush(1);
    print $s $line;
    my $buf = '';
    my $until = time + $timeout;
    while (time < $until) {
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        my $left = $until - time;
        last unless $left > 0 && select($rin, undef, undef, $left);
        my $n = sysread $s, $buf, 65536, length $buf;
        last unless $n;
        # a complete reply for the line protocols used here
        last if $buf =~ /\r\n\z/ && $buf !~ /^\*/;
        if ($buf =~ /^\*(\d+)\r\n/) {
            my $items = $1;
            my $lines = () = $buf =~ /\r\n/g;
            last if $lines >= 1 + 2 * $items;
        }
    }
    close $s;
    return length $buf ? $buf : undef;
}

# Keys in redis (KEYS *), or undef when it does not answer.
sub redis_keys {
    my ($self) = @_;
    my $r = $self->command("KEYS *\r\n") // return;
    my @k = $r =~ /\$\d+\r\n([^\r\n]*)\r\n/g;
    return \@k;
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

# SIGSTOP / SIGCONT: a server that hangs (connections accepted by the
# kernel, never answered).  Never with an unset pid: kill(0) would signal
# our own process group.
sub pause  { my $p = $_[0]{pid} or return 0; kill 'STOP', $p }
sub resume { my $p = $_[0]{pid} or return 0; kill 'CONT', $p }

sub stop {
    my ($self, $signal) = @_;
    delete $LIVE{"$self"};
    my $pid = delete $self->{pid} or return;
    return unless StapleNode::alive($pid);
    kill $signal || 'TERM', $pid;
    kill 'CONT', $pid;
    unless (StapleTest::wait_until(5, sub { !StapleNode::alive($pid) })) {
        kill 'KILL', $pid;
        StapleTest::wait_until(3, sub { !StapleNode::alive($pid) });
    }
}

package StapleNode;

# Stop whatever this process started: nodes first (they use the daemons).
END {
    local $?;
    if ($$ == $MAIN_PID) {
        my @objs = values %LIVE;
        $_->stop for grep { $_->isa('StapleNode') } @objs;
        $_->stop for grep { $_->isa('StapleNode::Daemon') } @objs;
    }
}

1;
