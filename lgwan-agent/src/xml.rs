//! Safe XML reading shared by the CDA and index parsers: UTF-8 only, a DOCTYPE
//! (and with it any entity declaration) is refused outright, entities are never
//! expanded (only the five predefined ones and character references are
//! unescaped), and nesting depth is bounded. Line ends and attribute values are
//! normalized as XML 1.0 requires (§2.11, §3.3.3), which quick-xml leaves to us.

use std::borrow::Cow;

use quick_xml::NsReader;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesStart};
use quick_xml::name::ResolveResult;

use crate::quarantine::Reason;

/// Deepest element nesting accepted.
pub(crate) const MAX_DEPTH: usize = 64;

/// The XML Schema instance namespace (`xsi:type`).
pub(crate) const XSI_NS: &[u8] = b"http://www.w3.org/2001/XMLSchema-instance";

/// An attribute's namespace, as far as the parsers ask about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttrNs {
    /// Unprefixed.
    None,
    /// The XML Schema instance namespace ([`XSI_NS`]).
    Xsi,
    /// Any other namespace.
    Other,
}

/// One attribute: its namespace, local name and value (normalized and unescaped),
/// borrowed from the document where the value needed no change.
#[derive(Debug)]
pub(crate) struct Attr<'s> {
    pub(crate) ns: AttrNs,
    pub(crate) local: &'s [u8],
    pub(crate) value: Cow<'s, str>,
}

/// The attributes of one start tag.
pub(crate) type Attrs<'s> = Vec<Attr<'s>>;

/// The document text: UTF-8 checked, a byte-order mark stripped, and every CRLF
/// or lone CR turned into LF before parsing (XML 1.0 §2.11), so a value reads the
/// same whatever line ends the file was written with. A `&#13;` reference is not a
/// line end and is kept.
pub(crate) fn document_text(bytes: &[u8]) -> Result<Cow<'_, str>, Reason> {
    let text = utf8_text(bytes)?;
    if !text.contains('\r') {
        return Ok(Cow::Borrowed(text));
    }
    Ok(Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n")))
}

/// Checks the bytes are UTF-8 and strips a UTF-8 byte-order mark.
fn utf8_text(bytes: &[u8]) -> Result<&str, Reason> {
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

/// An attribute value as XML 1.0 §3.3.3 gives it: each literal tab or line end
/// becomes a space, then predefined entities and character references are
/// unescaped (so `&#10;` stays a line end). Borrowed when nothing changes.
fn attr_value<'s>(
    text: &'s str,
    raw: Cow<'s, [u8]>,
    position: u64,
) -> Result<Cow<'s, str>, Reason> {
    let raw: Cow<'_, str> = match raw {
        Cow::Borrowed(bytes) => Cow::Borrowed(match text_of(text, bytes) {
            Some(value) => value,
            None => std::str::from_utf8(bytes).map_err(|e| malformed(e, position))?,
        }),
        Cow::Owned(bytes) => {
            Cow::Owned(String::from_utf8(bytes).map_err(|e| malformed(e.utf8_error(), position))?)
        }
    };
    if !raw.contains(['\t', '\n', '\r', '&']) {
        return Ok(raw);
    }
    let spaced = raw.replace(['\t', '\n', '\r'], " ");
    quick_xml::escape::unescape(&spaced)
        .map(|v| Cow::Owned(v.into_owned()))
        .map_err(|e| malformed(e, position))
}

/// `part` as text when it is a slice of `text`, as every name and value borrowed from a
/// reader over `text` is: found by its place in `text`, so the bytes of a document
/// already checked as UTF-8 are not checked again (`None` for bytes from elsewhere).
pub(crate) fn text_of<'t>(text: &'t str, part: &[u8]) -> Option<&'t str> {
    let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let found = text.get(start..start.checked_add(part.len())?)?;
    (found.as_ptr() == part.as_ptr()).then_some(found)
}

/// Whitespace as XML Schema collapses it (`xs:token` and the types built on it:
/// HL7 `cs` codes, numbers, booleans): tab, line feed, carriage return and space.
pub(crate) fn collapse(value: &str) -> &str {
    value.trim_matches(['\t', '\n', '\r', ' '])
}

/// The attributes of `start`, read by a reader over `text`.
pub(crate) fn attributes<'s>(
    text: &'s str,
    reader: &NsReader<&[u8]>,
    start: &'s BytesStart<'_>,
) -> Result<Attrs<'s>, Reason> {
    let position = reader.buffer_position();
    let mut out = Vec::new();
    for attr in start.attributes() {
        let attr: Attribute<'s> = attr.map_err(|e| malformed(e, position))?;
        let (ns, local) = reader.resolve_attribute(attr.key);
        let ns = match ns {
            ResolveResult::Bound(ns) if ns.as_ref() == XSI_NS => AttrNs::Xsi,
            ResolveResult::Bound(_) => AttrNs::Other,
            ResolveResult::Unbound => AttrNs::None,
            ResolveResult::Unknown(prefix) => {
                return Err(Reason::MalformedXml(format!(
                    "unknown namespace prefix `{}` (near byte {position})",
                    String::from_utf8_lossy(&prefix)
                )));
            }
        };
        out.push(Attr {
            ns,
            local: local.into_inner(),
            value: attr_value(text, attr.value, position)?,
        });
    }
    Ok(out)
}

/// The value of the unprefixed attribute `name` of an XML Schema token type
/// (`cs`, a number, a boolean), leading and trailing whitespace collapsed.
pub(crate) fn token<'a>(attrs: &'a [Attr<'_>], name: &str) -> Option<&'a str> {
    get(attrs, name).map(collapse)
}

/// The value of the unprefixed attribute `name`.
pub(crate) fn get<'a>(attrs: &'a [Attr<'_>], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.ns == AttrNs::None && a.local == name.as_bytes())
        .map(|a| a.value.as_ref())
}

/// The value of `xsi:type`, without any namespace prefix on the value.
pub(crate) fn xsi_type<'a>(attrs: &'a [Attr<'_>]) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.ns == AttrNs::Xsi && a.local == b"type")
        .map(|a| {
            let v = collapse(&a.value);
            v.rsplit(':').next().unwrap_or(v)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_of_finds_only_slices_of_the_text() {
        let text = "<a b=\"日本\"/>";
        let part = text.as_bytes().get(6..12).unwrap();
        assert_eq!(text_of(text, part), Some("日本"));
        let copy = part.to_vec();
        assert_eq!(
            text_of(text, &copy),
            None,
            "a copy elsewhere is not the text"
        );
        let split = text.as_bytes().get(6..8).unwrap();
        assert_eq!(text_of(text, split), None, "half a character is not text");
        let past = text.as_bytes().get(9..).unwrap();
        assert_eq!(text_of(text.get(..9).unwrap(), past), None, "past the end");
    }

    #[test]
    fn line_ends_and_attribute_values_are_normalized() {
        let text = document_text(b"<a b=\"x\r\ny\tz&#10;\">1\r\n2\r3&#13;</a>").unwrap();
        assert_eq!(text, "<a b=\"x\ny\tz&#10;\">1\n2\n3&#13;</a>");
        let mut r = reader(&text);
        let Ok(quick_xml::events::Event::Start(start)) = r.read_event() else {
            panic!("no start tag");
        };
        let attrs = attributes(&text, &r, &start).unwrap();
        assert_eq!(get(&attrs, "b"), Some("x y z\n"));
        assert_eq!(collapse(" \t 9N001 \n"), "9N001");
    }

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
