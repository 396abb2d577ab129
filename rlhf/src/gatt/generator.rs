//! Seeded instruction generator (paper §3.3): single constraints of the three
//! families, "randomly combining the above constraints" into more complex
//! instructions, and the less verbose training form "half of the time"; or
//! draws from instructions given by the user.
//!
//! The random stream is ChaCha8 seeded with [`InstructionGeneratorConfig::seed`],
//! so a seed gives the same instructions on every platform.

use burn::config::Config;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::constraint::{Constraint, ConstraintFamily, ConstraintLists};
use super::error::GattError;
use super::instruction::Instruction;
use llama2::chat::SPECIAL_TAGS;

/// A kind of synthetic instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstructionKind {
    /// One hobby.
    Hobby,
    /// One language.
    Language,
    /// One public figure.
    PublicFigure,
    /// Two or more constraints of different families, in random order.
    Combination,
}

impl InstructionKind {
    /// The four kinds.
    pub const ALL: [InstructionKind; 4] = [
        InstructionKind::Hobby,
        InstructionKind::Language,
        InstructionKind::PublicFigure,
        InstructionKind::Combination,
    ];
}

/// Settings of the synthetic instruction generator.
#[derive(Config, Debug, PartialEq)]
pub struct InstructionGeneratorConfig {
    /// Seed of the random stream.
    #[config(default = 0)]
    pub seed: u64,
    /// The kinds drawn from, uniformly.
    #[config(default = "InstructionKind::ALL.to_vec()")]
    pub kinds: Vec<InstructionKind>,
    /// Probability that the training text is the less verbose form
    /// ("Figure: Napoleon.") rather than the sampling text; the paper's "half
    /// of the time".
    #[config(default = 0.5)]
    pub terse_probability: f64,
    /// Most constraints in a combination (2 or 3: one per family).
    #[config(default = 3)]
    pub max_constraints: usize,
}

impl InstructionGeneratorConfig {
    /// A generator over the built-in constraint lists.
    pub fn init(&self) -> Result<InstructionGenerator, GattError> {
        self.init_with_lists(ConstraintLists::default())
    }

    /// A generator over the given constraint lists.
    pub fn init_with_lists(
        &self,
        lists: ConstraintLists,
    ) -> Result<InstructionGenerator, GattError> {
        let invalid = |m: String| Err(GattError::InvalidGenerator(m));
        if self.kinds.is_empty() {
            return invalid("no instruction kinds to draw from".into());
        }
        if !(0.0..=1.0).contains(&self.terse_probability) {
            return invalid(format!(
                "terse_probability must be in [0, 1], got {}",
                self.terse_probability
            ));
        }
        let combines = self.kinds.contains(&InstructionKind::Combination);
        if combines && !(2..=3).contains(&self.max_constraints) {
            return invalid(format!(
                "max_constraints must be 2 or 3 (one constraint per family), got {}",
                self.max_constraints
            ));
        }
        for family in ConstraintFamily::ALL {
            let needed = combines || self.kinds.iter().any(|k| single_family(*k) == Some(family));
            let values = lists.values(family);
            if needed && values.is_empty() {
                return invalid(format!("the list of {family:?} values is empty"));
            }
            if let Some(v) = values
                .iter()
                .find(|v| v.trim().is_empty() || SPECIAL_TAGS.iter().any(|t| v.contains(t)))
            {
                return invalid(format!(
                    "{family:?} value {v:?} is empty or holds a reserved chat tag"
                ));
            }
        }
        Ok(InstructionGenerator {
            source: Source::Synthetic {
                config: self.clone(),
                lists,
            },
            rng: ChaCha8Rng::seed_from_u64(self.seed),
        })
    }
}

fn single_family(kind: InstructionKind) -> Option<ConstraintFamily> {
    match kind {
        InstructionKind::Hobby => Some(ConstraintFamily::Hobby),
        InstructionKind::Language => Some(ConstraintFamily::Language),
        InstructionKind::PublicFigure => Some(ConstraintFamily::PublicFigure),
        InstructionKind::Combination => None,
    }
}

#[derive(Clone, Debug)]
enum Source {
    Synthetic {
        config: InstructionGeneratorConfig,
        lists: ConstraintLists,
    },
    User(Vec<Instruction>),
}

/// Draws instructions, synthetic or from a user-given list.
#[derive(Clone, Debug)]
pub struct InstructionGenerator {
    source: Source,
    rng: ChaCha8Rng,
}

impl InstructionGenerator {
    /// Draws uniformly from instructions given by the user.
    pub fn from_instructions(instructions: Vec<Instruction>, seed: u64) -> Result<Self, GattError> {
        if instructions.is_empty() {
            return Err(GattError::InvalidGenerator(
                "no user instructions to draw from".into(),
            ));
        }
        for (i, instruction) in instructions.iter().enumerate() {
            instruction.validate()?;
            if [&instruction.text, &instruction.training_text]
                .iter()
                .any(|t| SPECIAL_TAGS.iter().any(|tag| t.contains(tag)))
            {
                return Err(GattError::SpecialTags {
                    what: format!("user instruction {i}"),
                });
            }
        }
        Ok(Self {
            source: Source::User(instructions),
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// The next instruction.
    pub fn next_instruction(&mut self) -> Instruction {
        let rng = &mut self.rng;
        let (config, lists) = match &self.source {
            Source::User(list) => return list[rng.random_range(0..list.len())].clone(),
            Source::Synthetic { config, lists } => (config, lists),
        };
        let kind = config.kinds[rng.random_range(0..config.kinds.len())];
        let families: Vec<ConstraintFamily> = match single_family(kind) {
            Some(family) => vec![family],
            None => {
                let n = rng.random_range(2..=config.max_constraints);
                let mut all = ConstraintFamily::ALL.to_vec();
                all.shuffle(rng);
                all.truncate(n);
                all
            }
        };
        let constraints: Vec<Constraint> = families
            .into_iter()
            .map(|family| {
                let values = lists.values(family);
                Constraint::new(family, values[rng.random_range(0..values.len())].clone())
            })
            .collect();
        let text = constraints
            .iter()
            .map(|c| c.verbose(rng.random_range(0..c.family.templates().len())))
            .collect::<Vec<_>>()
            .join(" ");
        let training_text = if rng.random_bool(config.terse_probability) {
            constraints
                .iter()
                .map(Constraint::terse)
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            text.clone()
        };
        Instruction {
            text,
            training_text,
            constraints,
        }
    }
}

impl Iterator for InstructionGenerator {
    type Item = Instruction;

    fn next(&mut self) -> Option<Instruction> {
        Some(self.next_instruction())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn draw(config: &InstructionGeneratorConfig, n: usize) -> Vec<Instruction> {
        config.init().unwrap().take(n).collect()
    }

    #[test]
    fn deterministic_for_a_seed() {
        let config = InstructionGeneratorConfig::new().with_seed(7);
        let a = draw(&config, 200);
        assert_eq!(a, draw(&config, 200));
        let b = draw(&config.clone().with_seed(8), 200);
        assert_ne!(a, b);
        let unique: HashSet<&String> = a.iter().map(|i| &i.text).collect();
        assert!(unique.len() > 150, "{} distinct of 200", unique.len());
    }

    #[test]
    fn kinds_combinations_and_terse_forms() {
        let config = InstructionGeneratorConfig::new().with_seed(1);
        let drawn = draw(&config, 2000);
        let mut singles = HashSet::new();
        let mut combination_sizes = HashSet::new();
        let mut terse = 0;
        for i in &drawn {
            i.validate().unwrap();
            let families: HashSet<ConstraintFamily> =
                i.constraints.iter().map(|c| c.family).collect();
            assert_eq!(families.len(), i.constraints.len(), "{i:?}");
            if i.constraints.len() == 1 {
                singles.insert(i.constraints[0].family);
            } else {
                combination_sizes.insert(i.constraints.len());
            }
            for c in &i.constraints {
                let verbose = (0..3).map(|t| c.verbose(t)).collect::<Vec<_>>();
                assert!(verbose.iter().any(|v| i.text.contains(v.as_str())), "{i:?}");
            }
            if i.is_terse() {
                terse += 1;
                let expected: Vec<String> = i.constraints.iter().map(|c| c.terse()).collect();
                assert_eq!(i.training_text, expected.join(" "));
            } else {
                assert_eq!(i.training_text, i.text);
            }
        }
        assert_eq!(singles.len(), 3);
        assert_eq!(combination_sizes, HashSet::from([2, 3]));
        // Binomial(2000, 0.5): 5 standard deviations are ±112.
        assert!((888..=1112).contains(&terse), "{terse} terse of 2000");

        let never = draw(&config.clone().with_terse_probability(0.0), 100);
        assert!(never.iter().all(|i| !i.is_terse()));
        let languages = draw(
            &config
                .clone()
                .with_kinds(vec![InstructionKind::Language])
                .with_terse_probability(1.0),
            50,
        );
        for i in languages {
            assert_eq!(i.constraints.len(), 1);
            assert_eq!(i.constraints[0].family, ConstraintFamily::Language);
            assert!(i.training_text.starts_with("Language: "), "{i:?}");
        }
        let pairs = draw(
            &config
                .with_max_constraints(2)
                .with_kinds(vec![InstructionKind::Combination]),
            50,
        );
        assert!(pairs.iter().all(|i| i.constraints.len() == 2));
    }

    #[test]
    fn user_instructions() {
        let list = vec![
            Instruction::new("Answer in rhyme."),
            Instruction::new("Always answer with a haiku.").with_training_text("Haiku."),
        ];
        let a: Vec<Instruction> = InstructionGenerator::from_instructions(list.clone(), 3)
            .unwrap()
            .take(40)
            .collect();
        let b: Vec<Instruction> = InstructionGenerator::from_instructions(list.clone(), 3)
            .unwrap()
            .take(40)
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|i| list.contains(i)));
        assert!(list.iter().all(|i| a.contains(i)));

        assert!(InstructionGenerator::from_instructions(Vec::new(), 0).is_err());
        assert!(matches!(
            InstructionGenerator::from_instructions(vec![Instruction::new("[INST] x")], 0),
            Err(GattError::SpecialTags { .. })
        ));
        assert!(matches!(
            InstructionGenerator::from_instructions(vec![Instruction::new("")], 0),
            Err(GattError::EmptyInstruction)
        ));
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        let c = InstructionGeneratorConfig::new();
        for bad in [
            c.clone().with_kinds(Vec::new()),
            c.clone().with_terse_probability(1.5),
            c.clone().with_max_constraints(4),
            c.clone().with_max_constraints(1),
        ] {
            assert!(
                matches!(bad.init(), Err(GattError::InvalidGenerator(_))),
                "{bad:?}"
            );
        }
        let mut lists = ConstraintLists::default();
        lists.hobbies.clear();
        assert!(c.init_with_lists(lists.clone()).is_err());
        // Without hobby or combination kinds the hobby list is not needed.
        let languages = c.clone().with_kinds(vec![InstructionKind::Language]);
        assert!(languages.init_with_lists(lists).is_ok());
        let mut lists = ConstraintLists::default();
        lists.languages.push("<<SYS>>".into());
        assert!(c.init_with_lists(lists).is_err());
    }
}
