//! Training history with skorch's semantics and JSON shape.
//!
//! A history is a list of epochs; each epoch is a map of keys (`epoch`, `dur`, `train_loss`, ...)
//! plus a `batches` list of maps (`train_loss`, `train_batch_size`, `valid_loss`, ...). On disk it
//! is exactly that list as JSON, so `skorch.history.History.from_file` reads it. A non-finite
//! number (a diverged loss) is kept: in memory as its token string, on disk as Python writes it
//! (`NaN`, `Infinity`, `-Infinity`; see [`torchfit_sdk::values`]).

use crate::Error;
use serde_json::{Map, Value};
use std::path::Path;
use torchfit_sdk::values::as_number;

const BATCHES: &str = "batches";

/// The record of a run, epoch by epoch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    epochs: Vec<Map<String, Value>>,
}

fn resolve(len: usize, index: isize) -> Option<usize> {
    let i = if index < 0 { len as isize + index } else { index };
    (0..len as isize).contains(&i).then_some(i as usize)
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of epochs recorded.
    pub fn len(&self) -> usize {
        self.epochs.len()
    }

    /// Whether no epoch has been recorded.
    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }

    /// Opens a new epoch (with an empty `batches` list).
    pub fn new_epoch(&mut self) {
        let mut epoch = Map::new();
        epoch.insert(BATCHES.into(), Value::Array(Vec::new()));
        self.epochs.push(epoch);
    }

    /// Opens a new batch in the current epoch; returns its index in the epoch's `batches`.
    pub fn new_batch(&mut self) -> Result<usize, Error> {
        let batches = self.batches_mut(-1)?;
        batches.push(Value::Object(Map::new()));
        Ok(batches.len() - 1)
    }

    /// Records `key = value` in the current epoch.
    pub fn record(&mut self, key: &str, value: impl Into<Value>) -> Result<(), Error> {
        if key == BATCHES {
            return Err(Error::History("`batches` is reserved".into()));
        }
        let epoch = self
            .epochs
            .last_mut()
            .ok_or_else(|| Error::History(format!("cannot record `{key}` before the first epoch")))?;
        epoch.insert(key.to_owned(), value.into());
        Ok(())
    }

    /// Records `key = value` in the current (last) batch of the current epoch.
    pub fn record_batch(&mut self, key: &str, value: impl Into<Value>) -> Result<(), Error> {
        let last = self.batches_mut(-1)?.len().checked_sub(1);
        let i =
            last.ok_or_else(|| Error::History(format!("cannot record batch key `{key}` before the first batch")))?;
        self.record_batch_at(-1, i, key, value)
    }

    /// Records `key = value` in batch `batch` of epoch `epoch`.
    pub fn record_batch_at(
        &mut self,
        epoch: isize,
        batch: usize,
        key: &str,
        value: impl Into<Value>,
    ) -> Result<(), Error> {
        let batches = self.batches_mut(epoch)?;
        let record = batches
            .get_mut(batch)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| Error::History(format!("no batch {batch}")))?;
        record.insert(key.to_owned(), value.into());
        Ok(())
    }

    fn batches_mut(&mut self, epoch: isize) -> Result<&mut Vec<Value>, Error> {
        let len = self.epochs.len();
        let i = resolve(len, epoch).ok_or_else(|| Error::History(format!("no epoch {epoch} in a history of {len}")))?;
        match self.epochs[i].get_mut(BATCHES) {
            Some(Value::Array(b)) => Ok(b),
            _ => Err(Error::History(format!("epoch {} has no `batches` list", i + 1))),
        }
    }

    /// The value of `key` in epoch `epoch` (Python-style index: `-1` is the last epoch).
    pub fn get(&self, epoch: isize, key: &str) -> Option<&Value> {
        self.epochs.get(resolve(self.len(), epoch)?)?.get(key)
    }

    /// `key` in the last epoch.
    pub fn last(&self, key: &str) -> Option<&Value> {
        self.get(-1, key)
    }

    /// `key` in the last epoch as a number.
    pub fn last_f64(&self, key: &str) -> Option<f64> {
        self.last(key).and_then(as_number)
    }

    /// `key` across all epochs (`None` where an epoch lacks it).
    pub fn column(&self, key: &str) -> Vec<Option<&Value>> {
        self.epochs.iter().map(|e| e.get(key)).collect()
    }

    /// `key` across all epochs as numbers (non-finite ones included), skipping epochs that lack
    /// it.
    pub fn column_f64(&self, key: &str) -> Vec<f64> {
        self.epochs.iter().filter_map(|e| e.get(key).and_then(as_number)).collect()
    }

    /// The keys of epoch `epoch` without its batches.
    pub fn epoch(&self, epoch: isize) -> Option<Map<String, Value>> {
        let mut map = self.epochs.get(resolve(self.len(), epoch)?)?.clone();
        map.shift_remove(BATCHES);
        Some(map)
    }

    /// The value of `key` in batch `batch` of epoch `epoch`, both indexed as epochs are.
    pub fn batch_value(&self, epoch: isize, batch: isize, key: &str) -> Option<&Value> {
        let batches = self.batches(epoch);
        batches.get(resolve(batches.len(), batch)?)?.get(key)
    }

    /// The batch records of epoch `epoch`.
    pub fn batches(&self, epoch: isize) -> &[Value] {
        match self.get(epoch, BATCHES) {
            Some(Value::Array(b)) => b,
            _ => &[],
        }
    }

    /// The values of `key` in the batches of epoch `epoch` that recorded it.
    pub fn batch_values(&self, epoch: isize, key: &str) -> Vec<&Value> {
        self.batches(epoch).iter().filter_map(|b| b.get(key)).collect()
    }

    /// The history as skorch's JSON list.
    pub fn to_json(&self) -> Value {
        Value::Array(self.epochs.iter().cloned().map(Value::Object).collect())
    }

    /// A history from skorch's JSON list; every epoch must be an object with a `batches` list.
    pub fn from_json(value: Value) -> Result<Self, Error> {
        let Value::Array(items) = value else {
            return Err(Error::History("a history is a JSON list of epochs".into()));
        };
        let epochs = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(m) if matches!(m.get(BATCHES), Some(Value::Array(_))) => Ok(m),
                _ => Err(Error::History(format!("epoch {} is not an object with a `batches` list", i + 1))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { epochs })
    }

    /// Writes the history as JSON to `path` atomically (temporary file, then rename), non-finite
    /// numbers as Python's `NaN`, `Infinity` and `-Infinity` ([`torchfit_sdk::values`]).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        crate::fsutil::write_atomic(path, torchfit_sdk::values::to_text(&self.to_json()).as_bytes())
    }

    /// Reads a history written by [`History::save`] (or by skorch).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value =
            torchfit_sdk::values::from_text(&text).map_err(|e| Error::History(format!("{}: {e}", path.display())))?;
        Self::from_json(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn two_epochs() -> History {
        let mut h = History::new();
        for (e, loss) in [(1, 0.9), (2, 0.5)] {
            h.new_epoch();
            h.record("epoch", e).unwrap();
            for b in 0..3 {
                h.new_batch().unwrap();
                h.record_batch("train_loss", loss + b as f64).unwrap();
                h.record_batch("train_batch_size", 32).unwrap();
            }
            h.record("train_loss", loss).unwrap();
        }
        h
    }

    #[test]
    fn negative_indices_count_from_the_last_epoch() {
        let h = two_epochs();
        assert_eq!(h.last_f64("train_loss"), Some(0.5));
        assert_eq!(h.get(0, "train_loss"), Some(&json!(0.9)));
        assert_eq!(h.get(-2, "epoch"), Some(&json!(1)));
        assert_eq!(h.get(2, "epoch"), None);
        assert_eq!(h.get(-3, "epoch"), None);
    }

    #[test]
    fn columns_and_batch_values_read_across_the_record() {
        let h = two_epochs();
        assert_eq!(h.column_f64("train_loss"), vec![0.9, 0.5]);
        assert_eq!(h.batch_values(-1, "train_loss"), vec![&json!(0.5), &json!(1.5), &json!(2.5)]);
        assert!(h.epoch(-1).unwrap().get("batches").is_none());
    }

    #[test]
    fn an_epoch_without_its_batches_keeps_the_recording_order() {
        let h = two_epochs();
        let keys: Vec<String> = h.epoch(-1).unwrap().keys().cloned().collect();
        assert_eq!(keys, ["epoch", "train_loss"]);
    }

    #[test]
    fn json_round_trips_in_skorchs_shape() {
        let h = two_epochs();
        let json = h.to_json();
        assert!(json[0]["batches"].is_array());
        assert_eq!(json[1]["batches"][2]["train_batch_size"], json!(32));
        assert_eq!(History::from_json(json).unwrap(), h);
    }

    #[test]
    fn save_and_load_round_trip_through_a_file() {
        let dir = std::env::temp_dir().join(format!("torchfit-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.json");
        let h = two_epochs();
        h.save(&path).unwrap();
        assert_eq!(History::load(&path).unwrap(), h);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn floats_survive_a_save_and_load_bit_for_bit() {
        // Values whose shortest form needs 17 digits: a parser that is not correctly rounded
        // (serde_json without `float_roundtrip`) returns a neighbour.
        let values = [2.0547373294830322_f64, 1.6883448821565379, 0.21694011986255646, 0.1 + 0.2];
        let mut h = History::new();
        h.new_epoch();
        for (i, v) in values.iter().enumerate() {
            h.record(&format!("k{i}"), *v).unwrap();
        }
        let back =
            History::from_json(serde_json::from_str(&serde_json::to_string(&h.to_json()).unwrap()).unwrap()).unwrap();
        for (i, v) in values.iter().enumerate() {
            assert_eq!(back.get(-1, &format!("k{i}")).unwrap().as_f64().unwrap().to_bits(), v.to_bits());
        }
    }

    #[test]
    fn non_finite_losses_survive_a_save_and_load() {
        let dir = std::env::temp_dir().join(format!("torchfit-history-nan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut h = History::new();
        h.new_epoch();
        h.new_batch().unwrap();
        h.record_batch("train_loss", torchfit_sdk::values::number(f64::NAN)).unwrap();
        h.record("train_loss", torchfit_sdk::values::number(f64::INFINITY)).unwrap();
        h.save(&dir.join("h.json")).unwrap();
        let text = std::fs::read_to_string(dir.join("h.json")).unwrap();
        assert!(text.contains(":NaN") && text.contains(":Infinity"), "{text}");
        let back = History::load(&dir.join("h.json")).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.last_f64("train_loss"), Some(f64::INFINITY));
        assert!(torchfit_sdk::values::as_number(back.batch_values(-1, "train_loss")[0]).unwrap().is_nan());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn recording_before_an_epoch_is_an_error() {
        let mut h = History::new();
        assert!(h.record("x", 1).is_err());
        h.new_epoch();
        assert!(h.record_batch("x", 1).is_err(), "no batch opened yet");
        assert!(h.record("batches", 1).is_err());
    }

    #[test]
    fn a_malformed_history_file_is_refused() {
        assert!(History::from_json(json!({"epoch": 1})).is_err());
        assert!(History::from_json(json!([{"epoch": 1}])).is_err());
    }
}
