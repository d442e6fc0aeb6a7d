//! TensorBoard's hparams plugin: the summaries that let its HPARAMS tab compare runs by their
//! settings. Each run (event-file folder) gets a `_hparams_/session_start_info` value with its
//! settings; one `_hparams_/experiment` value names the settings and the metrics the tab shows
//! as columns. Both are summary values with metadata only (plugin `hparams`, content an
//! `HParamsPluginData` message), as TensorBoard's own `hparams` summary writes them.
//!
//! The messages are written by hand with the field numbers of TensorBoard's
//! `plugins/hparams/api.proto`, `plugin_data.proto` and protobuf's `struct.proto`, only the
//! fields gatekit writes (as for the rest of [`super`]).

use super::proto::{PluginData, SummaryMetadata, Value};
use prost::Message;
use std::collections::BTreeMap;

/// The plugin's name in summary metadata.
pub const PLUGIN_NAME: &str = "hparams";
/// Tag of a run's settings.
pub const SESSION_START_INFO_TAG: &str = "_hparams_/session_start_info";
/// Tag of the experiment (the settings' and metrics' names).
pub const EXPERIMENT_TAG: &str = "_hparams_/experiment";

/// `tensorboard.hparams.HParamsPluginData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamsPluginData {
    /// Always 0.
    #[prost(int32, tag = "1")]
    pub version: i32,
    /// What this summary holds.
    #[prost(oneof = "Data", tags = "2, 3")]
    pub data: Option<Data>,
}

/// The `data` oneof of [`HParamsPluginData`] (session end info is not written).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Data {
    /// The experiment.
    #[prost(message, tag = "2")]
    Experiment(Experiment),
    /// A run's settings.
    #[prost(message, tag = "3")]
    SessionStartInfo(SessionStartInfo),
}

/// `tensorboard.hparams.SessionStartInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionStartInfo {
    /// Setting name to value (sorted, so equal settings give equal bytes).
    #[prost(btree_map = "string, message", tag = "1")]
    pub hparams: BTreeMap<String, PbValue>,
    /// Sessions of one group are averaged in the tab; empty: the session is its own group.
    #[prost(string, tag = "4")]
    pub group_name: String,
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "5")]
    pub start_time_secs: f64,
}

/// `tensorboard.hparams.Experiment`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Experiment {
    /// Shown in the tab.
    #[prost(string, tag = "1")]
    pub description: String,
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "3")]
    pub time_created_secs: f64,
    /// The settings.
    #[prost(message, repeated, tag = "4")]
    pub hparam_infos: Vec<HParamInfo>,
    /// The metrics.
    #[prost(message, repeated, tag = "5")]
    pub metric_infos: Vec<MetricInfo>,
}

/// `tensorboard.hparams.HParamInfo` (without a domain: the tab derives the values it shows).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamInfo {
    /// The key in [`SessionStartInfo::hparams`].
    #[prost(string, tag = "1")]
    pub name: String,
    /// What it is.
    #[prost(string, tag = "3")]
    pub description: String,
    /// [`DATA_TYPE_STRING`], [`DATA_TYPE_BOOL`] or [`DATA_TYPE_FLOAT64`].
    #[prost(int32, tag = "4")]
    pub r#type: i32,
}

/// `tensorboard.hparams.DataType.DATA_TYPE_STRING`.
pub const DATA_TYPE_STRING: i32 = 1;
/// `DATA_TYPE_BOOL`.
pub const DATA_TYPE_BOOL: i32 = 2;
/// `DATA_TYPE_FLOAT64`.
pub const DATA_TYPE_FLOAT64: i32 = 3;

/// `tensorboard.hparams.MetricInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricInfo {
    /// Which scalar series.
    #[prost(message, optional, tag = "1")]
    pub name: Option<MetricName>,
    /// Column title.
    #[prost(string, tag = "3")]
    pub display_name: String,
    /// What it is.
    #[prost(string, tag = "4")]
    pub description: String,
}

/// `tensorboard.hparams.MetricName`: a scalar tag in the session's run (`group` empty) or in
/// the sub-run `group` of it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricName {
    /// Sub-run of the session's run; empty for the run itself.
    #[prost(string, tag = "1")]
    pub group: String,
    /// Scalar tag.
    #[prost(string, tag = "2")]
    pub tag: String,
}

/// `google.protobuf.Value`, the kinds gatekit writes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbValue {
    /// The value.
    #[prost(oneof = "Kind", tags = "2, 3, 4")]
    pub kind: Option<Kind>,
}

/// The `kind` oneof of [`PbValue`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    /// A number.
    #[prost(double, tag = "2")]
    NumberValue(f64),
    /// A string.
    #[prost(string, tag = "3")]
    StringValue(String),
    /// A boolean.
    #[prost(bool, tag = "4")]
    BoolValue(bool),
}

impl PbValue {
    /// A number.
    pub fn number(v: f64) -> Self {
        PbValue {
            kind: Some(Kind::NumberValue(v)),
        }
    }

    /// A string.
    pub fn string(v: impl Into<String>) -> Self {
        PbValue {
            kind: Some(Kind::StringValue(v.into())),
        }
    }

    /// A boolean.
    pub fn bool(v: bool) -> Self {
        PbValue {
            kind: Some(Kind::BoolValue(v)),
        }
    }

    /// The hparams data type of this value.
    pub fn data_type(&self) -> i32 {
        match self.kind {
            Some(Kind::NumberValue(_)) => DATA_TYPE_FLOAT64,
            Some(Kind::BoolValue(_)) => DATA_TYPE_BOOL,
            _ => DATA_TYPE_STRING,
        }
    }
}

/// A summary value carrying `data` for the hparams plugin under `tag`.
fn plugin_value(tag: &str, data: Data) -> Value {
    let content = HParamsPluginData {
        version: 0,
        data: Some(data),
    }
    .encode_to_vec();
    Value {
        tag: tag.into(),
        simple_value: None,
        histo: None,
        metadata: Some(SummaryMetadata {
            plugin_data: Some(PluginData {
                plugin_name: PLUGIN_NAME.into(),
                content,
            }),
        }),
    }
}

/// A run's settings, as the value to write into its event file.
pub fn session_start_info(hparams: BTreeMap<String, PbValue>, start_time_secs: f64) -> Value {
    plugin_value(
        SESSION_START_INFO_TAG,
        Data::SessionStartInfo(SessionStartInfo {
            hparams,
            group_name: String::new(),
            start_time_secs,
        }),
    )
}

/// The experiment, as the value to write into the event file at the log folder's root.
pub fn experiment(experiment: Experiment) -> Value {
    plugin_value(EXPERIMENT_TAG, Data::Experiment(experiment))
}

/// The [`HParamsPluginData`] of a value written by [`session_start_info`] or [`experiment`];
/// `None` for any other value.
pub fn decode(value: &Value) -> Option<HParamsPluginData> {
    let data = value.metadata.as_ref()?.plugin_data.as_ref()?;
    if data.plugin_name != PLUGIN_NAME {
        return None;
    }
    HParamsPluginData::decode(data.content.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_start_info_round_trips() {
        let mut h = BTreeMap::new();
        h.insert("strategy".to_string(), PbValue::string("gated"));
        h.insert("lr".to_string(), PbValue::number(0.003));
        h.insert("eval_at_start".to_string(), PbValue::bool(true));
        let v = session_start_info(h.clone(), 12.5);
        assert_eq!(v.tag, SESSION_START_INFO_TAG);
        let back = Value::decode(v.encode_to_vec().as_slice()).expect("decodes");
        match decode(&back).and_then(|d| d.data) {
            Some(Data::SessionStartInfo(s)) => {
                assert_eq!(s.hparams, h);
                assert_eq!(s.start_time_secs, 12.5);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(PbValue::number(1.0).data_type(), DATA_TYPE_FLOAT64);
        assert_eq!(PbValue::string("x").data_type(), DATA_TYPE_STRING);
        assert_eq!(PbValue::bool(false).data_type(), DATA_TYPE_BOOL);
    }
}
