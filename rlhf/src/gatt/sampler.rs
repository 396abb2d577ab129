//! The model whose answers become Ghost Attention data: "we can sample from
//! this synthetic data using the latest RLHF model" (paper §3.3).
//!
//! [`AssistantSampler`] is what the data builder asks for an answer; the
//! model-backed implementation is [`LlamaSampler`](super::LlamaSampler).

use llama2::chat::Message;

/// Answers dialogs: given the dialog so far, ending with a user message,
/// returns the next assistant message.
pub trait AssistantSampler {
    /// Why an answer could not be produced.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The next assistant message of `context` (a dialog ending with a user
    /// message, in the Llama 2-Chat roles).
    fn next_message(&mut self, context: &[Message]) -> Result<String, Self::Error>;

    /// The next assistant message of each context, in order. The default
    /// answers them one at a time; samplers that can batch override it.
    fn next_messages(&mut self, contexts: &[Vec<Message>]) -> Result<Vec<String>, Self::Error> {
        contexts.iter().map(|c| self.next_message(c)).collect()
    }
}

impl<S: AssistantSampler + ?Sized> AssistantSampler for &mut S {
    type Error = S::Error;

    fn next_message(&mut self, context: &[Message]) -> Result<String, Self::Error> {
        (**self).next_message(context)
    }

    fn next_messages(&mut self, contexts: &[Vec<Message>]) -> Result<Vec<String>, Self::Error> {
        (**self).next_messages(contexts)
    }
}
