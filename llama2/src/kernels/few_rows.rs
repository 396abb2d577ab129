//! `out = x · w` for a few rows `x` (one per sequence when decoding) and a large row-major
//! weight `w`. A general matrix product reads a small-`m` problem as a matrix-vector
//! product, which the `gemm` crate runs on one thread; decoding is bound by how fast the
//! weight streams from memory, so this kernel gives each thread a contiguous slab of the
//! weight's rows, reads every weight element once for all rows of `x`, and sums the
//! threads' partial products at the end.

use std::ops::Range;

use rayon::prelude::*;

/// The most rows of `x` the kernel serves; larger products are compute-bound and belong to
/// a blocked matrix product.
pub const MAX_ROWS: usize = 8;

/// Weight rows each thread takes at least (below that, threads cost more than they save).
const MIN_ROWS_PER_TASK: usize = 64;

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
pub fn matmul(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
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

/// The operands of one product: `x` is `[m, k]`, `w` is `[k, n]`, both row-major.
struct Product<'a> {
    x: &'a [f32],
    w: &'a [f32],
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
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked above).
            return unsafe { slab_avx2(p, rows, acc) };
        }
    }
    slab_body(p, rows, acc)
}

/// [`slab_body`] compiled for AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn slab_avx512(p: &Product, rows: Range<usize>, acc: &mut [f32]) {
    slab_body(p, rows, acc)
}

/// [`slab_body`] compiled for AVX2 (no FMA: Rust does not fuse `a * b + c`, so the sums
/// round as written on every path).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn slab_avx2(p: &Product, rows: Range<usize>, acc: &mut [f32]) {
    slab_body(p, rows, acc)
}

/// Four weight rows at a time: one read and write of each accumulator row per four weight
/// rows, the weight itself read once, front to back.
#[inline(always)]
fn slab_body(p: &Product, rows: Range<usize>, acc: &mut [f32]) {
    let Product { x, w, m, k, n } = *p;
    let (mut i, end) = (rows.start, rows.end);
    while i + 4 <= end {
        let w0 = &w[i * n..(i + 1) * n];
        let w1 = &w[(i + 1) * n..(i + 2) * n];
        let w2 = &w[(i + 2) * n..(i + 3) * n];
        let w3 = &w[(i + 3) * n..(i + 4) * n];
        for r in 0..m {
            let xr = &x[r * k + i..r * k + i + 4];
            let (a, b, c, d) = (xr[0], xr[1], xr[2], xr[3]);
            let out = &mut acc[r * n..(r + 1) * n];
            for j in 0..n {
                out[j] += a * w0[j] + b * w1[j] + c * w2[j] + d * w3[j];
            }
        }
        i += 4;
    }
    while i < end {
        let wi = &w[i * n..(i + 1) * n];
        for r in 0..m {
            let a = x[r * k + i];
            let out = &mut acc[r * n..(r + 1) * n];
            for (o, &wv) in out.iter_mut().zip(wi) {
                *o += a * wv;
            }
        }
        i += 1;
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
            let got = matmul(&x, &w, m, k, n);
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
        let many = matmul(&x, &w, m, k, n);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| matmul(&x, &w, m, k, n));
        assert_eq!(many.len(), one.len());
        for (a, b) in many.iter().zip(&one) {
            assert!((a - b).abs() <= 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    #[should_panic(expected = "9 rows")]
    fn refuses_more_rows_than_it_serves() {
        matmul(&[0.0; 9], &[0.0; 1], 9, 1, 1);
    }
}
