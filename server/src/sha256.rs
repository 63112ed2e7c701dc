//! SHA-256 blocks with AVX2, for x86-64 CPUs without SHA-NI.
//!
//! On such CPUs sha2 runs its portable code, and pushes are bound by it: hashing is most of
//! a push's CPU time. This computes the message schedule of two blocks at once, one in each
//! 128-bit half of the AVX2 registers (four words per instruction), and runs the rounds in
//! scalar code with BMI2's three-operand rotates: the method of Intel's "Fast SHA-256
//! Implementations on Intel Architecture Processors" (Guilford et al., 2012), which OpenSSL,
//! Go and ring also use. It only replaces the block function: sha2 keeps the buffering,
//! padding and saved state (see [`berth::digest::set_sha256_blocks`]).
//!
//! With SHA-NI, sha2 uses it and is faster still, so [`install`] leaves sha2 alone there.

use berth::digest::Sha256Blocks;

/// The AVX2 block function, if this CPU has AVX2 and BMI2 and no SHA-NI.
pub fn blocks() -> Option<Sha256Blocks> {
    #[cfg(target_arch = "x86_64")]
    if x86::usable() {
        return Some(x86::compress);
    }
    None
}

/// Install [`blocks`] for every hasher of this process, if there is one. Returns whether it did.
pub fn install() -> bool {
    blocks().is_some_and(berth::digest::set_sha256_blocks)
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// Worth installing: the CPU can run [`compress`] and has no SHA-NI for sha2 to use.
    pub fn usable() -> bool {
        runnable() && !is_x86_feature_detected!("sha")
    }

    /// The CPU has what [`compress`] is compiled for.
    fn runnable() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("bmi1")
            && is_x86_feature_detected!("bmi2")
    }

    /// Compress `data`, a whole number of 64-byte blocks, into `state`. Panics if the CPU
    /// lacks the features [`usable`] checks (never called then: it is only installed after).
    pub fn compress(state: &mut [u32; 8], data: &[u8]) {
        assert!(
            runnable(),
            "SHA-256 AVX2 code on a CPU without AVX2 and BMI2"
        );
        // SAFETY: the CPU has the features the function is compiled for (checked above).
        unsafe { compress_avx2(state, data) }
    }

    #[target_feature(enable = "avx2,bmi1,bmi2")]
    fn compress_avx2(state: &mut [u32; 8], data: &[u8]) {
        debug_assert_eq!(data.len() % 64, 0);
        let mut wk = [0u32; 128];
        let mut pairs = data.chunks_exact(128);
        for pair in &mut pairs {
            let (a, b) = pair.split_at(64);
            let (a, b) = (a.try_into().expect("64"), b.try_into().expect("64"));
            schedule(a, b, &mut wk);
            let (wa, wb) = wk.split_at(64);
            rounds(state, wa);
            rounds(state, wb);
        }
        let rest = pairs.remainder();
        if let Ok(last) = <&[u8; 64]>::try_from(rest) {
            // One block left: schedule it in both halves and use one.
            schedule(last, last, &mut wk);
            rounds(state, &wk[..64]);
        }
    }

    macro_rules! rotr {
        ($x:expr, $n:literal, $m:literal) => {
            _mm256_or_si256(_mm256_srli_epi32::<$n>($x), _mm256_slli_epi32::<$m>($x))
        };
    }

    /// σ0 of four words in each half.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn small_sigma0(x: __m256i) -> __m256i {
        _mm256_xor_si256(
            _mm256_xor_si256(rotr!(x, 7, 25), rotr!(x, 18, 14)),
            _mm256_srli_epi32::<3>(x),
        )
    }

    /// σ1 of four words in each half.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn small_sigma1(x: __m256i) -> __m256i {
        _mm256_xor_si256(
            _mm256_xor_si256(rotr!(x, 17, 15), rotr!(x, 19, 13)),
            _mm256_srli_epi32::<10>(x),
        )
    }

    /// Words `4i..4i + 4` of blocks `a` (low half) and `b` (high half), as big-endian words.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn load(a: &[u8; 64], b: &[u8; 64], i: usize) -> __m256i {
        assert!(i < 4);
        // Reverse the bytes of each 32-bit word.
        let swap = _mm256_setr_epi8(
            3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10,
            9, 8, 15, 14, 13, 12,
        );
        // SAFETY: 16 * i + 16 <= 64 bytes of each block.
        let (lo, hi) = unsafe {
            (
                _mm_loadu_si128(a.as_ptr().add(16 * i).cast()),
                _mm_loadu_si128(b.as_ptr().add(16 * i).cast()),
            )
        };
        _mm256_shuffle_epi8(_mm256_set_m128i(hi, lo), swap)
    }

    /// Words `t..t + 4` of both schedules, plus K, into `wk` (block a's at 0, b's at 64).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn store(wk: &mut [u32; 128], t: usize, w: __m256i) {
        assert!(t + 4 <= 64);
        // SAFETY: t + 4 <= 64, within K and within each half of wk.
        unsafe {
            let k = _mm_loadu_si128(K.as_ptr().add(t).cast());
            let y = _mm256_add_epi32(w, _mm256_set_m128i(k, k));
            _mm_storeu_si128(wk.as_mut_ptr().add(t).cast(), _mm256_castsi256_si128(y));
            _mm_storeu_si128(
                wk.as_mut_ptr().add(64 + t).cast(),
                _mm256_extracti128_si256::<1>(y),
            );
        }
    }

    /// W[t] + K[t] for t in 0..64 of block `a` into `wk[..64]`, of block `b` into `wk[64..]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn schedule(a: &[u8; 64], b: &[u8; 64], wk: &mut [u32; 128]) {
        let mut x = [load(a, b, 0), load(a, b, 1), load(a, b, 2), load(a, b, 3)];
        for (i, w) in x.iter().enumerate() {
            store(wk, 4 * i, *w);
        }
        for t in (16..64).step_by(4) {
            // x holds W[t-16..t] in four vectors of four words.
            let [x0, x1, x2, x3] = x;
            let w15 = _mm256_alignr_epi8::<4>(x1, x0); // W[t-15..t-11]
            let w7 = _mm256_alignr_epi8::<4>(x3, x2); // W[t-7..t-3]
            let mut w = _mm256_add_epi32(_mm256_add_epi32(x0, small_sigma0(w15)), w7);
            // σ1 needs W[t-2] and W[t-1] for the first two words, and the first two new
            // words for the last two; σ1(0) = 0 leaves the other lanes alone.
            w = _mm256_add_epi32(w, small_sigma1(_mm256_srli_si256::<8>(x3)));
            w = _mm256_add_epi32(w, small_sigma1(_mm256_slli_si256::<8>(w)));
            x = [x1, x2, x3, w];
            store(wk, t, w);
        }
    }

    macro_rules! round {
        ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $wk:expr) => {
            let s1 = $e.rotate_right(6) ^ $e.rotate_right(11) ^ $e.rotate_right(25);
            let ch = ($e & $f) ^ (!$e & $g);
            let t1 = $h.wrapping_add(s1).wrapping_add(ch).wrapping_add($wk);
            let s0 = $a.rotate_right(2) ^ $a.rotate_right(13) ^ $a.rotate_right(22);
            let maj = ($a & $b) ^ ($c & ($a ^ $b));
            $d = $d.wrapping_add(t1);
            $h = t1.wrapping_add(s0.wrapping_add(maj));
        };
    }

    /// The 64 rounds of one block, given its W[t] + K[t].
    #[inline]
    #[target_feature(enable = "bmi1,bmi2")]
    fn rounds(state: &mut [u32; 8], wk: &[u32]) {
        let wk: &[u32; 64] = wk.try_into().expect("64 words");
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
        for w in wk.chunks_exact(8) {
            round!(a, b, c, d, e, f, g, h, w[0]);
            round!(h, a, b, c, d, e, f, g, w[1]);
            round!(g, h, a, b, c, d, e, f, w[2]);
            round!(f, g, h, a, b, c, d, e, w[3]);
            round!(e, f, g, h, a, b, c, d, w[4]);
            round!(d, e, f, g, h, a, b, c, w[5]);
            round!(c, d, e, f, g, h, a, b, w[6]);
            round!(b, c, d, e, f, g, h, a, w[7]);
        }
        for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *s = s.wrapping_add(v);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Every block count from 0 to 9 (odd and even), against sha2's block function; on
        /// SHA-NI CPUs too, where it is never installed but can run.
        #[test]
        fn same_as_sha2() {
            if !runnable() {
                // Nothing here can run: say so rather than pass as if it had been checked.
                eprintln!("same_as_sha2: skipped (this CPU lacks AVX2, BMI1 or BMI2)");
                return;
            }
            let data: Vec<u8> = (0..64 * 9u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            for n in 0..=9 {
                let mut ours = [1, 2, 3, 4, 5, 6, 7, 8u32];
                let mut theirs = ours;
                compress(&mut ours, &data[..64 * n]);
                let blocks: Vec<[u8; 64]> = data[..64 * n]
                    .chunks_exact(64)
                    .map(|c| c.try_into().unwrap())
                    .collect();
                sha2::block_api::compress256(&mut theirs, &blocks);
                assert_eq!(ours, theirs, "{n} blocks");
            }
        }
    }
}
