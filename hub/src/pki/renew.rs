//! Renewing the participant CA in place (`internet-hub pki renew-ca`): a new
//! self-signed certificate for the same key and subject, so everything the CA
//! signed before (participant and server certificates, CRLs) still chains to it.
//!
//! A verifier finds a certificate's issuer by subject name (and, in openssl, by
//! the authority key identifier) and checks the signature with the issuer's
//! public key. The renewed certificate keeps the subject, the key and the
//! subject key identifier, so for every verifier it is the same issuer; only the
//! serial and the validity change. Nothing has to be re-issued: the hub and the
//! participants swap `ca.pem` when convenient.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use openssl::nid::Nid;
use openssl::x509::{X509, X509Ref};

use super::certs::{build_ca, days, ossl, utc_of};
use super::store::{Index, io_error, record, replace_file, serial_of, write_new};
use super::{CA_CERT, CA_KEY, CA_NAME, INDEX, MAX_CA_VALIDITY_DAYS, load_ca};
use crate::error::{Error, Result};

/// What `renew_ca` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaRenewal {
    /// Serial of the certificate `ca.pem` held before.
    pub old_serial: String,
    /// Serial of the renewed certificate now in `ca.pem`.
    pub new_serial: String,
    /// End of the renewed certificate's validity.
    pub not_after: DateTime<Utc>,
    /// Where the previous certificate was kept (`ca-<old serial>.pem`).
    pub archived: PathBuf,
}

/// The file name a CA certificate with `serial` is kept under once it is renewed.
pub fn archived_ca_name(serial: &str) -> String {
    format!("ca-{serial}.pem")
}

/// Renews the participant CA of the PKI folder `dir`: signs a new self-signed
/// certificate with the same key, subject and subject key identifier, a fresh
/// serial and a validity of `validity_days` from `now`; keeps the previous
/// certificate as `ca-<old serial>.pem`, replaces `ca.pem` atomically and records
/// the new certificate in `index.json`. The key, the server certificate, issued
/// certificates and the CRL are untouched.
pub fn renew_ca(dir: &Path, validity_days: u32, now: DateTime<Utc>) -> Result<CaRenewal> {
    let not_after = now + ca_validity(validity_days)?;
    let cert_path = dir.join(CA_CERT);
    if !cert_path.exists() {
        return Err(Error::NotFound(format!(
            "`{}` does not exist: `{}` holds no participant CA (`internet-hub pki init` makes one)",
            cert_path.display(),
            dir.display()
        )));
    }
    let (old, key) = load_ca(dir)?;
    let key_path = dir.join(CA_KEY);
    let old_public = old.public_key().map_err(ossl)?;
    if !old_public.public_eq(&key) {
        return Err(Error::config(format!(
            "`{}` is not the key of `{}`; refusing to sign a CA certificate with it",
            key_path.display(),
            cert_path.display()
        )));
    }
    let self_issued = old
        .issuer_name()
        .try_cmp(old.subject_name())
        .map_err(ossl)?
        .is_eq();
    if !self_issued || !old.verify(&key).map_err(ossl)? {
        return Err(Error::config(format!(
            "`{}` is not a self-signed CA certificate",
            cert_path.display()
        )));
    }
    let old_not_after = utc_of(old.not_after())?;
    if not_after <= old_not_after {
        return Err(Error::bad_request(format!(
            "a CA valid {validity_days} days from now would end {not_after}, not after the current \
             `{}` ({old_not_after}); choose more days",
            cert_path.display()
        )));
    }
    let mut index = Index::load(dir)?;

    let key_id = old.subject_key_id().map(|id| id.as_slice().to_vec());
    let renewed = build_ca(
        &key,
        old.subject_name(),
        key_id.as_deref(),
        now,
        not_after,
        &index,
    )?;
    let old_serial = serial_of(&old)?;
    let archived = dir.join(archived_ca_name(&old_serial));
    keep_previous(&cert_path, &archived)?;
    // `ca.pem` before the index: an interrupted renewal leaves at worst a CA that the
    // index does not list yet (`pki expiring` still warns, and renewing again is safe).
    replace_file(&cert_path, &renewed.to_pem().map_err(ossl)?)?;
    let subject = common_name(&old).unwrap_or_else(|| CA_NAME.to_owned());
    let new_serial = record(&mut index, &renewed, &subject, None, not_after)?;
    index.save(dir).map_err(|e| {
        Error::config_from(
            format!(
                "`{}` holds the renewed CA but `{}` was not updated",
                cert_path.display(),
                dir.join(INDEX).display()
            ),
            e,
        )
    })?;
    Ok(CaRenewal {
        old_serial,
        new_serial,
        not_after,
        archived,
    })
}

/// A CA validity of `n` days: at least one day, at most [`MAX_CA_VALIDITY_DAYS`].
pub(super) fn ca_validity(n: u32) -> Result<chrono::Duration> {
    if n > MAX_CA_VALIDITY_DAYS {
        return Err(Error::bad_request(format!(
            "`--days {n}`: a CA may be valid at most {MAX_CA_VALIDITY_DAYS} days (20 years)"
        )));
    }
    days(n)
}

/// Whether `a` and `b` are versions of one CA: same subject and same key.
pub(super) fn same_ca(a: &X509Ref, b: &X509Ref) -> Result<bool> {
    let same_subject = a
        .subject_name()
        .try_cmp(b.subject_name())
        .map_err(ossl)?
        .is_eq();
    let a_key = a.public_key().map_err(ossl)?;
    let b_key = b.public_key().map_err(ossl)?;
    Ok(same_subject && a_key.public_eq(&b_key))
}

/// Copies the current `ca.pem` to `archived`; a copy with the same bytes left by an
/// interrupted renewal is fine, a different file is not overwritten.
fn keep_previous(cert_path: &Path, archived: &Path) -> Result<()> {
    let current = fs::read(cert_path).map_err(|e| io_error(cert_path, e))?;
    match fs::read(archived) {
        Ok(existing) if existing == current => Ok(()),
        Ok(_) => Err(Error::Conflict(format!(
            "`{}` exists and differs from `{}`; refusing to overwrite it",
            archived.display(),
            cert_path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_new(archived, &current, false),
        Err(e) => Err(io_error(archived, e)),
    }
}

/// The first common name of a certificate's subject.
fn common_name(cert: &X509) -> Option<String> {
    cert.subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
}
