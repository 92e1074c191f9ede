//! Test helper: a client certificate for any participant, issued by the checked-in test
//! CA (`tests/pki/ca.pem` and `ca.key`) with the extensions `gen.sh` gives client
//! certificates. Include it like `fixture.rs` and add `openssl` to the crate's
//! dev-dependencies.

use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509NameBuilder};

fn pki_file(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/pki")
        .join(name);
    std::fs::read(&path).unwrap()
}

/// Issues `participant` (`kind:id`) a client certificate valid 2024 to 2044 and writes
/// `<kind>-<id>.pem` and `.key` (mode 0600) into `dir`; returns their paths.
pub(crate) fn issue_client(dir: &Path, participant: &str) -> (PathBuf, PathBuf) {
    let ca = X509::from_pem(&pki_file("ca.pem")).unwrap();
    let ca_key = PKey::private_key_from_pem(&pki_file("ca.key")).unwrap();
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", participant).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial
        .rand(64, openssl::bn::MsbOption::MAYBE_ZERO, false)
        .unwrap();
    b.set_serial_number(&Asn1Integer::from_bn(&serial).unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(ca.subject_name()).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::from_str("20240101000000Z").unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_str("20441231000000Z").unwrap())
        .unwrap();
    let ext = [
        BasicConstraints::new().critical().build().unwrap(),
        KeyUsage::new()
            .critical()
            .digital_signature()
            .build()
            .unwrap(),
        ExtendedKeyUsage::new().client_auth().build().unwrap(),
        SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(Some(&ca), None))
            .unwrap(),
        AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(&ca), None))
            .unwrap(),
        SubjectAlternativeName::new()
            .uri(&format!("urn:renkei:participant:{participant}"))
            .build(&b.x509v3_context(Some(&ca), None))
            .unwrap(),
    ];
    for e in ext {
        b.append_extension(e).unwrap();
    }
    b.sign(&ca_key, MessageDigest::sha256()).unwrap();
    let stem = participant.replacen(':', "-", 1);
    let pem = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    std::fs::write(&pem, b.build().to_pem().unwrap()).unwrap();
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_path)
            .unwrap();
        f.write_all(&key.private_key_to_pem_pkcs8().unwrap())
            .unwrap();
    }
    (pem, key_path)
}
