//! Storage precisions and host-side conversions.

use burn::tensor::{DType, TensorData};
use half::{bf16, f16};

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
        match self {
            Self::F32 => TensorData::new(values, shape),
            Self::F16 => TensorData::new(
                values.into_iter().map(f16::from_f32).collect::<Vec<_>>(),
                shape,
            ),
            Self::BF16 => TensorData::new(
                values.into_iter().map(bf16::from_f32).collect::<Vec<_>>(),
                shape,
            ),
        }
    }
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
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f32)
            .collect(),
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

    #[test]
    fn parses_names() {
        assert_eq!("BF16".parse::<StorageDtype>(), Ok(StorageDtype::BF16));
        assert_eq!("float16".parse::<StorageDtype>(), Ok(StorageDtype::F16));
        assert!("int8".parse::<StorageDtype>().is_err());
    }
}
