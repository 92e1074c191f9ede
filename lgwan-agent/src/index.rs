//! The archive index `ix08_V08.xml` and summary `su08_V08.xml`: accepted in the
//! 2007 namespace and in the newer MHLW one; anything else is quarantined.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use serde::Serialize;

use crate::quarantine::Reason;
use crate::xml;

/// Namespace of ix08/su08 in older archives.
pub const NS_2007: &str = "http://tokuteikenshin.jp/checkup/2007";
/// Namespace of ix08/su08 in newer archives.
pub const NS_MHLW: &str = "https://www.mhlw.go.jp/stf/seisakunitsuite/bunya/0000161103.html";

/// Which of the two accepted namespaces a file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum IndexNamespace {
    /// `http://tokuteikenshin.jp/checkup/2007`.
    Y2007,
    /// The MHLW page URL.
    Mhlw,
}

/// What the agent reads from an index or summary file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IndexInfo {
    /// The namespace the file used.
    pub namespace: IndexNamespace,
    /// `totalRecordCount` (index) or `totalSubjectCount` (summary).
    pub count: Option<u64>,
}

/// Parses an index (`root = "index"`) or summary (`root = "summary"`) file.
pub fn parse_index(bytes: &[u8], root: &str) -> Result<IndexInfo, Reason> {
    let text = xml::document_text(bytes)?;
    let mut reader = xml::reader(&text);
    let mut namespace = None;
    let mut count = None;
    let mut depth = 0usize;
    // The children the schema requires (ix08_V08.xsd `Index`, su08_V08.xsd `Summary`).
    let (required, count_element): (&[&str], &str) = match root {
        "index" => (INDEX_REQUIRED, "totalRecordCount"),
        _ => (SUMMARY_REQUIRED, "totalSubjectCount"),
    };
    let mut seen: Vec<String> = Vec::new();
    loop {
        let position = reader.buffer_position();
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| xml::malformed(e, position))?;
        match event {
            Event::DocType(_) => return Err(Reason::Doctype),
            Event::Decl(decl) => xml::check_decl(&decl)?,
            Event::Start(ref start) | Event::Empty(ref start) => {
                let local = start.local_name();
                if depth == 0 {
                    if namespace.is_some() {
                        return Err(xml::malformed("content after the root element", position));
                    }
                    let bound = match &ns {
                        ResolveResult::Bound(n) => n.as_ref(),
                        _ => b"".as_slice(),
                    };
                    namespace = Some(match bound {
                        b if b == NS_2007.as_bytes() => IndexNamespace::Y2007,
                        b if b == NS_MHLW.as_bytes() => IndexNamespace::Mhlw,
                        other => {
                            return Err(Reason::WrongNamespace(format!(
                                "`{}` is in `{}`, expected `{NS_2007}` or `{NS_MHLW}`",
                                String::from_utf8_lossy(local.as_ref()),
                                String::from_utf8_lossy(other)
                            )));
                        }
                    });
                    if local.as_ref() != root.as_bytes() {
                        return Err(Reason::WrongNamespace(format!(
                            "root element is `{}`, expected `{root}`",
                            String::from_utf8_lossy(local.as_ref())
                        )));
                    }
                } else if depth == 1 {
                    seen.push(String::from_utf8_lossy(local.as_ref()).into_owned());
                }
                if depth == 1 && local.as_ref() == count_element.as_bytes() {
                    let attrs = xml::attributes(&text, &reader, start)?;
                    let value = xml::get(&attrs, "value").unwrap_or_default();
                    count =
                        Some(value.trim().parse().map_err(|_| {
                            Reason::Field(format!("count `{value}` is not a number"))
                        })?);
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                    if depth > xml::MAX_DEPTH {
                        return Err(Reason::MalformedXml("elements nested too deep".into()));
                    }
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Eof => break,
            _ => {}
        }
    }
    let namespace = namespace.ok_or_else(|| Reason::MalformedXml("no root element".into()))?;
    if depth > 0 {
        return Err(Reason::MalformedXml(format!(
            "the file ends inside {depth} open element(s) (cut short?)"
        )));
    }
    let missing: Vec<String> = required
        .iter()
        .filter(|r| !seen.iter().any(|s| s == *r))
        .map(|r| format!("`{r}`"))
        .collect();
    if !missing.is_empty() {
        return Err(Reason::Field(format!(
            "`{root}` lacks {} (required by {})",
            missing.join(", "),
            if root == "index" {
                "ix08_V08.xsd"
            } else {
                "su08_V08.xsd"
            }
        )));
    }
    Ok(IndexInfo { namespace, count })
}

/// The children `Index` requires, in ix08_V08.xsd (`receiver` is optional).
const INDEX_REQUIRED: &[&str] = &[
    "interactionType",
    "creationTime",
    "sender",
    "serviceEventType",
    "totalRecordCount",
];

/// The children `Summary` requires, in su08_V08.xsd (`totalPaymentByOtherProgram` is
/// optional).
const SUMMARY_REQUIRED: &[&str] = &[
    "serviceEventType",
    "totalSubjectCount",
    "totalCostAmount",
    "totalPaymentAmount",
    "totalClaimAmount",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn index(ns: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><index xmlns="{ns}"><interactionType code="1"/><creationTime value="20240701"/><sender><id root="1.2.392.200119.6.102" extension="1311234567"/></sender><serviceEventType code="1"/><totalRecordCount value="6"/></index>"#
        )
    }

    #[test]
    fn both_namespaces() {
        let old = parse_index(index(NS_2007).as_bytes(), "index").unwrap();
        assert_eq!(old.namespace, IndexNamespace::Y2007);
        assert_eq!(old.count, Some(6));
        let new = parse_index(index(NS_MHLW).as_bytes(), "index").unwrap();
        assert_eq!(new.namespace, IndexNamespace::Mhlw);
    }

    #[test]
    fn any_prefix_bom_and_crlf() {
        let text = format!(
            "\u{feff}<?xml version=\"1.0\"?>\r\n<ix:index xmlns:ix=\"{NS_MHLW}\">\r\n\
             <ix:interactionType code=\"1\"/><ix:creationTime value=\"20240701\"/><ix:sender/>\
             <ix:serviceEventType code=\"1\"/><ix:totalRecordCount value=\" +6\r\n\"/></ix:index>"
        );
        let info = parse_index(text.as_bytes(), "index").unwrap();
        assert_eq!(
            (info.namespace, info.count),
            (IndexNamespace::Mhlw, Some(6))
        );
    }

    #[test]
    fn other_namespace_and_doctype_refused() {
        let other = parse_index(index("urn:example").as_bytes(), "index");
        assert!(matches!(other, Err(Reason::WrongNamespace(_))));
        let doctype = format!(
            "<!DOCTYPE index>{}",
            index(NS_2007).replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "")
        );
        assert_eq!(
            parse_index(doctype.as_bytes(), "index"),
            Err(Reason::Doctype)
        );
        let summary = parse_index(index(NS_2007).as_bytes(), "summary");
        assert!(matches!(summary, Err(Reason::WrongNamespace(_))));
    }

    /// ix08_V08.xsd requires five children of `index`: an index without its count (or
    /// an empty one) cannot say how many records the archive should hold.
    #[test]
    fn an_index_missing_a_required_element_is_refused() {
        let full = index(NS_MHLW);
        for (element, cut) in [
            ("totalRecordCount", r#"<totalRecordCount value="6"/>"#),
            ("creationTime", r#"<creationTime value="20240701"/>"#),
            ("serviceEventType", r#"<serviceEventType code="1"/>"#),
        ] {
            let err = parse_index(full.replace(cut, "").as_bytes(), "index").unwrap_err();
            assert!(
                matches!(&err, Reason::Field(m) if m.contains(&format!("`{element}`"))),
                "{err:?}"
            );
        }
        let empty = format!(r#"<index xmlns="{NS_MHLW}"/>"#);
        let err = parse_index(empty.as_bytes(), "index").unwrap_err();
        assert!(matches!(&err, Reason::Field(m) if m.contains("`interactionType`")));
        // `receiver` is optional.
        assert!(parse_index(full.as_bytes(), "index").is_ok());
        let summary = format!(
            r#"<summary xmlns="{NS_2007}"><serviceEventType code="1"/><totalSubjectCount value="2"/></summary>"#
        );
        let err = parse_index(summary.as_bytes(), "summary").unwrap_err();
        assert!(matches!(&err, Reason::Field(m) if m.contains("`totalCostAmount`")));
    }
}
