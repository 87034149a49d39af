//! TLS settings shared by PD and TiKV connections: PEM files, read when a client is built.

use std::path::PathBuf;

/// TLS through rustls: PEM files for the CA and, for mutual TLS, the client certificate and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// The CA certificate(s) the servers' certificates must chain to.
    pub ca_file: PathBuf,
    /// The client certificate and its private key, for mutual TLS.
    pub client_identity: Option<ClientIdentity>,
    /// The name to verify the servers' certificates against; by default the host of each
    /// server's address.
    pub domain_name: Option<String>,
}

/// A client certificate and key, PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate chain file.
    pub cert_file: PathBuf,
    /// The private key file.
    pub key_file: PathBuf,
}

/// A TLS file cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot use TLS file {}: {reason}", path.display())]
pub struct TlsError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

impl TlsConfig {
    /// TLS with the CA in `ca_file`, no client identity, the default server names.
    pub fn new(ca_file: impl Into<PathBuf>) -> Self {
        Self { ca_file: ca_file.into(), client_identity: None, domain_name: None }
    }

    /// Reads every file the settings name, failing with the first that cannot be read.
    pub fn check(&self) -> Result<(), TlsError> {
        self.read_all().map(drop)
    }

    /// The CA and the optional identity's certificate and key, as read from their files.
    #[allow(clippy::type_complexity)]
    fn read_all(&self) -> Result<(Vec<u8>, Option<(Vec<u8>, Vec<u8>)>), TlsError> {
        let read = |path: &PathBuf| {
            std::fs::read(path)
                .map_err(|error| TlsError { path: path.clone(), reason: error.to_string() })
        };
        let ca = read(&self.ca_file)?;
        let identity = match &self.client_identity {
            Some(identity) => Some((read(&identity.cert_file)?, read(&identity.key_file)?)),
            None => None,
        };
        Ok((ca, identity))
    }
}

/// Reads the files of `config` into tonic's client TLS settings (for the crates that dial PD
/// and TiKV; a free function, so that the types which re-export [`TlsConfig`] show no tonic
/// type).
#[cfg(feature = "tls")]
pub fn tonic_tls(config: &TlsConfig) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};

    let (ca, identity) = config.read_all()?;
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    if let Some(domain) = &config.domain_name {
        tls = tls.domain_name(domain.clone());
    }
    Ok(tls)
}

/// The TLS failure in a connection error's chain, as one line, if the error is one: a
/// handshake that failed (a certificate the CA does not vouch for, a server that answered in
/// plain text, an alert from the peer) rather than a connection that could not be made.
#[cfg(feature = "tls")]
pub fn tls_handshake_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        // tokio-rustls hands rustls' error over inside an `io::Error`.
        let inner = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        let rustls = error
            .downcast_ref::<rustls::Error>()
            .or_else(|| inner.and_then(|inner| inner.downcast_ref::<rustls::Error>()));
        if let Some(failure) = rustls {
            return Some(describe(failure));
        }
        next = error.source();
    }
    None
}

/// A rustls error in words, with a hint where the usual cause is known.
#[cfg(feature = "tls")]
fn describe(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!("{error} (does the server speak plain text? then drop https://)")
        }
        rustls::Error::InvalidCertificate(_) => {
            format!("{error} (is --ca the CA that signed the server's certificate?)")
        }
        other => other.to_string(),
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_failure_is_found_in_the_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("transport error")]
        struct Transport(#[source] std::io::Error);
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let failure = tls_handshake_failure(&Transport(io)).expect("found");
        assert!(failure.starts_with("invalid peer certificate: UnknownIssuer"), "{failure}");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(tls_handshake_failure(&Transport(refused)), None);
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = std::env::temp_dir().join(format!("kvfeed-base-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").unwrap();
        let mut config = TlsConfig::new(&ca);
        config.domain_name = Some("localhost".to_owned());
        assert!(config.check().is_ok());
        assert!(tonic_tls(&config).is_ok());
        let missing = dir.join("client.key");
        config.client_identity =
            Some(ClientIdentity { cert_file: ca.clone(), key_file: missing.clone() });
        let error = tonic_tls(&config).unwrap_err();
        assert_eq!(config.check().unwrap_err().path, missing);
        assert_eq!(error.path, missing);
        assert!(error.to_string().contains("client.key"), "{error}");
        let error = TlsConfig::new(dir.join("nope.pem")).check().unwrap_err();
        assert!(error.to_string().starts_with("cannot use TLS file "), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
