//! The resident's portal (attacks 6 and 10): a receipt code opens its own consent and
//! the reads under it, nothing else about the resident; the reads are summarized per
//! recipient and paged, so no volume of reads pushes others out of view.

use renkei_e2e::APP;
use renkei_e2e::portal::{PortalClient, table_rows};

use super::limits::BROKEN;
use super::world::{CLINIC, World};

/// Reads the app makes of one record before the resident looks (above the 200 reads the
/// portal used to show, over four pages of 50).
const READS: usize = 210;

/// The texts of a table row's cells.
fn cells(row: &str) -> Vec<String> {
    row.split("<td")
        .skip(1)
        .map(|c| {
            let content = c.split_once('>').map_or("", |(_, rest)| rest);
            content.split("</td>").next().unwrap_or_default().to_owned()
        })
        .collect()
}

/// Every page of a receipt's view, following `older` to the end.
fn all_pages(portal: &mut PortalClient, code: &str) -> Vec<String> {
    let (status, first) = portal.view(code).unwrap();
    assert_eq!(status, 200, "{first}");
    let mut pages = vec![first];
    while pages.last().unwrap().contains("id=\"older\"") {
        assert!(pages.len() < 20, "more pages than reads");
        let next = pages.len().to_string();
        let (status, page) = portal
            .post("/view", &[("code", code), ("page", &next)])
            .unwrap();
        assert_eq!(status, 200, "{page}");
        pages.push(page);
    }
    pages
}

/// Attacks 10 and 6: the app reads one record [`READS`] times; the resident opens the
/// app's receipt: a summary row per (recipient, category) whose counts add up to every
/// read, and a history of 50 rows a page whose pages together list exactly those reads.
/// Neither that view nor the clinic's receipt shows the other's consent or reads.
pub async fn the_portal_pages_history_and_scopes_receipts(w: &World, app_record: &str) {
    let app = w.client(APP);
    for _ in 0..READS {
        app.read_record(app_record).await.unwrap();
    }
    let ca = w.member(APP).ca();
    let addr = w.hub.addrs.portal;
    let codes = [&w.app_consent.code, &w.clinic_consent.code].map(|c| c.clone().unwrap());
    let (app_pages, clinic_pages) = tokio::task::spawn_blocking(move || {
        let mut portal = PortalClient::new(addr, "localhost", &ca).unwrap();
        portal.open(None).unwrap();
        (
            all_pages(&mut portal, &codes[0]),
            all_pages(&mut portal, &codes[1]),
        )
    })
    .await
    .unwrap();

    let first = &app_pages[0];
    assert!(
        first.contains("id=\"summary\"") && first.contains("id=\"history\""),
        "{first}"
    );
    let summary = table_rows(first, "summary");
    assert!(!summary.is_empty(), "no summary: {first}");
    let mut summed = 0;
    for row in &summary {
        let c = cells(row);
        assert_eq!(c[0], APP, "another recipient in the app's receipt: {row}");
        summed += c[2].parse::<usize>().unwrap();
    }
    assert!(
        summed > READS,
        "the summary counts {summed} reads of more than {READS}"
    );
    let listed: Vec<String> = app_pages
        .iter()
        .flat_map(|p| table_rows(p, "history"))
        .collect();
    assert_eq!(
        listed.len(),
        summed,
        "the pages list other reads than the summary counts"
    );
    assert!(listed.iter().all(|r| cells(r)[1] == APP), "{listed:?}");
    assert_eq!(table_rows(first, "history").len(), 50, "a page is 50 reads");

    for page in &app_pages {
        for other in [CLINIC, BROKEN] {
            assert!(
                !page.contains(other),
                "the app's receipt shows {other}: {page}"
            );
        }
    }
    let clinic_view = &clinic_pages[0];
    assert!(clinic_view.contains(CLINIC), "{clinic_view}");
    assert!(
        !clinic_view.contains(APP),
        "the clinic's receipt shows the app: {clinic_view}"
    );
    let clinic_reads = table_rows(clinic_view, "history");
    assert!(!clinic_reads.is_empty() && clinic_reads.iter().all(|r| cells(r)[1] == CLINIC));
}
