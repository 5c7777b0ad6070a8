// A Java TLS client whose revocation check uses the stapled OCSP response
// only (t/interop.t runs it with Debian's openjdk-17):
//
//   java -Djdk.tls.client.enableStatusRequestExtension=true \
//        -cp DIR StapleClient ROOT.pem HOST PORT DEAD_URL
//
// It trusts the certificates in ROOT.pem and nothing else, connects to
// 127.0.0.1:PORT with SNI HOST, checks the server's name, and checks the
// leaf's revocation with a PKIXRevocationChecker (ONLY_END_ENTITY,
// NO_FALLBACK: OCSP, no CRLs). SunJSSE hands the checker the stapled
// response; without one the checker would ask a responder, so it is sent
// to DEAD_URL, where nothing listens: no responder is ever asked, and a
// handshake without a staple fails.
//
// Prints "OK <protocol> stapled <bytes> <HTTP status line>" and exits 0, or
// "FAIL <exception and causes>" and exits 1.
import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.cert.CertPathValidator;
import java.security.cert.CertificateFactory;
import java.security.cert.PKIXBuilderParameters;
import java.security.cert.PKIXRevocationChecker;
import java.security.cert.X509CertSelector;
import java.security.cert.X509Certificate;
import java.util.EnumSet;
import java.util.List;
import javax.net.ssl.CertPathTrustManagerParameters;
import javax.net.ssl.ExtendedSSLSession;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

public final class StapleClient {
    private static final int TIMEOUT_MS = 5000;

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: StapleClient ROOT.pem HOST PORT DEAD_URL");
            System.exit(2);
        }
        String host = args[1];
        int port = Integer.parseInt(args[2]);

        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        CertificateFactory cf = CertificateFactory.getInstance("X.509");
        try (InputStream in = new FileInputStream(args[0])) {
            int n = 0;
            for (java.security.cert.Certificate c : cf.generateCertificates(in)) {
                trust.setCertificateEntry("root" + n++, (X509Certificate) c);
            }
        }

        PKIXRevocationChecker revocation =
            (PKIXRevocationChecker) CertPathValidator.getInstance("PKIX").getRevocationChecker();
        revocation.setOptions(EnumSet.of(PKIXRevocationChecker.Option.ONLY_END_ENTITY,
                                         PKIXRevocationChecker.Option.NO_FALLBACK));
        revocation.setOcspResponder(URI.create(args[3]));
        PKIXBuilderParameters params = new PKIXBuilderParameters(trust, new X509CertSelector());
        params.setRevocationEnabled(true);
        params.addCertPathChecker(revocation);

        TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
        tmf.init(new CertPathTrustManagerParameters(params));
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);

        try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket()) {
            s.connect(new InetSocketAddress("127.0.0.1", port), TIMEOUT_MS);
            s.setSoTimeout(TIMEOUT_MS);
            SSLParameters sp = s.getSSLParameters();
            sp.setServerNames(List.of(new SNIHostName(host)));
            sp.setEndpointIdentificationAlgorithm("HTTPS");
            s.setSSLParameters(sp);
            s.startHandshake();

            List<byte[]> staples = ((ExtendedSSLSession) s.getSession()).getStatusResponses();
            int stapled = staples.isEmpty() ? 0 : staples.get(0).length;
            OutputStream out = s.getOutputStream();
            out.write(("GET / HTTP/1.0\r\nHost: " + host + "\r\n\r\n")
                          .getBytes(StandardCharsets.US_ASCII));
            out.flush();
            BufferedReader in = new BufferedReader(
                new InputStreamReader(s.getInputStream(), StandardCharsets.ISO_8859_1));
            String status = in.readLine();
            System.out.println("OK " + s.getSession().getProtocol() + " stapled " + stapled + " "
                               + status);
        } catch (Exception e) {
            StringBuilder why = new StringBuilder("FAIL");
            for (Throwable t = e; t != null; t = t.getCause()) {
                why.append(" | ").append(t);
            }
            System.out.println(why);
            System.exit(1);
        }
    }
}
