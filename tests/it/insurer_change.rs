//! Issue 20, an insurer change with the real binaries (国保 → 後期高齢者医療 at 75): the
//! resident's KDB rows under the new insurer number reach the analyst under the same
//! pseudonym and the same consent as before, because the agent linked the two tokens by
//! the 宛名番号 inside LGWAN; another person reusing the 宛名番号 is not merged.

use std::collections::BTreeSet;

use renkei_e2e::flow::{self, field};
use renkei_e2e::{APP, Backend, Basic};
use serde_json::Value;

const ANALYST: &str = "analyst:hachioji";

const HEAD: &str = "保険者番号,被保険者証記号,被保険者証番号,枝番,生年月日,性別,宛名番号,診療年月,\
                    入院医療費,入院外医療費,歯科医療費,調剤医療費,医療費総額";

async fn insurer_change(backend: Backend) {
    let Some(b) = Basic::run(backend, &[APP, ANALYST], None).await.unwrap() else {
        return;
    };
    let p = &b.person;
    let birth = p.birth_date.replace('-', "");
    let (sex_code, sex) = if p.sex == lgwan_agent::domain::Sex::Female {
        ("2", "female")
    } else {
        ("1", "male")
    };
    let input = b.scene.root().join("input");
    let kokuho = input.join("kdb_kokuho.csv");
    std::fs::write(
        &kokuho,
        format!(
            "{HEAD}\n{},{},{},{},{birth},{sex_code},0004711,202503,,12000,,,12000\n",
            p.insurer_number,
            p.symbol,
            p.number,
            p.branch.clone().unwrap_or_default()
        ),
    )
    .unwrap();
    let import = |file: &std::path::Path| {
        let file = file.display().to_string();
        let scene = &b.scene;
        async move {
            scene
                .agent(&["import"], &[&file])
                .await
                .unwrap()
                .ok()
                .unwrap()
        }
    };
    import(&kokuho).await;

    // At the counter, the resident (with the 国保 card) consents to the evaluation.
    let mut args = vec![
        "--insurer",
        p.insurer_number.as_str(),
        "--symbol",
        p.symbol.as_str(),
        "--number",
        p.number.as_str(),
        "--birth",
        p.birth_date.as_str(),
        "--sex",
        sex,
        "--recipient",
        ANALYST,
        "--purpose",
        "care-prevention-evaluation",
        "--categories",
        "kdb.medical-cost",
        "--hours",
        "720",
        "--staff",
        "staff-0042",
    ];
    if let Some(branch) = &p.branch {
        args.extend(["--branch", branch.as_str()]);
    }
    b.scene
        .agent(&["consent", "grant"], &args)
        .await
        .unwrap()
        .ok()
        .unwrap();

    // The resident turns 75: 後期高齢者医療 rows under a new number, same 宛名番号; and a
    // row of someone else that reuses the number (another birth date).
    let kouki = input.join("kdb_kouki.csv");
    std::fs::write(
        &kouki,
        format!(
            "{HEAD}\n39131234,,87654321,,{birth},{sex_code},0004711,202605,,34000,,,34000\n\
             39131234,,11112222,,19400101,{sex_code},0004711,202605,,777,,,777\n"
        ),
    )
    .unwrap();
    let done = import(&kouki).await;
    assert!(
        done.stderr.contains("1 insurer change(s) linked")
            && done.stderr.contains("1 宛名番号 seen with another"),
        "{done}"
    );

    // The analyst receives both years, under one pseudonym, and not the other person.
    let out = b.scene.member(ANALYST).unwrap().dir.join("data");
    let preview = |file: &std::path::Path| {
        let file = file.display().to_string();
        let scene = &b.scene;
        async move {
            let out = scene
                .agent(&["preview"], &[&file])
                .await
                .unwrap()
                .ok()
                .unwrap();
            out.stdout
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let mut lines = preview(&kokuho).await;
    lines.extend(preview(&kouki).await);
    let ids = |total: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| field(l, "payload").to_string().contains(total))
            .map(|l| field(l, "record_id").as_str().unwrap().to_owned())
            .collect()
    };
    let (old, new, stranger) = (ids("12000"), ids("34000"), ids("777"));
    assert_eq!((old.len(), new.len(), stranger.len()), (1, 1, 1));
    let want: BTreeSet<String> = old
        .iter()
        .chain(&new)
        .map(|id| flow::copy_id(&b.scene, ANALYST, id).unwrap())
        .collect();
    let pulled = flow::pull_until(&b.scene, ANALYST, &out, &want)
        .await
        .unwrap();
    assert_eq!(pulled.keys().cloned().collect::<BTreeSet<_>>(), want);
    let pseudonyms: BTreeSet<&str> = pulled.values().map(|p| p.pseudonym.as_str()).collect();
    assert_eq!(pseudonyms.len(), 1, "{pseudonyms:?}");
    let other = flow::copy_id(&b.scene, ANALYST, &stranger[0]).unwrap();
    assert!(!pulled.contains_key(&other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insurer_change_sqlite() {
    insurer_change(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insurer_change_postgres() {
    insurer_change(Backend::Postgres).await;
}
