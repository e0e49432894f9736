//! The Parquet (Arrow) schema of an event: the fields people filter on as flat columns,
//! plus the whole event as Tetragon JSON.
//!
//! | column | type | from |
//! | --- | --- | --- |
//! | `time` | timestamp(ns, UTC) | `time` |
//! | `event_type` | string, not null | top-level key: `process_exec`, `process_exit`, `process_kprobe`, ... |
//! | `node_name` | string | `node_name` |
//! | `policy_name` | string | `policy_name` of kprobe/tracepoint events |
//! | `action` | string | `action` of kprobe/tracepoint events (`POST`, `SIGKILL`, ...) |
//! | `function_name` | string | kprobe `function_name`, or tracepoint `subsys/event` |
//! | `exec_id` | string | `process.exec_id` |
//! | `binary` | string | `process.binary` |
//! | `arguments` | string | `process.arguments` |
//! | `parent_exec_id` | string | `process.parent_exec_id`, else `parent.exec_id` |
//! | `parent_binary` | string | `parent.binary` |
//! | `namespace` | string | `process.pod.namespace` |
//! | `pod` | string | `process.pod.name` |
//! | `container` | string | `process.pod.container.name` |
//! | `container_id` | string | `process.pod.container.id` |
//! | `pid` | uint32 | `process.pid` |
//! | `uid` | uint32 | `process.uid` |
//! | `event` | string (JSON), not null | the whole event, one Tetragon export line |
//!
//! Every column but `event_type` and `event` is nullable: null when the event lacks it.
use std::sync::{Arc, LazyLock};

use arrow_array::{
    builder::{StringBuilder, TimestampNanosecondBuilder, UInt32Builder},
    ArrayRef, RecordBatch,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use pipeline::Event;

/// The string columns between `event_type` and `event`, in schema order.
const TEXT_COLUMNS: [&str; 13] = [
    "node_name",
    "policy_name",
    "action",
    "function_name",
    "exec_id",
    "binary",
    "arguments",
    "parent_exec_id",
    "parent_binary",
    "namespace",
    "pod",
    "container",
    "container_id",
];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), true),
        Field::new("event_type", DataType::Utf8, false),
    ];
    fields.extend(TEXT_COLUMNS.iter().map(|n| Field::new(*n, DataType::Utf8, true)));
    fields.push(Field::new("pid", DataType::UInt32, true));
    fields.push(Field::new("uid", DataType::UInt32, true));
    fields.push(Field::new("event", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
});

/// The schema every file of the dataset has.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The flat values of one event, in `TEXT_COLUMNS` order.
fn text_values(e: &Event) -> [Option<String>; 13] {
    let p = e.process();
    let parent = e.parent();
    let pod = p.and_then(|p| p.pod.as_ref());
    let container = pod.and_then(|pod| pod.container.as_ref());
    // Every policy kind (kprobe, tracepoint, LSM, uprobe, USDT) the same way.
    let hook = e.hook();
    let (policy, action, function) = match &hook {
        Some(h) => {
            (h.policy_name.map(str::to_owned), h.action.map(str::to_owned), h.function.as_ref().map(|f| f.to_string()))
        }
        None => (None, None, None),
    };
    [
        e.node_name.clone(),
        policy,
        action,
        function,
        p.and_then(|p| p.exec_id.clone()),
        p.and_then(|p| p.binary.clone()),
        p.and_then(|p| p.arguments.clone()),
        p.and_then(|p| p.parent_exec_id.clone()).or_else(|| parent.and_then(|q| q.exec_id.clone())),
        parent.and_then(|q| q.binary.clone()),
        pod.and_then(|pod| pod.namespace.clone()),
        pod.and_then(|pod| pod.name.clone()),
        container.and_then(|c| c.name.clone()),
        container.and_then(|c| c.id.clone()),
    ]
}

/// Builds one record batch from events (all go in, in order).
pub fn to_record_batch<'a>(events: impl ExactSizeIterator<Item = &'a Event>) -> Result<RecordBatch, ArrowError> {
    let n = events.len();
    let mut time = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut event_type = StringBuilder::with_capacity(n, n * 14);
    let mut text: Vec<StringBuilder> = TEXT_COLUMNS.iter().map(|_| StringBuilder::with_capacity(n, n * 16)).collect();
    let mut pid = UInt32Builder::with_capacity(n);
    let mut uid = UInt32Builder::with_capacity(n);
    let mut json = StringBuilder::with_capacity(n, n * 1024);
    for e in events {
        time.append_option(e.time.and_then(|t| i64::try_from(t.unix_nanos()).ok()));
        event_type.append_value(e.kind.key());
        for (b, v) in text.iter_mut().zip(text_values(e)) {
            b.append_option(v);
        }
        pid.append_option(e.process().and_then(|p| p.pid));
        uid.append_option(e.process().and_then(|p| p.uid));
        json.append_value(e.to_json());
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(time.finish()), Arc::new(event_type.finish())];
    columns.extend(text.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(pid.finish()));
    columns.push(Arc::new(uid.finish()));
    columns.push(Arc::new(json.finish()));
    RecordBatch::try_new(schema(), columns)
}
