//! Version ranges as the schemas write them ("3+", "0-2", "5", "none") and the Rust
//! conditions the emitters derive from them.
//!
//! A condition is always simplified against a context: the versions in which the code
//! that tests it can run at all (a nested struct is only read in the versions its parent
//! field exists). That keeps the generated code free of tests that are always true.

use std::fmt;

/// An inclusive range of versions; empty when `lowest > highest`. "N+" is open-ended and
/// stored with `highest = i16::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Versions {
    pub lowest: i16,
    pub highest: i16,
}

impl Versions {
    pub const NONE: Versions = Versions {
        lowest: 1,
        highest: 0,
    };

    pub fn parse(text: &str) -> Result<Versions, String> {
        let text = text.trim();
        let number = |part: &str| {
            part.parse::<i16>()
                .map_err(|_| format!("invalid version number '{part}' in '{text}'"))
        };
        if text == "none" || text.is_empty() {
            return Ok(Versions::NONE);
        }
        if let Some(start) = text.strip_suffix('+') {
            return Ok(Versions {
                lowest: number(start)?,
                highest: i16::MAX,
            });
        }
        if let Some((start, end)) = text.split_once('-') {
            let range = Versions {
                lowest: number(start)?,
                highest: number(end)?,
            };
            if range.is_empty() {
                return Err(format!("version range '{text}' is empty"));
            }
            return Ok(range);
        }
        let single = number(text)?;
        Ok(Versions {
            lowest: single,
            highest: single,
        })
    }

    pub fn is_empty(self) -> bool {
        self.lowest > self.highest
    }

    pub fn intersect(self, other: Versions) -> Versions {
        let range = Versions {
            lowest: self.lowest.max(other.lowest),
            highest: self.highest.min(other.highest),
        };
        if range.is_empty() {
            Versions::NONE
        } else {
            range
        }
    }

    /// The smallest range containing both (the versions between them included).
    pub fn hull(self, other: Versions) -> Versions {
        if self.is_empty() {
            return other;
        }
        if other.is_empty() {
            return self;
        }
        Versions {
            lowest: self.lowest.min(other.lowest),
            highest: self.highest.max(other.highest),
        }
    }

    /// `self` without the versions from `start` on.
    pub fn before(self, start: i16) -> Versions {
        self.intersect(Versions {
            lowest: i16::MIN,
            highest: start.saturating_sub(1),
        })
    }
}

impl fmt::Display for Versions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            write!(f, "none")
        } else if self.highest == i16::MAX {
            write!(f, "{}+", self.lowest)
        } else if self.lowest == self.highest {
            write!(f, "{}", self.lowest)
        } else {
            write!(f, "{}-{}", self.lowest, self.highest)
        }
    }
}

/// Whether code runs for a version, simplified against its context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    Always,
    Never,
    When(String),
}

impl Condition {
    /// True when `version` (a variable in the generated code) is in `range`, given that
    /// it is known to be in `context`.
    pub fn inside(range: Versions, context: Versions) -> Condition {
        let effective = range.intersect(context);
        if effective.is_empty() {
            return Condition::Never;
        }
        if effective == context {
            return Condition::Always;
        }
        let bounded_below = effective.lowest > context.lowest;
        let bounded_above = effective.highest < context.highest;
        let expression = match (bounded_below, bounded_above) {
            (true, true) if effective.lowest == effective.highest => {
                format!("version == {}", effective.lowest)
            }
            (true, true) => format!(
                "({}..={}).contains(&version)",
                effective.lowest, effective.highest
            ),
            (true, false) => format!("version >= {}", effective.lowest),
            _ => format!("version <= {}", effective.highest),
        };
        Condition::When(expression)
    }

    /// True when `version` is in `context` but not in `range`.
    pub fn outside(range: Versions, context: Versions) -> Condition {
        let effective = range.intersect(context);
        if effective.is_empty() {
            return Condition::Always;
        }
        if effective == context {
            return Condition::Never;
        }
        let below = effective.lowest > context.lowest;
        let above = effective.highest < context.highest;
        let expression = match (below, above) {
            (true, true) => format!(
                "!({}..={}).contains(&version)",
                effective.lowest, effective.highest
            ),
            (true, false) => format!("version < {}", effective.lowest),
            _ => format!("version > {}", effective.highest),
        };
        Condition::When(expression)
    }

    /// The condition as a boolean argument: `true`, `false` or the expression.
    pub fn as_argument(&self) -> String {
        match self {
            Condition::Always => "true".to_owned(),
            Condition::Never => "false".to_owned(),
            Condition::When(expression) => expression.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_schema_form() {
        assert_eq!(
            Versions::parse("3+"),
            Ok(Versions {
                lowest: 3,
                highest: i16::MAX
            })
        );
        assert_eq!(
            Versions::parse("0-2"),
            Ok(Versions {
                lowest: 0,
                highest: 2
            })
        );
        assert_eq!(
            Versions::parse("5"),
            Ok(Versions {
                lowest: 5,
                highest: 5
            })
        );
        assert!(Versions::parse("none").is_ok_and(Versions::is_empty));
        assert!(Versions::parse("3-1").is_err());
        assert!(Versions::parse("x+").is_err());
    }

    #[test]
    fn conditions_simplify_against_context() {
        let context = Versions {
            lowest: 0,
            highest: 11,
        };
        let parse = |text| Versions::parse(text).expect("valid");
        assert_eq!(Condition::inside(parse("0+"), context), Condition::Always);
        assert_eq!(Condition::inside(parse("12+"), context), Condition::Never);
        assert_eq!(
            Condition::inside(parse("3+"), context),
            Condition::When("version >= 3".into())
        );
        assert_eq!(
            Condition::inside(parse("0-2"), context),
            Condition::When("version <= 2".into())
        );
        assert_eq!(
            Condition::inside(parse("2-4"), context),
            Condition::When("(2..=4).contains(&version)".into())
        );
        assert_eq!(
            Condition::inside(parse("1"), context),
            Condition::When("version == 1".into())
        );
        assert_eq!(
            Condition::outside(parse("3+"), context),
            Condition::When("version < 3".into())
        );
        assert_eq!(Condition::outside(parse("0+"), context), Condition::Never);
        assert_eq!(Condition::outside(parse("12+"), context), Condition::Always);
    }
}
