//! Huffman tables and the entropy-coded bit stream of a baseline JPEG scan.
//!
//! Fixed-size tables (a 9-bit lookup for the short codes every camera frame is made of, the
//! canonical `maxcode`/`valptr` walk for the rest) so that defining one costs no allocation, and a
//! 64-bit MSB-first bit buffer that un-stuffs `FF 00` and stops at the next marker: past it (and
//! past the end of a truncated frame) zeros are fed and counted, so a scan that reads them is
//! reported instead of being decoded from nothing.

use super::JpegError;

/// Bits looked up at once.
const LOOKUP_BITS: u32 = 9;

/// One Huffman table (DC or AC), built from a DHT's counts and symbols.
#[derive(Clone)]
pub struct Huffman {
    /// Indexed by the next 9 bits: `(code length << 8) | symbol`, 0 for longer codes.
    lookup: [u16; 1 << LOOKUP_BITS],
    /// Largest code of each length (index 1..=16), -1 when there is none.
    maxcode: [i32; 18],
    /// Smallest code of each length.
    mincode: [i32; 17],
    /// Index into `symbols` of the smallest code of each length.
    valptr: [i32; 17],
    symbols: [u8; 256],
    pub defined: bool,
}

impl Default for Huffman {
    fn default() -> Huffman {
        Huffman {
            lookup: [0; 1 << LOOKUP_BITS],
            maxcode: [-1; 18],
            mincode: [0; 17],
            valptr: [0; 17],
            symbols: [0; 256],
            defined: false,
        }
    }
}

impl std::fmt::Debug for Huffman {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Huffman")
            .field("defined", &self.defined)
            .finish()
    }
}

impl Huffman {
    /// Rebuilds the table from `counts[l]` codes of length `l + 1` and their `symbols` (as many
    /// as the counts sum to, checked by the caller against the segment).
    pub fn build(&mut self, counts: &[u8; 16], symbols: &[u8]) -> Result<(), JpegError> {
        let total: usize = counts.iter().map(|c| usize::from(*c)).sum();
        if total > 256 || total != symbols.len() {
            return Err(JpegError::Corrupt(
                "a DHT's counts do not match its symbols",
            ));
        }
        self.defined = false;
        self.lookup.fill(0);
        self.maxcode = [-1; 18];
        self.symbols[..total].copy_from_slice(symbols);
        let mut code: i32 = 0;
        let mut k: i32 = 0;
        for len in 1..=16u32 {
            let n = i32::from(counts[len as usize - 1]);
            self.valptr[len as usize] = k;
            self.mincode[len as usize] = code;
            for _ in 0..n {
                // More codes of a length than it has bit patterns: a broken table.
                if code >= 1 << len {
                    return Err(JpegError::Corrupt("a DHT defines more codes than fit"));
                }
                if len <= LOOKUP_BITS {
                    let shift = LOOKUP_BITS - len;
                    let first = (code as usize) << shift;
                    let entry = (len as u16) << 8 | u16::from(symbols[k as usize]);
                    self.lookup[first..first + (1 << shift)].fill(entry);
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                self.maxcode[len as usize] = code - 1;
            }
            code <<= 1;
        }
        self.maxcode[17] = i32::MAX; // the walk's sentinel: never reached with a valid length
        self.defined = true;
        Ok(())
    }
}

/// The entropy-coded bits of one scan, from its first byte to the next marker.
pub struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    /// The next bits, most significant first; `nbits` of them are valid.
    buf: u64,
    nbits: u32,
    /// Zero bits fed past the marker or the end of the data (the tail of `buf`).
    padded: u32,
    /// A marker (or the end of the data) was reached at `pos`.
    at_marker: bool,
}

impl<'a> Bits<'a> {
    pub fn new(data: &'a [u8], pos: usize) -> Bits<'a> {
        Bits {
            data,
            pos,
            buf: 0,
            nbits: 0,
            padded: 0,
            at_marker: false,
        }
    }

    /// Tops the buffer up to at least 57 bits.
    #[inline]
    fn fill(&mut self) {
        while self.nbits <= 56 {
            let mut byte = 0u8;
            if self.at_marker {
                self.padded += 8;
            } else {
                match self.data.get(self.pos) {
                    Some(0xFF) if self.data.get(self.pos + 1) == Some(&0) => {
                        byte = 0xFF;
                        self.pos += 2;
                    }
                    Some(0xFF) => {
                        self.at_marker = true;
                        self.padded += 8;
                    }
                    Some(b) => {
                        byte = *b;
                        self.pos += 1;
                    }
                    None => {
                        self.at_marker = true;
                        self.padded += 8;
                    }
                }
            }
            self.buf |= u64::from(byte) << (56 - self.nbits);
            self.nbits += 8;
        }
    }

    /// Makes sure 32 bits can be read (a Huffman code and the value after it).
    #[inline]
    pub fn ensure(&mut self) {
        if self.nbits < 32 {
            self.fill();
        }
    }

    #[inline]
    fn consume(&mut self, n: u32) {
        self.buf <<= n;
        self.nbits -= n;
    }

    /// The next symbol of `t` (after [`ensure`](Self::ensure)).
    #[inline]
    pub fn decode(&mut self, t: &Huffman) -> Result<u8, JpegError> {
        let e = t.lookup[(self.buf >> (64 - LOOKUP_BITS)) as usize];
        if e != 0 {
            self.consume(u32::from(e >> 8));
            return Ok(e as u8);
        }
        for len in LOOKUP_BITS + 1..=16 {
            let code = (self.buf >> (64 - len)) as i32;
            if code <= t.maxcode[len as usize] {
                let i = t.valptr[len as usize] + code - t.mincode[len as usize];
                self.consume(len);
                return t
                    .symbols
                    .get(i as usize)
                    .copied()
                    .ok_or(JpegError::Corrupt("a Huffman code outside its table"));
            }
        }
        Err(JpegError::Corrupt("an invalid Huffman code"))
    }

    /// `n` bits (0..=16) as a signed coefficient value (T.81 F.2.2.1 EXTEND).
    #[inline]
    pub fn receive_extend(&mut self, n: u32) -> i32 {
        if n == 0 {
            return 0;
        }
        let v = (self.buf >> (64 - n)) as i32;
        self.consume(n);
        if v < 1 << (n - 1) {
            v - (1 << n) + 1
        } else {
            v
        }
    }

    /// Whether decoding has read bits that were not in the frame (past a marker or its end).
    #[inline]
    pub fn overran(&self) -> bool {
        self.padded > self.nbits
    }

    /// At a restart interval's end: drops the remaining bits and reads `RSTn` (`n` expected).
    pub fn restart(&mut self, n: u8) -> Result<(), JpegError> {
        if self.overran() {
            return Err(JpegError::Truncated);
        }
        self.buf = 0;
        self.nbits = 0;
        self.padded = 0;
        self.at_marker = false;
        // Skip anything up to the marker (padding bits of the last byte were consumed above).
        while self.data.get(self.pos) == Some(&0xFF) && self.data.get(self.pos + 1) == Some(&0xFF) {
            self.pos += 1;
        }
        match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
            (Some(0xFF), Some(m)) if *m == 0xD0 + n => {
                self.pos += 2;
                Ok(())
            }
            (Some(0xFF), Some(0xD0..=0xD7)) => {
                Err(JpegError::Corrupt("restart markers out of order"))
            }
            (None, _) | (_, None) => Err(JpegError::Truncated),
            _ => Err(JpegError::Corrupt("a restart marker is missing")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_longer_than_the_lookup_decode_through_the_walk() {
        // One code of each length 1..=12: 0, 10, 110, ..., 11111111110 and 111111111110.
        let mut counts = [0u8; 16];
        counts[..12].fill(1);
        let symbols: Vec<u8> = (0..12).collect();
        let mut t = Huffman::default();
        t.build(&counts, &symbols).expect("valid table");
        // Symbol 11 (12 bits, 111111111110), then symbol 1 (10), then symbol 0 (0): 16 bits.
        // 0xFF is stuffed with 0x00 in entropy-coded data.
        let bits = [0xFF, 0x00, 0b1110_1000];
        let mut b = Bits::new(&bits, 0);
        b.ensure();
        assert_eq!(b.decode(&t).expect("code"), 11);
        assert_eq!(b.decode(&t).expect("code"), 1);
        assert_eq!(b.decode(&t).expect("code"), 0);
        assert!(!b.overran());
        // All ones for 16 bits is no code of this table.
        let ones = [0xFF, 0x00, 0xFF, 0x00];
        let mut b = Bits::new(&ones, 0);
        b.ensure();
        assert!(b.decode(&t).is_err());
    }

    #[test]
    fn overfull_tables_are_refused() {
        let mut counts = [0u8; 16];
        counts[0] = 3; // three 1-bit codes
        assert!(Huffman::default().build(&counts, &[0, 1, 2]).is_err());
        assert!(Huffman::default().build(&counts, &[0, 1]).is_err());
    }

    #[test]
    fn stuffed_bytes_are_data_and_markers_end_the_data() {
        let data = [0xFF, 0x00, 0x80, 0xFF, 0xD9];
        let mut b = Bits::new(&data, 0);
        b.ensure();
        assert_eq!(b.receive_extend(8), 255);
        assert_eq!(b.receive_extend(1), 1);
        assert!(!b.overran());
        b.receive_extend(7);
        assert!(!b.overran(), "the last data bit");
        b.receive_extend(1);
        assert!(b.overran(), "a bit past the marker");
    }
}
