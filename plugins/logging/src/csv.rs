//! History as CSV (pure functions).

use serde_json::{Map, Value};

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.contains([',', '"', '\n']) => format!("\"{}\"", s.replace('"', "\"\"")),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// One row per epoch; columns are every key in the order first recorded (`batches` excluded).
pub fn epochs(records: &[Map<String, Value>]) -> String {
    let mut columns: Vec<&str> = Vec::new();
    for r in records {
        for k in r.keys() {
            if k != "batches" && !columns.contains(&k.as_str()) {
                columns.push(k);
            }
        }
    }
    let mut out = columns.join(",") + "\n";
    for r in records {
        out += &columns.iter().map(|c| cell(r.get(*c))).collect::<Vec<_>>().join(",");
        out.push('\n');
    }
    out
}

/// The batch values of one epoch, by key.
pub struct BatchColumns {
    /// `train_loss` of each training batch.
    pub train_loss: Vec<Value>,
    /// `train_batch_size` of each training batch.
    pub train_size: Vec<Value>,
    /// `valid_loss` of each validation batch.
    pub valid_loss: Vec<Value>,
    /// `valid_batch_size` of each validation batch.
    pub valid_size: Vec<Value>,
}

/// One row per batch: `epoch,phase,batch,loss,batch_size`.
pub fn batches(per_epoch: &[BatchColumns]) -> String {
    let mut out = String::from("epoch,phase,batch,loss,batch_size\n");
    for (e, cols) in per_epoch.iter().enumerate() {
        for (phase, losses, sizes) in
            [("train", &cols.train_loss, &cols.train_size), ("valid", &cols.valid_loss, &cols.valid_size)]
        {
            for (i, loss) in losses.iter().enumerate() {
                out += &format!("{},{phase},{i},{},{}\n", e + 1, cell(Some(loss)), cell(sizes.get(i)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_follow_recording_order_and_missing_values_are_empty() {
        let r1 = json!({"epoch": 1, "train_loss": 0.5, "batches": []}).as_object().unwrap().clone();
        let r2 = json!({"epoch": 2, "train_loss": 0.25, "event_cp": true}).as_object().unwrap().clone();
        assert_eq!(epochs(&[r1, r2]), "epoch,train_loss,event_cp\n1,0.5,\n2,0.25,true\n");
    }

    #[test]
    fn batch_rows_name_their_phase() {
        let c = BatchColumns {
            train_loss: vec![json!(0.5), json!(0.25)],
            train_size: vec![json!(32), json!(8)],
            valid_loss: vec![json!(0.3)],
            valid_size: vec![json!(40)],
        };
        assert_eq!(
            batches(&[c]),
            "epoch,phase,batch,loss,batch_size\n1,train,0,0.5,32\n1,train,1,0.25,8\n1,valid,0,0.3,40\n"
        );
    }
}
