//! Insurer changes (国保 → 後期高齢者医療 at 75): rows of one 宛名番号 under two insurance
//! identities link the later token to the first, for the hub; a 宛名番号 seen with another
//! birth date or sex is never linked (two people are never merged).

use lgwan_agent::import::import;
use lgwan_agent::outbox::Outbox;

use crate::preview::{agent, run_preview};

const HEAD: &str = "保険者番号,被保険者証記号,被保険者証番号,枝番,生年月日,性別,宛名番号,診療年月,入院医療費,入院外医療費,歯科医療費,調剤医療費,医療費総額";

#[tokio::test]
async fn one_resident_number_links_the_new_insurer_token_to_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path());
    let kokuho = dir.path().join("kdb_2025.csv");
    std::fs::write(
        &kokuho,
        format!(
            "{HEAD}\n\
             01130012,12,345,01,19500402,1,0000123,202502,,15000,,,15000\n\
             01130012,12,777,01,19610101,2,0000999,202502,,8000,,,8000\n"
        ),
    )
    .unwrap();
    // At 75 the first resident moves to the 後期高齢者医療広域連合 (a new number); the
    // second row reuses 0000123 with another birth date: not the same person.
    let kouki = dir.path().join("kdb_2026.csv");
    std::fs::write(
        &kouki,
        format!(
            "{HEAD}\n\
             39131234,,87654321,,19500402,1,0000123,202605,,23000,,,23000\n\
             39131234,,11111111,,19520505,2,0000123,202605,,5000,,,5000\n"
        ),
    )
    .unwrap();
    let outbox = Outbox::open(&a.config.outbox).await.unwrap();
    let first = import(&a, &outbox, std::slice::from_ref(&kokuho), &mut |_| {})
        .await
        .unwrap();
    assert!(first.quarantined.is_empty(), "{:?}", first.quarantined);
    assert_eq!((first.resident_links, first.resident_mismatches), (0, 0));
    assert!(outbox.pending_links(10).await.unwrap().is_empty());
    let second = import(&a, &outbox, std::slice::from_ref(&kouki), &mut |_| {})
        .await
        .unwrap();
    assert_eq!((second.resident_links, second.resident_mismatches), (1, 1));
    let links = outbox.pending_links(10).await.unwrap();
    assert_eq!(links.len(), 1, "{links:?}");

    // The link is from the 国保 token to the 後期 token of the same person.
    let (lines, _) = run_preview(&a, &[kokuho.clone(), kouki.clone()]);
    let token_of = |month: &str, total: i64| {
        lines
            .iter()
            .find(|l| {
                l["effective_date"].as_str().unwrap().starts_with(month)
                    && l["payload"]
                        .to_string()
                        .contains(&format!("\"value\":{total}"))
            })
            .unwrap()["subject_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(links[0].old, token_of("2025-02", 15000));
    assert_eq!(links[0].new, token_of("2026-05", 23000));
    assert_ne!(links[0].new, token_of("2026-05", 5000));
    // Importing again changes nothing.
    let again = import(&a, &outbox, &[kokuho, kouki], &mut |_| {})
        .await
        .unwrap();
    assert_eq!((again.resident_links, again.new_records), (0, 0));
    assert_eq!(outbox.pending_links(10).await.unwrap().len(), 1);
    // The outbox holds no 宛名番号.
    outbox.close().await;
    let bytes = std::fs::read(&a.config.outbox).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("0000123"), "the 宛名番号 reached the outbox");
}
