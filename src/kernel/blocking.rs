//! The reduction blocking of every GEMM gatekit runs, fixed by this code instead of by the
//! cache sizes the `gemm` crate detects at run time (issue 28, "the same bytes on every
//! machine").
//!
//! # Why
//! `gemm` 0.19 cuts the reduction dimension `k` into blocks of `kc` and adds the blocks'
//! partial products into the destination one after the other; each element of the product is
//! one chain of fused multiply-adds within a block. Its `kc` comes from the L1 cache it reads
//! with `cpuid` (`gemm_common::cache::kernel_params`: at least 512, more on an L1 with more
//! ways; `min(k, 512)` unequal blocks for `m, n ≤ 64`), so a product with `k > 512` rounded
//! differently on a machine with another L1, and a seed trained there gave other bytes.
//!
//! # What is fixed here
//! [`gemm_fixed`] cuts `k` itself into `⌈k / K_BLOCK⌉` blocks of equal length (the last may
//! be shorter by less than one per block) and calls `gemm` once per block, accumulating. No
//! block is longer than 512, and `gemm` splits `k` only beyond 512 (both of its paths take
//! `kc = k` when `k ≤ 512`), so the reduction order of every element is the code's. What
//! `gemm` still picks at run time, the `mc × nc` macro-tiles that follow the L2/L3 sizes,
//! only decides which elements are computed together, not how one element is summed.
//!
//! What still changes numbers: the SIMD path (`gemm` and the engine's loops dispatch to
//! AVX-512, AVX2 + FMA or a portable path by CPU feature; `gemm` takes AVX-512 only on CPUs
//! with the whole x86-64-v4 set, through its `x86-v4` feature; FMA rounds once where a multiply
//! and an add round twice, and the dot-product kernel for tiny products sums in as many
//! lanes as the vector has) and the thread count (the batch is cut into one chunk per thread
//! and the chunks' weight gradients are summed in chunk order).
//!
//! # Checking it
//! `GATEKIT_GEMM_BLOCKING=MT,NT` makes every product run as tiles of at most `MT × NT`
//! elements of the destination (one `gemm` call per tile, as a smaller L2/L3 would make
//! `gemm` itself do); `tests/determinism.rs` trains under several such tilings and compares
//! checkpoint bytes. `GATEKIT_GEMM_BLOCKING=MT,NT,KB` also sets the reduction block to `KB`:
//! that is meant to change numbers, and the test checks that it does (so the comparison
//! would see a cache-dependent `kc` if one came back). Diagnostics only; unset in normal use.

use std::sync::OnceLock;

/// The longest reduction block: `gemm`'s own `kc` on a 32 KiB, 8-way L1 (the smallest it
/// assumes), and the length up to which `gemm` never splits `k` again.
pub(crate) const K_BLOCK: usize = 512;

/// Forced tiling of the destination and reduction block (`GATEKIT_GEMM_BLOCKING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Forced {
    m_tile: usize,
    n_tile: usize,
    k_block: usize,
}

/// A `GATEKIT_GEMM_BLOCKING` value that is not a tiling: reported once as a warning, and the
/// default blocking is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "GATEKIT_GEMM_BLOCKING={text:?} is not MT,NT or MT,NT,KB (positive integers, KB at most \
     {K_BLOCK}); ignoring it"
)]
struct BadBlocking {
    text: String,
}

/// Parses `MT,NT` or `MT,NT,KB` (positive integers; `KB` at most [`K_BLOCK`]).
fn parse_forced(text: &str) -> Result<Forced, BadBlocking> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let nums: Result<Vec<usize>, _> = parts.iter().map(|p| p.parse::<usize>()).collect();
    match nums.as_deref() {
        Ok([m, n]) if *m > 0 && *n > 0 => Ok(Forced {
            m_tile: *m,
            n_tile: *n,
            k_block: K_BLOCK,
        }),
        Ok([m, n, k]) if *m > 0 && *n > 0 && (1..=K_BLOCK).contains(k) => Ok(Forced {
            m_tile: *m,
            n_tile: *n,
            k_block: *k,
        }),
        _ => Err(BadBlocking { text: text.into() }),
    }
}

fn forced() -> Option<Forced> {
    static FORCED: OnceLock<Option<Forced>> = OnceLock::new();
    *FORCED.get_or_init(|| {
        let text = std::env::var("GATEKIT_GEMM_BLOCKING").ok()?;
        match parse_forced(&text) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("warning: {e}");
                None
            }
        }
    })
}

/// The reduction blocks of a product with depth `k` and blocks of at most `kb`: `(start,
/// len)` for `⌈k/kb⌉` nearly equal blocks. Depends on `k` and `kb` only.
pub(crate) fn k_blocks(k: usize, kb: usize) -> impl Iterator<Item = (usize, usize)> {
    let count = k.div_ceil(kb.max(1)).max(1);
    let len = k.div_ceil(count);
    (0..count).map(move |i| (i * len, len.min(k - (i * len).min(k))))
}

/// Cuts `len` into at most `⌈len/tile⌉` parts; a part of one row or column would switch
/// `gemm` to its matrix-vector kernel (another summation order), so the parts are made
/// fewer until each has at least 2 (unless `len` itself is below 2).
fn parts(len: usize, tile: usize) -> usize {
    let mut p = len.div_ceil(tile.max(1)).max(1);
    while p > 1 && len / p < 2 {
        p -= 1;
    }
    p
}

/// Splits `0..len` into `p` nearly equal ranges `(start, len)`.
fn ranges(len: usize, p: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..p).map(move |i| {
        let (a, b) = (i * len / p, (i + 1) * len / p);
        (a, b - a)
    })
}

/// `gemm`'s dot-product kernel runs products of at most 16×16 elements whose `lhs` rows and
/// `rhs` columns are contiguous, with lanes summed at the end: a tile must stay on the same
/// side of that line as the whole product, or it would sum in another order.
const HORIZONTAL_MAX: usize = 16 * 16;

/// One raw `gemm` call (see [`gemm_fixed`] for the arguments).
///
/// # Safety
/// As [`gemm_fixed`].
#[allow(clippy::too_many_arguments)]
unsafe fn call<T: Copy + 'static>(
    (m, n, k): (usize, usize, usize),
    dst: (*mut T, isize, isize),
    lhs: (*const T, isize, isize),
    rhs: (*const T, isize, isize),
    accumulate: bool,
    one: T,
    par: gemm::Parallelism,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m, n, k, dst.0, dst.2, dst.1, accumulate, lhs.0, lhs.2, lhs.1, rhs.0, rhs.2, rhs.1,
            one, one, false, false, false, par,
        );
    }
}

/// `dst (+)= lhs · rhs` through `gemm` with the reduction cut into [`k_blocks`] of at most
/// [`K_BLOCK`] (`KB` when forced): `(m, n, k)` the sizes; `dst`, `lhs`, `rhs` as
/// `(pointer, row stride, column stride)`; `one` the type's 1.
///
/// # Safety
/// Every element `(i, j)` of the `m × n` destination, `m × k` lhs and `k × n` rhs at the given
/// strides must be in bounds; `dst` must not alias `lhs` or `rhs`; `T` must be f32 or f64.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_fixed<T: Copy + 'static>(
    (m, n, k): (usize, usize, usize),
    dst: (*mut T, isize, isize),
    lhs: (*const T, isize, isize),
    rhs: (*const T, isize, isize),
    accumulate: bool,
    one: T,
    par: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    let f = forced();
    let kb = f.map_or(K_BLOCK, |f| f.k_block);
    let (mp, np) = match f {
        Some(f) => {
            let (mut mp, mut np) = (parts(m, f.m_tile), parts(n, f.n_tile));
            // Stay on the whole product's side of the dot-product kernel's size limit.
            if m * n > HORIZONTAL_MAX {
                while (m / mp) * (n / np) <= HORIZONTAL_MAX && (mp > 1 || np > 1) {
                    if np >= mp && np > 1 {
                        np -= 1;
                    } else {
                        mp -= 1;
                    }
                }
            }
            (mp, np)
        }
        None => (1, 1),
    };
    for (i0, mi) in ranges(m, mp) {
        for (j0, nj) in ranges(n, np) {
            for (b, (p0, kl)) in k_blocks(k, kb).enumerate() {
                // SAFETY: the tile and block lie inside the caller's bounds-checked operands.
                unsafe {
                    let d = dst.0.offset(i0 as isize * dst.1 + j0 as isize * dst.2);
                    let l = lhs.0.offset(i0 as isize * lhs.1 + p0 as isize * lhs.2);
                    let r = rhs.0.offset(p0 as isize * rhs.1 + j0 as isize * rhs.2);
                    call(
                        (mi, nj, kl),
                        (d, dst.1, dst.2),
                        (l, lhs.1, lhs.2),
                        (r, rhs.1, rhs.2),
                        accumulate || b > 0,
                        one,
                        par,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduction_blocks_are_equal_and_cover_k() {
        for k in [1, 2, 75, 150, 511, 512, 513, 784, 1024, 1025, 3000] {
            let blocks: Vec<_> = k_blocks(k, K_BLOCK).collect();
            assert_eq!(blocks[0].0, 0);
            assert_eq!(blocks.iter().map(|b| b.1).sum::<usize>(), k, "k = {k}");
            assert!(blocks.iter().all(|b| b.1 <= K_BLOCK && b.1 > 0), "k = {k}");
            for w in blocks.windows(2) {
                assert_eq!(w[0].0 + w[0].1, w[1].0);
            }
            assert_eq!(blocks.len(), k.div_ceil(K_BLOCK));
        }
        assert_eq!(
            k_blocks(784, 512).collect::<Vec<_>>(),
            vec![(0, 392), (392, 392)]
        );
    }

    #[test]
    fn forced_blocking_parses_or_says_why_not() {
        assert_eq!(
            parse_forced("8, 16"),
            Ok(Forced {
                m_tile: 8,
                n_tile: 16,
                k_block: K_BLOCK
            })
        );
        assert_eq!(parse_forced("8,16,64").map(|f| f.k_block), Ok(64));
        for bad in ["", "8", "0,4", "8,x", "8,8,0", "8,8,513", "1,2,3,4"] {
            let e = parse_forced(bad).expect_err(bad).to_string();
            assert!(
                e.contains("GATEKIT_GEMM_BLOCKING") && e.contains("MT,NT"),
                "{e}"
            );
        }
    }

    #[test]
    fn tiles_never_leave_a_single_row_or_column() {
        for len in 2..40 {
            for tile in 1..10 {
                let p = parts(len, tile);
                assert!(len / p >= 2, "len {len} tile {tile}: {p} parts");
                assert_eq!(ranges(len, p).map(|r| r.1).sum::<usize>(), len);
            }
        }
        assert_eq!(parts(1, 1), 1);
    }
}
