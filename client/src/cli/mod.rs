//! The `renkei-client` command line: dispatch of the parsed arguments (see `args`) onto the
//! library. Results go to standard output as JSON; progress goes to standard error.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use renkei_crypto::consent_statement::user_resident;
use renkei_crypto::grant::GrantOpener;
use renkei_crypto::identity::Identity;

use crate::api::{DataPeriod, GrantBody};
use crate::config::Settings;
use crate::error::{Error, Result, shorten};
use crate::pull::{Sink, open_item, pull};
use crate::source::{AppRecord, publish, serve_grants_once};
use crate::state::{EnrolledUser, StateDir};
use crate::transport::HubClient;
use crate::{enroll, events, setup};

mod args;

pub use args::{Cli, Command, ConsentCommand, EvaluationCommand};

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Error::invalid("output", e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(Error::io("<stdin>"))?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(Error::io(path))
    }
}

/// Runs a parsed command line; `now` is the wall clock read by the binary.
pub async fn run(cli: Cli, now: DateTime<Utc>) -> Result<ExitCode> {
    if let Command::InitKeys { dir, record_key } = &cli.command {
        let made = setup::init_keys(dir, *record_key)?;
        eprintln!(
            "wrote `{}` (mode 0600) and `grant.pub`",
            made.grant_key.display()
        );
        if let Some(rk) = &made.record_key {
            eprintln!("wrote `{}` (mode 0600)", rk.display());
        }
        println!("{}", made.grant_public);
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::VerifyProof { file, log_key } = &cli.command {
        let verified = crate::proof::verify(&read_input(file)?, log_key)?;
        print_json(&verified)?;
        return Ok(ExitCode::SUCCESS);
    }
    let settings = Settings::load(&cli.config)?;
    let client = HubClient::new(settings.client_config())?;
    let me = settings.participant.clone();
    // The configuration and the certificate must name the same participant: grants are
    // opened, consents signed and files named under `me`, the hub knows the certificate.
    if client.participant()? != &me {
        return Err(Error::invalid(
            format!("`participant` in `{}`", cli.config.display()),
            format!(
                "is `{me}`, but the client certificate is `{}`'s",
                client.participant()?
            ),
        ));
    }
    match cli.command {
        Command::InitKeys { .. } | Command::VerifyProof { .. } => Ok(ExitCode::SUCCESS),
        Command::PublishKeys => {
            let public = setup::load_grant_key(&settings)?.public_key().to_base64();
            print_json(&client.publish_signed_keys(Some(&public), None).await?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Pull {
            out,
            page_size,
            max_pages,
        } => {
            let key = setup::load_grant_key(&settings)?;
            let state = StateDir::open(&settings.state_dir)?;
            // Each contact witnesses the hub's log first (when a log key is pinned).
            #[expect(
                clippy::disallowed_methods,
                reason = "the CLI's edge reads the wall clock once for the cosignature time"
            )]
            let now = chrono::Utc::now();
            match crate::witness::contact_from_state(&client, &settings, &state, now).await? {
                Some(crate::witness::Outcome::Alarm(reason)) => {
                    eprintln!(
                        "ALARM: the hub's transparency log is inconsistent: {reason}\nnothing is pulled; after checking the hub, delete `{}`",
                        state.path().join(crate::witness::ALARM).display()
                    );
                    return Ok(ExitCode::from(4));
                }
                Some(crate::witness::Outcome::Accepted { seen, cosigned }) => {
                    eprintln!("witnessed the hub's log at {} entries", seen.size);
                    if let Err(e) = cosigned {
                        eprintln!("cosignature not delivered: {e}");
                    }
                }
                None => {}
            }
            republish_revocations(&client, &state).await;
            let mut stdout = std::io::stdout().lock();
            let mut sink = if out == Path::new("-") {
                Sink::Lines(&mut stdout)
            } else {
                Sink::Dir(&out)
            };
            let report = pull(&client, &me, &key, &state, &mut sink, page_size, max_pages).await?;
            eprintln!(
                "pulled {} record(s) in {} page(s); cursor {}",
                report.written, report.pages, report.cursor
            );
            for r in &report.rejected {
                eprintln!(
                    "refused {} (seq {}): {}",
                    shorten(&r.record_id),
                    r.seq,
                    shorten(&r.reason)
                );
            }
            Ok(if report.rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Events => {
            let state = StateDir::open(&settings.state_dir)?;
            let handled = events::handle_events(&client, &state).await?;
            for h in &handled {
                eprintln!(
                    "event {} {} consent {}: {} file(s) deleted, {}",
                    h.event.id,
                    shorten(&h.event.kind),
                    shorten(&h.event.consent_id),
                    h.deleted_files,
                    if h.acknowledged {
                        "acknowledged"
                    } else {
                        "left unacknowledged (unknown kind)"
                    }
                );
            }
            eprintln!("{} event(s) handled", handled.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Get { record_id, out } => {
            let key = setup::load_grant_key(&settings)?;
            let item = client.read_record(&record_id).await?;
            let record = open_item(&item, &GrantOpener::new(&key, &me.to_string()))?;
            match out {
                Some(dir) => {
                    let state = StateDir::open(&settings.state_dir)?;
                    let written = Sink::<std::io::Stdout>::Dir(&dir).write(&record)?;
                    state.record_written(&written.into_iter().collect::<Vec<_>>())?;
                }
                None => {
                    let mut stdout = std::io::stdout().lock();
                    std::io::Write::write_all(&mut stdout, &record.payload)
                        .and_then(|()| std::io::Write::write_all(&mut stdout, b"\n"))
                        .map_err(Error::io("<stdout>"))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Enroll {
            source,
            user_ref,
            identity,
            code,
            wait,
        } => {
            let text = read_input(&identity)?;
            let identity: Identity = serde_json::from_slice(&text).map_err(|e| {
                Error::invalid(
                    format!("identity file `{}`", identity.display()),
                    e.to_string(),
                )
            })?;
            let claim = enroll::Claim::new(identity, code.as_deref())?;
            let submitted = enroll::submit(&client, &me, &source, &user_ref, &claim).await?;
            eprintln!(
                "enrollment {} submitted; waiting up to {wait} s",
                submitted.id
            );
            let last = enroll::wait(
                &client,
                &submitted.id,
                Duration::from_secs(1),
                Duration::from_secs(wait),
            )
            .await?;
            if let (true, Some(pseudonym)) = (last.status == "linked", &last.pseudonym) {
                StateDir::open(&settings.state_dir)?.record_user(&EnrolledUser {
                    pseudonym: pseudonym.clone(),
                    resident: user_resident(&me.to_string(), &user_ref),
                    source: source.to_string(),
                })?;
            }
            print_json(&last)?;
            Ok(if last.status == "linked" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::EnrollStatus { id } => {
            print_json(&client.get_enrollment(&id).await?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Consent(ConsentCommand::Grant {
            subject,
            recipient,
            purpose,
            categories,
            from,
            until,
            valid_hours,
            method,
            granted_by,
            evidence,
            guardian,
            user_ref,
        }) => {
            let resident = if subject.starts_with("st1_") {
                subject.clone()
            } else if let Some(user_ref) = &user_ref {
                user_resident(&me.to_string(), user_ref)
            } else {
                StateDir::open(&settings.state_dir)?
                    .user_of(&subject)
                    .map_err(|e| {
                        Error::invalid(
                            "--subject",
                            format!("{e}: pass --user-ref to name the user this consent is for"),
                        )
                    })?
                    .map(|u| u.resident)
                    .ok_or_else(|| {
                        Error::invalid(
                            "--subject",
                            format!(
                                "`{}` was not enrolled from this state folder: pass \
                                 --user-ref with the reference it was enrolled under",
                                crate::error::shorten(&subject)
                            ),
                        )
                    })?
            };
            let body = GrantBody {
                subject,
                recipient: recipient.to_string(),
                purpose,
                categories,
                data_period: DataPeriod { from, until },
                valid_from: valid_hours.map(|_| now),
                valid_until: valid_hours.map(|h| now + chrono::Duration::hours(i64::from(h))),
                method,
                evidence,
                granted_by,
                statement: None,
                guardian,
            };
            let state = StateDir::open(&settings.state_dir)?;
            let granted =
                crate::consent::grant_kept(&client, &state, body, resident, Vec::new()).await?;
            print_json(&granted)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Consent(ConsentCommand::Revoke { id, reason }) => {
            let state = StateDir::open(&settings.state_dir)?;
            let (revoked, named) =
                crate::consent::revoke_kept(&client, &state, &id, &reason).await?;
            if named == 0 {
                eprintln!(
                    "renkei-client: consent `{}` was not signed from this state folder: \
                     revoked at the hub only, no revocation list names it",
                    crate::error::shorten(&id)
                );
            }
            print_json(&revoked)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Consent(ConsentCommand::PublishRevocations) => {
            let state = StateDir::open(&settings.state_dir)?;
            let list = crate::consent::publish_revocations(&client, &state).await?;
            println!(
                "revocation list published: {} statements, issued {}",
                list.revoked.len(),
                list.issued_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Introduce {
            subject,
            clinic,
            out,
        } => {
            let state = StateDir::open(&settings.state_dir)?;
            let user = state.user_of(&subject)?.ok_or_else(|| {
                Error::invalid(
                    "--subject",
                    "no user of this app is enrolled as this pseudonym",
                )
            })?;
            let clinic: renkei_crypto::participant::ParticipantId = clinic
                .parse()
                .map_err(Error::crypto("--clinic".to_owned()))?;
            if clinic.kind() != renkei_crypto::participant::ParticipantKind::Clinic {
                return Err(Error::invalid("--clinic", "not a `clinic:` participant"));
            }
            let intro = renkei_protocol::introduction::Introduction::sign(
                &settings.cert,
                &settings.key,
                &user.resident,
                &clinic.to_string(),
                now,
            )
            .map_err(Error::crypto("introduction".to_owned()))?;
            let json = serde_json::to_vec_pretty(&intro)
                .map_err(|e| Error::invalid("introduction", e.to_string()))?;
            std::fs::write(&out, json)
                .map_err(|e| Error::invalid(format!("`{}`", out.display()), e.to_string()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Publish {
            subject,
            category,
            date,
            document_id,
            introduction,
            files,
        } => {
            let key = setup::load_record_key(&settings)?;
            // A clinic publishes only for a patient an app introduced: the records are
            // bound to that app's user, whose consents alone release them.
            match (me.kind(), introduction) {
                (renkei_crypto::participant::ParticipantKind::Clinic, Some(file)) => {
                    let intro: renkei_protocol::introduction::Introduction =
                        serde_json::from_slice(&read_input(&file)?).map_err(|e| {
                            Error::invalid(format!("`{}`", file.display()), e.to_string())
                        })?;
                    let introduced = intro.verify(&me, &settings.ca, now).map_err(|why| {
                        Error::invalid(format!("introduction `{}`", file.display()), why)
                    })?;
                    StateDir::open(&settings.state_dir)?.record_user(
                        &crate::state::EnrolledUser {
                            pseudonym: subject.clone(),
                            resident: introduced.resident,
                            source: introduced.app.to_string(),
                        },
                    )?;
                }
                (renkei_crypto::participant::ParticipantKind::Clinic, None) => {
                    return Err(Error::invalid(
                        "--introduction",
                        "a clinic publishes only for a patient an app introduced",
                    ));
                }
                (_, Some(_)) => {
                    return Err(Error::invalid("--introduction", "only a clinic gives one"));
                }
                _ => {}
            }
            if document_id.is_some() && files.len() != 1 {
                return Err(Error::invalid(
                    "--document-id",
                    "names one document: give exactly one file",
                ));
            }
            let mut records = Vec::with_capacity(files.len());
            for file in &files {
                let stem = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                records.push(AppRecord {
                    subject: subject.clone(),
                    category: category.clone(),
                    effective_date: date,
                    document_id: document_id
                        .clone()
                        .unwrap_or_else(|| format!("{subject}/{category}/{stem}")),
                    payload: read_input(file)?,
                });
            }
            print_json(&publish(&client, &key, &me, &records).await?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ServeGrants { once, interval } => {
            let key = setup::load_record_key(&settings)?;
            let users = StateDir::open(&settings.state_dir)?;
            let mut published: Option<tokio::time::Instant> = None;
            loop {
                if published.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    republish_revocations(&client, &users).await;
                    published = Some(tokio::time::Instant::now());
                }
                let report = serve_grants_once(&client, &key, &users, 100).await?;
                if report.requests > 0 {
                    eprintln!(
                        "{} request(s): {} grant(s) stored, {} dropped, {} refused",
                        report.requests,
                        report.uploaded.stored,
                        report.uploaded.dropped.len(),
                        report.refused.len()
                    );
                    for r in report.refused.iter().chain(&report.uploaded.dropped) {
                        eprintln!("  {}", shorten(r));
                    }
                }
                if once {
                    return Ok(ExitCode::SUCCESS);
                }
                if report.requests == 0 {
                    tokio::time::sleep(Duration::from_secs(interval.max(1))).await;
                }
            }
        }
        Command::Checkpoint => {
            print_json(&client.audit_checkpoint().await?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Evaluation(EvaluationCommand::Pull { out }) => {
            let key = setup::load_grant_key(&settings)?;
            let files =
                crate::evaluation::collect(&client, &key, &me, &settings.ca, &out, now).await?;
            print_json(&files)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Evaluation(EvaluationCommand::Combine { reports, out }) => {
            let written = crate::evaluation::combine(&reports, &me, &settings.ca, &out, now)?;
            print_json(&written)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// On each contact, a participant that signs consents publishes a fresh revocation list,
/// so that sources keep releasing under its consents (a failure is reported, not fatal:
/// the records still come).
async fn republish_revocations(client: &HubClient, state: &StateDir) {
    match state.signs_consents() {
        Ok(false) => {}
        Ok(true) => {
            if let Err(e) = crate::consent::publish_revocations(client, state).await {
                eprintln!("renkei-client: revocation list not published: {e}");
            }
        }
        Err(e) => eprintln!("renkei-client: revocation list not published: {e}"),
    }
}
