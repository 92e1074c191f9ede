//! `internet-hub report` (issue 19): usage counted from the audit log by recipient,
//! purpose and month, a count below the threshold suppressed with no number.

use axum::http::StatusCode;
use renkei_hub::report::{Dimension, UsageRow, to_csv, usage};
use serde_json::json;

use crate::harness::{OTHER_SUBJECT, SUBJECT, TestHub, both, d};

fn row<'a>(rows: &'a [UsageRow], measure: &str, recipient: &str) -> &'a UsageRow {
    rows.iter()
        .find(|r| r.measure == measure && r.recipient == recipient)
        .unwrap_or_else(|| panic!("no {measure} row for {recipient}: {rows:?}"))
}

both!(
    usage_counts_residents_from_the_audit_log_and_suppresses_small_counts,
    |h: TestHub| async move {
        h.register_all().await;
        let mut consents = Vec::new();
        for (i, subject) in [SUBJECT, OTHER_SUBJECT].into_iter().enumerate() {
            let record = h.sealed(
                &format!("doc-{i}"),
                subject,
                "checkup.lipids",
                d(2026, 5, 1),
                b"{\"ldl\":120}",
            );
            assert_eq!(h.upload(&[&record]).await.0, StatusCode::OK);
            let pseudonym = h.enroll("phr:asmile", subject).await;
            consents.push(
                h.app_consent(
                    &pseudonym,
                    "phr:asmile",
                    "phr-display",
                    &["checkup.lipids"],
                    json!({}),
                )
                .await,
            );
            assert_eq!(h.answer_grants().await, 1);
            let rid = record.0.header().record_id.as_str().to_owned();
            // The first resident's record is read three times: still one resident.
            for _ in 0..(3 - 2 * i) {
                let (st, v) = h
                    .call(
                        Some("phr:asmile"),
                        "GET",
                        &format!("/v1/records/{}", h.alias("phr:asmile", &rid)),
                        None,
                    )
                    .await;
                assert_eq!(st, StatusCode::OK, "{v}");
            }
        }
        let (st, v) = h
            .call(
                Some("phr:asmile"),
                "POST",
                &format!("/v1/consents/{}/revoke", consents[0]),
                Some(json!({"reason": "test"})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");

        // With a threshold of 2: two residents enrolled, consented and were read; one
        // revoked, which is withheld.
        let by = [Dimension::Recipient, Dimension::Purpose, Dimension::Month];
        let rows = usage(&h.hub.db, &by, 2).await.unwrap();
        let reads = row(&rows, "reads", "phr:asmile");
        assert_eq!(
            (reads.count, reads.suppressed),
            (Some(2), false),
            "residents, not reads"
        );
        assert_eq!(reads.purpose, "phr-display");
        assert_eq!(reads.month, "2026-06", "the harness clock's month");
        for measure in ["enrollments", "consents_granted"] {
            let r = row(&rows, measure, "phr:asmile");
            assert_eq!(r.count, Some(2), "{r:?}");
        }
        let revoked = row(&rows, "consents_revoked", "phr:asmile");
        assert_eq!((revoked.count, revoked.suppressed), (None, true));
        // The default threshold withholds everything here; by recipient alone, all months.
        let rows = usage(&h.hub.db, &[Dimension::Recipient], 10).await.unwrap();
        let reads = row(&rows, "reads", "phr:asmile");
        assert_eq!(
            (reads.count, reads.purpose.as_str(), reads.month.as_str()),
            (None, "all", "all")
        );
        let csv = to_csv(&rows);
        assert!(csv.starts_with("measure,recipient,purpose,month,count,suppressed\n"));
        assert!(csv.contains("reads,phr:asmile,all,all,,true"), "{csv}");
        assert!(
            usage(&h.hub.db, &by, 1).await.is_err(),
            "a threshold of 1 publishes one person"
        );
    }
);
