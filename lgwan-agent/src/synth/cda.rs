//! One synthetic checkup as an HL7 CDA R2 document (`DATA/h….xml`), written into a
//! reused buffer.

use std::io::{self, Write};

use super::Rng;
use super::items::{Catalog, Gen, ITEM_OID, Item, code_display};
use super::person::{FAMILY, Person, full_width};
use crate::domain::Sex;

/// Writes `s` escaped for XML text and double-quoted attributes.
fn esc(buf: &mut Vec<u8>, s: &str) {
    let mut rest = s;
    while let Some(i) = rest.find(['&', '<', '>', '"']) {
        buf.extend_from_slice(rest.get(..i).unwrap_or_default().as_bytes());
        let entity = match rest.get(i..=i) {
            Some("&") => "&amp;",
            Some("<") => "&lt;",
            Some(">") => "&gt;",
            _ => "&quot;",
        };
        buf.extend_from_slice(entity.as_bytes());
        rest = rest.get(i + 1..).unwrap_or_default();
    }
    buf.extend_from_slice(rest.as_bytes());
}

/// The document being written: who made it, when, and its serial.
#[derive(Debug)]
pub(super) struct Visit<'a> {
    pub(super) provider: &'a str,
    pub(super) date: &'a str,
    pub(super) serial: usize,
    pub(super) full_width: bool,
}

impl Visit<'_> {
    pub(super) fn document_id(&self) -> String {
        format!("{}-{}-{:05}", self.provider, self.date, self.serial)
    }
}

/// Writes `<observation …><code …/><value …/>`, leaving the element open.
fn open_observation(
    buf: &mut Vec<u8>,
    rng: &mut Rng,
    item: &Item,
    gen_: Gen,
    system: bool,
) -> io::Result<()> {
    write!(
        buf,
        r#"<observation classCode="OBS" moodCode="EVN"><code code="{}""#,
        item.code
    )?;
    if system {
        write!(buf, r#" codeSystem="{ITEM_OID}""#)?;
    }
    buf.extend_from_slice(b" displayName=\"");
    esc(buf, item.name);
    buf.extend_from_slice(b"\"/>");
    match gen_ {
        Gen::Pq(lo, hi, decimals) => {
            let v = lo + (hi - lo) * rng.unit();
            write!(buf, r#"<value xsi:type="PQ" value="{v:.decimals$}""#)?;
            if !item.ucum.is_empty() {
                buf.extend_from_slice(b" unit=\"");
                esc(buf, item.ucum);
                buf.push(b'"');
            }
            buf.extend_from_slice(b"/>");
        }
        Gen::Code(codes) => {
            let code = rng.pick(codes);
            write!(
                buf,
                r#"<value xsi:type="{}" code="{code}" codeSystem="{}""#,
                item.kind, item.oid
            )?;
            if let Some(display) = code_display(item.oid, code) {
                write!(buf, r#" displayName="{display}""#)?;
            }
            buf.extend_from_slice(b"/>");
        }
        Gen::Text(texts) => {
            buf.extend_from_slice(br#"<value xsi:type="ST">"#);
            esc(buf, rng.pick(texts));
            buf.extend_from_slice(b"</value>");
        }
    }
    Ok(())
}

/// Writes one CDA checkup document into `buf`.
pub(super) fn checkup_xml(
    buf: &mut Vec<u8>,
    rng: &mut Rng,
    cat: &Catalog,
    p: &Person,
    v: &Visit<'_>,
) -> io::Result<()> {
    let (provider, date) = (v.provider, v.date);
    write!(
        buf,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root="1.2.392.200119.6.102" extension="{}"/>
  <code code="10" codeSystem="1.2.392.200119.6.1001"/>
  <effectiveTime value="{date}"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <recordTarget>
    <patientRole>
      <id root="1.2.392.200119.6.101" extension="{}"/>
      <id root="1.2.392.200119.6.204" extension=""#,
        v.document_id(),
        p.insurer
    )?;
    let (symbol, number) = if v.full_width {
        (full_width(&p.symbol), full_width(&p.number))
    } else {
        (p.symbol.clone(), p.number.clone())
    };
    esc(buf, &symbol);
    buf.extend_from_slice(b"\"/>\n      <id root=\"1.2.392.200119.6.205\" extension=\"");
    esc(buf, &number);
    buf.extend_from_slice(b"\"/>");
    if let Some(branch) = &p.branch {
        write!(
            buf,
            "\n      <id root=\"1.2.392.200119.6.211\" extension=\"{branch}\"/>"
        )?;
    }
    buf.extend_from_slice(b"\n      <addr>");
    esc(buf, &p.address);
    write!(
        buf,
        "<postalCode>{}</postalCode></addr>\n      <patient>\n        <name>",
        p.postal
    )?;
    esc(buf, &p.name);
    let sex = if p.sex == Sex::Male { 1 } else { 2 };
    write!(
        buf,
        r#"</name>
        <administrativeGenderCode code="{sex}" codeSystem="1.2.392.200119.6.1104"/>
        <birthTime value="{}"/>
      </patient>
    </patientRole>
  </recordTarget>
  <author>
    <time value="{date}"/>
    <assignedAuthor>
      <id root="1.2.392.200119.6.102" extension="{provider}"/>
      <representedOrganization><name>見本健診センター</name></representedOrganization>
    </assignedAuthor>
  </author>
  <custodian>
    <assignedCustodian>
      <representedCustodianOrganization><id root="1.2.392.200119.6.102" extension="{provider}"/></representedCustodianOrganization>
    </assignedCustodian>
  </custodian>
  <documentationOf>
    <serviceEvent>
      <code code="010" codeSystem="1.2.392.200119.6.1002"/>
      <effectiveTime value="{date}"/>
    </serviceEvent>
  </documentationOf>
  <component>
    <structuredBody>
      <component>
        <section>
        <code code="01010" codeSystem="1.2.392.200119.6.1010"/>
        <title>特定健診情報</title>
"#,
        p.birth
    )?;
    let second: &[(Item, Gen)] = if v.serial % 2 == 1 {
        &cat.second_bp
    } else {
        &[]
    };
    for (item, g) in cat.base.iter().chain(second) {
        buf.extend_from_slice(b"        <entry>");
        let system = rng.unit() >= 0.5;
        open_observation(buf, rng, item, *g, system)?;
        buf.extend_from_slice(b"</observation></entry>\n");
    }
    for ((head, g), members) in &cat.groups {
        buf.extend_from_slice(b"        <entry>");
        open_observation(buf, rng, head, *g, true)?;
        for (item, g) in members {
            write!(buf, r#"<entryRelationship typeCode="{}">"#, item.relation)?;
            open_observation(buf, rng, item, *g, true)?;
            buf.extend_from_slice(b"</observation></entryRelationship>");
        }
        buf.extend_from_slice(b"</observation></entry>\n");
    }
    buf.extend_from_slice(b"        <entry>");
    open_observation(
        buf,
        rng,
        &cat.doctor,
        Gen::Text(&["特記すべき所見なし"]),
        true,
    )?;
    write!(
        buf,
        r#"<author><time value="{date}"/><assignedAuthor><id nullFlavor="NI"/><assignedPerson><name>{}　医師</name></assignedPerson></assignedAuthor></author>"#,
        rng.pick(FAMILY)
    )?;
    buf.extend_from_slice(
        b"</observation></entry>\n        </section>\n      </component>\n    </structuredBody>\n  </component>\n</ClinicalDocument>\n",
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        let mut buf = Vec::new();
        esc(&mut buf, r#"a<b>&"c""#);
        assert_eq!(buf, b"a&lt;b&gt;&amp;&quot;c&quot;");
    }
}
