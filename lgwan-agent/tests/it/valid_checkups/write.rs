//! Random checkup documents that `hc08_V08.xsd` accepts: what one holds ([`Doc`],
//! made by the [`doc`] strategy from the item table's items and series groups)
//! and how it is written ([`Doc::xml`]), in every serialization the schema and
//! XML allow for a result: series groups with the group id as the container's
//! code and with a null code, `codeSystem` written or left to its default,
//! padded tokens, numbers in every `real` form, `referenceRange`, `methodCode`,
//! `interpretationCode`, `author`, comments, CDATA, character references, a BOM,
//! CRLF line ends and namespace prefixes.

use std::fmt::Write as _;

use proptest::collection::vec;
use proptest::prelude::*;

use super::TABLE;
use super::simple::{ITEM_OID, Row};

/// Texts of ST values, written escaped, as CDATA or as character references.
const TEXTS: &[&str] = &[
    "腎機能確認のため",
    "a & b < c > d",
    "所見なし\n経過観察",
    "  前後に空白  ",
    "\"引用\"と'アポストロフィ'",
    "]]",
    "タブ\tあり",
    "CR\rのみ",
    " ",
];
/// `displayName`s; a literal tab or line end in an attribute reads as a space.
const DISPLAYS: &[&str] = &["身長", "A&B <検査>", "改行\nあり", "タブ\tあり"];
const NULLS: &[&str] = &["NI", "NA", "UNK", "OTH", "ASKU", "NAV", "MSK"];
const CODES: &[&str] = &["1", "2", "3", " 1 "];

/// Namespace style of a document.
#[derive(Clone, Copy, Debug)]
pub(super) enum Ns {
    /// `xmlns="urn:hl7-org:v3"`, no prefixes.
    Default,
    /// Every element `v3:`.
    Prefixed,
    /// `v3:` at the root; entries re-declare the default namespace or a new prefix.
    Mixed,
}

/// How a document is serialized.
#[derive(Clone, Debug)]
pub(super) struct Style {
    bom: bool,
    crlf: bool,
    decl: u8,
    ns: Ns,
    xsi: &'static str,
    comments: bool,
    indent: bool,
}

/// Optional parts of an observation.
#[derive(Clone, Debug)]
pub(super) struct Deco {
    system: bool,
    pad: bool,
    display: Option<usize>,
    id: bool,
    text: bool,
    status: bool,
    time: bool,
    interpretation: bool,
    method: Option<bool>,
    author: bool,
    range: Option<bool>,
    negation: bool,
}

/// One `value`: how it is written is read per the item's data type.
#[derive(Clone, Debug)]
pub(super) struct Val {
    null: Option<usize>,
    number: u32,
    scale: u32,
    form: u8,
    code: usize,
    system: bool,
    display: bool,
    other_type: bool,
    text: Vec<(usize, u8)>,
    comment: bool,
}

/// An observation of an item; `item` picks a row (or a member of a group).
#[derive(Clone, Debug)]
pub(super) struct Obs {
    item: usize,
    values: Vec<Val>,
    deco: Deco,
}

/// How a member hangs under its container.
#[derive(Clone, Debug)]
pub(super) struct Rel {
    sequence: bool,
    separatable: bool,
    context: bool,
    inversion: bool,
    negation: bool,
}

/// The container of a series group.
#[derive(Clone, Copy, Debug)]
pub(super) enum Layout {
    /// The group id is the container's code (and its value).
    Coded,
    /// `<code nullFlavor="…"/>`, with or without `codeSystem`.
    Null(usize, bool),
    /// `<code/>`: no code at all.
    NoCode,
}

/// One `entry`.
#[derive(Clone, Debug)]
pub(super) enum Entry {
    Single(Obs),
    Group {
        group: usize,
        layout: Layout,
        head: Obs,
        members: Vec<(Rel, Obs)>,
    },
}

/// A document: its style, exam date form, and sections of entries.
#[derive(Clone, Debug)]
pub(super) struct Doc {
    style: Style,
    exam_low: bool,
    narrative: bool,
    sections: Vec<Vec<(u8, u8, Entry)>>,
}

fn style() -> impl Strategy<Value = Style> {
    let ns = prop_oneof![Just(Ns::Default), Just(Ns::Prefixed), Just(Ns::Mixed)];
    (
        any::<[bool; 4]>(),
        0u8..3,
        ns,
        prop::sample::select(&["xsi", "i"][..]),
    )
        .prop_map(|([bom, crlf, comments, indent], decl, ns, xsi)| Style {
            bom,
            crlf,
            decl,
            ns,
            xsi,
            comments,
            indent,
        })
}

fn deco() -> impl Strategy<Value = Deco> {
    (
        any::<[bool; 9]>(),
        prop::option::of(0..DISPLAYS.len()),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(
                [
                    system,
                    pad,
                    id,
                    text,
                    status,
                    time,
                    interpretation,
                    author,
                    negation,
                ],
                display,
                method,
                range,
            )| Deco {
                system,
                pad,
                display,
                id,
                text,
                status,
                time,
                interpretation,
                method,
                author,
                range,
                negation,
            },
        )
}

fn val() -> impl Strategy<Value = Val> {
    (
        prop::option::weighted(0.15, 0..NULLS.len()),
        (0u32..200_000, 0u32..4, 0u8..6),
        (0..CODES.len(), any::<[bool; 4]>()),
        vec((0..TEXTS.len(), 0u8..3), 1..4),
    )
        .prop_map(
            |(
                null,
                (number, scale, form),
                (code, [system, display, other_type, comment]),
                text,
            )| Val {
                null,
                number,
                scale,
                form,
                code,
                system,
                display,
                other_type,
                text,
                comment,
            },
        )
}

fn obs() -> impl Strategy<Value = Obs> {
    (0usize..1000, vec(val(), 0..3), deco()).prop_map(|(item, values, deco)| Obs {
        item,
        values,
        deco,
    })
}

fn rel() -> impl Strategy<Value = Rel> {
    any::<[bool; 5]>().prop_map(
        |[sequence, separatable, context, inversion, negation]| Rel {
            sequence,
            separatable,
            context,
            inversion,
            negation,
        },
    )
}

fn entry() -> impl Strategy<Value = Entry> {
    let layout = prop_oneof![
        Just(Layout::Coded),
        (0..NULLS.len(), any::<bool>()).prop_map(|(n, s)| Layout::Null(n, s)),
        Just(Layout::NoCode),
    ];
    prop_oneof![
        obs().prop_map(Entry::Single),
        (
            0..TABLE.groups.len(),
            layout,
            obs(),
            vec((rel(), obs()), 0..5)
        )
            .prop_map(|(group, layout, head, members)| Entry::Group {
                group,
                layout,
                head,
                members,
            }),
    ]
}

/// A random document.
pub(super) fn doc() -> impl Strategy<Value = Doc> {
    (
        style(),
        any::<[bool; 2]>(),
        vec(vec((0u8..3, 0u8..3, entry()), 0..6), 1..3),
    )
        .prop_map(|(style, [exam_low, narrative], sections)| Doc {
            style,
            exam_low,
            narrative,
            sections,
        })
}

/// Escapes text for content and double-quoted attributes.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A writer of one document: the text, the prefix of `xsi:type` values, and
/// how many results it wrote.
struct W<'a> {
    out: String,
    style: &'a Style,
    /// Prefix of the HL7 namespace bound at the root (`v3:`), if any.
    root: &'static str,
    /// Prefix of the elements being written.
    prefix: &'static str,
    results: usize,
}

impl W<'_> {
    fn p(&self) -> &'static str {
        self.prefix
    }

    fn nl(&mut self) {
        if self.style.indent {
            self.out.push_str("\n  ");
        }
    }

    fn comment(&mut self, on: bool) {
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

    fn entry(&mut self, kind: u8, ns: u8, e: &Entry) {
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

impl Doc {
    /// The document's bytes and how many results it holds.
    pub(super) fn xml(&self) -> (Vec<u8>, usize) {
        let s = &self.style;
        let root = match s.ns {
            Ns::Default => "",
            Ns::Prefixed | Ns::Mixed => "v3:",
        };
        let mut w = W {
            out: String::new(),
            style: s,
            root,
            prefix: root,
            results: 0,
        };
        let p = root;
        match s.decl {
            1 => w.out.push_str("<?xml version=\"1.0\"?>\n"),
            2 => w
                .out
                .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            _ => {}
        }
        let ns = match root {
            "" => "xmlns".to_owned(),
            r => format!("xmlns:{}", r.trim_end_matches(':')),
        };
        let date = if self.exam_low {
            format!(
                r#"<{p}effectiveTime><{p}low value="20240601"/><{p}high value="20240602"/></{p}effectiveTime>"#
            )
        } else {
            format!(r#"<{p}effectiveTime value="20240601"/>"#)
        };
        let _ = write!(
            w.out,
            r#"<{p}ClinicalDocument {ns}="urn:hl7-org:v3" xmlns:{xsi}="http://www.w3.org/2001/XMLSchema-instance">
<{p}typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
<{p}id root="1.2.392.200119.6.102" extension="1311234567-20240601-00001"/>
<{p}code code="10" codeSystem="1.2.392.200119.6.1001"/>
<{p}effectiveTime value="20240601"/>
<{p}confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
<{p}recordTarget><{p}patientRole>
<{p}id root="1.2.392.200119.6.101" extension="06139623"/>
<{p}id root="1.2.392.200119.6.204" extension="見本199-66"/>
<{p}id root="1.2.392.200119.6.205" extension="7991982"/>
<{p}patient><{p}name>例示　秋絵</{p}name><{p}administrativeGenderCode code="2" codeSystem="1.2.392.200119.6.1104"/><{p}birthTime value="19560810"/></{p}patient>
</{p}patientRole></{p}recordTarget>
<{p}author><{p}time value="20240601"/><{p}assignedAuthor><{p}id root="1.2.392.200119.6.102" extension="1311234567"/></{p}assignedAuthor></{p}author>
<{p}custodian><{p}assignedCustodian><{p}representedCustodianOrganization><{p}id root="1.2.392.200119.6.102" extension="1311234567"/></{p}representedCustodianOrganization></{p}assignedCustodian></{p}custodian>
<{p}documentationOf><{p}serviceEvent><{p}code code="010" codeSystem="1.2.392.200119.6.1002"/>{date}</{p}serviceEvent></{p}documentationOf>
<{p}component><{p}structuredBody>"#,
            xsi = s.xsi,
        );
        for section in &self.sections {
            let _ = write!(
                w.out,
                r#"<{p}component><{p}section><{p}code code="01010" codeSystem="1.2.392.200119.6.1010"/><{p}title>特定健診情報</{p}title>"#
            );
            if self.narrative {
                let _ = write!(
                    w.out,
                    "<{p}text><{p}paragraph>身長 160.5 cm</{p}paragraph></{p}text>"
                );
            }
            for (kind, ns, e) in section {
                w.nl();
                w.comment(true);
                w.entry(*kind, *ns, e);
            }
            let _ = write!(w.out, "</{p}section></{p}component>");
        }
        let _ = write!(
            w.out,
            "</{p}structuredBody></{p}component>\n</{p}ClinicalDocument>\n"
        );
        let mut text = w.out;
        if s.crlf {
            text = text.replace('\n', "\r\n");
        }
        let mut bytes = if s.bom {
            vec![0xEF, 0xBB, 0xBF]
        } else {
            Vec::new()
        };
        bytes.extend_from_slice(text.as_bytes());
        (bytes, w.results)
    }
}
