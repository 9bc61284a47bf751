//! The SEND_BATCH_MESSAGE body (REMOTING.md §4.2.2): messages of one batch send, back to
//! back, each in this layout (Java `MessageDecoder#encodeMessage`):
//!
//! ```text
//!  offset   size  field
//!  0        4     totalSize         this item, these 4 bytes included = 22 + N + P
//!  4        4     magic             0 (written as 0, not checked on read)
//!  8        4     bodyCRC           0 (written as 0, not checked: the broker computes its own)
//!  12       4     flag              the message's user flag
//!  16       4     bodyLength        N, i32
//!  20       N     body
//!  20+N     2     propertiesLength  P, i16
//!  22+N     P     properties        the message's own property string (UNIQ_KEY, TAGS, ...)
//! ```
//!
//! All integers big-endian. The send header's queue, sysFlag and born timestamp apply to
//! every item; the header's properties are batch-level and not copied into items.
//!
//! Invariants: decoding borrows the body and properties from the input (no copies) and
//! never panics; `totalSize` must equal the sum of the fields exactly, because the items
//! are read sequentially and a disagreement means the batch is corrupt. Iteration stops
//! at the first bad item. [`encode_item`] writes exactly [`item_len`] bytes or nothing.
//!
//! Deliberately not here: the broker's batch rules (no `%RETRY%` topics, no DELAY, no
//! transactions) and turning items into stored records (`stored`).

use crate::buf::OutBuf;
use crate::limits::{BATCH_ITEM_FIXED_BYTES, PROPERTIES_SIZE_MAX_BYTES};
use crate::Error;

const _: () = assert!(BATCH_ITEM_FIXED_BYTES == 22, "the layout drawn above: 20 bytes before the body, 2 after");

/// One message of a batch, borrowed from the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchItem<'a> {
    pub flag: i32,
    pub body: &'a [u8],
    /// The property string (see [`crate::properties`]).
    pub properties: &'a [u8],
}

/// Iterates the items of a batch body; after an `Err` it yields nothing more.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

/// The items of `body`, in order.
pub fn iter(body: &[u8]) -> BatchIter<'_> {
    BatchIter { buf: body, pos: 0, failed: false }
}

/// All items of `body`, or the first problem.
pub fn decode(body: &[u8]) -> Result<Vec<BatchItem<'_>>, Error> {
    iter(body).collect()
}

fn be_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let word: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(i32::from_be_bytes(word))
}

fn be_i16(bytes: &[u8], at: usize) -> Option<i16> {
    let word: [u8; 2] = bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(i16::from_be_bytes(word))
}

impl<'a> BatchIter<'a> {
    fn item(&self) -> Result<(BatchItem<'a>, usize), &'static str> {
        let rest = &self.buf[self.pos..];
        let total = be_i32(rest, 0).ok_or("truncated totalSize")?;
        let total = usize::try_from(total).map_err(|_| "negative totalSize")?;
        if total < BATCH_ITEM_FIXED_BYTES {
            return Err("totalSize smaller than the fixed fields");
        }
        let item = rest.get(..total).ok_or("totalSize runs past the end of the body")?;
        let flag = be_i32(item, 12).ok_or("truncated flag")?;
        let body_len = be_i32(item, 16).ok_or("truncated bodyLength")?;
        let body_len = usize::try_from(body_len).map_err(|_| "negative bodyLength")?;
        let body = item.get(20..20usize.saturating_add(body_len)).ok_or("bodyLength runs past totalSize")?;
        let props_at = 20 + body_len;
        let props_len = be_i16(item, props_at).ok_or("bodyLength runs past totalSize")?;
        let props_len = usize::try_from(props_len).map_err(|_| "negative propertiesLength")?;
        let properties =
            item.get(props_at + 2..props_at + 2 + props_len).ok_or("propertiesLength runs past totalSize")?;
        if props_at + 2 + props_len != total {
            return Err("totalSize does not match the fields");
        }
        Ok((BatchItem { flag, body, properties }, total))
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<BatchItem<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        match self.item() {
            Ok((item, len)) => {
                self.pos += len;
                Some(Ok(item))
            }
            Err(detail) => {
                self.failed = true;
                Some(Err(Error::Batch { at: self.pos, detail }))
            }
        }
    }
}

/// The size of an item with this body and property string, or why it cannot be encoded.
pub fn item_len(body: &[u8], properties: &[u8]) -> Result<usize, Error> {
    if properties.len() > PROPERTIES_SIZE_MAX_BYTES {
        return Err(Error::BatchFieldTooLong {
            field: "properties",
            len: properties.len(),
            max: PROPERTIES_SIZE_MAX_BYTES,
        });
    }
    let len = BATCH_ITEM_FIXED_BYTES + body.len() + properties.len();
    if i32::try_from(len).is_err() {
        return Err(Error::BatchFieldTooLong { field: "item", len, max: i32::MAX as usize });
    }
    Ok(len)
}

/// Appends one item and returns its length; nothing is appended on error.
pub fn encode_item<B: OutBuf>(flag: i32, body: &[u8], properties: &[u8], out: &mut B) -> Result<usize, Error> {
    let len = item_len(body, properties)?;
    out.reserve_more(len);
    // The casts are exact: item_len bounded every length.
    out.put(&(len as i32).to_be_bytes());
    out.put(&0i32.to_be_bytes());
    out.put(&0i32.to_be_bytes());
    out.put(&flag.to_be_bytes());
    out.put(&(body.len() as i32).to_be_bytes());
    out.put(body);
    out.put(&(properties.len() as i16).to_be_bytes());
    out.put(properties);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::properties;
    use crate::test_util::XorShift;

    #[test]
    fn golden_item_bytes() {
        let mut out = Vec::new();
        assert_eq!(encode_item(7, b"hi", b"A\x01B\x02", &mut out), Ok(28));
        assert_eq!(
            out,
            [
                0, 0, 0, 28, // totalSize
                0, 0, 0, 0, // magic
                0, 0, 0, 0, // bodyCRC
                0, 0, 0, 7, // flag
                0, 0, 0, 2, b'h', b'i', // body
                0, 4, b'A', 1, b'B', 2, // properties
            ]
        );
    }

    #[test]
    fn round_trip_borrows_from_the_body() {
        let p1 = properties::encode([("UNIQ_KEY", "K1"), ("TAGS", "TagA")]);
        let p2 = properties::encode([("UNIQ_KEY", "K2")]);
        let mut body = Vec::new();
        encode_item(0, b"first", &p1, &mut body).expect("encodes");
        encode_item(-1, b"", &p2, &mut body).expect("encodes");
        encode_item(3, b"third", b"", &mut body).expect("encodes");
        let items = decode(&body).expect("decodes");
        assert_eq!(
            items,
            [
                BatchItem { flag: 0, body: b"first", properties: &p1 },
                BatchItem { flag: -1, body: b"", properties: &p2 },
                BatchItem { flag: 3, body: b"third", properties: b"" },
            ]
        );
        assert!(std::ptr::eq(items[0].body.as_ptr(), body[20..].as_ptr()));
        assert_eq!(decode(b""), Ok(vec![]));
    }

    #[test]
    fn corrupt_batches_are_errors_and_stop_iteration() {
        let mut one = Vec::new();
        encode_item(0, b"abc", b"x\x01y\x02", &mut one).expect("encodes");
        for cut in 1..one.len() {
            assert!(decode(&one[..cut]).is_err(), "truncated to {cut}");
        }
        let mut wrong_total = one.clone();
        wrong_total[3] += 1;
        wrong_total.push(0);
        assert_eq!(decode(&wrong_total), Err(Error::Batch { at: 0, detail: "totalSize does not match the fields" }));
        let mut neg_body = one.clone();
        neg_body[16] = 0x80;
        assert_eq!(decode(&neg_body), Err(Error::Batch { at: 0, detail: "negative bodyLength" }));
        let mut neg_props = one.clone();
        neg_props[23] = 0xFF;
        assert_eq!(decode(&neg_props), Err(Error::Batch { at: 0, detail: "negative propertiesLength" }));
        let mut two = one.clone();
        two.extend_from_slice(&[0xFF; 5]);
        let mut it = iter(&two);
        assert!(matches!(it.next(), Some(Ok(_))));
        assert_eq!(it.next(), Some(Err(Error::Batch { at: one.len(), detail: "negative totalSize" })));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn oversized_properties_are_refused_without_writing() {
        let mut out = vec![1];
        let big = vec![b'a'; PROPERTIES_SIZE_MAX_BYTES + 1];
        assert!(matches!(encode_item(0, b"", &big, &mut out), Err(Error::BatchFieldTooLong { .. })));
        assert_eq!(out, [1]);
    }

    #[test]
    fn pseudo_random_batches_never_panic() {
        let mut seed = Vec::new();
        encode_item(1, b"body", b"K\x01V\x02", &mut seed).expect("encodes");
        encode_item(2, b"", b"", &mut seed).expect("encodes");
        let mut rng = XorShift(7);
        let mut items = 0;
        for _ in 0..3000 {
            let input = rng.mutate(&seed);
            items += iter(&input).take_while(Result::is_ok).count();
        }
        assert!(items > 300, "only {items} items decoded");
    }
}
