//! Reading a device's configuration structure (virtio 1.3, 4.1.4.6 and
//! 4.2.2: the device-specific configuration the driver reads at any offset
//! and width).

/// Copies the bytes of `config` at `offset..offset + data.len()` into
/// `data`; bytes past the end of the structure, or at an offset no `usize`
/// holds, read as zero, so a driver's out-of-range read never faults.
pub(crate) fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, out) in data.iter_mut().enumerate() {
        *out = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|o| config.get(o))
            .copied()
            .unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_zero() {
        let mut data = [0xff; 4];
        read_config_bytes(&[1, 2, 3], 1, &mut data);
        assert_eq!(data, [2, 3, 0, 0]);
        read_config_bytes(&[1, 2, 3], u64::MAX, &mut data);
        assert_eq!(data, [0; 4]);
    }
}
