//! What a sealed record's ciphertext holds: the record's FHIR JSON, padded to a size
//! bucket so that the ciphertext length tells only the bucket (docs/envelope.md,
//! "Payload"). The header's `schema_version` says how the JSON is held, and the header is
//! the AAD, so the hub cannot change it:
//!
//! - [`JSON`] (1): the JSON itself, then spaces (still the same JSON);
//! - [`JSON_LZ4`] (2): the JSON's length and its LZ4 block's length (u32 big-endian
//!   each), the block, then zero bytes. FHIR JSON compresses about 2.7×, so most records
//!   fit the smallest bucket: less to spool, upload, store and serve, and the bucket tells
//!   less about the record than the uncompressed length did.
//!
//! Buckets: 1 KiB, then the next power of two.

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Schema 1: FHIR R4 JSON padded with spaces.
pub const JSON: u16 = 1;
/// Schema 2: FHIR R4 JSON compressed (LZ4 block format) and padded with zero bytes.
pub const JSON_LZ4: u16 = 2;

/// Smallest padded payload, in bytes; larger ones are padded to the next power of two.
pub const MIN_BUCKET: usize = 1024;
/// Largest JSON a payload may hold (a checkup record is a few KiB): a schema-2 payload
/// declaring more is refused before anything is allocated for it.
pub const MAX_JSON: usize = 16 << 20;

/// The lengths in front of a schema-2 block.
const LENGTHS: usize = 8;

fn bucket(len: usize) -> usize {
    len.max(MIN_BUCKET).next_power_of_two()
}

fn refused(schema: u16, reason: impl Into<String>) -> Error {
    Error::Payload {
        schema,
        reason: reason.into(),
    }
}

/// `json` held as `schema` says, padded to its bucket.
pub fn pack(schema: u16, json: &[u8]) -> Result<Vec<u8>> {
    if json.len() > MAX_JSON {
        return Err(refused(
            schema,
            format!("{} bytes of JSON, more than {MAX_JSON}", json.len()),
        ));
    }
    match schema {
        JSON => {
            let mut out = Vec::with_capacity(bucket(json.len()));
            out.extend_from_slice(json);
            out.resize(bucket(json.len()), b' ');
            Ok(out)
        }
        JSON_LZ4 => {
            // Plaintext, compressed: wiped when dropped.
            let mut block =
                Zeroizing::new(vec![
                    0u8;
                    lz4_flex::block::get_maximum_output_size(json.len())
                ]);
            let n = lz4_flex::block::compress_into(json, &mut block)
                .map_err(|e| refused(schema, format!("cannot compress: {e}")))?;
            block.truncate(n);
            let size = bucket(LENGTHS + n);
            let mut out = Vec::with_capacity(size);
            out.extend_from_slice(&u32_of(json.len()).to_be_bytes());
            out.extend_from_slice(&u32_of(n).to_be_bytes());
            out.extend_from_slice(&block);
            out.resize(size, 0);
            Ok(out)
        }
        other => Err(unknown(other)),
    }
}

/// The JSON inside `plain`, an opened payload of `schema`. Schema 2 is refused unless
/// its lengths fit, the block decompresses to exactly the declared length and only zero
/// bytes follow it; the JSON itself is the caller's to parse.
pub fn unpack(schema: u16, plain: &[u8]) -> Result<Vec<u8>> {
    match schema {
        JSON => {
            let end = plain.iter().rposition(|b| *b != b' ').map_or(0, |i| i + 1);
            Ok(plain.get(..end).unwrap_or_default().to_vec())
        }
        JSON_LZ4 => {
            let ([j0, j1, j2, j3, b0, b1, b2, b3], rest) = plain
                .split_first_chunk::<LENGTHS>()
                .map(|(lengths, rest)| (*lengths, rest))
                .ok_or_else(|| refused(schema, "shorter than its two lengths"))?;
            let json_len = u32::from_be_bytes([j0, j1, j2, j3]) as usize;
            let block_len = u32::from_be_bytes([b0, b1, b2, b3]) as usize;
            if json_len > MAX_JSON {
                return Err(refused(
                    schema,
                    format!("declares {json_len} bytes of JSON, more than {MAX_JSON}"),
                ));
            }
            let (block, padding) = rest.split_at_checked(block_len).ok_or_else(|| {
                refused(
                    schema,
                    format!(
                        "declares a {block_len}-byte block, {} bytes follow",
                        rest.len()
                    ),
                )
            })?;
            // An LZ4 block grows at most ~255-fold (a length byte of 255 adds 255 bytes of
            // match): a larger declared length is refused before it is allocated.
            if json_len > block_len.saturating_mul(255).saturating_add(64) {
                return Err(refused(
                    schema,
                    format!("declares {json_len} bytes of JSON from a {block_len}-byte block"),
                ));
            }
            if padding.iter().any(|b| *b != 0) {
                return Err(refused(schema, "padding is not zero bytes"));
            }
            // Wiped when dropped on an error; handed over whole on success.
            let mut json = Zeroizing::new(vec![0u8; json_len]);
            let n = lz4_flex::block::decompress_into(block, &mut json)
                .map_err(|e| refused(schema, format!("block does not decompress: {e}")))?;
            if n != json_len {
                return Err(refused(
                    schema,
                    format!("block decompresses to {n} bytes, declared {json_len}"),
                ));
            }
            Ok(std::mem::take(&mut *json))
        }
        other => Err(unknown(other)),
    }
}

fn unknown(schema: u16) -> Error {
    refused(
        schema,
        format!("unknown schema (this version reads {JSON} and {JSON_LZ4})"),
    )
}

/// `n` as a u32; callers have checked `n` against [`MAX_JSON`] (a block is at most a
/// little longer than its input).
fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &[u8] = br#"{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:ef8388f4-0cec-8d2d-a5e3-8197c3a12220","resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"urn:oid:1.2.392.200119.6.1005","code":"2A020161001930149"}]}}},{"fullUrl":"urn:uuid:ef8388f4-0cec-8d2d-a5e3-8197c3a12221","resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"urn:oid:1.2.392.200119.6.1005","code":"2A030161001930149"}]}}}]}"#;

    #[test]
    fn both_schemas_round_trip_and_pad_to_a_bucket() {
        for schema in [JSON, JSON_LZ4] {
            for json in [&b"{}"[..], RECORD, &RECORD.repeat(40)] {
                let packed = pack(schema, json).unwrap();
                assert!(packed.len().is_power_of_two() && packed.len() >= MIN_BUCKET);
                assert_eq!(unpack(schema, &packed).unwrap(), json, "schema {schema}");
            }
        }
        let long = RECORD.repeat(40);
        assert!(pack(JSON_LZ4, &long).unwrap().len() < pack(JSON, &long).unwrap().len());
    }

    #[test]
    fn a_schema_2_payload_that_lies_is_refused() {
        let good = pack(JSON_LZ4, RECORD).unwrap();
        let with = |at: usize, value: &[u8]| {
            let mut p = good.clone();
            p.splice(at..at + value.len(), value.iter().copied());
            p
        };
        let json_len = RECORD.len() as u32;
        let block_len = u32::from_be_bytes(good[4..8].try_into().unwrap());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("short", good[..7].to_vec()),
            ("json length +1", with(0, &(json_len + 1).to_be_bytes())),
            ("json length -1", with(0, &(json_len - 1).to_be_bytes())),
            (
                "json too long",
                with(0, &(MAX_JSON as u32 + 1).to_be_bytes()),
            ),
            (
                "json over the block's reach",
                with(0, &(block_len * 255 + 65).to_be_bytes()),
            ),
            (
                "block past the end",
                with(4, &(good.len() as u32).to_be_bytes()),
            ),
            ("block cut short", with(4, &(block_len - 1).to_be_bytes())),
            ("padding not zero", with(good.len() - 1, b" ")),
            ("block altered", with(8, &[0xFF])),
        ];
        for (what, bad) in cases {
            let e = unpack(JSON_LZ4, &bad).expect_err(what);
            assert!(
                e.to_string().starts_with("payload of schema 2: "),
                "{what}: {e}"
            );
        }
        // Refused for its length, before the JSON's buffer is allocated.
        let overlong = with(0, &(block_len * 255 + 65).to_be_bytes());
        let e = unpack(JSON_LZ4, &overlong).unwrap_err().to_string();
        assert!(e.contains("-byte block"), "{e}");
        assert!(
            unpack(3, &good)
                .unwrap_err()
                .to_string()
                .contains("unknown schema")
        );
        assert!(pack(0, RECORD).is_err());
    }

    #[test]
    fn schema_1_is_the_json_and_spaces() {
        let packed = pack(JSON, RECORD).unwrap();
        assert_eq!(&packed[..RECORD.len()], RECORD);
        assert!(packed[RECORD.len()..].iter().all(|b| *b == b' '));
    }
}
