//! The PKI folder's bookkeeping: the index of issued certificates (`index.json`),
//! serial numbers, and the file writes that never overwrite a key.

use std::fs;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use openssl::bn::{BigNum, MsbOption};
use openssl::x509::X509;
use renkei_crypto::participant::ParticipantId;
use serde::{Deserialize, Serialize};

use super::INDEX;
use super::certs::ossl;
use crate::error::{Error, Result};

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
        serde_json::from_str(&text).map_err(|e| {
            Error::config_from(format!("`{}` is not a valid index", path.display()), e)
        })
    }

    /// The certificate with this serial (any case, colons allowed), if issued here.
    pub fn find(&self, serial: &str) -> Option<&IssuedCert> {
        let serial = normalize_serial(serial).ok()?;
        self.certificates.iter().find(|c| c.serial == serial)
    }

    pub(super) fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::internal_from("cannot encode the index", e))?;
        replace_file(&dir.join(INDEX), json.as_bytes())
    }
}

/// Adds `cert` to the index and returns its serial.
pub(super) fn record(
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
pub(super) fn serial_of(cert: &X509) -> Result<String> {
    let serial = cert.serial_number().to_bn().map_err(ossl)?;
    normalize_serial(&serial.to_hex_str().map_err(ossl)?)
}

/// A random positive 127-bit serial that the index does not hold yet.
pub(super) fn fresh_serial(index: &Index) -> Result<BigNum> {
    for _ in 0..8 {
        let mut serial = BigNum::new().map_err(ossl)?;
        serial.rand(127, MsbOption::ONE, false).map_err(ossl)?;
        let hex = normalize_serial(&serial.to_hex_str().map_err(ossl)?)?;
        if index.find(&hex).is_none() {
            return Ok(serial);
        }
    }
    Err(Error::internal("no fresh certificate serial after 8 tries"))
}

/// Uppercase hex without colons or leading zeros; anything else non-hex is an error.
pub(super) fn normalize_serial(serial: &str) -> Result<String> {
    let hex: String = serial.chars().filter(|c| *c != ':').collect();
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::bad_request(format!(
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

/// Creates `dir` (and parents) accessible by its owner only, if missing.
pub(super) fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|e| io_error(dir, e))
}

/// Creates a new file (mode 0600 when `private`, else 0644) and writes `bytes`;
/// an existing file is an error.
pub(super) fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
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
pub(super) fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, bytes, false)?;
    fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

/// An I/O failure on a PKI file, naming the file.
pub(super) fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::config_from(format!("`{}`", path.display()), e)
}
