//! Silence buffers cut from one pre-filled block, so a long stall costs no
//! allocation or fill per buffer.

use crate::Layout;

pub struct SilenceSource {
    layout: Layout,
    block: gst::Buffer,
    block_samples: u64,
}

impl SilenceSource {
    /// A source whose shared block holds `block_samples` frames of silence.
    pub fn new(layout: &Layout, block_samples: u64) -> Self {
        let block_samples = block_samples.max(1);
        SilenceSource {
            layout: layout.clone(),
            block: layout.silence_buffer(block_samples),
            block_samples,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// `n` frames of silence, flagged GAP, without timestamps. Buffers up to
    /// the block size share its read-only memory.
    pub fn take(&self, n: u64) -> gst::Buffer {
        if n > self.block_samples {
            return self.layout.silence_buffer(n);
        }
        let mut buffer = self
            .block
            .copy_region(gst::BufferCopyFlags::MEMORY, 0..self.layout.byte_offset(n))
            .expect("region inside the silence block");
        buffer.get_mut().unwrap().set_flags(gst::BufferFlags::GAP);
        buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_share_one_block_and_hold_silence() {
        gst::init().unwrap();
        let caps = gst_audio::AudioCapsBuilder::new_interleaved()
            .format(gst_audio::AudioFormat::U8)
            .rate(8000)
            .channels(2)
            .build();
        let layout = Layout::from_caps(&caps).unwrap();
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
        let big = source.take(1000);
        assert_eq!(big.size(), 2000);
        assert!(big.map_readable().unwrap().iter().all(|&x| x == 0x80));
    }
}
