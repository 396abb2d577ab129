//! The synthetic constraints of paper §3.3: "Hobbies ("You enjoy e.g.
//! Tennis"), Language ("Speak in e.g. French"), or Public Figure ("Act as
//! e.g. Napoleon")", each with verbose phrasings and the less verbose form
//! ("Always act as Napoleon from now" → "Figure: Napoleon.").
//!
//! The paper had Llama 2-Chat write the lists of hobbies and public figures,
//! "avoiding a mismatch between the instruction and model knowledge"; the
//! built-in [`ConstraintLists`] are well-known entries of each kind, and
//! [`ConstraintLists::load`] reads other lists from JSON.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::GattError;

/// Built-in hobbies.
pub const HOBBIES: &[&str] = &[
    "tennis",
    "chess",
    "gardening",
    "astronomy",
    "baking",
    "hiking",
    "painting",
    "photography",
    "playing the guitar",
    "birdwatching",
    "rock climbing",
    "knitting",
    "cooking Italian food",
    "reading mystery novels",
    "sailing",
    "pottery",
    "cycling",
    "origami",
    "jazz music",
    "surfing",
    "woodworking",
    "playing football",
    "yoga",
    "skiing",
    "collecting stamps",
    "writing poetry",
    "fishing",
    "ballroom dancing",
    "video games",
    "running marathons",
];

/// Built-in languages.
pub const LANGUAGES: &[&str] = &[
    "French",
    "Spanish",
    "German",
    "Italian",
    "Portuguese",
    "Dutch",
    "Swedish",
    "Polish",
    "Russian",
    "Ukrainian",
    "Greek",
    "Turkish",
    "Arabic",
    "Hindi",
    "Chinese",
    "Japanese",
    "Korean",
    "Vietnamese",
    "Indonesian",
    "Finnish",
];

/// Built-in public figures.
pub const PUBLIC_FIGURES: &[&str] = &[
    "Napoleon",
    "Oscar Wilde",
    "Albert Einstein",
    "Marie Curie",
    "William Shakespeare",
    "Cleopatra",
    "Leonardo da Vinci",
    "Abraham Lincoln",
    "Ada Lovelace",
    "Mahatma Gandhi",
    "Isaac Newton",
    "Charles Darwin",
    "Julius Caesar",
    "Nikola Tesla",
    "Jane Austen",
    "Winston Churchill",
    "Galileo Galilei",
    "Frida Kahlo",
    "Wolfgang Amadeus Mozart",
    "Queen Victoria",
    "Socrates",
    "Florence Nightingale",
    "Mark Twain",
    "Amelia Earhart",
    "Confucius",
    "Ludwig van Beethoven",
    "Sherlock Holmes",
    "Joan of Arc",
    "Charles Dickens",
    "Alan Turing",
];

/// Verbose phrasings of a hobby (`{}` is the hobby).
pub const HOBBY_TEMPLATES: &[&str] = &[
    "You enjoy {}.",
    "Your favourite hobby is {}.",
    "You are passionate about {} and like to bring it up.",
];

/// Verbose phrasings of a language.
pub const LANGUAGE_TEMPLATES: &[&str] = &[
    "Speak in {}.",
    "Always answer in {}.",
    "Reply only in {}, whatever the language of the question.",
];

/// Verbose phrasings of a public figure.
pub const PUBLIC_FIGURE_TEMPLATES: &[&str] = &[
    "Act as {}.",
    "Always act as {} from now.",
    "You are {}; stay in character for the whole conversation.",
];

/// The three constraint families of the paper.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintFamily {
    /// "You enjoy e.g. Tennis".
    Hobby,
    /// "Speak in e.g. French".
    Language,
    /// "Act as e.g. Napoleon".
    PublicFigure,
}

impl ConstraintFamily {
    /// The three families.
    pub const ALL: [ConstraintFamily; 3] = [
        ConstraintFamily::Hobby,
        ConstraintFamily::Language,
        ConstraintFamily::PublicFigure,
    ];

    /// The verbose phrasings of the family.
    pub fn templates(self) -> &'static [&'static str] {
        match self {
            ConstraintFamily::Hobby => HOBBY_TEMPLATES,
            ConstraintFamily::Language => LANGUAGE_TEMPLATES,
            ConstraintFamily::PublicFigure => PUBLIC_FIGURE_TEMPLATES,
        }
    }

    /// The label of the less verbose form (`"Hobby"`, `"Language"`, `"Figure"`).
    pub fn label(self) -> &'static str {
        match self {
            ConstraintFamily::Hobby => "Hobby",
            ConstraintFamily::Language => "Language",
            ConstraintFamily::PublicFigure => "Figure",
        }
    }
}

/// One constraint: a family and its value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Constraint {
    /// The family.
    pub family: ConstraintFamily,
    /// The hobby, language or public figure.
    pub value: String,
}

impl Constraint {
    /// A constraint.
    pub fn new(family: ConstraintFamily, value: impl Into<String>) -> Self {
        Self {
            family,
            value: value.into(),
        }
    }

    /// The verbose phrasing number `template` (modulo the number of phrasings
    /// of the family), e.g. "Always act as Napoleon from now.".
    pub fn verbose(&self, template: usize) -> String {
        let templates = self.family.templates();
        templates[template % templates.len()].replace("{}", &self.value)
    }

    /// The less verbose form, e.g. "Figure: Napoleon.".
    pub fn terse(&self) -> String {
        format!("{}: {}.", self.family.label(), self.value)
    }
}

/// The values each family draws from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConstraintLists {
    /// Hobbies.
    pub hobbies: Vec<String>,
    /// Languages.
    pub languages: Vec<String>,
    /// Public figures.
    pub public_figures: Vec<String>,
}

impl Default for ConstraintLists {
    /// The built-in lists [`HOBBIES`], [`LANGUAGES`] and [`PUBLIC_FIGURES`].
    fn default() -> Self {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Self {
            hobbies: owned(HOBBIES),
            languages: owned(LANGUAGES),
            public_figures: owned(PUBLIC_FIGURES),
        }
    }
}

impl ConstraintLists {
    /// Reads lists from a JSON file
    /// `{"hobbies": [...], "languages": [...], "public_figures": [...]}`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, GattError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| GattError::io(path, e))?;
        serde_json::from_str(&text).map_err(|source| GattError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The values of one family.
    pub fn values(&self, family: ConstraintFamily) -> &[String] {
        match family {
            ConstraintFamily::Hobby => &self.hobbies,
            ConstraintFamily::Language => &self.languages,
            ConstraintFamily::PublicFigure => &self.public_figures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrasings() {
        let c = Constraint::new(ConstraintFamily::PublicFigure, "Napoleon");
        assert_eq!(c.verbose(1), "Always act as Napoleon from now.");
        assert_eq!(c.verbose(3), "Act as Napoleon.");
        assert_eq!(c.terse(), "Figure: Napoleon.");
        let c = Constraint::new(ConstraintFamily::Hobby, "tennis");
        assert_eq!(c.verbose(0), "You enjoy tennis.");
        assert_eq!(c.terse(), "Hobby: tennis.");
        let c = Constraint::new(ConstraintFamily::Language, "French");
        assert_eq!(c.verbose(0), "Speak in French.");
        assert_eq!(c.terse(), "Language: French.");
    }

    #[test]
    fn built_in_lists_are_clean() {
        let lists = ConstraintLists::default();
        for family in ConstraintFamily::ALL {
            let values = lists.values(family);
            assert!(values.len() >= 20, "{family:?}");
            let mut unique = values.to_vec();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), values.len(), "{family:?} has duplicates");
            for v in values {
                assert_eq!(v.trim(), v);
                assert!(!v.is_empty() && !v.contains(['[', ']', '<', '>']), "{v}");
            }
        }
    }

    #[test]
    fn lists_load_from_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lists.json");
        std::fs::write(
            &path,
            r#"{"hobbies": ["go"], "languages": ["Latin"], "public_figures": ["Seneca"]}"#,
        )
        .unwrap();
        let lists = ConstraintLists::load(&path).unwrap();
        assert_eq!(lists.values(ConstraintFamily::Language), ["Latin"]);
        std::fs::write(&path, r#"{"hobbies": ["go"]}"#).unwrap();
        let err = ConstraintLists::load(&path).unwrap_err();
        assert!(matches!(err, GattError::Json { .. }), "{err:?}");
        assert!(err.to_string().contains("lists.json"), "{err}");
    }
}
