//! TLS for the SIP tests: certificates made at test time with rcgen
//! (nothing is kept in the repository), and socat (OpenSSL) as the TLS
//! hop in front of SIPp, whose Debian build has no TLS: a client hop for
//! dial-in (SIPp → TCP → socat → TLS → sluice) and a server hop for
//! dial-out (sluice → TLS → socat → TCP → SIPp).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// The names every test certificate is for.
fn names() -> Vec<String> {
    vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
}

/// A certificate for 127.0.0.1 and localhost, written as PEM into a
/// fresh directory (removed on drop).
pub struct TestCert {
    dir: PathBuf,
}

impl TestCert {
    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sluice-sip-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    /// A self-signed certificate (its own `cert.pem` is the trust anchor).
    pub fn new(name: &str) -> Self {
        let dir = Self::dir(name);
        let made = rcgen::generate_simple_self_signed(names()).expect("rcgen makes a certificate");
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).expect("write cert");
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).expect("write key");
        Self { dir }
    }

    /// A certificate issued by a CA made for it, whose certificate is
    /// [`Self::ca`].
    pub fn with_ca(name: &str) -> Self {
        let dir = Self::dir(name);
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("sluice test CA {name}"));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("rcgen makes a CA");
        let key = KeyPair::generate().expect("server key");
        let cert = CertificateParams::new(names())
            .expect("server params")
            .signed_by(&key, &ca)
            .expect("the CA signs");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write CA");
        std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
        Self { dir }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// The issuing CA's certificate ([`Self::with_ca`] only).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The `[sip]` lines that serve TLS with it.
    pub fn config(&self) -> String {
        format!(
            "listen_tls = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            self.cert().display(),
            self.key().display()
        )
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free TCP port on 127.0.0.1 a moment ago.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// socat carrying one connection between TLS and plain TCP.
pub struct TlsHop {
    child: Child,
    port: u16,
}

impl TlsHop {
    /// A TLS client hop: SIPp speaks SIP over TCP to socat, which verifies
    /// sluice's certificate and carries the stream to `tls` over TLS. The
    /// INVITE's Via says TCP; sluice answers over the TLS connection it
    /// came on.
    pub fn client(tls: SocketAddr, cert: &TestCert) -> Self {
        let port = free_tcp_port();
        Self::spawn(
            port,
            format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"),
            format!(
                "OPENSSL:127.0.0.1:{},cafile={},commonname=localhost,verify=1",
                tls.port(),
                cert.cert().display()
            ),
        )
    }

    /// A TLS server hop: socat accepts one TLS connection presenting
    /// `cert` (asking for no client certificate) and carries it as plain
    /// TCP to `tcp` (SIPp with `-t t1`).
    pub fn server(cert: &TestCert, tcp: SocketAddr) -> Self {
        Self::server_with(cert, tcp, "verify=0")
    }

    /// As [`Self::server`], but the TLS server asks for a client
    /// certificate and takes only one issued by `client_ca`'s CA.
    pub fn server_asking_for(cert: &TestCert, tcp: SocketAddr, client_ca: &TestCert) -> Self {
        Self::server_with(
            cert,
            tcp,
            &format!("verify=1,cafile={}", client_ca.ca().display()),
        )
    }

    fn server_with(cert: &TestCert, tcp: SocketAddr, verify: &str) -> Self {
        let port = free_tcp_port();
        Self::spawn(
            port,
            format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,cert={},key={},{verify}",
                cert.cert().display(),
                cert.key().display()
            ),
            format!("TCP:{tcp}"),
        )
    }

    fn spawn(port: u16, listen: String, connect: String) -> Self {
        let child = Command::new("socat")
            .arg(listen)
            .arg(connect)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run socat ({e}): install Debian's socat package"));
        // Listening shows in /proc/net/tcp (state 0A); connecting to find
        // out would use up socat's one connection.
        let needle = format!(":{port:04X} 00000000:0000 0A");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string("/proc/net/tcp").is_ok_and(|t| t.contains(&needle)) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for socat to listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for TlsHop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
