//! Safe XML reading shared by the CDA and index parsers: UTF-8 only, a DOCTYPE
//! (and with it any entity declaration) is refused outright, entities are never
//! expanded (only the five predefined ones and character references are
//! unescaped), and nesting depth is bounded.

use quick_xml::NsReader;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesStart};
use quick_xml::name::ResolveResult;

use crate::quarantine::Reason;

/// Deepest element nesting accepted.
pub(crate) const MAX_DEPTH: usize = 64;

/// The XML Schema instance namespace (`xsi:type`).
pub(crate) const XSI_NS: &[u8] = b"http://www.w3.org/2001/XMLSchema-instance";

/// Attributes as (namespace, local name, unescaped value).
pub(crate) type Attrs = Vec<(Vec<u8>, Vec<u8>, String)>;

/// Checks the bytes are UTF-8 and strips a UTF-8 byte-order mark.
pub(crate) fn utf8_text(bytes: &[u8]) -> Result<&str, Reason> {
    if bytes.starts_with(&[0xFE, 0xFF]) || bytes.starts_with(&[0xFF, 0xFE]) {
        return Err(Reason::Encoding(
            "UTF-16 is not accepted, only UTF-8".into(),
        ));
    }
    let bytes = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        Reason::Encoding(format!(
            "not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })
}

/// A namespace-aware reader over `text` that keeps whitespace and checks end tags.
pub(crate) fn reader(text: &str) -> NsReader<&[u8]> {
    let mut reader = NsReader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;
    reader
}

/// Refuses an XML declaration that names an encoding other than UTF-8.
pub(crate) fn check_decl(decl: &BytesDecl<'_>) -> Result<(), Reason> {
    match decl.encoding() {
        None => Ok(()),
        Some(Ok(enc))
            if enc.eq_ignore_ascii_case(b"utf-8") || enc.eq_ignore_ascii_case(b"utf8") =>
        {
            Ok(())
        }
        Some(Ok(enc)) => Err(Reason::Encoding(format!(
            "declared encoding `{}` is not UTF-8",
            String::from_utf8_lossy(&enc)
        ))),
        Some(Err(e)) => Err(Reason::MalformedXml(e.to_string())),
    }
}

/// A malformed-XML reason with the byte position.
pub(crate) fn malformed(err: impl std::fmt::Display, position: u64) -> Reason {
    Reason::MalformedXml(format!("{err} (near byte {position})"))
}

/// The unescaped value of `attr` (predefined entities and character references only).
pub(crate) fn attr_value(attr: &Attribute<'_>, position: u64) -> Result<String, Reason> {
    attr.unescape_value()
        .map(|v| v.into_owned())
        .map_err(|e| malformed(e, position))
}

/// The attributes of `start` as (namespace, local name, value); the namespace
/// is empty for unprefixed attributes.
pub(crate) fn attributes(
    reader: &NsReader<&[u8]>,
    start: &BytesStart<'_>,
) -> Result<Attrs, Reason> {
    let position = reader.buffer_position();
    let mut out = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| malformed(e, position))?;
        let (ns, local) = reader.resolve_attribute(attr.key);
        let ns = match ns {
            ResolveResult::Bound(ns) => ns.as_ref().to_vec(),
            ResolveResult::Unbound => Vec::new(),
            ResolveResult::Unknown(prefix) => {
                return Err(Reason::MalformedXml(format!(
                    "unknown namespace prefix `{}` (near byte {position})",
                    String::from_utf8_lossy(&prefix)
                )));
            }
        };
        let value = attr_value(&attr, position)?;
        out.push((ns, local.as_ref().to_vec(), value));
    }
    Ok(out)
}

/// The value of the unprefixed attribute `name`.
pub(crate) fn get<'a>(attrs: &'a [(Vec<u8>, Vec<u8>, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(ns, local, _)| ns.is_empty() && local == name.as_bytes())
        .map(|(_, _, v)| v.as_str())
}

/// The value of `xsi:type`, without any namespace prefix on the value.
pub(crate) fn xsi_type(attrs: &[(Vec<u8>, Vec<u8>, String)]) -> Option<&str> {
    attrs
        .iter()
        .find(|(ns, local, _)| ns == XSI_NS && local == b"type")
        .map(|(_, _, v)| v.rsplit(':').next().unwrap_or(v.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_rules() {
        assert_eq!(utf8_text(b"\xEF\xBB\xBF<a/>").unwrap(), "<a/>");
        assert!(matches!(
            utf8_text(b"<a>\x82\xa0</a>"),
            Err(Reason::Encoding(_))
        ));
        assert!(matches!(
            utf8_text(b"\xFF\xFE<\0"),
            Err(Reason::Encoding(_))
        ));
    }
}
