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
#[derive(Clone, Copy, Debug)]
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
    let date = v.date;
    header(buf, p, v, "010")?;
    buf.extend_from_slice(
        r#"  <component>
    <structuredBody>
      <component>
        <section>
        <code code="01010" codeSystem="1.2.392.200119.6.1010"/>
        <title>特定健診情報</title>
"#
        .as_bytes(),
    );
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

/// Writes one 特定保健指導 document (`hg08`) into `buf`: the first interview on the
/// visit's date, a telephone support session on `supported` and the evaluation on
/// `evaluated`, with the plan's goals, as acts and observations coded by `XMLhg18tab`.
pub(super) fn guidance_xml(
    buf: &mut Vec<u8>,
    rng: &mut Rng,
    p: &Person,
    v: &Visit<'_>,
    supported: &str,
    evaluated: &str,
) -> io::Result<()> {
    header(buf, p, v, "020")?;
    const ITEM: &str = "1.2.392.200119.6.1006";
    let level = rng.pick(&["1", "2"]);
    let stage = rng.pick(&["2", "3", "4"]);
    let minutes = rng.pick(&["20", "30", "40"]);
    let waist = 85.0 + 10.0 * rng.unit();
    let weight = 60.0 + 25.0 * rng.unit();
    let change = |rng: &mut Rng| rng.pick(&["0", "1", "1", "2"]);
    let (diet, activity) = (change(rng), change(rng));
    let smoking = rng.pick(&["1", "3"]);
    let performer = |code: &str| {
        format!(
            r#"<performer><assignedEntity><id nullFlavor="NI"/><code code="{code}" codeSystem="1.2.392.200119.6.3020"/></assignedEntity></performer>"#
        )
    };
    let obs = |mood: &str, code: &str, value: String| {
        format!(
            r#"<entryRelationship typeCode="COMP"><observation classCode="OBS" moodCode="{mood}"><code code="{code}" codeSystem="{ITEM}"/>{value}</observation></entryRelationship>"#
        )
    };
    let pq = |v: f64, unit: &str| format!(r#"<value xsi:type="PQ" value="{v:.1}" unit="{unit}"/>"#);
    let cd = |code: &str, system: &str| {
        format!(r#"<value xsi:type="CD" code="{code}" codeSystem="{system}"/>"#)
    };
    write!(
        buf,
        r#"  <component>
    <structuredBody>
      <component><section><code code="01" codeSystem="1.2.392.200119.6.1010"/><title>指導共通情報</title>
        <entry><observation classCode="OBS" moodCode="EVN"><code code="1020000001" codeSystem="{ITEM}"/>{}</observation></entry>
        <entry><observation classCode="OBS" moodCode="EVN"><code code="1020000002" codeSystem="{ITEM}"/>{}</observation></entry>
        <entry><observation classCode="OBS" moodCode="EVN"><code code="1020000003" codeSystem="{ITEM}"/><value xsi:type="ST">"#,
        cd(level, "1.2.392.200119.6.3001"),
        cd(stage, "1.2.392.200119.6.3002"),
    )?;
    esc(buf, &format!("{}さんの生活改善コース", p.name));
    write!(
        buf,
        r#"</value></observation></entry>
      </section></component>
      <component><section><code code="02" codeSystem="1.2.392.200119.6.1010"/><title>初回面接</title>
        <entry><act classCode="ACT" moodCode="EVN"><code code="1" codeSystem="1.2.392.200119.6.18140"/><effectiveTime value="{}"/>{}{}</act></entry>
        <entry><act classCode="ACT" moodCode="INT"><code code="1021000000" codeSystem="{ITEM}"/>{}{}{}</act></entry>
      </section></component>
      <component><section><code code="04" codeSystem="1.2.392.200119.6.1010"/><title>継続支援</title>
        <entry><act classCode="ACT" moodCode="EVN"><code code="4" codeSystem="1.2.392.200119.6.1113"/><effectiveTime value="{supported}"/>{}{}{}</act></entry>
      </section></component>
      <component><section><code code="06" codeSystem="1.2.392.200119.6.1010"/><title>最終評価</title>
        <entry><act classCode="ACT" moodCode="EVN"><code code="1" codeSystem="1.2.392.200119.6.3005"/><effectiveTime value="{evaluated}"/>{}{}{}{}{}{}</act></entry>
      </section></component>
    </structuredBody>
  </component>
</ClinicalDocument>
"#,
        v.date,
        performer("2"),
        obs(
            "EVN",
            "1022000013",
            format!(r#"<value xsi:type="PQ" value="{minutes}" unit="min"/>"#)
        ),
        obs(
            "INT",
            "1021000020",
            r#"<value xsi:type="PQ" value="12" unit="wk"/>"#.to_owned()
        ),
        obs("GOL", "1021001031", pq(waist - 3.0, "cm")),
        obs("GOL", "1021001032", pq(weight - 2.0, "kg")),
        performer("2"),
        obs(
            "EVN",
            "1032100013",
            r#"<value xsi:type="PQ" value="10" unit="min"/>"#.to_owned()
        ),
        obs(
            "EVN",
            "1032100014",
            r#"<value xsi:type="INT" value="30"/>"#.to_owned()
        ),
        performer("3"),
        obs("EVN", "1042001031", pq(waist - 2.0, "cm")),
        obs("EVN", "1042001032", pq(weight - 1.5, "kg")),
        obs("EVN", "1042001042", cd(diet, "1.2.392.200119.6.3010")),
        obs("EVN", "1042001041", cd(activity, "1.2.392.200119.6.3010")),
        obs("EVN", "1042001043", cd(smoking, "1.2.392.200119.6.3011")),
    )
}

/// The header of a document: its id, the person (with the name and address the
/// agent must drop), the provider, and `documentationOf/serviceEvent` with the
/// visit's date (`service`: 010 checkup, 020 guidance).
fn header(buf: &mut Vec<u8>, p: &Person, v: &Visit<'_>, service: &str) -> io::Result<()> {
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
      <code code="{service}" codeSystem="1.2.392.200119.6.1002"/>
      <effectiveTime value="{date}"/>
    </serviceEvent>
  </documentationOf>
"#,
        p.birth
    )
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
