//! An app's signed revocation list, as the agent checks it before releasing under the
//! app's consents: the app's own signature by the pinned CA, fresh enough, never older
//! than one already seen, and every id it ever named kept revoked.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use lgwan_agent::agent::check_revocation_list;
use lgwan_agent::outbox::Outbox;
use renkei_crypto::consent_statement::RevocationList;
use renkei_crypto::participant::ParticipantId;

use crate::daemon::pki;
use crate::issue::issue_client;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 0).unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn a_list_is_taken_only_from_the_app_and_only_while_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = issue_client(dir.path(), "phr:asmile");
    let app: ParticipantId = "phr:asmile".parse().unwrap();
    let list = RevocationList::sign(&cert, &key, vec!["a".repeat(64)], t0()).unwrap();
    let ca = pki("ca.pem");
    check_revocation_list(&list, &app, &ca, t0(), HOUR).unwrap();
    check_revocation_list(&list, &app, &ca, t0() + chrono::Duration::minutes(59), HOUR).unwrap();

    let stale = check_revocation_list(&list, &app, &ca, t0() + chrono::Duration::minutes(61), HOUR)
        .unwrap_err()
        .to_string();
    assert!(stale.contains("3660 s old"), "{stale}");

    // Another app's list, shown as this app's.
    let (other_cert, other_key) = issue_client(dir.path(), "phr:kenko");
    let other = RevocationList::sign(&other_cert, &other_key, Vec::new(), t0()).unwrap();
    let e = check_revocation_list(&other, &app, &ca, t0(), HOUR)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`phr:kenko`'s"), "{e}");
    // The app's list with a revoked id dropped by whoever relays it.
    let dropped = RevocationList {
        revoked: Vec::new(),
        ..list.clone()
    };
    assert!(check_revocation_list(&dropped, &app, &ca, t0(), HOUR).is_err());
    // Checked against a CA the agent did not pin.
    assert!(check_revocation_list(&list, &app, &pki("other-ca.pem"), t0(), HOUR).is_err());
}

#[tokio::test]
async fn an_older_list_after_a_newer_one_is_refused_and_revoked_ids_stay_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&dir.path().join("outbox.sqlite"))
        .await
        .unwrap();
    let (a, b) = ("a".repeat(64), "b".repeat(64));
    let app = "phr:asmile";
    outbox
        .note_revocation_list(app, "2026-06-01T09:00:00.000000Z", &[])
        .await
        .unwrap();
    assert!(!outbox.app_revoked(app, &a).await.unwrap());
    outbox
        .note_revocation_list(app, "2026-06-01T10:00:00.000000Z", std::slice::from_ref(&a))
        .await
        .unwrap();
    assert!(outbox.app_revoked(app, &a).await.unwrap());
    assert!(
        !outbox.app_revoked("phr:kenko", &a).await.unwrap(),
        "per app"
    );
    // Another app naming the same id first does not keep this app's revocation out.
    let c = "c".repeat(64);
    outbox
        .note_revocation_list(
            "phr:kenko",
            "2026-06-01T10:00:00.000000Z",
            std::slice::from_ref(&c),
        )
        .await
        .unwrap();
    outbox
        .note_revocation_list(app, "2026-06-01T10:30:00.000000Z", &[a.clone(), c.clone()])
        .await
        .unwrap();
    assert!(
        outbox.app_revoked(app, &c).await.unwrap(),
        "recorded for this app too"
    );

    let e = outbox
        .note_revocation_list(app, "2026-06-01T09:00:00.000000Z", &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("older than the one"), "{e}");
    // A newer list that no longer names `a` (its consent ended): still revoked here.
    outbox
        .note_revocation_list(app, "2026-06-01T11:00:00.000000Z", std::slice::from_ref(&b))
        .await
        .unwrap();
    assert!(
        outbox.app_revoked(app, &a).await.unwrap() && outbox.app_revoked(app, &b).await.unwrap()
    );
    // The same list again is fine.
    outbox
        .note_revocation_list(app, "2026-06-01T11:00:00.000000Z", &[b])
        .await
        .unwrap();
}
