//! Issue 10.4: what one cached ref costs in memory, counted by the allocator. A ref with the
//! status the operator writes for a running run is decoded the way the watch decodes it (into
//! `CachedRef`: trimmed, spec and status packed) and held 2 000 times; the heap bytes still allocated per
//! ref are printed (beside the full object's) and bounded, so a field that bloats the cache
//! fails here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use sparkjobrun_operator::crd::{SparkJobRunRef, SparkJobRunRefSpec};
use sparkjobrun_operator::kit::simulator::{RunScript, job_run_at};
use sparkjobrun_operator::mapping::{PollOutcome, StatusContext, next_status};
use sparkjobrun_operator::reconcile::cache::CachedRef;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A ref as the API server sends it: managed fields of two writers, GitOps labels and the
/// last-applied annotation, and the status of a running run.
fn served() -> Vec<u8> {
    let mut obj = SparkJobRunRef::new(
        "nightly-etl-20261203",
        SparkJobRunRefSpec {
            workspace_id: "w-d2d82aa09151abcd".into(),
            job_run_id: "jr-93d98d2f7061abcd".into(),
            region_id: Some("cn-hangzhou".into()),
            ..SparkJobRunRefSpec::default()
        },
    );
    let now = jiff::Timestamp::from_second(1_800_000_000).expect("ts");
    let run = job_run_at(
        &RunScript::new("w-d2d82aa09151abcd", "jr-93d98d2f7061abcd").holding("Running"),
        now,
        now,
    );
    obj.status = Some(next_status(
        None,
        PollOutcome::Run(&run),
        StatusContext {
            generation: Some(1),
            workspace_id: "w-d2d82aa09151abcd",
            job_run_id: "jr-93d98d2f7061abcd",
            region_id: Some("cn-hangzhou"),
        },
        &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
    ));
    let mut value = serde_json::to_value(&obj).expect("encodes");
    let last_applied = serde_json::to_string(&obj.spec).expect("spec");
    value["metadata"]["namespace"] = "data-team".into();
    value["metadata"]["uid"] = "7f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b".into();
    value["metadata"]["resourceVersion"] = "123456789".into();
    value["metadata"]["generation"] = 1.into();
    value["metadata"]["creationTimestamp"] = "2026-12-03T01:00:00Z".into();
    value["metadata"]["labels"] = serde_json::json!({
        "app.kubernetes.io/instance": "nightly-pipelines",
        "argocd.argoproj.io/instance": "data-team"
    });
    value["metadata"]["annotations"] = serde_json::json!({
        "kubectl.kubernetes.io/last-applied-configuration": last_applied
    });
    let field = |manager: &str, op: &str, sub: Option<&str>| {
        let mut f = serde_json::json!({
            "manager": manager, "operation": op, "apiVersion": "emrspark.io/v1alpha1",
            "time": "2026-12-03T01:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:workspaceId": {}, "f:jobRunId": {}, "f:regionId": {}},
                          "f:status": {"f:state": {}, "f:log": {"f:driverStdOut": {}, "f:driverStdError": {}},
                                       "f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}}}}}
        });
        if let Some(s) = sub {
            f["subresource"] = s.into();
        }
        f
    };
    value["metadata"]["managedFields"] = serde_json::json!([
        field("kubectl-client-side-apply", "Update", None),
        field("sparkjobrun-operator", "Apply", Some("status"))
    ]);
    serde_json::to_vec(&value).expect("bytes")
}

/// Heap bytes per value still held after decoding `bytes` `count` times into `T`.
fn held_bytes_per_ref<T: serde::de::DeserializeOwned>(bytes: &[u8], count: usize) -> f64 {
    let before = LIVE.load(Ordering::Relaxed);
    let mut held: Vec<Arc<T>> = Vec::with_capacity(count);
    let vec_bytes = LIVE.load(Ordering::Relaxed) - before;
    for _ in 0..count {
        held.push(Arc::new(serde_json::from_slice(bytes).expect("decodes")));
    }
    let used = LIVE.load(Ordering::Relaxed) - before - vec_bytes;
    drop(held);
    used as f64 / count as f64
}

#[test]
fn a_cached_ref_costs_what_the_operator_reads() {
    let bytes = served();
    let full = held_bytes_per_ref::<SparkJobRunRef>(&bytes, 2000);
    let cached = held_bytes_per_ref::<CachedRef>(&bytes, 2000);
    let sample: CachedRef = serde_json::from_slice(&bytes).expect("decodes");
    println!(
        "cached ref: {} bytes of JSON as served; heap {full:.0} bytes as SparkJobRunRef, {cached:.0} bytes as CachedRef (spec and status packed into {} bytes); 10 000 refs: {:.1} MiB",
        bytes.len(),
        sample.packed_len().unwrap_or_default(),
        cached * 10_000.0 / 1024.0 / 1024.0
    );
    assert!(
        cached < full * 0.2,
        "the cache saves little: {cached} of {full}"
    );
    assert!(cached < 1_200.0, "{cached} heap bytes per cached ref");
}
