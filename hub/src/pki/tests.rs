//! Tests of the participant PKI: init, issue, revoke, CRL, against openssl and rustls.

use super::certs::{asn1_time, authority_key_id_der, der_unsigned};
use super::store::normalize_serial;
use super::*;
use chrono::Duration;
use openssl::x509::X509Crl;
use renkei_crypto::participant::ParticipantKind;
use renkei_crypto::tls::{ClientTlsPaths, ServerTlsPaths, client_config, server_config};

mod renewal;

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
    assert!(matches!(err, Error::BadRequest { .. }), "{err}");
}

#[test]
fn issued_cert_names_its_participant_and_works_with_rustls() {
    let tmp = new_pki();
    let out = tmp.path().join("out");
    let who = ParticipantId::new(ParticipantKind::Phr, "asmile").unwrap();
    let serial = issue(tmp.path(), &who, &out, DEFAULT_VALIDITY_DAYS, now()).unwrap();

    let cert = X509::from_pem(&fs::read(out.join("phr-asmile.pem")).unwrap()).unwrap();
    assert_eq!(
        renkei_crypto::participant::from_cert_der(&cert.to_der().unwrap()).unwrap(),
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

/// A connection's expiry follows the path the client sent: the leaf and the CA that
/// issued it count, an unrelated certificate sent after them does not.
#[test]
fn chain_expiry_follows_the_sent_path() {
    let tmp = new_pki();
    let out = tmp.path().join("out");
    let der = |path: std::path::PathBuf| -> rustls_pki_types::CertificateDer<'static> {
        X509::from_pem(&fs::read(path).unwrap())
            .unwrap()
            .to_der()
            .unwrap()
            .into()
    };
    let long = ParticipantId::new(ParticipantKind::Phr, "asmile").unwrap();
    let short = ParticipantId::new(ParticipantKind::Clinic, "mysos").unwrap();
    issue(tmp.path(), &long, &out, 30, now()).unwrap();
    issue(tmp.path(), &short, &out, 2, now()).unwrap();
    let (leaf, other, ca) = (
        der(out.join("phr-asmile.pem")),
        der(out.join("clinic-mysos.pem")),
        der(tmp.path().join("ca.pem")),
    );
    let day = 86_400;
    let start = u64::try_from(now().timestamp()).unwrap();
    let expiry = |chain: &[rustls_pki_types::CertificateDer<'static>]| {
        renkei_crypto::tls::chain_expiry(chain).unwrap()
    };
    let leaf_end = expiry(std::slice::from_ref(&leaf));
    assert!(
        (start + 29 * day..=start + 31 * day).contains(&leaf_end),
        "{leaf_end}"
    );
    // The clinic's certificate expires first, but it did not issue the leaf.
    assert_eq!(expiry(&[leaf.clone(), other.clone()]), leaf_end);
    assert!(expiry(std::slice::from_ref(&other)) < leaf_end);
    // The CA did issue it: its (later) expiry counts, and the leaf's is the earlier.
    assert_eq!(expiry(&[leaf, ca]), leaf_end);
}
