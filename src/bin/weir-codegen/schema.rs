//! Reads one Kafka JSON schema (messages or records) into the model the emitters walk.
//!
//! The files are JSON with `//` line comments; `strip_comments` removes them without
//! touching `//` inside strings (URLs in "about"). Everything the emitters rely on is
//! checked here, so a schema the generator does not understand stops generation with the
//! file and field named, instead of producing wrong code.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::versions::Versions;

/// A fixed-size or length-prefixed field type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    Bool,
    Int8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Float64,
    String,
    Bytes,
    Records,
    Uuid,
}

impl Scalar {
    fn parse(name: &str) -> Option<Scalar> {
        Some(match name {
            "bool" => Scalar::Bool,
            "int8" => Scalar::Int8,
            "int16" => Scalar::Int16,
            "uint16" => Scalar::Uint16,
            "int32" => Scalar::Int32,
            "uint32" => Scalar::Uint32,
            "int64" => Scalar::Int64,
            "float64" => Scalar::Float64,
            "string" => Scalar::String,
            "bytes" => Scalar::Bytes,
            "records" => Scalar::Records,
            "uuid" => Scalar::Uuid,
            _ => return None,
        })
    }

    /// Fixed-size types read and written through the runtime's `Primitive` trait.
    pub fn primitive_type(self) -> Option<&'static str> {
        Some(match self {
            Scalar::Bool => "bool",
            Scalar::Int8 => "i8",
            Scalar::Int16 => "i16",
            Scalar::Uint16 => "u16",
            Scalar::Int32 => "i32",
            Scalar::Uint32 => "u32",
            Scalar::Int64 => "i64",
            Scalar::Float64 => "f64",
            Scalar::Uuid => "Uuid",
            Scalar::String | Scalar::Bytes | Scalar::Records => return None,
        })
    }
}

/// The element type of an array field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Element {
    Scalar(Scalar),
    Struct(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldType {
    Scalar(Scalar),
    Struct(String),
    Array(Element),
}

/// A field's tag and the versions in which it is carried in the tagged section.
#[derive(Clone, Copy, Debug)]
pub struct Tagging {
    pub tag: u32,
    pub versions: Versions,
}

#[derive(Clone, Debug)]
pub struct Field {
    pub name: String,
    pub field_type: FieldType,
    pub versions: Versions,
    pub nullable: Versions,
    pub tagging: Option<Tagging>,
    pub ignorable: bool,
    /// The schema's "default" as text ("" when absent, "null", "-1", "0x7fffffff", ...).
    pub default: String,
    pub about: String,
    /// Per-field `flexibleVersions` (strings and bytes only): when compact encoding applies.
    pub flexible_override: Option<Versions>,
}

impl Field {
    /// Versions in which the field is a regular (untagged) field.
    pub fn untagged_versions(&self) -> Versions {
        match self.tagging {
            Some(tagging) => self.versions.before(tagging.versions.lowest),
            None => self.versions,
        }
    }
}

#[derive(Clone, Debug)]
pub struct StructDef {
    pub name: String,
    pub fields: Vec<Field>,
    /// Versions in which this struct can be read or written (its parent fields' versions
    /// within the message's valid versions). Conditions are simplified against it.
    pub context: Versions,
    pub about: String,
}

#[derive(Clone, Debug)]
pub struct Schema {
    pub name: String,
    /// "request", "response", "header", "data", "metadata", ...
    pub kind: String,
    pub api_key: Option<i16>,
    pub valid: Versions,
    pub flexible: Versions,
    pub latest_version_unstable: bool,
    /// The top-level struct first, then nested structs depth first, then common structs.
    pub structs: Vec<StructDef>,
    pub source_file: String,
}

impl Schema {
    pub fn top(&self) -> &StructDef {
        &self.structs[0]
    }
}

/// Removes `//` comments outside string literals.
pub fn strip_comments(text: &str) -> String {
    let mut output = String::with_capacity(text.len());
    let mut characters = text.chars().peekable();
    let mut in_string = false;
    while let Some(character) = characters.next() {
        if in_string {
            output.push(character);
            if character == '\\' {
                if let Some(escaped) = characters.next() {
                    output.push(escaped);
                }
            } else if character == '"' {
                in_string = false;
            }
        } else if character == '"' {
            in_string = true;
            output.push(character);
        } else if character == '/' && characters.peek() == Some(&'/') {
            for skipped in characters.by_ref() {
                if skipped == '\n' {
                    output.push('\n');
                    break;
                }
            }
        } else {
            output.push(character);
        }
    }
    output
}

/// Parses one schema file's text; `source_file` names it in errors and generated docs.
pub fn parse_schema(text: &str, source_file: &str) -> Result<Schema, String> {
    let json: Value = serde_json::from_str(&strip_comments(text))
        .map_err(|error| format!("{source_file}: invalid JSON: {error}"))?;
    let root = json
        .as_object()
        .ok_or_else(|| format!("{source_file}: top level is not an object"))?;
    let context = |message: String| format!("{source_file}: {message}");
    let name = string_property(root, "name").map_err(context)?;
    let valid = versions_property(root, "validVersions").map_err(context)?;
    let flexible = match root.get("flexibleVersions") {
        Some(_) => versions_property(root, "flexibleVersions").map_err(context)?,
        None => Versions::NONE,
    };
    let api_key = match root.get("apiKey") {
        Some(value) => Some(
            value
                .as_i64()
                .and_then(|key| i16::try_from(key).ok())
                .ok_or_else(|| context(format!("apiKey {value} is not an int16")))?,
        ),
        None => None,
    };
    let mut collector = StructCollector::default();
    let top_fields = collector.parse_fields(root, &name).map_err(context)?;
    let mut structs = vec![StructDef {
        name: name.clone(),
        fields: top_fields,
        context: valid,
        about: String::new(),
    }];
    structs.append(&mut collector.nested);
    if let Some(common) = root.get("commonStructs") {
        for spec in common
            .as_array()
            .ok_or_else(|| context("commonStructs is not an array".into()))?
        {
            let spec = spec
                .as_object()
                .ok_or_else(|| context("a common struct is not an object".into()))?;
            let common_name = string_property(spec, "name").map_err(context)?;
            let fields = collector
                .parse_fields(spec, &common_name)
                .map_err(context)?;
            structs.push(StructDef {
                name: common_name,
                fields,
                context: Versions::NONE,
                about: String::new(),
            });
            structs.append(&mut collector.nested);
        }
    }
    let mut schema = Schema {
        name,
        kind: string_property(root, "type").map_err(context)?,
        api_key,
        valid,
        flexible,
        latest_version_unstable: root
            .get("latestVersionUnstable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        structs,
        source_file: source_file.to_owned(),
    };
    check_struct_references(&schema).map_err(context)?;
    compute_contexts(&mut schema);
    Ok(schema)
}

#[derive(Default)]
struct StructCollector {
    nested: Vec<StructDef>,
}

impl StructCollector {
    fn parse_fields(
        &mut self,
        spec: &Map<String, Value>,
        owner: &str,
    ) -> Result<Vec<Field>, String> {
        let Some(fields) = spec.get("fields") else {
            return Ok(Vec::new());
        };
        let fields = fields
            .as_array()
            .ok_or_else(|| format!("{owner}.fields is not an array"))?;
        let mut parsed = Vec::with_capacity(fields.len());
        for field in fields {
            let field = field
                .as_object()
                .ok_or_else(|| format!("a field of {owner} is not an object"))?;
            parsed.push(self.parse_field(field, owner)?);
        }
        Ok(parsed)
    }

    fn parse_field(&mut self, spec: &Map<String, Value>, owner: &str) -> Result<Field, String> {
        let name = string_property(spec, "name")?;
        let label = format!("{owner}.{name}");
        let in_field = |message: String| format!("{label}: {message}");
        let type_name = string_property(spec, "type").map_err(in_field)?;
        let field_type = parse_type(&type_name).map_err(in_field)?;
        let tagging = parse_tagging(spec).map_err(in_field)?;
        let versions = match (spec.get("versions"), tagging) {
            (Some(_), _) => versions_property(spec, "versions").map_err(in_field)?,
            // Kafka: a tagged field without "versions" exists in its tagged versions.
            (None, Some(tagging)) => tagging.versions,
            (None, None) => return Err(in_field("has no versions".into())),
        };
        let nullable = match spec.get("nullableVersions") {
            Some(_) => versions_property(spec, "nullableVersions").map_err(in_field)?,
            None => Versions::NONE,
        };
        let flexible_override = match spec.get("flexibleVersions") {
            Some(_) => Some(versions_property(spec, "flexibleVersions").map_err(in_field)?),
            None => None,
        };
        let field = Field {
            name,
            field_type,
            versions,
            nullable,
            tagging,
            ignorable: spec
                .get("ignorable")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            default: default_text(spec.get("default")),
            about: spec
                .get("about")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            flexible_override,
        };
        check_field(&field).map_err(in_field)?;
        if spec.contains_key("fields") {
            let struct_name = match &field.field_type {
                FieldType::Struct(struct_name) | FieldType::Array(Element::Struct(struct_name)) => {
                    struct_name.clone()
                }
                _ => {
                    return Err(in_field(
                        "has nested fields but is not a struct type".into(),
                    ))
                }
            };
            // Nested structs are listed depth first, each before its own nested structs.
            let position = self.nested.len();
            let fields = self.parse_fields(spec, &struct_name)?;
            self.nested.insert(
                position,
                StructDef {
                    name: struct_name,
                    fields,
                    context: Versions::NONE,
                    about: field.about.clone(),
                },
            );
        }
        Ok(field)
    }
}

fn parse_type(type_name: &str) -> Result<FieldType, String> {
    if let Some(element) = type_name.strip_prefix("[]") {
        return match Scalar::parse(element) {
            Some(Scalar::Records) => Err("arrays of records are not supported".into()),
            Some(scalar) => Ok(FieldType::Array(Element::Scalar(scalar))),
            None => Ok(FieldType::Array(Element::Struct(struct_type_name(
                element,
            )?))),
        };
    }
    match Scalar::parse(type_name) {
        Some(scalar) => Ok(FieldType::Scalar(scalar)),
        None => Ok(FieldType::Struct(struct_type_name(type_name)?)),
    }
}

fn struct_type_name(name: &str) -> Result<String, String> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_uppercase())
        && name
            .chars()
            .all(|character| character.is_ascii_alphanumeric());
    if valid {
        Ok(name.to_owned())
    } else {
        Err(format!("unknown type '{name}'"))
    }
}

fn parse_tagging(spec: &Map<String, Value>) -> Result<Option<Tagging>, String> {
    let Some(tag) = spec.get("tag") else {
        if spec.contains_key("taggedVersions") {
            return Err("has taggedVersions but no tag".into());
        }
        return Ok(None);
    };
    // Some schemas write the tag as a string ("0").
    let tag = match tag {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.parse::<u64>().ok(),
        _ => None,
    }
    .and_then(|tag| u32::try_from(tag).ok())
    .ok_or_else(|| format!("tag {tag} is not a non-negative integer"))?;
    let versions = versions_property(spec, "taggedVersions")?;
    if versions.is_empty() || versions.highest != i16::MAX {
        return Err(format!("taggedVersions {versions} must be open-ended"));
    }
    Ok(Some(Tagging { tag, versions }))
}

fn check_field(field: &Field) -> Result<(), String> {
    if let Some(tagging) = field.tagging {
        if tagging.versions.intersect(field.versions) != tagging.versions {
            return Err(format!(
                "taggedVersions {} is not within versions {}",
                tagging.versions, field.versions
            ));
        }
        let nullable_tagged = field.nullable.intersect(tagging.versions);
        if !nullable_tagged.is_empty() && nullable_tagged != tagging.versions {
            return Err("must be nullable in all or none of its tagged versions".into());
        }
    }
    if field.flexible_override.is_some()
        && !matches!(
            field.field_type,
            FieldType::Scalar(Scalar::String | Scalar::Bytes)
        )
    {
        return Err("only string and bytes fields may override flexibleVersions".into());
    }
    let nullable_type =
        !matches!(field.field_type, FieldType::Scalar(scalar) if scalar.primitive_type().is_some());
    if !field.nullable.is_empty() && !nullable_type {
        return Err(format!("type {:?} cannot be nullable", field.field_type));
    }
    Ok(())
}

fn check_struct_references(schema: &Schema) -> Result<(), String> {
    let mut defined = BTreeMap::new();
    for definition in &schema.structs {
        if defined.insert(definition.name.as_str(), ()).is_some() {
            return Err(format!("struct {} is defined twice", definition.name));
        }
    }
    for definition in &schema.structs {
        for field in &definition.fields {
            if let Some(target) = struct_reference(&field.field_type) {
                if !defined.contains_key(target) {
                    return Err(format!(
                        "{}.{} refers to undefined struct {target}",
                        definition.name, field.name
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The struct a field's type refers to, if any.
pub fn struct_reference(field_type: &FieldType) -> Option<&str> {
    match field_type {
        FieldType::Struct(name) | FieldType::Array(Element::Struct(name)) => Some(name),
        _ => None,
    }
}

/// Propagates reachable versions from the top-level struct down to every nested and
/// common struct, until nothing changes (common structs may nest each other).
fn compute_contexts(schema: &mut Schema) {
    let mut contexts: BTreeMap<String, Versions> = BTreeMap::new();
    contexts.insert(schema.structs[0].name.clone(), schema.valid);
    let mut changed = true;
    while changed {
        changed = false;
        for definition in &schema.structs {
            let parent = contexts
                .get(&definition.name)
                .copied()
                .unwrap_or(Versions::NONE);
            if parent.is_empty() {
                continue;
            }
            for field in &definition.fields {
                let Some(target) = struct_reference(&field.field_type) else {
                    continue;
                };
                let reachable = field.versions.intersect(parent);
                let current = contexts.get(target).copied().unwrap_or(Versions::NONE);
                let widened = current.hull(reachable);
                if widened != current {
                    contexts.insert(target.to_owned(), widened);
                    changed = true;
                }
            }
        }
    }
    for definition in &mut schema.structs {
        // An unreachable struct still gets code; treat it as valid in every version.
        definition.context = contexts
            .get(&definition.name)
            .copied()
            .filter(|context| !context.is_empty())
            .unwrap_or(schema.valid);
    }
}

fn string_property(spec: &Map<String, Value>, key: &str) -> Result<String, String> {
    spec.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("missing string property \"{key}\""))
}

fn versions_property(spec: &Map<String, Value>, key: &str) -> Result<Versions, String> {
    Versions::parse(&string_property(spec, key)?).map_err(|error| format!("{key}: {error}"))
}

fn default_text(value: Option<&Value>) -> String {
    match value {
        None => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) => "null".to_owned(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_comments_but_not_slashes_in_strings() {
        let text =
            "{ \"about\": \"see https://kafka.apache.org\", // trailing\n \"a\": \"x\\\"//y\" }";
        let stripped = strip_comments(text);
        assert!(stripped.contains("https://kafka.apache.org"));
        assert!(stripped.contains("x\\\"//y"));
        assert!(!stripped.contains("trailing"));
    }

    #[test]
    fn parses_nested_tagged_and_common_structs() {
        let text = r#"{
          "apiKey": 99, "type": "response", "name": "ExampleResponse",
          "validVersions": "0-3", "flexibleVersions": "2+",
          "fields": [
            { "name": "Topics", "type": "[]Topic", "versions": "1+", "fields": [
              { "name": "Name", "type": "string", "versions": "1+" },
              { "name": "Leader", "type": "LeaderInfo", "versions": "3+" }
            ]},
            { "name": "Extra", "type": "int64", "taggedVersions": "2+", "tag": "1", "default": -1 }
          ],
          "commonStructs": [
            { "name": "LeaderInfo", "versions": "0+", "fields": [
              { "name": "Id", "type": "int32", "versions": "0+" } ] }
          ]
        }"#;
        let schema = parse_schema(text, "Example.json").expect("valid schema");
        let names: Vec<&str> = schema
            .structs
            .iter()
            .map(|definition| definition.name.as_str())
            .collect();
        assert_eq!(names, ["ExampleResponse", "Topic", "LeaderInfo"]);
        assert_eq!(
            schema.structs[1].context,
            Versions {
                lowest: 1,
                highest: 3
            }
        );
        assert_eq!(
            schema.structs[2].context,
            Versions {
                lowest: 3,
                highest: 3
            }
        );
        let extra = &schema.top().fields[1];
        assert_eq!(
            extra.versions,
            Versions {
                lowest: 2,
                highest: i16::MAX
            }
        );
        assert_eq!(extra.tagging.map(|tagging| tagging.tag), Some(1));
        assert_eq!(extra.default, "-1");
    }

    #[test]
    fn rejects_undefined_struct_references() {
        let text = r#"{ "type": "data", "name": "Broken", "validVersions": "0",
          "fields": [ { "name": "X", "type": "Missing", "versions": "0+" } ] }"#;
        let error = parse_schema(text, "Broken.json").expect_err("undefined struct");
        assert!(error.contains("Missing"), "{error}");
    }
}
