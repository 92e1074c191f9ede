//! Tests of `renew_ca`: the renewed CA is the same issuer for rustls (real
//! handshakes through `renkei_crypto::tls`, with the clock injected) and for
//! openssl, issued certificates and CRLs keep working, and bad folders are refused.

use std::sync::Arc;

use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{X509StoreContext, X509VerifyResult};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

use super::super::*;
use super::now;
use chrono::Duration;
use renkei_crypto::tls::{
    ClientTlsPaths, ServerTlsPaths, client_config, peer_participant, server_config,
};

/// A clock stuck at one instant, for both ends of a handshake.
#[derive(Debug)]
struct FixedTime(DateTime<Utc>);

impl TimeProvider for FixedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(self.0.timestamp()).unwrap(),
        )))
    }
}

/// The hub's TLS config from the PKI folder (server.pem, the CA file `ca`, the CRL),
/// built by the crate's own code, with its clock set to `at`.
fn hub(dir: &Path, ca: &Path, crl: &Path, at: DateTime<Utc>) -> Arc<ServerConfig> {
    let config = server_config(&ServerTlsPaths {
        cert_chain: dir.join(SERVER_CERT),
        key: dir.join(SERVER_KEY),
        client_ca: Some(ca.to_path_buf()),
        crls: vec![crl.to_path_buf()],
    })
    .unwrap();
    let mut config = (*config).clone();
    config.time_provider = Arc::new(FixedTime(at));
    Arc::new(config)
}

/// A participant's TLS config from an `issue` output folder, trusting `ca`, clock at `at`.
fn participant(out: &Path, base: &str, ca: &Path, at: DateTime<Utc>) -> Arc<ClientConfig> {
    let config = client_config(&ClientTlsPaths {
        ca: ca.to_path_buf(),
        cert_chain: out.join(format!("{base}.pem")),
        key: out.join(format!("{base}.key")),
    })
    .unwrap();
    let mut config = (*config).clone();
    config.time_provider = Arc::new(FixedTime(at));
    Arc::new(config)
}

/// A full in-memory TLS handshake; the participant the hub saw, or who refused and why.
fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Result<String, String> {
    let mut s = ServerConnection::new(server).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = ClientConnection::new(client, name).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets().map_err(|e| format!("hub: {e}"))?;
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets()
                .map_err(|e| format!("participant: {e}"))?;
        }
        if !s.is_handshaking() && !c.is_handshaking() {
            return peer_participant(s.peer_certificates())
                .map(|p| p.to_string())
                .map_err(|e| e.to_string());
        }
    }
    panic!("the handshake did not finish");
}

/// openssl's verdict on `leaf` against a store holding only `ca`, at `at`.
fn openssl_verify(ca: &Path, leaf: &Path, at: DateTime<Utc>) -> X509VerifyResult {
    let ca = X509::from_pem(&fs::read(ca).unwrap()).unwrap();
    let leaf = X509::from_pem(&fs::read(leaf).unwrap()).unwrap();
    let mut store = X509StoreBuilder::new().unwrap();
    store.add_cert(ca).unwrap();
    let mut param = X509VerifyParam::new().unwrap();
    param.set_time(at.timestamp());
    store.set_param(&param).unwrap();
    let store = store.build();
    let mut ctx = X509StoreContext::new().unwrap();
    let chain = Stack::new().unwrap();
    ctx.init(&store, &leaf, &chain, |c| {
        c.verify_cert()?;
        Ok(c.error())
    })
    .unwrap()
}

fn read_cert(path: &Path) -> X509 {
    X509::from_pem(&fs::read(path).unwrap()).unwrap()
}

/// A PKI whose CA (30 days) runs out at `now() + 30 days`, two participants issued
/// under it (20 days), and a participant of another PKI.
fn short_lived_pki() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    init(&dir, &["localhost".to_owned()], &[], 30, now()).unwrap();
    let out = tmp.path().join("certs");
    issue(&dir, &"phr:before".parse().unwrap(), &out, 20, now()).unwrap();
    issue(&dir, &"clinic:revoked".parse().unwrap(), &out, 20, now()).unwrap();
    let foreign = tmp.path().join("foreign");
    init(&foreign, &["localhost".to_owned()], &[], 30, now()).unwrap();
    issue(
        &foreign,
        &"phr:stranger".parse().unwrap(),
        &tmp.path().join("foreign-certs"),
        20,
        now(),
    )
    .unwrap();
    (tmp, dir)
}

#[test]
fn renewed_ca_keeps_key_subject_and_key_id_and_archives_the_old_one() {
    let (_tmp, dir) = short_lived_pki();
    let old_pem = fs::read(dir.join(CA_CERT)).unwrap();
    let old = X509::from_pem(&old_pem).unwrap();
    let key_before = fs::read(dir.join(CA_KEY)).unwrap();
    let server_before = fs::read(dir.join(SERVER_CERT)).unwrap();
    let crl_before = fs::read(dir.join(CRL)).unwrap();
    let at = now() + Duration::days(10);

    let r = renew_ca(&dir, CA_VALIDITY_DAYS, at).unwrap();
    let pems = X509::stack_from_pem(&fs::read(dir.join(CA_CERT)).unwrap()).unwrap();
    assert_eq!(pems.len(), 1, "ca.pem holds only the renewed certificate");
    let new = &pems[0];
    assert_eq!(serial_of(&old).unwrap(), r.old_serial);
    assert_eq!(serial_of(new).unwrap(), r.new_serial);
    assert_ne!(r.old_serial, r.new_serial);
    assert_eq!(r.archived, dir.join(format!("ca-{}.pem", r.old_serial)));
    assert_eq!(fs::read(&r.archived).unwrap(), old_pem);

    assert_eq!(
        new.subject_name().to_der().unwrap(),
        old.subject_name().to_der().unwrap()
    );
    assert_eq!(
        new.issuer_name().to_der().unwrap(),
        old.subject_name().to_der().unwrap()
    );
    assert!(
        new.public_key()
            .unwrap()
            .public_eq(&old.public_key().unwrap())
    );
    assert_eq!(
        new.subject_key_id().unwrap().as_slice(),
        old.subject_key_id().unwrap().as_slice()
    );
    assert!(new.verify(&old.public_key().unwrap()).unwrap());
    assert_eq!(
        r.not_after,
        at + Duration::days(i64::from(CA_VALIDITY_DAYS))
    );
    assert_eq!(new.not_after(), &*asn1_time(r.not_after).unwrap());
    assert_eq!(
        new.not_before(),
        &*asn1_time(at - Duration::hours(1)).unwrap()
    );

    // Nothing else changed: key, server chain, CRL.
    assert_eq!(fs::read(dir.join(CA_KEY)).unwrap(), key_before);
    assert_eq!(fs::read(dir.join(SERVER_CERT)).unwrap(), server_before);
    assert_eq!(fs::read(dir.join(CRL)).unwrap(), crl_before);

    // The index lists the renewed CA under the same holder, so `pki expiring` sees the
    // old one as renewed instead of warning.
    let index = Index::load(&dir).unwrap();
    let entry = index.find(&r.new_serial).unwrap();
    assert_eq!(entry.subject, "Renkei participant CA");
    assert_eq!(entry.not_after, r.not_after);
    let status = crate::registry::certificate_status(&index, at, Duration::days(30));
    let old_state = status
        .iter()
        .find(|c| c.serial == r.old_serial)
        .unwrap()
        .state;
    assert_eq!(old_state, crate::registry::CertState::Renewed);

    // The archived CA cannot be revoked, just like the current one.
    let err = revoke(&dir, &r.old_serial, at).unwrap_err();
    assert!(err.to_string().contains("the CA itself"), "{err}");
    let err = revoke(&dir, &r.new_serial, at).unwrap_err();
    assert!(err.to_string().contains("the CA itself"), "{err}");

    // Renewing again archives the renewed one in turn.
    let again = renew_ca(&dir, 4000, at + Duration::days(1)).unwrap();
    assert_eq!(again.old_serial, r.new_serial);
    assert!(dir.join(format!("ca-{}.pem", r.new_serial)).exists());
    assert!(r.archived.exists());
}

#[test]
fn certificates_issued_before_the_renewal_pass_rustls_and_openssl() {
    let (tmp, dir) = short_lived_pki();
    let out = tmp.path().join("certs");
    let foreign_out = tmp.path().join("foreign-certs");
    let crl_before = tmp.path().join("crl-before.pem");
    fs::copy(dir.join(CRL), &crl_before).unwrap();
    let old_ca = tmp.path().join("old-ca.pem");
    fs::copy(dir.join(CA_CERT), &old_ca).unwrap();

    let renewed_at = now() + Duration::days(10);
    renew_ca(&dir, CA_VALIDITY_DAYS, renewed_at).unwrap();
    let new_ca = dir.join(CA_CERT);
    let at = renewed_at + Duration::hours(1);

    // The hub trusts only the renewed certificate; the CRL signed before the renewal is
    // accepted for it (the verifier denies a client whose issuer has no matching CRL).
    let server = hub(&dir, &new_ca, &crl_before, at);
    let before = participant(&out, "phr-before", &out.join(CA_CERT), at);
    assert_eq!(handshake(server.clone(), before).unwrap(), "phr:before");
    // Control: a participant of another CA with the same name is refused.
    let stranger = participant(&foreign_out, "phr-stranger", &out.join(CA_CERT), at);
    let err = handshake(server, stranger).unwrap_err();
    assert!(err.starts_with("hub:"), "{err}");

    // A revocation after the renewal: the new CRL, signed by the same key, is honoured.
    let serial = Index::load(&dir)
        .unwrap()
        .certificates
        .iter()
        .find(|c| c.subject == "clinic:revoked")
        .unwrap()
        .serial
        .clone();
    revoke(&dir, &serial, at).unwrap();
    let server = hub(&dir, &new_ca, &dir.join(CRL), at);
    let revoked = participant(&out, "clinic-revoked", &new_ca, at);
    let err = handshake(server.clone(), revoked).unwrap_err();
    assert!(err.to_lowercase().contains("revoked"), "{err}");
    let before = participant(&out, "phr-before", &new_ca, at);
    assert_eq!(handshake(server, before).unwrap(), "phr:before");

    // openssl (which also matches the authority key identifier) agrees.
    let leaf = out.join("phr-before.pem");
    assert_eq!(openssl_verify(&new_ca, &leaf, at), X509VerifyResult::OK);
    assert_eq!(openssl_verify(&old_ca, &leaf, at), X509VerifyResult::OK);
    let stranger = foreign_out.join("phr-stranger.pem");
    assert_ne!(openssl_verify(&new_ca, &stranger, at), X509VerifyResult::OK);
}

#[test]
fn after_the_old_ca_expired_the_renewed_one_issues_and_verifies() {
    let (tmp, dir) = short_lived_pki();
    let who: ParticipantId = "phr:after".parse().unwrap();
    let after_out = tmp.path().join("after");
    let old_ca = tmp.path().join("old-ca.pem");
    fs::copy(dir.join(CA_CERT), &old_ca).unwrap();

    // Before the renewal nothing can be issued past the CA's notAfter.
    let err = issue(&dir, &who, &after_out, 100, now() + Duration::days(5)).unwrap_err();
    assert!(err.to_string().contains("runs past the CA"), "{err}");
    renew_ca(&dir, CA_VALIDITY_DAYS, now() + Duration::days(5)).unwrap();

    // 40 days in, the first CA certificate has expired (day 30), and so has the server
    // certificate issued under it, which is renewed as usual.
    let at = now() + Duration::days(40);
    issue(&dir, &who, &after_out, DEFAULT_VALIDITY_DAYS, at).unwrap();
    renew_server(&dir, &["localhost".to_owned()], &[], at).unwrap();
    let server_leaf = &X509::stack_from_pem(&fs::read(dir.join(SERVER_CERT)).unwrap()).unwrap()[0];
    assert_eq!(
        server_leaf.not_after(),
        &*asn1_time(at + Duration::days(i64::from(SERVER_VALIDITY_DAYS))).unwrap(),
        "the server certificate is no longer capped by the first CA's end"
    );

    let new_ca = dir.join(CA_CERT);
    let server = || hub(&dir, &new_ca, &dir.join(CRL), at);
    let after = participant(&after_out, "phr-after", &new_ca, at);
    assert_eq!(handshake(server(), after).unwrap(), "phr:after");
    // A participant still holding the first CA certificate reaches the hub: rustls
    // checks the anchor's subject and key, not its dates.
    let lagging = participant(&after_out, "phr-after", &old_ca, at);
    assert_eq!(handshake(server(), lagging).unwrap(), "phr:after");
    // Control: the clock is really at day 40, the first participant's certificate
    // (20 days) has expired and is refused.
    let out = tmp.path().join("certs");
    let expired = participant(&out, "phr-before", &new_ca, at);
    let err = handshake(server(), expired).unwrap_err();
    assert!(err.to_lowercase().contains("expired"), "{err}");

    // openssl accepts the new participant under the renewed CA, and not under the
    // expired first certificate: why participants should still swap their ca.pem.
    let leaf = after_out.join("phr-after.pem");
    assert_eq!(openssl_verify(&new_ca, &leaf, at), X509VerifyResult::OK);
    assert_ne!(openssl_verify(&old_ca, &leaf, at), X509VerifyResult::OK);
}

#[test]
fn issue_brings_an_old_ca_copy_up_to_date_but_keeps_refusing_another_ca() {
    let (tmp, dir) = short_lived_pki();
    let out = tmp.path().join("certs");
    renew_ca(&dir, CA_VALIDITY_DAYS, now() + Duration::days(1)).unwrap();
    issue(
        &dir,
        &"phr:next".parse().unwrap(),
        &out,
        30,
        now() + Duration::days(1),
    )
    .unwrap();
    assert_eq!(
        fs::read(out.join(CA_CERT)).unwrap(),
        fs::read(dir.join(CA_CERT)).unwrap()
    );
    let foreign_out = tmp.path().join("foreign-certs");
    let err = issue(
        &dir,
        &"phr:next".parse().unwrap(),
        &foreign_out,
        30,
        now() + Duration::days(1),
    )
    .unwrap_err();
    assert!(err.to_string().contains("holds another CA"), "{err}");
}

#[test]
fn renew_ca_refuses_bad_folders_and_validities() {
    let tmp = tempfile::tempdir().unwrap();
    let err = renew_ca(tmp.path(), 3650, now()).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert!(err.to_string().contains("ca.pem"), "{err}");
    assert!(err.to_string().contains("pki init"), "{err}");

    let (_tmp, dir) = short_lived_pki();
    let ca_before = fs::read(dir.join(CA_CERT)).unwrap();
    for (days, wanted) in [
        (0, "at least 1 day"),
        (7306, "`--days 7306`"),
        (u32::MAX, "at most 7305 days"),
        // Ends before the current certificate (day 30) does.
        (10, "choose more days"),
    ] {
        let err = renew_ca(&dir, days, now()).unwrap_err();
        assert!(err.to_string().contains(wanted), "{days}: {err}");
    }
    assert_eq!(fs::read(dir.join(CA_CERT)).unwrap(), ca_before);
    let err = init(&tmp.path().join("x"), &["h".to_owned()], &[], 7306, now()).unwrap_err();
    assert!(err.to_string().contains("at most 7305"), "{err}");

    // A key that is not the CA's.
    let key_path = dir.join(CA_KEY);
    let real_key = fs::read(&key_path).unwrap();
    fs::write(&key_path, fs::read(dir.join(SERVER_KEY)).unwrap()).unwrap();
    let err = renew_ca(&dir, 3650, now()).unwrap_err();
    assert!(err.to_string().contains("is not the key of"), "{err}");
    assert!(err.to_string().contains("ca.key"), "{err}");
    // An unreadable key and a key that is not PEM.
    fs::write(&key_path, b"garbage").unwrap();
    let err = renew_ca(&dir, 3650, now()).unwrap_err();
    assert!(
        err.to_string().contains("ca.key` is not a PEM private key"),
        "{err}"
    );
    fs::remove_file(&key_path).unwrap();
    let err = renew_ca(&dir, 3650, now()).unwrap_err();
    assert!(err.to_string().contains("ca.key"), "{err}");
    fs::write(&key_path, &real_key).unwrap();

    // An archive that differs is not overwritten.
    let serial = serial_of(&read_cert(&dir.join(CA_CERT))).unwrap();
    fs::write(dir.join(format!("ca-{serial}.pem")), b"other").unwrap();
    let err = renew_ca(&dir, 3650, now()).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert_eq!(fs::read(dir.join(CA_CERT)).unwrap(), ca_before);

    // A missing index.
    fs::remove_file(dir.join(format!("ca-{serial}.pem"))).unwrap();
    fs::remove_file(dir.join(INDEX)).unwrap();
    let err = renew_ca(&dir, 3650, now()).unwrap_err();
    assert!(err.to_string().contains("index.json"), "{err}");
    assert_eq!(fs::read(dir.join(CA_CERT)).unwrap(), ca_before);
}
