//! The steps of the flow as its users run them: a synthetic archive, `lgwan-agent preview`
//! and `import`, the agent daemon, `renkei-client enroll`, `consent grant` and `pull`; and
//! [`Basic`], those steps in order up to a PHR app holding a resident's decrypted records.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use lgwan_agent::synth::{SynthOptions, SynthPerson, write_archive};
use serde_json::{Value, json};

use crate::db::Backend;
use crate::hub::HubProcess;
use crate::netns::Netns;
use crate::proc::{Background, Output, wait_until};
use crate::scene::{SOURCE, Scene, SceneOptions};

/// The PHR app of every scene.
pub const APP: &str = "phr:asmile";

/// A JSON object's field, `null` when absent.
pub fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&Value::Null)
}

/// Writes a synthetic 特定健診 archive of `persons` persons into `dir`, each with a
/// 特定保健指導 record beside the checkup.
pub fn synth_archive(dir: &Path, persons: usize) -> anyhow::Result<(PathBuf, Vec<SynthPerson>)> {
    let opts = SynthOptions {
        persons,
        guidance: true,
        seed: 2026,
        exam_year: 2026,
        creation_date: "20260701".into(),
        ..Default::default()
    };
    std::fs::create_dir_all(dir)?;
    let path = dir.join(opts.archive_name());
    let summary = write_archive(&path, &opts).context("writing the synthetic archive")?;
    ensure!(
        !summary.identities.is_empty(),
        "the synthetic archive has no persons"
    );
    Ok((path, summary.identities))
}

/// A KDB care export row (UTF-8, the columns of the mapping `lgwan-agent init` writes) for `p`.
pub fn write_kdb_care(path: &Path, p: &SynthPerson) -> anyhow::Result<()> {
    let sex = if p.sex == lgwan_agent::domain::Sex::Female {
        "女"
    } else {
        "男"
    };
    let text = format!(
        "保険者番号,被保険者証記号,被保険者証番号,枝番,氏名,生年月日,性別,認定日,要介護度,介護給付費\n\
         {},{},{},{},{},{},{sex},20260401,要支援1,120000\n",
        p.insurer_number,
        p.symbol,
        p.number,
        p.branch.clone().unwrap_or_default(),
        p.name,
        p.birth_date.replace('-', "/"),
    );
    std::fs::write(path, text).with_context(|| format!("writing `{}`", path.display()))
}

/// The identity JSON a PHR app submits for `p` (`renkei-client enroll --identity`).
pub fn identity_json(p: &SynthPerson) -> Value {
    let sex = if p.sex == lgwan_agent::domain::Sex::Female {
        "female"
    } else {
        "male"
    };
    json!({"insurer_number": p.insurer_number, "symbol": p.symbol, "number": p.number,
           "birth_date": p.birth_date, "sex": sex, "branch": p.branch})
}

/// `lgwan-agent token` for `p`: its subject token.
pub async fn token(scene: &Scene, p: &SynthPerson) -> anyhow::Result<String> {
    let sex = if p.sex == lgwan_agent::domain::Sex::Female {
        "female"
    } else {
        "male"
    };
    let out = scene
        .agent(
            &["token"],
            &[
                "--insurer",
                &p.insurer_number,
                "--symbol",
                &p.symbol,
                "--number",
                &p.number,
                "--birth",
                &p.birth_date,
                "--sex",
                sex,
            ],
        )
        .await?
        .ok()?;
    Ok(out.stdout.trim().to_owned())
}

/// `lgwan-agent preview`: every line of what would leave the building.
pub async fn preview(scene: &Scene, inputs: &[&Path]) -> anyhow::Result<Vec<Value>> {
    let inputs: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let out = scene.agent(&["preview"], &inputs).await?.ok()?;
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("preview line `{l}`")))
        .collect()
}

/// `lgwan-agent consent grant` at the counter for `person`, to `recipient` for
/// `purpose` and `categories` (comma-separated), valid 24 hours, by staff-0042; the
/// consent id its receipt names.
pub async fn counter_consent(
    scene: &Scene,
    person: &SynthPerson,
    recipient: &str,
    purpose: &str,
    categories: &str,
) -> anyhow::Result<String> {
    let person = person_args(person);
    let mut args: Vec<&str> = person.iter().map(String::as_str).collect();
    args.extend([
        "--recipient",
        recipient,
        "--purpose",
        purpose,
        "--categories",
        categories,
        "--hours",
        "24",
        "--staff",
        "staff-0042",
    ]);
    let receipt = scene.agent(&["consent", "grant"], &args).await?.ok()?;
    receipt
        .stdout
        .lines()
        .find_map(|l| l.split_once("同意番号:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(str::to_owned)
        .with_context(|| format!("no consent id in {receipt}"))
}

/// `lgwan-agent consent revoke` at the counter for consent `id` (the resident asked).
pub async fn counter_revoke(scene: &Scene, id: &str) -> anyhow::Result<()> {
    scene
        .agent(&["consent", "revoke"], &["--id", id, "--reason", "asked"])
        .await?
        .ok()?;
    Ok(())
}

/// The identity options of `lgwan-agent` commands (`--insurer` … `--sex`, `--branch`)
/// for `p`, as counter staff type them.
pub fn person_args(p: &SynthPerson) -> Vec<String> {
    let sex = if p.sex == lgwan_agent::domain::Sex::Female {
        "female"
    } else {
        "male"
    };
    let mut args: Vec<String> = [
        "--insurer",
        &p.insurer_number,
        "--symbol",
        &p.symbol,
        "--number",
        &p.number,
        "--birth",
        &p.birth_date,
        "--sex",
        sex,
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(b) = &p.branch {
        args.extend(["--branch".to_owned(), b.clone()]);
    }
    args
}

/// `lgwan-agent enrollment-code issue` for `p`: the code it printed for the notice.
pub async fn issue_code(scene: &Scene, p: &SynthPerson) -> anyhow::Result<String> {
    let owned = person_args(p);
    let args: Vec<&str> = owned.iter().map(String::as_str).collect();
    let out = scene
        .agent(&["enrollment-code", "issue"], &args)
        .await?
        .ok()?;
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("enrollment code:"))
        .map(|c| c.trim().to_owned())
        .with_context(|| format!("no code in `{}`", out.stdout))
}

/// `renkei-client enroll` of `p` by `app` with a code staff issued for `p`; returns the
/// app's pseudonym for the resident.
pub async fn enroll(
    scene: &Scene,
    app: &str,
    p: &SynthPerson,
    user_ref: &str,
) -> anyhow::Result<String> {
    scene.wait_source_keys().await?;
    let code = issue_code(scene, p).await?;
    let m = scene.member(app)?;
    let file = m.dir.join(format!("identity-{user_ref}.json"));
    std::fs::write(&file, identity_json(p).to_string())?;
    let file = file.display().to_string();
    let out = scene
        .client(
            app,
            &[
                "enroll",
                "--source",
                SOURCE,
                "--user-ref",
                user_ref,
                "--identity",
                &file,
                "--code",
                &code,
                "--wait",
                "30",
            ],
        )
        .await?
        .ok()?;
    let v = out.json()?;
    ensure!(
        field(&v, "status") == "linked",
        "enrollment not linked: {v}"
    );
    field(&v, "pseudonym")
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("enrollment without a pseudonym: {v}"))
}

/// A consent as `renkei-client consent grant` printed it.
#[derive(Debug, Clone)]
pub struct Granted {
    /// The consent id.
    pub consent_id: String,
    /// The receipt's one-time revocation code.
    pub code: String,
}

/// `renkei-client consent grant` by `by` (method `app`, granted by the resident unless
/// `extra` says `--granted-by`), with `extra` arguments (`--valid-hours`, `--evidence`,
/// `--guardian`, …): the command's output, whether the hub granted it or not.
pub async fn try_grant(
    scene: &Scene,
    by: &str,
    subject: &str,
    recipient: &str,
    purpose: &str,
    categories: &[&str],
    extra: &[&str],
) -> anyhow::Result<Output> {
    let mut args = vec![
        "consent",
        "grant",
        "--subject",
        subject,
        "--recipient",
        recipient,
        "--purpose",
        purpose,
    ];
    if !extra.contains(&"--granted-by") {
        args.extend(["--granted-by", "resident"]);
    }
    for c in categories {
        args.extend(["--category", c]);
    }
    args.extend(extra);
    scene.client(by, &args).await
}

/// Asserts that `out` (of [`try_grant`]) was refused, saying `why`.
pub fn assert_refused(out: &Output, why: &str) {
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!out.status.success(), "granted: {text}");
    assert!(text.contains(why), "{text}");
}

/// `renkei-client consent grant` by `by` (method `app`, granted by the resident).
pub async fn grant(
    scene: &Scene,
    by: &str,
    subject: &str,
    recipient: &str,
    purpose: &str,
    categories: &[String],
) -> anyhow::Result<Granted> {
    let categories: Vec<&str> = categories.iter().map(String::as_str).collect();
    let v = try_grant(scene, by, subject, recipient, purpose, &categories, &[])
        .await?
        .ok()?
        .json()?;
    Ok(Granted {
        consent_id: v
            .pointer("/consent/id")
            .and_then(Value::as_str)
            .with_context(|| format!("no consent id in {v}"))?
            .to_owned(),
        code: v
            .pointer("/receipt/revocation_code")
            .and_then(Value::as_str)
            .with_context(|| format!("no revocation code in {v}"))?
            .to_owned(),
    })
}

/// A decrypted record a recipient wrote: its pseudonym folder and its JSON.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The pseudonym folder it was written under.
    pub pseudonym: String,
    /// The payload as JSON.
    pub payload: Value,
    /// The file.
    pub path: PathBuf,
}

/// `v` with every `urn:uuid:` value replaced by its order of first appearance
/// (`urn:uuid:#1`, …): each recipient's copy carries fresh ids (client/src/copy.rs), so
/// copies compare equal to the source's record exactly when the rest is equal.
pub fn without_uuids(v: &Value) -> Value {
    fn walk(v: &Value, seen: &mut Vec<String>) -> Value {
        match v {
            Value::String(s) if s.starts_with("urn:uuid:") => {
                let n = match seen.iter().position(|x| x == s) {
                    Some(n) => n,
                    None => {
                        seen.push(s.clone());
                        seen.len() - 1
                    }
                };
                Value::String(format!("urn:uuid:#{}", n + 1))
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, seen)).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, x)| (k.clone(), walk(x, seen))).collect())
            }
            other => other.clone(),
        }
    }
    walk(v, &mut Vec::new())
}

/// The id under which `recipient` receives the scene's record `record_id` (its own
/// copy's id), computed with the agent's record key as the agent does.
pub fn copy_id(scene: &Scene, recipient: &str, record_id: &str) -> anyhow::Result<String> {
    use renkei_crypto::keys::RecordKey;
    use renkei_crypto::token::{RecordId, recipient_record_id};
    let key = RecordKey::load(&scene.source.dir.join("keys").join("record.key"))?;
    Ok(recipient_record_id(&key, &RecordId::parse(record_id)?, recipient).to_string())
}

/// The records under a `pull --out` folder, by record id (the recipient's copy id), with
/// their `urn:uuid:` values normalized by [`without_uuids`].
pub fn pulled(out: &Path) -> anyhow::Result<BTreeMap<String, Pulled>> {
    let mut found = BTreeMap::new();
    let Ok(dirs) = std::fs::read_dir(out) else {
        return Ok(found);
    };
    for d in dirs {
        let d = d?.path();
        let pseudonym = d
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        for f in std::fs::read_dir(&d)? {
            let path = f?.path();
            let Some(id) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            let payload: Value = serde_json::from_slice(&std::fs::read(&path)?)
                .with_context(|| format!("`{}`", path.display()))?;
            let payload = without_uuids(&payload);
            found.insert(
                id,
                Pulled {
                    pseudonym: pseudonym.clone(),
                    payload,
                    path,
                },
            );
        }
    }
    Ok(found)
}

/// Runs `renkei-client pull --out out` until `want` record ids are all there (bounded).
pub async fn pull_until(
    scene: &Scene,
    who: &str,
    out: &Path,
    want: &BTreeSet<String>,
) -> anyhow::Result<BTreeMap<String, Pulled>> {
    let out_s = out.display().to_string();
    wait_until(
        &format!("{who} to pull {} records", want.len()),
        Duration::from_secs(45),
        || async {
            scene.client(who, &["pull", "--out", &out_s]).await?.ok()?;
            let got = pulled(out)?;
            let have: BTreeSet<&String> = got.keys().collect();
            Ok(want.iter().all(|w| have.contains(w)).then_some(got))
        },
    )
    .await
}

/// The categories of the consents in these tests: the `checkup.*` ones seen in a preview.
pub fn checkup_categories(lines: &[Value], token: &str) -> Vec<String> {
    let set: BTreeSet<String> = lines
        .iter()
        .filter(|l| field(l, "subject_token") == token)
        .filter_map(|l| field(l, "category").as_str())
        .filter(|c| c.starts_with("checkup."))
        .map(str::to_owned)
        .collect();
    set.into_iter().collect()
}

/// The flow up to a PHR app holding a resident's decrypted checkup records.
#[derive(Debug)]
pub struct Basic {
    /// The deployment (its agent's namespace is dropped after the processes: field order).
    pub agent: Background,
    /// The hub.
    pub hub: HubProcess,
    /// The folders, config and database.
    pub scene: Scene,
    /// `lgwan-agent preview` lines.
    pub preview: Vec<Value>,
    /// Resident #1.
    pub person: SynthPerson,
    /// Resident #1's subject token (`lgwan-agent token`).
    pub token: String,
    /// The app's pseudonym for resident #1.
    pub pseudonym: String,
    /// The `phr-display` consent.
    pub consent: Granted,
    /// Where the app pulled to.
    pub out: PathBuf,
    /// The preview's payloads of resident #1's consented records, by the app's copy id
    /// (`urn:uuid:` values normalized).
    pub expected: BTreeMap<String, Value>,
    /// What the app pulled.
    pub pulled: BTreeMap<String, Pulled>,
}

impl Basic {
    /// PKI, hub, participants, `serve`, synthetic archive, `preview`, `import`, `run`,
    /// `enroll`, `consent grant` (phr-display, checkup categories) and `pull`; `None`
    /// when the database is not available.
    pub async fn run(
        backend: Backend,
        members: &[&str],
        netns: Option<Netns>,
    ) -> anyhow::Result<Option<Basic>> {
        let Some(scene) = Scene::new(&SceneOptions::new(backend, members), netns).await? else {
            return Ok(None);
        };
        let hub = scene.start_hub().await?;
        let (archive, persons) = synth_archive(&scene.root().join("input"), 4)?;
        let person = persons.first().context("no person")?.clone();
        let preview = preview(&scene, &[&archive]).await?;
        scene
            .agent(&["import"], &[&archive.display().to_string()])
            .await?
            .ok()?;
        let agent = scene.start_agent()?;
        let token = token(&scene, &person).await?;
        let pseudonym = enroll(&scene, APP, &person, "user-0001").await?;
        let categories = checkup_categories(&preview, &token);
        ensure!(
            !categories.is_empty(),
            "resident #1 has no checkup records in the preview"
        );
        let consent = grant(&scene, APP, &pseudonym, APP, "phr-display", &categories).await?;
        let expected: BTreeMap<String, Value> = preview
            .iter()
            .filter(|l| field(l, "subject_token") == token.as_str())
            .filter(|l| {
                field(l, "category")
                    .as_str()
                    .is_some_and(|c| categories.iter().any(|x| x == c))
            })
            .filter_map(|l| {
                Some((
                    field(l, "record_id").as_str()?.to_owned(),
                    without_uuids(field(l, "payload")),
                ))
            })
            .map(|(id, payload)| Ok((copy_id(&scene, APP, &id)?, payload)))
            .collect::<anyhow::Result<_>>()?;
        let out = scene.member(APP)?.dir.join("data");
        let want: BTreeSet<String> = expected.keys().cloned().collect();
        let pulled = pull_until(&scene, APP, &out, &want).await?;
        Ok(Some(Basic {
            agent,
            hub,
            scene,
            preview,
            person,
            token,
            pseudonym,
            consent,
            out,
            expected,
            pulled,
        }))
    }
}
