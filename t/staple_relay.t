# The relay: SetHandler staple-responder on a server of its own (the relay,
# t/lib/StapleNode.pm) that staples relay-a (good) and relay-rev (revoked)
# from the CA's responder. Then, with only the relay to ask:
#
#   openssl ocsp (POST, with a nonce) gets "good" and "revoked", verified
#   against the CA; a GET (RFC 5019) gets the CA's bytes with Last-Modified,
#   Expires, Cache-Control and ETag, and 304 for If-None-Match; a
#   certificate the relay does not staple gets "unauthorized", two in one
#   request and garbage "malformedRequest"; none of it reaches the CA's
#   responder, and the status page counts each outcome.
#
#   A real nginx whose ssl_stapling_responder is the relay staples
#   relay-a's response byte for byte as the CA signed it.
#
#   A second mod_staple server with StapleForceURL at the relay staples
#   relay-a without a request to the CA's responder.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Digest::SHA ();
use FindBin;
use lib "$FindBin::Bin/lib";
use StapleTest;
use StapleNode ();
use StaplePKI qw(make_leaf);
use StapleProc qw(find_program free_port run_cmd slurp spawn spit stop_pid tempdir
                  wait_until);
use JSON::PP ();
use MIME::Base64 ();

plan tests => 25;

my $dir = tempdir('relay');
my $a   = make_leaf($dir, 'relay-a');
my $rev = make_leaf($dir, 'relay-rev', serial_of => 'revoked');
my $relay = StapleNode->new(
    name  => 'relay',
    dir   => "$dir/relay",
    cert  => $a,
    certs => [$rev],
    http  => 1,
    extra => <<'EOF',
AllowEncodedSlashes NoDecode
<Location "/ocsp">
    SetHandler staple-responder
</Location>
<Location "/staple-status">
    SetHandler staple-status
</Location>
EOF
);
my $ok = eval { $relay->start; 1 };
ok($ok, 'the relay starts') or diag($@);
BAIL_OUT('cannot start the relay') unless $ok;
ok(staple_good($relay->handshake), 'the relay staples relay-a from the CA');
is(handshake(($relay->ports_of('relay-rev'))[0])->{cert_status}, 'revoked', 'and relay-rev, revoked');
my $url = 'http://127.0.0.1:' . $relay->http_port . '/ocsp';
my %ca0 = map { $_ => responder_count($_) } qw(relay-a relay-rev);
my $held = $relay->http_get("/staple-status?der=$a->{id}")->{body};

sub ask {
    my (@args) = @_;
    return run_cmd(['openssl', 'ocsp', '-issuer', pki_file('inter.pem'),
                    '-CAfile', pki_file('root.pem'), '-url', $url, @args], merge => 1);
}

# --- openssl ocsp: POST with a nonce ------------------------------------------------

my ($rc, $out) = ask('-cert', $a->{crt});
ok($rc == 0 && $out =~ /Response verify OK/ && $out =~ /: good/,
   'openssl ocsp: relay-a good, verified against the CA') or diag($out);
($rc, $out) = ask('-cert', $rev->{crt});
ok($rc == 0 && $out =~ /Response verify OK/ && $out =~ /: revoked/,
   'openssl ocsp: relay-rev revoked, verified') or diag($out);
($rc, $out) = ask('-cert', pki_file('good.crt'));
like($out, qr/Responder Error: unauthorized/, 'a certificate the relay does not staple: unauthorized');
($rc, $out) = ask('-cert', $a->{crt}, '-cert', $rev->{crt});
like($out, qr/Responder Error: malformedrequest/i, 'two certificates in one request: malformedRequest');
my $g = $relay->http_get('/ocsp', method => 'POST', body => 'not an OCSP request',
                         headers => { 'Content-Type' => 'application/ocsp-request' });
is($g->{body}, "\x30\x03\x0a\x01\x01", 'garbage: malformedRequest');

# --- GET, RFC 5019 ------------------------------------------------------------------

($rc, $out) = run_cmd(['openssl', 'ocsp', '-issuer', pki_file('inter.pem'), '-cert', $a->{crt},
                       '-no_nonce', '-reqout', "$dir/a.req"], merge => 1);
my $b64 = MIME::Base64::encode_base64(slurp("$dir/a.req") // '', '');
(my $enc = $b64) =~ s/([^A-Za-z0-9])/sprintf '%%%02X', ord $1/ge;
$g = $relay->http_get("/ocsp/$enc");
is($g->{status}, 200, 'GET /ocsp/<url-encoded base64>: 200');
is($g->{headers}{'content-type'}, 'application/ocsp-response', 'application/ocsp-response');
ok(length $held && $g->{body} eq $held, "the CA's bytes, as the relay holds them");
my $h = $g->{headers};
ok($h->{'last-modified'} && $h->{expires}, 'Last-Modified and Expires');
like($h->{'cache-control'} // '', qr/^max-age=\d+, public, no-transform, must-revalidate$/,
     'Cache-Control: max-age, public, no-transform, must-revalidate');
is($h->{etag}, '"' . Digest::SHA::sha1_hex($held) . '"', 'ETag: the hash of the response');
is($relay->http_get("/ocsp/$enc", headers => { 'If-None-Match' => $h->{etag} })->{status},
   304, 'If-None-Match: 304');
is($relay->http_get("/ocsp/$b64")->{body}, $held, 'the base64 sent as it is (slashes and all)');

is(responder_count('relay-a') + responder_count('relay-rev'), $ca0{'relay-a'} + $ca0{'relay-rev'},
   "none of it reached the CA's responder");
my $j = eval { JSON::PP::decode_json($relay->http_get('/staple-status?json')->{body}) } || {};
my $c = $j->{relay} || {};
ok(($c->{successful} // 0) >= 5 && ($c->{unauthorized} // 0) == 1 && ($c->{malformed} // 0) == 2,
   'the status page counts the answers: successful, unauthorized, malformed')
    or diag(explain($c));

# --- nginx, its ssl_stapling_responder the relay ------------------------------------

SKIP: {
    my $nginx = find_program('nginx');
    ok($nginx, 'nginx is installed (Debian package nginx-light)')
        or skip 'no nginx', 3;
    my $port = free_port();
    my $trusted = "$dir/trusted.pem";
    spit($trusted, slurp(pki_file('root.pem')) . slurp(pki_file('inter.pem')), 0644);
    mkdir "$dir/nginx";
    chmod 0755, "$dir/nginx";
    my $user = $> == 0 ? "user nobody nogroup;\n" : '';
    spit("$dir/nginx/nginx.conf", <<"EOF");
${user}daemon off;
worker_processes 1;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/nginx; proxy_temp_path $dir/nginx;
    fastcgi_temp_path $dir/nginx; uwsgi_temp_path $dir/nginx; scgi_temp_path $dir/nginx;
    server {
        listen 127.0.0.1:$port ssl;
        server_name localhost;
        ssl_certificate $a->{pem};
        ssl_certificate_key $a->{key};
        ssl_stapling on;
        ssl_stapling_verify on;
        ssl_trusted_certificate $trusted;
        ssl_stapling_responder $url/;
        location / { return 200 "ok\\n"; }
    }
}
EOF
    my $pid = spawn([$nginx, '-p', "$dir/nginx", '-c', "$dir/nginx/nginx.conf"],
                    out => "$dir/nginx/out.log", setsid => 1);
    my $n0 = responder_count('relay-a');
    # nginx asks on the first handshake and staples from a later one
    my $r;
    my $got = wait_until(20, sub { $r = handshake($port); $r->{stapled} }, 0.2);
    ok($got && staple_good($r), 'nginx staples a good, verified response through the relay')
        or diag(explain($r), slurp("$dir/nginx/error.log") // '');
    ok($got && $r->{der} eq $held, "byte for byte the CA's response the relay holds");
    is(responder_count('relay-a'), $n0, "nginx's request reached the relay, not the CA");
    stop_pid($pid);
}

# --- another mod_staple server staples through the relay -----------------------------

my $n0 = responder_count('relay-a');
my $s2 = StapleNode->new(name => 'relay-client', dir => "$dir/client", cert => $a,
                         directives => "StapleForceURL $url/\n");
$ok = eval { $s2->start; 1 };
ok($ok, 'a second server with StapleForceURL at the relay starts') or diag($@);
my $r2 = $s2->handshake;
ok(staple_good($r2) && $r2->{der} eq $held, "it staples the CA's response through the relay")
    or diag(explain($r2), $s2->log_tail(10));
is(responder_count('relay-a'), $n0, "without a request to the CA's responder");
$s2->stop;
$relay->stop;
