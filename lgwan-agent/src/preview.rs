//! `preview`: prints, as JSON Lines, exactly what would leave the building,
//! one object per record (`record_id`, `subject_token`, `category`,
//! `effective_date`, `source_document`, `payload`), so staff can check it.

use std::io::Write;
use std::path::PathBuf;

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::pipeline::{Prepared, RunSummary, expand_inputs};
use crate::quarantine::Quarantine;

/// Writes one JSON line per record of `inputs` to `out`; quarantine reports
/// (bad inputs and refused identities) go to `report`.
pub fn preview(
    agent: &Agent,
    inputs: &[PathBuf],
    out: &mut dyn Write,
    report: &mut dyn FnMut(&Quarantine),
) -> Result<RunSummary> {
    let files = expand_inputs(inputs);
    let book = agent.survey(&files);
    let mut failure = None;
    let summary = agent.prepare(&files, &book, &mut |prepared| match prepared {
        Prepared::Record(record) => {
            if failure.is_some() {
                return;
            }
            let written = serde_json::to_writer(&mut *out, &record)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
            if let Err(e) = written {
                failure = Some(e);
            }
        }
        Prepared::Quarantined(q) => report(&q),
    });
    if let Some(e) = failure {
        return Err(Error::Output(e));
    }
    out.flush().map_err(Error::Output)?;
    Ok(summary)
}
