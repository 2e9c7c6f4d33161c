//! The schema ids records carry, for broker-side schema validation: the serializers of a schema
//! registry frame a key or value as the magic byte 0, a 4-byte big-endian schema id, then the
//! encoded data. The broker checks that each framed id is registered for the topic's subject;
//! this walks the batches (decompressing them) so Python sees each distinct id once.

use std::collections::HashSet;

use crate::batch::{self, parse_records, HEADER_SIZE};
use crate::compression;
use crate::error::{CoreError, Result};

pub const KEY: u8 = 0;
pub const VALUE: u8 = 1;

/// What the records of a run of batches carry.
#[derive(Debug, Default, PartialEq)]
pub struct SchemaIds {
    /// (record index in its batch, KEY or VALUE) of each non-null part without the framing.
    pub unframed: Vec<(i32, u8)>,
    /// (KEY or VALUE, schema id, index of the first record carrying it), each pair once.
    pub ids: Vec<(u8, u32, i32)>,
}

fn framed_id(data: &[u8]) -> Option<u32> {
    (data.len() >= 5 && data[0] == 0).then(|| u32::from_be_bytes([data[1], data[2], data[3], data[4]]))
}

/// The schema ids of the keys (with `keys`) and values (with `values`) of every record in the
/// batches of `buf`; control batches are skipped, null keys and values pass. The bytes come
/// from a client before any other check: a batch whose length runs past `buf`, or whose
/// records do not add up, is an error (never a panic); a batch decompresses to at most
/// `max_batch_bytes`; at most `MAX_REPORTED` unframed records are listed.
pub fn schema_ids(buf: &[u8], keys: bool, values: bool, max_batch_bytes: usize) -> Result<SchemaIds> {
    let mut out = SchemaIds::default();
    let mut seen = HashSet::new();
    let mut pos = 0;
    while pos < buf.len() {
        let header = batch::parse_header(&buf[pos..])?;
        let end = pos
            .checked_add(header.size())
            .filter(|end| *end <= buf.len() && header.size() >= HEADER_SIZE)
            .ok_or_else(|| CoreError::CorruptBatch(format!("record batch at byte {pos} runs past the end of the request")))?;
        let whole = &buf[pos..end];
        pos = end;
        if header.is_control() {
            continue;
        }
        let records = compression::decompress(header.compression(), &whole[HEADER_SIZE..], max_batch_bytes)?;
        for (index, record) in parse_records(&records, header.record_count)?.iter().enumerate() {
            for (part, range, checked) in [(KEY, record.key, keys), (VALUE, record.value, values)] {
                let Some((start, end)) = range.filter(|_| checked) else { continue };
                match framed_id(&records[start..end]) {
                    None if out.unframed.len() < MAX_REPORTED => out.unframed.push((index as i32, part)),
                    None => {}
                    Some(id) => {
                        if seen.insert((part, id)) {
                            out.ids.push((part, id, index as i32));
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Unframed records listed at most (the Produce answer names them; one is enough to refuse).
pub const MAX_REPORTED: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::build_batch;

    #[test]
    fn framed_values_give_their_ids_once_and_the_rest_is_unframed() {
        let framed = [0u8, 0, 0, 0, 7, b'x'];
        let other = [0u8, 0, 0, 1, 0];
        let batch = build_batch(0, 0, &[&framed, b"plain", &framed, &other, &[0, 0]]);
        let found = schema_ids(&batch, false, true, 1 << 20).unwrap();
        assert_eq!(found.unframed, vec![(1, VALUE), (4, VALUE)]);
        assert_eq!(found.ids, vec![(VALUE, 7, 0), (VALUE, 256, 3)]);
        assert_eq!(schema_ids(&batch, true, false, 1 << 20).unwrap(), SchemaIds::default()); // build_batch's records have no key
    }

    #[test]
    fn a_truncated_run_is_an_error_not_a_panic() {
        let batch = build_batch(0, 0, &[b"abc"]);
        assert!(schema_ids(&batch[..batch.len() - 2], false, true, 1 << 20).is_err());
        // a header claiming more bytes than there are, and a header alone with a huge record count
        let mut long = batch.clone();
        long[8..12].copy_from_slice(&(i32::MAX).to_be_bytes());
        assert!(schema_ids(&long, false, true, 1 << 20).is_err());
        let mut many = batch[..HEADER_SIZE].to_vec();
        many[8..12].copy_from_slice(&((HEADER_SIZE - 12) as i32).to_be_bytes());
        many[57..61].copy_from_slice(&(i32::MAX).to_be_bytes());
        assert!(schema_ids(&many, false, true, 1 << 20).is_err());
        assert!(schema_ids(&batch[..30], false, true, 1 << 20).is_err());
    }
}
