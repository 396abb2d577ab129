//! `out = x · w` for a few rows `x` (one per sequence when decoding) and a large row-major
//! weight `w`. A general matrix product reads a small-`m` problem as a matrix-vector
//! product, which the `gemm` crate runs on one thread; decoding is bound by how fast the
//! weight streams from memory, so this kernel gives each thread a contiguous slab of the
//! weight's rows, reads every weight element once for all rows of `x`, and sums the
//! threads' partial products at the end.
//!
//! The weight may be stored in f32, f16 or bf16 ([`Weight`]): half-precision weights are
//! widened to f32 in registers, a cache-sized block at a time, so a product streams half
//! the bytes and accumulates in f32 exactly as the f32 kernel does.

use std::ops::Range;

use burn::tensor::f16;
use rayon::prelude::*;

/// The most rows of `x` the kernel serves; larger products are compute-bound and belong to
/// a blocked matrix product.
pub const MAX_ROWS: usize = 8;

/// Weight rows each thread takes at least (below that, threads cost more than they save).
const MIN_ROWS_PER_TASK: usize = 64;

/// Columns of four half-precision weight rows widened at a time (4 × 256 f32 = 4 KiB, in
/// L1 beside the accumulator rows).
const BLOCK: usize = 1024;

/// A row-major weight matrix's elements as stored.
#[derive(Clone, Copy, Debug)]
pub enum Weight<'a> {
    F32(&'a [f32]),
    /// IEEE 754 binary16 bit patterns.
    F16(&'a [u16]),
    /// bfloat16 bit patterns (the upper half of an f32).
    Bf16(&'a [u16]),
}

impl Weight<'_> {
    fn len(&self) -> usize {
        match self {
            Weight::F32(w) => w.len(),
            Weight::F16(w) | Weight::Bf16(w) => w.len(),
        }
    }
}

/// Computes `out = x · w`.
///
/// # Shapes
///
/// - x: `[m, k]` row-major, `1 <= m <= MAX_ROWS`
/// - w: `[k, n]` row-major
/// - output: `[m, n]` row-major
///
/// # Panics
///
/// When the slice lengths do not match `m`, `k` and `n`, or `m` is outside
/// `1..=MAX_ROWS`.
pub fn matmul(x: &[f32], w: Weight<'_>, m: usize, k: usize, n: usize) -> Vec<f32> {
    assert!((1..=MAX_ROWS).contains(&m), "few_rows::matmul: {m} rows");
    assert_eq!(x.len(), m * k, "few_rows::matmul: x is not [{m}, {k}]");
    assert_eq!(w.len(), k * n, "few_rows::matmul: w is not [{k}, {n}]");
    let p = Product { x, w, m, k, n };
    let tasks = (k / MIN_ROWS_PER_TASK).clamp(1, rayon::current_num_threads().max(1));
    if tasks == 1 {
        let mut out = vec![0.0; m * n];
        slab(&p, 0..k, &mut out);
        return out;
    }
    let per_task = k.div_ceil(tasks);
    let mut partials = vec![0.0f32; tasks * m * n];
    partials
        .par_chunks_mut(m * n)
        .enumerate()
        .for_each(|(t, part)| {
            let start = t * per_task;
            let end = (start + per_task).min(k);
            if start < end {
                slab(&p, start..end, part);
            }
        });
    let (out, rest) = partials.split_at_mut(m * n);
    for part in rest.chunks_exact(m * n) {
        add_assign(out, part);
    }
    partials.truncate(m * n);
    partials
}

/// Widens a half-precision weight to f32 on all threads (for products the kernel does not
/// serve: the blocked matrix product then runs in f32).
pub fn widen(w: Weight<'_>) -> Vec<f32> {
    const CHUNK: usize = 1 << 16;
    match w {
        Weight::F32(w) => w.to_vec(),
        Weight::F16(bits) | Weight::Bf16(bits) => {
            let mut out = vec![0.0f32; bits.len()];
            out.par_chunks_mut(CHUNK)
                .zip(bits.par_chunks(CHUNK))
                .for_each(|(dst, src)| match w {
                    Weight::Bf16(_) => widen_bf16(src, dst),
                    _ => widen_f16(src, dst),
                });
            out
        }
    }
}

/// The operands of one product: `x` is `[m, k]`, `w` is `[k, n]`, both row-major.
struct Product<'a> {
    x: &'a [f32],
    w: Weight<'a>,
    m: usize,
    k: usize,
    n: usize,
}

/// `acc += x[:, rows] · w[rows, :]`, dispatched to the widest vector instructions the CPU
/// has.
fn slab(p: &Product, rows: Range<usize>, acc: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked above).
            return unsafe { slab_avx512(p, rows, acc) };
        }
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: the CPU has AVX2 and F16C (checked above).
            return unsafe { slab_avx2(p, rows, acc) };
        }
    }
    slab_any(p, rows, acc, widen_f16_scalar)
}

/// [`slab_any`] compiled for AVX-512F (whose `vcvtph2ps` widens sixteen f16 at a time).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn slab_avx512(p: &Product, rows: Range<usize>, acc: &mut [f32]) {
    match p.w {
        Weight::F16(w) => slab_f16_avx512(p, w, rows, acc),
        // The closure inherits this function's target features.
        _ => slab_any(p, rows, acc, |src, dst| widen_f16_avx512(src, dst)),
    }
}

/// [`slab_half`] for f16 on AVX-512F with the conversion inside the product: four weight
/// rows are read sixteen columns at a time, widened in registers and applied to every row
/// of `x`, so the weight streams as four sequential reads with nothing written in between.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn slab_f16_avx512(p: &Product, w: &[u16], rows: Range<usize>, acc: &mut [f32]) {
    use std::arch::x86_64::{
        __m256i, _mm256_loadu_si256, _mm512_add_ps, _mm512_cvtph_ps, _mm512_loadu_ps,
        _mm512_mul_ps, _mm512_set1_ps, _mm512_storeu_ps,
    };
    let Product { x, m, k, n, .. } = *p;
    let (mut i, end) = (rows.start, rows.end);
    let vectors = n / 16 * 16;
    while i + 4 <= end {
        let row = |q: usize| &w[(i + q) * n..(i + q + 1) * n];
        let (w0, w1, w2, w3) = (row(0), row(1), row(2), row(3));
        let mut a = [[_mm512_set1_ps(0.0); 4]; MAX_ROWS];
        for (r, ar) in a.iter_mut().enumerate().take(m) {
            for (q, v) in ar.iter_mut().enumerate() {
                *v = _mm512_set1_ps(x[r * k + i + q]);
            }
        }
        let mut j = 0;
        while j < vectors {
            // SAFETY: j + 16 <= n, so every load and store below is in bounds of its row
            // (the rows of `w` above, the rows of `acc`, `m * n` long); unaligned accesses.
            unsafe {
                let load = |r: &[u16]| {
                    _mm512_cvtph_ps(_mm256_loadu_si256(r.as_ptr().add(j) as *const __m256i))
                };
                let (v0, v1, v2, v3) = (load(w0), load(w1), load(w2), load(w3));
                for (r, ar) in a.iter().enumerate().take(m) {
                    let out = acc.as_mut_ptr().add(r * n + j);
                    let sum = _mm512_add_ps(
                        _mm512_add_ps(
                            _mm512_add_ps(_mm512_mul_ps(ar[0], v0), _mm512_mul_ps(ar[1], v1)),
                            _mm512_mul_ps(ar[2], v2),
                        ),
                        _mm512_mul_ps(ar[3], v3),
                    );
                    _mm512_storeu_ps(out, _mm512_add_ps(_mm512_loadu_ps(out), sum));
                }
            }
            j += 16;
        }
        if vectors < n {
            let mut buf = [[0.0f32; 16]; 4];
            for (q, b) in buf.iter_mut().enumerate() {
                widen_f16_scalar(&row(q)[vectors..], &mut b[..n - vectors]);
            }
            for r in 0..m {
                let xr = &x[r * k + i..r * k + i + 4];
                let [b0, b1, b2, b3] = &buf;
                let len = n - vectors;
                axpy4(
                    &mut acc[r * n + vectors..(r + 1) * n],
                    [xr[0], xr[1], xr[2], xr[3]],
                    [&b0[..len], &b1[..len], &b2[..len], &b3[..len]],
                );
            }
        }
        i += 4;
    }
    if i < end {
        slab_half(p, w, i..end, acc, |src, dst| widen_f16_avx512(src, dst));
    }
}

/// [`slab_any`] compiled for AVX2 and F16C (no FMA: Rust does not fuse `a * b + c`, so the
/// sums round as written on every path).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
fn slab_avx2(p: &Product, rows: Range<usize>, acc: &mut [f32]) {
    // The closure inherits this function's target features.
    slab_any(p, rows, acc, |src, dst| widen_f16_f16c(src, dst))
}

/// The slab for any stored precision; `widen_f16` is the f16 → f32 conversion the caller's
/// instruction set has.
#[inline(always)]
fn slab_any(
    p: &Product,
    rows: Range<usize>,
    acc: &mut [f32],
    widen_f16: impl Fn(&[u16], &mut [f32]),
) {
    match p.w {
        Weight::F32(w) => slab_f32(p, w, rows, acc),
        Weight::F16(w) => slab_half(p, w, rows, acc, widen_f16),
        Weight::Bf16(w) => slab_half(p, w, rows, acc, widen_bf16),
    }
}

/// Four weight rows at a time: one read and write of each accumulator row per four weight
/// rows, the weight itself read once, front to back.
#[inline(always)]
fn slab_f32(p: &Product, w: &[f32], rows: Range<usize>, acc: &mut [f32]) {
    let Product { x, m, k, n, .. } = *p;
    let (mut i, end) = (rows.start, rows.end);
    while i + 4 <= end {
        let w0 = &w[i * n..(i + 1) * n];
        let w1 = &w[(i + 1) * n..(i + 2) * n];
        let w2 = &w[(i + 2) * n..(i + 3) * n];
        let w3 = &w[(i + 3) * n..(i + 4) * n];
        for r in 0..m {
            let xr = &x[r * k + i..r * k + i + 4];
            let out = &mut acc[r * n..(r + 1) * n];
            axpy4(out, [xr[0], xr[1], xr[2], xr[3]], [w0, w1, w2, w3]);
        }
        i += 4;
    }
    while i < end {
        let wi = &w[i * n..(i + 1) * n];
        for r in 0..m {
            axpy1(&mut acc[r * n..(r + 1) * n], x[r * k + i], wi);
        }
        i += 1;
    }
}

/// [`slab_f32`] for half-precision weights: four rows' columns are widened a [`BLOCK`] at a
/// time into f32 and applied to every row of `x` while they sit in L1.
#[inline(always)]
fn slab_half(
    p: &Product,
    w: &[u16],
    rows: Range<usize>,
    acc: &mut [f32],
    widen: impl Fn(&[u16], &mut [f32]),
) {
    let Product { x, m, k, n, .. } = *p;
    let mut buf = [[0.0f32; BLOCK]; 4];
    let (mut i, end) = (rows.start, rows.end);
    while i < end {
        let group = (end - i).min(4);
        for jb in (0..n).step_by(BLOCK) {
            let len = BLOCK.min(n - jb);
            for (q, b) in buf.iter_mut().enumerate().take(group) {
                widen(&w[(i + q) * n + jb..(i + q) * n + jb + len], &mut b[..len]);
            }
            for r in 0..m {
                let out = &mut acc[r * n + jb..r * n + jb + len];
                let xr = &x[r * k + i..r * k + i + group];
                if group == 4 {
                    let [b0, b1, b2, b3] = &buf;
                    axpy4(
                        out,
                        [xr[0], xr[1], xr[2], xr[3]],
                        [&b0[..len], &b1[..len], &b2[..len], &b3[..len]],
                    );
                } else {
                    for (q, &a) in xr.iter().enumerate() {
                        axpy1(out, a, &buf[q][..len]);
                    }
                }
            }
        }
        i += group;
    }
}

/// `out += a0 w0 + a1 w1 + a2 w2 + a3 w3`.
#[inline(always)]
fn axpy4(out: &mut [f32], a: [f32; 4], w: [&[f32]; 4]) {
    let n = out.len();
    let (w0, w1, w2, w3) = (&w[0][..n], &w[1][..n], &w[2][..n], &w[3][..n]);
    for j in 0..n {
        out[j] += a[0] * w0[j] + a[1] * w1[j] + a[2] * w2[j] + a[3] * w3[j];
    }
}

/// `out += a w`.
#[inline(always)]
fn axpy1(out: &mut [f32], a: f32, w: &[f32]) {
    for (o, &wv) in out.iter_mut().zip(w) {
        *o += a * wv;
    }
}

fn widen_f16_scalar(src: &[u16], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f16::from_bits(s).to_f32();
    }
}

/// f16 → f32 with the best conversion instruction the CPU has.
fn widen_f16(src: &[u16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked above).
            return unsafe { widen_f16_avx512(src, dst) };
        }
        if std::arch::is_x86_feature_detected!("f16c") {
            // SAFETY: the CPU has F16C (checked above).
            return unsafe { widen_f16_f16c(src, dst) };
        }
    }
    widen_f16_scalar(src, dst)
}

/// f16 → f32, sixteen at a time (`vcvtph2ps zmm`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn widen_f16_avx512(src: &[u16], dst: &mut [f32]) {
    use std::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm512_cvtph_ps, _mm512_storeu_ps};
    let n = src.len().min(dst.len());
    let mut j = 0;
    while j + 16 <= n {
        // SAFETY: j + 16 <= n elements of both slices are in bounds; unaligned loads and
        // stores.
        unsafe {
            let h = _mm256_loadu_si256(src.as_ptr().add(j) as *const __m256i);
            _mm512_storeu_ps(dst.as_mut_ptr().add(j), _mm512_cvtph_ps(h));
        }
        j += 16;
    }
    widen_f16_scalar(&src[j..n], &mut dst[j..n]);
}

/// f16 → f32, eight at a time (F16C's `vcvtph2ps ymm`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
fn widen_f16_f16c(src: &[u16], dst: &mut [f32]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm256_cvtph_ps, _mm256_storeu_ps};
    let n = src.len().min(dst.len());
    let mut j = 0;
    while j + 8 <= n {
        // SAFETY: j + 8 <= n elements of both slices are in bounds; unaligned loads and
        // stores.
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(j) as *const __m128i);
            _mm256_storeu_ps(dst.as_mut_ptr().add(j), _mm256_cvtph_ps(h));
        }
        j += 8;
    }
    widen_f16_scalar(&src[j..n], &mut dst[j..n]);
}

/// bf16 → f32: the bits become the upper half of an f32 (exact; vectorised by the compiler).
#[inline(always)]
fn widen_bf16(src: &[u16], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f32::from_bits(u32::from(s) << 16);
    }
}

fn add_assign(out: &mut [f32], part: &[f32]) {
    for (o, &p) in out.iter_mut().zip(part) {
        *o += p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product in f64, row by row, as the reference.
    fn reference(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for r in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|i| x[r * k + i] as f64 * w[i * n + j] as f64)
                    .sum();
                out[r * n + j] = s as f32;
            }
        }
        out
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        // A fixed LCG: values in [-1, 1).
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn equals_the_product_for_every_row_count_and_ragged_shapes() {
        // k not a multiple of 4 or of the task split, n not a multiple of a vector.
        let shapes = [
            (1, 1, 1),
            (1, 5, 3),
            (3, 63, 17),
            (8, 130, 33),
            (2, 768, 768),
            (1, 288, 1000),
            (5, 1031, 257),
        ];
        for (case, &(m, k, n)) in shapes.iter().enumerate() {
            let x = values(m * k, case as u32);
            let w = values(k * n, 100 + case as u32);
            let got = matmul(&x, Weight::F32(&w), m, k, n);
            let want = reference(&x, &w, m, k, n);
            assert_eq!(got.len(), want.len());
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                let tol = 1e-5 * (k as f32).sqrt().max(1.0);
                assert!((g - e).abs() <= tol, "{m}x{k}x{n} [{i}]: {g} vs {e}");
            }
        }
    }

    #[test]
    fn the_same_on_one_thread_and_on_several() {
        let (m, k, n) = (4, 1000, 300);
        let x = values(m * k, 7);
        let w = values(k * n, 8);
        let many = matmul(&x, Weight::F32(&w), m, k, n);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| matmul(&x, Weight::F32(&w), m, k, n));
        assert_eq!(many.len(), one.len());
        for (a, b) in many.iter().zip(&one) {
            assert!((a - b).abs() <= 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn half_precision_weights_equal_the_product_of_their_f32_values() {
        use burn::tensor::bf16;
        // n not a multiple of the widening block or of a vector, k not a multiple of 4.
        for (case, &(m, k, n)) in [(1, 7, 5), (3, 130, 300), (8, 66, 513), (1, 768, 768)]
            .iter()
            .enumerate()
        {
            let x = values(m * k, 200 + case as u32);
            let w = values(k * n, 300 + case as u32);
            let halves: Vec<u16> = w.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
            let brains: Vec<u16> = w.iter().map(|&v| bf16::from_f32(v).to_bits()).collect();
            let as_f16: Vec<f32> = halves.iter().map(|&b| f16::from_bits(b).to_f32()).collect();
            let as_bf16: Vec<f32> = brains
                .iter()
                .map(|&b| bf16::from_bits(b).to_f32())
                .collect();
            for (weight, values) in [
                (Weight::F16(&halves), &as_f16),
                (Weight::Bf16(&brains), &as_bf16),
            ] {
                assert_eq!(widen(weight), *values, "{weight:?} widened exactly");
                let got = matmul(&x, weight, m, k, n);
                let want = reference(&x, values, m, k, n);
                assert_eq!(got.len(), want.len());
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    let tol = 1e-5 * (k as f32).sqrt().max(1.0);
                    assert!((g - e).abs() <= tol, "{m}x{k}x{n} [{i}]: {g} vs {e}");
                }
            }
        }
    }

    #[test]
    fn every_f16_conversion_path_agrees_with_the_half_crate() {
        // All 65,536 bit patterns, NaNs compared by bits.
        let bits: Vec<u16> = (0..=u16::MAX).collect();
        let mut want = vec![0.0f32; bits.len()];
        widen_f16_scalar(&bits, &mut want);
        let mut got = vec![0.0f32; bits.len()];
        widen_f16(&bits, &mut got);
        let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same(&got, &want));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("f16c") {
            // SAFETY: the CPU has F16C (checked above).
            unsafe { widen_f16_f16c(&bits, &mut got) };
            assert!(same(&got, &want), "F16C");
        }
    }

    #[test]
    #[should_panic(expected = "9 rows")]
    fn refuses_more_rows_than_it_serves() {
        matmul(&[0.0; 9], Weight::F32(&[0.0; 1]), 9, 1, 1);
    }
}
