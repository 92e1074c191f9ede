//! The results in the body of a 特定保健指導 document (`hg08_V08.xsd`): each session of
//! guidance is an `act` whose `code` is the session's form (支援形態), whose
//! `effectiveTime` is its date and whose `performer` held it; the session's results
//! (minutes, measurements, lifestyle changes) hang under it as observations, and the
//! guidance-wide items (保健指導区分, the plan's goals) stand as observations of their
//! own. Which act is which session comes from the item table (`XMLhg18tab`, see
//! [`crate::item_table::guidance`]): its form's code system, and for 支援A and 支援B,
//! which share one, the codes the table lists for each.
//!
//! An act is read as its session's form, date and performer items, each an
//! observation dated with the act's date like the results under it. Observations in
//! the moods the table uses (`EVN` results, `INT` plans, `GOL` goals) are read; any
//! other mood (a proposal, a request) is skipped with all it holds. A negated act,
//! observation or relationship is refused rather than misread, as in checkups.

use chrono::NaiveDate;

use crate::domain::{Observation, Value, parse_ts_date};
use crate::item_table::guidance::{self, GUIDANCE_ITEM_OID, PERFORMER_OID};
use crate::quarantine::Reason;
use crate::xml::{self, Attrs};

use super::value::{OpenText, ValueStart, of_table_type, start_value};

/// An open `act`.
#[derive(Debug, Default)]
struct Act {
    depth: usize,
    code: Option<String>,
    system: Option<String>,
    /// The first date its `effectiveTime` gives (`@value`, then `low`, `center`).
    date: Option<NaiveDate>,
    performer: Option<String>,
}

/// An open `observation`. Its `displayName` is not kept: the catalog names every item,
/// and a document's own text is not let through under an exported item.
#[derive(Debug, Default)]
struct Pending {
    depth: usize,
    code: Option<String>,
    system: Option<String>,
    values: Vec<Value>,
    text: Option<OpenText>,
}

/// The reader of a guidance document's body.
#[derive(Debug, Default)]
pub(super) struct GuidanceBody {
    acts: Vec<Act>,
    open: Vec<Pending>,
    /// Depth of the act or observation being skipped (a mood that is not a record).
    skip: Option<usize>,
    observations: Vec<Observation>,
    /// Values coded in another code system than the guidance items: read past, counted.
    unread: usize,
}

fn last(stack: &[String], n: usize) -> Option<&str> {
    stack
        .len()
        .checked_sub(n + 1)
        .and_then(|i| stack.get(i))
        .map(String::as_str)
}

fn negated(attrs: &Attrs<'_>, what: &str) -> Result<(), Reason> {
    match xml::token(attrs, "negationInd") {
        Some("true") => Err(Reason::BadValue(format!(
            "a negated {what} (negationInd) is not read as a record"
        ))),
        _ => Ok(()),
    }
}

/// Checks a value against the item table's data type (数字 a number, コード a code,
/// 漢字 text, 年月日 a date): a value of another type is refused, never exported under
/// the item (text under a number item would carry free text past the catalog's rule
/// that free text stays inside LGWAN). An item the table does not know is left to the
/// catalog, which does not export it.
fn check_type(code: &str, value: &Value) -> Result<(), Reason> {
    let Some(item) = guidance::item(code) else {
        return Ok(());
    };
    let fits = match item.kind {
        "数字" => matches!(value, Value::Quantity { .. }),
        "コード" => matches!(value, Value::Coded { .. }),
        "漢字" => matches!(value, Value::Text(_)),
        "年月日" => matches!(value, Value::Date { .. }),
        _ => true,
    };
    of_table_type(code, item.name, item.kind, fits)
}

/// A coded value without the document's display text.
fn strip_display(value: Value) -> Value {
    match value {
        Value::Coded { code, system, .. } => Value::Coded {
            code,
            system,
            display: None,
        },
        other => other,
    }
}

impl GuidanceBody {
    /// The element at the top of `stack` (local names, root first) starts.
    pub(super) fn start(&mut self, stack: &[String], attrs: &Attrs<'_>) -> Result<(), Reason> {
        if self.skip.is_some() {
            return Ok(());
        }
        let depth = stack.len();
        let name = last(stack, 0).unwrap_or_default();
        let parent = last(stack, 1).unwrap_or_default();
        match (parent, name) {
            (_, "entryRelationship") => negated(attrs, "entryRelationship")?,
            (_, "act") => {
                negated(attrs, "act")?;
                if !matches!(xml::token(attrs, "moodCode"), None | Some("EVN" | "INT")) {
                    self.skip = Some(depth);
                    return Ok(());
                }
                self.acts.push(Act {
                    depth,
                    ..Act::default()
                });
            }
            (_, "observation") => {
                negated(attrs, "observation")?;
                if !matches!(
                    xml::token(attrs, "moodCode"),
                    None | Some("EVN" | "INT" | "GOL")
                ) {
                    self.skip = Some(depth);
                    return Ok(());
                }
                self.open.push(Pending {
                    depth,
                    ..Pending::default()
                });
            }
            ("observation", "code") => {
                if let Some(p) = self.open.last_mut().filter(|p| p.depth + 1 == depth) {
                    let null = xml::token(attrs, "nullFlavor").is_some();
                    p.code = xml::token(attrs, "code")
                        .filter(|c| !null && !c.is_empty())
                        .map(str::to_owned);
                    p.system = xml::token(attrs, "codeSystem").map(str::to_owned);
                }
            }
            ("observation", "value") => {
                if let Some(p) = self.open.last_mut().filter(|p| p.depth + 1 == depth) {
                    let item = p.code.as_deref().unwrap_or("(no code)");
                    match start_value(item, attrs)? {
                        ValueStart::Nothing => {}
                        ValueStart::Empty => self.unread += 1,
                        ValueStart::Value(v) => p.values.push(v),
                        ValueStart::Text => p.text = Some(OpenText::at(depth)),
                    }
                }
            }
            ("act", "code") => {
                if let Some(a) = self.acts.last_mut().filter(|a| a.depth + 1 == depth) {
                    a.code = xml::token(attrs, "code")
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned);
                    a.system = xml::token(attrs, "codeSystem").map(str::to_owned);
                }
            }
            ("act", "effectiveTime") | ("effectiveTime", "low" | "center") => {
                let at = if name == "effectiveTime" { 1 } else { 2 };
                if let Some(a) = self
                    .acts
                    .last_mut()
                    .filter(|a| a.depth + at == depth && a.date.is_none())
                {
                    if let Some(raw) = xml::get(attrs, "value") {
                        a.date = Some(parse_ts_date(raw).ok_or_else(|| {
                            Reason::BadValue(format!("session date `{raw}` is not a date"))
                        })?);
                    }
                }
            }
            ("assignedEntity", "code") if last(stack, 2) == Some("performer") => {
                // Only a code of the table's system says who held the session.
                let system = xml::token(attrs, "codeSystem");
                if let Some(a) = self
                    .acts
                    .last_mut()
                    .filter(|a| a.depth + 3 == depth && system.is_none_or(|s| s == PERFORMER_OID))
                {
                    a.performer = xml::token(attrs, "code")
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether character data inside the element at `depth` is part of a value.
    pub(super) fn wants_text(&self, depth: usize) -> bool {
        self.skip.is_none()
            && self
                .open
                .last()
                .and_then(|p| p.text.as_ref())
                .is_some_and(|t| t.wants(depth))
    }

    /// Character data inside the element at `depth`.
    pub(super) fn text(&mut self, depth: usize, more: &str) -> Result<(), Reason> {
        let Some(p) = self.open.last_mut() else {
            return Ok(());
        };
        let item = p.code.as_deref().unwrap_or("(no code)");
        match p.text.as_mut() {
            Some(text) => text.push(depth, more, item),
            None => Ok(()),
        }
    }

    /// The element at the top of `stack` ends.
    pub(super) fn end(&mut self, stack: &[String]) -> Result<(), Reason> {
        let depth = stack.len();
        if let Some(skipped) = self.skip {
            if depth == skipped {
                self.skip = None;
            }
            return Ok(());
        }
        match last(stack, 0).unwrap_or_default() {
            "observation" if self.open.last().is_some_and(|p| p.depth == depth) => {
                if let Some(p) = self.open.pop() {
                    self.finish_observation(p)?;
                }
            }
            "value" => {
                if let Some(p) = self.open.last_mut().filter(|p| p.depth + 1 == depth) {
                    // Blank text without a nullFlavor says nothing: counted.
                    match p.text.take().map(OpenText::finish) {
                        Some(Some(value)) => p.values.push(value),
                        Some(None) => self.unread += 1,
                        None => {}
                    }
                }
            }
            "act" if self.acts.last().is_some_and(|a| a.depth == depth) => {
                if let Some(a) = self.acts.pop() {
                    self.finish_act(a)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Every record, in document order, and how many values were read past because
    /// their code is in another code system.
    pub(super) fn into_observations(self) -> (Vec<Observation>, usize) {
        (self.observations, self.unread)
    }

    /// The date of the innermost open act, if it gave one.
    fn session_date(&self) -> Option<NaiveDate> {
        self.acts.iter().rev().find_map(|a| a.date)
    }

    fn push(&mut self, code: &str, display: Option<String>, value: Value, date: Option<NaiveDate>) {
        self.observations.push(Observation {
            item_code: code.to_owned(),
            display,
            value,
            group: None,
            relation: None,
            effective: date,
        });
    }

    fn finish_observation(&mut self, p: Pending) -> Result<(), Reason> {
        if p.system.as_deref().is_some_and(|s| s != GUIDANCE_ITEM_OID) {
            // Another code system is not a guidance item: read past, counted with the
            // items not exported.
            self.unread += p.values.len();
            return Ok(());
        }
        let Some(code) = p.code else {
            return match p.values.is_empty() {
                true => Ok(()),
                false => Err(Reason::BadValue(
                    "observation has a value but no item code".into(),
                )),
            };
        };
        if code.len() != 10 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Reason::BadValue(format!(
                "guidance item code `{code}` is not 10 digits"
            )));
        }
        let date = self.session_date();
        for value in p.values {
            check_type(&code, &value)?;
            self.push(&code, None, strip_display(value), date);
        }
        Ok(())
    }

    fn finish_act(&mut self, a: Act) -> Result<(), Reason> {
        let (Some(code), Some(system)) = (a.code, a.system) else {
            return Ok(());
        };
        if !guidance::is_session_system(&system) {
            // Not a session of guidance (another section's act): read past.
            return Ok(());
        }
        let Some(session) = guidance::session(&system, &code) else {
            return Err(Reason::BadValue(format!(
                "act code `{code}` is not a session form the item table lists for {system}"
            )));
        };
        let date = a.date.or_else(|| self.session_date());
        self.push(
            session.form,
            None,
            Value::Coded {
                code,
                system,
                display: None,
            },
            date,
        );
        if let (Some(item), Some(day)) = (session.date, a.date) {
            self.push(item, None, Value::Date { date: day }, date);
        }
        if let (Some(item), Some(performer)) = (session.performer, a.performer) {
            self.push(
                item,
                None,
                Value::Coded {
                    code: performer,
                    system: PERFORMER_OID.to_owned(),
                    display: None,
                },
                date,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_guidance;
    use super::super::tests::doc;
    use crate::domain::Value;
    use crate::quarantine::Reason;

    fn act(mood: &str, code: &str, system: &str, inner: &str) -> String {
        format!(
            r#"<entry><act classCode="ACT" moodCode="{mood}"><code code="{code}" codeSystem="{system}"/>{inner}</act></entry>"#
        )
    }

    fn obs(mood: &str, code: &str, value: &str) -> String {
        format!(
            r#"<entryRelationship typeCode="COMP"><observation classCode="OBS" moodCode="{mood}"><code code="{code}"/>{value}</observation></entryRelationship>"#
        )
    }

    const WEIGHT: &str = r#"<value xsi:type="PQ" value="70.5" unit="kg"/>"#;

    #[test]
    fn support_a_and_b_share_a_system_and_are_told_apart_by_code() {
        let body = act(
            "EVN",
            "4",
            "1.2.392.200119.6.1113",
            r#"<effectiveTime><low value="20240801"/></effectiveTime>"#,
        ) + &act(
            "EVN",
            "5",
            "1.2.392.200119.6.1113",
            r#"<effectiveTime value="20240815"/>"#,
        );
        let d = parse_guidance(doc(&body).as_bytes(), "x").unwrap();
        let codes: Vec<&str> = d
            .observations
            .iter()
            .map(|o| o.item_code.as_str())
            .collect();
        assert_eq!(
            codes,
            ["1032100012", "1032100011", "1032200012", "1032200011"],
            "支援A (電話A) then 支援B (電話B), each with its date"
        );
        assert_eq!(d.kind, crate::domain::DocumentKind::Guidance);
    }

    #[test]
    fn goals_and_plans_are_read_proposals_are_not() {
        let body = act(
            "INT",
            "1021000000",
            "1.2.392.200119.6.1006",
            &(obs("GOL", "1021001032", WEIGHT) + &obs("PRP", "1021001031", WEIGHT)),
        );
        let d = parse_guidance(doc(&body).as_bytes(), "x").unwrap();
        assert_eq!(d.observations.len(), 1);
        assert_eq!(d.observations[0].item_code, "1021001032");
        assert_eq!(
            d.observations[0].effective, None,
            "a plan has no session date"
        );
        let proposed = act(
            "PRP",
            "1",
            "1.2.392.200119.6.3005",
            &obs("EVN", "1042001032", WEIGHT),
        );
        let d = parse_guidance(doc(&proposed).as_bytes(), "x").unwrap();
        assert!(d.observations.is_empty(), "{:?}", d.observations);
    }

    #[test]
    fn a_value_in_another_code_system_is_counted_not_read() {
        let loinc = r#"<entryRelationship typeCode="COMP"><observation classCode="OBS" moodCode="EVN"><code code="29463-7" codeSystem="2.16.840.1.113883.6.1"/><value xsi:type="PQ" value="70.5" unit="kg"/></observation></entryRelationship>"#;
        let body = act(
            "INT",
            "1021000000",
            "1.2.392.200119.6.1006",
            &(obs("GOL", "1021001032", WEIGHT) + loinc),
        );
        let d = parse_guidance(doc(&body).as_bytes(), "x").unwrap();
        assert_eq!(d.observations.len(), 1);
        assert_eq!(d.unread_values, 1);
    }

    #[test]
    fn what_cannot_be_read_as_a_record_is_refused_by_name() {
        for (body, needle) in [
            (
                act("EVN", "9", "1.2.392.200119.6.3005", ""),
                "act code `9` is not a session form",
            ),
            (
                act("EVN", "1", "1.2.392.200119.6.3005", r#"<effectiveTime value="2024-13-40"/>"#),
                "session date `2024-13-40` is not a date",
            ),
            (
                act("EVN", "1", "1.2.392.200119.6.3005", &obs("EVN", "10420010", WEIGHT)),
                "guidance item code `10420010` is not 10 digits",
            ),
            (
                r#"<entry><act classCode="ACT" moodCode="EVN" negationInd="true"><code code="1" codeSystem="1.2.392.200119.6.3005"/></act></entry>"#.to_owned(),
                "negated act",
            ),
            (
                // Free text under a number item (支援Aの実施時間).
                act(
                    "EVN",
                    "4",
                    "1.2.392.200119.6.1113",
                    &obs("EVN", "1032100013", r#"<value xsi:type="ST">見本さんと電話</value>"#),
                ),
                "another type than the item table's 数字",
            ),
        ] {
            match parse_guidance(doc(&body).as_bytes(), "x") {
                Err(Reason::BadValue(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_session_dates_its_results_and_other_systems_are_read_past() {
        let inner = r#"<effectiveTime value="20241101"/><performer><assignedEntity><id nullFlavor="NI"/><code code="3" codeSystem="1.2.392.200119.6.3020"/></assignedEntity></performer>"#
            .to_owned()
            + &obs("EVN", "1042001032", WEIGHT)
            + r#"<entryRelationship typeCode="COMP"><observation classCode="OBS" moodCode="EVN"><code code="X" codeSystem="9.9"/><value xsi:type="ST">other</value></observation></entryRelationship>"#;
        let d = parse_guidance(
            doc(&act("EVN", "1", "1.2.392.200119.6.3005", &inner)).as_bytes(),
            "x",
        )
        .unwrap();
        let date = chrono::NaiveDate::from_ymd_opt(2024, 11, 1);
        assert_eq!(d.observations.len(), 4, "{:?}", d.observations);
        assert!(d.observations.iter().all(|o| o.effective == date));
        let performer = d
            .observations
            .iter()
            .find(|o| o.item_code == "1042000015")
            .unwrap();
        assert!(matches!(&performer.value, Value::Coded { code, .. } if code == "3"));
    }
}
