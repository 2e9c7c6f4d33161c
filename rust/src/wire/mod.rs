//! Kafka's wire primitives, for the codecs that `tools/gen_rust_codec.py` generates from
//! Apache Kafka's message schemas into `generated.rs`.
//!
//! Classic versions prefix strings with an int16 length, bytes and arrays with an int32 (-1 is
//! null); flexible versions use unsigned varints of length + 1 (0 is null) and end every struct
//! with a section of tagged fields. Strings, bytes and records are borrowed from the frame.

pub mod generated;

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

pub type Result<T> = std::result::Result<T, WireError>;

fn err<T>(message: impl Into<String>) -> Result<T> {
    Err(WireError(message.into()))
}

/// Reads a frame front to back; every read checks the bytes left.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return err(format!("{n} bytes wanted at position {}, {} left", self.pos, self.remaining()));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    pub fn i8(&mut self) -> Result<i8> {
        Ok(i8::from_be_bytes(self.array()?))
    }
    pub fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_be_bytes(self.array()?))
    }
    /// Any non-zero byte is true, as Kafka's readers take it.
    pub fn bool(&mut self) -> Result<bool> {
        Ok(self.i8()? != 0)
    }
    pub fn uuid(&mut self) -> Result<[u8; 16]> {
        self.array()
    }

    /// An unsigned varint of at most 5 bytes (Kafka's lengths, counts and tags).
    pub fn uvarint(&mut self) -> Result<u32> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let byte = self.array::<1>()?[0];
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        err("unsigned varint longer than 5 bytes")
    }

    /// A length that may be null: `None` for any negative length (Kafka's readers take every
    /// negative length as null; only -1 is ever written), else checked against the bytes left.
    fn length(&mut self, compact: bool, wide: bool) -> Result<Option<usize>> {
        let n: i64 = if compact {
            i64::from(self.uvarint()?) - 1
        } else if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        if n < 0 {
            return Ok(None);
        }
        Ok(Some(n as usize))
    }

    pub fn nullable_string(&mut self, compact: bool) -> Result<Option<&'a str>> {
        let Some(n) = self.length(compact, false)? else { return Ok(None) };
        std::str::from_utf8(self.take(n)?).map(Some).map_err(|_| WireError("string is not UTF-8".into()))
    }

    pub fn string(&mut self, compact: bool) -> Result<&'a str> {
        self.nullable_string(compact)?.ok_or_else(|| WireError("null in a non-nullable string".into()))
    }

    pub fn nullable_bytes(&mut self, compact: bool) -> Result<Option<&'a [u8]>> {
        let Some(n) = self.length(compact, true)? else { return Ok(None) };
        self.take(n).map(Some)
    }

    pub fn bytes(&mut self, compact: bool) -> Result<&'a [u8]> {
        self.nullable_bytes(compact)?.ok_or_else(|| WireError("null in non-nullable bytes".into()))
    }

    /// An array's element count; None for null. Each element takes at least one byte, so a
    /// count larger than the bytes left is refused before anything is allocated for it.
    pub fn nullable_count(&mut self, compact: bool) -> Result<Option<usize>> {
        let count = self.length(compact, true)?;
        if let Some(n) = count {
            if n > self.remaining() {
                return err(format!("array of {n} elements in {} bytes", self.remaining()));
            }
        }
        Ok(count)
    }

    pub fn count(&mut self, compact: bool) -> Result<usize> {
        self.nullable_count(compact)?.ok_or_else(|| WireError("null in a non-nullable array".into()))
    }

    /// The header of a tagged field: (tag, a reader over its bytes).
    pub fn tagged_field(&mut self) -> Result<(u32, Reader<'a>)> {
        let tag = self.uvarint()?;
        let size = self.uvarint()? as usize;
        Ok((tag, Reader::new(self.take(size)?)))
    }
}

/// Appends a message to a byte vector.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(capacity: usize) -> Self {
        Writer { buf: Vec::with_capacity(capacity) }
    }

    pub fn i8(&mut self, v: i8) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    pub fn uuid(&mut self, v: &[u8; 16]) {
        self.buf.extend_from_slice(v);
    }

    pub fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// A length prefix; `None` writes null.
    fn length(&mut self, n: Option<usize>, compact: bool, wide: bool) -> Result<()> {
        match (n, compact, wide) {
            (None, true, _) => self.uvarint(0),
            (None, false, true) => self.i32(-1),
            (None, false, false) => self.i16(-1),
            (Some(n), true, _) => self.uvarint(u32::try_from(n + 1).map_err(|_| WireError(format!("length {n}")))?),
            (Some(n), false, true) => self.i32(i32::try_from(n).map_err(|_| WireError(format!("length {n}")))?),
            (Some(n), false, false) => self.i16(i16::try_from(n).map_err(|_| WireError(format!("string of {n} bytes")))?),
        }
        Ok(())
    }

    pub fn nullable_string(&mut self, v: Option<&str>, compact: bool) -> Result<()> {
        self.length(v.map(str::len), compact, false)?;
        self.buf.extend_from_slice(v.unwrap_or("").as_bytes());
        Ok(())
    }

    pub fn string(&mut self, v: &str, compact: bool) -> Result<()> {
        self.nullable_string(Some(v), compact)
    }

    pub fn nullable_bytes(&mut self, v: Option<&[u8]>, compact: bool) -> Result<()> {
        self.length(v.map(<[u8]>::len), compact, true)?;
        self.buf.extend_from_slice(v.unwrap_or(b""));
        Ok(())
    }

    pub fn bytes(&mut self, v: &[u8], compact: bool) -> Result<()> {
        self.nullable_bytes(Some(v), compact)
    }

    pub fn count(&mut self, n: Option<usize>, compact: bool) -> Result<()> {
        self.length(n, compact, true)
    }

    /// A tagged field: its tag, then its bytes (written by `body`) with their size.
    pub fn tagged_field(&mut self, tag: u32, body: impl FnOnce(&mut Writer) -> Result<()>) -> Result<()> {
        let mut inner = Writer::default();
        body(&mut inner)?;
        self.uvarint(tag);
        self.uvarint(inner.buf.len() as u32);
        self.buf.extend_from_slice(&inner.buf);
        Ok(())
    }
}

/// A field that a version lacks was given a value other than its default.
pub fn unsupported<T>(message: &str, field: &str, version: i16) -> Result<T> {
    err(format!("{message} v{version} has no field {field}, and its value is not the default"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarints_round_trip_and_overlong_ones_are_refused() {
        for v in [0u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut w = Writer::default();
            w.uvarint(v);
            assert_eq!(Reader::new(&w.buf).uvarint().unwrap(), v);
        }
        assert!(Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).uvarint().is_err());
    }

    #[test]
    fn lengths_past_the_end_and_huge_counts_are_errors_not_panics() {
        assert!(Reader::new(&[0, 5, b'a']).string(false).is_err());
        assert!(Reader::new(&[0x7f, 0xff, 0xff, 0xff]).count(false).is_err());
        assert!(Reader::new(&[0xff, 0xfe]).string(false).is_err()); // -2
        assert_eq!(Reader::new(&[0xff, 0xff]).nullable_string(false).unwrap(), None);
        assert_eq!(Reader::new(&[0xff, 0xfe]).nullable_string(false).unwrap(), None); // as Kafka reads it
        assert!(Reader::new(&[2]).bool().unwrap());
        assert_eq!(Reader::new(&[0]).nullable_string(true).unwrap(), None);
        assert_eq!(Reader::new(&[3, b'h', b'i']).string(true).unwrap(), "hi");
    }
}
