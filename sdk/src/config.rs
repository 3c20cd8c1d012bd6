//! Typed component configuration from JSON, with errors that name the offending key.

use crate::{Error, Result};
use serde::de::DeserializeOwned;

/// Deserializes a component's config (the keys of its config section, as JSON) into `T`.
///
/// Use `#[serde(deny_unknown_fields)]` and `#[serde(default)]` on `T` so that misspelt keys are
/// refused and omitted keys take their defaults. The error's `key` is the path of the value at
/// fault (`hidden[1]`), so the engine can report `module.hidden[1]`.
pub fn parse_config<T: DeserializeOwned>(config: &serde_json::Value) -> Result<T> {
    serde_path_to_error::deserialize(config).map_err(|e| {
        let key = e.path().to_string();
        Error::Config { key: if key == "." { String::new() } else { key }, message: e.into_inner().to_string() }
    })
}

/// Deserializes a string or a list of strings as a list (`patterns = "*.bias"` or
/// `patterns = ["l1.*", "*.bias"]`); use with `#[serde(deserialize_with = "one_or_many")]`.
pub fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match <OneOrMany as serde::Deserialize>::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Mlp {
        hidden: Vec<usize>,
        #[serde(default)]
        dropout: f64,
    }

    #[test]
    fn a_wrong_type_names_the_nested_key() {
        let err = parse_config::<Mlp>(&serde_json::json!({"hidden": [3, "x"]})).unwrap_err();
        match err {
            Error::Config { key, .. } => assert_eq!(key, "hidden[1]"),
            other => panic!("unexpected {other}"),
        }
    }

    #[derive(Debug, Deserialize)]
    struct Patterns {
        #[serde(deserialize_with = "one_or_many")]
        p: Vec<String>,
    }

    #[test]
    fn one_pattern_or_a_list_gives_a_list() {
        assert_eq!(parse_config::<Patterns>(&serde_json::json!({"p": "a.*"})).unwrap().p, ["a.*"]);
        assert_eq!(parse_config::<Patterns>(&serde_json::json!({"p": ["a", "b"]})).unwrap().p, ["a", "b"]);
        assert!(parse_config::<Patterns>(&serde_json::json!({"p": 3})).is_err());
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let err = parse_config::<Mlp>(&serde_json::json!({"hidden": [3], "dropuot": 0.1})).unwrap_err();
        assert!(err.to_string().contains("dropuot"), "{err}");
    }
}
