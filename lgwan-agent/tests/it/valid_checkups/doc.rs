//! What a random checkup document holds ([`Doc`], made by the [`doc`] strategy
//! from the item table's items and series groups) and its frame (header, sections)
//! as [`Doc::xml`] writes it; [`super::write`] writes the entries. Every choice is
//! one the schema allows: series groups with the group id as the container's code
//! and with a null code or none, `codeSystem` written or left to its default,
//! padded tokens, numbers in every `real` form, `referenceRange`, `methodCode`,
//! `interpretationCode`, `author`, comments, CDATA, character references, a BOM,
//! CRLF line ends, namespace prefixes and a re-declared default namespace.

use std::fmt::Write as _;

use proptest::collection::vec;
use proptest::prelude::*;

use super::TABLE;
use super::write::W;

/// Texts of ST values, written escaped, as CDATA or as character references.
pub(super) const TEXTS: &[&str] = &[
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
pub(super) const DISPLAYS: &[&str] = &["身長", "A&B <検査>", "改行\nあり", "タブ\tあり"];
pub(super) const NULLS: &[&str] = &["NI", "NA", "UNK", "OTH", "ASKU", "NAV", "MSK"];
pub(super) const CODES: &[&str] = &["1", "2", "3", " 1 "];

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
    pub(super) bom: bool,
    pub(super) crlf: bool,
    pub(super) decl: u8,
    pub(super) ns: Ns,
    pub(super) xsi: &'static str,
    pub(super) comments: bool,
    pub(super) indent: bool,
}

/// Optional parts of an observation.
#[derive(Clone, Debug)]
pub(super) struct Deco {
    pub(super) system: bool,
    pub(super) pad: bool,
    pub(super) display: Option<usize>,
    pub(super) id: bool,
    pub(super) text: bool,
    pub(super) status: bool,
    pub(super) time: bool,
    pub(super) interpretation: bool,
    pub(super) method: Option<bool>,
    pub(super) author: bool,
    pub(super) range: Option<bool>,
    pub(super) negation: bool,
}

/// One `value`: how it is written is read per the item's data type.
#[derive(Clone, Debug)]
pub(super) struct Val {
    pub(super) null: Option<usize>,
    pub(super) number: u32,
    pub(super) scale: u32,
    pub(super) form: u8,
    pub(super) code: usize,
    pub(super) system: bool,
    pub(super) display: bool,
    pub(super) other_type: bool,
    pub(super) text: Vec<(usize, u8)>,
    pub(super) comment: bool,
}

/// An observation of an item; `item` picks a row (or a member of a group).
#[derive(Clone, Debug)]
pub(super) struct Obs {
    pub(super) item: usize,
    pub(super) values: Vec<Val>,
    pub(super) deco: Deco,
}

/// How a member hangs under its container.
#[derive(Clone, Debug)]
pub(super) struct Rel {
    pub(super) sequence: bool,
    pub(super) separatable: bool,
    pub(super) context: bool,
    pub(super) inversion: bool,
    pub(super) negation: bool,
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
    pub(super) style: Style,
    pub(super) exam_low: bool,
    pub(super) narrative: bool,
    pub(super) sections: Vec<Vec<(u8, u8, Entry)>>,
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
