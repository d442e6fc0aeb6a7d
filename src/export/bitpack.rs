//! 1-bit masks: `packbits`/`unpackbits` in numpy's default order (MSB first: element `i` is
//! bit `7 − i % 8` of byte `i / 8`; the last byte is zero-padded), so
//! `np.unpackbits(data)[:n]` recovers a mask written here.

/// The deployed bits of a real-valued mask, `1[M > 0]` element by element in row-major order:
/// the one rule export and the server share, so a served task answers like its 1-bit export.
pub fn deployed_bits(mask: &candle_core::Tensor) -> candle_core::Result<Vec<bool>> {
    Ok(mask
        .flatten_all()?
        .gt(0.0)?
        .to_vec1::<u8>()?
        .into_iter()
        .map(|b| b == 1)
        .collect())
}

/// Packs booleans, MSB first, into `⌈n/8⌉` bytes.
pub fn pack(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, &b) in bits.iter().enumerate() {
        if b {
            out[i / 8] |= 0x80 >> (i % 8);
        }
    }
    out
}

/// Unpacks the first `n` bits (MSB first). Returns `None` if `bytes` holds fewer than `n` bits.
pub fn unpack(bytes: &[u8], n: usize) -> Option<Vec<bool>> {
    if bytes.len() * 8 < n {
        return None;
    }
    Some(
        (0..n)
            .map(|i| bytes[i / 8] & (0x80 >> (i % 8)) != 0)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn msb_first_like_numpy_packbits() {
        // np.packbits([1,0,1,1,0,0,0,0, 1]) == [176, 128]
        let bits = [true, false, true, true, false, false, false, false, true];
        assert_eq!(pack(&bits), vec![176, 128]);
        assert_eq!(unpack(&[176, 128], 9).unwrap(), bits);
        assert!(unpack(&[176], 9).is_none());
    }

    #[test]
    fn round_trip_property_for_many_lengths() {
        let mut rng = Rng::new(5);
        for n in [0usize, 1, 7, 8, 9, 15, 16, 17, 100, 1023] {
            let bits: Vec<bool> = (0..n).map(|_| rng.bernoulli(0.3)).collect();
            let packed = pack(&bits);
            assert_eq!(packed.len(), n.div_ceil(8));
            assert_eq!(unpack(&packed, n).unwrap(), bits);
        }
    }
}
