//! The participant PKI on disk: the participant CA, the hub's server
//! certificate, participant client certificates, the index of issued
//! certificates and the CRL (`internet-hub pki init|issue|revoke|crl|renew-server|renew-ca`).
//!
//! A PKI folder holds `ca.pem`, `ca.key`, `server.pem` (the server leaf, then
//! the CA), `server.key`, `index.json` and `crl.pem`, plus `ca-<serial>.pem` for
//! each CA certificate that `renew-ca` replaced by one with the same key and
//! subject ([`renew_ca`]). `issue` writes, into its output folder,
//! `<kind>-<id>.pem` (the leaf only), `<kind>-<id>.key` and a
//! copy of `ca.pem`, which the participant needs to trust the hub and which is
//! the CA its certificate chains to; a copy of an earlier version of the same
//! CA there is brought up to date.
//!
//! Every key is ECDSA P-256. Key files are created mode 0600 (never chmod-ed
//! afterwards) and no existing file is ever overwritten, except `index.json`,
//! `crl.pem`, `ca.pem` (by `renew-ca`, and an out-of-date copy by `issue`) and
//! the server pair (by `renew-server`), which are replaced atomically.
//! Certificates start one hour before `now` to tolerate clock skew between the
//! hub and participants. The
//! CRL (v2, with a CRL number and the CA's key identifier) is built with
//! openssl's `X509CrlBuilder` and is valid for [`CRL_VALIDITY_DAYS`]; the hub's
//! TLS verifier keeps using an older one (see `renkei_crypto::tls`).

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::x509::X509;
use openssl::x509::extension::{ExtendedKeyUsage, SubjectAlternativeName};
use renkei_crypto::participant::ParticipantId;

use crate::error::{Error, Result};

mod certs;
mod renew;
mod store;
#[cfg(test)]
mod tests;

use certs::{
    asn1_time, build_ca, build_crl, cert_builder, days, name, new_key, ossl, pem_key, sign_leaf,
    utc_of,
};
pub use renew::{CaRenewal, archived_ca_name, renew_ca};
use renew::{ca_validity, same_ca};
pub use store::{Index, IssuedCert};
use store::{
    create_private_dir, io_error, normalize_serial, record, replace_file, serial_of, write_new,
};

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
/// Default validity of the participant CA (`pki init`, `pki renew-ca`): 10 years.
/// The CA key is not rotated by a renewal, so this bounds only how often the
/// certificate has to be re-signed and copied around.
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// The longest validity accepted for the participant CA: 20 years.
pub const MAX_CA_VALIDITY_DAYS: u32 = 7305;
/// Validity of the hub's server certificate (the CA/Browser Forum maximum).
pub const SERVER_VALIDITY_DAYS: u32 = 397;
/// Default validity of a participant certificate.
pub const DEFAULT_VALIDITY_DAYS: u32 = 397;
/// How long a CRL is valid (its nextUpdate) after it is generated.
pub const CRL_VALIDITY_DAYS: i64 = 30;

/// The CA's common name.
const CA_NAME: &str = "Renkei participant CA";

/// Creates the PKI in `dir`: a self-signed CA valid `validity_days` (at most
/// [`MAX_CA_VALIDITY_DAYS`]), the hub's server certificate for `dns_names` and
/// `ips`, an empty index and an empty CRL.
/// Refuses to touch a folder that already holds a CA.
pub fn init(
    dir: &Path,
    dns_names: &[String],
    ips: &[IpAddr],
    validity_days: u32,
    now: DateTime<Utc>,
) -> Result<()> {
    if dns_names.is_empty() && ips.is_empty() {
        return Err(Error::bad_request(
            "the server certificate needs at least one dns name or ip address",
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
    let ca_not_after = now + ca_validity(validity_days)?;
    let ca = build_ca(&ca_key, &*name(CA_NAME)?, None, now, ca_not_after, &index)?;
    write_new(&dir.join(CA_KEY), &pem_key(&ca_key)?, true)?;
    write_new(&dir.join(CA_CERT), &ca.to_pem().map_err(ossl)?, false)?;
    record(&mut index, &ca, CA_NAME, None, ca_not_after)?;

    let (chain, key_pem) =
        server_cert(&ca, &ca_key, &mut index, dns_names, ips, ca_not_after, now)?;
    write_new(&dir.join(SERVER_KEY), &key_pem, true)?;
    write_new(&dir.join(SERVER_CERT), &chain, false)?;
    write_crl(dir, &mut index, &ca, &ca_key, now)?;
    Ok(())
}

/// Issues the hub's server certificate (leaf then CA, PEM) and its key (PEM), recording it.
fn server_cert(
    ca: &X509,
    ca_key: &PKey<Private>,
    index: &mut Index,
    dns_names: &[String],
    ips: &[IpAddr],
    ca_not_after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(Vec<u8>, zeroize::Zeroizing<Vec<u8>>)> {
    if dns_names.is_empty() && ips.is_empty() {
        return Err(Error::bad_request(
            "the server certificate needs at least one dns name or ip address",
        ));
    }
    let server_key = new_key()?;
    let server_not_after = (now + days(SERVER_VALIDITY_DAYS)?).min(ca_not_after);
    let cn = dns_names.first().map_or("renkei hub", String::as_str);
    let b = cert_builder(&server_key, cn, now, server_not_after, index)?;
    let mut san = SubjectAlternativeName::new();
    for dns in dns_names {
        san.dns(dns);
    }
    for ip in ips {
        san.ip(&ip.to_string());
    }
    let san = san.build(&b.x509v3_context(Some(ca), None));
    let eku = ExtendedKeyUsage::new().server_auth().build();
    let server = sign_leaf(b, ca, ca_key, [san, eku])?;
    let mut chain = server.to_pem().map_err(ossl)?;
    chain.extend(ca.to_pem().map_err(ossl)?);
    record(index, &server, cn, None, server_not_after)?;
    Ok((chain, pem_key(&server_key)?))
}

/// The DNS names and IP addresses the hub's current server certificate (`server.pem` in
/// `dir`) names: what `pki renew-server` keeps when it is given none.
pub fn server_names(dir: &Path) -> Result<(Vec<String>, Vec<IpAddr>)> {
    let path = dir.join(SERVER_CERT);
    let pem = fs::read(&path).map_err(|e| io_error(&path, e))?;
    let cert = X509::from_pem(&pem).map_err(|e| {
        Error::bad_request(format!("`{}` holds no certificate: {e}", path.display()))
    })?;
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    for name in cert.subject_alt_names().into_iter().flatten() {
        if let Some(d) = name.dnsname() {
            dns.push(d.to_owned());
        }
        match name.ipaddress() {
            Some(&[a, b, c, d]) => ips.push(IpAddr::from([a, b, c, d])),
            Some(v6) => {
                if let Ok(bytes) = <[u8; 16]>::try_from(v6) {
                    ips.push(IpAddr::from(bytes));
                }
            }
            None => {}
        }
    }
    if dns.is_empty() && ips.is_empty() {
        return Err(Error::bad_request(format!(
            "`{}` names no DNS name or IP address: give them with --dns and --ip",
            path.display()
        )));
    }
    Ok((dns, ips))
}

/// Renews the hub's server certificate (new key, new serial) and replaces `server.pem`
/// and `server.key` atomically; send the hub SIGHUP to use them without dropping
/// connections.
pub fn renew_server(
    dir: &Path,
    dns_names: &[String],
    ips: &[IpAddr],
    now: DateTime<Utc>,
) -> Result<()> {
    let (ca, ca_key) = load_ca(dir)?;
    let mut index = Index::load(dir)?;
    let ca_not_after = utc_of(ca.not_after())?;
    let (chain, key_pem) =
        server_cert(&ca, &ca_key, &mut index, dns_names, ips, ca_not_after, now)?;
    let tmp_key = dir.join("server.key.new");
    let _ = fs::remove_file(&tmp_key);
    write_new(&tmp_key, &key_pem, true)?;
    fs::rename(&tmp_key, dir.join(SERVER_KEY)).map_err(|e| io_error(&dir.join(SERVER_KEY), e))?;
    replace_file(&dir.join(SERVER_CERT), &chain)?;
    index.save(dir)
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
        return Err(Error::bad_request(format!(
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
    let stale_copy = match fs::read(&ca_copy) {
        Ok(existing) if existing == ca_pem => false,
        Ok(existing) => {
            let earlier = X509::from_pem(&existing)
                .ok()
                .map(|old| same_ca(&old, &ca))
                .transpose()?
                .unwrap_or(false);
            if !earlier {
                return Err(Error::Conflict(format!(
                    "`{}` holds another CA; use another output folder",
                    ca_copy.display()
                )));
            }
            true
        }
        Err(_) => false,
    };

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
    if stale_copy {
        replace_file(&ca_copy, &ca_pem)?;
    } else if !ca_copy.exists() {
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
    if wanted == serial_of(&ca)? || dir.join(archived_ca_name(&wanted)).exists() {
        return Err(Error::bad_request(format!(
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
    let path = dir.join(CRL);
    replace_file(&path, &build_crl(index, ca, ca_key, now)?)?;
    Ok(path)
}

/// Reads the CA certificate and key of the PKI folder `dir`.
fn load_ca(dir: &Path) -> Result<(X509, PKey<Private>)> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    let cert = fs::read(&cert_path).map_err(|e| io_error(&cert_path, e))?;
    let cert = X509::from_pem(&cert).map_err(|e| {
        Error::config_from(
            format!("`{}` is not a PEM certificate", cert_path.display()),
            e,
        )
    })?;
    let key = zeroize::Zeroizing::new(fs::read(&key_path).map_err(|e| io_error(&key_path, e))?);
    let key = PKey::private_key_from_pem(&key).map_err(|e| {
        Error::config_from(
            format!("`{}` is not a PEM private key", key_path.display()),
            e,
        )
    })?;
    Ok((cert, key))
}
