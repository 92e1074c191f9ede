//! Receipts: JSON round trip, signing hook, verification against the stored consent.

use hmac::{Hmac, Mac};
use renkei_consent::{ConsentStore, Error, Receipt, ReceiptSigner, ReceiptVerifier, SqliteStore};
use sha2::Sha256;

use crate::support::{PEPPER, t, terms};

/// A stand-in for the hub's signing key: HMAC-SHA256 in hex.
struct TestKey(&'static [u8]);

impl TestKey {
    fn mac(&self, bytes: &[u8]) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.0).unwrap();
        m.update(bytes);
        hex::encode(m.finalize().into_bytes())
    }
}

impl ReceiptSigner for TestKey {
    fn sign(&self, bytes: &[u8]) -> String {
        self.mac(bytes)
    }
}

impl ReceiptVerifier for TestKey {
    fn verify(&self, bytes: &[u8], signature: &str) -> bool {
        self.mac(bytes) == signature
    }
}

#[tokio::test]
async fn signed_receipt_round_trips_and_verifies() {
    let s = SqliteStore::memory().await.unwrap();
    let (c, mut receipt) = s.grant(terms(), PEPPER, t(7)).await.unwrap();
    let key = TestKey(b"hub key");
    assert!(matches!(
        receipt.verify_signature(&key),
        Err(Error::UnsignedReceipt(_))
    ));
    receipt.sign(&key).unwrap();
    let json = serde_json::to_string(&receipt).unwrap();
    let code = receipt.revocation_code.as_ref().unwrap().grouped().unwrap();
    assert!(
        json.contains(code.as_str()),
        "the resident's copy carries the code"
    );
    let back: Receipt = serde_json::from_str(&json).unwrap();
    assert_eq!(back, receipt);
    back.verify_signature(&key).unwrap();
    back.verify_against(&s.get(&c.id).await.unwrap().unwrap())
        .unwrap();

    // Without the code the receipt still verifies; the code is not stored anywhere.
    let mut shared = back.clone();
    shared.revocation_code = None;
    shared.verify_signature(&key).unwrap();
    assert!(
        !serde_json::to_string(&shared)
            .unwrap()
            .contains(code.as_str())
    );

    let mut forged = back.clone();
    forged.terms.terms.categories.push("kdb.care".into());
    assert!(matches!(
        forged.verify_signature(&key),
        Err(Error::BadSignature(_))
    ));
    assert!(matches!(
        forged.verify_against(&c),
        Err(Error::ReceiptMismatch(..))
    ));
    assert!(matches!(
        back.verify_signature(&TestKey(b"other key")),
        Err(Error::BadSignature(_))
    ));
}

#[tokio::test]
async fn only_a_hash_of_the_code_is_stored() {
    let s = SqliteStore::memory().await.unwrap();
    let (c, receipt) = s.grant(terms(), PEPPER, t(7)).await.unwrap();
    let code = receipt.revocation_code.unwrap();
    let stored: String = sqlx::query_scalar("SELECT code_hash FROM consents WHERE id = $1")
        .bind(&c.id)
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(stored, code.hash(PEPPER).unwrap());
    let grouped = code.grouped().unwrap();
    let plain = grouped.replace('-', "");
    let dump: Vec<String> = sqlx::query_scalar(
        "SELECT entry_json FROM consent_ledger UNION ALL SELECT consent_json FROM consents",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert!(
        dump.iter()
            .all(|row| !row.contains(grouped.as_str()) && !row.contains(plain.as_str()))
    );
}
