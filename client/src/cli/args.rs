//! The command-line arguments of `renkei-client` (clap definitions).

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use renkei_crypto::participant::ParticipantId;

use crate::api::{Guardian, Method};

/// Renkei participant client: pull and decrypt records, handle revocations, enroll
/// residents, grant and revoke consents, and publish a PHR app's own records.
#[derive(Debug, Parser)]
#[command(name = "renkei-client", version)]
pub struct Cli {
    /// The client configuration file.
    #[arg(long, short, global = true, default_value = "client.toml")]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a resident's audit-entry proof file offline against the hub's log key
    /// (needs no configuration and no network).
    VerifyProof {
        /// The proof file (`-` for standard input).
        file: PathBuf,
        /// The hub's log key, as `internet-hub audit key` prints it.
        #[arg(long)]
        log_key: String,
    },
    /// Make the X25519 key-grant key pair (0600) in DIR and print the public key.
    InitKeys {
        /// Folder for `grant.key` and `grant.pub`.
        #[arg(long)]
        dir: PathBuf,
        /// Also make `record.key` (a PHR app publishing its own records).
        #[arg(long)]
        record_key: bool,
    },
    /// Publish this participant's key-grant public key on the hub.
    PublishKeys,
    /// Follow the feed: decrypt new records into OUT/PSEUDONYM/RECORD_ID.json.
    Pull {
        /// Output folder, or `-` for JSON lines on standard output.
        #[arg(long)]
        out: PathBuf,
        /// Items per feed page.
        #[arg(long, default_value_t = 100)]
        page_size: u32,
        /// Stop after this many pages.
        #[arg(long)]
        max_pages: Option<usize>,
    },
    /// Handle revocation and expiry events: delete local copies, acknowledge.
    Events,
    /// Read and decrypt one record (to standard output, or into OUT).
    Get {
        /// The record id.
        record_id: String,
        /// Output folder (indexed like `pull`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Enroll a resident: seal the identifiers (a JSON file) to a source and submit.
    Enroll {
        /// The source, `source:<id>`.
        #[arg(long)]
        source: ParticipantId,
        /// The app's reference for the user.
        #[arg(long)]
        user_ref: String,
        /// JSON file with insurer_number, symbol, number, birth_date, sex, branch (or `-`).
        #[arg(long)]
        identity: PathBuf,
        /// The one-time enrollment code from the resident's municipal notice or counter
        /// (sealed with the identifiers; most sources require one).
        #[arg(long)]
        code: Option<String>,
        /// Wait this many seconds for the source's answer.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Show an enrollment.
    EnrollStatus {
        /// The enrollment id.
        id: String,
    },
    /// Grant or revoke a consent.
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Seal the app's own FHIR JSON files and upload them (PHR app as a source), or a
    /// clinic's vaccination records for a patient an app introduced.
    Publish {
        /// The resident, by this participant's pseudonym `rp1_…`.
        #[arg(long)]
        subject: String,
        /// `phr.vitals`, `phr.medication`, `consult.child-health` (an app) or
        /// `immunization.record` (a clinic).
        #[arg(long)]
        category: String,
        /// A clinic: the app's signed introduction of this patient (`introduce`).
        #[arg(long)]
        introduction: Option<PathBuf>,
        /// Effective date, YYYY-MM-DD.
        #[arg(long)]
        date: NaiveDate,
        /// Document id (one file only); default `<subject>/<category>/<file stem>`.
        #[arg(long)]
        document_id: Option<String>,
        /// FHIR JSON files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// An app introduces its user to a clinic (handed over outside the hub, during the
    /// consultation): the clinic can then publish vaccination records that only this
    /// app's consents for that user release.
    Introduce {
        /// The user, by the app's pseudonym `rp1_…`.
        #[arg(long)]
        subject: String,
        /// The clinic, `clinic:<id>`.
        #[arg(long)]
        clinic: String,
        /// Where to write the introduction (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Answer key-grant requests for the app's own records.
    ServeGrants {
        /// One round, then exit.
        #[arg(long)]
        once: bool,
        /// Seconds between rounds.
        #[arg(long, default_value_t = 5)]
        interval: u64,
    },
    /// Print the hub's latest signed audit checkpoint.
    Checkpoint,
    /// Evaluation reports of sources (`lgwan-agent evaluate`), for an evaluator.
    #[command(subcommand)]
    Evaluation(EvaluationCommand),
}

/// `evaluation` subcommands.
#[derive(Debug, Subcommand)]
pub enum EvaluationCommand {
    /// Check each report's signature (a source's, for this participant), combine them
    /// into one table with suppression kept valid, and chart the measures by city and
    /// year: writes combined.json, combined.csv and kpi.svg into `--out`.
    Combine {
        /// The signed reports.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// The folder to write into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Collect the reports sources delivered to this participant through the hub: each
    /// is opened, its signature checked, and written to `--out` as `<id>.json`.
    Pull {
        /// The folder to write into.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `consent` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Grant a consent; prints the consent and the resident's receipt.
    Grant {
        /// The resident (`rp1_…` for an app, `st1_…` for a source).
        #[arg(long)]
        subject: String,
        /// Recipient `kind:id`.
        #[arg(long)]
        recipient: ParticipantId,
        /// Purpose code.
        #[arg(long)]
        purpose: String,
        /// Category (repeat for several).
        #[arg(long = "category", required = true)]
        categories: Vec<String>,
        /// First effective date covered.
        #[arg(long)]
        from: Option<NaiveDate>,
        /// Last effective date covered.
        #[arg(long)]
        until: Option<NaiveDate>,
        /// Validity in hours from now (else until revoked, where policy allows).
        #[arg(long)]
        valid_hours: Option<u32>,
        /// `counter`, `web` or `app`.
        #[arg(long, default_value = "app", value_parser = parse_method)]
        method: Method,
        /// Who granted it.
        #[arg(long)]
        granted_by: String,
        /// Evidence, e.g. the SHA-256 of a signed form.
        #[arg(long)]
        evidence: Option<String>,
        /// A guardian consents for a child (the subject): `parent` or `legal-guardian`.
        #[arg(long, value_parser = parse_guardian)]
        guardian: Option<Guardian>,
        /// An app's reference for the user, as given to `enroll` (default: the one
        /// `enroll` remembered for `--subject` in the state folder).
        #[arg(long)]
        user_ref: Option<String>,
    },
    /// Revoke a consent by id (one signed from this state folder is also named in this
    /// participant's signed revocation list, which is published again).
    Revoke {
        /// The consent id.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Sign and publish this participant's revocation list again. Sources release under
    /// its consents only while the list is fresh (`revocation_list_max_age_secs` in the
    /// agent's configuration, default one hour): run it from a timer at least that often.
    PublishRevocations,
}

fn parse_method(s: &str) -> std::result::Result<Method, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("`{s}` is not one of counter, web, app"))
}

fn parse_guardian(s: &str) -> std::result::Result<Guardian, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("`{s}` is not one of parent, legal-guardian"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    #[test]
    fn command_line_is_consistent_and_parses() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "renkei-client",
            "-c",
            "x.toml",
            "consent",
            "grant",
            "--subject",
            "rp1_x",
            "--recipient",
            "clinic:mysos",
            "--purpose",
            "online-consultation",
            "--category",
            "checkup.lipids",
            "--category",
            "phr.vitals",
            "--valid-hours",
            "24",
            "--granted-by",
            "resident",
        ])
        .unwrap();
        assert_eq!(cli.config, Path::new("x.toml"));
        match cli.command {
            Command::Consent(ConsentCommand::Grant {
                categories,
                method,
                valid_hours,
                ..
            }) => {
                assert_eq!(categories.len(), 2);
                assert_eq!(method, Method::App);
                assert_eq!(valid_hours, Some(24));
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["renkei-client", "enroll", "--source", "bogus"]).is_err());
        assert!(
            Cli::try_parse_from(["renkei-client", "consent", "grant", "--method", "fax"]).is_err()
        );
    }
}
