//! CRC32C (Castagnoli), bit by bit: the fuzzer cannot guess a checksum, so the journal target
//! also tries each input with its checksums repaired, which lets it reach the decoders behind them.

pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// Sets the trailing 4 bytes of `frame` to the CRC32C of the bytes before them.
pub(crate) fn seal(frame: &mut [u8]) {
    if let Some(n) = frame.len().checked_sub(4) {
        let crc = crc32c(&frame[..n]).to_le_bytes();
        frame[n..].copy_from_slice(&crc);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_check_value_of_crc32c() {
        assert_eq!(super::crc32c(b"123456789"), 0xE306_9283);
    }
}
