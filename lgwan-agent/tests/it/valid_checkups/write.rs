//! Writing the entries of a random checkup document: each observation with its
//! optional parts in schema order, its values in the form the item's data type
//! and the drawn variant give, its members, and the namespace prefix in force.

use std::fmt::Write as _;

use super::TABLE;
use super::doc::{CODES, DISPLAYS, Entry, Layout, NULLS, Ns, Obs, Rel, Style, TEXTS, Val};
use super::simple::{ITEM_OID, Row};

/// Escapes text for content and double-quoted attributes.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A writer of one document: the text, the prefix of `xsi:type` values, and
/// how many results it wrote.
pub(super) struct W<'a> {
    pub(super) out: String,
    pub(super) style: &'a Style,
    /// Prefix of the HL7 namespace bound at the root (`v3:`), if any.
    pub(super) root: &'static str,
    /// Prefix of the elements being written.
    pub(super) prefix: &'static str,
    pub(super) results: usize,
}

impl W<'_> {
    fn p(&self) -> &'static str {
        self.prefix
    }

    pub(super) fn nl(&mut self) {
        if self.style.indent {
            self.out.push_str("\n  ");
        }
    }

    pub(super) fn comment(&mut self, on: bool) {
        if on && self.style.comments {
            self.out.push_str("<!-- 備考: <value> ではない -->");
        }
    }

    fn xsi_type(&self, kind: &str) -> String {
        format!(r#" {}:type="{}{kind}""#, self.style.xsi, self.root)
    }

    fn number(&self, v: &Val, integer: bool) -> String {
        let scale = if integer { 0 } else { v.scale };
        let whole = v.number / 10u32.pow(scale);
        let frac = v.number % 10u32.pow(scale);
        let plain = match scale {
            0 => whole.to_string(),
            s => format!("{whole}.{frac:0width$}", width = s as usize),
        };
        let digits = v.number.to_string();
        match v.form {
            1 => format!("+{plain}"),
            2 => format!(" {plain}\t"),
            3 if integer => format!("00{plain}"),
            3 => format!("{}E-{scale}", v.number),
            4 if whole == 0 && scale > 0 && !integer => plain.trim_start_matches('0').to_owned(),
            4 if scale == 0 && !integer => format!("{plain}."),
            5 if !integer => format!("0.{digits}E{}", digits.len() as i64 - i64::from(scale)),
            _ => plain,
        }
    }

    /// Writes a `value` of `row`'s type; counts it when it is a result.
    fn value(&mut self, row: &Row, v: &Val) {
        let kind = row.kind.as_str();
        let ty = match kind {
            "PQ" if v.other_type && v.scale == 0 => "INT",
            "CD" | "CO" if v.other_type => "CS",
            _ => kind,
        };
        if let Some(null) = v.null {
            let _ = write!(
                self.out,
                r#"<{}value{} nullFlavor="{}"/>"#,
                self.p(),
                self.xsi_type(ty),
                NULLS[null]
            );
            return;
        }
        let p = self.p();
        match ty {
            "PQ" | "INT" => {
                let number = self.number(v, ty == "INT");
                let _ = write!(
                    self.out,
                    r#"<{p}value{} value="{number}""#,
                    self.xsi_type(ty)
                );
                if let (Some(unit), "PQ") = (&row.ucum, ty) {
                    let pad = if v.form == 2 { " " } else { "" };
                    let _ = write!(self.out, r#" unit="{pad}{}""#, esc(unit));
                }
                self.out.push_str("/>");
                self.results += 1;
            }
            "ST" => {
                let _ = write!(self.out, "<{p}value{}>", self.xsi_type(ty));
                let mut text = String::new();
                for (i, &(t, how)) in v.text.iter().enumerate() {
                    let t = TEXTS[t];
                    match how {
                        0 => self.out.push_str(&esc(t)),
                        1 => {
                            let _ = write!(self.out, "<![CDATA[{t}]]>");
                        }
                        _ => t.chars().for_each(|c| {
                            let _ = write!(self.out, "&#x{:x};", c as u32);
                        }),
                    }
                    if i == 0 {
                        self.comment(v.comment);
                    }
                    // Literal CRs are line ends; a character reference is kept.
                    text.push_str(&if how == 2 {
                        t.to_owned()
                    } else {
                        t.replace('\r', "\n")
                    });
                }
                let _ = write!(self.out, "</{p}value>");
                if !text.trim().is_empty() {
                    self.results += 1;
                }
            }
            _ => {
                let _ = write!(
                    self.out,
                    r#"<{p}value{} code="{}""#,
                    self.xsi_type(ty),
                    CODES[v.code]
                );
                if ty != "CS" {
                    if v.system {
                        let _ =
                            write!(self.out, r#" codeSystem="{}""#, row.oid.as_deref().unwrap());
                    }
                    if v.display {
                        self.out.push_str(r#" displayName="はい""#);
                    }
                }
                self.out.push_str("/>");
                self.results += 1;
            }
        }
    }
}

impl W<'_> {
    /// Writes an observation of `row` (`None`: a group container without an
    /// item code, in `layout`), its members, and closes it.
    fn observation(
        &mut self,
        row: Option<&Row>,
        layout: Layout,
        o: &Obs,
        members: &[(&Row, &Rel, &Obs)],
        declare: Option<&'static str>,
    ) {
        let outer = self.prefix;
        if let Some(prefix) = declare {
            self.prefix = prefix;
        }
        let p = self.p();
        let d = &o.deco;
        let _ = write!(
            self.out,
            r#"<{p}observation classCode="OBS" moodCode="EVN""#
        );
        if let Some(prefix) = declare {
            let _ = write!(
                self.out,
                r#" xmlns:{}="urn:hl7-org:v3""#,
                prefix.trim_end_matches(':')
            );
        }
        if d.negation {
            self.out.push_str(r#" negationInd="false""#);
        }
        self.out.push('>');
        if d.id {
            let _ = write!(
                self.out,
                r#"<{p}id root="1.2.392.200119.6.102" extension="obs-{}"/>"#,
                o.item
            );
        }
        let _ = write!(self.out, "<{p}code");
        match (row, layout) {
            (Some(row), _) => {
                let pad = if d.pad { "\t" } else { "" };
                let _ = write!(self.out, r#" code="{pad}{}{pad}""#, row.code);
                if d.system {
                    let _ = write!(self.out, r#" codeSystem="{ITEM_OID}""#);
                }
            }
            (None, Layout::Null(null, system)) => {
                let _ = write!(self.out, r#" nullFlavor="{}""#, NULLS[null]);
                if system {
                    let _ = write!(self.out, r#" codeSystem="{ITEM_OID}""#);
                }
            }
            (None, _) => {}
        }
        if let Some(i) = d.display {
            let _ = write!(self.out, r#" displayName="{}""#, esc(DISPLAYS[i]));
        }
        self.out.push_str("/>");
        self.comment(true);
        if d.text {
            let _ = write!(
                self.out,
                "<{p}text>メモ: 1 &lt; 2<![CDATA[ & 3]]></{p}text>"
            );
        }
        if d.status {
            let _ = write!(self.out, r#"<{p}statusCode code="completed"/>"#);
        }
        if d.time {
            let _ = write!(self.out, r#"<{p}effectiveTime value="20240601"/>"#);
        }
        match row {
            Some(row) => o.values.iter().for_each(|v| self.value(row, v)),
            // A container without an item code holds no result of its own.
            None => {
                for _ in o.values.iter().filter(|v| v.null.is_some()) {
                    let _ = write!(
                        self.out,
                        r#"<{p}value{} nullFlavor="NI"/>"#,
                        self.xsi_type("ST")
                    );
                }
            }
        }
        if d.interpretation {
            let _ = write!(
                self.out,
                r#"<{p}interpretationCode code="H" codeSystem="2.16.840.1.113883.5.83"/>"#
            );
        }
        if let Some(system) = d.method {
            let _ = write!(self.out, r#"<{p}methodCode code="01""#);
            if system {
                self.out.push_str(r#" codeSystem="1.2.392.200119.6.1007""#);
            }
            self.out.push_str("/>");
        }
        if d.author {
            let _ = write!(
                self.out,
                r#"<{p}author><{p}time value="20240601"/><{p}assignedAuthor><{p}id nullFlavor="NI"/><{p}assignedPerson><{p}name>例示　医師</{p}name></{p}assignedPerson></{p}assignedAuthor></{p}author>"#
            );
        }
        for (row, r, m) in members {
            let relation = row.relation.as_deref().unwrap_or("COMP");
            let _ = write!(self.out, r#"<{p}entryRelationship typeCode="{relation}""#);
            for (on, attr) in [
                (r.inversion, r#" inversionInd="false""#),
                (r.context, r#" contextConductionInd="true""#),
                (r.negation, r#" negationInd="false""#),
            ] {
                if on {
                    self.out.push_str(attr);
                }
            }
            self.out.push('>');
            if r.sequence {
                let _ = write!(self.out, r#"<{p}sequenceNumber value="1"/>"#);
            }
            if r.separatable {
                let _ = write!(self.out, r#"<{p}seperatableInd value="false"/>"#);
            }
            self.observation(Some(row), Layout::Coded, m, &[], None);
            let _ = write!(self.out, "</{p}entryRelationship>");
        }
        match d.range {
            Some(true) => {
                let _ = write!(
                    self.out,
                    r#"<{p}referenceRange><{p}observationRange><{p}text>基準値</{p}text><{p}value{}>0.46-0.82</{p}value></{p}observationRange></{p}referenceRange>"#,
                    self.xsi_type("ST")
                );
            }
            Some(false) => {
                let _ = write!(
                    self.out,
                    r#"<{p}referenceRange><{p}observationRange><{p}value{}><{p}low value="1" unit="mg/dL"/><{p}high value="2" unit="mg/dL"/></{p}value></{p}observationRange></{p}referenceRange>"#,
                    self.xsi_type("IVL_PQ")
                );
            }
            None => {}
        }
        let _ = write!(self.out, "</{p}observation>");
        self.prefix = outer;
    }

    pub(super) fn entry(&mut self, kind: u8, ns: u8, e: &Entry) {
        let outer = self.prefix;
        let mut declare = None;
        let p = self.p();
        let _ = write!(self.out, "<{p}entry");
        if let Ns::Mixed = self.style.ns {
            match ns {
                0 => {
                    self.out.push_str(r#" xmlns="urn:hl7-org:v3""#);
                    self.prefix = "";
                }
                1 => declare = Some("cda:"),
                _ => {}
            }
        }
        match kind {
            1 => self.out.push_str(r#" typeCode="COMP""#),
            2 => self.out.push_str(r#" typeCode="DRIV""#),
            _ => {}
        }
        self.out.push('>');
        match e {
            Entry::Single(o) => {
                let row = &TABLE.rows[o.item % TABLE.rows.len()];
                self.observation(Some(row), Layout::Coded, o, &[], declare);
            }
            Entry::Group {
                group,
                layout,
                head,
                members,
            } => {
                let (id, items) = &TABLE.groups[*group];
                let head_row = TABLE.row(id).unwrap();
                // With the group id as the container's code, the id item is the container.
                let candidates: Vec<&Row> = match layout {
                    Layout::Coded => items.iter().filter(|r| r.code != *id).collect(),
                    _ => items.iter().collect(),
                };
                let members: Vec<(&Row, &Rel, &Obs)> = members
                    .iter()
                    .map(|(r, o)| (candidates[o.item % candidates.len()], r, o))
                    .collect();
                let row = matches!(layout, Layout::Coded).then_some(head_row);
                self.observation(row, *layout, head, &members, declare);
            }
        }
        let _ = write!(self.out, "</{p}entry>");
        self.prefix = outer;
    }
}
