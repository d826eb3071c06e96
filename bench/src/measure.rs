//! Counting and timing: latency histograms (HdrHistogram, so p99.9 is exact to three digits),
//! errors by kind, and a per-second timeline for the chart.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are kept in microseconds, from 1 µs to 10 minutes.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| unreachable!())
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, 600_000_000)
}

fn millis(micros: u64) -> f64 {
    // Latencies here fit f64 exactly; the cast is the unit change.
    #[allow(clippy::cast_precision_loss)]
    let ms = micros as f64 / 1000.0;
    ms
}

/// A latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_ms: millis(h.value_at_quantile(0.50)),
            p99_ms: millis(h.value_at_quantile(0.99)),
            p999_ms: millis(h.value_at_quantile(0.999)),
            max_ms: millis(h.max()),
        }
    }
}

/// One second of a run: how many calls succeeded and how fast.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    /// Seconds since the recorder started.
    pub at: u64,
    pub ok: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug)]
struct Inner {
    all: Histogram<u64>,
    seconds: Vec<(Histogram<u64>, u64)>,
    errors: BTreeMap<String, u64>,
}

/// What a phase records from many tasks at once.
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    inner: Mutex<Inner>,
    waited_micros: AtomicU64,
}

/// What a recorder saw.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub seconds: f64,
    /// Successful calls per second over the whole recording.
    pub per_second: f64,
    pub latency: Summary,
    pub timeline: Vec<Second>,
    /// Seconds the answers spent waiting for their quiz's next question (the answers before it
    /// coming back, then the host's start), summed. In a closed loop, time in which a slot had
    /// no answer to send. The latencies include these waits.
    #[serde(skip_serializing_if = "is_zero")]
    pub waited_seconds: f64,
}

fn is_zero(seconds: &f64) -> bool {
    *seconds == 0.0
}

impl Recorded {
    /// The share of `slots` × the run's length spent waiting for a next question.
    pub fn waiting_share(&self, slots: usize) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let capacity = slots as f64 * self.seconds;
        if capacity <= 0.0 {
            return 0.0;
        }
        self.waited_seconds / capacity
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self::starting_at(Instant::now())
    }

    /// A recorder whose timeline starts at `started`: for outcomes recorded afterwards.
    pub fn starting_at(started: Instant) -> Self {
        Self {
            started,
            inner: Mutex::new(Inner {
                all: histogram(),
                seconds: Vec::new(),
                errors: BTreeMap::new(),
            }),
            waited_micros: AtomicU64::new(0),
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A poisoned lock only means another task panicked mid-record; the counts stand.
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut inner)
    }

    fn second(inner: &mut Inner, index: usize) -> &mut (Histogram<u64>, u64) {
        while inner.seconds.len() <= index {
            inner.seconds.push((histogram(), 0));
        }
        &mut inner.seconds[index]
    }

    fn index(&self, at: Instant) -> usize {
        usize::try_from(at.saturating_duration_since(self.started).as_secs()).unwrap_or(0)
    }

    /// A success that took `latency`, finished at `at`.
    pub fn ok(&self, latency: Duration, at: Instant) {
        let index = self.index(at);
        let value = micros(latency);
        self.with(|inner| {
            let _ = inner.all.record(value);
            let _ = Self::second(inner, index).0.record(value);
        });
    }

    /// A failure of `kind` (a problem `code`, a status, or a transport error).
    pub fn error(&self, kind: &str, at: Instant) {
        let index = self.index(at);
        self.with(|inner| {
            *inner.errors.entry(kind.to_owned()).or_default() += 1;
            Self::second(inner, index).1 += 1;
        });
    }

    /// A slot of a closed loop waited this long for a quiz's next question.
    pub fn waited(&self, waited: Duration) {
        let waited = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        let _ = self.waited_micros.fetch_add(waited, Ordering::Relaxed);
    }

    /// The latency distribution so far, without the rest.
    pub fn latency(&self) -> Summary {
        self.with(|inner| Summary::of(&inner.all))
    }

    pub fn finish(&self) -> Recorded {
        let seconds = self.started.elapsed().as_secs_f64();
        self.with(|inner| {
            let ok = inner.all.len();
            Recorded {
                ok,
                errors: inner.errors.clone(),
                seconds,
                per_second: rate(ok, seconds),
                latency: Summary::of(&inner.all),
                timeline: inner
                    .seconds
                    .iter()
                    .enumerate()
                    .map(|(at, (h, errors))| {
                        let s = Summary::of(h);
                        Second {
                            at: at as u64,
                            ok: s.count,
                            errors: *errors,
                            p50_ms: s.p50_ms,
                            p99_ms: s.p99_ms,
                        }
                    })
                    .collect(),
                waited_seconds: millis(self.waited_micros.load(Ordering::Relaxed)) / 1000.0,
            }
        })
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// `count` per second over `seconds`.
pub fn rate(count: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let count = count as f64;
    count / seconds
}

/// `value / baseline`, or 0 when there is no baseline.
pub fn ratio(value: f64, baseline: f64) -> f64 {
    if baseline > 0.0 {
        value / baseline
    } else {
        0.0
    }
}

/// The sum of every sample of the metric `name` in a Prometheus text exposition, whatever
/// its labels; `None` when it has no sample yet.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let samples: Vec<f64> = text
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_what_was_recorded() {
        let r = Recorder::new();
        let now = r.started();
        for ms in 1..=1000 {
            r.ok(Duration::from_millis(ms), now);
        }
        r.error("quiz_not_found", now);
        r.error("quiz_not_found", now + Duration::from_secs(2));
        let done = r.finish();
        assert_eq!(done.ok, 1000);
        assert_eq!(done.errors.get("quiz_not_found"), Some(&2));
        assert!(
            (done.latency.p50_ms - 500.0).abs() < 1.0,
            "{:?}",
            done.latency
        );
        assert!(
            (done.latency.p99_ms - 990.0).abs() < 1.5,
            "{:?}",
            done.latency
        );
        assert_eq!(done.timeline.len(), 3);
        assert_eq!(done.timeline[0].ok, 1000);
        assert_eq!(done.timeline[2].errors, 1);
    }

    #[test]
    fn waiting_is_a_share_of_the_slots_time() -> serde_json::Result<()> {
        let r = Recorder::new();
        r.waited(Duration::from_millis(1500));
        r.waited(Duration::from_millis(500));
        let mut done = r.finish();
        assert!((done.waited_seconds - 2.0).abs() < 1e-9, "{done:?}");
        // Two slots for ten seconds: 20 slot-seconds, two of them waiting.
        done.seconds = 10.0;
        assert!((done.waiting_share(2) - 0.1).abs() < 1e-9);
        assert!(done.waiting_share(0).abs() < f64::EPSILON);
        // A recording that never waited says nothing about it in the results.
        let quiet = Recorder::new().finish();
        assert!(!serde_json::to_string(&quiet)?.contains("waited"));
        assert!(serde_json::to_string(&done)?.contains("\"waited_seconds\":2.0"));
        Ok(())
    }

    #[test]
    fn ratio_without_a_baseline_is_zero() {
        assert!(ratio(5.0, 0.0).abs() < f64::EPSILON);
        assert!((ratio(3.0, 4.0) - 0.75).abs() < f64::EPSILON);
    }

    #[test]
    fn metric_sum_adds_every_labelled_sample_of_the_name_only() {
        let text =
            "# TYPE lag gauge\nlag{partition=\"0\"} 2\nlag{partition=\"1\"} 3\nlag_total 9\n";
        assert_eq!(metric_sum(text, "lag"), Some(5.0));
        assert_eq!(metric_sum(text, "lag_total"), Some(9.0));
        assert_eq!(metric_sum(text, "la"), None);
    }
}
