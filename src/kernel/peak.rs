//! What one core of this machine can do at most: sustained f32 FMA throughput on each SIMD
//! path the kernels dispatch to, and memory bandwidth. `cargo bench --bench peak` prints these
//! next to a per-op profile of a training step ([`super::profile`]), so every kernel's
//! GFLOP/s can be read as a share of the measured limit rather than of a datasheet figure.

use std::time::Instant;

/// A SIMD path of the FMA loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// 512-bit AVX-512F `vfmadd` (16 f32 lanes).
    Avx512,
    /// 256-bit AVX2 + FMA `vfmadd` (8 f32 lanes).
    Avx2,
    /// What the baseline target compiles plain `a * b + c` to (SSE2 multiply and add on x86-64).
    Portable,
}

impl Isa {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "AVX-512F FMA",
            Isa::Avx2 => "AVX2 FMA",
            Isa::Portable => "portable (baseline target)",
        }
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
                Isa::Avx2 => {
                    std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                }
                Isa::Portable => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Isa::Portable
        }
    }
}

/// Independent accumulators: enough to cover the FMA latency (4–5 cycles) on two pipes.
const ACC: usize = 12;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    // Opaque operands: with constants the compiler sees that 1 is the recurrence's fixed
    // point and drops the loop.
    let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
    let b = _mm256_set1_ps(std::hint::black_box(1e-6));
    let mut acc = [_mm256_set1_ps(std::hint::black_box(1.0)); ACC];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm256_fmadd_ps(*r, a, b);
        }
    }
    let mut s = [0.0f32; 8];
    let mut sum = _mm256_setzero_ps();
    for r in acc {
        sum = _mm256_add_ps(sum, r);
    }
    // SAFETY: `s` holds 8 f32, the store is unaligned.
    unsafe { _mm256_storeu_ps(s.as_mut_ptr(), sum) };
    s.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
    let b = _mm512_set1_ps(std::hint::black_box(1e-6));
    let mut acc = [_mm512_set1_ps(std::hint::black_box(1.0)); ACC];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm512_fmadd_ps(*r, a, b);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for r in acc {
        sum = _mm512_add_ps(sum, r);
    }
    _mm512_reduce_add_ps(sum)
}

fn fma_portable(iters: u64) -> f32 {
    let (a, b) = std::hint::black_box((0.999_999f32, 1e-6f32));
    let mut acc = [std::hint::black_box(1.0f32); 8 * ACC];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = *r * a + b;
        }
    }
    acc.iter().sum()
}

/// Floating-point operations per iteration of the path's loop.
fn flops_per_iter(isa: Isa) -> f64 {
    let lanes = match isa {
        Isa::Avx512 => 16,
        Isa::Avx2 | Isa::Portable => 8,
    };
    (2 * lanes * ACC) as f64
}

fn run_fma(isa: Isa, iters: u64) -> f32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: callers check `isa.available()` first.
        Isa::Avx512 => unsafe { fma_avx512(iters) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { fma_avx2(iters) },
        _ => fma_portable(iters),
    }
}

/// Sustained single-thread f32 GFLOP/s of `isa`'s FMA loop (the best of `reps` runs of about
/// `seconds` each), or `None` when this CPU lacks the path.
pub fn fma_gflops(isa: Isa, seconds: f64, reps: usize) -> Option<f64> {
    if !isa.available() {
        return None;
    }
    // Calibrate the iteration count to the time asked for.
    let mut iters = 1u64 << 16;
    loop {
        let t = Instant::now();
        std::hint::black_box(run_fma(isa, std::hint::black_box(iters)));
        let dt = t.elapsed().as_secs_f64();
        if dt > seconds / 4.0 || iters > 1 << 40 {
            iters = ((iters as f64) * seconds / dt.max(1e-9)) as u64;
            break;
        }
        iters *= 4;
    }
    let mut best = 0.0f64;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        std::hint::black_box(run_fma(isa, std::hint::black_box(iters)));
        let dt = t.elapsed().as_secs_f64();
        best = best.max(iters as f64 * flops_per_iter(isa) / dt * 1e-9);
    }
    Some(best)
}

/// Memory bandwidth of one thread in GB/s over `bytes`-sized arrays (well beyond the last
/// cache): `(read, triad)` where read sums one array and triad is `a = b + s·c` (counted as
/// 3 arrays' bytes); the best of `reps`.
pub fn bandwidth_gbs(bytes: usize, reps: usize) -> (f64, f64) {
    let n = (bytes / 4).max(1024);
    let b: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let c: Vec<f32> = (0..n).map(|i| (i % 5) as f32).collect();
    let mut a = vec![0.0f32; n];
    let (mut read, mut triad) = (0.0f64, 0.0f64);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let mut s = [0.0f32; 16];
        for chunk in b.chunks_exact(16) {
            for (s, &x) in s.iter_mut().zip(chunk) {
                *s += x;
            }
        }
        std::hint::black_box(s);
        read = read.max(n as f64 * 4.0 / t.elapsed().as_secs_f64() * 1e-9);
        let t = Instant::now();
        for ((a, &b), &c) in a.iter_mut().zip(&b).zip(&c) {
            *a = b + 1.5 * c;
        }
        std::hint::black_box(&mut a);
        triad = triad.max(n as f64 * 12.0 / t.elapsed().as_secs_f64() * 1e-9);
    }
    (read, triad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fma_loops_compute_the_same_recurrence() {
        // x ← 0.999999·x + 1e-6 from 1 stays at 1 (its fixed point) within rounding on every
        // path; a loop the compiler dropped or a wrong lane count would not give 8·ACC (or
        // 16·ACC) here.
        for isa in [Isa::Avx512, Isa::Avx2, Isa::Portable] {
            if !isa.available() {
                continue;
            }
            let lanes = if isa == Isa::Avx512 { 16 } else { 8 };
            let s = run_fma(isa, 1000);
            assert!(
                (s - (lanes * ACC) as f32).abs() < 1e-2,
                "{}: {s}",
                isa.name()
            );
        }
        let g = fma_gflops(Isa::Portable, 0.01, 1).expect("portable is always available");
        assert!(g > 0.1, "portable FMA loop at {g} GFLOP/s");
    }
}
