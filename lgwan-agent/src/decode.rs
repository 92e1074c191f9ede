//! Text encoding of CSV inputs: a file that is valid UTF-8 (with or without a
//! byte-order mark) is UTF-8, anything else is CP932 (Windows Shift_JIS). Both
//! the check and the decoding stream in fixed-size chunks. A byte sequence that is
//! not valid in the encoding is left out of the text and its line is noted, so the
//! CSV reader can set aside the row that holds it and read the others.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use encoding_rs::{Decoder, DecoderResult, Encoding, SHIFT_JIS, UTF_8};

const CHUNK: usize = 64 * 1024;

/// The encoding of `path`: UTF-8 when every byte sequence is valid UTF-8, else CP932.
pub fn detect(path: &Path) -> io::Result<&'static Encoding> {
    let mut file = BufReader::new(File::open(path)?);
    let mut buf = vec![0u8; CHUNK];
    let mut carry = 0usize;
    loop {
        let n = file.read(buf.get_mut(carry..).unwrap_or_default())?;
        let filled = carry + n;
        let data = buf.get(..filled).unwrap_or_default();
        match std::str::from_utf8(data) {
            Ok(_) => carry = 0,
            // An incomplete sequence at the end of the chunk continues in the next.
            Err(e) if e.error_len().is_none() && n > 0 => {
                let start = e.valid_up_to();
                carry = filled - start;
                buf.copy_within(start..filled, 0);
            }
            Err(_) => return Ok(SHIFT_JIS),
        }
        if n == 0 {
            return Ok(UTF_8);
        }
    }
}

/// Where the input was not valid in its encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// The 1-based line (counted by line feeds) the bad bytes are on.
    pub line: u64,
    /// The offset of the first bad byte in the file.
    pub byte: u64,
}

/// A reader that decodes `inner` from `encoding` to UTF-8 (dropping a BOM). A
/// malformed sequence is left out (never replaced by a look-alike character) and
/// noted by line, for [`DecodingReader::take_malformed`]. Undecodable bytes never
/// swallow an ASCII byte after them (WHATWG decoding), so line feeds, commas and
/// quotes stay where they were.
pub struct DecodingReader<R> {
    inner: R,
    decoder: Decoder,
    input: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// The decoder was told the input ended and drained everything: it must not be
    /// called again (encoding_rs panics), so every later read is end of file.
    finished: bool,
    /// Bytes of input consumed so far, for error positions.
    consumed: u64,
    /// The line the next input byte is on.
    line: u64,
    /// The first malformed sequence of each line decoded and not yet taken.
    malformed: VecDeque<Malformed>,
}

impl<R: Read> DecodingReader<R> {
    /// Decodes `inner`, which is in `encoding`.
    pub fn new(inner: R, encoding: &'static Encoding) -> Self {
        DecodingReader {
            inner,
            decoder: encoding.new_decoder_with_bom_removal(),
            input: vec![0; CHUNK],
            start: 0,
            end: 0,
            eof: false,
            finished: false,
            consumed: 0,
            line: 1,
            malformed: VecDeque::new(),
        }
    }

    /// The name of the encoding, e.g. `Shift_JIS`.
    pub fn encoding_name(&self) -> &'static str {
        self.decoder.encoding().name()
    }

    /// Takes the malformed places noted on lines up to `line` (every one decoded so
    /// far with `u64::MAX`), oldest first, one per line.
    pub fn take_malformed(&mut self, line: u64) -> Vec<Malformed> {
        let upto = self.malformed.partition_point(|m| m.line <= line);
        self.malformed.drain(..upto).collect()
    }

    fn note_malformed(&mut self, at: Malformed) {
        if self.malformed.back().is_none_or(|m| m.line != at.line) {
            self.malformed.push_back(at);
        }
    }
}

impl<R> std::fmt::Debug for DecodingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodingReader")
            .field("encoding", &self.decoder.encoding().name())
            .finish_non_exhaustive()
    }
}

impl<R: Read> Read for DecodingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.len() < 4 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer too small",
            ));
        }
        loop {
            if self.finished {
                return Ok(0);
            }
            if self.start == self.end && !self.eof {
                self.start = 0;
                self.end = self.inner.read(&mut self.input)?;
                self.eof = self.end == 0;
            }
            let src = self.input.get(self.start..self.end).unwrap_or_default();
            let (result, read, written) = self
                .decoder
                .decode_to_utf8_without_replacement(src, out, self.eof);
            let newlines = |bytes: &[u8]| bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            let malformed = match result {
                DecoderResult::Malformed(bad, extra) => {
                    // The bad sequence ends `extra` bytes before the end of what was
                    // read; it may have begun in an earlier call (a lead byte at the
                    // end of the input), with no line feed after it.
                    let byte = (self.consumed + read as u64)
                        .saturating_sub(u64::from(bad) + u64::from(extra));
                    let at = usize::try_from(byte.saturating_sub(self.consumed)).unwrap_or(0);
                    Some(Malformed {
                        line: self.line + newlines(src.get(..at).unwrap_or_default()),
                        byte,
                    })
                }
                _ => None,
            };
            self.line += newlines(src.get(..read).unwrap_or_default());
            if let Some(at) = malformed {
                self.note_malformed(at);
            }
            self.start += read;
            self.consumed += read as u64;
            if self.eof && result == DecoderResult::InputEmpty {
                self.finished = true;
            }
            match result {
                DecoderResult::OutputFull
                | DecoderResult::InputEmpty
                | DecoderResult::Malformed(..)
                    if written > 0 =>
                {
                    return Ok(written);
                }
                DecoderResult::InputEmpty if self.eof => return Ok(0),
                DecoderResult::InputEmpty
                | DecoderResult::OutputFull
                | DecoderResult::Malformed(..) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], enc: &'static Encoding) -> io::Result<String> {
        let mut s = String::new();
        DecodingReader::new(bytes, enc).read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn reading_again_after_the_end_is_still_the_end() {
        let mut r = DecodingReader::new(&b"a,b"[..], UTF_8);
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        for _ in 0..3 {
            assert_eq!(r.read(&mut buf).unwrap(), 0, "no panic, just end of file");
        }
    }

    #[test]
    fn detects_and_decodes() {
        let dir = tempfile::tempdir().unwrap();
        let (text, _, _) = SHIFT_JIS.encode("保険者番号,氏名\n1,見本\n");
        let sjis = dir.path().join("a.csv");
        std::fs::write(&sjis, &text).unwrap();
        assert_eq!(detect(&sjis).unwrap(), SHIFT_JIS);
        let utf8 = dir.path().join("b.csv");
        let long = "あ".repeat(CHUNK); // multi-byte sequences cross chunk boundaries
        std::fs::write(&utf8, format!("\u{feff}{long}")).unwrap();
        assert_eq!(detect(&utf8).unwrap(), UTF_8);
        assert_eq!(
            decode(&text, SHIFT_JIS).unwrap(),
            "保険者番号,氏名\n1,見本\n"
        );
        assert_eq!(decode("\u{feff}a,b".as_bytes(), UTF_8).unwrap(), "a,b");
    }

    #[test]
    fn bad_bytes_are_left_out_and_noted_by_line() {
        // 0x81 0x20: a lead byte whose trail is a space; 0x82 alone at the end.
        let bytes = b"a,b\nc\x81 ,d\ne,f\r\n\x82";
        let mut r = DecodingReader::new(&bytes[..], SHIFT_JIS);
        let (mut out, mut buf) = (Vec::new(), [0u8; 64]);
        while let n @ 1.. = r.read(&mut buf).unwrap() {
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, b"a,b\nc ,d\ne,f\r\n", "the space and commas are kept");
        assert_eq!(r.take_malformed(1), []);
        assert_eq!(r.take_malformed(2), [Malformed { line: 2, byte: 5 }]);
        assert_eq!(
            r.take_malformed(u64::MAX),
            [Malformed { line: 4, byte: 15 }]
        );
        assert_eq!(r.take_malformed(u64::MAX), []);
    }
}
