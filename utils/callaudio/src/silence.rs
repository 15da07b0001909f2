// SPDX-License-Identifier: MPL-2.0
//! Silence buffers cut from one pre-filled block, so a long stall costs no
//! allocation or fill per buffer.
//!
//! Two limits keep that cheap for any caps: the block is at most
//! `MAX_BLOCK_BYTES` (a 20 ms chunk at 768 kHz and 64 channels of F64 would
//! otherwise be 8 MB), and each block is handed out at most `MAX_SHARES`
//! times before a new one replaces it: every buffer that holds a piece of
//! the block holds a shared lock on its memory, and GStreamer counts those
//! in 15 bits (a queue holding 32768 pieces of one block overflows it).

use std::sync::Mutex;

use crate::Layout;
use crate::sync::lock;

/// Largest silence block, and so largest silence buffer, in bytes.
pub const MAX_BLOCK_BYTES: usize = 256 * 1024;
/// How many buffers may share one block before a new block is made.
const MAX_SHARES: u32 = 4096;

struct Block {
    buffer: gst::Buffer,
    shares: u32,
}

pub struct SilenceSource {
    layout: Layout,
    block: Mutex<Block>,
    block_samples: u64,
}

impl SilenceSource {
    /// A source of silence in pieces of at most `block_samples` frames,
    /// fewer if that many would pass `MAX_BLOCK_BYTES`.
    pub fn new(layout: &Layout, block_samples: u64) -> Self {
        let most = (MAX_BLOCK_BYTES / layout.bpf.max(1)).max(1) as u64;
        let block_samples = block_samples.clamp(1, most);
        SilenceSource {
            layout: layout.clone(),
            block: Mutex::new(Block {
                buffer: layout.silence_buffer(block_samples),
                shares: 0,
            }),
            block_samples,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The most frames one `take` gives.
    pub fn max_take(&self) -> u64 {
        self.block_samples
    }

    /// `n.min(max_take())` frames of silence, flagged GAP, without
    /// timestamps, sharing the block's read-only memory.
    pub fn take(&self, n: u64) -> gst::Buffer {
        let n = n.min(self.block_samples);
        let mut block = lock(&self.block);
        if block.shares >= MAX_SHARES {
            block.buffer = self.layout.silence_buffer(self.block_samples);
            block.shares = 0;
        }
        block.shares += 1;
        let mut buffer = block
            .buffer
            .copy_region(gst::BufferCopyFlags::MEMORY, 0..self.layout.byte_offset(n))
            .expect("region inside the silence block");
        buffer.get_mut().unwrap().set_flags(gst::BufferFlags::GAP);
        buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(format: gst_audio::AudioFormat, rate: i32, channels: i32) -> Layout {
        gst::init().unwrap();
        let caps = gst_audio::AudioCapsBuilder::new_interleaved()
            .format(format)
            .rate(rate)
            .channels(channels)
            .build();
        Layout::from_caps(&caps).unwrap()
    }

    #[test]
    fn takes_share_one_block_and_hold_silence() {
        let layout = layout(gst_audio::AudioFormat::U8, 8000, 2);
        let source = SilenceSource::new(&layout, 160);
        let a = source.take(160);
        let b = source.take(7);
        assert_eq!(b.size(), 14);
        assert!(b.flags().contains(gst::BufferFlags::GAP));
        assert_eq!(
            a.map_readable().unwrap().as_ptr(),
            b.map_readable().unwrap().as_ptr()
        );
        assert!(a.map_readable().unwrap().iter().all(|&x| x == 0x80));
        // More than a block: one block's worth, the caller asks again.
        assert_eq!(source.take(1000).size(), 320);
    }

    #[test]
    fn the_block_is_bounded_in_bytes_whatever_the_caps() {
        let layout = layout(gst_audio::AudioFormat::F64le, 768_000, 64);
        let source = SilenceSource::new(&layout, 15_360);
        assert!(source.max_take() * 512 <= MAX_BLOCK_BYTES as u64);
        assert!(source.take(u64::MAX).size() <= MAX_BLOCK_BYTES);
    }

    #[test]
    fn a_block_is_never_shared_past_gstreamers_limit() {
        let layout = layout(gst_audio::AudioFormat::S16le, 8000, 1);
        let source = SilenceSource::new(&layout, 160);
        // All alive at once, as in a deep queue: more than the 32767 shared
        // locks one memory can count. GStreamer would print CRITICALs and
        // fail the lock; each buffer must still be readable.
        let held: Vec<gst::Buffer> = (0..40_000).map(|_| source.take(160)).collect();
        let blocks: std::collections::HashSet<usize> = held
            .iter()
            .map(|b| b.map_readable().unwrap().as_ptr() as usize)
            .collect();
        assert!(blocks.len() >= 40_000 / MAX_SHARES as usize);
        assert!(held.iter().all(|b| b.map_readable().is_ok()));
    }
}
