//! G.711 mu-law, as telephony serializers put it on the wire (Python's
//! `audioop.lin2ulaw`/`ulaw2lin`, which Pipecat uses).

const BIAS: i32 = 0x84;
/// Segment ends of the 14-bit encoder (`audioop`'s `st_14linear2ulaw`).
const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const CLIP_14: i32 = 8159;

pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u as i32;
    let t = (((u & 0x0F) << 3) + BIAS) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { BIAS - t } else { t - BIAS }) as i16
}

pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut v = (sample as i32) >> 2;
    let mask = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    v = v.min(CLIP_14) + (BIAS >> 2);
    match SEG_UEND.iter().position(|&end| v <= end) {
        Some(seg) => (((seg as i32) << 4 | ((v >> (seg + 1)) & 0x0F)) ^ mask) as u8,
        None => (0x7F ^ mask) as u8,
    }
}

/// mu-law bytes to S16LE bytes.
pub fn decode(ulaw: &[u8]) -> Vec<u8> {
    ulaw.iter().flat_map(|&u| ulaw_to_linear(u).to_le_bytes()).collect()
}

/// S16LE bytes to mu-law bytes.
pub fn encode(s16le: &[u8]) -> Vec<u8> {
    s16le.chunks_exact(2).map(|c| linear_to_ulaw(i16::from_le_bytes([c[0], c[1]]))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for u in 0..=255u8 {
            let lin = ulaw_to_linear(u);
            // 0x7F and 0xFF both mean zero; everything else maps back exactly.
            if u != 0x7F {
                assert_eq!(linear_to_ulaw(lin), u, "code {u:#x} -> {lin}");
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        // What Python's audioop.lin2ulaw (Pipecat's encoder) gives.
        for (lin, ulaw) in [(0, 255), (-1, 126), (1, 255), (-100, 114), (100, 242), (5000, 171), (-5000, 43)] {
            assert_eq!(linear_to_ulaw(lin), ulaw, "{lin}");
        }
    }
}
