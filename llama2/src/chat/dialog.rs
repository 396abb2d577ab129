//! Dialog data types and their JSON form.
//!
//! The JSON form is Meta's: a dialog is an array of messages
//! `[{"role": "system" | "user" | "assistant", "content": "..."}]`.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ChatError;

/// Author of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the assistant; only allowed as the first message.
    System,
    /// The human side of the conversation.
    User,
    /// The model side of the conversation.
    Assistant,
}

impl Role {
    /// The lowercase name used in JSON (`"system"`, `"user"`, `"assistant"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message of a dialog.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote the message.
    pub role: Role,
    /// The message text.
    pub content: String,
}

impl Message {
    /// A message with the given role.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// A conversation: an optional system message, then user and assistant
/// messages alternating, starting with the user.
pub type Dialog = Vec<Message>;

/// Parses dialogs from JSON: either one dialog (an array of messages) or an
/// array of dialogs.
pub fn parse_dialogs(json: &str) -> Result<Vec<Dialog>, ChatError> {
    parse(json).map_err(|source| ChatError::Json { path: None, source })
}

/// Reads dialogs from a JSON file (see [`parse_dialogs`]).
pub fn load_dialogs(path: impl AsRef<Path>) -> Result<Vec<Dialog>, ChatError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ChatError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|source| ChatError::Json {
        path: Some(path.to_path_buf()),
        source,
    })
}

fn parse(json: &str) -> Result<Vec<Dialog>, serde_json::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Dialog),
        Many(Vec<Dialog>),
    }
    // `[]` is read as a list without dialogs.
    Ok(match serde_json::from_str::<OneOrMany>(json)? {
        OneOrMany::One(d) if d.is_empty() => Vec::new(),
        OneOrMany::One(d) => vec![d],
        OneOrMany::Many(ds) => ds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_use_lowercase_json_names() {
        let m: Message = serde_json::from_str(r#"{"role": "assistant", "content": "hi"}"#).unwrap();
        assert_eq!(m, Message::assistant("hi"));
        assert_eq!(
            serde_json::to_string(&Message::system("s")).unwrap(),
            r#"{"role":"system","content":"s"}"#
        );
        assert!(serde_json::from_str::<Message>(r#"{"role": "User", "content": ""}"#).is_err());
        assert!(serde_json::from_str::<Message>(r#"{"role": "tool", "content": ""}"#).is_err());
    }

    #[test]
    fn parses_one_dialog_or_many() {
        let one = r#"[{"role": "user", "content": "hi"}]"#;
        assert_eq!(parse_dialogs(one).unwrap(), vec![vec![Message::user("hi")]]);
        let many = r#"[[{"role": "user", "content": "a"}], [{"role": "system", "content": "s"}, {"role": "user", "content": "b"}]]"#;
        let dialogs = parse_dialogs(many).unwrap();
        assert_eq!(dialogs.len(), 2);
        assert_eq!(dialogs[1][0], Message::system("s"));
        assert!(parse_dialogs("[]").unwrap().is_empty());
    }

    #[test]
    fn bad_json_is_a_typed_error() {
        let err = parse_dialogs(r#"[{"role": "user"}]"#).unwrap_err();
        assert!(matches!(err, ChatError::Json { path: None, .. }), "{err:?}");
        let err = load_dialogs("/nonexistent/dialogs.json").unwrap_err();
        assert!(matches!(err, ChatError::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/dialogs.json"),
            "{err}"
        );
    }
}
