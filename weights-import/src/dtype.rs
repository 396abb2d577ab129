//! Storage precisions and host-side conversions.

use burn::tensor::{DType, TensorData};
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

/// Elements per task of the parallel conversions.
const CHUNK: usize = 1 << 16;

/// Precision in which weights are stored in a record or exported file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageDtype {
    /// 32-bit floats: exact for every source.
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16, Meta's release precision: exact for Meta checkpoints.
    BF16,
}

impl StorageDtype {
    /// Burn's dtype tag.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::BF16 => DType::BF16,
        }
    }

    /// Converts host f32 values into tensor data of this precision (round to nearest even).
    pub fn encode(self, values: Vec<f32>, shape: Vec<usize>) -> TensorData {
        encode(values, shape, self.dtype())
    }
}

/// Host f32 values as tensor data of `dtype`: f16 and bf16 rounded to nearest even on all
/// threads (with F16C where the CPU has it), f32 as they are, other dtypes by Burn.
pub(crate) fn encode(values: Vec<f32>, shape: Vec<usize>, dtype: DType) -> TensorData {
    match dtype {
        DType::F32 => TensorData::new(values, shape),
        DType::F16 => TensorData::new(narrow::<f16>(&values), shape),
        DType::BF16 => TensorData::new(narrow::<bf16>(&values), shape),
        other => TensorData::new(values, shape).convert_dtype(other),
    }
}

/// `values` rounded to a 16-bit float type, in parallel chunks.
fn narrow<H>(values: &[f32]) -> Vec<H>
where
    H: Copy + Default + Send + Sync,
    [H]: HalfFloatSliceExt,
{
    let mut out = vec![H::default(); values.len()];
    out.par_chunks_mut(CHUNK)
        .zip(values.par_chunks(CHUNK))
        .for_each(|(out, values)| out.convert_from_f32_slice(values));
    out
}

/// Little-endian values of `width` bytes each, widened to f32 by `f` in parallel chunks
/// (trailing bytes short of a value are ignored).
fn widen(bytes: &[u8], width: usize, f: impl Fn(&[u8]) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0f32; bytes.len() / width];
    out.par_chunks_mut(CHUNK)
        .zip(bytes.par_chunks(CHUNK * width))
        .for_each(|(out, bytes)| {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(width)) {
                *o = f(b);
            }
        });
    out
}

impl std::str::FromStr for StorageDtype {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Ok(Self::F32),
            "f16" | "float16" | "fp16" | "half" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::BF16),
            other => Err(format!(
                "unknown dtype `{other}` (expected f32, f16 or bf16)"
            )),
        }
    }
}

impl std::fmt::Display for StorageDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
        })
    }
}

/// Whether weights of this dtype can be imported.
pub(crate) fn is_float(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
}

/// Burn's float type of a safetensors dtype; `None` for integer and other types.
pub(crate) fn safetensors_float(dtype: safetensors::Dtype) -> Option<DType> {
    match dtype {
        safetensors::Dtype::F32 => Some(DType::F32),
        safetensors::Dtype::F16 => Some(DType::F16),
        safetensors::Dtype::BF16 => Some(DType::BF16),
        safetensors::Dtype::F64 => Some(DType::F64),
        _ => None,
    }
}

/// Decodes little-endian floating-point bytes to f32. `None` for non-float dtypes.
pub(crate) fn decode_le(dtype: DType, bytes: &[u8]) -> Option<Vec<f32>> {
    let out = match dtype {
        DType::F32 => widen(bytes, 4, |c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        DType::F16 => widen(bytes, 2, |c| f16::from_le_bytes([c[0], c[1]]).to_f32()),
        DType::BF16 => widen(bytes, 2, |c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        DType::F64 => widen(bytes, 8, |c| {
            f64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f32
        }),
        _ => return None,
    };
    Some(out)
}

/// Tensor data of any float dtype as host f32 values. `None` for non-float dtypes.
pub(crate) fn data_to_f32(data: &TensorData) -> Option<Vec<f32>> {
    decode_le(data.dtype, data.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_round_trip_is_exact_for_bf16_values() {
        let values = [1.0f32, -0.5, 0.15625, 3.0e-3];
        let rounded: Vec<f32> = values.iter().map(|&v| bf16::from_f32(v).to_f32()).collect();
        let data = StorageDtype::BF16.encode(rounded.clone(), vec![4]);
        assert_eq!(data.dtype, DType::BF16);
        assert_eq!(data_to_f32(&data).unwrap(), rounded);
    }

    /// Values over more than one parallel chunk: ties, subnormals, overflow, infinities.
    fn awkward_values() -> Vec<f32> {
        let specials = [
            0.0f32,
            -0.0,
            1.0 + f32::EPSILON,
            1.000_488_3, // an f16 tie
            6.0e-8,      // f16 subnormal
            1.0e-40,     // f32 subnormal
            70_000.0,    // past f16's range
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
        ];
        (0..CHUNK * 2 + 37)
            .map(|i| match i % 13 {
                k if k < specials.len() => specials[k],
                _ => (i as f32 * 0.618_034).sin() * 10f32.powi((i % 9) as i32 - 4),
            })
            .collect()
    }

    #[test]
    fn parallel_narrowing_equals_element_wise_rounding() {
        let values = awkward_values();
        let n = values.len();
        let halves = encode(values.clone(), vec![n], DType::F16);
        let expected: Vec<u8> = values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        assert_eq!(halves.dtype, DType::F16);
        assert_eq!(halves.as_bytes(), &expected[..]);
        let brains = encode(values.clone(), vec![n], DType::BF16);
        let expected: Vec<u8> = values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect();
        assert_eq!(brains.dtype, DType::BF16);
        assert_eq!(brains.as_bytes(), &expected[..]);
        let nan = encode(vec![f32::NAN], vec![1], DType::F16);
        assert!(nan.as_slice::<f16>().unwrap()[0].is_nan());
    }

    #[test]
    fn parallel_widening_equals_element_wise_decoding() {
        let values = awkward_values();
        let halves: Vec<u8> = values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        let expected: Vec<f32> = values.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
        let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&decode_le(DType::F16, &halves).unwrap()),
            bits(&expected)
        );
        // A trailing byte short of a value is ignored.
        let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.push(7);
        assert_eq!(bits(&decode_le(DType::F32, &bytes).unwrap()), bits(&values));
        assert!(decode_le(DType::I32, &bytes).is_none());
    }

    #[test]
    fn parses_names() {
        assert_eq!("BF16".parse::<StorageDtype>(), Ok(StorageDtype::BF16));
        assert_eq!("float16".parse::<StorageDtype>(), Ok(StorageDtype::F16));
        assert!("int8".parse::<StorageDtype>().is_err());
    }
}
