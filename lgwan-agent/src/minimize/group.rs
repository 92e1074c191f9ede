//! Series groups (一連検査グループ) in a checkup record: the head Observation of each
//! group, after JP-CLINS eCheckup's `JP_ObservationGroup_eCheckupGeneral`, and how its
//! members hang in it.

use crate::domain::Observation;
use crate::item_table;

use super::{ITEM_CODE_SYSTEM, json_str, stable_uuid};

/// FHIR system URI of JP-CLINS eCheckup's series-group codes (健診一連検査グループコード).
pub const JP_CLINS_GROUP_SYSTEM: &str =
    "http://jpfhir.jp/fhir/eCheckup/CodeSystem/observationGroup-codes";
/// URL of JP-CLINS eCheckup's extension on `Observation.hasMember` giving a member's
/// relation to its series group (`COMP`, `RSON`), spelled as the IG defines it.
pub const GROUP_RELATIONSHIP_EXTENSION: &str =
    "http://jpfhir.jp/fhir/Common/Extension/StructureDefinition/observatioGroupRelationship";

/// Writes the head of series group `group`, after JP-CLINS eCheckup's
/// `JP_ObservationGroup_eCheckupGeneral`: an Observation with no `value[x]` and no
/// `category`, whose `code` is the group and whose `hasMember` lists every result of
/// the group in the record, each with its relation to the group (`COMP`, `RSON`) in
/// JP-CLINS's `observationGroupRelationship` extension. The group's own item (its
/// 実施理由, 撮影年月日, …) is one of those members and keeps its value there, as
/// JP-CLINS records a group's 実施理由: a member Observation related by `RSON`.
///
/// The code is the group id in the MHLW item code system, as the CDA codes a group's
/// container, without a display (the table's display of that code names the group's
/// own item, not the group), plus JP-CLINS's group code where its code system has
/// one ([`jp_clins_group`]); the text is the group's name from the item table.
pub(super) fn write_group_head<'a>(
    out: &mut Vec<u8>,
    url: &str,
    date: &str,
    group: &str,
    members: impl Iterator<Item = (&'a Observation, &'a str)>,
) {
    out.extend_from_slice(br#"{"fullUrl":"#);
    json_str(out, url);
    out.extend_from_slice(
        br#","resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"#,
    );
    json_str(out, ITEM_CODE_SYSTEM);
    out.extend_from_slice(br#","code":"#);
    json_str(out, group);
    out.push(b'}');
    if let Some((code, display)) = jp_clins_group(group) {
        out.extend_from_slice(br#",{"system":"#);
        json_str(out, JP_CLINS_GROUP_SYSTEM);
        out.extend_from_slice(br#","code":"#);
        json_str(out, code);
        out.extend_from_slice(br#","display":"#);
        json_str(out, display);
        out.push(b'}');
    }
    out.extend_from_slice(br#"],"text":"#);
    json_str(out, &group_text(group));
    out.extend_from_slice(br#"},"effectiveDateTime":"#);
    json_str(out, date);
    out.extend_from_slice(br#","hasMember":["#);
    for (k, (member, member_url)) in members.enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.push(b'{');
        if let Some(relation) = group_relation(member, group) {
            out.extend_from_slice(br#""extension":[{"url":"#);
            json_str(out, GROUP_RELATIONSHIP_EXTENSION);
            out.extend_from_slice(br#","valueCode":"#);
            json_str(out, relation);
            out.extend_from_slice(b"}],");
        }
        out.extend_from_slice(br#""reference":"#);
        json_str(out, member_url);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}}");
}

/// How `member` hangs in `group`: the `typeCode` of its `entryRelationship`, else
/// (the group's own item when the document makes it the container, which hangs in no
/// relationship) the item table's relation, when the item table puts it in this group.
/// Only the codes JP-CLINS's value set has (`COMP`, `RSON`).
fn group_relation<'a>(member: &'a Observation, group: &str) -> Option<&'a str> {
    member
        .relation
        .as_deref()
        .or_else(|| {
            item_table::row(&member.item_code)
                .filter(|r| r.group == Some(group))
                .and_then(|r| r.relation)
        })
        .filter(|r| matches!(*r, "COMP" | "RSON"))
}

/// The text of a group head's code: the group's name from the item table
/// ([`item_table::group_name`]), else its id.
fn group_text(group: &str) -> String {
    match item_table::group_name(group) {
        Some(name) => format!("{name}（一連検査グループ）"),
        None => format!("一連検査グループ {group}"),
    }
}

/// JP-CLINS eCheckup's code and display for an MHLW series group, where its code system
/// `observationGroup-codes` (健診一連検査グループコード, v1.5.0, itself marked a partial
/// sample) has one: the first five characters of the group id. It has none for the chest
/// X-ray groups of the item table (`9N211…`, `9N226…`: JP-CLINS splits chest X-ray by
/// cancer screening and general checkup instead), for the indirect upper-GI X-ray
/// (`9N261…`) and for the life-function group (`9N556…`); those heads carry the MHLW
/// group id only.
fn jp_clins_group(group: &str) -> Option<(&'static str, &'static str)> {
    match group {
        "3C015161002399949" => Some(("3C015", "血清クレアチニン検査")),
        "2A020161001930149" => Some(("2A020", "貧血検査")),
        "9A110161000000049" => Some(("9A110", "心電図検査")),
        "9E100161000000049" => Some(("9E100", "眼底検査")),
        "9N251161100000049" => Some(("9N251", "胸部CT直接・がん検診")),
        "9N256161100000049" => Some(("9N256", "上部消化管検査")),
        _ => None,
    }
}

/// A stable `urn:uuid:` for the head of series group `group` in the `category` record of
/// a document: named by the group, so the results keep the urls they have without heads.
pub(super) fn group_url(document_id: &str, category: &str, group: &str) -> String {
    stable_uuid(
        &[
            document_id.as_bytes(),
            category.as_bytes(),
            b"series-group",
            group.as_bytes(),
        ],
        &[],
    )
}

#[cfg(test)]
mod tests {
    use renkei_policies::Catalog;
    use serde_json::{Value as Json, json};

    use super::super::tests::doc;
    use super::super::{minimize_checkup, write_value};
    use super::*;
    use crate::domain::{CheckupDocument, Value};

    /// The results of one record, as the catalog sends them there, in document order.
    fn results_of<'a>(doc: &'a CheckupDocument, category: &str) -> Vec<&'a Observation> {
        let catalog = Catalog::embedded().unwrap();
        doc.observations
            .iter()
            .filter(|o| {
                catalog
                    .item(&o.item_code)
                    .is_some_and(|i| i.export && i.category == category)
            })
            .collect()
    }

    /// Checks a record against the results it was made from: every result is an entry
    /// with exactly its value, and each series group with results in the record has one
    /// head, placed before them, with no value and listing exactly those results.
    fn assert_record(results: &[&Observation], payload: &[u8]) {
        let bundle: Json = serde_json::from_slice(payload).unwrap();
        let entries = bundle["entry"].as_array().unwrap();
        let is_head = |e: &Json| e["resource"].get("hasMember").is_some();
        let (heads, rows): (Vec<_>, Vec<_>) =
            entries.iter().enumerate().partition(|(_, e)| is_head(e));
        assert_eq!(rows.len(), results.len(), "one entry per result: {bundle}");
        for ((_, row), obs) in rows.iter().zip(results) {
            let r = &row["resource"];
            assert_eq!(r["code"]["coding"][0]["code"], obs.item_code.as_str());
            let mut want = br#"{"code":0"#.to_vec();
            write_value(&mut want, &obs.value);
            want.push(b'}');
            let want: Json = serde_json::from_slice(&want).unwrap();
            let values = |o: &Json| -> Vec<(String, Json)> {
                o.as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| k.starts_with("value"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            assert_eq!(values(r), values(&want), "the value of `{}`", obs.item_code);
            assert_eq!(values(r).len(), 1);
        }
        let mut groups: Vec<&str> = results.iter().filter_map(|o| o.group.as_deref()).collect();
        groups.sort_unstable();
        groups.dedup();
        assert_eq!(heads.len(), groups.len(), "one head per group: {bundle}");
        for group in groups {
            let (at, head) = heads
                .iter()
                .find(|(_, h)| h["resource"]["code"]["coding"][0]["code"] == group)
                .unwrap_or_else(|| panic!("no head for `{group}`: {bundle}"));
            let h = &head["resource"];
            assert_eq!(h["code"]["coding"][0]["system"], ITEM_CODE_SYSTEM);
            let keys: Vec<&String> = h.as_object().unwrap().keys().collect();
            assert!(
                keys.iter()
                    .all(|k| !k.starts_with("value") && *k != "category"),
                "the head of `{group}` carries {keys:?}"
            );
            let listed: Vec<&Json> = h["hasMember"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| &m["reference"])
                .collect();
            let members: Vec<(usize, &Json)> = rows
                .iter()
                .zip(results)
                .filter(|(_, o)| o.group.as_deref() == Some(group))
                .map(|((i, e), _)| (*i, &e["fullUrl"]))
                .collect();
            let want: Vec<&Json> = members.iter().map(|(_, url)| *url).collect();
            assert_eq!(listed, want, "the members of `{group}`");
            assert!(members.iter().all(|(i, _)| i > at), "the head comes first");
        }
    }

    #[test]
    fn series_groups_have_a_head_without_value_and_every_member() {
        let catalog = Catalog::embedded().unwrap();
        let mut doc = doc();
        // The 対象者 too, hanging by RSON, and a result of another group.
        doc.observations.push(Observation {
            item_code: "3C015161602399911".into(),
            display: None,
            value: Value::Coded {
                code: "1".into(),
                system: "1.2.392.200119.6.18110".into(),
                display: None,
            },
            group: Some("3C015161002399949".into()),
            relation: Some("RSON".into()),
            effective: None,
        });
        doc.observations.push(Observation {
            item_code: "2A030000001930101".into(),
            display: None,
            value: Value::Quantity {
                value: "13.9".into(),
                unit: Some("g/dL".into()),
            },
            group: Some("2A020161001930149".into()),
            relation: Some("COMP".into()),
            effective: None,
        });
        let m = minimize_checkup(&doc, &catalog);
        let results: Vec<_> = m
            .records
            .iter()
            .filter(|r| r.category != "checkup.attendance")
            .collect();
        assert_eq!(results.len(), 4);
        for r in results {
            assert_record(&results_of(&doc, &r.category), &r.payload);
        }
        let kidney = m
            .records
            .iter()
            .find(|r| r.category == "checkup.urine-kidney")
            .unwrap();
        let bundle: Json = serde_json::from_slice(&kidney.payload).unwrap();
        let head = &bundle["entry"][0]["resource"];
        assert_eq!(
            head["code"],
            json!({"coding": [
                {"system": ITEM_CODE_SYSTEM, "code": "3C015161002399949"},
                {"system": JP_CLINS_GROUP_SYSTEM, "code": "3C015", "display": "血清クレアチニン検査"}
            ], "text": "血清クレアチニン（一連検査グループ）"})
        );
        assert_eq!(head["effectiveDateTime"], "2025-03-31");
        // The 実施理由 is a member with its value, related by RSON (the item table's
        // relation: as the container it hangs in no relationship); the others as the
        // document relates them.
        let relation = |k: usize| &head["hasMember"][k]["extension"][0];
        assert_eq!(relation(0)["url"], GROUP_RELATIONSHIP_EXTENSION);
        let relations: Vec<&Json> = (0..3).map(|k| &relation(k)["valueCode"]).collect();
        assert_eq!(relations, ["RSON", "COMP", "RSON"]);
        let reason = &bundle["entry"][1]["resource"];
        assert_eq!(reason["code"]["coding"][0]["code"], "3C015161002399949");
        assert_eq!(reason["valueString"], "理由");

        // A group without JP-CLINS code, and a relation JP-CLINS has no code for.
        let xray = Observation {
            item_code: "9N206160800000049".into(),
            display: None,
            value: Value::Text("所見なし".into()),
            group: Some("9N211161100000049".into()),
            relation: Some("SPRT".into()),
            effective: None,
        };
        let mut out = Vec::new();
        let members = [(&xray, "urn:uuid:m")].into_iter();
        write_group_head(
            &mut out,
            "urn:uuid:h",
            "2025-03-31",
            "9N211161100000049",
            members,
        );
        let head: Json = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            head["resource"]["code"]["coding"].as_array().unwrap().len(),
            1
        );
        assert_eq!(
            head["resource"]["code"]["text"],
            "胸部エックス線検査（直接撮影）（一連検査グループ）"
        );
        assert_eq!(
            head["resource"]["hasMember"],
            json!([{"reference": "urn:uuid:m"}])
        );
    }

    /// The check above fails on a head with a value, on a missing member, on a missing
    /// head and on a result that lost its value.
    #[test]
    fn the_record_check_catches_heads_with_values_and_missing_members() {
        let catalog = Catalog::embedded().unwrap();
        let doc = doc();
        let kidney = minimize_checkup(&doc, &catalog)
            .records
            .into_iter()
            .find(|r| r.category == "checkup.urine-kidney")
            .unwrap();
        let results = results_of(&doc, "checkup.urine-kidney");
        assert_record(&results, &kidney.payload);
        let bundle: Json = serde_json::from_slice(&kidney.payload).unwrap();
        let broken = |edit: &dyn Fn(&mut Json)| {
            let mut b = bundle.clone();
            edit(&mut b);
            let bytes = serde_json::to_vec(&b).unwrap();
            std::panic::catch_unwind(|| assert_record(&results, &bytes)).is_err()
        };
        assert!(broken(
            &|b| b["entry"][0]["resource"]["valueString"] = json!("理由")
        ));
        assert!(broken(&|b| {
            b["entry"][0]["resource"]["hasMember"]
                .as_array_mut()
                .unwrap()
                .pop();
        }));
        assert!(broken(&|b| {
            b["entry"].as_array_mut().unwrap().remove(0);
        }));
        assert!(broken(&|b| {
            b["entry"][1]["resource"]
                .as_object_mut()
                .unwrap()
                .remove("valueString");
        }));
    }
}
