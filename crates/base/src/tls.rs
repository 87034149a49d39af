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

    /// Reads the files into tonic's client TLS settings.
    #[cfg(feature = "tls")]
    pub fn load(&self) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};

        let read = |path: &PathBuf| {
            std::fs::read(path)
                .map_err(|error| TlsError { path: path.clone(), reason: error.to_string() })
        };
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&self.ca_file)?));
        if let Some(identity) = &self.client_identity {
            tls = tls.identity(Identity::from_pem(
                read(&identity.cert_file)?,
                read(&identity.key_file)?,
            ));
        }
        if let Some(domain) = &self.domain_name {
            tls = tls.domain_name(domain.clone());
        }
        Ok(tls)
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named() {
        let dir = std::env::temp_dir().join(format!("kvfeed-base-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").unwrap();
        let mut config = TlsConfig::new(&ca);
        config.domain_name = Some("localhost".to_owned());
        assert!(config.load().is_ok());
        let missing = dir.join("client.key");
        config.client_identity =
            Some(ClientIdentity { cert_file: ca.clone(), key_file: missing.clone() });
        let error = config.load().unwrap_err();
        assert_eq!(error.path, missing);
        assert!(error.to_string().contains("client.key"), "{error}");
        let error = TlsConfig::new(dir.join("nope.pem")).load().unwrap_err();
        assert!(error.to_string().starts_with("cannot use TLS file "), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
