import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.security.KeyStore;
import java.security.MessageDigest;
import java.security.cert.CertificateFactory;
import java.time.Duration;
import java.util.Enumeration;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSessionContext;
import javax.net.ssl.TrustManagerFactory;

import org.apache.commons.net.ftp.FTP;
import org.apache.commons.net.ftp.FTPSClient;

/**
 * Drives Apache Commons Net's FTPSClient (explicit FTPS, passive mode, PROT P)
 * through ftpsgate for the integration tests, as a scheduled job would.
 *
 * Usage: java -cp commons-net.jar:DIR FtpsClient HOST PORT USER PASSWORD CAFILE STEP...
 * where STEP is download:REMOTE, upload:LOCAL:REMOTE or list. The certificate
 * is verified against CAFILE, host name included. Prints one JSON object:
 * each step's outcome (ok, the last reply, the exception if one was thrown,
 * and a download's SHA-256 and size), then QUIT's reply.
 */
public class FtpsClient {
    public static void main(String[] a) throws Exception {
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        try (InputStream in = new FileInputStream(a[4])) {
            ks.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);

        FTPSClient ftp = new FTPSClient(false, ctx); // explicit: AUTH TLS at connect
        ftp.setEndpointCheckingEnabled(true);
        ftp.setDefaultTimeout(60000);
        ftp.setDataTimeout(Duration.ofSeconds(60));
        ftp.connect(a[0], Integer.parseInt(a[1]));
        if (!ftp.login(a[2], a[3])) {
            throw new IOException("login failed: " + ftp.getReplyString());
        }
        ftp.execPBSZ(0);
        ftp.execPROT("P");
        ftp.enterLocalPassiveMode();
        ftp.setFileType(FTP.BINARY_FILE_TYPE);

        StringBuilder out = new StringBuilder("{\"steps\":[");
        for (int i = 5; i < a.length; i++) {
            // JSSE looks TLS sessions up by host and port, so a data
            // connection resumes only when a passive port repeats, by
            // accident, with the session of that port's last connection.
            // Forgetting them makes every step behave the same.
            SSLSessionContext sessions = ctx.getClientSessionContext();
            for (Enumeration<byte[]> ids = sessions.getIds(); ids.hasMoreElements(); ) {
                SSLSession s = sessions.getSession(ids.nextElement());
                if (s != null) {
                    s.invalidate();
                }
            }
            String[] step = a[i].split(":", 3);
            boolean ok = false;
            String error = "", sha = "";
            long size = 0;
            try {
                switch (step[0]) {
                    case "download": {
                        ByteArrayOutputStream buf = new ByteArrayOutputStream();
                        ok = ftp.retrieveFile(step[1], buf);
                        byte[] b = buf.toByteArray();
                        size = b.length;
                        StringBuilder h = new StringBuilder();
                        for (byte x : MessageDigest.getInstance("SHA-256").digest(b)) {
                            h.append(String.format("%02x", x));
                        }
                        sha = h.toString();
                        break;
                    }
                    case "upload":
                        try (InputStream in = new FileInputStream(step[1])) {
                            ok = ftp.storeFile(step[2], in);
                        }
                        break;
                    case "list":
                        ok = ftp.listNames() != null;
                        break;
                    default:
                        throw new IllegalArgumentException("unknown step " + a[i]);
                }
            } catch (IOException e) {
                error = e.getClass().getName() + ": " + e.getMessage();
            }
            if (i > 5) {
                out.append(',');
            }
            out.append("{\"op\":").append(quote(step[0]))
                .append(",\"ok\":").append(ok)
                .append(",\"reply\":").append(quote(ftp.getReplyString().trim()))
                .append(",\"error\":").append(quote(error))
                .append(",\"sha256\":").append(quote(sha))
                .append(",\"size\":").append(size).append('}');
        }
        ftp.logout();
        out.append("],\"quit\":").append(quote(ftp.getReplyString().trim())).append('}');
        ftp.disconnect();
        System.out.println(out);
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }
}
