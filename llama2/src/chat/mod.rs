//! Llama 2-Chat dialogs.
//!
//! [`Dialog`]s of [`Message`]s (loadable from Meta's JSON form) are turned
//! into token ids with the Llama 2-Chat prompt format by [`encode_dialog`]
//! (a dialog awaiting the model's answer, exactly as Meta's
//! `chat_completion`) or [`encode_completed_dialog`] (a finished dialog, for
//! fine-tuning). [`EncodedDialog`] also marks which tokens are assistant
//! answers and whether the dialog contains reserved tags; [`LossOn`] selects
//! the answers that are training targets (all of them, or the last one for
//! Ghost Attention).

mod dialog;
mod error;
mod format;
mod loss;

pub use dialog::{Dialog, Message, Role, load_dialogs, parse_dialogs};
pub use error::ChatError;
pub use format::{
    B_INST, B_SYS, E_INST, E_SYS, EncodedDialog, SPECIAL_TAGS, UNSAFE_ERROR,
    encode_completed_dialog, encode_dialog, has_special_tags,
};
pub use loss::LossOn;
