//! History values, whose numbers may be non-finite: a loss that diverged is NaN, and
//! the history must say so rather than drop the value.
//!
//! `serde_json::Value` holds no NaN or infinity, so in memory a non-finite number is the string
//! `"NaN"`, `"Infinity"` or `"-Infinity"` ([`number`]); [`as_number`] reads either form. On disk
//! they are written as Python's `json.dump` writes them, as the bare tokens `NaN`, `Infinity` and
//! `-Infinity` ([`to_text`]), so that `json.load` and skorch read a torchfit history, and
//! [`from_text`] reads them back.

use serde_json::Value;

const TOKENS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];

/// `x` as a history value: a JSON number, or its token string when it is not finite.
pub fn number(x: f64) -> Value {
    match serde_json::Number::from_f64(x) {
        Some(n) => Value::Number(n),
        None if x.is_nan() => Value::String("NaN".into()),
        None if x > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// The number a history value holds: a JSON number, or a non-finite number's token string.
pub fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        other => other.as_f64(),
    }
}

/// `v` as JSON text, non-finite numbers as the bare tokens Python writes.
pub fn to_text(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::String(s) if TOKENS.contains(&s.as_str()) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write(item, out);
            }
            out.push('}');
        }
        leaf => out.push_str(&leaf.to_string()),
    }
}

/// Parses JSON text that may hold the bare tokens `NaN`, `Infinity` and `-Infinity` (outside
/// strings), as Python's `json.load` does.
pub fn from_text(text: &str) -> serde_json::Result<Value> {
    let bytes = text.as_bytes();
    if !TOKENS.iter().any(|t| text.contains(t)) {
        return serde_json::from_str(text);
    }
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let (mut i, mut in_string, mut escaped) = (0, false, false);
    'scan: while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if c == b'"' {
            in_string = true;
        } else {
            for token in TOKENS {
                if bytes[i..].starts_with(token.as_bytes()) {
                    out.push(b'"');
                    out.extend_from_slice(token.as_bytes());
                    out.push(b'"');
                    i += token.len();
                    continue 'scan;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    serde_json::from_slice(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_numbers_round_trip_as_pythons_tokens() {
        let v = serde_json::json!({"a": [number(f64::NAN), number(f64::INFINITY), number(f64::NEG_INFINITY), number(0.5)], "s": "NaN in a string: \"NaN\""});
        let text = to_text(&v);
        assert_eq!(text, r#"{"a":[NaN,Infinity,-Infinity,0.5],"s":"NaN in a string: \"NaN\""}"#);
        let back = from_text(&text).unwrap();
        assert_eq!(back, v);
        let numbers: Vec<f64> = back["a"].as_array().unwrap().iter().map(|v| as_number(v).unwrap()).collect();
        assert!(numbers[0].is_nan() && numbers[1] == f64::INFINITY && numbers[2] == f64::NEG_INFINITY);
        assert_eq!(numbers[3], 0.5);
        assert_eq!(as_number(&Value::String("nan".into())), None, "only Python's tokens");
    }

    #[test]
    fn text_without_tokens_parses_as_plain_json() {
        assert_eq!(from_text(r#"[1, "x"]"#).unwrap(), serde_json::json!([1, "x"]));
        assert!(from_text("[1,").is_err());
    }
}
