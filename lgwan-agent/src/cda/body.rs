//! The results in the body of a checkup document: the observations under
//! `structuredBody/component/section/entry` and their series groups
//! (一連検査グループ). `hc08_V08.xsd` allows a group in two layouts:
//! - the container observation carries the group id as its item code (and
//!   usually the group's 実施理由 as its value); the members hang under it as
//!   `entryRelationship`s;
//! - the container's `code` has only a `nullFlavor` (or no item code at all) and
//!   every item of the group, its 実施理由 and 対象者 (relation RSON) too, hangs
//!   under it.
//!
//! A container without an item code is never an observation itself: its members
//! are read exactly as top-level ones, each with the group id the item table
//! gives it. A container with an item code names the group of everything under
//! it, as before. Deeper nesting is flattened into the top-level entry's group;
//! `relation` is the `typeCode` of the `entryRelationship` an observation hangs
//! in. An observation whose `moodCode` is not `EVN` (a goal, an intent, a
//! proposal) is not a result and is skipped with all it holds; a negated one
//! (`negationInd="true"`, on it or on its relationship) cannot be read as a
//! result and is refused rather than misread.

use crate::domain::{ITEM_CODE_OID, Observation, Value};
use crate::item_table;
use crate::quarantine::Reason;
use crate::xml::{self, Attrs};

use super::value::{OpenText, ValueStart, of_table_type, start_value};

/// Longest `displayName` kept: the MHLW table's item names are far shorter.
const MAX_DISPLAY_BYTES: usize = 256;

/// What an element of the body is to the reader, from its and its parent's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Element {
    /// `entryRelationship`.
    Relationship,
    /// `observation`, under `entryRelationship` or not.
    Observation {
        /// Whether its parent is an `entryRelationship`.
        in_relationship: bool,
    },
    /// `observation/code`.
    Code,
    /// `observation/value`.
    Value,
    /// Anything else: read past.
    Other,
}

/// An observation being read.
#[derive(Debug, Default)]
struct Pending {
    /// `code@code`, whitespace collapsed, when the code is not null.
    code: Option<String>,
    /// `code@codeSystem`; absent means the XSD default, the item-code OID.
    system: Option<String>,
    display: Option<String>,
    values: Vec<Value>,
    /// An ST/ED value being read: the depth of its `value` element and its text.
    text: Option<OpenText>,
    relation: Option<String>,
    negated: bool,
    /// What the observations nested in it gave, in document order.
    children: Vec<Observation>,
}

/// The reader of the body's observations.
#[derive(Debug, Default)]
pub(super) struct Body {
    /// `typeCode` of each open `entryRelationship`.
    relations: Vec<Option<String>>,
    open: Vec<Pending>,
    /// Depth of the observation being skipped (its `moodCode` is not `EVN`).
    skip: Option<usize>,
    observations: Vec<Observation>,
    /// Values read past, counted with the items not exported: coded in another code
    /// system than the item codes, or saying nothing without a `nullFlavor`.
    unread: usize,
}

impl Body {
    /// An element at `depth` (1 for the root) starts.
    pub(super) fn start(
        &mut self,
        element: Element,
        depth: usize,
        attrs: &Attrs<'_>,
    ) -> Result<(), Reason> {
        if self.skip.is_some() {
            return Ok(());
        }
        match element {
            Element::Relationship => {
                if xml::token(attrs, "negationInd") == Some("true") {
                    return Err(Reason::BadValue(
                        "a negated entryRelationship (negationInd) is not read as a result".into(),
                    ));
                }
                let relation = xml::token(attrs, "typeCode").map(str::to_owned);
                self.relations.push(relation);
            }
            Element::Observation { in_relationship } => {
                // `moodCode` is required; a document without it is read as before.
                if xml::token(attrs, "moodCode").is_some_and(|m| m != "EVN") {
                    self.skip = Some(depth);
                    return Ok(());
                }
                let relation = match in_relationship {
                    true => self.relations.last().cloned().flatten(),
                    false => None,
                };
                self.open.push(Pending {
                    relation,
                    negated: xml::token(attrs, "negationInd") == Some("true"),
                    ..Pending::default()
                });
            }
            Element::Code => {
                if let Some(p) = self.open.last_mut() {
                    let null = xml::token(attrs, "nullFlavor").is_some();
                    p.code = xml::token(attrs, "code")
                        .filter(|c| !null && !c.is_empty())
                        .map(str::to_owned);
                    p.system = xml::token(attrs, "codeSystem").map(str::to_owned);
                    // A display name longer than any item name is not kept (it is copied
                    // into every value of the observation).
                    p.display = xml::get(attrs, "displayName")
                        .filter(|d| d.len() <= MAX_DISPLAY_BYTES)
                        .map(str::to_owned);
                }
            }
            Element::Value => {
                if let Some(p) = self.open.last_mut() {
                    let item = p.code.as_deref().unwrap_or("(no code)");
                    match start_value(item, attrs)? {
                        ValueStart::Nothing => {}
                        ValueStart::Empty => self.unread += 1,
                        ValueStart::Value(v) => p.values.push(v),
                        ValueStart::Text => p.text = Some(OpenText::at(depth)),
                    }
                }
            }
            Element::Other => {}
        }
        Ok(())
    }

    /// Whether character data inside the element at `depth` is part of a value:
    /// the text of an ST/ED `value` itself, not that of its children.
    pub(super) fn wants_text(&self, depth: usize) -> bool {
        self.skip.is_none()
            && self
                .open
                .last()
                .and_then(|p| p.text.as_ref())
                .is_some_and(|t| t.wants(depth))
    }

    /// Character data (unescaped text or CDATA) inside the element at `depth`.
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

    /// The element at `depth` ends.
    pub(super) fn end(&mut self, element: Element, depth: usize) -> Result<(), Reason> {
        if let Some(skipped) = self.skip {
            if depth == skipped {
                self.skip = None;
            }
            return Ok(());
        }
        match element {
            Element::Relationship => {
                self.relations.pop();
            }
            Element::Observation { .. } => {
                if let Some(p) = self.open.pop() {
                    self.finish(p)?;
                }
            }
            Element::Value => {
                if let Some(p) = self.open.last_mut() {
                    // Blank text without a nullFlavor says nothing: counted.
                    match p.text.take().map(OpenText::finish) {
                        Some(Some(value)) => p.values.push(value),
                        Some(None) => self.unread += 1,
                        None => {}
                    }
                }
            }
            Element::Code | Element::Other => {}
        }
        Ok(())
    }

    /// Every result, in document order, and how many values were read past because
    /// their code is in another code system.
    pub(super) fn into_observations(self) -> (Vec<Observation>, usize) {
        (self.observations, self.unread)
    }

    fn finish(&mut self, p: Pending) -> Result<(), Reason> {
        let is_item_system = p.system.as_deref().is_none_or(|s| s == ITEM_CODE_OID);
        let code = p.code.filter(|_| is_item_system);
        if p.negated {
            let item = code.as_deref().unwrap_or("(no code)");
            return Err(Reason::BadValue(format!(
                "`{item}` is negated (negationInd): a negated observation is not read as a result"
            )));
        }
        let mut all = Vec::with_capacity(p.values.len() + p.children.len());
        match &code {
            Some(code) => {
                if code.len() != 17 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(Reason::BadValue(format!(
                        "item code `{code}` is not 17 characters"
                    )));
                }
                for value in &p.values {
                    check_type(code, value)?;
                }
                all.extend(p.values.into_iter().map(|value| Observation {
                    item_code: code.clone(),
                    display: p.display.clone(),
                    value,
                    group: None,
                    relation: p.relation.clone(),
                    effective: None,
                }));
            }
            // A value in another code system is not a checkup item: read past, counted
            // with the items not exported.
            None if !is_item_system => self.unread += p.values.len(),
            None if p.values.is_empty() => {}
            None => {
                return Err(Reason::BadValue(
                    "observation has a value but no item code".into(),
                ));
            }
        }
        let had_members = !p.children.is_empty();
        all.extend(p.children);
        if let Some(parent) = self.open.last_mut() {
            // Nested: hand everything to the enclosing observation.
            parent.children.extend(all);
            return Ok(());
        }
        for mut o in all {
            o.group = match &code {
                // A top-level observation with members whose code is a series group's id
                // names the group.
                Some(header) if had_members && item_table::is_group(header) => Some(header.clone()),
                // An item standing alone is in no group.
                Some(_) if !had_members => None,
                // A container without an item code, or an item that is no group's id
                // with details under it (既往歴): the group the table gives, if any.
                _ => item_table::group_of(&o.item_code).map(str::to_owned),
            };
            self.observations.push(o);
        }
        Ok(())
    }
}

/// Checks a result against the item table's XML data type (PQ a number, CD/CO a code,
/// ST text): a value of another type is refused, never exported under the item (free
/// text under a number item would carry text past the catalog, which withholds names by
/// item). An item the table does not know is left to the catalog, which drops it.
fn check_type(code: &str, value: &Value) -> Result<(), Reason> {
    let Some(row) = item_table::row(code) else {
        return Ok(());
    };
    let fits = match row.kind {
        "PQ" => matches!(value, Value::Quantity { .. }),
        "CD" | "CO" => matches!(value, Value::Coded { .. }),
        "ST" => matches!(value, Value::Text(_)),
        _ => true,
    };
    of_table_type(code, row.name, row.kind, fits)
}

#[cfg(test)]
mod tests {
    use super::super::parse_checkup;
    use super::super::tests::doc;
    use super::*;

    /// The group's items by code: (item code, value, group, relation).
    fn read(body: &str) -> Vec<(String, Value, Option<String>, Option<String>)> {
        let d = parse_checkup(doc(body).as_bytes(), "x").unwrap();
        d.observations
            .into_iter()
            .map(|o| (o.item_code, o.value, o.group, o.relation))
            .collect()
    }

    fn member(relation: &str, code: &str, value: &str) -> String {
        format!(
            r#"<entryRelationship typeCode="{relation}"><observation classCode="OBS" moodCode="EVN"><code code="{code}"/>{value}</observation></entryRelationship>"#
        )
    }

    const REASON: &str = r#"<value xsi:type="ST">腎機能確認のため</value>"#;
    const TARGET: &str = r#"<value xsi:type="CD" code="1"/>"#;
    const CREATININE: &str = r#"<value xsi:type="PQ" value="0.84" unit="mg/dL"/>"#;

    /// The layout of issue 15: the container's code is only a nullFlavor, the
    /// group's 実施理由 and 対象者 hang under it by RSON, no code names its system.
    /// The old reader refused the document ("observation has no item code").
    #[test]
    fn null_coded_container_with_rson_members() {
        let body = format!(
            r#"<entry><observation classCode="OBS" moodCode="EVN"><code nullFlavor="NA"/>{}{}{}</observation></entry>"#,
            member("RSON", "3C015161002399949", REASON),
            member("RSON", "3C015161602399911", TARGET),
            member("COMP", "3C015000002327101", CREATININE),
        );
        let group = Some("3C015161002399949".to_owned());
        let rson = Some("RSON".to_owned());
        let got = read(&body);
        assert_eq!(got.len(), 3, "the container is no observation: {got:?}");
        assert_eq!(got[0].0, "3C015161002399949");
        assert_eq!((&got[0].2, &got[0].3), (&group, &rson));
        assert_eq!(
            got[1],
            (
                "3C015161602399911".to_owned(),
                Value::Coded {
                    code: "1".into(),
                    system: "1.2.392.200119.6.18110".into(),
                    display: None
                },
                group.clone(),
                rson
            )
        );
        assert_eq!((&got[2].2, got[2].3.as_deref()), (&group, Some("COMP")));
    }

    /// The same results in the layout with the group id as the container's code.
    #[test]
    fn coded_container_gives_the_same_groups() {
        let body = format!(
            r#"<entry><observation classCode="OBS" moodCode="EVN"><code code="3C015161002399949"/>{REASON}{}{}</observation></entry>"#,
            member("RSON", "3C015161602399911", TARGET),
            member("COMP", "3C015000002327101", CREATININE),
        );
        let got = read(&body);
        let groups: Vec<_> = got.iter().map(|o| o.2.as_deref()).collect();
        assert_eq!(groups, [Some("3C015161002399949"); 3]);
        assert_eq!(got[0].3, None, "the header hangs in no relationship");
    }

    /// An item that is not a series group's id, with its details under it (既往歴 and
    /// 具体的な既往歴): no group is made up for them.
    #[test]
    fn an_item_with_details_under_it_is_no_group() {
        let detail = r#"<value xsi:type="ST">高血圧症</value>"#;
        let body = format!(
            r#"<entry><observation classCode="OBS" moodCode="EVN"><code code="9N056000000000011"/><value xsi:type="CD" code="1"/>{}</observation></entry>"#,
            member("COMP", "9N056160400000049", detail),
        );
        let got = read(&body);
        let codes: Vec<_> = got.iter().map(|o| (o.0.as_str(), o.2.as_deref())).collect();
        assert_eq!(
            codes,
            [("9N056000000000011", None), ("9N056160400000049", None)]
        );
    }

    /// Values that say nothing without a `nullFlavor` saying why are counted with the
    /// items not exported; a `nullFlavor` is no result and is not counted.
    #[test]
    fn values_that_say_nothing_are_counted() {
        let body = r#"<entry><observation classCode="OBS" moodCode="EVN"><code code="9N006000000000001"/><value xsi:type="PQ" unit="kg"/></observation></entry><entry><observation classCode="OBS" moodCode="EVN"><code code="9N056000000000011"/><value xsi:type="CD" codeSystem="1.2.392.200119.6.2001" displayName="あり"/></observation></entry><entry><observation classCode="OBS" moodCode="EVN"><code code="9N061160800000049"/><value xsi:type="ST"> </value></observation></entry><entry><observation classCode="OBS" moodCode="EVN"><code code="9N001000000000001"/><value xsi:type="PQ" nullFlavor="NI"/></observation></entry>"#;
        let d = parse_checkup(doc(body).as_bytes(), "x").unwrap();
        assert!(d.observations.is_empty());
        assert_eq!(d.unread_values, 3);
    }

    /// A result coded in another code system is not a checkup item: it is not read as
    /// one, and it is counted so the import reports it with the items not exported.
    #[test]
    fn a_value_in_another_code_system_is_counted_not_read() {
        let loinc = r#"<entry><observation classCode="OBS" moodCode="EVN"><code code="2345-7" codeSystem="2.16.840.1.113883.6.1"/><value xsi:type="PQ" value="98" unit="mg/dL"/><value xsi:type="PQ" value="99" unit="mg/dL"/></observation></entry>"#;
        let item = r#"<entry><observation classCode="OBS" moodCode="EVN"><code code="9N006000000000001"/><value xsi:type="PQ" value="60" unit="kg"/></observation></entry>"#;
        let d = parse_checkup(doc(&format!("{loinc}{item}")).as_bytes(), "x").unwrap();
        let codes: Vec<_> = d
            .observations
            .iter()
            .map(|o| o.item_code.as_str())
            .collect();
        assert_eq!(codes, ["9N006000000000001"]);
        assert_eq!(d.unread_values, 2);
    }

    #[test]
    fn goals_are_skipped_and_negations_refused() {
        let goal = r#"<entry><observation classCode="OBS" moodCode="GOL"><code code="9N006000000000001"/><value xsi:type="PQ" value="60" unit="kg"/></observation></entry>"#;
        assert!(read(goal).is_empty());
        for negated in [
            r#"<entry><observation classCode="OBS" moodCode="EVN" negationInd="true"><code code="9N006000000000001"/></observation></entry>"#.to_owned(),
            format!(
                r#"<entry><observation classCode="OBS" moodCode="EVN"><code nullFlavor="NI"/>{}</observation></entry>"#,
                member("COMP\" negationInd=\"true", "3C015000002327101", CREATININE)
            ),
        ] {
            let r = parse_checkup(doc(&negated).as_bytes(), "x");
            assert!(matches!(r, Err(Reason::BadValue(m)) if m.contains("negated")));
        }
        // A value that no item code names is refused, not dropped.
        let orphan = r#"<entry><observation classCode="OBS" moodCode="EVN"><code nullFlavor="UNK"/><value xsi:type="PQ" value="1"/></observation></entry>"#;
        let r = parse_checkup(doc(orphan).as_bytes(), "x");
        assert!(matches!(r, Err(Reason::BadValue(m)) if m.contains("no item code")));
    }

    #[test]
    fn several_values_and_text_of_the_value_only() {
        let body = r#"<entry><observation classCode="OBS" moodCode="EVN"><code code="9N051000000000049"/><value xsi:type="ED">a<!-- c --><![CDATA[<b>]]><thumbnail>x</thumbnail></value><value xsi:type="ST">  </value><value xsi:type="ST">2</value><referenceRange><observationRange><value xsi:type="ST">ref</value></observationRange></referenceRange></observation></entry>"#;
        let values: Vec<Value> = read(body).into_iter().map(|o| o.1).collect();
        assert_eq!(
            values,
            [Value::Text("a<b>".into()), Value::Text("2".into())]
        );
    }
}
