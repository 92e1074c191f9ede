//! Evaluation reports (issue 19): a programme's statistics that a source computed inside
//! LGWAN (`lgwan-agent evaluate`), signed with the source's certificate key, for the
//! evaluator that combines several sources' reports (`renkei-client evaluation
//! combine`). A report holds no person: every cell is a count of persons and their
//! statistics, or suppressed.
//!
//! Signed bytes: the line `renkei evaluation report v1`, the signer (`kind:id`), the
//! signing time (RFC 3339, microseconds, UTC), each on its own line, then the report
//! as compact JSON (the field order of these types; numbers as `serde_json` writes them,
//! which reads back to the same bytes).

pub mod suppress;

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use renkei_crypto::participant::ParticipantId;
use renkei_crypto::statement::Signed;
use serde::{Deserialize, Serialize};

/// The purpose a report travels under: it holds no individual data, so no resident's
/// consent; the policies let only analysts receive it (`policies/analyst.cedar`).
pub const PURPOSE: &str = "program-evaluation";
/// The catalog category of a delivered report.
pub const CATEGORY: &str = "evaluation.aggregate";

/// `POST /v1/evaluation/reports` (a source): a signed report sealed to its evaluator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverBody {
    /// The evaluator, an `analyst:<id>` participant.
    pub recipient: String,
    /// [`PURPOSE`].
    pub purpose: String,
    /// The [`SignedReport`] JSON sealed with [`seal_report`], base64.
    pub sealed: String,
}

/// What the hub answers a delivery: the report's id (a digest of the sealed bytes, so a
/// delivery made twice is stored once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivered {
    /// The report's id.
    pub id: String,
}

/// One report delivered to the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveredReport {
    /// The report's id.
    pub id: String,
    /// The source that delivered it.
    pub source: String,
    /// The sealed report, base64.
    pub sealed: String,
    /// When the hub took it.
    pub delivered_at: DateTime<Utc>,
}

/// `GET /v1/evaluation/reports[?after=…]` (an analyst): one page of the reports
/// delivered to the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveredList {
    /// Oldest first, at most [`PAGE_REPORTS`].
    pub reports: Vec<DeliveredReport>,
    /// Where the next page starts (`after=` it), when there may be more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Most reports one page of [`DeliveredList`] holds (each is at most 4 MiB).
pub const PAGE_REPORTS: usize = 8;

/// The HPKE `info` of a report sealed by `source` for `recipient`.
fn seal_info(source: &str, recipient: &str) -> Vec<u8> {
    format!("renkei evaluation report v1\n{source}\n{recipient}").into_bytes()
}

/// Seals `report` (its JSON) to the recipient's key-grant key, bound to both ids.
pub fn seal_report(
    report: &SignedReport,
    recipient: &str,
    recipient_key: &renkei_crypto::grant::RecipientPublicKey,
) -> Result<Vec<u8>, ReportError> {
    let json = serde_json::to_vec(report)
        .map_err(|e| ReportError::Invalid(format!("the report cannot be written: {e}")))?;
    let info = seal_info(&report.report.source, recipient);
    Ok(renkei_crypto::grant::hpke_seal(
        recipient_key,
        &info,
        &[],
        &json,
    )?)
}

/// Opens a report `source` sealed for `recipient` (this participant, holding `key`).
pub fn open_report(
    sealed: &[u8],
    source: &str,
    recipient: &str,
    key: &renkei_crypto::grant::RecipientSecretKey,
) -> Result<SignedReport, ReportError> {
    let json = renkei_crypto::grant::hpke_open(key, &seal_info(source, recipient), &[], sealed)?;
    serde_json::from_slice(&json)
        .map_err(|e| ReportError::Invalid(format!("not a signed report: {e}")))
}

/// The report format this module reads and writes.
pub const FORMAT: &str = "renkei-evaluation/1";

/// What a published cell says of its values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// The mean.
    pub mean: f64,
    /// The median (absent where cells of several sources were pooled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median: Option<f64>,
    /// The sample standard deviation.
    pub sd: f64,
    /// The 95% confidence interval of the mean.
    pub ci95: [f64; 2],
}

/// A cell of the report: one year, measure, stratum and group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    /// The fiscal year.
    pub year: i32,
    /// The measure.
    pub measure: String,
    /// `male`, `female`, or `all`.
    pub sex: String,
    /// The age band (`40-64`, `75+`), or `all`.
    pub age_band: String,
    /// `participants` or `others`.
    pub group: String,
    /// Persons counted; `null` when suppressed.
    pub n: Option<usize>,
    /// Whether the cell publishes nothing.
    pub suppressed: bool,
    /// The statistics, absent when suppressed (or for fewer than two persons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Summary>,
}

/// The difference between the groups' means in one stratum and year.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Difference {
    /// The fiscal year.
    pub year: i32,
    /// The measure.
    pub measure: String,
    /// `male`, `female`, or `all`.
    pub sex: String,
    /// The age band, or `all`.
    pub age_band: String,
    /// Whether it is withheld (one of its cells is suppressed).
    pub suppressed: bool,
    /// Participants' mean minus the others' mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference: Option<f64>,
    /// Its 95% confidence interval (Welch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci95: Option<[f64; 2]>,
}

/// A source's report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// [`FORMAT`].
    pub format: String,
    /// The programme.
    pub program: String,
    /// The source that computed it.
    pub source: String,
    /// The evaluator it is for.
    pub evaluator: String,
    /// The disclosure threshold applied.
    pub threshold: usize,
    /// The baseline fiscal year.
    pub baseline_year: i32,
    /// Every cell, suppressed ones included (with no statistic).
    pub cells: Vec<Cell>,
    /// The differences between the groups.
    pub differences: Vec<Difference>,
}

/// A report with its source's signature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReport {
    /// The report.
    pub report: Report,
    /// When it was signed.
    pub signed_at: DateTime<Utc>,
    /// The source's signature, with its certificate.
    pub signature: Signed,
}

/// Why a report was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The signature does not verify (or the certificate does not chain to the CA).
    #[error(transparent)]
    Signature(#[from] renkei_crypto::Error),
    /// The report is not in a form this build reads.
    #[error("{0}")]
    Invalid(String),
}

fn signed_bytes(report: &Report, signer: &str, at: DateTime<Utc>) -> Vec<u8> {
    let mut out = format!(
        "renkei evaluation report v1\n{signer}\n{}\n",
        at.to_rfc3339_opts(SecondsFormat::Micros, true)
    )
    .into_bytes();
    // Plain structs of strings and numbers: writing them cannot fail.
    out.extend(serde_json::to_vec(report).unwrap_or_default());
    out
}

impl SignedReport {
    /// Signs `report` with the mTLS identity in `cert_chain` and `key` (PEM files).
    pub fn sign(
        report: Report,
        cert_chain: &Path,
        key: &Path,
        now: DateTime<Utc>,
    ) -> Result<SignedReport, ReportError> {
        let signature = Signed::make(cert_chain, key, |signer| signed_bytes(&report, signer, now))?;
        Ok(SignedReport {
            report,
            signed_at: now,
            signature,
        })
    }

    /// Checks the signature against the participant CA in `ca`: made by a `source`
    /// whose certificate chains to it and is valid at `now`, naming the report's own
    /// `source`, over exactly this report. Returns the source.
    pub fn verify(&self, ca: &Path, now: DateTime<Utc>) -> Result<ParticipantId, ReportError> {
        if self.report.format != FORMAT {
            return Err(ReportError::Invalid(format!(
                "format `{}` is not `{FORMAT}`",
                self.report.format
            )));
        }
        let bytes = signed_bytes(&self.report, &self.signature.signer, self.signed_at);
        let signer = self
            .signature
            .verify("evaluation report", &bytes, ca, now)?;
        if signer.to_string() != self.report.source {
            return Err(ReportError::Invalid(format!(
                "signed by `{signer}`, but the report says it is from `{}`",
                self.report.source
            )));
        }
        if signer.kind().as_str() != "source" {
            return Err(ReportError::Invalid(format!(
                "signed by `{signer}`, which is not a source"
            )));
        }
        Ok(signer)
    }
}

/// The two-sided 97.5% quantiles of Student's t for 1 to 30 degrees of freedom (the
/// standard table); beyond 30 the normal 1.96 is within 2% of them.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// Student's t 97.5% quantile for `df` degrees of freedom (a real number for Welch:
/// rounded down, which widens the interval); NaN below 1.
pub fn t975(df: f64) -> f64 {
    let whole = df.floor();
    if whole < 1.0 || whole.is_nan() {
        return f64::NAN;
    }
    T975.get(whole as usize - 1).copied().unwrap_or(1.96)
}

/// Four decimals: what a report needs, and no more digits than the data have.
pub fn round4(x: f64) -> f64 {
    let rounded = (x * 10_000.0).round() / 10_000.0;
    // Beyond ~1e304 the scaling overflows; such a number has no decimals to round.
    if rounded.is_finite() { rounded } else { x }
}
