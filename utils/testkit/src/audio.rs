// SPDX-License-Identifier: MPL-2.0
//! Test audio whose samples say where they came from.

/// `samples` mono S16LE samples whose values are their own index plus
/// `first` (wrapping), stamped `pts` and lasting their length at `rate`:
/// any sample dropped, duplicated or misplaced shows up in the values.
pub fn ramp(first: i16, samples: usize, rate: u32, pts: gst::ClockTime) -> gst::Buffer {
    let data: Vec<u8> = (0..samples)
        .flat_map(|i| first.wrapping_add(i as i16).to_le_bytes())
        .collect();
    let mut buffer = gst::Buffer::from_mut_slice(data);
    {
        let b = buffer.get_mut().expect("a new buffer is writable");
        b.set_pts(pts);
        b.set_duration(callaudio::samples_to_time(samples as u64, rate));
    }
    buffer
}

/// The S16LE samples of a buffer.
pub fn samples_of(buffer: &gst::BufferRef) -> Vec<i16> {
    let map = buffer.map_readable().expect("a readable buffer");
    map.chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}
