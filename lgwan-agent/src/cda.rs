//! Streaming parser of 特定健診 checkup documents (HL7 CDA R2, `urn:hl7-org:v3`)
//! into [`CheckupDocument`]s: the header (who, when) here, the results in
//! [`body`], their values in [`value`]. What is accepted is what
//! `spec/tokutei-kenshin/xsd/hc08_V08.xsd` allows, in any namespace prefix, with
//! the attribute defaults the XSDs give. Names and addresses (of the person, and
//! of the doctor an `author` names) are read past, never stored.

mod body;
mod guidance;
mod value;

use std::borrow::Cow;

use chrono::NaiveDate;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use crate::domain::{
    CheckupDocument, DocumentKind, PersonIdentity, Sex, fold_width, parse_ts_date,
};
use crate::quarantine::Reason;
use crate::xml::{self, Attrs, MAX_DEPTH};
use body::{Body, Element};
use guidance::GuidanceBody;

/// The HL7 v3 namespace every CDA element must be in.
pub const CDA_NS: &str = "urn:hl7-org:v3";

const EXAM_DATE: [&str; 4] = [
    "ClinicalDocument",
    "documentationOf",
    "serviceEvent",
    "effectiveTime",
];
const OID_INSURER: &str = "1.2.392.200119.6.101";
const OID_SYMBOL: &str = "1.2.392.200119.6.204";
const OID_NUMBER: &str = "1.2.392.200119.6.205";
const OID_BRANCH: &str = "1.2.392.200119.6.211";

#[derive(Default)]
struct State {
    /// Local names of open elements; foreign-namespace elements are `#`.
    stack: Vec<String>,
    /// Names popped off `stack`, kept for reuse (an element costs no allocation).
    spare: Vec<String>,
    document_id: Option<String>,
    /// `ClinicalDocument/component` (the body) has been opened: the XSD puts it last, once.
    body_opened: bool,
    record_targets: usize,
    insurer: Option<String>,
    symbol: Option<String>,
    number: Option<String>,
    branch: Option<String>,
    birth: Option<String>,
    sex: Option<String>,
    /// The exam date's candidates: `effectiveTime@value`, then its `low`,
    /// `center` and `high` (`IVL_TS` allows any of them alone).
    exam_date: [Option<String>; 4],
    body: Reader,
}

/// The reader of the body: a checkup's results or a guidance record's sessions.
#[derive(Debug)]
enum Reader {
    Checkup(Body),
    Guidance(GuidanceBody),
}

impl Default for Reader {
    fn default() -> Self {
        Reader::Checkup(Body::default())
    }
}

impl State {
    fn ends_with(&self, tail: &[&str]) -> bool {
        self.stack.len() >= tail.len()
            && self
                .stack
                .iter()
                .rev()
                .zip(tail.iter().rev())
                .all(|(a, b)| a == b)
    }

    fn in_body(&self) -> bool {
        self.stack.iter().any(|s| s == "structuredBody")
    }

    fn wants_text(&self) -> bool {
        let depth = self.stack.len();
        match &self.body {
            Reader::Checkup(body) => body.wants_text(depth),
            Reader::Guidance(body) => body.wants_text(depth),
        }
    }

    fn text(&mut self, more: &str) -> Result<(), Reason> {
        let depth = self.stack.len();
        match &mut self.body {
            Reader::Checkup(body) => body.text(depth, more),
            Reader::Guidance(body) => body.text(depth, more),
        }
    }

    fn is(&self, path: &[&str]) -> bool {
        self.stack.len() == path.len() && self.ends_with(path)
    }

    /// What the innermost open element is to the body reader.
    fn element(&self) -> Element {
        if self.ends_with(&["entryRelationship"]) {
            Element::Relationship
        } else if self.ends_with(&["observation"]) {
            Element::Observation {
                in_relationship: self.ends_with(&["entryRelationship", "observation"]),
            }
        } else if self.ends_with(&["observation", "code"]) {
            Element::Code
        } else if self.ends_with(&["observation", "value"]) {
            Element::Value
        } else {
            Element::Other
        }
    }
}

/// Parses one checkup document. `fallback_id` names the document when it has
/// no `ClinicalDocument/id` (usually `<archive root>/<entry>`).
pub fn parse_checkup(bytes: &[u8], fallback_id: &str) -> Result<CheckupDocument, Reason> {
    parse_document(bytes, fallback_id, DocumentKind::Checkup)
}

/// Parses one 特定保健指導 document (`hg08_V08.xsd`): the same header as a checkup
/// (the person, and the guidance's date in `serviceEvent/effectiveTime`), and its
/// sessions as read by [`guidance`].
pub fn parse_guidance(bytes: &[u8], fallback_id: &str) -> Result<CheckupDocument, Reason> {
    parse_document(bytes, fallback_id, DocumentKind::Guidance)
}

/// Parses one document of `kind`.
pub fn parse_document(
    bytes: &[u8],
    fallback_id: &str,
    kind: DocumentKind,
) -> Result<CheckupDocument, Reason> {
    parse_until(bytes, fallback_id, kind, Scope::Whole)
}

/// Parses the header of one document of `kind` (the person and the exam date) and
/// stops at the body (`ClinicalDocument/component`, the last element the XSD allows
/// there): the document it returns has no observations, and nothing after the header
/// is read, so a fault there is not found. What the survey needs of each document.
pub fn parse_header(
    bytes: &[u8],
    fallback_id: &str,
    kind: DocumentKind,
) -> Result<CheckupDocument, Reason> {
    parse_until(bytes, fallback_id, kind, Scope::Header)
}

/// How much of a document to read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Whole,
    Header,
}

fn parse_until(
    bytes: &[u8],
    fallback_id: &str,
    kind: DocumentKind,
    scope: Scope,
) -> Result<CheckupDocument, Reason> {
    let text = xml::document_text(bytes)?;
    let mut reader = xml::reader(&text);
    let mut state = State {
        body: match kind {
            DocumentKind::Checkup => Reader::Checkup(Body::default()),
            DocumentKind::Guidance => Reader::Guidance(GuidanceBody::default()),
        },
        ..State::default()
    };
    let mut seen_root = false;
    loop {
        let position = reader.buffer_position();
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| xml::malformed(e, position))?;
        let in_cda = matches!(&ns, ResolveResult::Bound(n) if n.as_ref() == CDA_NS.as_bytes());
        match event {
            Event::DocType(_) => return Err(Reason::Doctype),
            Event::Decl(decl) => xml::check_decl(&decl)?,
            Event::Start(_) | Event::Empty(_) if state.stack.is_empty() && seen_root => {
                return Err(xml::malformed("content after the root element", position));
            }
            Event::Start(start) => {
                seen_root = true;
                open(&text, &reader, &mut state, &start, in_cda)?;
                if scope == Scope::Header && state.is(&["ClinicalDocument", "component"]) {
                    return finish(state, fallback_id, kind);
                }
            }
            Event::Empty(start) => {
                seen_root = true;
                open(&text, &reader, &mut state, &start, in_cda)?;
                close(&mut state)?;
            }
            Event::End(_) => close(&mut state)?,
            Event::Text(t) if state.wants_text() => {
                let unescaped = t.unescape().map_err(|e| xml::malformed(e, position))?;
                state.text(&unescaped)?;
            }
            Event::CData(c) if state.wants_text() => {
                let raw = std::str::from_utf8(&c)
                    .map_err(|e| Reason::Encoding(format!("CDATA is not UTF-8: {e}")))?;
                state.text(raw)?;
            }
            Event::Text(_) | Event::CData(_) => {}
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !seen_root {
        return Err(Reason::MalformedXml("no root element".into()));
    }
    if !state.stack.is_empty() {
        // quick-xml reports a mismatched end tag but not a missing one at the end: a
        // document cut short would otherwise lose every result not yet closed.
        return Err(Reason::MalformedXml(format!(
            "the document ends inside `{}` (cut short?)",
            state.stack.join("/")
        )));
    }
    finish(state, fallback_id, kind)
}

fn open(
    text: &str,
    reader: &quick_xml::NsReader<&[u8]>,
    state: &mut State,
    start: &BytesStart<'_>,
    in_cda: bool,
) -> Result<(), Reason> {
    let local_name = start.local_name();
    let local = match xml::text_of(text, local_name.as_ref()) {
        Some(name) => Cow::Borrowed(name),
        None => String::from_utf8_lossy(local_name.as_ref()),
    };
    if state.stack.is_empty() && (!in_cda || local != "ClinicalDocument") {
        let ns = reader.resolve_element(start.name()).0;
        let ns = match ns {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            _ => "no namespace".into(),
        };
        return Err(Reason::WrongNamespace(format!(
            "root is `{local}` in `{ns}`, expected `ClinicalDocument` in `{CDA_NS}`"
        )));
    }
    if state.stack.len() >= MAX_DEPTH {
        return Err(Reason::MalformedXml(format!(
            "elements nested deeper than {MAX_DEPTH}"
        )));
    }
    let mut name = state.spare.pop().unwrap_or_default();
    name.clear();
    name.push_str(if in_cda { &local } else { "#" });
    state.stack.push(name);
    let attrs: Attrs<'_> = if in_cda {
        xml::attributes(text, reader, start)?
    } else {
        Vec::new()
    };
    on_start(state, &attrs)
}

fn on_start(state: &mut State, attrs: &Attrs<'_>) -> Result<(), Reason> {
    if state.in_body() {
        let element = state.element();
        let depth = state.stack.len();
        return match &mut state.body {
            Reader::Checkup(body) => body.start(element, depth, attrs),
            Reader::Guidance(body) => body.start(&state.stack, attrs),
        };
    }
    if state.stack.len() == 2 {
        // Nothing may follow the body (hc08/hg08 `ClinicalDocument`: `component` is the
        // last element, once). So the header is all before it, and reading the header
        // alone ([`parse_header`]) finds the same person as reading the whole document.
        if state.body_opened {
            let name = state.stack.last().map_or("", String::as_str);
            return Err(Reason::MalformedXml(format!(
                "`{name}` after `component` in ClinicalDocument (the XSD puts `component` last, once)"
            )));
        }
        state.body_opened = state.is(&["ClinicalDocument", "component"]);
    }
    let get = |name| xml::get(attrs, name).map(str::to_owned);
    if state.is(&["ClinicalDocument", "id"]) {
        state.document_id = match (get("root"), get("extension")) {
            (Some(root), Some(ext)) => Some(format!("{root}^{ext}")),
            (Some(root), None) => Some(root),
            _ => None,
        };
    } else if state.is(&["ClinicalDocument", "recordTarget"]) {
        state.record_targets += 1;
    } else if state.is(&["ClinicalDocument", "recordTarget", "patientRole", "id"]) {
        let (slot, what) = match get("root").as_deref() {
            Some(OID_INSURER) => (&mut state.insurer, "insurer number"),
            Some(OID_SYMBOL) => (&mut state.symbol, "insured symbol"),
            Some(OID_NUMBER) => (&mut state.number, "insured number"),
            Some(OID_BRANCH) => (&mut state.branch, "branch number"),
            _ => return Ok(()),
        };
        if slot.is_some() {
            // Keeping either could give the results to the wrong person.
            return Err(Reason::RecordTarget(format!("the {what} is given twice")));
        }
        *slot = get("extension");
    } else if state.is(&[
        "ClinicalDocument",
        "recordTarget",
        "patientRole",
        "patient",
        "administrativeGenderCode",
    ]) {
        state.sex = get("code");
    } else if state.is(&[
        "ClinicalDocument",
        "recordTarget",
        "patientRole",
        "patient",
        "birthTime",
    ]) {
        state.birth = get("value");
    } else if let Some(slot) = exam_date_slot(&state.stack) {
        // Each candidate is taken from the first `documentationOf` that gives it.
        if let Some(candidate) = state.exam_date.get_mut(slot).filter(|c| c.is_none()) {
            *candidate = get("value");
        }
    }
    Ok(())
}

/// Which exam-date candidate the element at the top of `stack` gives, if any:
/// `serviceEvent/effectiveTime` itself (0), or its `low`, `center` or `high`.
fn exam_date_slot(stack: &[String]) -> Option<usize> {
    if stack.len() == EXAM_DATE.len() {
        return stack.iter().eq(EXAM_DATE.iter()).then_some(0);
    }
    let (last, parent) = stack.split_last()?;
    let slot = match last.as_str() {
        "low" => 1,
        "center" => 2,
        "high" => 3,
        _ => return None,
    };
    parent.iter().eq(EXAM_DATE.iter()).then_some(slot)
}

fn close(state: &mut State) -> Result<(), Reason> {
    if state.in_body() {
        let element = state.element();
        let depth = state.stack.len();
        match &mut state.body {
            Reader::Checkup(body) => body.end(element, depth)?,
            Reader::Guidance(body) => body.end(&state.stack)?,
        }
    }
    if let Some(name) = state.stack.pop() {
        state.spare.push(name);
    }
    Ok(())
}

fn finish(state: State, fallback_id: &str, kind: DocumentKind) -> Result<CheckupDocument, Reason> {
    match state.record_targets {
        0 => return Err(Reason::RecordTarget("missing recordTarget".into())),
        1 => {}
        n => {
            return Err(Reason::RecordTarget(format!(
                "{n} recordTargets, expected one"
            )));
        }
    }
    let insurer = required(
        state.insurer,
        "insurer number (id root 1.2.392.200119.6.101)",
    )?;
    let insurer_digits: String = insurer.chars().map(fold_width).collect();
    if insurer_digits.is_empty()
        || insurer_digits.len() > 8
        || !insurer_digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(Reason::Field("insurer number is not 1 to 8 digits".into()));
    }
    let number = required(state.number, "card number (id root 1.2.392.200119.6.205)")?;
    let birth_raw = required(state.birth, "birthTime")?;
    let birth = parse_ts_date(&birth_raw)
        .ok_or_else(|| Reason::Field("birthTime is not a date (YYYYMMDD)".into()))?;
    let sex_raw = required(state.sex, "administrativeGenderCode")?;
    // The MHLW code table for sex (性別, OID 1.2.392.200119.6.1104, also
    // co08_V08.xsd `Code.AdministrativeGender`): `1` or `2`, nothing else (the CSV
    // readers take the other forms exports use; a CDA document does not).
    let sex = match sex_raw.trim() {
        "1" => Sex::Male,
        "2" => Sex::Female,
        _ => {
            return Err(Reason::Field(
                "administrativeGenderCode is not 1 or 2".into(),
            ));
        }
    };
    let [value, low, center, high] = state.exam_date;
    let exam_raw = required(
        value.or(low).or(center).or(high),
        "exam date (serviceEvent/effectiveTime)",
    )?;
    let exam_date: NaiveDate = parse_ts_date(&exam_raw)
        .ok_or_else(|| Reason::Field(format!("exam date `{exam_raw}` is not a date")))?;
    let (observations, unread_values) = match state.body {
        Reader::Checkup(body) => body.into_observations(),
        Reader::Guidance(body) => body.into_observations(),
    };
    Ok(CheckupDocument {
        kind,
        document_id: state
            .document_id
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| fallback_id.to_owned()),
        identity: PersonIdentity {
            insurer,
            symbol: state.symbol.unwrap_or_default(),
            number,
            branch: state.branch.filter(|b| !b.trim().is_empty()),
            birth,
            sex,
        },
        exam_date,
        observations,
        unread_values,
    })
}

fn required(value: Option<String>, what: &str) -> Result<String, Reason> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| Reason::Field(format!("missing {what}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Value;

    /// A document of the usual person with `body` as the section's content.
    pub(super) fn doc(body: &str) -> String {
        doc_with(TARGET, body)
    }

    fn doc_with(target: &str, body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<id nullFlavor="NI"/>{target}
<documentationOf><serviceEvent><effectiveTime><low value="20240601"/></effectiveTime></serviceEvent></documentationOf>
<component><structuredBody><component><section>{body}</section></component></structuredBody></component>
</ClinicalDocument>"#
        )
    }

    const TARGET: &str = r#"<recordTarget><patientRole>
<id root="1.2.392.200119.6.101" extension="１３８０１６"/>
<id root="1.2.392.200119.6.205" extension="42"/>
<addr>見本市</addr><patient><name>見本　太郎</name>
<administrativeGenderCode code="1"/><birthTime value="19700101"/></patient></patientRole></recordTarget>"#;

    fn obs(code: &str, value: &str) -> String {
        format!(
            r#"<entry><observation classCode="OBS" moodCode="EVN"><code code="{code}"/>{value}</observation></entry>"#
        )
    }

    /// The MHLW sex code table has `1` and `2` only: the forms CSV exports use are
    /// refused here.
    #[test]
    fn a_sex_code_other_than_1_or_2_is_refused() {
        for code in ["M", "male", "男", "0", "9", ""] {
            let target = TARGET.replace(r#"code="1""#, &format!(r#"code="{code}""#));
            let r = parse_checkup(doc_with(&target, "").as_bytes(), "x");
            assert!(
                matches!(&r, Err(Reason::Field(m)) if m.contains("administrativeGenderCode")),
                "{code}: {r:?}"
            );
        }
        let female = TARGET.replace(r#"code="1""#, r#"code=" 2 ""#);
        let d = parse_checkup(doc_with(&female, "").as_bytes(), "x").unwrap();
        assert_eq!(d.identity.sex, crate::domain::Sex::Female);
    }

    #[test]
    fn the_header_alone_stops_at_the_body() {
        let broken = doc(&obs(
            "9N001000000000001",
            r#"<value xsi:type="INT" value="16"#,
        ));
        assert!(parse_checkup(broken.as_bytes(), "h1.xml").is_err());
        let header = parse_header(broken.as_bytes(), "h1.xml", DocumentKind::Checkup).unwrap();
        let whole = parse_checkup(doc("").as_bytes(), "h1.xml").unwrap();
        assert_eq!(header.identity, whole.identity);
        assert_eq!(header.exam_date, whole.exam_date);
        assert!(header.observations.is_empty());
        // A header fault is found as before.
        let no_target = doc_with("", "");
        assert!(parse_header(no_target.as_bytes(), "h1.xml", DocumentKind::Checkup).is_err());
    }

    /// The survey reads headers only, so the whole document must not name another person
    /// after its header: nothing may follow the body, and the person's fields are read at
    /// their place in the header alone.
    /// A document cut short is refused wherever the cut falls, even in text or between
    /// elements where the XML reader itself sees nothing wrong; the header alone may end
    /// early only when it ends at the body.
    #[test]
    fn a_document_cut_short_is_refused() {
        let whole = doc("");
        assert!(parse_checkup(whole.as_bytes(), "h1.xml").is_ok());
        let end = whole.rfind("</ClinicalDocument>").unwrap();
        for cut in [end, end - 1, whole.find("<component>").unwrap() + 11] {
            let e = parse_checkup(&whole.as_bytes()[..cut], "h1.xml").unwrap_err();
            assert!(matches!(e, Reason::MalformedXml(_)), "cut at {cut}: {e}");
        }
        let e = parse_checkup(&whole.as_bytes()[..end], "h1.xml").unwrap_err();
        assert!(
            e.to_string().contains("ends inside `ClinicalDocument"),
            "{e}"
        );
        let body_at = whole.find("<component>").unwrap();
        let header = parse_header(
            &whole.as_bytes()[..body_at + 11],
            "h1.xml",
            DocumentKind::Checkup,
        );
        assert!(header.is_ok(), "{:?}", header.err());
        let inside_target = whole.find("</patientRole>").unwrap();
        let cut = parse_header(
            &whole.as_bytes()[..inside_target],
            "h1.xml",
            DocumentKind::Checkup,
        );
        assert!(
            matches!(cut, Err(Reason::MalformedXml(_))),
            "{:?}",
            cut.err()
        );
    }

    #[test]
    fn nothing_after_the_body_names_the_person() {
        let whole = doc("");
        let body_at = whole.find("<component>").unwrap();
        // A second recordTarget, or a second body, after the body.
        for late in [TARGET, "<component><structuredBody/></component>"] {
            let mut bad = whole.clone();
            bad.insert_str(bad.rfind("</ClinicalDocument>").unwrap(), late);
            let e = parse_checkup(bad.as_bytes(), "h1.xml").unwrap_err();
            assert!(e.to_string().contains("after `component`"), "{e}");
        }
        // The whole header after the body: the header alone has no person, the whole
        // document is refused.
        let (head, tail) = whole.split_at(body_at);
        let target_at = head.find("<recordTarget>").unwrap();
        let target_end = head.find("</recordTarget>").unwrap() + "</recordTarget>".len();
        let moved = format!(
            "{}{}{}",
            &head[..target_at],
            &head[target_end..],
            tail.replacen(
                "</ClinicalDocument>",
                &format!("{TARGET}</ClinicalDocument>"),
                1
            )
        );
        assert!(parse_header(moved.as_bytes(), "h1.xml", DocumentKind::Checkup).is_err());
        assert!(parse_checkup(moved.as_bytes(), "h1.xml").is_err());
        // Another birth date and sex inside a component before the real body.
        let decoy = r#"<component><recordTarget><patientRole><patient><administrativeGenderCode code="2"/><birthTime value="19990909"/></patient></patientRole></recordTarget></component>"#;
        let mut two = whole.clone();
        two.insert_str(body_at, decoy);
        let header = parse_header(two.as_bytes(), "h1.xml", DocumentKind::Checkup).unwrap();
        let plain = parse_checkup(whole.as_bytes(), "h1.xml").unwrap();
        assert_eq!(header.identity, plain.identity, "the decoy is not read");
        assert!(
            parse_checkup(two.as_bytes(), "h1.xml").is_err(),
            "two bodies"
        );
    }

    #[test]
    fn minimal_document_with_fallbacks() {
        let body = obs(
            "9N001000000000001",
            r#"<value xsi:type="INT" value="160"/>"#,
        ) + &obs(
            "9N006000000000001",
            r#"<value xsi:type="PQ" nullFlavor="NI"/>"#,
        ) + &obs(
            "9N051000000000049",
            r#"<value xsi:type="ST">a &amp; b&#x3042;</value>"#,
        );
        let d = parse_checkup(doc_with(TARGET, &body).as_bytes(), "root/DATA/h1.xml").unwrap();
        assert_eq!(d.document_id, "root/DATA/h1.xml");
        assert_eq!(d.exam_date.to_string(), "2024-06-01");
        assert_eq!(d.identity.symbol, "");
        assert_eq!(d.observations.len(), 2, "the null PQ has no result");
        assert_eq!(d.observations[1].value, Value::Text("a & bあ".into()));
    }

    /// Attribute text the XSD allows anything in (`displayName`, `unit`) does not carry
    /// words out: a code's label is not kept, and a unit must be a UCUM code.
    #[test]
    fn free_text_in_code_labels_and_units_stays_inside() {
        let labelled = obs(
            "1A020000000191111",
            r#"<value xsi:type="CO" code="1" codeSystem="1.2.392.200119.6.2101" displayName="見本 太郎 横浜市"/>"#,
        );
        let d = parse_checkup(doc(&labelled).as_bytes(), "x").unwrap();
        assert_eq!(
            d.observations[0].value,
            Value::Coded {
                code: "1".into(),
                system: "1.2.392.200119.6.2101".into(),
                display: None
            }
        );
        for unit in ["見本太郎", "mg dL", &"m".repeat(33)] {
            let named = obs(
                "9N001000000000001",
                &format!(r#"<value xsi:type="PQ" value="160" unit="{unit}"/>"#),
            );
            let r = parse_checkup(doc(&named).as_bytes(), "x");
            assert!(
                matches!(&r, Err(Reason::BadValue(m)) if m.contains("UCUM")),
                "{unit}: {r:?}"
            );
        }
        let ucum = obs(
            "9N001000000000001",
            r#"<value xsi:type="PQ" value="160" unit="cm"/>"#,
        );
        assert!(parse_checkup(doc(&ucum).as_bytes(), "x").is_ok());
    }

    #[test]
    fn undeclared_entity_is_malformed_not_expanded() {
        let body = obs("9N051000000000049", r#"<value xsi:type="ST">&xxe;</value>"#);
        let r = parse_checkup(doc_with(TARGET, &body).as_bytes(), "x");
        assert!(matches!(r, Err(Reason::MalformedXml(_))), "{r:?}");
    }

    #[test]
    fn values_that_do_not_fit_their_type() {
        for (value, needle) in [
            (r#"<value xsi:type="INT" value="1.5"/>"#, "not a number"),
            (r#"<value xsi:type="CD" code="1"/>"#, "no codeSystem"),
            (
                r#"<value xsi:type="BL" value="true"/>"#,
                "unsupported value type `BL`",
            ),
            (r#"<value value="1"/>"#, "no xsi:type"),
            // Free text (a name, say) under the height item: never exported as its value.
            (
                r#"<value xsi:type="ST">見本 太郎</value>"#,
                "another type than the item table's PQ",
            ),
        ] {
            let body = obs("9N001000000000001", value);
            match parse_checkup(doc_with(TARGET, &body).as_bytes(), "x") {
                Err(Reason::BadValue(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{value}: {other:?}"),
            }
        }
        let short = obs("9N001", r#"<value xsi:type="ST">x</value>"#);
        assert!(matches!(
            parse_checkup(doc_with(TARGET, &short).as_bytes(), "x"),
            Err(Reason::BadValue(_))
        ));
    }

    #[test]
    fn record_target_and_fields() {
        let two = format!("{TARGET}{TARGET}");
        assert!(matches!(
            parse_checkup(doc_with(&two, "").as_bytes(), "x"),
            Err(Reason::RecordTarget(_))
        ));
        let no_birth = TARGET.replace(r#"<birthTime value="19700101"/>"#, "");
        match parse_checkup(doc_with(&no_birth, "").as_bytes(), "x") {
            Err(Reason::Field(m)) => assert!(m.contains("birthTime")),
            other => panic!("{other:?}"),
        }
        // A second insured number (legal in the XSD: `id` is unbounded) is refused,
        // not read as whichever came last.
        let twice = TARGET.replace(
            r#"<id root="1.2.392.200119.6.205" extension="42"/>"#,
            r#"<id root="1.2.392.200119.6.205" extension="42"/><id root="1.2.392.200119.6.205" extension="43"/>"#,
        );
        match parse_checkup(doc_with(&twice, "").as_bytes(), "x") {
            Err(Reason::RecordTarget(m)) => assert!(m.contains("insured number"), "{m}"),
            other => panic!("{other:?}"),
        }
        // A birth time with a time and an offset (the XSD's `ts`) keeps its date.
        let zoned = TARGET.replace("19700101", "19700101000000.0+0900");
        let doc = parse_checkup(doc_with(&zoned, "").as_bytes(), "x").unwrap();
        assert_eq!(doc.identity.birth.to_string(), "1970-01-01");
        let bad_insurer = TARGET.replace("１３８０１６", "13801A");
        assert!(matches!(
            parse_checkup(doc_with(&bad_insurer, "").as_bytes(), "x"),
            Err(Reason::Field(_))
        ));
    }

    #[test]
    fn deep_nesting_refused() {
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        let body = format!(r#"<text xmlns="urn:x">{deep}</text>"#);
        let r = parse_checkup(doc_with(TARGET, &body).as_bytes(), "x");
        assert!(matches!(r, Err(Reason::MalformedXml(m)) if m.contains("deeper")));
    }

    #[test]
    fn any_prefix_line_ends_and_exam_date_forms() {
        let plain = doc(&obs(
            "9N001000000000001",
            "<value xsi:type=\"PQ\" value=\"160\" unit=\"cm\"/>",
        ));
        let want = parse_checkup(plain.as_bytes(), "x").unwrap();
        // Every element prefixed, the default namespace re-declared on an entry,
        // a BOM and CRLF line ends: the same document.
        let prefixed = plain
            .replace("<", "<v3:")
            .replace("<v3:/", "</v3:")
            .replace("<v3:?xml", "<?xml")
            .replace("xmlns=", "xmlns:v3=")
            .replace("xsi:type=\"PQ\"", "xsi:type=\"v3:PQ\"")
            .replace("<v3:entry>", "<entry xmlns=\"urn:hl7-org:v3\">")
            .replace("</v3:entry>", "</entry>")
            .replace('\n', "\r\n");
        let prefixed = format!("\u{feff}{prefixed}");
        assert_eq!(parse_checkup(prefixed.as_bytes(), "x"), Ok(want.clone()));
        for date in [
            r#"<effectiveTime value="20240601"/>"#,
            r#"<effectiveTime><center value="20240601"/></effectiveTime>"#,
            r#"<effectiveTime><high value="20240601"/></effectiveTime>"#,
        ] {
            let other = plain.replace(
                r#"<effectiveTime><low value="20240601"/></effectiveTime>"#,
                date,
            );
            assert_eq!(parse_checkup(other.as_bytes(), "x"), Ok(want.clone()));
        }
    }
}
