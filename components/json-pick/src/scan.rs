//! A strict JSON scanner over bytes, for guests that look at a few parts of an event and must
//! agree with serde_json on everything else: whatever it passes over is checked to be
//! well-formed exactly as serde_json would (escapes, UTF-8, control characters, numbers that
//! overflow, nesting), strings eight bytes at a time, nothing allocated. `None` from any
//! method means "not proven": the caller falls back to serde_json, which decides and explains.
//! (`validate`'s schema fast path, `pick` and `top_level_keys` are built on it.)

/// Deeper than this is left to the full check (serde_json refuses documents nested past 128).
pub const MAX_DEPTH: u32 = 100;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bytes of `x` that are zero get their high bit set (exact for the lowest such byte; a word
/// with no zero byte gives 0).
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

/// A string as scanned: its raw bytes between the quotes and what decoding them needs.
pub struct Str {
    pub start: usize,
    pub end: usize,
    /// Backslash escapes, and the bytes they take.
    pub escapes: usize,
    pub escape_bytes: usize,
    pub non_ascii: bool,
}

/// A strict JSON scanner over bytes: everything it passes over is checked to be well-formed
/// (so "valid" is never said of a document serde_json would refuse); `None` means "not proven".
pub struct Scanner<'a> {
    pub b: &'a [u8],
    /// The cursor.
    pub i: usize,
    /// Bytes `known.0 .. known.1` hold one value the caller knows to be well-formed JSON:
    /// [`Scanner::skip`] passes over it without looking (none: `(usize::MAX, 0)`).
    known: (usize, usize),
}

impl<'a> Scanner<'a> {
    pub fn new(b: &'a [u8]) -> Scanner<'a> {
        Scanner {
            b,
            i: 0,
            known: (usize::MAX, 0),
        }
    }

    /// A scanner that takes `known` (a range of `b`) to hold one well-formed JSON value, such
    /// as the envelope `payload` the host delimited (`packed-event.payload`, which the host
    /// parsed): skipping it costs nothing. Whatever lies outside it is still checked.
    pub fn knowing(b: &'a [u8], known: Option<std::ops::Range<usize>>) -> Scanner<'a> {
        let mut s = Scanner::new(b);
        if let Some(k) = known.filter(|k| k.start < k.end && k.end <= b.len()) {
            s.known = (k.start, k.end);
        }
        s
    }

    #[inline(always)]
    pub fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.i += 1;
        }
    }

    #[inline(always)]
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    pub fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    pub fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// If the key at the cursor is exactly `name` (which needs no escaping), pass over it.
    #[inline(always)]
    pub fn key_here(&mut self, name: &[u8]) -> bool {
        if self.peek() != Some(b'"') {
            return false;
        }
        let (start, end) = (self.i + 1, self.i + 1 + name.len());
        let matched = self.b.get(end) == Some(&b'"') && same(&self.b[start..end], name);
        if matched {
            self.i = end + 1;
        }
        matched
    }

    /// Whether a scanned key equals `name` (decoding it only when it has escapes).
    pub fn key_is(&self, key: &Str, name: &str) -> Option<bool> {
        let raw = &self.b[key.start..key.end];
        if key.escapes == 0 {
            return Some(same(raw, name.as_bytes()));
        }
        let decoded: String = serde_json::from_slice(&self.b[key.start - 1..key.end + 1]).ok()?;
        Some(decoded == name)
    }

    /// Scan a string at the cursor (which must be at its opening quote).
    pub fn string(&mut self) -> Option<Str> {
        if self.peek()? != b'"' {
            return None;
        }
        self.i += 1;
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let mut escapes = 0;
        let mut escape_bytes = 0;
        let mut high = 0u64;
        loop {
            // Sixteen bytes at a time where the target has vectors, then eight, until a quote,
            // a backslash or a control character.
            #[cfg(any(
                target_arch = "x86_64",
                all(target_arch = "wasm32", target_feature = "simd128")
            ))]
            while i + 16 <= b.len() {
                let (stop, hi) = vector::classify(b[i..i + 16].try_into().expect("16 bytes"));
                high |= u64::from(hi);
                if stop != 0 {
                    i += stop.trailing_zeros() as usize;
                    break;
                }
                i += 16;
            }
            while i + 8 <= b.len() {
                let x = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
                high |= x & HI;
                let stop = zero_bytes(x ^ (LO * u64::from(b'"')))
                    | zero_bytes(x ^ (LO * u64::from(b'\\')))
                    | (x.wrapping_sub(LO * 0x20) & !x & HI);
                if stop != 0 {
                    i += (stop.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            let c = *b.get(i)?;
            match c {
                b'"' => break,
                b'\\' => {
                    let n = escape_len(&b[i..])?;
                    escapes += 1;
                    escape_bytes += n;
                    i += n;
                }
                0..0x20 => return None,
                c => {
                    high |= u64::from(c & 0x80);
                    i += 1;
                }
            }
        }
        self.i = i + 1;
        let non_ascii = high != 0;
        if non_ascii {
            std::str::from_utf8(&b[start..i]).ok()?;
        }
        Some(Str {
            start,
            end: i,
            escapes,
            escape_bytes,
            non_ascii,
        })
    }

    /// Scan a number; `(is_float, text)`.
    pub fn number(&mut self) -> Option<(bool, &'a [u8])> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return None,
        }
        let mut float = false;
        if b.get(i) == Some(&b'.') {
            float = true;
            i += 1;
            let digits = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == digits {
                return None;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            float = true;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let digits = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == digits {
                return None;
            }
        }
        self.i = i;
        Some((float, &b[start..i]))
    }

    /// Pass over any value, checking only that it is well-formed JSON.
    ///
    /// The comma-separated loops here and in `validate`'s schema checks are written out on
    /// purpose: one shared helper taking a closure made the guest's validate stage ~25 % slower
    /// (measured with `sluice-bench wasm`, 1.38–1.42 vs 1.78 µs/event packed).
    pub fn skip(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let first = self.peek()?;
        if self.i == self.known.0 {
            self.i = self.known.1;
            return Some(());
        }
        match first {
            b'"' => self.string().map(drop),
            b'{' => {
                self.i += 1;
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.string()?;
                    self.eat(b':')?;
                    self.skip(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => {
                let (_, text) = self.number()?;
                fits(text).then_some(())
            }
        }
    }
}

/// Byte equality eight bytes at a time (a `memcmp` call per key is slow in a wasm guest).
#[inline(always)]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i + 8 <= a.len() {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return false;
        }
        i += 8;
    }
    a[i..].iter().zip(&b[i..]).all(|(x, y)| x == y)
}

/// The length of the escape at the start of `b` (which begins with a backslash), or `None`
/// when it is not one serde_json accepts (surrogates are left to it).
pub fn escape_len(b: &[u8]) -> Option<usize> {
    match *b.get(1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(2),
        b'u' => {
            let hex = std::str::from_utf8(b.get(2..6)?).ok()?;
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            let code = u32::from_str_radix(hex, 16).ok()?;
            (!(0xD800..=0xDFFF).contains(&code)).then_some(6)
        }
        _ => None,
    }
}

/// Whether serde_json would accept the number (it refuses what overflows f64, which needs an
/// exponent or over 300 digits: only those are parsed here).
pub fn fits(text: &[u8]) -> bool {
    let may_overflow = text.len() > 300 || text.iter().any(|&c| c | 0x20 == b'e');
    !may_overflow || finite(text).is_some()
}

/// The number's value when serde_json would accept it (it refuses what overflows f64).
pub fn finite(text: &[u8]) -> Option<f64> {
    let x: f64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    x.is_finite().then_some(x)
}

/// Sixteen bytes classified at once for the string scan: as bit masks (bit k for byte k), the
/// bytes that stop it (a quote, a backslash, a control character) and the bytes with the high
/// bit set. On wasm32 with `simd128` (how `components/` is built: `.cargo/config.toml`); on
/// x86_64 (SSE2 is part of it), so the same loop runs in native tests.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod vector {
    use core::arch::wasm32::*;

    #[inline(always)]
    pub fn classify(chunk: &[u8; 16]) -> (u16, u16) {
        // SAFETY: `chunk` is 16 readable bytes; `v128_load` has no alignment requirement.
        let v = unsafe { v128_load(chunk.as_ptr().cast::<v128>()) };
        let stop = v128_or(
            v128_or(
                u8x16_eq(v, u8x16_splat(b'"')),
                u8x16_eq(v, u8x16_splat(b'\\')),
            ),
            u8x16_lt(v, u8x16_splat(0x20)),
        );
        (u8x16_bitmask(stop), u8x16_bitmask(v))
    }
}

#[cfg(target_arch = "x86_64")]
mod vector {
    use std::arch::x86_64::*;

    #[inline(always)]
    pub fn classify(chunk: &[u8; 16]) -> (u16, u16) {
        // SAFETY: SSE2 is part of x86_64; `chunk` is 16 readable bytes and `_mm_loadu_si128`
        // has no alignment requirement.
        unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
            // Unsigned `v < 0x20` is `max(v, 0x1f) == 0x1f` (SSE2 compares bytes as signed).
            let low = _mm_set1_epi8(0x1f);
            let control = _mm_cmpeq_epi8(_mm_max_epu8(v, low), low);
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            let stop = _mm_or_si128(_mm_or_si128(quote, backslash), control);
            (_mm_movemask_epi8(stop) as u16, _mm_movemask_epi8(v) as u16)
        }
    }
}
