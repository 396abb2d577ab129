//! A strided view (a transposed or permuted tensor) copied into row-major order: rows of
//! the last axis over the threads, each row one slice copy when the last axis is dense.
//!
//! Flex copies such views element by element through a strided iterator on one thread
//! whenever an operation needs a row-major operand (a reshape of a transposed tensor, the
//! heads of attention going back to positions).

use rayon::prelude::*;

/// Elements per parallel task (whole rows of the last axis).
const CHUNK: usize = 1 << 15;

/// The elements of the view of `src` with `shape`, `strides` (in elements) and `offset`,
/// in row-major order.
///
/// # Panics
///
/// When `shape` and `strides` differ in length or an element of the view lies outside
/// `src`.
///
/// # Shapes
///
/// - output: `[Π shape]`
pub fn to_row_major(src: &[f32], offset: usize, shape: &[usize], strides: &[isize]) -> Vec<f32> {
    assert_eq!(shape.len(), strides.len(), "one stride per axis");
    let n: usize = shape.iter().product();
    let mut out = vec![0.0f32; n];
    if n == 0 {
        return out;
    }
    let Some((&width, outer)) = shape.split_last() else {
        out[0] = src[offset];
        return out;
    };
    let step = strides[strides.len() - 1];
    let outer_strides = &strides[..strides.len() - 1];
    // The first element of row `r` of the view (`r` in row-major order over `outer`).
    let row_start = |mut r: usize| -> isize {
        let mut at = offset as isize;
        for (&len, &stride) in outer.iter().zip(outer_strides).rev() {
            at += (r % len) as isize * stride;
            r /= len;
        }
        at
    };
    let rows_per_task = (CHUNK / width).max(1);
    let copy_rows = |(task, out): (usize, &mut [f32])| {
        for (r, row) in out.chunks_exact_mut(width).enumerate() {
            let start = row_start(task * rows_per_task + r);
            if step == 1 {
                let start = usize::try_from(start).expect("an element inside the buffer");
                row.copy_from_slice(&src[start..start + width]);
            } else {
                for (j, v) in row.iter_mut().enumerate() {
                    let at = start + j as isize * step;
                    *v = src[usize::try_from(at).expect("an element inside the buffer")];
                }
            }
        }
    };
    let task_len = rows_per_task * width;
    if n <= task_len {
        copy_rows((0, &mut out[..]));
    } else {
        out.par_chunks_mut(task_len).enumerate().for_each(copy_rows);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The view's elements by their multi-index, one at a time.
    fn reference(src: &[f32], offset: usize, shape: &[usize], strides: &[isize]) -> Vec<f32> {
        let n: usize = shape.iter().product();
        (0..n)
            .map(|mut i| {
                let mut at = offset as isize;
                for (&len, &stride) in shape.iter().zip(strides).rev() {
                    at += (i % len) as isize * stride;
                    i /= len;
                }
                src[at as usize]
            })
            .collect()
    }

    #[test]
    fn transposed_heads_come_back_row_major() {
        // [batch 3, heads 5, seq 70, head_dim 24] viewed as [batch, seq, heads, head_dim]:
        // several parallel tasks, dense rows.
        let (b, h, s, d) = (3, 5, 70, 24);
        let src: Vec<f32> = (0..b * h * s * d).map(|i| i as f32).collect();
        let shape = [b, s, h, d];
        let strides = [(h * s * d) as isize, d as isize, (s * d) as isize, 1];
        let got = to_row_major(&src, 0, &shape, &strides);
        assert_eq!(got.len(), src.len());
        assert_eq!(got, reference(&src, 0, &shape, &strides));
    }

    #[test]
    fn strided_last_axis_offset_and_scalars() {
        // A 2-D transpose (last axis strided) of a view starting at element 7.
        let src: Vec<f32> = (0..7 + 300 * 130).map(|i| i as f32 * 0.5).collect();
        let (shape, strides) = ([130, 300], [1isize, 130]);
        let got = to_row_major(&src, 7, &shape, &strides);
        assert_eq!(got.len(), 130 * 300);
        assert_eq!(got, reference(&src, 7, &shape, &strides));
        assert_eq!(to_row_major(&src, 3, &[], &[]), vec![1.5]);
        assert!(to_row_major(&src, 0, &[4, 0], &[1, 1]).is_empty());
    }
}
