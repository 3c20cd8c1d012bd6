//! TensorBoard's event files: the protocol buffer messages TensorBoard reads (`Event`,
//! `Summary`, `HistogramProto`, `SessionLog`, and the hparams plugin's data), derived with prost
//! from the fields of tensorboard's `.proto` files, written as TFRecords (length, masked CRC-32C
//! of the length, data, masked CRC-32C of the data).

use prost::Message;
use std::io::Write;

/// `tensorboard.Event`.
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5, 7")]
    pub what: Option<What>,
}

/// `Event.what`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

/// `tensorboard.SessionLog`; `status` 1 is `START`: readers drop the events of a step at or
/// after this one written before it (data orphaned by a restart).
#[derive(Clone, PartialEq, Message)]
pub struct SessionLog {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// `SessionLog.START`.
pub const SESSION_START: i32 = 1;

/// `tensorboard.Summary`.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

/// `Summary.Value`.
#[derive(Clone, PartialEq, Message)]
pub struct Value {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
    #[prost(oneof = "Kind", tags = "2, 5")]
    pub kind: Option<Kind>,
}

/// `Summary.Value.value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "5")]
    Histo(HistogramProto),
}

/// `tensorboard.SummaryMetadata` (the plugin data only).
#[derive(Clone, PartialEq, Message)]
pub struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
}

/// `SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, Message)]
pub struct PluginData {
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// `tensorboard.HistogramProto`: bucket `i` counts the values up to `bucket_limit[i]` (and
/// above the previous limit).
#[derive(Clone, PartialEq, Message)]
pub struct HistogramProto {
    #[prost(double, tag = "1")]
    pub min: f64,
    #[prost(double, tag = "2")]
    pub max: f64,
    #[prost(double, tag = "3")]
    pub num: f64,
    #[prost(double, tag = "4")]
    pub sum: f64,
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    #[prost(double, repeated, tag = "6")]
    pub bucket_limit: Vec<f64>,
    #[prost(double, repeated, tag = "7")]
    pub bucket: Vec<f64>,
}

/// The hparams plugin's `HParamsPluginData` (version 0).
#[derive(Clone, PartialEq, Message)]
pub struct HParamsPluginData {
    #[prost(int32, tag = "1")]
    pub version: i32,
    #[prost(oneof = "HParamsData", tags = "2, 3, 4")]
    pub data: Option<HParamsData>,
}

/// `HParamsPluginData.data`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HParamsData {
    #[prost(message, tag = "2")]
    Experiment(Experiment),
    #[prost(message, tag = "3")]
    SessionStartInfo(SessionStartInfo),
    #[prost(message, tag = "4")]
    SessionEndInfo(SessionEndInfo),
}

/// `hparams.Experiment`: which hyper-parameters and metrics the table shows.
#[derive(Clone, PartialEq, Message)]
pub struct Experiment {
    #[prost(double, tag = "3")]
    pub time_created_secs: f64,
    #[prost(message, repeated, tag = "4")]
    pub hparam_infos: Vec<HParamInfo>,
    #[prost(message, repeated, tag = "5")]
    pub metric_infos: Vec<MetricInfo>,
}

/// `hparams.HParamInfo` (`type`: 1 string, 2 bool, 3 float64).
#[derive(Clone, PartialEq, Message)]
pub struct HParamInfo {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "4")]
    pub r#type: i32,
}

/// `hparams.MetricInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct MetricInfo {
    #[prost(message, optional, tag = "1")]
    pub name: Option<MetricName>,
}

/// `hparams.MetricName`: the scalar tag the metric's values are read from.
#[derive(Clone, PartialEq, Message)]
pub struct MetricName {
    #[prost(string, tag = "1")]
    pub group: String,
    #[prost(string, tag = "2")]
    pub tag: String,
}

/// `hparams.SessionStartInfo`: this run's hyper-parameter values.
#[derive(Clone, PartialEq, Message)]
pub struct SessionStartInfo {
    #[prost(btree_map = "string, message", tag = "1")]
    pub hparams: std::collections::BTreeMap<String, ProtoValue>,
    #[prost(double, tag = "5")]
    pub start_time_secs: f64,
}

/// `hparams.SessionEndInfo` (`status`: 1 success, 2 failure).
#[derive(Clone, PartialEq, Message)]
pub struct SessionEndInfo {
    #[prost(int32, tag = "1")]
    pub status: i32,
    #[prost(double, tag = "2")]
    pub end_time_secs: f64,
}

/// `google.protobuf.Value`, for the kinds a hyper-parameter takes.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoValue {
    #[prost(oneof = "ProtoKind", tags = "2, 3, 4")]
    pub kind: Option<ProtoKind>,
}

/// `google.protobuf.Value.kind`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ProtoKind {
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(string, tag = "3")]
    Text(String),
    #[prost(bool, tag = "4")]
    Bool(bool),
}

/// TFRecord's masked CRC-32C.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// `event` as one TFRecord.
pub fn record(event: &Event) -> Vec<u8> {
    let data = event.encode_to_vec();
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc(&length).to_le_bytes());
    out.extend_from_slice(&data);
    out.extend_from_slice(&masked_crc(&data).to_le_bytes());
    out
}

/// An event file being appended to: events are buffered and reach the file at each `flush`.
pub struct EventFile {
    file: std::fs::File,
    path: std::path::PathBuf,
    pending: Vec<u8>,
}

/// Seconds since the Unix epoch, as events carry them.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl EventFile {
    /// Creates a new event file in `dir` (made if missing), named as TensorBoard finds it
    /// (`events.out.tfevents.<seconds>.<host>.<pid>.<n>`), starting with the file-version event.
    pub fn create(dir: &std::path::Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty() && !h.contains('/'));
        let host = host.unwrap_or_else(|| "localhost".into());
        let wall = now();
        let mut n = 0;
        let (file, path) = loop {
            let path = dir.join(format!("events.out.tfevents.{}.{host}.{}.{n}", wall as u64, std::process::id()));
            match std::fs::OpenOptions::new().append(true).create_new(true).open(&path) {
                Ok(f) => break (f, path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(e),
            }
        };
        let mut out = EventFile { file, path, pending: Vec::new() };
        out.push(&Event { wall_time: wall, step: 0, what: Some(What::FileVersion("brain.Event:2".into())) });
        out.flush()?;
        Ok(out)
    }

    /// The file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Buffers `event`.
    pub fn push(&mut self, event: &Event) {
        self.pending.extend(record(event));
    }

    /// Writes the buffered events to the file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.write_all(&self.pending)?;
        self.file.flush()?;
        self.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_framing_checks_its_length_and_data_with_masked_crc32c() {
        // The masked CRC-32C of an empty string, as TFRecord writers compute it.
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        let event = Event { wall_time: 1.5, step: 3, what: Some(What::FileVersion("brain.Event:2".into())) };
        let r = record(&event);
        let n = u64::from_le_bytes(r[..8].try_into().unwrap()) as usize;
        assert_eq!(r.len(), 8 + 4 + n + 4);
        assert_eq!(u32::from_le_bytes(r[8..12].try_into().unwrap()), masked_crc(&r[..8]));
        assert_eq!(Event::decode(&r[12..12 + n]).unwrap(), event);
        assert_eq!(u32::from_le_bytes(r[12 + n..].try_into().unwrap()), masked_crc(&r[12..12 + n]));
    }
}
