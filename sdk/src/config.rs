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

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let err = parse_config::<Mlp>(&serde_json::json!({"hidden": [3], "dropuot": 0.1})).unwrap_err();
        assert!(err.to_string().contains("dropuot"), "{err}");
    }
}
