// SPDX-License-Identifier: MPL-2.0
//! G.711 mu-law and A-law, as telephony serializers put them on the wire,
//! bit for bit what Python's `audioop` (which Pipecat uses) produces.

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

/// Segment ends of the 13-bit A-law encoder (`audioop`'s `st_linear2alaw`).
const SEG_AEND: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

pub fn alaw_to_linear(a: u8) -> i16 {
    let a = (a ^ 0x55) as i32;
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut v = (sample as i32) >> 3;
    let mask = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    match SEG_AEND.iter().position(|&end| v <= end) {
        Some(seg) => {
            let shift = if seg < 2 { 1 } else { seg };
            (((seg as i32) << 4 | ((v >> shift) & 0x0F)) ^ mask) as u8
        }
        None => (0x7F ^ mask) as u8,
    }
}

/// Which G.711 law a telephony wire uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    Mu,
    A,
}

/// G.711 bytes to S16LE bytes.
pub fn decode_law(law: Law, coded: &[u8]) -> Vec<u8> {
    let f = match law {
        Law::Mu => ulaw_to_linear,
        Law::A => alaw_to_linear,
    };
    coded.iter().flat_map(|&c| f(c).to_le_bytes()).collect()
}

/// S16LE bytes to G.711 bytes.
pub fn encode_law(law: Law, s16le: &[u8]) -> Vec<u8> {
    let f = match law {
        Law::Mu => linear_to_ulaw,
        Law::A => linear_to_alaw,
    };
    s16le
        .chunks_exact(2)
        .map(|c| f(i16::from_le_bytes([c[0], c[1]])))
        .collect()
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
    fn alaw_matches_audioop() {
        for (lin, a) in [
            (0, 213),
            (-1, 85),
            (1, 213),
            (-100, 83),
            (100, 211),
            (32767, 170),
            (-32768, 42),
            (5000, 134),
            (-5000, 6),
        ] {
            assert_eq!(linear_to_alaw(lin), a, "{lin}");
        }
        for (a, lin) in [
            (0xD5, 8),
            (0x55, -8),
            (0x2A, -32256),
            (0xAA, 32256),
            (0x00, -5504),
            (0x80, 5504),
        ] {
            assert_eq!(alaw_to_linear(a), lin, "{a:#x}");
        }
        for a in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(a)), a, "code {a:#x}");
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
        for (lin, ulaw) in [
            (0, 255),
            (-1, 126),
            (1, 255),
            (-100, 114),
            (100, 242),
            (5000, 171),
            (-5000, 43),
        ] {
            assert_eq!(linear_to_ulaw(lin), ulaw, "{lin}");
        }
    }
}
