//! A timeline of VUMA's `tracing` spans in Chrome trace format (open the file in
//! <https://ui.perfetto.dev> or `chrome://tracing`): allocation and residency (`acquire`),
//! transfers (`upload`, `download`), `evict`, `launch` and `process_workload`, one track per
//! thread, so the overlap of copies and compute can be seen.
//!
//! Every span becomes a complete event (`"ph":"X"`) from its first entry to its close, with
//! its fields as `args`; events become instant events (`"ph":"i"`). The file is written by
//! [`ChromeTrace::write`] (the `vuma` CLI does so for `--trace FILE`).
//!
//! ```
//! use tracing_subscriber::prelude::*;
//! use vuma::trace::ChromeTrace;
//!
//! let trace = ChromeTrace::new();
//! let subscriber = tracing_subscriber::registry().with(trace.layer());
//! tracing::subscriber::with_default(subscriber, || {
//!     let _s = tracing::debug_span!("upload", bytes = 4096u64).entered();
//! });
//! let json = trace.to_json();
//! assert!(json.contains("\"name\":\"upload\"") && json.contains("\"bytes\":4096"));
//! ```

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::{json, Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Collects spans and events; cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct ChromeTrace {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    events: Mutex<Vec<Value>>,
    threads: Mutex<Vec<(u64, String)>>,
}

/// The [`Layer`] that feeds a [`ChromeTrace`].
#[derive(Debug, Clone)]
pub struct ChromeLayer {
    inner: Arc<Inner>,
}

/// Per-span data kept in the registry's extensions.
struct SpanData {
    args: Map<String, Value>,
    start_us: Option<f64>,
    tid: u64,
}

struct ArgVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for ArgVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), json!(format!("{value:?}")));
    }
}

static NEXT_TID: AtomicU64 = AtomicU64::new(1);
thread_local! {
    static TID: Cell<u64> = const { Cell::new(0) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn now_us(&self) -> f64 {
        self.start.elapsed().as_nanos() as f64 / 1000.0
    }

    /// A small, stable id of the current thread; names it in the trace on first use.
    fn tid(&self) -> u64 {
        TID.with(|t| {
            if t.get() == 0 {
                let id = NEXT_TID.fetch_add(1, Ordering::Relaxed);
                t.set(id);
                let cur = std::thread::current();
                let name = cur
                    .name()
                    .map_or_else(|| format!("thread {id}"), String::from);
                lock(&self.threads).push((id, name));
            }
            t.get()
        })
    }
}

impl Default for ChromeTrace {
    fn default() -> Self {
        Self::new()
    }
}

impl ChromeTrace {
    /// An empty trace; time 0 is now.
    pub fn new() -> Self {
        ChromeTrace {
            inner: Arc::new(Inner {
                start: Instant::now(),
                events: Mutex::new(Vec::new()),
                threads: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The layer to add to a `tracing_subscriber` registry.
    pub fn layer(&self) -> ChromeLayer {
        ChromeLayer {
            inner: self.inner.clone(),
        }
    }

    /// Events recorded so far (spans that have closed, and events).
    pub fn len(&self) -> usize {
        lock(&self.inner.events).len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The trace as Chrome trace JSON (`{"traceEvents": [...]}`).
    pub fn to_json(&self) -> String {
        let mut events: Vec<Value> = vec![json!({
            "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
            "args": {"name": "vuma"}
        })];
        for (tid, name) in lock(&self.inner.threads).iter() {
            events.push(json!({
                "name": "thread_name", "ph": "M", "pid": 1, "tid": tid,
                "args": {"name": name}
            }));
        }
        events.extend(lock(&self.inner.events).iter().cloned());
        let doc = json!({"traceEvents": events, "displayTimeUnit": "ms"});
        serde_json::to_string(&doc).unwrap_or_else(|_| "{\"traceEvents\":[]}".into())
    }

    /// Writes the trace to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_json() + "\n")
    }

    /// Writes the trace to `out` (e.g. a file opened before the work started, so that a bad
    /// path is an error up front rather than after the run).
    pub fn write_to(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(self.to_json().as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()
    }
}

impl<S> Layer<S> for ChromeLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut args = Map::new();
        attrs.record(&mut ArgVisitor(&mut args));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanData {
                args,
                start_us: None,
                tid: self.inner.tid(),
            });
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(d) = span.extensions_mut().get_mut::<SpanData>() {
                values.record(&mut ArgVisitor(&mut d.args));
            }
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(d) = span.extensions_mut().get_mut::<SpanData>() {
                if d.start_us.is_none() {
                    d.start_us = Some(self.inner.now_us());
                    d.tid = self.inner.tid();
                }
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let end = self.inner.now_us();
        let Some(d) = span.extensions_mut().remove::<SpanData>() else {
            return;
        };
        // A span never entered is drawn as an instant at its close.
        let start = d.start_us.unwrap_or(end);
        let meta = span.metadata();
        let ev = json!({
            "name": meta.name(),
            "cat": meta.target(),
            "ph": "X",
            "ts": start,
            "dur": (end - start).max(0.0),
            "pid": 1,
            "tid": d.tid,
            "args": Value::Object(d.args),
        });
        lock(&self.inner.events).push(ev);
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut args = Map::new();
        event.record(&mut ArgVisitor(&mut args));
        let meta = event.metadata();
        let name = match args.get("message") {
            Some(Value::String(m)) => m.clone(),
            _ => meta.name().to_string(),
        };
        args.insert("level".into(), json!(meta.level().as_str()));
        let ev = json!({
            "name": name,
            "cat": meta.target(),
            "ph": "i",
            "s": "t",
            "ts": self.inner.now_us(),
            "pid": 1,
            "tid": self.inner.tid(),
            "args": Value::Object(args),
        });
        lock(&self.inner.events).push(ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    #[test]
    fn nested_spans_become_complete_events_with_args() {
        let trace = ChromeTrace::new();
        let sub = tracing_subscriber::registry().with(trace.layer());
        tracing::subscriber::with_default(sub, || {
            let outer = tracing::info_span!("process_workload", id = "w1").entered();
            {
                let _a = tracing::debug_span!("acquire", buffer = 7u64, device = 1u64).entered();
                tracing::debug!(bytes = 10u64, "moved");
            }
            drop(outer);
            // Spans that never close are not in the trace; spans created on other threads
            // are on their own track.
            let d = tracing::dispatcher::get_default(|d| d.clone());
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&d, || {
                    let _l = tracing::debug_span!("launch", device = "cpu").entered();
                })
            })
            .join()
            .unwrap();
        });
        let v: Value = serde_json::from_str(&trace.to_json()).unwrap();
        let evs = v["traceEvents"].as_array().unwrap();
        let find = |n: &str| evs.iter().find(|e| e["name"] == n).cloned().unwrap();
        let (p, a, l) = (find("process_workload"), find("acquire"), find("launch"));
        assert_eq!(a["ph"], "X");
        assert_eq!(a["args"]["buffer"], 7);
        assert_eq!(p["args"]["id"], "w1");
        let ts = |e: &Value| e["ts"].as_f64().unwrap();
        let end = |e: &Value| ts(e) + e["dur"].as_f64().unwrap();
        assert!(ts(&p) <= ts(&a) && end(&a) <= end(&p), "nesting kept");
        assert_ne!(l["tid"], a["tid"], "one track per thread");
        let m = find("moved");
        assert_eq!(m["ph"], "i");
        assert_eq!(m["args"]["bytes"], 10);
        assert!(evs.iter().any(|e| e["name"] == "thread_name"));
        assert_eq!(trace.len(), 4);
    }
}
