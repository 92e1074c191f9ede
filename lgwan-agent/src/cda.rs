//! Streaming parser of 特定健診 checkup documents (HL7 CDA R2, `urn:hl7-org:v3`)
//! into [`CheckupDocument`]s. Names and addresses are read past, never stored.

use chrono::NaiveDate;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use crate::domain::{
    CheckupDocument, ITEM_CODE_OID, Observation, PersonIdentity, Sex, Value, fold_width,
    is_decimal, parse_date,
};
use crate::quarantine::Reason;
use crate::xml::{self, Attrs, MAX_DEPTH};

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

/// An observation being read.
#[derive(Default)]
struct Pending {
    code: Option<String>,
    system: Option<String>,
    display: Option<String>,
    value: Option<Value>,
    /// Text of an ST value being read.
    text: Option<String>,
    relation: Option<String>,
    children: Vec<Observation>,
}

#[derive(Default)]
struct State {
    /// Local names of open elements; foreign-namespace elements are `#`.
    stack: Vec<String>,
    document_id: Option<String>,
    record_targets: usize,
    insurer: Option<String>,
    symbol: Option<String>,
    number: Option<String>,
    branch: Option<String>,
    birth: Option<String>,
    sex: Option<String>,
    exam_date: Option<String>,
    /// `typeCode` of each open `entryRelationship`.
    relations: Vec<Option<String>>,
    open: Vec<Pending>,
    observations: Vec<Observation>,
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

    fn is(&self, path: &[&str]) -> bool {
        self.stack.len() == path.len() && self.ends_with(path)
    }
}

/// Parses one checkup document. `fallback_id` names the document when it has
/// no `ClinicalDocument/id` (usually `<archive root>/<entry>`).
pub fn parse_checkup(bytes: &[u8], fallback_id: &str) -> Result<CheckupDocument, Reason> {
    let text = xml::utf8_text(bytes)?;
    let mut reader = xml::reader(text);
    let mut state = State::default();
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
                open(&reader, &mut state, &start, in_cda)?;
            }
            Event::Empty(start) => {
                seen_root = true;
                open(&reader, &mut state, &start, in_cda)?;
                close(&mut state)?;
            }
            Event::End(_) => close(&mut state)?,
            Event::Text(t) => {
                if let Some(p) = state.open.last_mut().filter(|p| p.text.is_some()) {
                    let unescaped = t.unescape().map_err(|e| xml::malformed(e, position))?;
                    append_text(p, &unescaped)?;
                }
            }
            Event::CData(c) => {
                if let Some(p) = state.open.last_mut().filter(|p| p.text.is_some()) {
                    let raw = std::str::from_utf8(&c)
                        .map_err(|e| Reason::Encoding(format!("CDATA is not UTF-8: {e}")))?;
                    append_text(p, raw)?;
                }
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !seen_root {
        return Err(Reason::MalformedXml("no root element".into()));
    }
    finish(state, fallback_id)
}

fn open(
    reader: &quick_xml::NsReader<&[u8]>,
    state: &mut State,
    start: &BytesStart<'_>,
    in_cda: bool,
) -> Result<(), Reason> {
    let local = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
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
    state.stack.push(if in_cda { local } else { "#".into() });
    let attrs: Attrs = if in_cda {
        xml::attributes(reader, start)?
    } else {
        Vec::new()
    };
    on_start(state, &attrs)
}

fn on_start(state: &mut State, attrs: &Attrs) -> Result<(), Reason> {
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
        let slot = match get("root").as_deref() {
            Some(OID_INSURER) => &mut state.insurer,
            Some(OID_SYMBOL) => &mut state.symbol,
            Some(OID_NUMBER) => &mut state.number,
            Some(OID_BRANCH) => &mut state.branch,
            _ => return Ok(()),
        };
        *slot = get("extension");
    } else if state.ends_with(&[
        "recordTarget",
        "patientRole",
        "patient",
        "administrativeGenderCode",
    ]) {
        state.sex = get("code");
    } else if state.ends_with(&["recordTarget", "patientRole", "patient", "birthTime"]) {
        state.birth = get("value");
    } else if state.exam_date.is_none()
        && (state.is(&EXAM_DATE) || state.is(&[&EXAM_DATE[..], &["low"]].concat()))
    {
        // `effectiveTime@value`, or `effectiveTime/low@value` for an interval.
        state.exam_date = get("value");
    } else if state.ends_with(&["entryRelationship"]) {
        state.relations.push(get("typeCode"));
    } else if state.ends_with(&["observation"]) && state.in_body() {
        let relation = if state.ends_with(&["entryRelationship", "observation"]) {
            state.relations.last().cloned().flatten()
        } else {
            None
        };
        state.open.push(Pending {
            relation,
            ..Pending::default()
        });
    } else if state.ends_with(&["observation", "code"]) {
        if let Some(p) = state.open.last_mut() {
            p.code = get("code");
            p.system = get("codeSystem");
            p.display = get("displayName");
        }
    } else if state.ends_with(&["observation", "value"]) {
        if let Some(p) = state.open.last_mut() {
            start_value(p, attrs)?;
        }
    }
    Ok(())
}

/// Longest text (ST) value accepted: the MHLW table's longest free-text item is far
/// shorter; anything longer is not a checkup result and is refused, not exported.
const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Longest numeric (PQ/INT) value, in characters: more digits than any measurement.
const MAX_NUMBER_CHARS: usize = 20;

fn append_text(p: &mut Pending, more: &str) -> Result<(), Reason> {
    let item = p.code.clone().unwrap_or_else(|| "(no code)".into());
    let Some(text) = p.text.as_mut() else {
        return Ok(());
    };
    if text.len() + more.len() > MAX_TEXT_BYTES {
        return Err(Reason::BadValue(format!(
            "`{item}` text value is longer than {MAX_TEXT_BYTES} bytes"
        )));
    }
    text.push_str(more);
    Ok(())
}

fn start_value(p: &mut Pending, attrs: &Attrs) -> Result<(), Reason> {
    let item = p.code.clone().unwrap_or_else(|| "(no code)".into());
    if p.value.is_some() || p.text.is_some() {
        return Err(Reason::BadValue(format!(
            "`{item}` has more than one value"
        )));
    }
    let get = |name| xml::get(attrs, name).map(str::to_owned);
    let null = get("nullFlavor").is_some();
    let Some(kind) = xml::xsi_type(attrs).map(str::to_owned) else {
        return Err(Reason::BadValue(format!("`{item}` value has no xsi:type")));
    };
    match kind.as_str() {
        "PQ" | "INT" => match get("value") {
            Some(v) if v.trim().len() > MAX_NUMBER_CHARS => {
                return Err(Reason::BadValue(format!(
                    "`{item}` {kind} value has more than {MAX_NUMBER_CHARS} characters"
                )));
            }
            Some(v) if is_decimal(v.trim()) && (kind == "PQ" || !v.contains('.')) => {
                p.value = Some(Value::Quantity {
                    value: v.trim().to_owned(),
                    unit: get("unit").filter(|u| !u.is_empty() && u != "1"),
                });
            }
            None if null => {}
            _ => {
                return Err(Reason::BadValue(format!(
                    "`{item}` {kind} value is not a number"
                )));
            }
        },
        "CD" | "CO" | "CE" | "CV" | "CS" => match (get("code"), get("codeSystem")) {
            (Some(code), Some(system)) if !code.trim().is_empty() => {
                p.value = Some(Value::Coded {
                    code: code.trim().to_owned(),
                    system,
                    display: get("displayName"),
                });
            }
            (None, _) if null => {}
            (_, None) if kind != "CS" => {
                return Err(Reason::BadValue(format!(
                    "`{item}` {kind} value has no codeSystem"
                )));
            }
            _ => {
                return Err(Reason::BadValue(format!(
                    "`{item}` {kind} value has no code"
                )));
            }
        },
        "ST" | "ED" => p.text = Some(String::new()),
        other => {
            return Err(Reason::BadValue(format!(
                "`{item}` has unsupported value type `{other}`"
            )));
        }
    }
    Ok(())
}

fn close(state: &mut State) -> Result<(), Reason> {
    let closing_value = state.ends_with(&["observation", "value"]);
    let closing_obs = state.ends_with(&["observation"]) && state.in_body();
    let closing_rel = state.ends_with(&["entryRelationship"]);
    if closing_value {
        if let Some(p) = state.open.last_mut() {
            if let Some(text) = p.text.take().filter(|t| !t.trim().is_empty()) {
                p.value = Some(Value::Text(text));
            }
        }
    } else if closing_obs {
        if let Some(p) = state.open.pop() {
            finish_observation(state, p)?;
        }
    } else if closing_rel {
        state.relations.pop();
    }
    state.stack.pop();
    Ok(())
}

fn finish_observation(state: &mut State, p: Pending) -> Result<(), Reason> {
    let is_item = p.system.as_deref().is_none_or(|s| s == ITEM_CODE_OID);
    let had_children = !p.children.is_empty();
    let mut header = None;
    let mut all = Vec::new();
    if is_item {
        let Some(code) = p.code.filter(|c| !c.is_empty()) else {
            return Err(Reason::BadValue("observation has no item code".into()));
        };
        if code.len() != 17 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Reason::BadValue(format!(
                "item code `{code}` is not 17 characters"
            )));
        }
        if let Some(value) = p.value {
            all.push(Observation {
                item_code: code.clone(),
                display: p.display,
                value,
                group: None,
                relation: p.relation,
            });
        }
        header = Some(code);
    }
    all.extend(p.children);
    if let Some(parent) = state.open.last_mut() {
        // Nested: hand everything to the enclosing observation.
        parent.children.extend(all);
        return Ok(());
    }
    // Top level: an observation with members names the series group.
    let group = header.filter(|_| had_children);
    for mut o in all {
        o.group.clone_from(&group);
        state.observations.push(o);
    }
    Ok(())
}

fn finish(state: State, fallback_id: &str) -> Result<CheckupDocument, Reason> {
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
    let birth = parse_date(&birth_raw)
        .ok_or_else(|| Reason::Field("birthTime is not a date (YYYYMMDD)".into()))?;
    let sex_raw = required(state.sex, "administrativeGenderCode")?;
    let sex = Sex::parse(&sex_raw)
        .ok_or_else(|| Reason::Field("administrativeGenderCode is not 1 or 2".into()))?;
    let exam_raw = required(state.exam_date, "exam date (serviceEvent/effectiveTime)")?;
    let exam_date: NaiveDate = parse_date(&exam_raw)
        .ok_or_else(|| Reason::Field(format!("exam date `{exam_raw}` is not a date")))?;
    Ok(CheckupDocument {
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
        observations: state.observations,
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

    fn doc(target: &str, body: &str) -> String {
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
        let d = parse_checkup(doc(TARGET, &body).as_bytes(), "root/DATA/h1.xml").unwrap();
        assert_eq!(d.document_id, "root/DATA/h1.xml");
        assert_eq!(d.exam_date.to_string(), "2024-06-01");
        assert_eq!(d.identity.symbol, "");
        assert_eq!(d.observations.len(), 2, "the null PQ has no result");
        assert_eq!(d.observations[1].value, Value::Text("a & bあ".into()));
    }

    #[test]
    fn undeclared_entity_is_malformed_not_expanded() {
        let body = obs("9N051000000000049", r#"<value xsi:type="ST">&xxe;</value>"#);
        let r = parse_checkup(doc(TARGET, &body).as_bytes(), "x");
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
        ] {
            let body = obs("9N001000000000001", value);
            match parse_checkup(doc(TARGET, &body).as_bytes(), "x") {
                Err(Reason::BadValue(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{value}: {other:?}"),
            }
        }
        let short = obs("9N001", r#"<value xsi:type="ST">x</value>"#);
        assert!(matches!(
            parse_checkup(doc(TARGET, &short).as_bytes(), "x"),
            Err(Reason::BadValue(_))
        ));
    }

    #[test]
    fn record_target_and_fields() {
        let two = format!("{TARGET}{TARGET}");
        assert!(matches!(
            parse_checkup(doc(&two, "").as_bytes(), "x"),
            Err(Reason::RecordTarget(_))
        ));
        let no_birth = TARGET.replace(r#"<birthTime value="19700101"/>"#, "");
        match parse_checkup(doc(&no_birth, "").as_bytes(), "x") {
            Err(Reason::Field(m)) => assert!(m.contains("birthTime")),
            other => panic!("{other:?}"),
        }
        let bad_insurer = TARGET.replace("１３８０１６", "13801A");
        assert!(matches!(
            parse_checkup(doc(&bad_insurer, "").as_bytes(), "x"),
            Err(Reason::Field(_))
        ));
    }

    #[test]
    fn deep_nesting_refused() {
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        let body = format!(r#"<text xmlns="urn:x">{deep}</text>"#);
        let r = parse_checkup(doc(TARGET, &body).as_bytes(), "x");
        assert!(matches!(r, Err(Reason::MalformedXml(m)) if m.contains("deeper")));
    }
}
