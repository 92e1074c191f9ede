//! mTLS set-up: rustls server and client configurations built from a config of
//! paths, the PEM loaders behind them, and the per-connection participant identity.
//!
//! Policy (MHLW security guideline 6.0, CRYPTREC): TLS 1.3, and TLS 1.2 only
//! with ECDHE key exchange and AES-GCM. ChaCha20-Poly1305 is left out because it
//! is not on the CRYPTREC list. ALPN is `http/1.1`.
//!
//! Client authentication, when a client CA is configured, is *required*: a peer
//! without a certificate from that CA never completes the handshake. When CRLs
//! are given, the end-entity certificate's revocation status is checked and a
//! certificate whose status no given CRL can decide is refused (fail closed).
//! An expired CRL is still used: the hub is its own CA and rewrites the CRL on
//! every revocation, so a CRL past its nextUpdate still lists every revocation;
//! refusing it would lock out every participant instead. With no CRL given, no
//! revocation check is made.

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::{CryptoProvider, ring};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::participant::ParticipantId;

/// A client-certificate verifier as a server config holds it.
pub type SharedClientVerifier = Arc<dyn ClientCertVerifier>;

/// The only ALPN protocol the hub speaks.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Smallest RSA modulus accepted for a certificate key, in bits.
const MIN_RSA_BITS: usize = 2048;

/// Where the hub finds its TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsPaths {
    /// PEM certificate chain, leaf first.
    pub cert_chain: PathBuf,
    /// PEM private key of the leaf; must not be group- or world-readable.
    pub key: PathBuf,
    /// PEM participant CA; `None` serves without client authentication (resident portal).
    pub client_ca: Option<PathBuf>,
    /// PEM CRLs of the participant CA; only used with `client_ca`.
    pub crls: Vec<PathBuf>,
}

/// Where a participant finds its TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsPaths {
    /// PEM CA certificate(s) that the hub's server certificate must chain to.
    pub ca: PathBuf,
    /// PEM client certificate chain, leaf first.
    pub cert_chain: PathBuf,
    /// PEM private key of the client certificate; must not be group- or world-readable.
    pub key: PathBuf,
}

/// The cipher suites Renkei allows: TLS 1.3 AES-GCM, TLS 1.2 ECDHE with AES-GCM.
pub fn cipher_suites() -> Vec<SupportedCipherSuite> {
    use ring::cipher_suite as cs;
    vec![
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ]
}

/// ring's default provider restricted to [`cipher_suites`].
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: cipher_suites(),
        ..ring::default_provider()
    })
}

/// Builds the hub's server configuration: mTLS with required client
/// certificates when `client_ca` is set, plain server TLS otherwise.
pub fn server_config(paths: &ServerTlsPaths) -> Result<Arc<ServerConfig>> {
    Ok(server_config_and_verifier(paths)?.0)
}

/// [`server_config`], and the client-certificate verifier inside it (when `client_ca`
/// is set), so a server can check an open connection's certificate again after the
/// CRLs were reloaded.
pub fn server_config_and_verifier(
    paths: &ServerTlsPaths,
) -> Result<(Arc<ServerConfig>, Option<SharedClientVerifier>)> {
    let chain = load_certs(&paths.cert_chain)?;
    check_leaf_key(&chain, &paths.cert_chain)?;
    let key = load_private_key(&paths.key)?;
    let provider = crypto_provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(format!("tls protocol versions rejected: {e}")))?;
    let mut client_verifier: Option<SharedClientVerifier> = None;
    let builder = match &paths.client_ca {
        Some(ca_path) => {
            let roots = root_store(ca_path)?;
            let crls = load_crls(&paths.crls)?;
            // Required mode: `allow_unauthenticated` is never called.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .with_crls(crls)
                .only_check_end_entity_revocation()
                .build()
                .map_err(|e| {
                    Error::Tls(format!(
                        "client verifier for `{}` cannot be built: {e}",
                        ca_path.display()
                    ))
                })?;
            client_verifier = Some(verifier.clone());
            builder.with_client_cert_verifier(verifier)
        }
        None if !paths.crls.is_empty() => {
            return Err(Error::Tls(
                "crls are configured without a client ca; they would be ignored".to_owned(),
            ));
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        Error::Tls(format!(
            "certificate `{}` and key `{}` do not form a usable pair: {e}",
            paths.cert_chain.display(),
            paths.key.display()
        ))
    })?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok((Arc::new(config), client_verifier))
}

/// Builds a participant's client configuration: trusts only `ca` and presents
/// the participant's certificate.
pub fn client_config(paths: &ClientTlsPaths) -> Result<Arc<ClientConfig>> {
    let roots = root_store(&paths.ca)?;
    let chain = load_certs(&paths.cert_chain)?;
    check_leaf_key(&chain, &paths.cert_chain)?;
    let key = load_private_key(&paths.key)?;
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(format!("tls protocol versions rejected: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            Error::Tls(format!(
                "certificate `{}` and key `{}` do not form a usable pair: {e}",
                paths.cert_chain.display(),
                paths.key.display()
            ))
        })?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// The participant a verified peer presented, from its leaf certificate.
///
/// Pass `ServerConnection::peer_certificates()`; `None` or an empty chain is an error.
pub fn peer_participant(peer_certificates: Option<&[CertificateDer<'_>]>) -> Result<ParticipantId> {
    let leaf = peer_certificates
        .and_then(|chain| chain.first())
        .ok_or_else(|| Error::Tls("peer presented no client certificate".to_owned()))?;
    crate::participant::from_cert_der(leaf)
}

/// Loads every certificate of a PEM file; a file with none is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(path)?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(pem.as_slice()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Certificate(format!("`{}` is not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Certificate(format!(
            "`{}` holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Loads the single private key (PKCS#8, PKCS#1 or SEC1) of a PEM file that
/// is readable by its owner only.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    check_key_file_mode(path)?;
    let pem = read_file(path)?;
    let mut keys = Vec::new();
    for item in rustls_pemfile::read_all(&mut BufReader::new(pem.as_slice())) {
        let item = item.map_err(|e| {
            Error::Certificate(format!("`{}` is not valid PEM: {e}", path.display()))
        })?;
        match item {
            rustls_pemfile::Item::Pkcs1Key(k) => keys.push(PrivateKeyDer::from(k)),
            rustls_pemfile::Item::Pkcs8Key(k) => keys.push(PrivateKeyDer::from(k)),
            rustls_pemfile::Item::Sec1Key(k) => keys.push(PrivateKeyDer::from(k)),
            _ => {}
        }
    }
    let count = keys.len();
    match keys.pop() {
        Some(key) if count == 1 => Ok(key),
        Some(_) => Err(Error::Certificate(format!(
            "`{}` holds {count} private keys, expected one",
            path.display()
        ))),
        None => Err(Error::Certificate(format!(
            "`{}` holds no private key",
            path.display()
        ))),
    }
}

/// Loads every CRL of the given PEM files; a file with none is an error.
pub fn load_crls(paths: &[PathBuf]) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let mut all = Vec::new();
    for path in paths {
        let pem = read_file(path)?;
        let crls = rustls_pemfile::crls(&mut BufReader::new(pem.as_slice()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::Certificate(format!("`{}` is not valid PEM: {e}", path.display()))
            })?;
        if crls.is_empty() {
            return Err(Error::Certificate(format!(
                "`{}` holds no crl",
                path.display()
            )));
        }
        all.extend(crls);
    }
    Ok(all)
}

/// The first instant (Unix seconds) at which a certificate of `chain`'s path is no longer
/// valid: the earliest `notAfter`, plus one second, over the leaf and each following
/// certificate that issued the one before it (others a client sends are not its path).
/// `None` if the leaf does not parse.
pub fn chain_expiry(chain: &[CertificateDer<'_>]) -> Option<u64> {
    let mut certs = chain
        .iter()
        .map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c));
    let leaf = certs.next()??;
    let not_after =
        |c: &X509Certificate<'_>| u64::try_from(c.validity().not_after.timestamp()).ok();
    let mut earliest = not_after(&leaf)?;
    let mut issuer = leaf.issuer().as_raw().to_vec();
    for cert in certs {
        let Some(cert) = cert.filter(|c| c.subject().as_raw() == issuer.as_slice()) else {
            break;
        };
        earliest = earliest.min(not_after(&cert)?);
        issuer = cert.issuer().as_raw().to_vec();
    }
    Some(earliest.saturating_add(1))
}

/// Checks that a certificate's key is ECDSA P-256/P-384, RSA of at least 2048 bits, or Ed25519.
pub fn check_key_strength(cert: &CertificateDer<'_>) -> Result<()> {
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|e| Error::Certificate(format!("certificate does not parse: {e}")))?;
    let spki = parsed.public_key();
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 || c == OID_NIST_EC_P384 => Ok(()),
            Some(c) => Err(Error::Certificate(format!(
                "certificate ecdsa curve `{c}` is not P-256 or P-384"
            ))),
            None => Err(Error::Certificate(
                "certificate ecdsa key names no curve".to_owned(),
            )),
        };
    }
    if *alg == OID_SIG_ED25519 {
        return Ok(());
    }
    if *alg == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => rsa_modulus_bits(rsa.modulus),
            _ => 0,
        };
        if bits >= MIN_RSA_BITS {
            return Ok(());
        }
        return Err(Error::Certificate(format!(
            "certificate rsa key has {bits} bits, at least {MIN_RSA_BITS} are required"
        )));
    }
    Err(Error::Certificate(format!(
        "certificate key algorithm `{alg}` is not ecdsa, rsa or ed25519"
    )))
}

/// The size in bits of a big-endian RSA modulus, ignoring leading zero bytes.
fn rsa_modulus_bits(modulus: &[u8]) -> usize {
    let start = modulus
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(modulus.len());
    match modulus.get(start..) {
        Some([first, rest @ ..]) => rest.len() * 8 + (8 - first.leading_zeros() as usize),
        _ => 0,
    }
}

/// Checks the key strength of the first certificate of a chain loaded from `path`.
fn check_leaf_key(chain: &[CertificateDer<'static>], path: &Path) -> Result<()> {
    let leaf = chain
        .first()
        .ok_or_else(|| Error::Certificate(format!("`{}` holds no certificate", path.display())))?;
    check_key_strength(leaf).map_err(|e| Error::Certificate(format!("`{}`: {e}", path.display())))
}

/// A root store holding every certificate of the PEM file at `path`.
pub fn root_store(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| {
            Error::Certificate(format!(
                "`{}` holds a certificate that cannot be a trust anchor: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

/// Reads a file into memory that is wiped when dropped.
fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| Error::Tls(format!("cannot read `{}`: {e}", path.display())))
}

/// Refuses a key file that its group or others may read or write.
#[cfg(unix)]
fn check_key_file_mode(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path)
        .map_err(|e| Error::Tls(format!("cannot read `{}`: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Tls(format!(
            "private key file `{}` has mode {mode:o}; it must not be group- or world-accessible (chmod 600)",
            path.display()
        )));
    }
    Ok(())
}

/// Non-unix systems have no mode bits to check.
#[cfg(not(unix))]
fn check_key_file_mode(_path: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_bits_ignore_leading_zeros() {
        assert_eq!(rsa_modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(rsa_modulus_bits(&[0x01, 0x00]), 9);
        assert_eq!(rsa_modulus_bits(&[0x00, 0x00]), 0);
        assert_eq!(rsa_modulus_bits(&[]), 0);
    }

    #[test]
    fn provider_has_only_aes_gcm_suites() {
        let provider = crypto_provider();
        assert_eq!(provider.cipher_suites.len(), 6);
        for suite in &provider.cipher_suites {
            let name = format!("{:?}", suite.suite());
            assert!(name.contains("AES_") && name.contains("GCM"), "{name}");
            if suite.version() == &rustls::version::TLS12 {
                assert!(name.starts_with("TLS_ECDHE_"), "{name}");
            }
        }
    }

    #[test]
    fn peer_without_certificate_is_an_error() {
        let err = peer_participant(None).unwrap_err().to_string();
        assert!(err.contains("no client certificate"), "{err}");
        let err = peer_participant(Some(&[])).unwrap_err().to_string();
        assert!(err.contains("no client certificate"), "{err}");
    }
}
