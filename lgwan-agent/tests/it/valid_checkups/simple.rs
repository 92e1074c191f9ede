//! The deliberately simple reader the agent is held to: the whole document as a
//! tree (XML 1.0 line-end and attribute-value rules written out), then every
//! result found by walking the tree as the MHLW item table and `hc08_V08.xsd`
//! describe it. No streaming, no limits, no error handling: only valid input.

use std::collections::HashMap;

use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

const HL7: &[u8] = b"urn:hl7-org:v3";
const XSI: &[u8] = b"http://www.w3.org/2001/XMLSchema-instance";
/// The item-code system, the XSD default of `observation/code@codeSystem`.
pub(super) const ITEM_OID: &str = "1.2.392.200119.6.1005";

/// One row of the item table (`XMLhc18tab.utf8.csv`), as this test reads it.
#[derive(Clone, Debug)]
pub(super) struct Row {
    pub(super) code: String,
    pub(super) kind: String,
    pub(super) ucum: Option<String>,
    pub(super) group: Option<String>,
    pub(super) relation: Option<String>,
    pub(super) oid: Option<String>,
}

/// The item table: every row, and the series groups with their items.
#[derive(Debug)]
pub(super) struct Table {
    pub(super) rows: Vec<Row>,
    pub(super) groups: Vec<(String, Vec<Row>)>,
    by_code: HashMap<String, Row>,
}

impl Table {
    pub(super) fn load() -> Table {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../spec/tokutei-kenshin/XMLhc18tab.utf8.csv");
        let text = std::fs::read_to_string(path).unwrap();
        let cell =
            |cols: &[&str], i: usize| Some(cols[i].trim().to_owned()).filter(|c| !c.is_empty());
        let rows: Vec<Row> = text
            .lines()
            .skip(1)
            .map(|line| {
                let cols: Vec<&str> = line.split(',').collect();
                Row {
                    code: cols[3].to_owned(),
                    kind: cols[6].to_owned(),
                    ucum: cell(&cols, 10),
                    group: cell(&cols, 12),
                    relation: cell(&cols, 13),
                    oid: cell(&cols, 18),
                }
            })
            .collect();
        let mut groups: Vec<(String, Vec<Row>)> = Vec::new();
        for row in rows.iter().filter(|r| r.group.is_some()) {
            let id = row.group.clone().unwrap();
            match groups.iter_mut().find(|(g, _)| *g == id) {
                Some((_, members)) => members.push(row.clone()),
                None => groups.push((id, vec![row.clone()])),
            }
        }
        let by_code = rows.iter().map(|r| (r.code.clone(), r.clone())).collect();
        Table {
            rows,
            groups,
            by_code,
        }
    }

    pub(super) fn row(&self, code: &str) -> Option<&Row> {
        self.by_code.get(code)
    }
}

/// A value as this reader reads it; numbers compare by value.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Val {
    Number(f64, Option<String>),
    Code {
        code: String,
        system: String,
        display: Option<String>,
    },
    Text(String),
}

/// One result.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Found {
    pub(super) code: String,
    pub(super) display: Option<String>,
    pub(super) value: Val,
    pub(super) group: Option<String>,
    pub(super) relation: Option<String>,
}

struct El {
    ns: Vec<u8>,
    name: String,
    /// (namespace, local name, value).
    attrs: Vec<(Vec<u8>, String, String)>,
    kids: Vec<Node>,
}

enum Node {
    El(El),
    Text(String),
}

impl El {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(ns, n, _)| ns.is_empty() && n == name)
            .map(|(_, _, v)| v.as_str())
    }

    /// An attribute of a token type (`cs`, numbers): surrounding whitespace collapsed.
    fn token(&self, name: &str) -> Option<&str> {
        self.attr(name)
            .map(|v| v.trim_matches([' ', '\t', '\n', '\r']))
    }

    fn kids<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a El> + 'a {
        self.kids.iter().filter_map(move |k| match k {
            Node::El(e) if e.ns == HL7 && e.name == name => Some(e),
            _ => None,
        })
    }

    fn all<'a>(&'a self, name: &str, out: &mut Vec<&'a El>) {
        for k in &self.kids {
            if let Node::El(e) = k {
                if e.ns == HL7 && e.name == name {
                    out.push(e);
                }
                e.all(name, out);
            }
        }
    }
}

fn element(reader: &NsReader<&[u8]>, start: &BytesStart<'_>) -> El {
    let ns = match reader.resolve_element(start.name()).0 {
        ResolveResult::Bound(n) => n.as_ref().to_vec(),
        _ => Vec::new(),
    };
    let attrs = start
        .attributes()
        .map(|a| {
            let a = a.unwrap();
            let (ans, local) = reader.resolve_attribute(a.key);
            let ans = match ans {
                ResolveResult::Bound(n) => n.as_ref().to_vec(),
                _ => Vec::new(),
            };
            // XML 1.0 §3.3.3: a literal tab or line end in a value is a space.
            let raw = std::str::from_utf8(&a.value)
                .unwrap()
                .replace(['\t', '\n'], " ");
            let value = quick_xml::escape::unescape(&raw).unwrap().into_owned();
            (
                ans,
                String::from_utf8(local.as_ref().to_vec()).unwrap(),
                value,
            )
        })
        .collect();
    El {
        ns,
        name: String::from_utf8(start.local_name().as_ref().to_vec()).unwrap(),
        attrs,
        kids: Vec::new(),
    }
}

fn tree(bytes: &[u8]) -> El {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // XML 1.0 §2.11: CRLF and lone CR are read as LF.
    let text = std::str::from_utf8(bytes)
        .unwrap()
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let mut reader = NsReader::from_str(&text);
    let mut stack = vec![El {
        ns: Vec::new(),
        name: String::new(),
        attrs: Vec::new(),
        kids: Vec::new(),
    }];
    loop {
        let event = reader.read_event().unwrap();
        let node = match event {
            Event::Start(s) => {
                let e = element(&reader, &s);
                stack.push(e);
                continue;
            }
            Event::Empty(s) => Node::El(element(&reader, &s)),
            Event::End(_) => Node::El(stack.pop().unwrap()),
            Event::Text(t) => Node::Text(t.unescape().unwrap().into_owned()),
            Event::CData(c) => Node::Text(String::from_utf8(c.to_vec()).unwrap()),
            Event::Eof => break,
            _ => continue,
        };
        stack.last_mut().unwrap().kids.push(node);
    }
    stack.pop().unwrap()
}

/// The item code of an observation: `code@code`, unless the code is null or in
/// another system than the item codes (the default).
fn item_code(obs: &El) -> Option<String> {
    let code = obs.kids("code").next()?;
    let system = code.token("codeSystem").unwrap_or(ITEM_OID);
    let value = code.token("code").filter(|c| !c.is_empty())?;
    (code.attr("nullFlavor").is_none() && system == ITEM_OID).then(|| value.to_owned())
}

/// The results an observation holds itself: one per non-null `value`.
fn own(obs: &El, relation: Option<&str>, table: &Table) -> Vec<Found> {
    let Some(code) = item_code(obs) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for v in obs.kids("value") {
        if v.attr("nullFlavor").is_some() {
            continue;
        }
        let (_, _, kind) = v
            .attrs
            .iter()
            .find(|(ns, n, _)| ns == XSI && n == "type")
            .unwrap();
        let kind = kind.trim();
        let kind = kind.rsplit(':').next().unwrap();
        let value = match kind {
            "PQ" | "INT" => Val::Number(
                v.token("value").unwrap().parse().unwrap(),
                v.token("unit")
                    .filter(|u| !u.is_empty() && *u != "1")
                    .map(str::to_owned),
            ),
            "CD" | "CO" | "CE" | "CV" | "CS" => Val::Code {
                code: v.token("code").unwrap().to_owned(),
                system: v
                    .token("codeSystem")
                    .map(str::to_owned)
                    .or_else(|| table.row(&code)?.oid.clone())
                    .unwrap(),
                // A coded value's label stays inside LGWAN (docs/fhir.md).
                display: None,
            },
            "ST" | "ED" => {
                let text: String = v
                    .kids
                    .iter()
                    .filter_map(|k| match k {
                        Node::Text(t) => Some(t.as_str()),
                        Node::El(_) => None,
                    })
                    .collect();
                if text.trim().is_empty() {
                    continue;
                }
                Val::Text(text)
            }
            other => panic!("a value of type {other}"),
        };
        out.push(Found {
            code: code.clone(),
            display: obs
                .kids("code")
                .next()
                .unwrap()
                .attr("displayName")
                .map(str::to_owned),
            value,
            group: None,
            relation: relation.map(str::to_owned),
        });
    }
    out
}

/// The results of an observation and of everything hanging under it, in document order.
fn with_members(obs: &El, relation: Option<&str>, table: &Table, out: &mut Vec<Found>) {
    out.extend(own(obs, relation, table));
    for rel in obs.kids("entryRelationship") {
        for member in rel.kids("observation") {
            with_members(member, rel.token("typeCode"), table, out);
        }
    }
}

/// Every result of the document, in document order, with its series group: the
/// code of a top-level observation that has members and is a group's id in the item
/// table, none for a top-level observation alone, and otherwise (under a container
/// without an item code, or under an item that is no group's id) the group the item
/// table gives.
pub(super) fn read(bytes: &[u8], table: &Table) -> Vec<Found> {
    let root = tree(bytes);
    let mut entries = Vec::new();
    root.all("entry", &mut entries);
    let mut out = Vec::new();
    for entry in entries {
        for top in entry.kids("observation") {
            let head = item_code(top);
            let mut members = Vec::new();
            for rel in top.kids("entryRelationship") {
                for member in rel.kids("observation") {
                    with_members(member, rel.token("typeCode"), table, &mut members);
                }
            }
            let has_members = !members.is_empty();
            for mut found in own(top, None, table).into_iter().chain(members) {
                let table_group = table.row(&found.code).and_then(|r| r.group.clone());
                found.group = match &head {
                    // The head names the group when the table says it is a group's id.
                    Some(h)
                        if has_members
                            && table.row(h).and_then(|r| r.group.as_ref()) == Some(h) =>
                    {
                        Some(h.clone())
                    }
                    Some(_) if !has_members => None,
                    _ => table_group,
                };
                out.push(found);
            }
        }
    }
    out
}
