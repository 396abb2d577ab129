//! Export to Hugging Face's layout (`config.json` + `model.safetensors`), with the
//! query/key rows permuted back for transformers' rotate-half RoPE, so weights trained here
//! load in `LlamaForCausalLM`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use safetensors::{Dtype, View};

use crate::checkpoint::{Checkpoint, PendingParam};
use crate::dtype::StorageDtype;
use crate::error::{ImportError, Result};
use crate::hf::HfConfig;
use crate::layout::{HfPermute, permute_hf, transpose};

struct LazyTensor<'a> {
    param: &'a PendingParam,
    source: &'a Path,
    check_finite: bool,
    dtype: StorageDtype,
    failure: Rc<RefCell<Option<ImportError>>>,
}

impl LazyTensor<'_> {
    fn bytes(&self) -> Result<Vec<u8>> {
        let spec = &self.param.spec;
        let values = crate::checkpoint::load_checked(self.param, self.source, self.check_finite)?;
        let values = if spec.linear {
            transpose(&values, spec.shape[1], spec.shape[0])
        } else {
            values
        };
        let values = match spec.hf_permute {
            HfPermute::Heads(heads) => permute_hf(&values, spec.shape[0], spec.shape[1], heads),
            HfPermute::None => values,
        };
        Ok(self
            .dtype
            .encode(values, spec.shape.clone())
            .into_bytes()
            .to_vec())
    }
}

impl View for &LazyTensor<'_> {
    fn dtype(&self) -> Dtype {
        match self.dtype {
            StorageDtype::F32 => Dtype::F32,
            StorageDtype::F16 => Dtype::F16,
            StorageDtype::BF16 => Dtype::BF16,
        }
    }

    fn shape(&self) -> &[usize] {
        &self.param.spec.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        match self.bytes() {
            Ok(bytes) => Cow::Owned(bytes),
            Err(e) => {
                self.failure.borrow_mut().get_or_insert(e);
                Cow::Owned(vec![0; self.data_len()])
            }
        }
    }

    fn data_len(&self) -> usize {
        let width = match self.dtype {
            StorageDtype::F32 => 4,
            StorageDtype::F16 | StorageDtype::BF16 => 2,
        };
        self.param.spec.shape.iter().product::<usize>() * width
    }
}

impl Checkpoint {
    /// Writes a Hugging Face `LlamaForCausalLM` directory (`config.json`,
    /// `model.safetensors`, and the tokenizer file the checkpoint came with, if any) in
    /// `dtype`. `dir` must not exist or be empty; it appears only once complete.
    pub fn save_hf(&self, dir: impl AsRef<Path>, dtype: StorageDtype) -> Result<()> {
        let config = HfConfig::json_for(&self.config, torch_dtype(dtype));
        let tokenizer = self.source_tokenizer()?;
        write_hf_dir(
            dir.as_ref(),
            &config,
            &self.params,
            &self.source,
            self.check_finite,
            dtype,
            tokenizer.as_ref(),
        )
    }
}

/// The `torch_dtype` name of a storage type.
pub(crate) fn torch_dtype(dtype: StorageDtype) -> &'static str {
    match dtype {
        StorageDtype::F32 => "float32",
        StorageDtype::F16 => "float16",
        StorageDtype::BF16 => "bfloat16",
    }
}

/// Writes `config` as `config.json` and `params` (under their Hugging Face names, q/k rows
/// permuted, linear weights `[out, in]`) as `model.safetensors` in `dtype`, atomically: `dir`
/// must not exist or be empty and appears only once complete.
pub(crate) fn write_hf_dir(
    dir: &Path,
    config: &serde_json::Value,
    params: &[PendingParam],
    source: &Path,
    check_finite: bool,
    dtype: StorageDtype,
    tokenizer: Option<&crate::TokenizerFile>,
) -> Result<()> {
    crate::atomic::write_dir(dir, |tmp| {
        let config_path = tmp.join("config.json");
        let json = serde_json::to_string_pretty(config).expect("JSON values serialise");
        std::fs::write(&config_path, json).map_err(|e| ImportError::io(&config_path, e))?;
        if let Some(t) = tokenizer {
            let path = tmp.join(t.file_name());
            std::fs::write(&path, &t.bytes).map_err(|e| ImportError::io(&path, e))?;
        }

        let failure: Rc<RefCell<Option<ImportError>>> = Rc::default();
        let tensors: Vec<LazyTensor> = params
            .iter()
            .map(|param| LazyTensor {
                param,
                source,
                check_finite,
                dtype,
                failure: failure.clone(),
            })
            .collect();
        let views = params
            .iter()
            .zip(&tensors)
            .map(|(param, tensor)| (param.spec.hf_name.clone(), tensor));
        let metadata = [("format".to_string(), "pt".to_string())].into();
        let file = tmp.join("model.safetensors");
        safetensors::serialize_to_file(views, Some(metadata), &file).map_err(|e| {
            ImportError::Safetensors {
                path: dir.join("model.safetensors"),
                message: e.to_string(),
            }
        })?;
        match failure.borrow_mut().take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    })
}
