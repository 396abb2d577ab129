//! f32 matrix products through the `gemm` crate (Flex's own matrix kernels), written
//! straight into a new buffer: operands are strided views, so a transposed operand costs
//! no copy.
//!
//! Flex allocates each product's output zeroed and then copies it once more to realign the
//! buffer (`Bytes::from_bytes_vec`), both on one thread: for a training step of the 110M
//! shape that is about a tenth of the step. Here the output is allocated uninitialised and
//! gemm overwrites every element.

/// Products with at least this many multiply-adds run on all threads (Flex's threshold).
const PARALLEL_THRESHOLD: usize = 192 * 192 * 192;

/// A strided `[rows, cols]` view of f32 elements.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    /// The buffer the view reads.
    pub data: &'a [f32],
    /// The element at row 0, column 0.
    pub offset: usize,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Elements between consecutive rows.
    pub row_stride: isize,
    /// Elements between consecutive columns.
    pub col_stride: isize,
}

impl<'a> Matrix<'a> {
    /// A row-major `[rows, cols]` matrix filling `data`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "a [{rows}, {cols}] matrix");
        Self {
            data,
            offset: 0,
            rows,
            cols,
            row_stride: cols as isize,
            col_stride: 1,
        }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element of the view lies inside `data`.
    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = |len: usize, stride: isize| (len as isize - 1) * stride;
        let (r, c) = (
            last(self.rows, self.row_stride),
            last(self.cols, self.col_stride),
        );
        let low = self.offset as isize + r.min(0) + c.min(0);
        let high = self.offset as isize + r.max(0) + c.max(0);
        low >= 0 && (high as usize) < self.data.len()
    }
}

/// `a · b`, row-major.
///
/// # Panics
///
/// When the inner dimensions differ or a view reaches outside its buffer.
///
/// # Shapes
///
/// - a: `[m, k]`, b: `[k, n]`
/// - output: `[m · n]`
pub fn matmul(a: Matrix<'_>, b: Matrix<'_>) -> Vec<f32> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions of the product");
    assert!(a.in_bounds() && b.in_bounds(), "views inside their buffers");
    let len = m * n;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    if k == 0 {
        out.resize(len, 0.0);
        return out;
    }
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_THRESHOLD {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: both views lie inside their buffers (asserted), the output has capacity for
    // its `m · n` elements, and with `read_dst = false` gemm writes each of them exactly
    // once without reading it, so every element is initialised before `set_len`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr().add(a.offset),
            a.col_stride,
            a.row_stride,
            b.data.as_ptr().add(b.offset),
            b.col_stride,
            b.row_stride,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
        out.set_len(len);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values;

    fn reference(a: &Matrix<'_>, b: &Matrix<'_>) -> Vec<f64> {
        let at = |x: &Matrix<'_>, i: usize, j: usize| {
            f64::from(
                x.data[(x.offset as isize + i as isize * x.row_stride + j as isize * x.col_stride)
                    as usize],
            )
        };
        let mut out = Vec::with_capacity(a.rows * b.cols);
        for i in 0..a.rows {
            for j in 0..b.cols {
                out.push((0..a.cols).map(|p| at(a, i, p) * at(b, p, j)).sum());
            }
        }
        out
    }

    fn check(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        assert!(!got.is_empty());
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (f64::from(g) - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{i}: {g} vs {w}"
            );
        }
    }

    #[test]
    fn products_of_row_major_and_transposed_views_match_f64() {
        // Above the parallel threshold (200 · 210 · 190 multiply-adds) and below it.
        for (m, k, n) in [(200, 210, 190), (7, 5, 3)] {
            let x = test_values(m * k, 1, 2.0);
            let w = test_values(k * n, 2, 2.0);
            let g = test_values(m * n, 3, 2.0);
            let (x, w, g) = (
                Matrix::row_major(&x, m, k),
                Matrix::row_major(&w, k, n),
                Matrix::row_major(&g, m, n),
            );
            check(&matmul(x, w), &reference(&x, &w));
            // The two products of a linear layer's backward pass: g · wᵀ and xᵀ · g.
            check(&matmul(g, w.t()), &reference(&g, &w.t()));
            check(&matmul(x.t(), g), &reference(&x.t(), &g));
        }
    }

    #[test]
    fn an_offset_view_and_an_empty_inner_dimension() {
        let data = test_values(3 + 4 * 6, 4, 2.0);
        // Rows 0..4, columns 1..4 of a [4, 6] matrix stored from element 3.
        let a = Matrix {
            data: &data,
            offset: 3 + 1,
            rows: 4,
            cols: 3,
            row_stride: 6,
            col_stride: 1,
        };
        let b_data = test_values(3 * 2, 5, 2.0);
        let b = Matrix::row_major(&b_data, 3, 2);
        check(&matmul(a, b), &reference(&a, &b));
        let empty: [f32; 0] = [];
        let z = matmul(
            Matrix::row_major(&empty, 2, 0),
            Matrix::row_major(&empty, 0, 3),
        );
        assert_eq!(z, vec![0.0; 6]);
    }

    #[test]
    #[should_panic(expected = "views inside their buffers")]
    fn a_view_outside_its_buffer_is_refused() {
        let data = [1.0f32; 6];
        let a = Matrix {
            row_stride: 4,
            ..Matrix::row_major(&data, 2, 3)
        };
        let _ = matmul(a, Matrix::row_major(&data, 3, 2));
    }
}
