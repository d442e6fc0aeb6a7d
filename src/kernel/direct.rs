//! A direct (im2col-free) convolution for a network's first layer: stride 1, no padding, few
//! input channels (LeNet-5's conv1: 3 → 6 channels, 5×5 over 32×32), forward and weight
//! gradient (issue 28 item 2).
//!
//! # Why
//! Lowered to a GEMM, such a layer spends as long building `cols(X)` (75 rows of 784 values
//! copied out of a 3 KiB image, twice per step) as multiplying, and its weight gradient
//! `∂z · colsᵀ` is a 6 × 75 product summed over 784 pixels that `gemm` runs at a quarter of
//! the core's peak (profile of the W2 step, book: performance). Here both products read the
//! image itself.
//!
//! # Layout
//! With stride 1 and no padding, row `r = (ci, ki, kj)` of `cols(X)` is the image shifted by
//! `ci·h·w + ki·w + kj`, read on output rows of width `w_out`. Read on rows of the *input's*
//! width `w` instead, every row of `cols(X)` is one contiguous run of the image: position
//! `p = oh·w + ow` of output plane `o` is
//!
//! ```text
//! z[o, p] = Σ_{ci, ki, kj} W[o, ci, ki, kj] · x[ci·h·w + ki·w + kj + p]
//! ```
//!
//! valid for `ow < w_out`; the `w − w_out` columns after each row are computed and ignored
//! (14 % more work for LeNet's conv1, against a whole im2col saved). A plane holds
//! [`plane_len`] positions (`h_out·w` rounded up to 8 lanes); the input is read from a copy
//! with [`input_len`] values whose tail is zero, so the last lanes stay in bounds. The weight
//! gradient takes `∂z` in the same layout with **zeros in the ignored columns**:
//!
//! ```text
//! ∂W[o, ci, ki, kj] += Σ_p ∂z[o, p] · x[ci·h·w + ki·w + kj + p]
//! ```
//!
//! # Paths and numbers
//! An AVX-512F path (16 lanes, 32 registers), an AVX2 + FMA path (`std::arch`, the widest the
//! CPU has chosen at run time, [`active_path`]) and a portable one (plain loops the compiler
//! vectorises for the baseline target), each tested against the definition below and, through
//! the engine, against the reference backend (`tests/engine_parity.rs`). The forward
//! sums each output in tap order `(ci, ki, kj)` with one fused multiply-add per tap, as the
//! GEMM did. The weight gradient sums each of 8 lanes over the positions in order and then
//! the lanes, per sample (a different order from the GEMM's, fixed by this code: the same
//! bytes on every machine with the same path and thread count); the AVX-512 path sums 16
//! lanes, so its weight gradients differ from AVX2's in the last bits, its forward does not.

use super::im2col::ConvGeom;
use super::peak::Isa;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// SIMD lanes of the AVX2 path; planes are padded to a multiple of it.
const LANES: usize = 8;

/// Whether a convolution takes the direct kernels: stride 1, no padding, a kernel of at most
/// 7 (the AVX2 weight-gradient kernel keeps `2·k` accumulators in 16 registers), and input
/// rows at most 1.25× the output rows (the ignored columns are computed: LeNet's conv1 reads
/// rows of 32 for 28 outputs; its conv2, 14 for 10, is left to im2col + GEMM).
pub(crate) fn fits(g: &ConvGeom) -> bool {
    supports(g) && 4 * g.w <= 5 * g.w_out
}

/// Whether the kernels compute this convolution at all (stride 1, no padding, `k ≤ 7`),
/// whatever it costs.
pub(crate) fn supports(g: &ConvGeom) -> bool {
    g.stride == 1 && g.pad == 0 && (1..=7).contains(&g.k)
}

/// Positions per output plane: `h_out·w` rounded up to a multiple of 8.
pub(crate) fn plane_len(g: &ConvGeom) -> usize {
    (g.h_out * g.w).next_multiple_of(LANES)
}

/// Values of the padded input copy: the sample, then zeros far enough for the last lanes of
/// the last plane (`≥ k + 6` past the sample; see the module docs).
pub(crate) fn input_len(g: &ConvGeom) -> usize {
    g.sample_len() + g.k + LANES
}

/// Copies one sample `x` (`[c, h, w]`) into `xpad` (`input_len` values) with a zero tail.
pub(crate) fn pad_input(g: &ConvGeom, x: &[f32], xpad: &mut [f32]) {
    let n = g.sample_len();
    xpad[..n].copy_from_slice(&x[..n]);
    xpad[n..].fill(0.0);
}

/// The widest path the kernels may take (process-wide): 0 the best this CPU has, 1 at most
/// AVX2 + FMA, 2 the portable one.
static CAP: AtomicU8 = AtomicU8::new(0);

/// Runs the portable path even where AVX2 + FMA is present (process-wide): for tests and
/// benchmarks of that path. Changes numbers (an FMA rounds once, a multiply and an add twice).
#[doc(hidden)]
pub fn force_portable(on: bool) {
    CAP.store(if on { 2 } else { 0 }, Relaxed);
}

/// Caps the kernels at path `isa` (process-wide; [`Isa::Avx512`] lifts the cap): for tests
/// and benchmarks of the narrower paths on a wider CPU. The AVX2 and AVX-512 forwards give the
/// same bytes; the weight gradients differ in the last bits (8 or 16 lanes summed).
#[doc(hidden)]
pub fn cap_path(isa: Isa) {
    let cap = match isa {
        Isa::Avx512 => 0,
        Isa::Avx2 => 1,
        Isa::Portable => 2,
    };
    CAP.store(cap, Relaxed);
}

/// The path the kernels take now: the widest this CPU has, within the cap.
pub fn active_path() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let cap = CAP.load(Relaxed);
        if cap == 0 && std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if cap <= 1
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

fn check(g: &ConvGeom, c_out: usize, w: &[f32], xpad: &[f32], plane: &[f32]) {
    assert!(supports(g), "direct conv: geometry {g:?} is not supported");
    assert!(
        w.len() >= c_out * g.rows(),
        "direct conv: weights too short"
    );
    assert!(
        xpad.len() >= input_len(g),
        "direct conv: input copy too short"
    );
    assert!(
        plane.len() >= c_out * plane_len(g),
        "direct conv: planes too short"
    );
}

/// `z[o, p]` for every output plane `o < c_out` and position `p < plane_len` (no bias): `w`
/// `[c_out, c·k·k]`, `xpad` as [`pad_input`] wrote it, `z` `[c_out, plane_len]`.
pub(crate) fn forward(g: &ConvGeom, c_out: usize, w: &[f32], xpad: &[f32], z: &mut [f32]) {
    check(g, c_out, w, xpad, z);
    match active_path() {
        // SAFETY: the path's features are present (`active_path` checked them); `check`
        // bounds every access (module docs).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::forward(g, c_out, w, xpad, z) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::forward(g, c_out, w, xpad, z) },
        _ => portable_forward(g, c_out, w, xpad, z),
    }
}

/// `∂W[o, (ci, ki, kj)] += Σ_s Σ_p dz[s, o, p] · x[s·c·h·w + ci·h·w + ki·w + kj + p]` over `m`
/// samples: `dz` `[m, c_out, plane_len]` with zeros in the ignored columns, `x` the samples
/// one after the other with at least [`input_len`] values from the last one's start (the
/// values read past a sample meet zeros of `dz`), `dw` `[c_out, c·k·k]` (accumulated into).
/// Each weight sums 8 lanes over the samples and positions in order, then the lanes.
pub(crate) fn backward_dw(
    g: &ConvGeom,
    c_out: usize,
    m: usize,
    dz: &[f32],
    x: &[f32],
    dw: &mut [f32],
) {
    assert!(m >= 1, "direct conv: no samples");
    let (sl, plane) = (g.sample_len(), c_out * plane_len(g));
    check(g, c_out, dw, &x[(m - 1) * sl..], &dz[(m - 1) * plane..]);
    match active_path() {
        // SAFETY: as in `forward`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::backward_dw(g, c_out, m, dz, x, dw) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::backward_dw(g, c_out, m, dz, x, dw) },
        _ => portable_backward_dw(g, c_out, m, dz, x, dw),
    }
}

/// The offset of tap `(ci, ki, kj)` in the input, in tap order.
fn taps(g: &ConvGeom) -> impl Iterator<Item = usize> + '_ {
    (0..g.c).flat_map(move |ci| {
        (0..g.k).flat_map(move |ki| (0..g.k).map(move |kj| (ci * g.h + ki) * g.w + kj))
    })
}

fn portable_forward(g: &ConvGeom, c_out: usize, w: &[f32], xpad: &[f32], z: &mut [f32]) {
    let (lp, rows) = (plane_len(g), g.rows());
    for (o, zo) in z.chunks_exact_mut(lp).take(c_out).enumerate() {
        zo.fill(0.0);
        let wo = &w[o * rows..][..rows];
        for (&wv, off) in wo.iter().zip(taps(g)) {
            for (d, &v) in zo.iter_mut().zip(&xpad[off..off + lp]) {
                *d += wv * v;
            }
        }
    }
}

fn portable_backward_dw(
    g: &ConvGeom,
    c_out: usize,
    m: usize,
    dz: &[f32],
    x: &[f32],
    dw: &mut [f32],
) {
    let (lp, rows, sl) = (plane_len(g), g.rows(), g.sample_len());
    for o in 0..c_out {
        let dwo = &mut dw[o * rows..][..rows];
        for (d, off) in dwo.iter_mut().zip(taps(g)) {
            let mut acc = [0.0f32; LANES];
            for s in 0..m {
                let dzo = &dz[(s * c_out + o) * lp..][..lp];
                let xs = &x[s * sl + off..][..lp];
                for (a, b) in dzo.chunks_exact(LANES).zip(xs.chunks_exact(LANES)) {
                    for l in 0..LANES {
                        acc[l] += a[l] * b[l];
                    }
                }
            }
            *d += acc.iter().sum::<f32>();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{ConvGeom, LANES, plane_len};
    use std::arch::x86_64::*;

    /// Output planes per forward block (2 × 6 accumulators + 2 inputs + 1 weight: 15 of the
    /// 16 registers).
    const FWD_O: usize = 6;

    /// # Safety
    /// AVX2 and FMA present; sizes as `super::check` asserts.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward(
        g: &ConvGeom,
        c_out: usize,
        w: &[f32],
        xpad: &[f32],
        z: &mut [f32],
    ) {
        let lp = plane_len(g);
        let mut o0 = 0;
        while o0 < c_out {
            let o = (c_out - o0).min(FWD_O);
            let mut p = 0;
            while p < lp {
                let two = lp - p >= 2 * LANES;
                // SAFETY: forwarded; the block covers planes o0..o0+o, positions p..p+8·P.
                unsafe {
                    match (o, two) {
                        (6, true) => fwd_block::<6, 2>(g, w, xpad, z, o0, p),
                        (6, false) => fwd_block::<6, 1>(g, w, xpad, z, o0, p),
                        (5, true) => fwd_block::<5, 2>(g, w, xpad, z, o0, p),
                        (5, false) => fwd_block::<5, 1>(g, w, xpad, z, o0, p),
                        (4, true) => fwd_block::<4, 2>(g, w, xpad, z, o0, p),
                        (4, false) => fwd_block::<4, 1>(g, w, xpad, z, o0, p),
                        (3, true) => fwd_block::<3, 2>(g, w, xpad, z, o0, p),
                        (3, false) => fwd_block::<3, 1>(g, w, xpad, z, o0, p),
                        (2, true) => fwd_block::<2, 2>(g, w, xpad, z, o0, p),
                        (2, false) => fwd_block::<2, 1>(g, w, xpad, z, o0, p),
                        (_, true) => fwd_block::<1, 2>(g, w, xpad, z, o0, p),
                        (_, false) => fwd_block::<1, 1>(g, w, xpad, z, o0, p),
                    }
                }
                p += if two { 2 * LANES } else { LANES };
            }
            o0 += o;
        }
    }

    /// Planes `o0..o0+O`, positions `p..p+8·P`: `O·P` accumulators over every tap.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn fwd_block<const O: usize, const P: usize>(
        g: &ConvGeom,
        w: &[f32],
        xpad: &[f32],
        z: &mut [f32],
        o0: usize,
        p: usize,
    ) {
        let (lp, rows) = (plane_len(g), g.rows());
        let mut acc = [[_mm256_setzero_ps(); P]; O];
        let x = xpad.as_ptr();
        let wp = w.as_ptr();
        let mut t = 0;
        for ci in 0..g.c {
            for ki in 0..g.k {
                let row = (ci * g.h + ki) * g.w + p;
                for kj in 0..g.k {
                    // SAFETY: row + kj + 8·P ≤ input_len (module docs), t < rows.
                    unsafe {
                        let mut xv = [_mm256_setzero_ps(); P];
                        for (j, v) in xv.iter_mut().enumerate() {
                            *v = _mm256_loadu_ps(x.add(row + kj + j * LANES));
                        }
                        for (i, a) in acc.iter_mut().enumerate() {
                            let wv = _mm256_broadcast_ss(&*wp.add((o0 + i) * rows + t));
                            for (j, a) in a.iter_mut().enumerate() {
                                *a = _mm256_fmadd_ps(wv, xv[j], *a);
                            }
                        }
                    }
                    t += 1;
                }
            }
        }
        let zp = z.as_mut_ptr();
        for (i, a) in acc.iter().enumerate() {
            for (j, a) in a.iter().enumerate() {
                // SAFETY: (o0 + i)·lp + p + 8·j + 8 ≤ c_out·lp.
                unsafe { _mm256_storeu_ps(zp.add((o0 + i) * lp + p + j * LANES), *a) };
            }
        }
    }

    /// # Safety
    /// As [`forward`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn backward_dw(
        g: &ConvGeom,
        c_out: usize,
        m: usize,
        dz: &[f32],
        xpad: &[f32],
        dw: &mut [f32],
    ) {
        let at = (c_out, m);
        let mut o0 = 0;
        while o0 < c_out {
            let o = (c_out - o0).min(2);
            for ci in 0..g.c {
                for ki in 0..g.k {
                    // SAFETY: forwarded.
                    unsafe {
                        match (o, g.k) {
                            (2, 1) => dw_block::<2, 1>(g, at, dz, xpad, dw, o0, ci, ki),
                            (2, 2) => dw_block::<2, 2>(g, at, dz, xpad, dw, o0, ci, ki),
                            (2, 3) => dw_block::<2, 3>(g, at, dz, xpad, dw, o0, ci, ki),
                            (2, 4) => dw_block::<2, 4>(g, at, dz, xpad, dw, o0, ci, ki),
                            (2, 5) => dw_block::<2, 5>(g, at, dz, xpad, dw, o0, ci, ki),
                            (2, 6) => dw_block::<2, 6>(g, at, dz, xpad, dw, o0, ci, ki),
                            (2, _) => dw_block::<2, 7>(g, at, dz, xpad, dw, o0, ci, ki),
                            (_, 1) => dw_block::<1, 1>(g, at, dz, xpad, dw, o0, ci, ki),
                            (_, 2) => dw_block::<1, 2>(g, at, dz, xpad, dw, o0, ci, ki),
                            (_, 3) => dw_block::<1, 3>(g, at, dz, xpad, dw, o0, ci, ki),
                            (_, 4) => dw_block::<1, 4>(g, at, dz, xpad, dw, o0, ci, ki),
                            (_, 5) => dw_block::<1, 5>(g, at, dz, xpad, dw, o0, ci, ki),
                            (_, 6) => dw_block::<1, 6>(g, at, dz, xpad, dw, o0, ci, ki),
                            (_, _) => dw_block::<1, 7>(g, at, dz, xpad, dw, o0, ci, ki),
                        }
                    }
                }
            }
            o0 += o;
        }
    }

    /// `∂W[o, ci, ki, kj]` for planes `o0..o0+O` and every `kj < K` (`K = g.k`): `O·K`
    /// accumulators over every position, then summed across lanes.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dw_block<const O: usize, const K: usize>(
        g: &ConvGeom,
        (c_out, m): (usize, usize),
        dz: &[f32],
        xpad: &[f32],
        dw: &mut [f32],
        o0: usize,
        ci: usize,
        ki: usize,
    ) {
        let (lp, rows, sl) = (plane_len(g), g.rows(), g.sample_len());
        let row = (ci * g.h + ki) * g.w;
        let mut acc = [[_mm256_setzero_ps(); O]; K];
        for s in 0..m {
            // SAFETY: sample s's planes and input lie in the caller's checked slices.
            let (x, d) = unsafe { (xpad.as_ptr().add(s * sl), dz.as_ptr().add(s * c_out * lp)) };
            let mut p = 0;
            while p < lp {
                // SAFETY: (o0 + i)·lp + p + 8 ≤ c_out·lp; row + kj + p + 8 ≤ input_len.
                unsafe {
                    let mut dv = [_mm256_setzero_ps(); O];
                    for (i, v) in dv.iter_mut().enumerate() {
                        *v = _mm256_loadu_ps(d.add((o0 + i) * lp + p));
                    }
                    for (kj, a) in acc.iter_mut().enumerate() {
                        let xv = _mm256_loadu_ps(x.add(row + kj + p));
                        for (a, &dv) in a.iter_mut().zip(&dv) {
                            *a = _mm256_fmadd_ps(dv, xv, *a);
                        }
                    }
                }
                p += LANES;
            }
        }
        for (kj, a) in acc.iter().enumerate() {
            for (i, &v) in a.iter().enumerate() {
                dw[(o0 + i) * rows + (ci * g.k + ki) * g.k + kj] += hsum(v);
            }
        }
    }

    /// The sum of the 8 lanes in a fixed order: lane `i` plus lane `i + 4`, then those four
    /// pairwise.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

/// The AVX-512F path: the AVX2 kernels on 16 lanes and 32 registers. A plane's length is a
/// multiple of 8, so its last 8 positions may be one masked vector. The forward sums every
/// output in the same tap order as the AVX2 path (the same bytes); the weight gradient sums 16
/// lanes over the positions, then the lanes (lane `i` plus lane `i + 8`, then as AVX2 does).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{ConvGeom, plane_len};
    use std::arch::x86_64::*;

    /// Lanes of one vector.
    const W: usize = 16;
    /// Output planes per forward block (6 × 4 accumulators + 4 inputs + 1 weight: 29 of the
    /// 32 registers).
    const FWD_O: usize = 6;

    /// The lanes of a vector at positions `p..p + 16` of a plane of `lp`: all, or the first 8.
    fn lanes(lp: usize, p: usize) -> __mmask16 {
        if lp - p >= W { 0xFFFF } else { 0x00FF }
    }

    /// # Safety
    /// AVX-512F present; sizes as `super::check` asserts.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward(
        g: &ConvGeom,
        c_out: usize,
        w: &[f32],
        xpad: &[f32],
        z: &mut [f32],
    ) {
        let lp = plane_len(g);
        let mut o0 = 0;
        while o0 < c_out {
            let o = (c_out - o0).min(FWD_O);
            let mut p = 0;
            while p < lp {
                let vectors = (lp - p).div_ceil(W).min(4);
                let vectors = if vectors == 3 { 2 } else { vectors };
                let last = lanes(lp, p + (vectors - 1) * W);
                macro_rules! block {
                    ($($o:literal),*) => {
                        match (o, vectors) {
                            $(
                                ($o, 4) => fwd_block::<$o, 4>(g, w, xpad, z, o0, p, last),
                                ($o, 2) => fwd_block::<$o, 2>(g, w, xpad, z, o0, p, last),
                                ($o, _) => fwd_block::<$o, 1>(g, w, xpad, z, o0, p, last),
                            )*
                            _ => unreachable!("at most {FWD_O} planes per block"),
                        }
                    };
                }
                // SAFETY: forwarded; the block covers planes o0..o0+o, positions p..p+16·P
                // (the last vector's lanes within the plane).
                unsafe { block!(6, 5, 4, 3, 2, 1) };
                p += vectors * W;
            }
            o0 += o;
        }
    }

    /// Planes `o0..o0+O`, positions `p..p+16·P` (the last vector's lanes `last`): `O·P`
    /// accumulators over every tap.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn fwd_block<const O: usize, const P: usize>(
        g: &ConvGeom,
        w: &[f32],
        xpad: &[f32],
        z: &mut [f32],
        o0: usize,
        p: usize,
        last: __mmask16,
    ) {
        let (lp, rows) = (plane_len(g), g.rows());
        let mask = |j: usize| if j + 1 == P { last } else { 0xFFFF };
        let mut acc = [[_mm512_setzero_ps(); P]; O];
        let x = xpad.as_ptr();
        let wp = w.as_ptr();
        let mut t = 0;
        for ci in 0..g.c {
            for ki in 0..g.k {
                let row = (ci * g.h + ki) * g.w + p;
                for kj in 0..g.k {
                    // SAFETY: the lanes read lie below row + kj + lp − p ≤ input_len (module
                    // docs), t < rows.
                    unsafe {
                        let mut xv = [_mm512_setzero_ps(); P];
                        for (j, v) in xv.iter_mut().enumerate() {
                            *v = _mm512_maskz_loadu_ps(mask(j), x.add(row + kj + j * W));
                        }
                        for (i, a) in acc.iter_mut().enumerate() {
                            let wv = _mm512_set1_ps(*wp.add((o0 + i) * rows + t));
                            for (j, a) in a.iter_mut().enumerate() {
                                *a = _mm512_fmadd_ps(wv, xv[j], *a);
                            }
                        }
                    }
                    t += 1;
                }
            }
        }
        let zp = z.as_mut_ptr();
        for (i, a) in acc.iter().enumerate() {
            for (j, a) in a.iter().enumerate() {
                // SAFETY: the lanes written lie below (o0 + i)·lp + lp ≤ c_out·lp.
                unsafe { _mm512_mask_storeu_ps(zp.add((o0 + i) * lp + p + j * W), mask(j), *a) };
            }
        }
    }

    /// # Safety
    /// As [`forward`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn backward_dw(
        g: &ConvGeom,
        c_out: usize,
        m: usize,
        dz: &[f32],
        xpad: &[f32],
        dw: &mut [f32],
    ) {
        let at = (c_out, m);
        // 4 planes × k taps of accumulators + 4 ∂z + 1 input in 32 registers up to k = 5;
        // 3 planes beyond.
        let widest = if g.k <= 5 { 4 } else { 3 };
        let mut o0 = 0;
        while o0 < c_out {
            let o = (c_out - o0).min(widest);
            for ci in 0..g.c {
                for ki in 0..g.k {
                    macro_rules! block {
                        ($($o:literal),*) => {
                            match (o, g.k) {
                                $(
                                    ($o, 1) => dw_block::<$o, 1>(g, at, dz, xpad, dw, o0, ci, ki),
                                    ($o, 2) => dw_block::<$o, 2>(g, at, dz, xpad, dw, o0, ci, ki),
                                    ($o, 3) => dw_block::<$o, 3>(g, at, dz, xpad, dw, o0, ci, ki),
                                    ($o, 4) => dw_block::<$o, 4>(g, at, dz, xpad, dw, o0, ci, ki),
                                    ($o, 5) => dw_block::<$o, 5>(g, at, dz, xpad, dw, o0, ci, ki),
                                    ($o, 6) => dw_block::<$o, 6>(g, at, dz, xpad, dw, o0, ci, ki),
                                    ($o, _) => dw_block::<$o, 7>(g, at, dz, xpad, dw, o0, ci, ki),
                                )*
                                _ => unreachable!("at most 4 planes per block"),
                            }
                        };
                    }
                    // SAFETY: forwarded.
                    unsafe { block!(4, 3, 2, 1) };
                }
            }
            o0 += o;
        }
    }

    /// `∂W[o, ci, ki, kj]` for planes `o0..o0+O` and every `kj < K` (`K = g.k`): `O·K`
    /// accumulators over every position, then summed across lanes.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dw_block<const O: usize, const K: usize>(
        g: &ConvGeom,
        (c_out, m): (usize, usize),
        dz: &[f32],
        xpad: &[f32],
        dw: &mut [f32],
        o0: usize,
        ci: usize,
        ki: usize,
    ) {
        let (lp, rows, sl) = (plane_len(g), g.rows(), g.sample_len());
        let row = (ci * g.h + ki) * g.w;
        let mut acc = [[_mm512_setzero_ps(); O]; K];
        for s in 0..m {
            // SAFETY: sample s's planes and input lie in the caller's checked slices.
            let (x, d) = unsafe { (xpad.as_ptr().add(s * sl), dz.as_ptr().add(s * c_out * lp)) };
            let mut p = 0;
            while p < lp {
                let mask = lanes(lp, p);
                // SAFETY: the lanes read lie below (o0 + i)·lp + lp ≤ c_out·lp and
                // row + kj + lp ≤ input_len.
                unsafe {
                    let mut dv = [_mm512_setzero_ps(); O];
                    for (i, v) in dv.iter_mut().enumerate() {
                        *v = _mm512_maskz_loadu_ps(mask, d.add((o0 + i) * lp + p));
                    }
                    for (kj, a) in acc.iter_mut().enumerate() {
                        let xv = _mm512_maskz_loadu_ps(mask, x.add(row + kj + p));
                        for (a, &dv) in a.iter_mut().zip(&dv) {
                            *a = _mm512_fmadd_ps(dv, xv, *a);
                        }
                    }
                }
                p += W;
            }
        }
        for (kj, a) in acc.iter().enumerate() {
            for (i, &v) in a.iter().enumerate() {
                dw[(o0 + i) * rows + (ci * g.k + ki) * g.k + kj] += hsum(v);
            }
        }
    }

    /// The sum of the 16 lanes in a fixed order: lane `i` plus lane `i + 8`, then the AVX2
    /// path's sum of 8.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn hsum(v: __m512) -> f32 {
        let lo = _mm512_castps512_ps256(v);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
        let s = _mm256_add_ps(lo, hi);
        let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution and its weight gradient by the definition, in f64.
    fn naive(g: &ConvGeom, c_out: usize, w: &[f32], x: &[f32], dz: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let mut z = vec![0.0; c_out * g.h_out * g.w_out];
        let mut dw = vec![0.0; c_out * g.rows()];
        for o in 0..c_out {
            for oh in 0..g.h_out {
                for ow in 0..g.w_out {
                    let mut s = 0.0;
                    let gz = dz[o * g.h_out * g.w_out + oh * g.w_out + ow] as f64;
                    for ci in 0..g.c {
                        for ki in 0..g.k {
                            for kj in 0..g.k {
                                let r = (ci * g.k + ki) * g.k + kj;
                                let xv = x[(ci * g.h + oh + ki) * g.w + ow + kj] as f64;
                                s += w[o * g.rows() + r] as f64 * xv;
                                dw[o * g.rows() + r] += gz * xv;
                            }
                        }
                    }
                    z[(o * g.h_out + oh) * g.w_out + ow] = s;
                }
            }
        }
        (z, dw)
    }

    /// Runs `f` on every path this CPU has (AVX-512, AVX2, portable).
    fn both_paths(f: impl Fn()) {
        for isa in [Isa::Avx512, Isa::Avx2, Isa::Portable] {
            cap_path(isa);
            if active_path() == isa {
                f();
            }
        }
        cap_path(Isa::Avx512);
    }

    #[test]
    fn matches_the_definition_on_both_paths() -> candle_core::Result<()> {
        let mut rng = crate::rng::Rng::new(3);
        // (c, h, w, k, c_out): LeNet's conv1, every kernel size, output counts around the
        // blocks of 6 and 2, planes that are not a multiple of 16 or of 8 positions.
        let cases = [
            (3, 32, 32, 5, 6),
            (1, 9, 9, 1, 1),
            (2, 8, 9, 2, 7),
            (1, 10, 12, 3, 13),
            (3, 11, 13, 4, 5),
            (2, 12, 12, 6, 3),
            (1, 14, 16, 7, 8),
            (4, 7, 7, 3, 12),
        ];
        for (c, h, w, k, c_out) in cases {
            let g = ConvGeom::new(c, h, w, k, 1, 0)?;
            assert!(supports(&g), "{g:?}");
            let mut normal =
                |n: usize| -> Vec<f32> { (0..n).map(|_| rng.normal() as f32).collect() };
            let x = normal(g.sample_len());
            let wts = normal(c_out * g.rows());
            let dz_dense = normal(c_out * g.cols());
            let (z_ref, dw_ref) = naive(&g, c_out, &wts, &x, &dz_dense);
            let lp = plane_len(&g);
            // ∂z in the plane layout, zeros in the ignored columns.
            let mut dz = vec![0.0f32; c_out * lp];
            for o in 0..c_out {
                for oh in 0..g.h_out {
                    for ow in 0..g.w_out {
                        dz[o * lp + oh * g.w + ow] = dz_dense[(o * g.h_out + oh) * g.w_out + ow];
                    }
                }
            }
            let mut xpad = vec![f32::NAN; input_len(&g)];
            pad_input(&g, &x, &mut xpad);
            both_paths(|| {
                let mut z = vec![f32::NAN; c_out * lp];
                forward(&g, c_out, &wts, &xpad, &mut z);
                let scale = g.rows() as f64;
                for o in 0..c_out {
                    for oh in 0..g.h_out {
                        for ow in 0..g.w_out {
                            let got = z[o * lp + oh * g.w + ow] as f64;
                            let want = z_ref[(o * g.h_out + oh) * g.w_out + ow];
                            assert!((got - want).abs() < 1e-5 * scale, "{g:?} z {got} {want}");
                        }
                    }
                }
                let mut dw = vec![1.0f32; c_out * g.rows()];
                backward_dw(&g, c_out, 1, &dz, &xpad, &mut dw);
                let scale = g.cols() as f64;
                for (got, want) in dw.iter().zip(&dw_ref) {
                    let got = *got as f64 - 1.0;
                    assert!((got - want).abs() < 1e-5 * scale, "{g:?} dw {got} {want}");
                }
                // Two samples back to back, the first without a zero tail: what it reads past
                // its end meets the zero columns of ∂z.
                let x2: Vec<f32> = x.iter().chain(&xpad).copied().collect();
                let dz2: Vec<f32> = dz.iter().chain(&dz).copied().collect();
                let mut dw2 = vec![0.0f32; c_out * g.rows()];
                backward_dw(&g, c_out, 2, &dz2, &x2, &mut dw2);
                for (got, want) in dw2.iter().zip(&dw_ref) {
                    let (got, want) = (*got as f64, 2.0 * want);
                    assert!((got - want).abs() < 2e-5 * scale, "{g:?} dw2 {got} {want}");
                }
            });
        }
        Ok(())
    }

    #[test]
    fn only_stride_one_unpadded_narrow_rows_fit() -> candle_core::Result<()> {
        assert!(fits(&ConvGeom::new(3, 32, 32, 5, 1, 0)?));
        assert!(!fits(&ConvGeom::new(6, 14, 14, 5, 1, 0)?), "LeNet's conv2");
        assert!(!fits(&ConvGeom::new(3, 32, 32, 5, 2, 0)?), "stride");
        assert!(!fits(&ConvGeom::new(3, 32, 32, 5, 1, 1)?), "padding");
        assert!(!fits(&ConvGeom::new(1, 40, 40, 9, 1, 0)?), "kernel 9");
        Ok(())
    }
}
