// Opens a PKCS#12 file the way a Java service does (KeyStore.load with a password) and
// prints one line per entry: "key <alias> <algorithm> chain <n> <subject>" or
// "trusted <alias> <subject>". Compiled and run by tests/e2e/test_outputs_java.py.
import java.io.FileInputStream;
import java.security.Key;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.Collections;

public class LoadKeyStore {
    public static void main(String[] args) throws Exception {
        char[] password = args[1].toCharArray();
        KeyStore store = KeyStore.getInstance("PKCS12");
        try (FileInputStream in = new FileInputStream(args[0])) {
            store.load(in, password);
        }
        for (String alias : Collections.list(store.aliases())) {
            if (store.isKeyEntry(alias)) {
                Key key = store.getKey(alias, password);
                Certificate[] chain = store.getCertificateChain(alias);
                X509Certificate leaf = (X509Certificate) chain[0];
                System.out.println("key " + alias + " " + key.getAlgorithm() + " chain "
                    + chain.length + " " + leaf.getSubjectX500Principal().getName());
            } else if (store.isCertificateEntry(alias)) {
                X509Certificate cert = (X509Certificate) store.getCertificate(alias);
                System.out.println("trusted " + alias + " "
                    + cert.getSubjectX500Principal().getName());
            }
        }
    }
}
