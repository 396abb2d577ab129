//! Training data (paper §2.2 pretraining data, §3.1 SFT data): token caches,
//! packed next-token windows, SFT examples with prompt-masked targets, and
//! batching into tensors.

pub mod batch;
pub mod cache;
pub mod error;
pub mod mixture;
pub mod order;
pub mod sft;
pub mod split;
pub mod text;
pub mod window;

pub use batch::CausalLmBatch;
pub use cache::{CacheStatus, tokenizer_fingerprint};
pub use error::DataError;
pub use mixture::MixtureDataset;
pub use order::DataOrder;
pub use sft::{SftDataset, SftExample, read_sft_examples, read_sft_jsonl};
pub use split::holdout;
pub use text::PackedTextDataset;
pub use window::{IGNORE_INDEX, TokenWindow};
