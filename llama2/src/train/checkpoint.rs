//! Atomic training checkpoints: model, optimizer state, scheduler state and
//! data position.
//!
//! `<output_dir>/checkpoints/step-NNNNNNNN/` holds the model's parameters
//! ([`Trainable::save_params`]: `model.mpk`) and `optim.mpk` (burn records at
//! full precision) and `state.json` ([`TrainState`]: step,
//! data cursor, scheduler steps, config). When LoRA adapters are attached
//! ([`crate::lora`]) only they are trained, and `adapters.mpk` replaces
//! `model.mpk`: the frozen base weights are not written again at every step. A checkpoint is written into
//! `step-NNNNNNNN.tmp/` and renamed into place when complete; then the file
//! `latest` (itself written to a temporary file and renamed) names it. A crash
//! at any moment leaves the previous checkpoint intact and `latest` pointing to
//! a complete one.

use std::fs;
use std::path::{Path, PathBuf};

use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::error::TrainError;
use super::objective::{Trainable, read_record, write_record};
use crate::atomic::{write_bytes, write_dir};
use crate::lora::LoraConfig;

/// Where a run stands, besides the model and optimizer tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: usize,
    /// Samples (windows) consumed: the data position.
    pub cursor: u64,
    /// Steps taken by the learning-rate scheduler (its record).
    pub scheduler_steps: usize,
    /// The run's settings. Settings missing from a checkpoint (added to
    /// [`TrainConfig`] after it was written) take their defaults.
    #[serde(deserialize_with = "config_with_defaults")]
    pub config: TrainConfig,
    /// The LoRA adapters trained, if any (the checkpoint then holds only them).
    #[serde(default)]
    pub lora: Option<LoraConfig>,
}

/// A stored [`TrainConfig`] laid over the defaults, object by object.
fn config_with_defaults<'de, D: serde::Deserializer<'de>>(d: D) -> Result<TrainConfig, D::Error> {
    use serde::de::Error;
    use serde_json::Value;

    fn overlay(base: &mut Value, stored: Value) {
        match (base, stored) {
            (Value::Object(base), Value::Object(stored)) => {
                for (key, value) in stored {
                    match base.get_mut(&key) {
                        Some(slot) => overlay(slot, value),
                        None => {
                            base.insert(key, value);
                        }
                    }
                }
            }
            (base, stored) => *base = stored,
        }
    }

    let stored = Value::deserialize(d)?;
    if !stored.is_object() {
        return Err(D::Error::custom(
            "the config of a checkpoint must be an object",
        ));
    }
    let mut config = serde_json::to_value(TrainConfig::new()).map_err(D::Error::custom)?;
    overlay(&mut config, stored);
    serde_json::from_value(config).map_err(D::Error::custom)
}

/// The checkpoints directory of a run.
pub fn checkpoints_dir(output_dir: &Path) -> PathBuf {
    output_dir.join("checkpoints")
}

/// Writes a checkpoint and returns its directory; keeps the newest `keep`
/// checkpoints (0: all).
pub fn save<B, M, O>(
    output_dir: &Path,
    model: &M,
    optim: &O,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf, TrainError>
where
    B: AutodiffBackend,
    M: Trainable<B>,
    O: Optimizer<M, B>,
{
    let root = checkpoints_dir(output_dir);
    let name = format!("step-{:08}", state.step);
    let dir = root.join(&name);
    fs::create_dir_all(&root).map_err(|e| TrainError::io(&root, e))?;
    if dir.exists() {
        // A resumed run saving a step it had saved before.
        fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    }
    write_dir(&dir, |tmp| {
        model.save_params(tmp)?;
        write_record::<B, _>(optim.to_record(), tmp.join("optim"))?;
        let json = serde_json::to_vec_pretty(state).expect("state serializes");
        write_bytes(&tmp.join("state.json"), &json)?;
        Ok::<(), TrainError>(())
    })?;
    write_bytes(&root.join("latest"), name.as_bytes())?;
    if keep > 0 {
        let mut all = list(&root)?;
        all.sort();
        let excess = all.len().saturating_sub(keep);
        for old in all.into_iter().take(excess) {
            if old != dir {
                fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
            }
        }
    }
    Ok(dir)
}

fn list(root: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root).map_err(|e| TrainError::io(root, e))? {
        let path = entry.map_err(|e| TrainError::io(root, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if path.is_dir()
            && name
                .as_deref()
                .is_some_and(|n| n.starts_with("step-") && !n.ends_with(".tmp"))
        {
            out.push(path);
        }
    }
    Ok(out)
}

/// The checkpoint named by `latest`, if any.
pub fn latest(output_dir: &Path) -> Option<PathBuf> {
    let root = checkpoints_dir(output_dir);
    let name = fs::read_to_string(root.join("latest")).ok()?;
    let dir = root.join(name.trim());
    dir.join("state.json").exists().then_some(dir)
}

/// Reads a checkpoint into `model` and `optim`; returns its [`TrainState`].
///
/// A checkpoint of a LoRA run holds only the adapters: `model` must then carry
/// the base weights and adapters of the same [`LoraConfig`] (their values are
/// replaced).
pub fn load<B, M, O>(
    dir: &Path,
    model: M,
    optim: O,
    device: &B::Device,
) -> Result<(M, O, TrainState), TrainError>
where
    B: AutodiffBackend,
    M: Trainable<B>,
    O: Optimizer<M, B>,
{
    let state_path = dir.join("state.json");
    let text = fs::read(&state_path).map_err(|e| TrainError::io(&state_path, e))?;
    let state: TrainState = serde_json::from_slice(&text).map_err(|source| TrainError::Json {
        path: state_path,
        source,
    })?;
    if state.lora.as_ref() != model.lora() {
        return Err(TrainError::LoraMismatch {
            path: dir.to_path_buf(),
            checkpoint: state.lora.as_ref().map(|c| c.to_string()),
            model: model.lora().map(|c| c.to_string()),
        });
    }
    let model = model.load_params(dir, device)?;
    let optim = optim.load_record(read_record::<B, _>(&dir.join("optim"), device)?);
    Ok((model, optim, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_without_newer_settings_loads_with_defaults() {
        let state = TrainState {
            step: 7,
            cursor: 56,
            scheduler_steps: 7,
            config: TrainConfig::new()
                .with_steps(20)
                .with_dashboard(false)
                .with_log_every(3),
            lora: None,
        };
        let mut json = serde_json::to_value(&state).unwrap();
        let config = json["config"].as_object_mut().unwrap();
        config.remove("dashboard");
        config["schedule"]
            .as_object_mut()
            .unwrap()
            .remove("final_lr_ratio");
        let loaded: TrainState = serde_json::from_value(json).unwrap();
        assert_eq!(loaded.config.steps, 20);
        assert_eq!(loaded.config.log_every, 3);
        assert!(loaded.config.dashboard);
        assert_eq!(loaded.config.schedule.final_lr_ratio, 0.1);
        assert_eq!(
            TrainState {
                config: state.config.clone().with_dashboard(true),
                ..state
            },
            loaded
        );

        let bad = serde_json::json!({"step": 1, "cursor": 1, "scheduler_steps": 1, "config": 3});
        assert!(serde_json::from_value::<TrainState>(bad).is_err());
    }
}
