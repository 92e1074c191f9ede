//! The participant PKI on disk: the participant CA, the hub's server
//! certificate, participant client certificates, the index of issued
//! certificates and the CRL (`internet-hub pki init|issue|revoke|crl`).
//!
//! A PKI folder holds `ca.pem`, `ca.key`, `server.pem` (the server leaf, then
//! the CA), `server.key`, `index.json` and `crl.pem`. `issue` writes, into its
//! output folder, `<kind>-<id>.pem` (the leaf only), `<kind>-<id>.key` and a
//! copy of `ca.pem`, which the participant needs to trust the hub and which is
//! the CA its certificate chains to.
//!
//! Every key is ECDSA P-256. Key files are created mode 0600 (never chmod-ed
//! afterwards) and no existing file is ever overwritten, except `index.json`
//! and `crl.pem`, which are replaced atomically. Certificates start one hour
//! before `now` to tolerate clock skew between the hub and participants. The
//! CRL (v2, with a CRL number and the CA's key identifier) is built with
//! openssl's `X509CrlBuilder` and is valid for [`CRL_VALIDITY_DAYS`]; the hub's
//! TLS verifier keeps using an older one (see `renkei_crypto::tls`).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{
    X509, X509Builder, X509CrlBuilder, X509Extension, X509NameBuilder, X509RevokedBuilder,
};
use renkei_crypto::participant::ParticipantId;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The participant CA certificate.
pub const CA_CERT: &str = "ca.pem";
/// The participant CA private key.
pub const CA_KEY: &str = "ca.key";
/// The hub's server certificate chain (leaf, then CA).
pub const SERVER_CERT: &str = "server.pem";
/// The hub's server private key.
pub const SERVER_KEY: &str = "server.key";
/// The index of issued certificates.
pub const INDEX: &str = "index.json";
/// The current CRL.
pub const CRL: &str = "crl.pem";
/// Validity of the hub's server certificate (the CA/Browser Forum maximum).
pub const SERVER_VALIDITY_DAYS: u32 = 397;
/// Default validity of a participant certificate.
pub const DEFAULT_VALIDITY_DAYS: u32 = 397;
/// How long a CRL is valid (its nextUpdate) after it is generated.
pub const CRL_VALIDITY_DAYS: i64 = 30;

/// The CA's common name.
const CA_NAME: &str = "Renkei participant CA";

/// One certificate the CA issued, as recorded in `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedCert {
    /// Serial number, uppercase hexadecimal without leading zeros.
    pub serial: String,
    /// The subject common name.
    pub subject: String,
    /// The participant named by the certificate; `None` for the hub's server certificate.
    pub participant: Option<ParticipantId>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The contents of `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// Number of the last CRL generated.
    pub crl_number: u64,
    /// Every certificate issued, in issue order.
    pub certificates: Vec<IssuedCert>,
}

impl Index {
    /// Reads `index.json` of the PKI folder `dir`.
    pub fn load(dir: &Path) -> Result<Index> {
        let path = dir.join(INDEX);
        let text = fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("`{}` is not a valid index: {e}", path.display())))
    }

    /// The certificate with this serial (any case, colons allowed), if issued here.
    pub fn find(&self, serial: &str) -> Option<&IssuedCert> {
        let serial = normalize_serial(serial).ok()?;
        self.certificates.iter().find(|c| c.serial == serial)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Internal(format!("cannot encode the index: {e}")))?;
        replace_file(&dir.join(INDEX), json.as_bytes())
    }
}

/// Creates the PKI in `dir`: a self-signed CA valid `validity_days`, the hub's
/// server certificate for `dns_names` and `ips`, an empty index and an empty CRL.
/// Refuses to touch a folder that already holds a CA.
pub fn init(
    dir: &Path,
    dns_names: &[String],
    ips: &[IpAddr],
    validity_days: u32,
    now: DateTime<Utc>,
) -> Result<()> {
    if dns_names.is_empty() && ips.is_empty() {
        return Err(Error::BadRequest(
            "the server certificate needs at least one dns name or ip address".to_owned(),
        ));
    }
    for file in [CA_KEY, CA_CERT] {
        if dir.join(file).exists() {
            return Err(Error::Conflict(format!(
                "`{}` exists; refusing to overwrite an existing CA",
                dir.join(file).display()
            )));
        }
    }
    create_private_dir(dir)?;
    let mut index = Index::default();

    let ca_key = new_key()?;
    let ca_not_after = now + days(validity_days)?;
    let mut b = cert_builder(&ca_key, CA_NAME, now, ca_not_after, &index)?;
    b.set_issuer_name(&*name(CA_NAME)?).map_err(ossl)?;
    let bc = BasicConstraints::new().critical().ca().pathlen(0).build();
    let ku = KeyUsage::new()
        .critical()
        .key_cert_sign()
        .crl_sign()
        .build();
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None));
    for ext in [bc, ku, ski] {
        b.append_extension(ext.map_err(ossl)?).map_err(ossl)?;
    }
    b.sign(&ca_key, MessageDigest::sha256()).map_err(ossl)?;
    let ca = b.build();
    write_new(&dir.join(CA_KEY), &pem_key(&ca_key)?, true)?;
    write_new(&dir.join(CA_CERT), &ca.to_pem().map_err(ossl)?, false)?;
    record(&mut index, &ca, CA_NAME, None, ca_not_after)?;

    let server_key = new_key()?;
    let server_not_after = (now + days(SERVER_VALIDITY_DAYS)?).min(ca_not_after);
    let cn = dns_names.first().map_or("renkei hub", String::as_str);
    let b = cert_builder(&server_key, cn, now, server_not_after, &index)?;
    let mut san = SubjectAlternativeName::new();
    for dns in dns_names {
        san.dns(dns);
    }
    for ip in ips {
        san.ip(&ip.to_string());
    }
    let san = san.build(&b.x509v3_context(Some(&ca), None));
    let eku = ExtendedKeyUsage::new().server_auth().build();
    let server = sign_leaf(b, &ca, &ca_key, [san, eku])?;
    let mut chain = server.to_pem().map_err(ossl)?;
    chain.extend(ca.to_pem().map_err(ossl)?);
    write_new(&dir.join(SERVER_KEY), &pem_key(&server_key)?, true)?;
    write_new(&dir.join(SERVER_CERT), &chain, false)?;
    record(&mut index, &server, cn, None, server_not_after)?;

    write_crl(dir, &mut index, &ca, &ca_key, now)?;
    Ok(())
}

/// Issues a client certificate for `participant`, valid `validity_days`, into
/// `out_dir` (`<kind>-<id>.pem`, `<kind>-<id>.key`, `ca.pem`) and records it.
/// Returns the serial.
pub fn issue(
    dir: &Path,
    participant: &ParticipantId,
    out_dir: &Path,
    validity_days: u32,
    now: DateTime<Utc>,
) -> Result<String> {
    let (ca, ca_key) = load_ca(dir)?;
    let mut index = Index::load(dir)?;
    let not_after = now + days(validity_days)?;
    if ca.not_after() < &*asn1_time(not_after)? {
        return Err(Error::BadRequest(format!(
            "a validity of {validity_days} days runs past the CA's notAfter ({}); issue a shorter certificate",
            ca.not_after()
        )));
    }
    let base = format!("{}-{}", participant.kind(), participant.id());
    let cert_path = out_dir.join(format!("{base}.pem"));
    let key_path = out_dir.join(format!("{base}.key"));
    for path in [&cert_path, &key_path] {
        if path.exists() {
            return Err(Error::Conflict(format!(
                "`{}` exists; move it away before issuing again",
                path.display()
            )));
        }
    }
    let ca_pem = fs::read(dir.join(CA_CERT)).map_err(|e| io_error(&dir.join(CA_CERT), e))?;
    let ca_copy = out_dir.join(CA_CERT);
    if fs::read(&ca_copy).is_ok_and(|existing| existing != ca_pem) {
        return Err(Error::Conflict(format!(
            "`{}` holds another CA; use another output folder",
            ca_copy.display()
        )));
    }

    let key = new_key()?;
    let subject = participant.to_string();
    let b = cert_builder(&key, &subject, now, not_after, &index)?;
    let san = SubjectAlternativeName::new()
        .uri(&participant.uri())
        .build(&b.x509v3_context(Some(&ca), None));
    let eku = ExtendedKeyUsage::new().client_auth().build();
    let cert = sign_leaf(b, &ca, &ca_key, [san, eku])?;

    create_private_dir(out_dir)?;
    write_new(&key_path, &pem_key(&key)?, true)?;
    write_new(&cert_path, &cert.to_pem().map_err(ossl)?, false)?;
    if !ca_copy.exists() {
        write_new(&ca_copy, &ca_pem, false)?;
    }
    let serial = record(
        &mut index,
        &cert,
        &subject,
        Some(participant.clone()),
        not_after,
    )?;
    index.save(dir)?;
    Ok(serial)
}

/// Marks the certificate with `serial` revoked at `now` and rewrites the CRL.
/// Revoking a revoked certificate keeps its first revocation time.
/// Returns the path of the CRL.
pub fn revoke(dir: &Path, serial: &str, now: DateTime<Utc>) -> Result<PathBuf> {
    let (ca, ca_key) = load_ca(dir)?;
    let mut index = Index::load(dir)?;
    let wanted = normalize_serial(serial)?;
    if wanted == serial_of(&ca)? {
        return Err(Error::BadRequest(format!(
            "serial `{serial}` is the CA itself; make a new PKI instead of revoking the CA"
        )));
    }
    let cert = index
        .certificates
        .iter_mut()
        .find(|c| c.serial == wanted)
        .ok_or_else(|| {
            Error::NotFound(format!("no certificate with serial `{serial}` in this PKI"))
        })?;
    cert.revoked_at.get_or_insert(now);
    write_crl(dir, &mut index, &ca, &ca_key, now)
}

/// Regenerates the CRL (new number, lastUpdate `now`) and returns its path.
pub fn crl(dir: &Path, now: DateTime<Utc>) -> Result<PathBuf> {
    let (ca, ca_key) = load_ca(dir)?;
    let mut index = Index::load(dir)?;
    write_crl(dir, &mut index, &ca, &ca_key, now)
}

/// Bumps the CRL number, saves the index, then writes `crl.pem` listing every revocation.
fn write_crl(
    dir: &Path,
    index: &mut Index,
    ca: &X509,
    ca_key: &PKeyRef<Private>,
    now: DateTime<Utc>,
) -> Result<PathBuf> {
    index.crl_number += 1;
    index.save(dir)?;
    let mut b = X509CrlBuilder::new().map_err(ossl)?;
    b.set_issuer_name(ca.subject_name()).map_err(ossl)?;
    b.set_last_update(&*asn1_time(now)?).map_err(ossl)?;
    b.set_next_update(&*asn1_time(now + Duration::days(CRL_VALIDITY_DAYS))?)
        .map_err(ossl)?;
    let key_id = ca
        .subject_key_id()
        .ok_or_else(|| Error::Config("the CA certificate has no subject key identifier".into()))?;
    b.append_extension(der_extension(
        "2.5.29.35",
        &authority_key_id_der(key_id.as_slice())?,
    )?)
    .map_err(ossl)?;
    b.append_extension(der_extension("2.5.29.20", &der_unsigned(index.crl_number))?)
        .map_err(ossl)?;
    for cert in &index.certificates {
        let Some(revoked_at) = cert.revoked_at else {
            continue;
        };
        let mut r = X509RevokedBuilder::new().map_err(ossl)?;
        let serial = BigNum::from_hex_str(&cert.serial).map_err(ossl)?;
        r.set_serial_number(&*serial.to_asn1_integer().map_err(ossl)?)
            .map_err(ossl)?;
        r.set_revocation_date(&*asn1_time(revoked_at)?)
            .map_err(ossl)?;
        b.add_revoked(r.build()).map_err(ossl)?;
    }
    b.sort().map_err(ossl)?;
    b.sign(ca_key, MessageDigest::sha256()).map_err(ossl)?;
    let crl = b.build().map_err(ossl)?;
    let path = dir.join(CRL);
    replace_file(&path, &crl.to_pem().map_err(ossl)?)?;
    Ok(path)
}

/// Reads the CA certificate and key of the PKI folder `dir`.
fn load_ca(dir: &Path) -> Result<(X509, PKey<Private>)> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    let cert = fs::read(&cert_path).map_err(|e| io_error(&cert_path, e))?;
    let cert = X509::from_pem(&cert).map_err(|e| {
        Error::Config(format!(
            "`{}` is not a PEM certificate: {e}",
            cert_path.display()
        ))
    })?;
    let key = zeroize::Zeroizing::new(fs::read(&key_path).map_err(|e| io_error(&key_path, e))?);
    let key = PKey::private_key_from_pem(&key).map_err(|e| {
        Error::Config(format!(
            "`{}` is not a PEM private key: {e}",
            key_path.display()
        ))
    })?;
    Ok((cert, key))
}

/// A builder with version 3, a fresh serial, the subject, key and validity set.
fn cert_builder(
    key: &PKeyRef<Private>,
    cn: &str,
    now: DateTime<Utc>,
    not_after: DateTime<Utc>,
    index: &Index,
) -> Result<X509Builder> {
    let mut b = X509Builder::new().map_err(ossl)?;
    b.set_version(2).map_err(ossl)?;
    let serial = fresh_serial(index)?;
    b.set_serial_number(&*serial.to_asn1_integer().map_err(ossl)?)
        .map_err(ossl)?;
    b.set_subject_name(&*name(cn)?).map_err(ossl)?;
    b.set_pubkey(key).map_err(ossl)?;
    b.set_not_before(&*asn1_time(now - Duration::hours(1))?)
        .map_err(ossl)?;
    b.set_not_after(&*asn1_time(not_after)?).map_err(ossl)?;
    Ok(b)
}

/// Adds the end-entity extensions plus `extra`, and signs with the CA.
fn sign_leaf(
    mut b: X509Builder,
    ca: &X509,
    ca_key: &PKeyRef<Private>,
    extra: [std::result::Result<X509Extension, ErrorStack>; 2],
) -> Result<X509> {
    b.set_issuer_name(ca.subject_name()).map_err(ossl)?;
    let bc = BasicConstraints::new().critical().build();
    let ku = KeyUsage::new().critical().digital_signature().build();
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(ca), None));
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(Some(ca), None));
    for ext in [bc, ku, ski, aki].into_iter().chain(extra) {
        b.append_extension(ext.map_err(ossl)?).map_err(ossl)?;
    }
    b.sign(ca_key, MessageDigest::sha256()).map_err(ossl)?;
    Ok(b.build())
}

/// Adds `cert` to the index and returns its serial.
fn record(
    index: &mut Index,
    cert: &X509,
    subject: &str,
    participant: Option<ParticipantId>,
    not_after: DateTime<Utc>,
) -> Result<String> {
    let serial = serial_of(cert)?;
    index.certificates.push(IssuedCert {
        serial: serial.clone(),
        subject: subject.to_owned(),
        participant,
        not_after,
        revoked_at: None,
    });
    Ok(serial)
}

/// The normalized serial of a certificate.
fn serial_of(cert: &X509) -> Result<String> {
    let serial = cert.serial_number().to_bn().map_err(ossl)?;
    normalize_serial(&serial.to_hex_str().map_err(ossl)?)
}

/// A random positive 127-bit serial that the index does not hold yet.
fn fresh_serial(index: &Index) -> Result<BigNum> {
    for _ in 0..8 {
        let mut serial = BigNum::new().map_err(ossl)?;
        serial.rand(127, MsbOption::ONE, false).map_err(ossl)?;
        let hex = normalize_serial(&serial.to_hex_str().map_err(ossl)?)?;
        if index.find(&hex).is_none() {
            return Ok(serial);
        }
    }
    Err(Error::Internal(
        "no fresh certificate serial after 8 tries".to_owned(),
    ))
}

/// Uppercase hex without colons or leading zeros; anything else non-hex is an error.
fn normalize_serial(serial: &str) -> Result<String> {
    let hex: String = serial.chars().filter(|c| *c != ':').collect();
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::BadRequest(format!(
            "serial `{serial}` is not a hexadecimal number"
        )));
    }
    let trimmed = hex.trim_start_matches('0').to_ascii_uppercase();
    Ok(if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed
    })
}

/// An X509 extension from its dotted OID and DER value (non-critical).
fn der_extension(oid: &str, der: &[u8]) -> Result<X509Extension> {
    let oid = Asn1Object::from_str(oid).map_err(ossl)?;
    let value = Asn1OctetString::new_from_bytes(der).map_err(ossl)?;
    X509Extension::new_from_der(&oid, false, &value).map_err(ossl)
}

/// `AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }`.
fn authority_key_id_der(key_id: &[u8]) -> Result<Vec<u8>> {
    let len = u8::try_from(key_id.len())
        .ok()
        .filter(|l| *l < 126)
        .ok_or_else(|| Error::Config("the CA key identifier is too long".to_owned()))?;
    let mut der = vec![0x30, len + 2, 0x80, len];
    der.extend_from_slice(key_id);
    Ok(der)
}

/// The DER INTEGER encoding of a non-negative number.
fn der_unsigned(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    let mut content: Vec<u8> = bytes.iter().skip(first).copied().collect();
    if content.first().is_some_and(|b| b & 0x80 != 0) {
        content.insert(0, 0);
    }
    let mut der = vec![0x02, content.len() as u8];
    der.extend(content);
    der
}

/// A fresh ECDSA P-256 key.
fn new_key() -> Result<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(ossl)?;
    PKey::from_ec_key(EcKey::generate(&group).map_err(ossl)?).map_err(ossl)
}

/// The PKCS#8 PEM of a private key, wiped from memory when dropped.
fn pem_key(key: &PKeyRef<Private>) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    key.private_key_to_pem_pkcs8()
        .map(zeroize::Zeroizing::new)
        .map_err(ossl)
}

/// A name with only a common name.
fn name(cn: &str) -> Result<openssl::x509::X509Name> {
    let mut b = X509NameBuilder::new().map_err(ossl)?;
    b.append_entry_by_nid(Nid::COMMONNAME, cn).map_err(ossl)?;
    Ok(b.build())
}

fn asn1_time(t: DateTime<Utc>) -> Result<Asn1Time> {
    Asn1Time::from_unix(t.timestamp()).map_err(ossl)
}

fn days(n: u32) -> Result<Duration> {
    if n == 0 {
        return Err(Error::BadRequest(
            "validity must be at least 1 day".to_owned(),
        ));
    }
    Ok(Duration::days(i64::from(n)))
}

/// Creates `dir` (and parents) accessible by its owner only, if missing.
fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|e| io_error(dir, e))
}

/// Creates a new file (mode 0600 when `private`, else 0644) and writes `bytes`;
/// an existing file is an error.
fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if private { 0o600 } else { 0o644 });
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Error::Conflict(format!(
            "`{}` exists; refusing to overwrite it",
            path.display()
        )),
        _ => io_error(path, e),
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(path, e))
}

/// Replaces a public file atomically (write a temporary file, then rename).
fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, bytes, false)?;
    fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Config(format!("`{}`: {e}", path.display()))
}

fn ossl(e: ErrorStack) -> Error {
    Error::Internal(format!("openssl: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::x509::X509Crl;
    use renkei_crypto::participant::ParticipantKind;
    use renkei_crypto::tls::{ClientTlsPaths, ServerTlsPaths, client_config, server_config};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap() // 2026-01-01
    }

    fn new_pki() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let ips = ["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        init(tmp.path(), &["localhost".to_owned()], &ips, 3650, now()).unwrap();
        tmp
    }

    fn read_crl(dir: &Path) -> X509Crl {
        X509Crl::from_pem(&fs::read(dir.join(CRL)).unwrap()).unwrap()
    }

    fn revoked_serials(crl: &X509Crl) -> Vec<String> {
        crl.get_revoked()
            .map(|stack| {
                stack
                    .iter()
                    .map(|r| {
                        r.serial_number()
                            .to_bn()
                            .unwrap()
                            .to_hex_str()
                            .unwrap()
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn init_makes_a_ca_a_server_cert_an_index_and_an_empty_crl() {
        let tmp = new_pki();
        let dir = tmp.path();
        let ca = X509::from_pem(&fs::read(dir.join(CA_CERT)).unwrap()).unwrap();
        let chain = X509::stack_from_pem(&fs::read(dir.join(SERVER_CERT)).unwrap()).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1].to_der().unwrap(), ca.to_der().unwrap());
        let ca_key = ca.public_key().unwrap();
        assert!(chain[0].verify(&ca_key).unwrap());
        assert!(ca.verify(&ca_key).unwrap());
        let sans: Vec<String> = chain[0]
            .subject_alt_names()
            .unwrap()
            .iter()
            .map(|n| match (n.dnsname(), n.ipaddress()) {
                (Some(d), _) => d.to_owned(),
                (None, Some(ip)) => format!("{ip:?}"),
                _ => String::new(),
            })
            .collect();
        assert_eq!(sans.len(), 3);
        assert_eq!(sans[0], "localhost");

        let index = Index::load(dir).unwrap();
        assert_eq!(index.crl_number, 1);
        assert_eq!(index.certificates.len(), 2);
        assert!(index.certificates.iter().all(|c| c.participant.is_none()));
        let crl = read_crl(dir);
        assert!(crl.verify(&ca_key).unwrap());
        assert!(revoked_serials(&crl).is_empty());
        assert!(crl.next_update().is_some());

        #[cfg(unix)]
        {
            assert_eq!(mode(&dir.join(CA_KEY)), 0o600);
            assert_eq!(mode(&dir.join(SERVER_KEY)), 0o600);
            // A folder that init creates is private to its owner.
            let fresh = dir.join("fresh/pki");
            init(&fresh, &[], &["::1".parse().unwrap()], 30, now()).unwrap();
            assert_eq!(mode(&fresh), 0o700);
        }

        // rustls accepts the whole set: chain, key, CA and the openssl-built CRL.
        server_config(&ServerTlsPaths {
            cert_chain: dir.join(SERVER_CERT),
            key: dir.join(SERVER_KEY),
            client_ca: Some(dir.join(CA_CERT)),
            crls: vec![dir.join(CRL)],
        })
        .unwrap();
    }

    #[test]
    fn init_refuses_an_existing_ca_and_needs_a_name() {
        let tmp = new_pki();
        let before = fs::read(tmp.path().join(CA_KEY)).unwrap();
        let err = init(tmp.path(), &["x".to_owned()], &[], 10, now()).unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        assert!(err.to_string().contains("ca.key"), "{err}");
        assert_eq!(fs::read(tmp.path().join(CA_KEY)).unwrap(), before);

        let other = tempfile::tempdir().unwrap();
        let err = init(other.path(), &[], &[], 10, now()).unwrap_err();
        assert!(matches!(err, Error::BadRequest(_)), "{err}");
    }

    #[test]
    fn issued_cert_names_its_participant_and_works_with_rustls() {
        let tmp = new_pki();
        let out = tmp.path().join("out");
        let who = ParticipantId::new(ParticipantKind::Phr, "asmile").unwrap();
        let serial = issue(tmp.path(), &who, &out, DEFAULT_VALIDITY_DAYS, now()).unwrap();

        let cert = X509::from_pem(&fs::read(out.join("phr-asmile.pem")).unwrap()).unwrap();
        assert_eq!(
            ParticipantId::from_cert_der(&cert.to_der().unwrap()).unwrap(),
            who
        );
        assert_eq!(serial_of(&cert).unwrap(), serial);
        let cn = cert
            .subject_name()
            .entries()
            .next()
            .unwrap()
            .data()
            .as_slice()
            .to_vec();
        assert_eq!(cn, b"phr:asmile");
        assert_eq!(
            fs::read(out.join(CA_CERT)).unwrap(),
            fs::read(tmp.path().join(CA_CERT)).unwrap()
        );
        #[cfg(unix)]
        assert_eq!(mode(&out.join("phr-asmile.key")), 0o600);

        let index = Index::load(tmp.path()).unwrap();
        let entry = index.find(&serial.to_lowercase()).unwrap();
        assert_eq!(entry.participant.as_ref(), Some(&who));
        assert_eq!(entry.not_after, now() + Duration::days(397));
        assert_eq!(entry.revoked_at, None);

        client_config(&ClientTlsPaths {
            ca: out.join(CA_CERT),
            cert_chain: out.join("phr-asmile.pem"),
            key: out.join("phr-asmile.key"),
        })
        .unwrap();

        // Never overwrite: issuing again into the same folder fails, a second folder works
        // and gets a different serial.
        let err = issue(tmp.path(), &who, &out, 30, now()).unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        let again = issue(tmp.path(), &who, &tmp.path().join("out2"), 30, now()).unwrap();
        assert_ne!(again, serial);
        assert_eq!(Index::load(tmp.path()).unwrap().certificates.len(), 4);
    }

    #[test]
    fn issue_refuses_validity_beyond_the_ca() {
        let tmp = new_pki();
        let who: ParticipantId = "clinic:mysos".parse().unwrap();
        let err = issue(tmp.path(), &who, tmp.path(), 4000, now()).unwrap_err();
        assert!(err.to_string().contains("runs past the CA"), "{err}");
        let err = issue(tmp.path(), &who, tmp.path(), 0, now()).unwrap_err();
        assert!(err.to_string().contains("at least 1 day"), "{err}");
    }

    #[test]
    fn revoke_lists_the_serial_in_a_new_signed_crl() {
        let tmp = new_pki();
        let dir = tmp.path();
        let a = issue(dir, &"phr:a".parse().unwrap(), dir, 30, now()).unwrap();
        let b = issue(dir, &"phr:b".parse().unwrap(), dir, 30, now()).unwrap();
        let later = now() + Duration::days(2);
        let path = revoke(dir, &a, later).unwrap();
        assert_eq!(path, dir.join(CRL));

        let list = read_crl(dir);
        let ca = X509::from_pem(&fs::read(dir.join(CA_CERT)).unwrap()).unwrap();
        assert!(list.verify(&ca.public_key().unwrap()).unwrap());
        assert_eq!(revoked_serials(&list), vec![a.clone()]);
        assert!(!revoked_serials(&list).contains(&b));
        let index = Index::load(dir).unwrap();
        assert_eq!(index.crl_number, 2);
        assert_eq!(index.find(&a).unwrap().revoked_at, Some(later));

        // Revoking again keeps the first time; regenerating bumps the number.
        revoke(dir, &a.to_lowercase(), later + Duration::days(1)).unwrap();
        crl(dir, later + Duration::days(3)).unwrap();
        let index = Index::load(dir).unwrap();
        assert_eq!(index.find(&a).unwrap().revoked_at, Some(later));
        assert_eq!(index.crl_number, 4);
        let list = read_crl(dir);
        let expected_last = asn1_time(later + Duration::days(3)).unwrap();
        assert_eq!(list.last_update(), &*expected_last);
        assert_eq!(revoked_serials(&list), vec![a]);
    }

    #[test]
    fn revoke_rejects_unknown_serials_and_the_ca() {
        let tmp = new_pki();
        let err = revoke(tmp.path(), "DEADBEEF", now()).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
        assert!(err.to_string().contains("`DEADBEEF`"), "{err}");
        let err = revoke(tmp.path(), "not-hex", now()).unwrap_err();
        assert!(err.to_string().contains("`not-hex`"), "{err}");
        let ca = &Index::load(tmp.path()).unwrap().certificates[0].serial;
        let err = revoke(tmp.path(), ca, now()).unwrap_err();
        assert!(err.to_string().contains("the CA itself"), "{err}");
    }

    #[test]
    fn helpers_encode_der_and_serials() {
        assert_eq!(der_unsigned(0), vec![2, 1, 0]);
        assert_eq!(der_unsigned(127), vec![2, 1, 127]);
        assert_eq!(der_unsigned(128), vec![2, 2, 0, 128]);
        assert_eq!(der_unsigned(0x1234), vec![2, 2, 0x12, 0x34]);
        assert_eq!(normalize_serial("00:0a:Bc").unwrap(), "ABC");
        assert_eq!(normalize_serial("000").unwrap(), "0");
        assert!(normalize_serial("").is_err());
        assert_eq!(
            authority_key_id_der(&[1, 2]).unwrap(),
            vec![0x30, 4, 0x80, 2, 1, 2]
        );
    }
}
