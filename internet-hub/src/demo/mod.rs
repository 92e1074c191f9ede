//! `internet-hub demo`: the whole flow on one machine with embedded SQLite and a
//! throw-away PKI, narrated step by step. It exits non-zero if any step did not do
//! what it said. `--keep DIR` leaves everything in place to explore.

mod portal;
mod setup;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::Duration as Days;
use lgwan_agent::agent::Agent;
use lgwan_agent::outbox::Outbox;
use renkei_client::api::{GrantBody, Method};
use renkei_client::consent::grant_kept;
use renkei_client::phr::{self, Medication, VitalSign};
use renkei_client::pull::Sink;
use renkei_client::source::AppRecord;
use renkei_client::state::StateDir;
use renkei_client::transport::{ClientConfig, HubClient};
use renkei_crypto::consent_statement::user_resident;
use renkei_crypto::grant::RecipientSecretKey;
use renkei_crypto::identity::{Identity, Sex};
use renkei_crypto::keys::RecordKey;
use renkei_crypto::participant::ParticipantId;

use renkei_hub::broker::Clock;
use renkei_hub::config::HubConfig;
use setup::Member;

/// Persons in the synthetic archive.
const PERSONS: usize = 12;

/// The app's own reference for the demo resident.
const USER_REF: &str = "asmile-user-0001";

struct Narrator {
    step: usize,
    started: Instant,
}

impl Narrator {
    fn step(&mut self, text: &str) {
        self.step += 1;
        println!("\n[{:>2}] {text}", self.step);
    }

    fn say(&self, text: &str) {
        println!("     {text}");
    }

    fn done(&self) {
        println!(
            "\nAll steps did what they said, in {:.1} s.",
            self.started.elapsed().as_secs_f64()
        );
    }
}

fn member(dir: &Path, id: &str) -> anyhow::Result<Member> {
    let id: ParticipantId = id.parse()?;
    Ok(Member {
        dir: dir.join(format!("{}-{}", id.kind(), id.id())),
        id,
    })
}

fn client_for(m: &Member, hub_url: &str) -> anyhow::Result<HubClient> {
    Ok(HubClient::new(ClientConfig::new(
        hub_url,
        m.ca(),
        m.cert(),
        m.key(),
    ))?)
}

/// Runs the demo in `keep` (kept afterwards) or in a temporary folder.
pub(crate) async fn run(keep: Option<PathBuf>) -> anyhow::Result<()> {
    let tmp;
    let dir = match keep {
        Some(d) => {
            std::fs::create_dir_all(&d).with_context(|| format!("creating `{}`", d.display()))?;
            ensure!(
                std::fs::read_dir(&d)?.next().is_none(),
                "`{}` is not empty; give --keep a new or empty folder",
                d.display()
            );
            d
        }
        None => {
            tmp = tempfile::tempdir().context("making a temporary folder")?;
            tmp.path().to_path_buf()
        }
    };
    let mut n = Narrator {
        step: 0,
        started: Instant::now(),
    };
    println!(
        "Renkei demo: a municipality, a PHR app, a clinic, a health-point programme, an analyst and the city's child-health team, on this machine."
    );
    println!("Everything is synthetic; files are in {}", dir.display());
    let now = Clock::System.now();

    // 1. PKI
    n.step("Making a throw-away participant CA and certificates (mTLS identities).");
    let source = Member {
        id: "source:city-a".parse()?,
        dir: dir.join("agent"),
    };
    let app = member(&dir, "phr:asmile")?;
    let clinic = member(&dir, "clinic:mysos")?;
    let analyst = member(&dir, "analyst:hachioji")?;
    let points = member(&dir, "phr:kenko-points")?;
    let city = member(&dir, "municipality:city-a")?;
    // A second city, for the evaluation step only (its agent computes its own report).
    let city_b = Member {
        id: "source:city-b".parse()?,
        dir: dir.join("agent-b"),
    };
    setup::pki(
        &dir,
        &[
            source.clone(),
            app.clone(),
            clinic.clone(),
            analyst.clone(),
            points.clone(),
            city.clone(),
            city_b.clone(),
        ],
        now,
    )?;
    for m in [&source, &app, &clinic, &analyst, &points, &city, &city_b] {
        n.say(&format!(
            "certificate for {} (URI SAN {})",
            m.id,
            m.id.uri()
        ));
    }

    // 2. Hub
    n.step("Starting the hub on embedded SQLite (participant API over mTLS, resident portal over HTTPS).");
    let listen = setup::free_listen()?;
    renkei_hub::init::init_with(&dir, Path::new("pki"), &listen)?;
    let cfg = HubConfig::load(&dir.join("hub.toml"))?;
    let running = renkei_hub::app::start(&cfg, Clock::System).await?;
    let hub_url = format!("https://localhost:{}", running.participant_addr.port());
    let portal_url = format!("https://localhost:{}/", running.portal_addr.port());
    n.say(&format!("participant API {hub_url}, portal {portal_url}"));
    let result = flow(
        &mut n,
        &dir,
        &cfg,
        &running,
        &hub_url,
        [&source, &app, &clinic, &analyst, &points, &city, &city_b],
    )
    .await;
    if result.is_ok() {
        setup::readme(&dir, &hub_url, &portal_url)?;
    }
    running.shutdown().await;
    result?;
    n.done();
    if tmp_kept(&dir) {
        println!("Kept in {}: see README.txt there.", dir.display());
    }
    Ok(())
}

fn tmp_kept(dir: &Path) -> bool {
    !dir.starts_with(std::env::temp_dir())
}

async fn flow(
    n: &mut Narrator,
    dir: &Path,
    cfg: &HubConfig,
    running: &renkei_hub::app::Running,
    hub_url: &str,
    [source, app, clinic, analyst, points, city, city_b]: [&Member; 7],
) -> anyhow::Result<()> {
    let hub = &running.hub;
    let now = hub.now();

    // 3. Participants
    n.step("Registering the participants and their public keys at the hub.");
    let init = lgwan_agent::agent::init(&source.dir, &source.id)?;
    let log_key = renkei_hub::audit::log::vkey(&hub.log_origin, &hub.signing_key)?;
    setup::attach_hub(&init.config, hub_url, source, &log_key)?;
    // The city's own release list: the agent seals keys for nobody else.
    setup::release_to(
        &init.config,
        &[
            (&app.id.to_string(), "phr-display"),
            (&clinic.id.to_string(), "online-consultation"),
            (&analyst.id.to_string(), "care-prevention-evaluation"),
            (&points.id.to_string(), "health-points"),
            (&city.id.to_string(), "child-health-followup"),
        ],
    )?;
    let agent = Agent::load(&init.config)?;
    renkei_hub::registry::add(
        &hub.db,
        &source.id,
        "City A (LGWAN agent)",
        None,
        Some(&init.enrollment_public_key),
        now,
    )
    .await?;
    let mut grant_keys = Vec::with_capacity(5);
    for (m, name, record_key) in [
        (app, "Asmile PHR app", true),
        (clinic, "MySOS clinic", false),
        (analyst, "Hachioji EBPM analyst", false),
        (points, "Kenko health-point programme", false),
        (city, "City A child-health team", false),
    ] {
        let keys = renkei_client::setup::init_keys(&m.dir.join("keys"), record_key)?;
        setup::client_toml(m, hub_url, record_key)?;
        renkei_hub::registry::add(
            &hub.db,
            &m.id,
            name,
            Some(&keys.grant_public.to_base64()),
            None,
            now,
        )
        .await?;
        // The participant's own statement of its key, signed with its certificate key:
        // sources seal only to keys bound this way.
        client_for(m, hub_url)?
            .publish_signed_keys(Some(&keys.grant_public.to_base64()), None)
            .await?;
        grant_keys.push(RecipientSecretKey::load(&keys.grant_key)?);
        n.say(&format!(
            "{} registered; its key statement is signed with its certificate key",
            m.id
        ));
    }
    let [
        app_key_grant,
        clinic_key_grant,
        analyst_key_grant,
        points_key_grant,
        city_key_grant,
    ]: [RecipientSecretKey; 5] = grant_keys
        .try_into()
        .map_err(|_| anyhow::anyhow!("expected five key-grant keys"))?;
    n.say(&format!("{} registered with its enrollment key", source.id));

    // 4. Synthetic data
    n.step(&format!("Generating a synthetic 特定健診 archive of {PERSONS} persons and a KDB care CSV (no real data)."));
    let input = dir.join("input");
    std::fs::create_dir_all(&input)?;
    let synth = lgwan_agent::synth::SynthOptions {
        persons: PERSONS,
        seed: 2026,
        exam_year: 2026,
        creation_date: "20260701".into(),
        ..Default::default()
    };
    let archive = input.join(synth.archive_name());
    let summary = lgwan_agent::synth::write_archive(&archive, &synth)?;
    let resident = summary
        .identities
        .first()
        .context("the archive has no persons")?
        .clone();
    let kdb = input.join("kdb_care.csv");
    write_kdb_care(&kdb, &resident)?;
    n.say(&format!(
        "{} with {} documents; resident #1 is {} (synthetic)",
        archive.display(),
        summary.documents,
        resident.name
    ));

    // 5. Import
    n.step("The agent parses, minimizes, tokenizes and seals inside the LGWAN segment.");
    let outbox = Outbox::open(&agent.config.outbox).await?;
    let imported = lgwan_agent::import::import(
        &agent,
        &outbox,
        &[archive.clone(), kdb.clone()],
        &mut |_| {},
    )
    .await?;
    ensure!(
        imported.records > 0 && imported.quarantined.is_empty(),
        "import: {imported:?}"
    );
    let mut preview = Vec::new();
    lgwan_agent::preview::preview(
        &agent,
        std::slice::from_ref(&archive),
        &mut preview,
        &mut |_| {},
    )?;
    let preview = String::from_utf8_lossy(&preview);
    for secret in [
        &resident.name,
        &resident.number,
        &resident.birth_date,
        &resident.insurer_number,
    ] {
        ensure!(
            !secret.is_empty() && !preview.contains(secret.as_str()),
            "preview shows an identifier"
        );
    }
    n.say(&format!(
        "{} records sealed into the durable outbox; preview shows no name, number or birth date",
        imported.records
    ));

    // 6. Upload
    n.step("The agent uploads over mTLS (outbound only).");
    let source_client = client_for(source, hub_url)?;
    lgwan_agent::sync::publish_keys(&agent, &source_client).await?;
    let uploaded = lgwan_agent::sync::upload_once(&outbox, &source_client, 500).await?;
    ensure!(
        uploaded == imported.records,
        "uploaded {uploaded} of {} records",
        imported.records
    );
    n.say(&format!(
        "the hub accepted {uploaded} sealed records; it cannot read any of them"
    ));

    // 7. Enrollment
    n.step("The resident links the Asmile app with the one-time code from the city's notice: identifiers and code sealed to the city's enrollment key.");
    let app_client = client_for(app, hub_url)?;
    let identity = Identity {
        insurer_number: resident.insurer_number.clone(),
        symbol: resident.symbol.clone(),
        number: resident.number.clone(),
        birth_date: resident.birth_date.clone(),
        sex: if resident.sex == lgwan_agent::domain::Sex::Female {
            Sex::Female
        } else {
            Sex::Male
        },
        branch: resident.branch.clone(),
    };
    // Inside LGWAN: what `lgwan-agent enrollment-code issue` does for the result notice.
    let issued = lgwan_agent::enroll::code::issue(&agent, &outbox, &identity, hub.now()).await?;
    n.say(&format!(
        "the city printed a one-time enrollment code on the resident's notice (valid until {}); it keeps only its keyed hash",
        issued.expires_at.format("%Y-%m-%d")
    ));
    let claim =
        renkei_client::enroll::Claim::new(identity.clone(), Some(issued.code.grouped().as_str()))?;
    let e =
        renkei_client::enroll::submit(&app_client, &app.id, &source.id, USER_REF, &claim).await?;
    let round =
        lgwan_agent::sync::answer_enrollments_once(&agent, &outbox, &source_client, hub.now())
            .await?;
    ensure!(
        round.answered == 1 && round.linked == 1,
        "the agent answered {} enrollments, linked {}",
        round.answered,
        round.linked
    );
    let e = renkei_client::enroll::wait(
        &app_client,
        &e.id,
        Duration::from_millis(100),
        Duration::from_secs(10),
    )
    .await?;
    let pseudonym = e
        .pseudonym
        .clone()
        .filter(|_| e.status == "linked")
        .context("enrollment was not linked")?;
    // The app remembers how its consents name this user (`renkei-client enroll` does).
    let app_state = StateDir::open(&app.dir.join("state"))?;
    app_state.record_user(&renkei_client::state::EnrolledUser {
        pseudonym: pseudonym.clone(),
        resident: user_resident(&app.id.to_string(), USER_REF),
        source: source.id.to_string(),
    })?;
    n.say(&format!(
        "linked: the app knows the resident as {pseudonym}; the hub never saw the identifiers or the code"
    ));

    // 8. Consent
    n.step("The resident grants Asmile a `phr-display` consent for the checkup results.");
    let checkup: Vec<String> = hub
        .policies()
        .catalog()
        .categories()
        .map(|c| c.name.clone())
        .filter(|c| c.starts_with("checkup."))
        .collect();
    let resident = user_resident(&app.id.to_string(), USER_REF);
    let granted = grant_kept(
        &app_client,
        &app_state,
        GrantBody {
            subject: pseudonym.clone(),
            recipient: app.id.to_string(),
            purpose: "phr-display".into(),
            categories: checkup.clone(),
            data_period: Default::default(),
            valid_from: None,
            valid_until: None,
            method: Method::App,
            evidence: None,
            granted_by: "resident".into(),
            statement: None,
            guardian: None,
        },
        resident.clone(),
        Vec::new(),
    )
    .await?;
    let code = granted
        .receipt
        .revocation_code
        .as_ref()
        .context("receipt has no revocation code")?
        .grouped()?
        .to_string();
    ensure!(
        granted.receipt.signature.is_some(),
        "the receipt is not signed"
    );
    n.say(&format!(
        "consent {} granted; the receipt (signed by the hub) says: revocation code {code}",
        granted.consent.id
    ));

    // 9. Key grants and pull
    n.step("The agent seals each record's key to the app (HPKE); the app pulls and decrypts.");
    let served = lgwan_agent::sync::answer_grants_once(&agent, &source_client).await?;
    let app_data = app.dir.join("data");
    let got = renkei_client::pull::pull(
        &app_client,
        &app.id,
        &app_key_grant,
        &app_state,
        &mut Sink::<std::io::Sink>::Dir(&app_data),
        100,
        None,
    )
    .await?;
    ensure!(
        served > 0 && got.written > 0 && got.rejected.is_empty(),
        "app pull: {got:?}"
    );
    n.say(&format!(
        "{served} key grants sealed; the app decrypted {} FHIR records into {}",
        got.written,
        app_data.display()
    ));

    // 10. App as a source
    n.step("The app publishes the resident's own vitals and medication, sealed with its own key.");
    let app_key = RecordKey::load(&app.dir.join("keys").join("record.key"))?;
    let today = now.date_naive();
    let records = [
        AppRecord {
            subject: pseudonym.clone(),
            category: "phr.vitals".into(),
            effective_date: today,
            document_id: "vitals-0001".into(),
            payload: phr::vitals_bundle(today, &[VitalSign::HeartRate(64.0)]),
        },
        AppRecord {
            subject: pseudonym.clone(),
            category: "phr.medication".into(),
            effective_date: today,
            document_id: "meds-0001".into(),
            payload: phr::medication_bundle(
                today,
                &[Medication {
                    name: "amlodipine 5 mg".into(),
                    dosage: None,
                }],
            ),
        },
    ];
    let published =
        renkei_client::source::publish(&app_client, &app_key, &app.id, &records).await?;
    ensure!(published.accepted == 2, "publish: {published:?}");
    n.say("2 app records accepted");

    // 11. Clinic
    n.step("The resident grants the MySOS clinic a 24-hour `online-consultation` consent.");
    let mut clinic_categories = checkup.clone();
    clinic_categories.extend(["phr.vitals".to_owned(), "phr.medication".to_owned()]);
    grant_kept(
        &app_client,
        &app_state,
        GrantBody {
            subject: pseudonym.clone(),
            recipient: clinic.id.to_string(),
            purpose: "online-consultation".into(),
            categories: clinic_categories,
            data_period: Default::default(),
            valid_from: None,
            valid_until: Some(now + Days::hours(24)),
            method: Method::App,
            evidence: None,
            granted_by: "resident".into(),
            statement: None,
            guardian: None,
        },
        resident.clone(),
        Vec::new(),
    )
    .await?;
    lgwan_agent::sync::answer_grants_once(&agent, &source_client).await?;
    renkei_client::source::serve_grants_once(&app_client, &app_key, &app_state, 100).await?;
    let clinic_client = client_for(clinic, hub_url)?;
    let clinic_seen = pull_categories(&clinic_client, clinic, &clinic_key_grant).await?;
    ensure!(
        clinic_seen.iter().any(|(_, c)| c.starts_with("checkup."))
            && clinic_seen.iter().any(|(_, c)| c.starts_with("phr.")),
        "clinic saw {clinic_seen:?}"
    );
    n.say(&format!(
        "the clinic received {} records: checkup results and the app's records together",
        clinic_seen.len()
    ));

    // 12. Health points
    n.step(
        "The resident lets the Kenko point programme confirm checkup attendance (`health-points`).",
    );
    let attendance = GrantBody {
        subject: pseudonym.clone(),
        recipient: points.id.to_string(),
        purpose: "health-points".into(),
        categories: vec!["checkup.attendance".to_owned()],
        data_period: Default::default(),
        valid_from: None,
        valid_until: None,
        method: Method::App,
        evidence: None,
        granted_by: "resident".into(),
        statement: None,
        guardian: None,
    };
    let more = GrantBody {
        categories: vec!["checkup.attendance".to_owned(), "checkup.body".to_owned()],
        ..attendance.clone()
    };
    grant_kept(
        &app_client,
        &app_state,
        attendance,
        resident.clone(),
        Vec::new(),
    )
    .await?;
    lgwan_agent::sync::answer_grants_once(&agent, &source_client).await?;
    let points_client = client_for(points, hub_url)?;
    let points_seen = pull_categories(&points_client, points, &points_key_grant).await?;
    ensure!(
        !points_seen.is_empty() && points_seen.iter().all(|(_, c)| c == "checkup.attendance"),
        "the point programme saw {points_seen:?}"
    );
    n.say(&format!(
        "the programme received {} attendance record(s): the fiscal year, no result",
        points_seen.len()
    ));
    let refused = grant_kept(&app_client, &app_state, more, resident.clone(), Vec::new()).await;
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains("health-points-attendance-only")),
        "a health-points consent for body measurements was not refused: {refused:?}"
    );
    n.say(
        "a `health-points` consent that also asks for body measurements is refused by the policies",
    );

    // 13. Child-health follow-up
    n.step("A child-health consultation in the app sees a family needing follow-up; they consent to the city's follow-up, and only the city's own agent finds them.");
    let note = AppRecord {
        subject: pseudonym.clone(),
        category: "consult.child-health".into(),
        effective_date: today,
        document_id: "consult-0001".into(),
        payload: phr::child_health_bundle(
            today,
            &phr::ChildHealthNote {
                follow_up: true,
                reason: "育児不安".into(),
                district: "第三地区".into(),
            },
        ),
    };
    let published = renkei_client::source::publish(&app_client, &app_key, &app.id, &[note]).await?;
    ensure!(published.accepted == 1, "publish: {published:?}");
    grant_kept(
        &app_client,
        &app_state,
        GrantBody {
            subject: pseudonym.clone(),
            recipient: city.id.to_string(),
            purpose: "child-health-followup".into(),
            categories: vec!["consult.child-health".to_owned(), "checkup.body".to_owned()],
            data_period: Default::default(),
            valid_from: None,
            valid_until: Some(now + Days::days(365)),
            method: Method::App,
            evidence: None,
            granted_by: "guardian".into(),
            statement: None,
            guardian: Some(renkei_client::api::Guardian::Parent),
        },
        resident,
        Vec::new(),
    )
    .await?;
    lgwan_agent::sync::answer_grants_once(&agent, &source_client).await?;
    renkei_client::source::serve_grants_once(&app_client, &app_key, &app_state, 100).await?;
    let city_client = client_for(city, hub_url)?;
    let city_seen = pull_categories(&city_client, city, &city_key_grant).await?;
    ensure!(
        city_seen.iter().any(|(_, c)| c == "consult.child-health"),
        "the city saw {city_seen:?}"
    );
    let city_pseudonym = city_seen
        .first()
        .map(|(p, _)| p.clone())
        .context("the city received nothing")?;
    n.say(&format!(
        "the city received the consultation note and body measurements under its pseudonym {city_pseudonym}"
    ));
    let found = source_client
        .resolve_pseudonym(&city.id.to_string(), &city_pseudonym)
        .await?;
    let token = renkei_crypto::token::SubjectToken::parse(&found.subject_token)?;
    let (worker, inputs) = (agent.clone(), vec![archive.clone()]);
    let person = tokio::task::spawn_blocking(move || worker.find_subject(&inputs, &token))
        .await?
        .context("the agent found no one behind the city's pseudonym")?;
    ensure!(
        person.0.number == identity.number,
        "the agent found another person"
    );
    n.say("inside LGWAN the city's agent mapped that pseudonym back to resident #1 (`lgwan-agent resolve`); the hub audited the lookup and no one else can make it");

    // 14. Analyst
    n.step("At the city counter, the resident consents to the EBPM evaluation; the analyst joins KDB and PHR data.");
    let analyst_id = analyst.id.to_string();
    let receipt = lgwan_agent::counter::grant(
        &agent,
        &source_client,
        &identity,
        &lgwan_agent::counter::CounterTerms {
            recipient: &analyst_id,
            purpose: "care-prevention-evaluation",
            categories: &[
                "kdb.care".to_owned(),
                "phr.vitals".to_owned(),
                "checkup.glucose".to_owned(),
            ],
            valid_until: Some(now + Days::days(180)),
            staff: "staff-0042",
        },
    )
    .await?;
    ensure!(
        receipt.revocation_code.is_some(),
        "counter receipt without a code"
    );
    lgwan_agent::sync::answer_grants_once(&agent, &source_client).await?;
    renkei_client::source::serve_grants_once(&app_client, &app_key, &app_state, 100).await?;
    let analyst_client = client_for(analyst, hub_url)?;
    let analyst_seen = pull_categories(&analyst_client, analyst, &analyst_key_grant).await?;
    let names: BTreeSet<&String> = analyst_seen.iter().map(|(p, _)| p).collect();
    let cats: BTreeSet<&str> = analyst_seen.iter().map(|(_, c)| c.as_str()).collect();
    ensure!(
        names.len() == 1 && cats.contains("kdb.care") && cats.contains("phr.vitals"),
        "analyst saw {analyst_seen:?}"
    );
    let clinic_names: BTreeSet<&String> = clinic_seen.iter().map(|(p, _)| p).collect();
    ensure!(
        names
            .iter()
            .all(|p| **p != pseudonym && !clinic_names.contains(*p)),
        "pseudonyms are shared between recipients"
    );
    n.say(&format!(
        "KDB care and app vitals of one person under one pseudonym {}: the 名寄せ is done",
        names.iter().next().map_or("", |s| s.as_str())
    ));
    n.say("the app, the clinic and the analyst each know the resident under a different pseudonym");

    // 15. Evaluation across cities
    n.step("Two cities evaluate a walking programme inside LGWAN; the evaluator combines their signed reports.");
    evaluation(n, dir, &agent, city_b, analyst, hub_url, &log_key, now)?;

    // 16. Revocation on the portal
    n.step("The resident revokes the Asmile consent on the portal with the receipt code.");
    let mut browser = portal::Browser::new(running.portal_addr, &source.ca())?;
    let page = browser.open().await?;
    ensure!(
        page.contains("撤回コード"),
        "the portal start page is not in Japanese"
    );
    let (status, page) = browser.post("/view", &[("code", &code)]).await?;
    ensure!(
        status == 200 && page.contains("id=\"history\"") && page.contains(&app.id.to_string()),
        "the portal did not show the consent and history"
    );
    let (status, page) = browser
        .post("/revoke", &[("code", &code), ("reason", "demo")])
        .await?;
    ensure!(
        status == 200 && page.contains("id=\"confirm\""),
        "the portal did not ask to confirm the revocation"
    );
    let (status, page) = browser
        .post(
            "/revoke",
            &[("code", &code), ("reason", "demo"), ("confirm", "yes")],
        )
        .await?;
    ensure!(
        status == 200 && page.contains("id=\"revoked\""),
        "the portal did not revoke"
    );
    n.say("the portal showed this consent and who read what under it (nothing else about the resident), said what revoking stops, and revoked it on confirmation");

    // 17. Denied and acknowledged
    n.step("Asmile's next read is denied; it receives the revocation event, deletes its copies and acknowledges.");
    let some = std::fs::read_dir(&app_data)?
        .next()
        .context("no pulled data")??
        .path();
    let record_id = std::fs::read_dir(&some)?
        .next()
        .context("no pulled file")??
        .path();
    let record_id = record_id
        .file_stem()
        .and_then(|s| s.to_str())
        .context("file name")?
        .to_owned();
    match app_client.read_record(&record_id).await {
        Ok(_) => bail!("the app could still read {record_id} after the revocation"),
        Err(e) => n.say(&format!("read of {record_id}: {e}")),
    }
    let handled = renkei_client::events::handle_events(&app_client, &app_state).await?;
    let revoked = handled
        .iter()
        .find(|h| h.event.kind == "consent.revoked")
        .context("no consent.revoked event")?;
    ensure!(
        revoked.acknowledged && revoked.deleted_files > 0,
        "event handling: {handled:?}"
    );
    n.say(&format!(
        "consent.revoked acknowledged; {} local files deleted",
        revoked.deleted_files
    ));

    // 18. Audit
    n.step("Verifying the audit chain and the consent ledger.");
    renkei_hub::audit::checkpoint_as(&hub.db, &hub.signing_key, &hub.log_origin, hub.now()).await?;
    let report = renkei_hub::audit::verify(&hub.db, &[hub.signing_key.verifying_key()], None)
        .await?
        .map_err(|b| anyhow::anyhow!("audit chain broken: {b}"))?;
    lgwan_agent::sync::keep_checkpoint(&outbox, &source_client, None).await?;
    // Two witnesses: the agent (its pinned log key, its own cosigning key) and the app.
    renkei_hub::audit::checkpoint_as(&hub.db, &hub.signing_key, &hub.log_origin, hub.now()).await?;
    let witnessed =
        lgwan_agent::witness::witness_hub(&agent.config, &outbox, &source_client, hub.now())
            .await?;
    anyhow::ensure!(
        matches!(
            witnessed,
            lgwan_agent::witness::Witnessed::Accepted {
                cosign_error: None,
                ..
            }
        ),
        "the agent did not witness the log: {witnessed:?}"
    );
    let pinned = renkei_crypto::tlog::note::NoteVerifier::parse(&log_key)?;
    let app_witness_key =
        renkei_crypto::sign::SigningKey::generate(renkei_crypto::keys::KeyVersion::V1);
    let app_name = format!("renkei-witness/{}", app.id);
    let app_witness = renkei_client::witness::Witness {
        log: &pinned,
        name: &app_name,
        key: &app_witness_key,
    };
    match app_witness.contact(&app_client, None, hub.now()).await? {
        renkei_client::witness::Outcome::Accepted {
            cosigned: Ok(_), ..
        } => {}
        other => anyhow::bail!("the app did not witness the log: {other:?}"),
    }
    let log_report = renkei_hub::audit::log::verify(
        &hub.db,
        &hub.log_origin,
        &[hub.signing_key.verifying_key()],
        &[],
        2,
    )
    .await?
    .map_err(|b| anyhow::anyhow!("transparency log broken: {b}"))?;
    n.say(&format!(
        "transparency log: {} leaves, {} signed checkpoint note(s), {} cosignature(s) by {} witnesses (the agent and the app); {} checkpoint(s) not yet cosigned by both",
        log_report.leaves,
        log_report.notes,
        log_report.cosignatures,
        log_report.witnesses,
        log_report.unwitnessed.len()
    ));
    let ledger = renkei_consent::ConsentStore::verify_chain(&hub.consents, None).await?;
    n.say(&format!(
        "audit log: {} entries, {} signed checkpoint(s), head {}",
        report.entries,
        report.checkpoints,
        &report.head[..16.min(report.head.len())]
    ));
    n.say(&format!(
        "consent ledger: {} entries verified; the agent keeps the latest checkpoint as a witness",
        ledger.entries
    ));
    let _ = cfg;
    Ok(())
}

/// Pulls everything for a recipient into its data folder; returns (pseudonym, category) pairs.
async fn pull_categories(
    client: &HubClient,
    m: &Member,
    key: &RecipientSecretKey,
) -> anyhow::Result<Vec<(String, String)>> {
    let state = StateDir::open(&m.dir.join("state"))?;
    let mut out = Vec::new();
    let mut lines = Vec::new();
    renkei_client::pull::pull(
        client,
        &m.id,
        key,
        &state,
        &mut Sink::Lines(&mut lines),
        100,
        None,
    )
    .await?;
    for line in String::from_utf8_lossy(&lines).lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        out.push((
            v.get("pseudonym")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            v.get("category")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    Ok(out)
}

/// A KDB care export row for the resident (UTF-8, the bundled mapping's columns).
fn write_kdb_care(path: &Path, p: &lgwan_agent::synth::SynthPerson) -> anyhow::Result<()> {
    let birth = p.birth_date.replace('-', "/");
    let sex = if p.sex == lgwan_agent::domain::Sex::Female {
        "女"
    } else {
        "男"
    };
    let text = format!(
        "保険者番号,被保険者証記号,被保険者証番号,枝番,氏名,生年月日,性別,認定日,要介護度,介護給付費\n\
         {},{},{},{},{},{birth},{sex},20260401,要支援1,120000\n",
        p.insurer_number,
        p.symbol,
        p.number,
        p.branch.clone().unwrap_or_default(),
        p.name
    );
    std::fs::write(path, text).with_context(|| format!("writing `{}`", path.display()))
}

/// The evaluation step: each city's agent computes the programme's statistics from its
/// own KDB file and roster (city A has a stratum of 4 participants), signs the report
/// with its certificate, and the analyst checks and combines both.
#[allow(clippy::too_many_arguments)]
fn evaluation(
    n: &mut Narrator,
    dir: &Path,
    agent_a: &lgwan_agent::agent::Agent,
    city_b: &Member,
    analyst: &Member,
    hub_url: &str,
    log_key: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    use lgwan_agent::evaluate::{Program, SignedReport, evaluate};
    use lgwan_agent::synth::{SynthStratum, write_evaluation_inputs};
    let stratum = |sex, birth_year, persons, participants| SynthStratum {
        sex,
        birth_year,
        persons,
        participants,
    };
    let init = lgwan_agent::agent::init(&city_b.dir, &city_b.id)?;
    setup::attach_hub(&init.config, hub_url, city_b, log_key)?;
    let agent_b = lgwan_agent::agent::Agent::load(&init.config)?;
    let mut reports = Vec::new();
    for (name, agent, member_dir, insurer, strata) in [
        (
            "city A",
            agent_a,
            dir.join("agent"),
            "01130012",
            vec![
                stratum(1, 1970, 30, 15),
                stratum(2, 1970, 30, 15),
                stratum(1, 1955, 24, 12),
                stratum(2, 1955, 24, 4),
            ],
        ),
        (
            "city B",
            &agent_b,
            city_b.dir.clone(),
            "01131234",
            vec![
                stratum(1, 1970, 25, 12),
                stratum(2, 1970, 28, 14),
                stratum(1, 1955, 22, 11),
                stratum(2, 1955, 26, 13),
            ],
        ),
    ] {
        let eval_dir = member_dir.join("evaluation");
        let (kdb, _) = write_evaluation_inputs(&eval_dir, insurer, &strata)?;
        let program_file = eval_dir.join("program.toml");
        std::fs::write(
            &program_file,
            format!(
                "name = \"walking-sib\"\nevaluator = \"{}\"\nbaseline_year = 2024\nyears = [2024, 2025]\n\
                 age_bands = [40, 65, 75]\nroster = \"participants.csv\"\n\n[[measures]]\n\
                 name = \"medical_cost\"\ntable = \"kdb-medical-cost\"\ncode = \"total-cost\"\n",
                analyst.id
            ),
        )?;
        let program = Program::load(&program_file)?;
        let (report, summary) = evaluate(agent, &program, &[kdb])?;
        let hub = agent
            .config
            .hub
            .as_ref()
            .context("the agent has no certificate to sign with")?;
        let signed = SignedReport::sign(report, &hub.cert, &hub.key, now)?;
        let path = eval_dir.join("report.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&signed)?)?;
        n.say(&format!(
            "{name}: {} persons, {} on the roster; {} cells suppressed (fewer than {} persons, or to protect one); report signed by {}",
            summary.population,
            summary.participants,
            summary.suppressed,
            program.threshold,
            signed.signature.signer
        ));
        reports.push(path);
    }
    let out = dir.join("evaluation");
    let written =
        renkei_client::evaluation::combine(&reports, &analyst.id, &analyst.ca(), &out, now)?;
    let combined: serde_json::Value = serde_json::from_slice(&std::fs::read(&written.json)?)?;
    let null = serde_json::Value::Null;
    let field = |r: &'_ serde_json::Value, k: &str| r.get(k).unwrap_or(&null).clone();
    let rows: Vec<serde_json::Value> = combined
        .get("rows")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let small = rows
        .iter()
        .filter(|r| {
            field(r, "sex") == "female"
                && field(r, "age_band") == "65-74"
                && field(r, "group") == "participants"
        })
        .all(|r| field(r, "source") == "source:city-b" || field(r, "suppressed") == true);
    ensure!(small, "city A's small stratum was published somewhere");
    let kpi = rows
        .iter()
        .find(|r| {
            field(r, "source") == "all"
                && field(r, "year") == 2025
                && field(r, "sex") == "all"
                && field(r, "group") == "participants"
        })
        .and_then(|r| r.get("stats").and_then(|s| s.get("mean")))
        .and_then(serde_json::Value::as_f64)
        .context("no pooled participants' mean")?;
    n.say(&format!(
        "the analyst checked both signatures and pooled the cities: participants' mean medical cost in FY2025 {kpi} yen; city A's 4-participant stratum is suppressed in its report and in the pooled table ({} pooled cells suppressed)",
        written.suppressed
    ));
    n.say(&format!(
        "table and chart: {}, {}, {}",
        written.json.display(),
        written.csv.display(),
        written.svg.display()
    ));
    Ok(())
}
