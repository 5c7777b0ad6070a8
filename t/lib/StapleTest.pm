package StapleTest;
# Helpers for the mod_staple Apache::Test suites.
#
#   my $r = handshake($port, %opt);   # one full TLS handshake asking for a staple
#   staple_good($r)                   # stapled, successful, verified, good
#   staple_problems($r)               # what keeps it from that, one line each
#   responder_count('good');          # OCSP requests the proxy got for /good/
#   server_log_lines(qr/.../)         # error_log lines since the last server start
#   log_line_time($line)              # when an error_log line was written (epoch)
#   server_children()                 # pids of the httpd parent's children
#   request_times('good')             # epoch times of the proxy's requests for /good/
#   must_staple_errors('name')        # Must-Staple error lines, paired with failures
#
# Processes, ports, waits and commands: StapleProc; certificates: StaplePKI.
use strict;
use warnings;

use Apache::Test ();
use Exporter 'import';
use File::Copy ();
use File::Spec::Functions qw(catfile);
use IO::Socket::SSL ();
use Net::SSLeay ();
use Time::HiRes qw(time);
use Time::Local ();

use StapleProc ();
use StapleResponder ();

our @EXPORT = qw(handshake staple_good staple_problems responder_count
                 responder_requests server_log_lines server_children pki_file
                 vhost_port proxy_port proxy_mode log_line_time request_times
                 must_staple_errors event_program);

my %CERT_STATUS = (0 => 'good', 1 => 'revoked', 2 => 'unknown');

sub vars { Apache::Test::vars(@_) }

sub pki_file { catfile(vars('t_dir'), 'pki', $_[0]) }

sub vhost_port {
    my ($name) = @_;
    my $port = vars()->{"${name}_port"}
        or die "no port for vhost $name (is it in t/conf/extra.conf.in?)\n";
    return $port;
}

sub proxy_port { vars()->{staple_proxy_port} }

# handshake($port, %opt) -> hashref, never dies:
#   ok           handshake completed (and certificate verified, unless verify=>0)
#   stapled      the server sent a CertificateStatus
#   der          the stapled response, DER
#   resp_status  OCSP responseStatus as a string ("successful", "tryLater", ...)
#   verified     the response's signature verifies against the chain and CA
#   cert_status  good|revoked|unknown for the leaf's CertID (undef if absent)
#   this_update, next_update, revocation_time   time_t
#   elapsed      seconds for connect + handshake
#   error        why ok is false, or what went wrong with the staple
# Options:
#   ca       trust anchor file (default t/pki/root.pem)
#   verify   0 to skip certificate verification (default 1)
#   staple   0 to not ask for a staple (default 1)
#   timeout  seconds for connect + handshake (default 5)
#   host     SNI and verification name (default localhost)
sub handshake {
    my ($port, %opt) = @_;
    my $verify  = $opt{verify} // 1;
    # the suite's root only when needed: scripts outside t/TEST verify
    # with their own, or not at all
    my $ca      = $opt{ca} // ($verify ? pki_file('root.pem') : undef);
    my $staple  = $opt{staple} // 1;
    my $timeout = $opt{timeout} // 5;
    my $host    = $opt{host} // 'localhost';

    my %r = (ok => 0, stapled => 0, verified => 0, error => undef);
    my $cb = sub {
        my ($sock, $resp) = @_;
        eval { inspect_staple($sock, $resp, \%r); 1 }
            or $r{error} = "staple inspection: $@";
    };

    my $t0 = time;
    my $sock = eval {
        IO::Socket::SSL->new(
            PeerHost            => '127.0.0.1',
            PeerPort            => $port,
            Timeout             => $timeout,
            SSL_hostname        => $host,
            SSL_verifycn_name   => $host,
            SSL_verifycn_scheme => 'http',
            SSL_verify_mode     => $verify ? IO::Socket::SSL::SSL_VERIFY_PEER()
                                           : IO::Socket::SSL::SSL_VERIFY_NONE(),
            SSL_ca_file         => $ca,
            # our callback decides; never let IO::Socket::SSL fail a
            # handshake because of what the staple says
            SSL_ocsp_mode       => $staple ? IO::Socket::SSL::SSL_OCSP_TRY_STAPLE()
                                           : IO::Socket::SSL::SSL_OCSP_NO_STAPLE(),
            SSL_ocsp_staple_callback => $cb,
        );
    };
    $r{elapsed} = time - $t0;
    if ($sock) {
        $r{ok} = 1;
        $r{protocol} = $sock->get_sslversion;
        $sock->close(SSL_fast_shutdown => 1);
    }
    else {
        my $err = $@ || $IO::Socket::SSL::SSL_ERROR || $! || 'unknown error';
        $err =~ s/\s+$//;
        $r{error} = "handshake failed: $err";
    }
    return \%r;
}

sub inspect_staple {
    my ($sock, $resp, $r) = @_;
    return unless $resp;
    $r->{stapled} = 1;
    $r->{der} = Net::SSLeay::i2d_OCSP_RESPONSE($resp);

    my $status = Net::SSLeay::OCSP_response_status($resp);
    $r->{resp_status} = Net::SSLeay::OCSP_response_status_str($status);
    return unless $status == Net::SSLeay::OCSP_RESPONSE_STATUS_SUCCESSFUL();

    my $ssl = $sock->_get_ssl_object;
    $r->{verified} = eval { Net::SSLeay::OCSP_response_verify($ssl, $resp) } ? 1 : 0;
    $r->{verify_error} = $@ || Net::SSLeay::ERR_error_string(Net::SSLeay::ERR_get_error())
        unless $r->{verified};

    my ($leaf) = $sock->peer_certificates;
    my $id = eval { Net::SSLeay::OCSP_cert2ids($ssl, $leaf) };
    unless ($id) {
        $r->{error} = "no CertID for the leaf: $@";
        return;
    }
    my ($res) = Net::SSLeay::OCSP_response_results($resp, $id);
    unless ($res && $res->[2] && defined $res->[2]{statusType}) {
        $r->{error} = 'no SingleResponse for the leaf'
            . ($res && $res->[1] ? ": $res->[1]" : '');
        return;
    }
    my $d = $res->[2];
    $r->{cert_status}     = $CERT_STATUS{ $d->{statusType} } // $d->{statusType};
    $r->{this_update}     = $d->{thisUpdate};
    $r->{next_update}     = $d->{nextUpdate};
    $r->{revocation_time} = $d->{revocationTime};
    $r->{result_error}    = $res->[1];
}

# staple_problems($r) -> what keeps handshake()'s result $r from being a
# completed handshake stapled with a successful, verified response saying
# "good", one line each (none: it is one).
sub staple_problems {
    my ($r) = @_;
    my @bad;
    push @bad, 'handshake failed: ' . ($r->{error} // '') unless $r->{ok};
    push @bad, 'no staple' unless $r->{stapled};
    push @bad, 'response status ' . ($r->{resp_status} // 'none')
        if $r->{stapled} && ($r->{resp_status} // '') ne 'successful';
    push @bad, 'signature does not verify: ' . ($r->{verify_error} // '')
        if $r->{stapled} && !$r->{verified};
    push @bad, 'cert status ' . ($r->{cert_status} // 'none') . ($r->{error} ? " ($r->{error})" : '')
        if $r->{stapled} && ($r->{cert_status} // '') ne 'good';
    return @bad;
}

# The good staple: completed, stapled, successful, verified, good.
sub staple_good { !staple_problems($_[0]) }

# --- the OCSP proxy (t/bin/ocsp-proxy) ---------------------------------------

sub proxy_log { catfile(vars('t_logs'), 'ocsp-proxy.log') }

# Lines "<epoch.ms> NAME METHOD STEP" the proxy logged for NAME (STEP: the
# step of its mode that answered, see t/bin/ocsp-proxy).
sub responder_requests {
    my ($name) = @_;
    open my $fh, '<', proxy_log() or return;
    my @lines;
    while (my $line = <$fh>) {    # not $_: callers may be in a map or for
        my @f = split ' ', $line;
        push @lines, $line if @f >= 3 && $f[1] eq $name;
    }
    close $fh;
    return @lines;
}

sub responder_count { scalar(my @l = responder_requests($_[0])) }

# [epoch, step] of every request the proxy logged for NAME, in order.
sub request_times {
    my ($name) = @_;
    return map { my @f = split ' '; [$f[0], $f[3] // ''] } responder_requests($name);
}

# Set the proxy's behaviour for NAME (see t/bin/ocsp-proxy), or 'default'.
sub proxy_mode {
    my ($name, $mode) = @_;
    return StapleResponder::proxy_set_mode(proxy_port(), $name, $mode);
}

# --- the server's error log ---------------------------------------------------

# error_log lines written since the last server start (t/TEST records the
# log size before it starts httpd), optionally filtered by a regexp.
sub server_log_lines {
    my ($re) = @_;
    my $log = catfile(vars('t_logs'), 'error_log');
    my $offset = 0;
    if (open my $fh, '<', catfile(vars('t_logs'), 'error_log.start')) {
        my $v = <$fh>;
        $offset = $1 if defined $v && $v =~ /^(\d+)/;
    }
    open my $fh, '<', $log or return;
    $offset = 0 if $offset > -s $fh;    # log was rotated or cleaned
    seek $fh, $offset, 0;
    my @lines = <$fh>;
    close $fh;
    return $re ? grep { $_ =~ $re } @lines : @lines;
}

my %MONTH = (Jan => 0, Feb => 1, Mar => 2, Apr => 3, May => 4, Jun => 5,
             Jul => 6, Aug => 7, Sep => 8, Oct => 9, Nov => 10, Dec => 11);

# Epoch time (with microseconds) of an error_log line, from its
# "[Mon Nov 23 21:09:25.424471 2026]" prefix (local time); undef if none.
sub log_line_time {
    my ($line) = @_;
    my ($mon, $day, $h, $m, $s, $frac, $year) = $line =~
        /^\[\w{3} (\w{3}) +(\d+) (\d\d):(\d\d):(\d\d)(?:\.(\d+))? (\d{4})\]/
        or return;
    return unless exists $MONTH{$mon};
    my $t = Time::Local::timelocal($s, $m, $h, $day, $MONTH{$mon}, $year);
    return defined $frac ? $t + "0.$frac" : $t;
}

# must_staple_errors($name) -> ($count, @problems) for the certificate
# CN=$name.localhost, from one reading of error_log since the server start:
# the module logs a Must-Staple error line right after each warn line of a
# failed fetch that leaves no valid response ("no valid response to
# staple"), and never otherwise.  @problems describes every line that breaks
# this; a failure at the very end whose error line is not written yet is
# not one.
sub must_staple_errors {
    my ($name) = @_;
    my $cn = qr/ CN=\Q$name\E\.localhost /;
    my ($count, $pending, @problems) = (0, undef);
    for my $line (server_log_lines(qr/OCSP for CN=|Must-Staple certificate CN=/)) {
        next unless $line =~ $cn;
        if ($line =~ /\[staple:error\].*Must-Staple certificate/) {
            $count++;
            push @problems, "error line without a failure that left nothing: $line"
                unless $pending;
            undef $pending;
        }
        elsif ($line =~ /\[staple:warn\].*OCSP for /) {
            push @problems, "no error line after: $pending" if $pending;
            $pending = $line =~ /; no valid response to staple; / ? $line : undef;
        }
    }
    return ($count, @problems);
}

# pids whose parent is the httpd parent process (their number in scalar context)
sub server_children {
    my $pidfile = catfile(vars('t_logs'), 'httpd.pid');
    open my $fh, '<', $pidfile or return;
    my ($ppid) = (<$fh> // '') =~ /(\d+)/;
    close $fh;
    return unless $ppid;
    my @kids = StapleProc::children_of($ppid);
    return wantarray ? @kids : scalar @kids;
}


# event_program($dir, $name) -> ($program, $file): t/bin/$name (a
# StapleEventCmd of the tests) copied into $dir, where User nobody can run
# it whatever the permissions of the source tree, and the file it is to
# write, in a directory User can write.
sub event_program {
    my ($dir, $name) = @_;
    my $program = catfile($dir, $name);
    File::Copy::copy(catfile(vars('t_dir'), 'bin', $name), $program)
        or die "copy $name: $!\n";
    chmod 0755, $program;
    my $evdir = catfile($dir, 'events');
    mkdir $evdir or die "mkdir $evdir: $!\n";
    chmod 0777, $evdir;
    return ($program, catfile($evdir, 'events.log'));
}
1;
