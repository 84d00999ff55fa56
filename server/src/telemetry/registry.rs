//! A small in-process metrics registry: counter, gauge and histogram
//! families with fixed label names, rendered in the Prometheus text
//! exposition format 0.0.4.
//!
//! Each family keeps its series in a `BTreeMap` behind a mutex: updates are
//! a short lock and an add, and the output is sorted, so a scrape is stable.
//! Label values come from bounded sets chosen by the code (method names,
//! status codes, states), never from callers, so cardinality stays bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Label values of one series, in the order of the family's label names.
type LabelValues = Vec<String>;

/// What every family shares: its name, help text and label names.
#[derive(Debug)]
struct Descriptor {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

impl Descriptor {
    fn header(&self, out: &mut String, kind: &str) {
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
    }

    fn check(&self, values: &[&str]) -> LabelValues {
        debug_assert_eq!(
            values.len(),
            self.labels.len(),
            "label values of {}",
            self.name
        );
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    /// `{a="x",b="y"}` plus `extra` (the `le` of a histogram bucket).
    fn label_set(&self, values: &[String], extra: Option<(&str, &str)>) -> String {
        let pairs: Vec<String> = self
            .labels
            .iter()
            .zip(values)
            .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
            .chain(extra.map(|(name, value)| format!("{name}=\"{value}\"")))
            .collect();
        if pairs.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", pairs.join(","))
        }
    }
}

/// A monotonically increasing count per label set.
#[derive(Debug)]
pub struct CounterVec {
    descriptor: Descriptor,
    series: Mutex<BTreeMap<LabelValues, u64>>,
}

impl CounterVec {
    /// A family named `name` (ending in `_total`) with `labels`. A family
    /// without labels starts at 0, so `rate()` sees its first increment.
    pub fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        let mut series = BTreeMap::new();
        if labels.is_empty() {
            series.insert(Vec::new(), 0);
        }
        CounterVec {
            descriptor: Descriptor { name, help, labels },
            series: Mutex::new(series),
        }
    }

    /// Adds one to the series of `labels`.
    pub fn inc(&self, labels: &[&str]) {
        let key = self.descriptor.check(labels);
        let mut series = self.series.lock().expect("metrics lock");
        *series.entry(key).or_insert(0) += 1;
    }

    /// Adds `count` to the series of `labels`, creating it at `count`.
    pub fn add(&self, labels: &[&str], count: u64) {
        let key = self.descriptor.check(labels);
        let mut series = self.series.lock().expect("metrics lock");
        *series.entry(key).or_insert(0) += count;
    }

    /// The current value of the series of `labels` (0 when absent).
    pub fn get(&self, labels: &[&str]) -> u64 {
        let key = self.descriptor.check(labels);
        let series = self.series.lock().expect("metrics lock");
        series.get(&key).copied().unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        self.descriptor.header(out, "counter");
        let series = self.series.lock().expect("metrics lock");
        for (values, count) in series.iter() {
            let labels = self.descriptor.label_set(values, None);
            let _ = writeln!(out, "{}{labels} {count}", self.descriptor.name);
        }
    }
}

/// A value that goes up and down, per label set.
#[derive(Debug)]
pub struct GaugeVec {
    descriptor: Descriptor,
    series: Mutex<BTreeMap<LabelValues, f64>>,
}

impl GaugeVec {
    /// A family named `name` with `labels`; one without labels starts at 0.
    pub fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        let mut series = BTreeMap::new();
        if labels.is_empty() {
            series.insert(Vec::new(), 0.0);
        }
        GaugeVec {
            descriptor: Descriptor { name, help, labels },
            series: Mutex::new(series),
        }
    }

    /// Sets the series of `labels` to `value`.
    pub fn set(&self, labels: &[&str], value: f64) {
        let key = self.descriptor.check(labels);
        self.series.lock().expect("metrics lock").insert(key, value);
    }

    /// Adds `delta` (negative to subtract) to the series of `labels`.
    pub fn add(&self, labels: &[&str], delta: f64) {
        let key = self.descriptor.check(labels);
        let mut series = self.series.lock().expect("metrics lock");
        *series.entry(key).or_insert(0.0) += delta;
    }

    /// The current value of the series of `labels`, if it exists.
    pub fn get(&self, labels: &[&str]) -> Option<f64> {
        let key = self.descriptor.check(labels);
        self.series.lock().expect("metrics lock").get(&key).copied()
    }

    fn render(&self, out: &mut String) {
        self.descriptor.header(out, "gauge");
        let series = self.series.lock().expect("metrics lock");
        for (values, value) in series.iter() {
            let labels = self.descriptor.label_set(values, None);
            let _ = writeln!(
                out,
                "{}{labels} {}",
                self.descriptor.name,
                format_float(*value)
            );
        }
    }
}

/// Observations counted into fixed buckets, per label set.
#[derive(Debug)]
pub struct HistogramVec {
    descriptor: Descriptor,
    /// Upper bounds, ascending; `+Inf` is implied.
    bounds: &'static [f64],
    series: Mutex<BTreeMap<LabelValues, Buckets>>,
}

#[derive(Debug, Clone)]
struct Buckets {
    /// Observations per bucket (not cumulative), one more than the bounds:
    /// the last is `+Inf`.
    counts: Vec<u64>,
    sum: f64,
}

impl HistogramVec {
    /// A family named `name` with `labels` and bucket upper `bounds`.
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Self {
        debug_assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]));
        HistogramVec {
            descriptor: Descriptor { name, help, labels },
            bounds,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records `value` in the series of `labels`.
    pub fn observe(&self, labels: &[&str], value: f64) {
        let key = self.descriptor.check(labels);
        let index = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        let mut series = self.series.lock().expect("metrics lock");
        let buckets = series.entry(key).or_insert_with(|| Buckets {
            counts: vec![0; self.bounds.len() + 1],
            sum: 0.0,
        });
        buckets.counts[index] += 1;
        buckets.sum += value;
    }

    /// How many observations the series of `labels` has.
    pub fn count(&self, labels: &[&str]) -> u64 {
        let key = self.descriptor.check(labels);
        let series = self.series.lock().expect("metrics lock");
        series
            .get(&key)
            .map(|buckets| buckets.counts.iter().sum())
            .unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        self.descriptor.header(out, "histogram");
        let name = self.descriptor.name;
        let series = self.series.lock().expect("metrics lock");
        for (values, buckets) in series.iter() {
            let mut cumulative = 0;
            for (index, count) in buckets.counts.iter().enumerate() {
                cumulative += count;
                let bound = self
                    .bounds
                    .get(index)
                    .map_or_else(|| "+Inf".to_owned(), |bound| format_float(*bound));
                let labels = self.descriptor.label_set(values, Some(("le", &bound)));
                let _ = writeln!(out, "{name}_bucket{labels} {cumulative}");
            }
            let labels = self.descriptor.label_set(values, None);
            let _ = writeln!(out, "{name}_sum{labels} {}", format_float(buckets.sum));
            let _ = writeln!(out, "{name}_count{labels} {cumulative}");
        }
    }
}

/// Any family, for rendering a list of them.
#[derive(Debug, Clone, Copy)]
pub enum Family<'a> {
    Counter(&'a CounterVec),
    Gauge(&'a GaugeVec),
    Histogram(&'a HistogramVec),
}

/// The text exposition (format 0.0.4) of `families`, in order.
pub fn render(families: &[Family<'_>]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    for family in families {
        match family {
            Family::Counter(counter) => counter.render(&mut out),
            Family::Gauge(gauge) => gauge.render(&mut out),
            Family::Histogram(histogram) => histogram.render(&mut out),
        }
    }
    out
}

/// A sample value as Prometheus writes it (`+Inf`, `-Inf`, `NaN`).
fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{value}")
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_in_the_text_format() {
        let counter = CounterVec::new("t_calls_total", "Calls.", &["method", "code"]);
        counter.inc(&["Get", "OK"]);
        counter.inc(&["Get", "OK"]);
        counter.inc(&["Get\"x\\", "NOT_FOUND"]);
        let plain = CounterVec::new("t_plain_total", "Plain\nhelp.", &[]);
        let gauge = GaugeVec::new("t_depth", "Depth.", &["state"]);
        gauge.set(&["pending"], 3.0);
        gauge.add(&["pending"], -1.0);
        let histogram = HistogramVec::new("t_seconds", "Time.", &["m"], &[0.1, 1.0]);
        histogram.observe(&["a"], 0.05);
        histogram.observe(&["a"], 0.5);
        histogram.observe(&["a"], 7.0);
        let text = render(&[
            Family::Counter(&counter),
            Family::Counter(&plain),
            Family::Gauge(&gauge),
            Family::Histogram(&histogram),
        ]);
        let expected = "\
# HELP t_calls_total Calls.
# TYPE t_calls_total counter
t_calls_total{method=\"Get\",code=\"OK\"} 2
t_calls_total{method=\"Get\\\"x\\\\\",code=\"NOT_FOUND\"} 1
# HELP t_plain_total Plain\\nhelp.
# TYPE t_plain_total counter
t_plain_total 0
# HELP t_depth Depth.
# TYPE t_depth gauge
t_depth{state=\"pending\"} 2
# HELP t_seconds Time.
# TYPE t_seconds histogram
t_seconds_bucket{m=\"a\",le=\"0.1\"} 1
t_seconds_bucket{m=\"a\",le=\"1\"} 2
t_seconds_bucket{m=\"a\",le=\"+Inf\"} 3
t_seconds_sum{m=\"a\"} 7.55
t_seconds_count{m=\"a\"} 3
";
        assert_eq!(text, expected);
        assert_eq!(counter.get(&["Get", "OK"]), 2);
        assert_eq!(histogram.count(&["a"]), 3);
        assert_eq!(format_float(f64::INFINITY), "+Inf");
    }
}
