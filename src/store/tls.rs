//! TLS for server connections, through rustls with the ring provider: the
//! client configuration a store's `tls` setting asks for, the CA read from
//! its `ca_file`, and failures explained in the setting's own words.
//!
//! `require` encrypts but accepts any certificate, as libpq's
//! `sslmode=require` does; the handshake's signatures are still checked
//! against the certificate offered. `verify-full` trusts only the CA in
//! `ca_file` (no built-in roots: a database's certificate comes from the
//! operator's CA, not a public one) and checks the host name.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::StoreError;
use crate::rules::{StoreConfig, Tls};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// mysql_async builds its own rustls configuration with the process's
/// default provider: let that be ring, whatever else a build pulls in.
pub(crate) fn install_default_provider() {
    // An error only says a default is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn config_error(config: &StoreConfig, message: String) -> StoreError {
    StoreError::Config {
        store: config.name.clone(),
        message,
    }
}

/// A CA file's PEM text, checked to hold at least one certificate and
/// nothing unreadable.
pub(crate) fn read_ca(config: &StoreConfig, path: &Path) -> Result<Vec<u8>, StoreError> {
    let pem = std::fs::read(path).map_err(|err| {
        config_error(
            config,
            format!("cannot read ca_file {}: {err}", path.display()),
        )
    })?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            config_error(
                config,
                format!("ca_file {} is not PEM: {err}", path.display()),
            )
        })?;
    if certificates.is_empty() {
        return Err(config_error(
            config,
            format!("ca_file {} holds no PEM certificate", path.display()),
        ));
    }
    Ok(pem)
}

/// The rustls configuration for a store's `tls`; `None` for `disable`.
pub(crate) fn client_config(config: &StoreConfig) -> Result<Option<ClientConfig>, StoreError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| config_error(config, format!("TLS: {err}")))?;
    let client = match &config.tls {
        Tls::Disable => return Ok(None),
        Tls::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                provider().signature_verification_algorithms,
            )))
            .with_no_client_auth(),
        Tls::VerifyFull { ca_file } => {
            let pem = read_ca(config, ca_file)?;
            let mut roots = RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(&pem).flatten() {
                roots.add(certificate).map_err(|err| {
                    config_error(
                        config,
                        format!("ca_file {}: unusable certificate: {err}", ca_file.display()),
                    )
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(client))
}

/// `require`: any certificate is accepted, as libpq's `sslmode=require`
/// accepts it; the handshake must still be signed by the certificate's key.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A failed TLS handshake explained in the terms of the store's setting,
/// when a rustls error is behind `err`; `None` otherwise.
pub(crate) fn explain(
    config: &StoreConfig,
    err: &(dyn std::error::Error + 'static),
) -> Option<String> {
    use rustls::{CertificateError, Error};
    let mode = config.tls.as_str();
    let rustls_error = find_rustls_error(err)?;
    Some(match (rustls_error, &config.tls) {
        (
            Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ),
            Tls::VerifyFull { ca_file },
        ) => format!(
            "TLS: the server's certificate is not signed by the CA in ca_file {} (tls = \"{mode}\")",
            ca_file.display()
        ),
        (
            Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ),
            _,
        ) => format!(
            "TLS: the server's certificate does not name the host connected to (tls = \"{mode}\" checks the host name): {rustls_error}"
        ),
        (other, _) => format!("TLS (tls = \"{mode}\"): {other}"),
    })
}

/// The error for a server that answered a TLS request with "no".
pub(crate) fn not_offered(config: &StoreConfig) -> String {
    format!(
        "the server does not offer TLS, and the store asks for tls = \"{}\"; no password or query was sent",
        config.tls.as_str()
    )
}

/// The rustls error somewhere in a chain of sources, including inside
/// `io::Error`s (whose `source` skips the error they wrap).
fn find_rustls_error<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    let mut current: Option<&'e (dyn std::error::Error + 'static)> = Some(err);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = find_rustls_error(inner)
        {
            return Some(found);
        }
        current = error.source();
    }
    None
}
