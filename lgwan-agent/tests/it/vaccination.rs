//! The vaccination register of the 健康管理システム (予防接種台帳), keyed by 宛名番号 alone:
//! a second identity scheme. A row is filed under the token of the insurance identity the
//! agent saw with the same 宛名番号, birth date and sex (in a KDB file, in this run or an
//! earlier import); a 宛名番号 it has not seen, or one seen with another person, is set
//! aside with a reason that says so, and never filed under anyone else.

use lgwan_agent::import::import;
use lgwan_agent::outbox::Outbox;
use lgwan_agent::quarantine::Reason;
use serde_json::Value;

use crate::preview::{agent, run_preview};

const KDB: &str = "保険者番号,被保険者証記号,被保険者証番号,枝番,生年月日,性別,宛名番号,診療年月,入院医療費,入院外医療費,歯科医療費,調剤医療費,医療費総額\n\
    01130012,12,345,03,20230510,2,0000123,202406,,3000,,,3000\n";

const REGISTER: &str = "宛名番号,氏名,生年月日,性別,接種日,ワクチン名,接種回数\n\
    ０００0123,見本　花子,2023/05/10,女,20240615,五種混合,1\n\
    0000123,見本　花子,2023/05/11,女,20240715,五種混合,2\n\
    0000555,見本　次郎,2022/01/01,男,20240615,MR,1\n\
    0000123,見本　花子,2023/05/10,女,20240815,,3\n\
    0000123,見本　花子,2023/05/10,女,20240915,BCG,0\n";

fn immunizations(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| l["category"] == "immunization.record")
        .collect()
}

#[tokio::test]
async fn a_register_row_is_filed_under_the_token_its_resident_number_was_seen_with() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path());
    let kdb = dir.path().join("kdb.csv");
    let register = dir.path().join("予防接種台帳.csv");
    std::fs::write(&kdb, KDB).unwrap();
    std::fs::write(&register, REGISTER).unwrap();

    // Alone, no row has a token: the agent never saw these 宛名番号.
    let (lines, bad) = run_preview(&a, std::slice::from_ref(&register));
    assert!(immunizations(&lines).is_empty());
    assert_eq!(bad.len(), 5, "{bad:?}");
    assert!(bad.iter().any(
        |q| matches!(&q.reason, Reason::Field(m) if m.contains("has not been seen with an insurance identity"))
    ));

    // With the KDB file that names 0000123 beside the child's insurance identity.
    let (lines, bad) = run_preview(&a, &[kdb.clone(), register.clone()]);
    let child = lines
        .iter()
        .find(|l| l["category"] == "kdb.medical-cost")
        .unwrap()["subject_token"]
        .clone();
    let records = immunizations(&lines);
    assert_eq!(records.len(), 1, "{lines:?}");
    assert_eq!(records[0]["subject_token"], child);
    let payload = records[0]["payload"].to_string();
    let entry = &records[0]["payload"]["entry"][0]["resource"];
    assert_eq!(entry["resourceType"], "Immunization");
    assert_eq!(entry["vaccineCode"]["text"], "五種混合");
    assert_eq!(entry["occurrenceDateTime"], "2024-06-15");
    assert_eq!(entry["protocolApplied"][0]["doseNumberPositiveInt"], 1);
    for secret in ["0000123", "見本", "2023-05-10", "20230510"] {
        assert!(
            !payload.contains(secret),
            "{secret} left the agent: {payload}"
        );
    }
    // Every other row is set aside, each for its own reason.
    let reasons: Vec<String> = bad.iter().map(|q| q.reason.to_string()).collect();
    assert_eq!(bad.len(), 4, "{reasons:?}");
    assert!(
        bad.iter().any(
            |q| matches!(&q.reason, Reason::IdentityConflict(m) if m.contains("another birth date"))
        ),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("has not been seen")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("the vaccine is empty")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not a dose number")),
        "{reasons:?}"
    );

    // Imported apart, the KDB file first: the register finds the sighting in the outbox.
    let outbox = Outbox::open(&a.config.outbox).await.unwrap();
    let first = import(&a, &outbox, std::slice::from_ref(&kdb), &mut |_| {})
        .await
        .unwrap();
    assert!(first.quarantined.is_empty(), "{:?}", first.quarantined);
    let second = import(&a, &outbox, std::slice::from_ref(&register), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(second.new_records, 1);
    assert_eq!(second.quarantined.len(), 4);
    outbox.close().await;
    let bytes = std::fs::read(&a.config.outbox).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("0000123"));
}

#[test]
fn mappings_that_name_no_identity_or_a_bad_immunization_are_refused_by_name() {
    use lgwan_agent::config::Config;
    let base = |identity: &str, values: &str| {
        format!(
            r#"source = "source:city-mihon"
keys = {{ token = "t", record = "k", enrollment = "e" }}
[[tables]]
name = "immunization"
category = "immunization.record"
resource = "immunization"
date_column = "接種日"
date_format = "%Y%m%d"
identity = {identity}
values = [{values}]
"#
        )
    };
    let ok_identity = r#"{ resident = "宛名番号", birth = "生年月日", sex = "性別" }"#;
    let ok_values = r#"{ column = "ワクチン名", code = "vaccine", kind = "text" }"#;
    for (text, needle) in [
        (
            base(r#"{ birth = "生年月日", sex = "性別" }"#, ok_values),
            "names no identity",
        ),
        (
            base(
                r#"{ insurer = "保険者番号", birth = "生年月日", sex = "性別" }"#,
                ok_values,
            ),
            "come together",
        ),
        (
            base(
                ok_identity,
                r#"{ column = "ロット", code = "lot", kind = "text" }"#,
            ),
            "code `lot`",
        ),
        (
            base(
                ok_identity,
                r#"{ column = "接種回数", code = "dose-number", kind = "quantity" }"#,
            ),
            "needs a value coded `vaccine`",
        ),
    ] {
        let err = Config::from_toml(std::path::Path::new("/etc/agent/agent.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tables `immunization`") && err.contains(needle),
            "{err}"
        );
    }
}

#[tokio::test]
async fn two_resident_numbers_on_one_insurance_identity_are_never_filed_together() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path());
    // Two residents (twins) behind one card with no 枝番 column: one token, two 宛名番号.
    let kdb = dir.path().join("kdb.csv");
    std::fs::write(
        &kdb,
        "保険者番号,被保険者証記号,被保険者証番号,枝番,生年月日,性別,宛名番号,診療年月,入院医療費,入院外医療費,歯科医療費,調剤医療費,医療費総額\n\
         01130012,12,345,,20230510,2,0000777,202406,,3000,,,3000\n\
         01130012,12,345,,20230510,2,0000778,202406,,4000,,,4000\n",
    )
    .unwrap();
    let register = dir.path().join("register.csv");
    std::fs::write(
        &register,
        "宛名番号,生年月日,性別,接種日,ワクチン名,接種回数\n\
         0000777,20230510,2,20240615,五種混合,1\n\
         0000778,20230510,2,20240615,五種混合,1\n",
    )
    .unwrap();
    // One run: the token is refused, for the KDB rows and the register alike.
    let (lines, bad) = run_preview(&a, &[kdb.clone(), register.clone()]);
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(bad.len(), 4, "{bad:?}");
    // Apart: the second number is never recorded against the token; the first stays
    // refused as the outbox's conflict.
    let outbox = Outbox::open(&a.config.outbox).await.unwrap();
    let first = import(&a, &outbox, std::slice::from_ref(&kdb), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(first.new_records, 0);
    assert_eq!(first.resident_mismatches, 1);
    let second = import(&a, &outbox, std::slice::from_ref(&register), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(second.new_records, 0, "{:?}", second.quarantined);
    assert_eq!(second.quarantined.len(), 2);
}
