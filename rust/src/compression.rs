//! The codecs of compressed record batches, with decompression bounded by a byte limit so that
//! a small batch cannot inflate without end (a "zip bomb" answers with an error, not an OOM).
//!
//! Codec ids are Kafka's (attributes bits 0-2): 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
//! Snappy arrives raw (librdkafka, kafka-python) or in the xerial framing the Java client
//! writes; lz4 is the LZ4 frame format (KIP-57); gzip may hold several members.

use std::io::Read;

use crate::error::{CoreError, Result};

pub const NONE: i16 = 0;
pub const GZIP: i16 = 1;
pub const SNAPPY: i16 = 2;
pub const LZ4: i16 = 3;
pub const ZSTD: i16 = 4;

const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

fn corrupt(codec: i16, why: impl std::fmt::Display) -> CoreError {
    CoreError::CorruptBatch(format!("{} data cannot be decompressed: {why}", codec_name(codec)))
}

fn too_large(limit: usize) -> CoreError {
    CoreError::CorruptBatch(format!("compressed records inflate past the limit of {limit} bytes"))
}

pub fn codec_name(codec: i16) -> &'static str {
    match codec {
        NONE => "uncompressed",
        GZIP => "gzip",
        SNAPPY => "snappy",
        LZ4 => "lz4",
        ZSTD => "zstd",
        _ => "unknown codec",
    }
}

/// Reads everything from `reader`, failing once more than `limit` bytes come out.
fn read_bounded(codec: i16, reader: impl Read, limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.take((limit as u64).saturating_add(1)).read_to_end(&mut out).map_err(|e| corrupt(codec, e))?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

fn snappy_block(block: &[u8], budget: usize, out: &mut Vec<u8>) -> Result<()> {
    let size = snap::raw::decompress_len(block).map_err(|e| corrupt(SNAPPY, e))?;
    if size > budget {
        return Err(too_large(out.len() + budget));
    }
    let start = out.len();
    out.resize(start + size, 0);
    snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(|e| corrupt(SNAPPY, e))?;
    Ok(())
}

fn snappy(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        snappy_block(data, limit, &mut out)?;
        return Ok(out);
    }
    // xerial: magic, version i32, compatible version i32, then (length i32, raw block)*.
    let mut pos = XERIAL_MAGIC.len() + 8;
    if data.len() < pos {
        return Err(corrupt(SNAPPY, "xerial header is truncated"));
    }
    while pos < data.len() {
        let Some(len_bytes) = data.get(pos..pos + 4) else {
            return Err(corrupt(SNAPPY, "xerial block length is truncated"));
        };
        let len = i32::from_be_bytes(len_bytes.try_into().unwrap());
        let block = usize::try_from(len).ok().and_then(|l| data.get(pos + 4..pos + 4 + l));
        let Some(block) = block else {
            return Err(corrupt(SNAPPY, format!("xerial block of {len} bytes runs past the data")));
        };
        snappy_block(block, limit - out.len(), &mut out)?;
        pos += 4 + block.len();
    }
    Ok(out)
}

/// Decompresses `data` written with `codec`, refusing to produce more than `limit` bytes.
pub fn decompress(codec: i16, data: &[u8], limit: usize) -> Result<Vec<u8>> {
    match codec {
        NONE => {
            if data.len() > limit {
                return Err(too_large(limit));
            }
            Ok(data.to_vec())
        }
        GZIP => read_bounded(codec, flate2::read::MultiGzDecoder::new(data), limit),
        SNAPPY => snappy(data, limit),
        LZ4 => read_bounded(codec, lz4_flex::frame::FrameDecoder::new(data), limit),
        ZSTD => {
            let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| corrupt(codec, e))?;
            read_bounded(codec, decoder, limit)
        }
        other => Err(CoreError::CorruptBatch(format!("record batch uses unknown compression codec {other}"))),
    }
}

/// `compression.gzip.level`: 1-9, or Kafka's -1 for zlib's default (6).
pub const GZIP_LEVELS: std::ops::RangeInclusive<i32> = 1..=9;

/// Compresses `data` with `codec` (snappy in the xerial framing Kafka's Java client writes) at
/// `level` for gzip and zstd (None: the codec's default); snappy and lz4 have one level.
pub fn compress(codec: i16, data: &[u8], level: Option<i32>) -> Result<Vec<u8>> {
    use std::io::Write;
    let fail = |e: std::io::Error| CoreError::io(format!("{} compression", codec_name(codec)), e);
    match codec {
        NONE => Ok(data.to_vec()),
        GZIP => {
            let level = match level {
                None | Some(-1) => flate2::Compression::default(),
                Some(level) if GZIP_LEVELS.contains(&level) => flate2::Compression::new(level as u32),
                Some(level) => return Err(CoreError::InvalidArgument(format!("gzip has no level {level}"))),
            };
            let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2), level);
            encoder.write_all(data).map_err(fail)?;
            encoder.finish().map_err(fail)
        }
        SNAPPY => {
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            for chunk in data.chunks(32 * 1024) {
                let block = snap::raw::Encoder::new()
                    .compress_vec(chunk)
                    .map_err(|e| CoreError::InvalidArgument(format!("snappy compression: {e}")))?;
                out.extend_from_slice(&(block.len() as i32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
        LZ4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(data).map_err(fail)?;
            encoder.finish().map_err(|e| CoreError::InvalidArgument(format!("lz4 compression: {e}")))
        }
        ZSTD => {
            zstd::stream::encode_all(data, level.unwrap_or(zstd::DEFAULT_COMPRESSION_LEVEL)).map_err(fail)
        }
        other => Err(CoreError::InvalidArgument(format!("unknown compression codec {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_codec() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_be_bytes()).collect();
        for codec in [NONE, GZIP, SNAPPY, LZ4, ZSTD] {
            let packed = compress(codec, &data, None).unwrap();
            assert_eq!(decompress(codec, &packed, data.len()).unwrap(), data, "codec {codec}");
            assert!(decompress(codec, &packed, data.len() - 1).is_err(), "codec {codec} limit");
        }
    }

    #[test]
    fn gzip_and_zstd_compress_at_the_level_asked() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| format!("{{\"n\":{},\"k\":\"v{}\"}}", i % 977, i % 13).into_bytes()).collect();
        for (codec, fast, small) in [(GZIP, 1, 9), (ZSTD, -1, 19)] {
            let fast_out = compress(codec, &data, Some(fast)).unwrap();
            let default_out = compress(codec, &data, None).unwrap();
            let small_out = compress(codec, &data, Some(small)).unwrap();
            assert!(fast_out.len() > default_out.len(), "codec {codec}: {} vs {}", fast_out.len(), default_out.len());
            assert!(small_out.len() < default_out.len(), "codec {codec}: {} vs {}", small_out.len(), default_out.len());
            for packed in [fast_out, default_out, small_out] {
                assert_eq!(decompress(codec, &packed, data.len()).unwrap(), data, "codec {codec}");
            }
        }
        // gzip's -1 is zlib's default; zstd's -1 is its first fast level, not its default.
        assert_eq!(compress(GZIP, &data, Some(-1)).unwrap(), compress(GZIP, &data, None).unwrap());
        assert_eq!(compress(ZSTD, &data, Some(3)).unwrap(), compress(ZSTD, &data, None).unwrap());
        assert!(compress(GZIP, &data, Some(0)).is_err() && compress(GZIP, &data, Some(10)).is_err());
    }

    #[test]
    fn raw_snappy_and_garbage() {
        let raw = snap::raw::Encoder::new().compress_vec(b"hello hello hello").unwrap();
        assert_eq!(decompress(SNAPPY, &raw, 100).unwrap(), b"hello hello hello");
        for codec in [GZIP, SNAPPY, LZ4, ZSTD] {
            assert!(decompress(codec, b"\x00\x01garbage\xff\xff\xff\xff", 1000).is_err());
        }
        assert!(decompress(9, b"", 10).is_err());
    }

    #[test]
    fn bombs_are_refused() {
        let zeros = vec![0u8; 50 << 20];
        for codec in [GZIP, SNAPPY, LZ4, ZSTD] {
            let packed = compress(codec, &zeros, None).unwrap();
            assert!(packed.len() < 5 << 20);
            let err = decompress(codec, &packed, 1 << 20).unwrap_err();
            assert!(err.to_string().contains("inflate past"), "{codec}: {err}");
        }
    }
}
