//! Rust names for schema names: `PartitionIndex` → `partition_index`, module names for
//! files, and escaping of Rust keywords.
//!
//! Keywords become raw identifiers (`Type` → `r#type`), except the four that cannot be
//! raw (`self`, `Self`, `super`, `crate`), which get a trailing underscore.

const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "do", "dyn",
    "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let",
    "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return",
    "static", "struct", "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use",
    "virtual", "where", "while", "yield",
];

const NOT_RAW_KEYWORDS: &[&str] = &["self", "Self", "super", "crate"];

/// `PartitionIndex` → `partition_index`, `leaderEpoch` → `leader_epoch`,
/// `ISRNodes` → `isr_nodes`.
pub fn snake_case(name: &str) -> String {
    let characters: Vec<char> = name.chars().collect();
    let mut snake = String::with_capacity(name.len() + 4);
    for (index, &character) in characters.iter().enumerate() {
        if character.is_ascii_uppercase() && index > 0 {
            let previous = characters[index - 1];
            let next_is_lower = characters
                .get(index + 1)
                .is_some_and(char::is_ascii_lowercase);
            let starts_word = previous.is_ascii_lowercase()
                || previous.is_ascii_digit()
                || (previous.is_ascii_uppercase() && next_is_lower);
            if starts_word {
                snake.push('_');
            }
        }
        snake.push(character.to_ascii_lowercase());
    }
    snake
}

/// A field name usable as a Rust identifier.
pub fn field_name(schema_name: &str) -> String {
    let snake = snake_case(schema_name);
    if NOT_RAW_KEYWORDS.contains(&snake.as_str()) {
        format!("{snake}_")
    } else if KEYWORDS.contains(&snake.as_str()) {
        format!("r#{snake}")
    } else {
        snake
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_schema_names() {
        assert_eq!(snake_case("PartitionIndex"), "partition_index");
        assert_eq!(snake_case("TopicData"), "topic_data");
        assert_eq!(snake_case("leaderEpoch"), "leader_epoch");
        assert_eq!(snake_case("ISRNodes"), "isr_nodes");
        assert_eq!(snake_case("ClientId"), "client_id");
        assert_eq!(snake_case("Uint32Value"), "uint32_value");
        assert_eq!(snake_case("ProduceRequest"), "produce_request");
    }

    #[test]
    fn escapes_keywords() {
        assert_eq!(field_name("Type"), "r#type");
        assert_eq!(field_name("Match"), "r#match");
        assert_eq!(field_name("Self"), "self_");
        assert_eq!(field_name("Name"), "name");
    }
}
