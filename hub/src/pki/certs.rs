//! Building X.509 certificates and CRLs with openssl for the participant PKI.

use chrono::{DateTime, Duration, Utc};
use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time, Asn1TimeRef};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{
    X509, X509Builder, X509CrlBuilder, X509Extension, X509NameBuilder, X509NameRef,
    X509RevokedBuilder,
};

use super::CRL_VALIDITY_DAYS;
use super::store::{Index, fresh_serial};
use crate::error::{Error, Result};

/// A self-signed CA certificate: basicConstraints CA:true (path length 0) and
/// keyUsage keyCertSign+cRLSign, both critical, and a subject key identifier:
/// `key_id` when renewing a CA (so the issuer's identifier that leaf certificates
/// and CRLs carry stays the same), else the one openssl derives from the key.
pub(super) fn build_ca(
    key: &PKeyRef<Private>,
    subject: &X509NameRef,
    key_id: Option<&[u8]>,
    now: DateTime<Utc>,
    not_after: DateTime<Utc>,
    index: &Index,
) -> Result<X509> {
    let mut b = named_builder(key, subject, now, not_after, index)?;
    b.set_issuer_name(subject).map_err(ossl)?;
    let bc = BasicConstraints::new().critical().ca().pathlen(0).build();
    let ku = KeyUsage::new()
        .critical()
        .key_cert_sign()
        .crl_sign()
        .build();
    let ski = match key_id {
        Some(id) => der_extension("2.5.29.14", &octet_string_der(id)?),
        None => SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(None, None))
            .map_err(ossl),
    };
    for ext in [bc.map_err(ossl)?, ku.map_err(ossl)?, ski?] {
        b.append_extension(ext).map_err(ossl)?;
    }
    b.sign(key, MessageDigest::sha256()).map_err(ossl)?;
    Ok(b.build())
}

/// A builder with version 3, a fresh serial, the subject `cn`, key and validity set.
pub(super) fn cert_builder(
    key: &PKeyRef<Private>,
    cn: &str,
    now: DateTime<Utc>,
    not_after: DateTime<Utc>,
    index: &Index,
) -> Result<X509Builder> {
    named_builder(key, &*name(cn)?, now, not_after, index)
}

/// A builder with version 3, a fresh serial, the subject, key and validity set.
fn named_builder(
    key: &PKeyRef<Private>,
    subject: &X509NameRef,
    now: DateTime<Utc>,
    not_after: DateTime<Utc>,
    index: &Index,
) -> Result<X509Builder> {
    let mut b = X509Builder::new().map_err(ossl)?;
    b.set_version(2).map_err(ossl)?;
    let serial = fresh_serial(index)?;
    b.set_serial_number(&*serial.to_asn1_integer().map_err(ossl)?)
        .map_err(ossl)?;
    b.set_subject_name(subject).map_err(ossl)?;
    b.set_pubkey(key).map_err(ossl)?;
    b.set_not_before(&*asn1_time(now - Duration::hours(1))?)
        .map_err(ossl)?;
    b.set_not_after(&*asn1_time(not_after)?).map_err(ossl)?;
    Ok(b)
}

/// Adds the end-entity extensions plus `extra`, and signs with the CA.
pub(super) fn sign_leaf(
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

/// Builds and signs a CRL v2 (number `index.crl_number`, lastUpdate `now`,
/// nextUpdate `now + CRL_VALIDITY_DAYS`) listing every revoked certificate of
/// the index; returns its PEM.
pub(super) fn build_crl(
    index: &Index,
    ca: &X509,
    ca_key: &PKeyRef<Private>,
    now: DateTime<Utc>,
) -> Result<Vec<u8>> {
    let mut b = X509CrlBuilder::new().map_err(ossl)?;
    b.set_issuer_name(ca.subject_name()).map_err(ossl)?;
    b.set_last_update(&*asn1_time(now)?).map_err(ossl)?;
    b.set_next_update(&*asn1_time(now + Duration::days(CRL_VALIDITY_DAYS))?)
        .map_err(ossl)?;
    let key_id = ca
        .subject_key_id()
        .ok_or_else(|| Error::config("the CA certificate has no subject key identifier"))?;
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
    b.build().map_err(ossl)?.to_pem().map_err(ossl)
}

/// An X509 extension from its dotted OID and DER value (non-critical).
pub(super) fn der_extension(oid: &str, der: &[u8]) -> Result<X509Extension> {
    let oid = Asn1Object::from_str(oid).map_err(ossl)?;
    let value = Asn1OctetString::new_from_bytes(der).map_err(ossl)?;
    X509Extension::new_from_der(&oid, false, &value).map_err(ossl)
}

/// `AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }`.
pub(super) fn authority_key_id_der(key_id: &[u8]) -> Result<Vec<u8>> {
    let len = u8::try_from(key_id.len())
        .ok()
        .filter(|l| *l < 126)
        .ok_or_else(|| Error::config("the CA key identifier is too long"))?;
    let mut der = vec![0x30, len + 2, 0x80, len];
    der.extend_from_slice(key_id);
    Ok(der)
}

/// `KeyIdentifier ::= OCTET STRING`, the value of a subject key identifier extension.
pub(super) fn octet_string_der(bytes: &[u8]) -> Result<Vec<u8>> {
    let len = u8::try_from(bytes.len())
        .ok()
        .filter(|l| *l < 128)
        .ok_or_else(|| Error::config("the CA key identifier is too long"))?;
    let mut der = vec![0x04, len];
    der.extend_from_slice(bytes);
    Ok(der)
}

/// The DER INTEGER encoding of a non-negative number.
pub(super) fn der_unsigned(n: u64) -> Vec<u8> {
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
pub(super) fn new_key() -> Result<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(ossl)?;
    PKey::from_ec_key(EcKey::generate(&group).map_err(ossl)?).map_err(ossl)
}

/// The PKCS#8 PEM of a private key, wiped from memory when dropped.
pub(super) fn pem_key(key: &PKeyRef<Private>) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    key.private_key_to_pem_pkcs8()
        .map(zeroize::Zeroizing::new)
        .map_err(ossl)
}

/// A name with only a common name.
pub(super) fn name(cn: &str) -> Result<openssl::x509::X509Name> {
    let mut b = X509NameBuilder::new().map_err(ossl)?;
    b.append_entry_by_nid(Nid::COMMONNAME, cn).map_err(ossl)?;
    Ok(b.build())
}

/// An ASN.1 time from a UTC instant (whole seconds).
pub(super) fn asn1_time(t: DateTime<Utc>) -> Result<Asn1Time> {
    Asn1Time::from_unix(t.timestamp()).map_err(ossl)
}

/// The UTC instant of an ASN.1 time.
pub(super) fn utc_of(t: &Asn1TimeRef) -> Result<DateTime<Utc>> {
    let diff = Asn1Time::from_unix(0)
        .map_err(ossl)?
        .diff(t)
        .map_err(ossl)?;
    let secs = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    DateTime::from_timestamp(secs, 0)
        .ok_or_else(|| Error::internal(format!("certificate time `{t}` is out of range")))
}

/// A validity of `n` days; zero is refused.
pub(super) fn days(n: u32) -> Result<Duration> {
    if n == 0 {
        return Err(Error::bad_request("validity must be at least 1 day"));
    }
    Ok(Duration::days(i64::from(n)))
}

/// An openssl failure, which is a bug or an exhausted system, never bad input.
pub(super) fn ossl(e: ErrorStack) -> Error {
    Error::internal_from("openssl", e)
}
