//! Key files: mode 0600 on save, refusal of unsafe, malformed or wrong-kind
//! files on load, and round trips for every secret key type.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use renkei_crypto::grant::RecipientSecretKey;
use renkei_crypto::keys::{
    KeyVersion, PseudonymKey, RecordKey, TokenKey, load_key_file, read_secret_file,
};
use renkei_crypto::sign::SigningKey;
use renkei_crypto::token::{record_id, subject_token};

fn canonical() -> renkei_crypto::identity::CanonicalIdentity {
    renkei_crypto::identity::Identity {
        insurer_number: "138057".into(),
        symbol: "".into(),
        number: "1".into(),
        birth_date: "20000101".into(),
        sex: renkei_crypto::identity::Sex::Female,
        branch: None,
    }
    .canonical()
    .unwrap()
}

#[test]
fn saved_keys_are_0600_and_load_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.key");
    let key = TokenKey::generate(KeyVersion::new(4));
    key.save(&path).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("renkei-key token v4 ") && text.ends_with('\n'),
        "{text}"
    );
    let loaded = TokenKey::load(&path).unwrap();
    assert_eq!(loaded.version(), KeyVersion::new(4));
    assert_eq!(
        subject_token(&loaded, &canonical()),
        subject_token(&key, &canonical())
    );
    // Never overwritten.
    let err = TokenKey::generate(KeyVersion::V1)
        .save(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("token.key"), "{err}");
    assert_eq!(TokenKey::load(&path).unwrap().version(), KeyVersion::new(4));
}

#[test]
fn every_secret_key_type_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let record = RecordKey::generate(KeyVersion::V1);
    record.save(&dir.path().join("r")).unwrap();
    let back = RecordKey::load(&dir.path().join("r")).unwrap();
    assert_eq!(record_id(&back, "d", "c"), record_id(&record, "d", "c"));
    PseudonymKey::generate(KeyVersion::V1)
        .save(&dir.path().join("p"))
        .unwrap();
    assert!(PseudonymKey::load(&dir.path().join("p")).is_ok());
    let x = RecipientSecretKey::generate(KeyVersion::new(2));
    x.save(&dir.path().join("x")).unwrap();
    let x_back = RecipientSecretKey::load(&dir.path().join("x")).unwrap();
    assert_eq!(x_back.public_key(), x.public_key());
    assert_eq!(x_back.version(), KeyVersion::new(2));
    let s = SigningKey::generate(KeyVersion::V1);
    s.save(&dir.path().join("s")).unwrap();
    let s_back = SigningKey::load(&dir.path().join("s")).unwrap();
    assert_eq!(s_back.verifying_key(), s.verifying_key());
}

#[test]
fn group_or_world_accessible_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.key");
    RecordKey::generate(KeyVersion::V1).save(&path).unwrap();
    for mode in [0o640, 0o604, 0o660, 0o644, 0o610] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let err = RecordKey::load(&path).unwrap_err().to_string();
        assert!(err.contains("rec.key"), "{err}");
        assert!(err.contains(&format!("mode {mode:04o}")), "{err}");
        assert!(read_secret_file(&path).is_err());
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    assert!(RecordKey::load(&path).is_ok());
}

#[test]
fn wrong_kind_and_malformed_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    TokenKey::generate(KeyVersion::V1).save(&path).unwrap();
    let err = RecordKey::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("holds a `token` key, expected a `record` key"),
        "{err}"
    );
    assert!(SigningKey::load(&path).is_err());

    let cases: [(&str, &str); 6] = [
        ("", "is malformed"),
        ("renkei-key token v1\n", "is malformed"),
        ("other-key token v1 AAAA\n", "no `renkei-key` prefix"),
        ("renkei-key token 1 AAAA\n", "invalid key version `1`"),
        ("renkei-key token v1 ***\n", "invalid base64"),
        (
            "renkei-key token v1 AAAA\n",
            "holds a key of 3 bytes, expected 32",
        ),
    ];
    for (i, (content, reason)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}"));
        renkei_crypto::keys::write_secret_file(&path, content.as_bytes()).unwrap();
        let err = TokenKey::load(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("bad{i}")) && err.contains(reason),
            "{content}: {err}"
        );
    }
    assert!(load_key_file(&dir.path().join("missing"), "token").is_err());
    assert!(
        read_secret_file(dir.path()).is_err(),
        "a directory is not a key file"
    );
}
