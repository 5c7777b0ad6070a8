package StaplePKI;
# Certificates for the tests, beside the suite's PKI in t/pki (made by
# scripts/mkpki from t/TEST):
#
#   my $leaf = make_leaf($dir, 'restart');       # a fresh leaf of its own
#   cert_id_hex($file)                           # mod_staple's id of a certificate
#   cert_serial('good')                          # t/pki/good.crt's serial, as logged
#   logged_serial($file)                         # the same for any certificate file
use strict;
use warnings;

use Digest::SHA ();
use Exporter 'import';
use File::Spec::Functions qw(catfile);
use MIME::Base64 ();

use StapleProc qw(run_cmd slurp spit);
use StapleResponder ();
use StapleTest qw(pki_file proxy_port);

our @EXPORT_OK = qw(make_leaf cert_id_hex cert_serial logged_serial pem_der);

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

# The serial of a certificate file in hex as openssl prints it, or undef.
sub serial_hex {
    my ($file) = @_;
    my ($rc, $out) = run_cmd(['openssl', 'x509', '-in', $file, '-noout', '-serial'],
                             merge => 1);
    return $rc == 0 && $out =~ /serial=([0-9A-Fa-f]+)/ ? $1 : undef;
}

# The serial of a certificate file as mod_staple logs it: upper-case hex
# without leading zero bytes; undef when it cannot be read.
sub logged_serial {
    my $serial = serial_hex($_[0]) // return;
    $serial =~ s/^(?:00)+(?=..)//;
    return uc $serial;
}

# The serial of t/pki/NAME.crt as mod_staple logs it.
sub cert_serial { logged_serial(pki_file("$_[0].crt")) }

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
# "revoked" for t/pki/revoked.crt); aia => [URL, ...] names the OCSP URIs
# of the authorityInfoAccess extension instead, in order.
# Returns { name, pem (leaf + intermediate), key, crt, id, must_staple }.
sub make_leaf {
    my ($dir, $name, %o) = @_;
    die "bad leaf name $name\n" unless $name =~ /^[a-z][a-z0-9_-]{0,31}$/;
    print STDERR "# the suite's OCSP proxy (port " . proxy_port() . ") does not answer: "
               . "run this test through t/TEST\n"
        unless StapleResponder::proxy_ready(proxy_port());
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
    my $serial = serial_hex($donor) // die "cannot read the serial of $donor\n";

    my $base = catfile($dir, $name);
    my $url = join ',OCSP;URI:',
        @{ $o{aia} || ['http://127.0.0.1:' . proxy_port() . "/$name/"] };
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
        my ($rc, $out) = run_cmd($cmd, merge => 1);
        die "@$cmd failed: $out\n" if $rc;
    }
    spit("$base.pem", slurp("$base.crt") . slurp(pki_file('inter.pem')), 0644);
    chmod 0644, "$base.key", "$base.crt";
    return { name => $name, pem => "$base.pem", key => "$base.key", crt => "$base.crt",
             id => cert_id_hex("$base.crt"), must_staple => $o{must_staple} ? 1 : 0 };
}

1;
