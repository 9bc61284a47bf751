//! The JSON encoding of the RemotingCommand header (REMOTING.md §2.2).
//!
//! What we write, byte for byte (field order fixed, no whitespace):
//!
//! ```text
//! {"code":105,"language":"RUST","version":479,"opaque":1,"flag":1,
//!  "remark":"...",                      <- only when there is a remark
//!  "extFields":{"k":"v",...},           <- always, `{}` when empty; values always strings
//!  "serializeTypeCurrentRPC":"JSON"}
//! ```
//!
//! That is the Rust client's own field order, and it satisfies the Rust client's strict
//! decoder, which fails a response whose `language`, `version` or
//! `serializeTypeCurrentRPC` is missing, whose `language` is a number, or whose ext
//! values are not strings. Strings are escaped as JSON requires: `"` and `\`, and every
//! control character (the property separators 0x01/0x02 become `\u0001`/`\u0002`).
//!
//! Reading is lenient, like Java's fastjson: members may come in any order or be missing
//! (numbers default to 0, language to JAVA), unknown members are ignored, `language` may
//! be a name or a number, numbers may be quoted, ext values may be strings, numbers or
//! booleans (stringified), and null ext values are dropped.
//!
//! Invariants: both directions are hand-written single passes (no serde on the hot path:
//! serde's visitors cost an allocation per member and dominated a send's CPU). The
//! encoder's output always decodes with [`decode_header`] to the same fields. Decoding
//! never panics, and accepts and refuses exactly what serde_json with the lenient types
//! above did (a differential test against that reference keeps it so): a known member
//! given twice is an error, skipped members must still be valid JSON, strings must be
//! UTF-8 with valid escapes and paired surrogates.
//!
//! Deliberately not here: the frame around the header (`frame`), and JSON bodies (`body`).

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::Write as _;
use std::ops::Range;

use crate::buf::OutBuf;
use crate::code::{LanguageCode, SerializeType};
use crate::command::{ExtFields, RemotingCommand};
use crate::limits::HEADER_SIZE_MAX_BYTES;
use crate::Error;

/// Appends the JSON header of `cmd` to `out`. Cannot fail: every field has a JSON form.
pub fn encode_header<B: OutBuf>(cmd: &RemotingCommand, out: &mut B) {
    put_head(out, cmd.code, cmd.language, cmd.version, cmd.opaque, cmd.flag, cmd.remark.as_deref());
    for (i, (key, value)) in cmd.ext_fields.iter().enumerate() {
        put_ext_entry(out, i == 0, key, value);
    }
    put_tail(out);
}

/// The members before the ext fields, through the ext object's opening brace. The
/// header encoder and `frame::ResponseWriter` share these three pieces, so an answer
/// written either way has the same bytes.
pub(crate) fn put_head<B: OutBuf>(
    out: &mut B,
    code: i32,
    language: LanguageCode,
    version: i32,
    opaque: i32,
    flag: i32,
    remark: Option<&str>,
) {
    out.put(b"{\"code\":");
    put_i32(out, code);
    out.put(b",\"language\":\"");
    out.put(language.name().as_bytes());
    out.put(b"\",\"version\":");
    put_i32(out, version);
    out.put(b",\"opaque\":");
    put_i32(out, opaque);
    out.put(b",\"flag\":");
    put_i32(out, flag);
    if let Some(remark) = remark {
        out.put(b",\"remark\":");
        put_string(out, remark);
    }
    out.put(b",\"extFields\":{");
}

/// One ext member; `first` says whether it opens the object (no comma before it). The
/// punctuation between key and value goes out in one piece: a send header has a dozen
/// members, and each separate small append costs more than its bytes.
pub(crate) fn put_ext_entry<B: OutBuf>(out: &mut B, first: bool, key: &str, value: &str) {
    out.put(if first { b"\"" } else { b",\"" });
    put_string_content(out, key);
    out.put(b"\":\"");
    put_string_content(out, value);
    out.put_byte(b'"');
}

/// Closes the ext object and the header.
pub(crate) fn put_tail<B: OutBuf>(out: &mut B) {
    out.put(b"},\"serializeTypeCurrentRPC\":\"");
    // The member names the encoding of this header, which is JSON by construction.
    out.put(SerializeType::Json.name().as_bytes());
    out.put(b"\"}");
}

/// Room for any i64 in decimal: 19 digits and a sign.
pub(crate) const DECIMAL_I64_MAX_BYTES: usize = 20;

/// Formats `value` in decimal (as Java's `toString`) at the end of `buf`; returns where
/// the text starts. Without `fmt`, which is slow on this path (a virtual call per piece).
pub(crate) fn decimal(value: i64, buf: &mut [u8; DECIMAL_I64_MAX_BYTES]) -> usize {
    let mut at = buf.len();
    let mut n = value.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if value < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    at
}

/// Writes a decimal i32.
pub(crate) fn put_i32<B: OutBuf>(out: &mut B, value: i32) {
    let mut buf = [0u8; DECIMAL_I64_MAX_BYTES];
    let at = decimal(i64::from(value), &mut buf);
    out.put(&buf[at..]);
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Writes `s` as a JSON string literal.
pub(crate) fn put_string<B: OutBuf>(out: &mut B, s: &str) {
    out.put_byte(b'"');
    put_string_content(out, s);
    out.put_byte(b'"');
}

/// Writes the inside of a JSON string literal: runs of bytes that need no escape are
/// copied in one piece (found through the same table the decoder stops on); non-ASCII
/// UTF-8 passes through unchanged (valid JSON, and both clients accept it).
fn put_string_content<B: OutBuf>(out: &mut B, s: &str) {
    let bytes = s.as_bytes();
    let mut run_start = 0;
    while let Some(n) = find_string_stop(&bytes[run_start..]) {
        let at = run_start + n;
        out.put(&bytes[run_start..at]);
        let b = bytes[at];
        match b {
            b'"' => out.put(b"\\\""),
            b'\\' => out.put(b"\\\\"),
            b'\n' => out.put(b"\\n"),
            b'\r' => out.put(b"\\r"),
            b'\t' => out.put(b"\\t"),
            _ => out.put(&[b'\\', b'u', b'0', b'0', HEX_UPPER[usize::from(b >> 4)], HEX_UPPER[usize::from(b & 0xF)]]),
        }
        run_start = at + 1;
    }
    out.put(&bytes[run_start..]);
}

/// Decodes a JSON header. The result has an empty body and serialize type JSON.
pub fn decode_header(header: &[u8]) -> Result<RemotingCommand, Error> {
    // One validation of the whole header (the usual case: it is UTF-8) lets every string
    // be cut out of it without validating each again.
    if header.len() > HEADER_SIZE_MAX_BYTES {
        // No frame carries a larger header; refusing it keeps every position a u32.
        return Err(Error::HeaderJson { detail: format!("{} bytes is over the header limit", header.len()) });
    }
    let mut s = Scanner { buf: header, failure: Cell::new(("", 0)), text: std::str::from_utf8(header).ok(), pos: 0 };
    s.header().map_err(|Failed| {
        let (expected, pos) = s.failure.get();
        Error::HeaderJson { detail: format!("expected {expected} at byte {pos}") }
    })
}

/// Nesting allowed inside the members we skip, as serde_json limits it: deeper input is
/// an attack on the stack, never a header.
const SKIP_DEPTH_MAX: usize = 128;

/// Ext entries a request usually has (a send has 13): room for them up front saves the
/// entry list's regrowth.
const EXT_ENTRIES_TYPICAL: usize = 16;

/// Digits of an integer that fits i64 whatever they are; longer ones need checking.
const SAFE_INTEGER_DIGITS: usize = 18;

/// The top-level members we read; everything else is skipped.
#[derive(Clone, Copy)]
enum Member {
    Code,
    Language,
    Version,
    Opaque,
    Flag,
    Remark,
    ExtFields,
    Other,
}

impl Member {
    fn from_name(name: &[u8]) -> Member {
        match name {
            b"code" => Member::Code,
            b"language" => Member::Language,
            b"version" => Member::Version,
            b"opaque" => Member::Opaque,
            b"flag" => Member::Flag,
            b"remark" => Member::Remark,
            b"extFields" => Member::ExtFields,
            _ => Member::Other,
        }
    }

    /// The member's bit in the "seen" set: a known member given twice is an error
    /// (as serde's derived decoders made it); unknown ones may repeat.
    fn bit(self) -> u8 {
        match self {
            Member::Other => 0,
            known => 1 << known as u8,
        }
    }
}

/// Bytes that end a run of plain string content: the closing quote, an escape, and the
/// control characters JSON forbids inside strings.
static STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// The value of each hex digit, and 0x10 for every byte that is not one.
static HEX_VALUE: [u8; 256] = {
    let mut table = [0x10u8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decoding stopped; the scanner's `failure` says what was expected and where. A unit
/// type keeps every scanner result small enough to come back in registers (the ranges
/// the ext loop returns are `u32` for the same reason); the error is built once, at the top.
struct Failed;

type Scan<T> = Result<T, Failed>;

/// The position of the first byte of `bytes` that [`STRING_STOP`] lists: a quote, a
/// backslash or a control character.
///
/// Eight bytes at a time: the classic "has a zero byte" and "has a byte below n" word
/// tricks, over the word and over the word xor-ed with a quote and a backslash. A borrow
/// can mark a byte above a true hit, never one below it, so the lowest marked byte is the
/// first hit (and bytes of 0x80 and above, UTF-8 beyond ASCII, are never marked). Both
/// the encoder and the decoder spend most of their time looking for these bytes.
#[inline]
fn find_string_stop(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let chunks = bytes.chunks_exact(8);
    let tail_at = bytes.len() - chunks.remainder().len();
    for (i, chunk) in chunks.enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let marks = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGHS;
        if marks != 0 {
            return Some(i * 8 + (marks.trailing_zeros() / 8) as usize);
        }
    }
    bytes[tail_at..].iter().position(|&b| STRING_STOP[usize::from(b)]).map(|n| tail_at + n)
}

/// A JSON number token, checked against the JSON grammar.
struct Number {
    start: usize,
    end: usize,
    negative: bool,
    /// Where the integer digits end (the token's end for an integer).
    digits_end: usize,
    /// Has a fraction or an exponent.
    float: bool,
}

/// A single-pass reader over the header bytes. Positions in errors are byte offsets.
struct Scanner<'a> {
    buf: &'a [u8],
    /// What was expected where decoding stopped (set by `fail`).
    failure: Cell<(&'static str, usize)>,
    /// `buf` as text, when all of it is UTF-8. String contents then need no validation of
    /// their own: they start and end next to ASCII bytes (quotes, backslashes), which are
    /// always char boundaries.
    text: Option<&'a str>,
    pos: usize,
}

impl<'a> Scanner<'a> {
    #[cold]
    fn fail<T>(&self, expected: &'static str) -> Scan<T> {
        self.failure.set((expected, self.pos));
        Err(Failed)
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    #[inline]
    fn next_byte(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8, expected: &'static str) -> Scan<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            self.fail(expected)
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Scan<()> {
        if self.buf[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            self.fail("`true`, `false` or `null`")
        }
    }

    /// The whole header object, then nothing but whitespace.
    fn header(&mut self) -> Scan<RemotingCommand> {
        self.skip_ws();
        // A header is only ever an object; anything else is refused up front.
        self.expect(b'{', "a JSON object")?;
        let mut cmd = RemotingCommand {
            code: 0,
            language: LanguageCode::default(),
            version: 0,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: ExtFields::new(),
            serialize_type: SerializeType::Json,
            body: bytes::Bytes::new(),
        };
        let mut seen = 0u8;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                if self.peek() != Some(b'"') {
                    return self.fail("a member name");
                }
                let member = Member::from_name(self.string_cow()?.as_bytes());
                self.skip_ws();
                self.expect(b':', "`:` after a member name")?;
                self.skip_ws();
                if seen & member.bit() != 0 {
                    return self.fail("no duplicate member");
                }
                seen |= member.bit();
                match member {
                    Member::Code => cmd.code = self.i32_value()?,
                    Member::Language => cmd.language = self.language_value()?,
                    Member::Version => cmd.version = self.i32_value()?,
                    Member::Opaque => cmd.opaque = self.i32_value()?,
                    Member::Flag => cmd.flag = self.i32_value()?,
                    Member::Remark => cmd.remark = self.scalar_value()?,
                    Member::ExtFields => cmd.ext_fields = self.ext_value()?,
                    Member::Other => self.skip_value(0)?,
                }
                self.skip_ws();
                match self.next_byte() {
                    Some(b',') => self.skip_ws(),
                    Some(b'}') => break,
                    _ => return self.fail("`,` or `}` after a member"),
                }
            }
        }
        self.skip_ws();
        if self.pos != self.buf.len() {
            return self.fail("nothing after the header object");
        }
        Ok(cmd)
    }

    /// Advances over plain string content to the next quote, escape or control byte;
    /// `pos` is left on that stop byte.
    #[inline]
    fn plain_run(&mut self) -> Scan<()> {
        match find_string_stop(&self.buf[self.pos..]) {
            Some(n) => {
                self.pos += n;
                Ok(())
            }
            None => {
                self.pos = self.buf.len();
                self.fail("the end of a string")
            }
        }
    }

    /// The string content from `start` to `pos`, which both sit next to ASCII bytes.
    #[inline]
    fn run_text(&self, start: usize) -> Scan<&'a str> {
        let run = match self.text {
            Some(text) => text.get(start..self.pos),
            None => std::str::from_utf8(&self.buf[start..self.pos]).ok(),
        };
        match run {
            Some(run) => Ok(run),
            None => self.fail("UTF-8 in a string"),
        }
    }

    /// Reads the string literal at `pos` (its opening quote) and appends its text to `out`.
    fn string_into(&mut self, out: &mut String) -> Scan<()> {
        self.pos += 1;
        loop {
            let start = self.pos;
            self.plain_run()?;
            out.push_str(self.run_text(start)?);
            match self.buf[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.pos += 1;
                    // The property separators arrive as `\u0001` and `\u0002`: ASCII
                    // escapes skip the general path (surrogates, multi-byte chars).
                    if let Some(&[b'u', b'0', b'0', hi, lo]) = self.buf.get(self.pos..self.pos + 5) {
                        let (hi, lo) = (HEX_VALUE[usize::from(hi)], HEX_VALUE[usize::from(lo)]);
                        if hi < 8 && lo < 16 {
                            out.push(char::from(hi << 4 | lo));
                            self.pos += 5;
                            continue;
                        }
                    }
                    out.push(self.escape()?);
                }
                _ => return self.fail("no control characters in a string"),
            }
        }
    }

    /// Reads the string literal at `pos`, borrowing it when it has no escapes.
    fn string_cow(&mut self) -> Scan<Cow<'a, str>> {
        let open = self.pos;
        self.pos += 1;
        self.plain_run()?;
        if self.buf[self.pos] == b'"' {
            let text = self.run_text(open + 1)?;
            self.pos += 1;
            return Ok(Cow::Borrowed(text));
        }
        let mut text = String::new();
        self.pos = open;
        self.string_into(&mut text)?;
        Ok(Cow::Owned(text))
    }

    /// Reads the string literal at `pos` into the ext arena and returns its range there.
    /// A string without escapes is already in the arena when the header text was copied
    /// into it (`copied_from`: the header position the arena's copy starts at); otherwise
    /// its text is appended.
    #[inline(always)]
    fn string_range(&mut self, arena: &mut String, copied_from: Option<usize>) -> Scan<Range<u32>> {
        if let Some(base) = copied_from {
            let open = self.pos;
            self.pos += 1;
            self.plain_run()?;
            if self.buf[self.pos] == b'"' {
                self.pos += 1;
                // Exact: positions are below the header limit.
                return Ok((open + 1 - base) as u32..(self.pos - 1 - base) as u32);
            }
            self.pos = open;
        }
        self.string_appended(arena)
    }

    /// [`Scanner::string_range`] of a string that has to be unescaped into the arena.
    #[inline(never)]
    fn string_appended(&mut self, arena: &mut String) -> Scan<Range<u32>> {
        let start = arena.len();
        self.string_into(arena)?;
        // Exact: the arena holds at most the header and the text unescaped from it.
        Ok(start as u32..arena.len() as u32)
    }

    /// Reads the escape after a backslash (JSON's set, `\uXXXX` with surrogate pairs).
    fn escape(&mut self) -> Scan<char> {
        let c = match self.next_byte() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let unit = self.hex4()?;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        if !self.buf[self.pos..].starts_with(b"\\u") {
                            return self.fail("a trailing surrogate after a leading one");
                        }
                        self.pos += 2;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return self.fail("a trailing surrogate after a leading one");
                        }
                        0x1_0000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return self.fail("no lone trailing surrogate"),
                    _ => unit,
                };
                match char::from_u32(code) {
                    Some(c) => c,
                    None => return self.fail("a Unicode scalar value"),
                }
            }
            _ => return self.fail("a valid escape"),
        };
        Ok(c)
    }

    fn hex4(&mut self) -> Scan<u32> {
        let Some(&[a, b, c, d]) = self.buf.get(self.pos..self.pos + 4) else { return self.fail("four hex digits") };
        let digits = [a, b, c, d].map(|x| HEX_VALUE[usize::from(x)]);
        // Every table entry is a digit below 16 or the marker 0x10, so one OR finds a bad one.
        if (digits[0] | digits[1] | digits[2] | digits[3]) & 0x10 != 0 {
            return self.fail("four hex digits");
        }
        self.pos += 4;
        Ok(digits.iter().fold(0, |value, &digit| value << 4 | u32::from(digit)))
    }

    /// Passes over a string literal without keeping it. Like serde_json skipping an
    /// ignored value, escapes must be well formed but the text is not checked for UTF-8.
    fn skip_string(&mut self) -> Scan<()> {
        self.pos += 1;
        loop {
            self.plain_run()?;
            match self.buf[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.pos += 1;
                    match self.next_byte() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                        Some(b'u') => {
                            self.hex4()?;
                        }
                        _ => return self.fail("a valid escape"),
                    }
                }
                _ => return self.fail("no control characters in a string"),
            }
        }
    }

    /// Reads a number token: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Scan<Number> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return self.fail("a digit"),
        }
        let digits_end = self.pos;
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.require_digits()?;
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.require_digits()?;
            float = true;
        }
        Ok(Number { start, end: self.pos, negative, digits_end, float })
    }

    fn skip_digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn require_digits(&mut self) -> Scan<()> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return self.fail("a digit");
        }
        self.skip_digits();
        Ok(())
    }

    /// The number's text (ASCII by construction).
    fn number_text(&self, n: &Number) -> &'a str {
        std::str::from_utf8(&self.buf[n.start..n.end]).unwrap_or_default()
    }

    /// Whether serde_json would read the number as an integer and so print it exactly as
    /// written: no fraction or exponent, fits i64 when negative and u64 otherwise (it
    /// reads `-0` as a float, which also prints as written).
    fn prints_as_written(&self, n: &Number) -> bool {
        if n.float {
            return false;
        }
        let digits = n.digits_end - n.start - usize::from(n.negative);
        digits <= SAFE_INTEGER_DIGITS || self.integer(n).is_some() || self.number_text(n) == "-0"
    }

    /// The number's value when serde_json would read it as an integer: no fraction or
    /// exponent, fits i64 when negative and u64 otherwise (`-0` is a float to it).
    fn integer(&self, n: &Number) -> Option<i128> {
        if n.float {
            return None;
        }
        let mut magnitude: u64 = 0;
        for &d in &self.buf[n.start + usize::from(n.negative)..n.digits_end] {
            magnitude = magnitude.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        match n.negative {
            false => Some(i128::from(magnitude)),
            true if magnitude == 0 || magnitude > 1 << 63 => None,
            true => Some(-i128::from(magnitude)),
        }
    }

    /// An i32 given as a number or a numeric string; null reads as 0.
    fn i32_value(&mut self) -> Scan<i32> {
        match self.peek() {
            Some(b'"') => match self.string_cow()?.trim().parse() {
                Ok(v) => Ok(v),
                Err(_) => self.fail("a string holding an i32"),
            },
            Some(b'n') => self.literal(b"null").map(|()| 0),
            Some(b'-' | b'0'..=b'9') => {
                let n = self.number()?;
                match self.integer(&n).map(i32::try_from) {
                    Some(Ok(v)) => Ok(v),
                    Some(Err(_)) => self.fail("an integer in i32 range"),
                    None => self.fail("an integer"),
                }
            }
            _ => self.fail("an integer or a string holding one"),
        }
    }

    /// A language given by name or by code; null reads as JAVA, an unknown name or code
    /// as OTHER.
    fn language_value(&mut self) -> Scan<LanguageCode> {
        match self.peek() {
            Some(b'"') => {
                let name = self.string_cow()?;
                // The two languages that send nearly every request, before the general
                // case-insensitive search.
                Ok(match &*name {
                    "JAVA" => LanguageCode::Java,
                    "RUST" => LanguageCode::Rust,
                    other => LanguageCode::from_name(other).unwrap_or(LanguageCode::Other),
                })
            }
            Some(b'n') => self.literal(b"null").map(|()| LanguageCode::default()),
            Some(b'-' | b'0'..=b'9') => {
                let n = self.number()?;
                match self.integer(&n) {
                    Some(v) => Ok(u8::try_from(v).map_or(LanguageCode::Other, LanguageCode::from_code)),
                    None => self.fail("an integer language code"),
                }
            }
            _ => self.fail("a language name or code"),
        }
    }

    /// Reads a scalar and gives the arena range of the string Java would hold for it, or
    /// `None` for null. See [`Scanner::string_range`] for `copied_from`.
    #[inline(always)]
    fn scalar_range(&mut self, arena: &mut String, copied_from: Option<usize>) -> Scan<Option<Range<u32>>> {
        // Literals and integers print as written: point at their text when it was copied.
        // The casts are exact: positions are below the header limit.
        let written = |start: usize, end: usize, arena: &mut String, text: &str| match copied_from {
            Some(base) => (start - base) as u32..(end - base) as u32,
            None => {
                let at = arena.len();
                arena.push_str(text);
                at as u32..arena.len() as u32
            }
        };
        let start = self.pos;
        let range = match self.peek() {
            Some(b'"') => self.string_range(arena, copied_from)?,
            Some(b'-' | b'0'..=b'9') => {
                let n = self.number()?;
                if self.prints_as_written(&n) {
                    written(n.start, n.end, arena, self.number_text(&n))
                } else {
                    let Ok(value) = self.number_text(&n).parse::<f64>() else { return self.fail("a number") };
                    if !value.is_finite() {
                        return self.fail("a number in f64 range");
                    }
                    let at = arena.len();
                    // Writing to a String cannot fail.
                    let _ = write!(arena, "{value}");
                    at as u32..arena.len() as u32
                }
            }
            Some(b't') => {
                self.literal(b"true")?;
                written(start, self.pos, arena, "true")
            }
            Some(b'f') => {
                self.literal(b"false")?;
                written(start, self.pos, arena, "false")
            }
            Some(b'n') => {
                self.literal(b"null")?;
                return Ok(None);
            }
            _ => return self.fail("a string, number, boolean or null"),
        };
        Ok(Some(range))
    }

    /// A scalar stringified; null reads as absent.
    fn scalar_value(&mut self) -> Scan<Option<String>> {
        if self.peek() == Some(b'"') {
            return self.string_cow().map(|s| Some(s.into_owned()));
        }
        let mut text = String::new();
        Ok(self.scalar_range(&mut text, None)?.map(|range| text[range.start as usize..range.end as usize].to_owned()))
    }

    /// The ext fields: an object of scalars, or null.
    ///
    /// When the header is UTF-8 the rest of it is copied into the map's arena in one
    /// piece, and entries whose key and value need no unescaping point into that copy;
    /// only escaped strings (the property string's `\u0001` separators) and reformatted
    /// numbers are written out separately. One copy and two allocations for the map.
    fn ext_value(&mut self) -> Scan<ExtFields> {
        match self.peek() {
            Some(b'n') => return self.literal(b"null").map(|()| ExtFields::new()),
            Some(b'{') => self.pos += 1,
            _ => return self.fail("an object of scalar values, or null"),
        }
        let rest = self.buf.len() - self.pos;
        let mut ext = ExtFields::with_capacities(EXT_ENTRIES_TYPICAL, rest + rest / 2);
        let copied_from = self.text.map(|text| {
            ext.arena().push_str(&text[self.pos..]);
            self.pos
        });
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(ext);
        }
        loop {
            if self.peek() != Some(b'"') {
                return self.fail("an ext-field name");
            }
            let key = self.string_range(ext.arena(), copied_from)?;
            self.skip_ws();
            self.expect(b':', "`:` after an ext-field name")?;
            self.skip_ws();
            // A null value is Java's "field not set": the key is dropped, exactly as when
            // it is absent.
            if let Some(value) = self.scalar_range(ext.arena(), copied_from)? {
                ext.commit(key.start as usize..key.end as usize, value.start as usize..value.end as usize);
            }
            self.skip_ws();
            match self.next_byte() {
                Some(b',') => self.skip_ws(),
                Some(b'}') => return Ok(ext),
                _ => return self.fail("`,` or `}` after an ext field"),
            }
        }
    }

    /// Passes over any JSON value, checking its syntax.
    fn skip_value(&mut self, depth: usize) -> Scan<()> {
        let close = match self.peek() {
            Some(b'"') => return self.skip_string(),
            Some(b'-' | b'0'..=b'9') => return self.number().map(drop),
            Some(b't') => return self.literal(b"true"),
            Some(b'f') => return self.literal(b"false"),
            Some(b'n') => return self.literal(b"null"),
            Some(b'{') => b'}',
            Some(b'[') => b']',
            _ => return self.fail("a JSON value"),
        };
        if depth >= SKIP_DEPTH_MAX {
            return self.fail("less nesting");
        }
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if close == b'}' {
                if self.peek() != Some(b'"') {
                    return self.fail("a member name");
                }
                self.skip_string()?;
                self.skip_ws();
                self.expect(b':', "`:` after a member name")?;
                self.skip_ws();
            }
            self.skip_value(depth + 1)?;
            self.skip_ws();
            match self.next_byte() {
                Some(b',') => self.skip_ws(),
                Some(b) if b == close => return Ok(()),
                _ => return self.fail("`,` or the end of an object or array"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::{request, response};
    use crate::test_util::XorShift;

    /// The serde_json decoder this module used before the hand-written scanner, kept as
    /// the oracle of the differential test: the scanner must accept and refuse the same
    /// inputs and produce the same commands.
    mod reference {
        use std::fmt;

        use serde::de::{self, Deserializer, MapAccess, Visitor};
        use serde::Deserialize;

        use crate::code::{LanguageCode, SerializeType};
        use crate::command::{ExtFields, RemotingCommand};
        use crate::Error;

        /// Decodes a JSON header. The result has an empty body and serialize type JSON.
        pub(super) fn decode_header(header: &[u8]) -> Result<RemotingCommand, Error> {
            // serde's derived struct decoders also accept a JSON array of the members in order;
            // a header is only ever an object, so anything else is refused up front.
            if header.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                return Err(Error::HeaderJson { detail: "the header is not a JSON object".into() });
            }
            let raw: RawHeader =
                serde_json::from_slice(header).map_err(|e| Error::HeaderJson { detail: e.to_string() })?;
            Ok(RemotingCommand {
                code: raw.code.0,
                language: raw.language.0,
                version: raw.version.0,
                opaque: raw.opaque.0,
                flag: raw.flag.0,
                remark: raw.remark.0,
                ext_fields: raw.ext_fields.0,
                serialize_type: SerializeType::Json,
                body: bytes::Bytes::new(),
            })
        }

        /// The header as read, every member optional and leniently typed.
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct RawHeader {
            code: LenientI32,
            language: LenientLanguage,
            version: LenientI32,
            opaque: LenientI32,
            flag: LenientI32,
            remark: LenientString,
            #[serde(rename = "extFields")]
            ext_fields: LenientExt,
        }

        /// An i32 given as a number or a numeric string; null reads as 0.
        #[derive(Default)]
        struct LenientI32(i32);

        /// A scalar stringified the way Java's `toString` would; null reads as absent.
        #[derive(Default)]
        struct LenientString(Option<String>);

        /// A language given by name or by code; null or an unknown name reads as OTHER/JAVA.
        #[derive(Default)]
        struct LenientLanguage(LanguageCode);

        #[derive(Default)]
        struct LenientExt(ExtFields);

        impl<'de> Deserialize<'de> for LenientI32 {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = LenientI32;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("a 32-bit integer or a string holding one")
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientI32, E> {
                        i32::try_from(v).map(LenientI32).map_err(|_| E::custom(format!("{v} is out of i32 range")))
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientI32, E> {
                        i32::try_from(v).map(LenientI32).map_err(|_| E::custom(format!("{v} is out of i32 range")))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientI32, E> {
                        v.trim().parse().map(LenientI32).map_err(|_| E::custom(format!("{v:?} is not an i32")))
                    }
                    fn visit_unit<E: de::Error>(self) -> Result<LenientI32, E> {
                        Ok(LenientI32(0))
                    }
                }
                d.deserialize_any(V)
            }
        }

        /// Visits a JSON scalar as the string Java would hold for it.
        struct ScalarVisitor;

        impl Visitor<'_> for ScalarVisitor {
            type Value = Option<String>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Some(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Some(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Some(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }

        impl<'de> Deserialize<'de> for LenientString {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(ScalarVisitor).map(LenientString)
            }
        }

        impl<'de> Deserialize<'de> for LenientLanguage {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = LenientLanguage;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("a language name or code")
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientLanguage, E> {
                        Ok(LenientLanguage(LanguageCode::from_name(v).unwrap_or(LanguageCode::Other)))
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientLanguage, E> {
                        Ok(LenientLanguage(u8::try_from(v).map_or(LanguageCode::Other, LanguageCode::from_code)))
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientLanguage, E> {
                        Ok(LenientLanguage(u8::try_from(v).map_or(LanguageCode::Other, LanguageCode::from_code)))
                    }
                    fn visit_unit<E: de::Error>(self) -> Result<LenientLanguage, E> {
                        Ok(LenientLanguage::default())
                    }
                }
                d.deserialize_any(V)
            }
        }

        impl<'de> Deserialize<'de> for LenientExt {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = LenientExt;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("an object of scalar values, or null")
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LenientExt, A::Error> {
                        let mut ext = ExtFields::with_capacity(map.size_hint().unwrap_or(8).min(64));
                        while let Some(key) = map.next_key::<String>()? {
                            // A null value is Java's "field not set": the key is dropped, exactly
                            // as when it is absent.
                            if let LenientString(Some(value)) = map.next_value::<LenientString>()? {
                                ext.insert(key, value);
                            }
                        }
                        Ok(LenientExt(ext))
                    }
                    fn visit_unit<E: de::Error>(self) -> Result<LenientExt, E> {
                        Ok(LenientExt::default())
                    }
                }
                d.deserialize_any(V)
            }
        }
    }

    fn encode(cmd: &RemotingCommand) -> String {
        let mut out = Vec::new();
        encode_header(cmd, &mut out);
        String::from_utf8(out).expect("the encoder writes UTF-8")
    }

    #[test]
    fn golden_request_encoding() {
        let ext: ExtFields = [("topic", "T")].into_iter().collect();
        let cmd = RemotingCommand::new_request(request::GET_ROUTEINFO_BY_TOPIC, ext).with_opaque(1);
        assert_eq!(
            encode(&cmd),
            r#"{"code":105,"language":"RUST","version":479,"opaque":1,"flag":0,"extFields":{"topic":"T"},"serializeTypeCurrentRPC":"JSON"}"#
        );
    }

    #[test]
    fn golden_response_encoding_with_remark_and_escapes() {
        let req = RemotingCommand::new_request(request::SEND_MESSAGE, ExtFields::new()).with_opaque(-7);
        let mut resp = RemotingCommand::response_to(&req, response::SYSTEM_ERROR, Some("bad \"x\"\\\n\u{1}é".into()));
        resp.ext_fields.insert("properties", "A\u{1}B\u{2}\u{1F}\t");
        assert_eq!(
            encode(&resp),
            concat!(
                r#"{"code":1,"language":"RUST","version":479,"opaque":-7,"flag":1,"remark":"bad \"x\"\\\n\u0001é","#,
                r#""extFields":{"properties":"A\u0001B\u0002\u001F\t"},"serializeTypeCurrentRPC":"JSON"}"#
            )
        );
    }

    #[test]
    fn integers_format_like_java() {
        for v in [0, 1, -1, 9, 10, 479, i32::MAX, i32::MIN] {
            let mut out = Vec::new();
            put_i32(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }

    #[test]
    fn encoded_output_is_valid_json_and_round_trips() {
        let mut ext = ExtFields::new();
        for c in 0u8..=0x7F {
            ext.insert(format!("k{c}"), format!("v{}x", char::from(c)));
        }
        ext.insert("unicode", "日本\u{1F600}");
        let mut cmd = RemotingCommand::new_request(request::SEND_MESSAGE, ext).with_opaque(i32::MIN);
        cmd.remark = Some("\u{0}\u{7F}".into());
        cmd.flag = 3;
        let text = encode(&cmd);
        let parsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed["extFields"]["k1"], "v\u{1}x");
        assert_eq!(decode_header(text.as_bytes()).expect("decodes"), cmd);
    }

    #[test]
    fn decodes_the_java_layout_of_the_spec() {
        // REMOTING.md §1.4, the JSON header of the GET_ROUTEINFO_BY_TOPIC example.
        let text = br#"{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#;
        let cmd = decode_header(text).expect("decodes");
        assert_eq!(cmd.code, 105);
        assert_eq!(cmd.language, LanguageCode::Java);
        assert_eq!(cmd.version, 479);
        assert_eq!(cmd.opaque, 1);
        assert_eq!(cmd.flag, 0);
        assert_eq!(cmd.remark, None);
        assert_eq!(cmd.ext_fields.iter().collect::<Vec<_>>(), [("topic", "T")]);
    }

    #[test]
    fn decodes_the_rust_client_send_message_example() {
        // REMOTING.md §2.2: real output of rocketmq-client-rust 1.0.0.
        let text = br#"{"code":10,"language":"RUST","version":474,"opaque":7,"flag":0,"remark":null,"extFields":{"producerGroup":"PG","topic":"TopicTest","defaultTopic":"TBW102","defaultTopicQueueNums":"4","queueId":"1","sysFlag":"0","bornTimestamp":"1700000000000","flag":"0","properties":"UNIQ_KEY\u0001ABC\u0002WAIT\u0001true\u0002","reconsumeTimes":"0","unitMode":"false","batch":"false","bname":"broker-a"},"serializeTypeCurrentRPC":"JSON"}"#;
        let cmd = decode_header(text).expect("decodes");
        assert_eq!(cmd.code, request::SEND_MESSAGE);
        assert_eq!(cmd.language, LanguageCode::Rust);
        assert_eq!(cmd.version, 474);
        assert_eq!(cmd.opaque, 7);
        assert_eq!(cmd.remark, None);
        assert_eq!(cmd.ext_fields.len(), 13);
        assert_eq!(cmd.ext_fields.get("properties"), Some("UNIQ_KEY\u{1}ABC\u{2}WAIT\u{1}true\u{2}"));
        assert_eq!(cmd.ext_fields.get("bornTimestamp"), Some("1700000000000"));
        assert_eq!(cmd.ext_fields.iter().next(), Some(("producerGroup", "PG")));
    }

    #[test]
    fn decoding_is_lenient() {
        let cmd = decode_header(
            br#" {"opaque":"12","language":12,"extFields":{"n":4,"b":true,"z":null,"f":1.5},"extra":[1,{}]} "#,
        )
        .expect("decodes");
        assert_eq!(cmd.code, 0);
        assert_eq!(cmd.opaque, 12);
        assert_eq!(cmd.language, LanguageCode::Rust);
        assert_eq!(cmd.ext_fields.iter().collect::<Vec<_>>(), [("n", "4"), ("b", "true"), ("f", "1.5")]);
        assert_eq!(decode_header(b"{}").expect("decodes").language, LanguageCode::Java);
        assert_eq!(decode_header(br#"{"language":"KLINGON"}"#).expect("decodes").language, LanguageCode::Other);
        assert_eq!(
            decode_header(br#"{"language":99,"extFields":null}"#).expect("decodes").language,
            LanguageCode::Other
        );
    }

    #[test]
    fn malformed_headers_are_errors() {
        for bad in [
            &b""[..],
            b"[]",
            b"{",
            b"{\"code\":1}x",
            b"{\"code\":4294967296}",
            b"{\"code\":\"ten\"}",
            b"{\"extFields\":{\"a\":[1]}}",
            b"{\"extFields\":[]}",
            b"{\"code\":1,\"code\":2}",
            b"\xff",
        ] {
            assert!(
                matches!(decode_header(bad), Err(Error::HeaderJson { .. })),
                "{:?} should not decode",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Mutates `seed` with JSON-shaped edits (structural bytes, literals, escapes,
    /// numbers), so most results are near-valid headers rather than random noise.
    fn mutate_json(rng: &mut XorShift, seed: &[u8]) -> Vec<u8> {
        const PIECES: [&str; 26] = [
            "{",
            "}",
            "[",
            "]",
            "\"",
            ":",
            ",",
            "\\",
            " ",
            "null",
            "true",
            "false",
            "\"x\"",
            "1.5",
            "-0",
            "[1,{}]",
            "\\u0001",
            "\\ud83d\\ude00",
            "\\ud83d",
            "\\udc00",
            "99999999999999999999",
            "\"12\"",
            "1e3",
            "é",
            "\u{1}",
            "-9223372036854775809",
        ];
        let mut out = seed.to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(out.len() + 1);
            match rng.below(4) {
                0 if at < out.len() => {
                    out.remove(at);
                }
                1 if at < out.len() => {
                    let piece = PIECES[rng.below(PIECES.len())].as_bytes();
                    out.splice(at..(at + 1).min(out.len()), piece.iter().copied());
                }
                2 => {
                    let piece = PIECES[rng.below(PIECES.len())].as_bytes();
                    out.splice(at..at, piece.iter().copied());
                }
                _ => {
                    if at < out.len() {
                        out[at] = rng.next() as u8;
                    }
                }
            }
        }
        out
    }

    /// Equal, except that a number with more significant digits than an f64 holds may
    /// print differently in its last digits: serde_json (without its `float_roundtrip`
    /// feature) rounds such numbers less exactly than Rust's correctly rounded parser,
    /// which the scanner uses.
    fn same_command(a: &RemotingCommand, b: &RemotingCommand) -> bool {
        let same_text = |x: &str, y: &str| {
            x == y
                || match (x.parse::<f64>(), y.parse::<f64>()) {
                    (Ok(x), Ok(y)) => ((x - y) / x).abs() < 1e-15,
                    _ => false,
                }
        };
        let (mut a, mut b) = (a.clone(), b.clone());
        let remarks_match = match (a.remark.take(), b.remark.take()) {
            (Some(x), Some(y)) => same_text(&x, &y),
            (x, y) => x == y,
        };
        let ext_match = a.ext_fields.len() == b.ext_fields.len()
            && a.ext_fields.iter().zip(b.ext_fields.iter()).all(|((ka, va), (kb, vb))| ka == kb && same_text(va, vb));
        a.ext_fields = ExtFields::new();
        b.ext_fields = ExtFields::new();
        remarks_match && ext_match && a == b
    }

    #[test]
    fn the_scanner_agrees_with_the_serde_reference() {
        let seeds: [&[u8]; 6] = [
            br#"{"code":10,"language":"RUST","version":474,"opaque":7,"flag":0,"remark":null,"extFields":{"producerGroup":"PG","topic":"TopicTest","queueId":"1","properties":"UNIQ_KEY\u0001ABC\u0002WAIT\u0001true\u0002","batch":"false"},"serializeTypeCurrentRPC":"JSON"}"#,
            br#" {"opaque":"12","language":12,"extFields":{"n":4,"b":true,"z":null,"f":1.5,"neg":-7,"big":18446744073709551615},"extra":[1,{"a":[true,null,"\u00e9"]}]} "#,
            br#"{"code":-2147483648,"remark":"r\"\\\/\b\f\n\r\t\ud83d\ude00\u00e9","language":null,"extFields":null,"flag":" 3 "}"#,
            br#"{"extFields":{"k":"v","k":"w","\u006b":"x","":""},"remark":17,"version":"-1"}"#,
            br#"{"c\u006fde":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#,
            br#"{"remark":1.25e2,"extFields":{"a":0.1,"b":-0,"c":1E-2,"d":12345678901234567890123}}"#,
        ];
        const ITERATIONS: usize = 40_000;
        let mut rng = XorShift(0x5EED_0F75_0A11);
        let (mut both_ok, mut both_err) = (0, 0);
        for i in 0..ITERATIONS {
            let seed = seeds[i % seeds.len()];
            let input = if i < seeds.len() { seed.to_vec() } else { mutate_json(&mut rng, seed) };
            let ours = decode_header(&input);
            let theirs = reference::decode_header(&input);
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => {
                    assert!(same_command(a, b), "{}\n{a:?}\n{b:?}", String::from_utf8_lossy(&input));
                    both_ok += 1;
                }
                (Err(_), Err(_)) => both_err += 1,
                _ => panic!(
                    "scanner {:?} but reference {:?} for {:?}",
                    ours.map(|_| ()),
                    theirs.map(|_| ()),
                    String::from_utf8_lossy(&input)
                ),
            }
        }
        eprintln!("{both_ok} accepted, {both_err} refused");
        assert!(both_ok > 4_000 && both_err > 4_000, "{both_ok} accepted, {both_err} refused");
    }

    #[test]
    fn the_word_at_a_time_search_finds_the_first_stop_byte() {
        let mut rng = XorShift(0x57_0B);
        let alphabet = [b'a', b'"', b'\\', 0x00, 0x1F, 0x20, 0x21, 0x7F, 0x80, 0xC3, 0xA9, 0xFF, 0x01, 0x5C ^ 0x80];
        for _ in 0..50_000 {
            let len = rng.below(40);
            let bytes: Vec<u8> = (0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect();
            let expected = bytes.iter().position(|&b| STRING_STOP[usize::from(b)]);
            assert_eq!(find_string_stop(&bytes), expected, "{bytes:?}");
        }
    }

    #[test]
    fn deep_nesting_in_skipped_members_is_refused_not_a_stack_overflow() {
        let deep = format!("{{\"x\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(decode_header(deep.as_bytes()).is_err());
        let fine = format!("{{\"x\":{}1{}}}", "[".repeat(100), "]".repeat(100));
        assert!(decode_header(fine.as_bytes()).is_ok());
    }
}
