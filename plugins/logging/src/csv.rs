//! History as CSV (pure functions).

use serde_json::{Map, Value};

/// One cell: empty for a missing value; text quoted (quotes doubled) when it holds the
/// separator, a quote or a line break.
fn cell(v: Option<&Value>, sep: char) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => torchfit_sdk::io::csv_field(s, sep),
        Some(v) => torchfit_sdk::io::csv_field(&v.to_string(), sep),
    }
}

/// Every key of `records` but `skip`, in the order first recorded.
fn columns<'a>(records: impl IntoIterator<Item = &'a Map<String, Value>>, skip: &str) -> Vec<&'a str> {
    let mut columns: Vec<&str> = Vec::new();
    for r in records {
        for k in r.keys() {
            if k != skip && !columns.contains(&k.as_str()) {
                columns.push(k);
            }
        }
    }
    columns
}

/// One row per epoch; columns are every key in the order first recorded (`batches` excluded).
pub fn epochs(records: &[Map<String, Value>], sep: char) -> String {
    let columns = columns(records, "batches");
    let mut out = columns.join(&sep.to_string()) + "\n";
    for r in records {
        out += &columns.iter().map(|c| cell(r.get(*c), sep)).collect::<Vec<_>>().join(&sep.to_string());
        out.push('\n');
    }
    out
}

/// One row per batch, for the batch records of each epoch (`per_epoch[e]`, in batch order):
/// `epoch`, `phase` (`valid` for a record with `valid_batch_size`, else `train`), `batch` (its
/// index in its phase), then every batch key in the order first recorded.
pub fn batches(per_epoch: &[Vec<Map<String, Value>>], sep: char) -> String {
    let columns = columns(per_epoch.iter().flatten(), "");
    let s = sep.to_string();
    let header = ["epoch", "phase", "batch"].into_iter().chain(columns.iter().copied());
    let mut out = header.collect::<Vec<_>>().join(&s) + "\n";
    for (e, records) in per_epoch.iter().enumerate() {
        let mut seen = [0usize; 2];
        for r in records {
            let valid = r.contains_key("valid_batch_size");
            let phase = if valid { "valid" } else { "train" };
            let index = &mut seen[valid as usize];
            let lead = [(e + 1).to_string(), phase.to_owned(), index.to_string()];
            *index += 1;
            let cells = lead.into_iter().chain(columns.iter().map(|c| cell(r.get(*c), sep)));
            out += &cells.collect::<Vec<_>>().join(&s);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn columns_follow_recording_order_and_missing_values_are_empty() {
        let r1 = record(json!({"epoch": 1, "train_loss": 0.5, "batches": []}));
        let r2 = record(json!({"epoch": 2, "train_loss": 0.25, "event_cp": true}));
        assert_eq!(epochs(&[r1, r2], ','), "epoch,train_loss,event_cp\n1,0.5,\n2,0.25,true\n");
    }

    #[test]
    fn a_value_holding_the_separator_is_quoted() {
        let r = record(json!({"epoch": 1, "note": "a;b", "other": "c,d"}));
        assert_eq!(epochs(std::slice::from_ref(&r), ';'), "epoch;note;other\n1;\"a;b\";c,d\n");
        assert_eq!(epochs(&[r], ','), "epoch,note,other\n1,a;b,\"c,d\"\n");
    }

    #[test]
    fn batch_rows_name_their_phase_and_carry_every_batch_key() {
        let epoch = vec![
            record(json!({"train_batch_size": 32, "lr": 0.1, "train_loss": 0.5})),
            record(json!({"train_batch_size": 8, "lr": 0.05, "grad_norm": 2.0, "train_loss": 0.25})),
            record(json!({"valid_batch_size": 40, "valid_loss": 0.3})),
        ];
        assert_eq!(
            batches(&[epoch], ','),
            "epoch,phase,batch,train_batch_size,lr,train_loss,grad_norm,valid_batch_size,valid_loss\n\
             1,train,0,32,0.1,0.5,,,\n\
             1,train,1,8,0.05,0.25,2.0,,\n\
             1,valid,0,,,,,40,0.3\n"
        );
    }
}
