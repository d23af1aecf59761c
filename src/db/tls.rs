//! TLS to PostgreSQL with libpq's `sslmode` meanings, over rustls.
//!
//! | sslmode | encrypted | certificate checked | host name checked |
//! |---|---|---|---|
//! | `disable` | no | – | – |
//! | `allow`, `prefer` (default) | if the server offers it | no | no |
//! | `require` | yes | only when a root certificate is given (as libpq) | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes |
//!
//! Root certificates: `sslrootcert=FILE` (PEM), `sslrootcert=system` (the
//! operating system's store), else `~/.postgresql/root.crt` when it exists.
//! A client certificate: `sslcert`/`sslkey`, else
//! `~/.postgresql/postgresql.crt` and `.key` when both exist. `allow` is
//! taken as `prefer` (TLS first, then without).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::conninfo::ConnInfo;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Result<SslMode, String> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres negotiates: TLS never, if offered, or always.
    pub fn negotiation(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }
}

/// Where trusted root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    File(PathBuf),
    System,
}

/// The TLS half of a connection's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub roots: Option<Roots>,
    /// Client certificate chain and key (PEM).
    pub client: Option<(PathBuf, PathBuf)>,
}

impl TlsSettings {
    /// Reads `sslmode`, `sslrootcert`, `sslcert` and `sslkey`, with libpq's
    /// defaults under `~/.postgresql/`.
    pub fn from_conninfo(info: &ConnInfo, home: Option<&Path>) -> Result<TlsSettings, String> {
        let mode = info.get("sslmode").map(SslMode::parse).transpose()?.unwrap_or_default();
        let dot = home.map(|h| h.join(".postgresql"));
        let roots = match info.get("sslrootcert") {
            Some("system") => Some(Roots::System),
            Some(file) => Some(Roots::File(PathBuf::from(file))),
            None => dot.as_ref().map(|d| d.join("root.crt")).filter(|f| f.is_file()).map(Roots::File),
        };
        let client = match (info.get("sslcert"), info.get("sslkey")) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (Some(_), None) | (None, Some(_)) => {
                return Err("sslcert and sslkey go together: give both, or neither".into());
            }
            (None, None) => dot
                .map(|d| (d.join("postgresql.crt"), d.join("postgresql.key")))
                .filter(|(c, k)| c.is_file() && k.is_file()),
        };
        Ok(TlsSettings { mode, roots, client })
    }

    /// The connector for tokio-postgres: what it checks follows the mode.
    /// Reads the certificate files (and the system store) now.
    pub fn connector(&self) -> Result<Connector, String> {
        self.client_config().map(|config| Connector(MakeRustlsConnect::new(config)))
    }

    fn client_config(&self) -> Result<ClientConfig, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match (&self.roots, self.mode) {
            (Some(roots), _) => Some(Arc::new(load_roots(roots)?)),
            (None, SslMode::VerifyCa | SslMode::VerifyFull) => {
                return Err(format!(
                    "sslmode={} needs the certificate of the server's CA: set sslrootcert=FILE (or sslrootcert=system), or put it in ~/.postgresql/root.crt",
                    self.mode.as_str()
                ));
            }
            (None, _) => None,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, roots) {
            (SslMode::VerifyFull, Some(roots)) => WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("the root certificates cannot be used: {e}"))?,
            // libpq: `require` with a root certificate checks it, as verify-ca.
            (SslMode::VerifyCa | SslMode::Require, roots) => {
                Arc::new(ChainVerifier { roots, provider: provider.clone() })
            }
            _ => Arc::new(ChainVerifier { roots: None, provider: provider.clone() }),
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS cannot be set up: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &self.client {
            Some((cert, key)) => {
                let chain = load_certificates(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("the client key {} cannot be read: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("the client certificate and key do not go together: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(config)
    }
}

/// A built connector: certificates read and checked once, shared by every
/// connection (pooled and dedicated) a session opens.
#[derive(Clone)]
pub struct Connector(pub MakeRustlsConnect);

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector")
    }
}

impl Default for Connector {
    /// libpq's default, `prefer` with nothing to check: needs no file.
    fn default() -> Connector {
        TlsSettings::default().connector().expect("prefer without certificates reads no file")
    }
}

fn load_certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let unreadable = |e: &dyn std::fmt::Display| format!("the certificate file {} cannot be read: {e}", file.display());
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| unreadable(&e))?;
    if certificates.is_empty() {
        return Err(format!("the certificate file {} holds no PEM certificate", file.display()));
    }
    Ok(certificates)
}

fn load_roots(roots: &Roots) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(file) => {
            for certificate in load_certificates(file)? {
                store
                    .add(certificate)
                    .map_err(|e| format!("a root certificate in {} is not usable: {e}", file.display()))?;
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "sslrootcert=system: the system has no trusted certificates (install ca-certificates)".into()
                );
            }
        }
    }
    Ok(store)
}

/// What `prefer`, `require` and `verify-ca` check of the server's
/// certificate: with `roots`, that its chain leads to one of them (the name
/// is not checked); without, nothing — libpq's behaviour. The handshake's
/// own signature is always verified. (`verify-full` uses rustls's own
/// verifier, which checks the name too.)
#[derive(Debug)]
struct ChainVerifier {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let certificate = rustls::server::ParsedCertificate::try_from(end_entity)?;
            let algorithms = self.provider.signature_verification_algorithms.all;
            verify_server_cert_signed_by_trust_anchor(&certificate, roots, intermediates, now, algorithms)?;
        }
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A connection error in one line: what TLS refused, in an operator's words.
pub fn describe_failure(error: &str) -> Option<&'static str> {
    let error = error.to_lowercase();
    if error.contains("notvalidforname") || error.contains("not valid for name") {
        Some(
            "the server's certificate is not for this host name (sslmode=verify-full): connect by the name on the certificate",
        )
    } else if error.contains("unknownissuer") || error.contains("unknown issuer") || error.contains("badsignature") {
        Some("the server's certificate is not signed by a trusted CA: check sslrootcert")
    } else if error.contains("expired") {
        Some("the server's certificate has expired")
    } else if error.contains("server does not support tls") || error.contains("does not support tls") {
        Some("the server does not offer TLS, and sslmode requires it")
    } else if error.contains("certificate required") || error.contains("certificaterequired") {
        Some("the server wants a client certificate: set sslcert and sslkey")
    } else {
        None
    }
}

impl std::fmt::Display for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Roots::File(file) => write!(f, "{}", file.display()),
            Roots::System => write!(f, "the system's store"),
        }
    }
}
