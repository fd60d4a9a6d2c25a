//! The watch cache's copy of a ref. Thousands of refs stay cached for the life of the process,
//! and most of what one costs is its status (conditions, log paths, job driver: about 4 KB of
//! structs for a running run). So the cache keeps spec and status deflated against a dictionary
//! of their own vocabulary (about 250 bytes for that run) and a reconcile unpacks them, in
//! microseconds. Metadata the reconciler never reads is dropped as the object is decoded.

use std::borrow::Cow;
use std::sync::LazyLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Resource;
use serde::{Deserialize, Deserializer, Serialize};

use crate::crd::{SparkJobRunRef, SparkJobRunRefSpec, SparkJobRunRefStatus};
use crate::mapping::{PollOutcome, StatusContext, next_status};
use crate::state::StateClass;
use crate::wire;

/// What the reconciler never reads: dropped before objects enter the cache, so memory grows
/// with what the operator needs per ref, not with what GitOps tools and kubectl attach to it.
/// Kept: name, namespace, uid, resourceVersion, generation, deletionTimestamp, finalizers and
/// the operator's own annotations.
pub fn trim(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.labels = None;
    meta.owner_references = None;
    meta.creation_timestamp = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| k.starts_with("emrspark.io/"));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// A `SparkJobRunRef` as the watch cache holds it. The watch decodes straight into it (see the
/// `Deserialize` impl), so a full copy of each object only lives while one page of a list or one
/// watch event is being read. Metadata stays as it is (kube-runtime reads it); spec and status
/// are packed together.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedRef {
    pub metadata: ObjectMeta,
    body: Body,
}

/// What is packed: everything but the metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Contents {
    spec: SparkJobRunRefSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<SparkJobRunRefStatus>,
}

/// Spec and status, packed when packing gives back exactly what went in; otherwise kept as they
/// came (a value serde_json cannot reproduce bit for bit, say), so unpacking never fails.
#[derive(Clone, PartialEq)]
enum Body {
    Packed {
        bytes: Box<[u8]>,
        class: Option<StateClass>,
    },
    Plain(Box<Contents>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Packed { bytes, class } => f
                .debug_struct("Packed")
                .field("bytes", &bytes.len())
                .field("class", class)
                .finish(),
            Self::Plain(c) => c.fmt(f),
        }
    }
}

impl CachedRef {
    pub fn new(obj: SparkJobRunRef) -> Self {
        let SparkJobRunRef {
            mut metadata,
            spec,
            status,
        } = obj;
        trim(&mut metadata);
        Self {
            metadata,
            body: store(Contents { spec, status }),
        }
    }

    /// `None` only if unpacking failed, which [`store`] rules out by trying it first.
    fn contents(&self) -> Option<Contents> {
        match &self.body {
            Body::Packed { bytes, .. } => unpack(bytes),
            Body::Plain(c) => Some((**c).clone()),
        }
    }

    /// The class of the stored state, without unpacking.
    pub fn state_class(&self) -> Option<StateClass> {
        match &self.body {
            Body::Packed { class, .. } => *class,
            Body::Plain(c) => c.status.as_ref()?.state.as_deref().map(StateClass::of),
        }
    }

    /// The object the reconciler works on: trimmed metadata, spec and status.
    pub fn to_object(&self) -> Option<SparkJobRunRef> {
        let Contents { spec, status } = self.contents()?;
        Some(SparkJobRunRef {
            metadata: self.metadata.clone(),
            spec,
            status,
        })
    }

    /// Bytes spec and status take packed (`None` when they are kept unpacked).
    pub fn packed_len(&self) -> Option<usize> {
        match &self.body {
            Body::Packed { bytes, .. } => Some(bytes.len()),
            Body::Plain(_) => None,
        }
    }
}

impl From<SparkJobRunRef> for CachedRef {
    fn from(obj: SparkJobRunRef) -> Self {
        Self::new(obj)
    }
}

impl<'de> Deserialize<'de> for CachedRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        SparkJobRunRef::deserialize(deserializer).map(Self::new)
    }
}

impl Resource for CachedRef {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        SparkJobRunRef::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        SparkJobRunRef::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        SparkJobRunRef::version(dt)
    }

    fn api_version(dt: &()) -> Cow<'_, str> {
        SparkJobRunRef::api_version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        SparkJobRunRef::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

fn store(contents: Contents) -> Body {
    match pack(&contents) {
        Some(bytes) if unpack(&bytes).as_ref() == Some(&contents) => Body::Packed {
            bytes,
            class: contents
                .status
                .as_ref()
                .and_then(|s| s.state.as_deref())
                .map(StateClass::of),
        },
        _ => Body::Plain(Box::new(contents)),
    }
}

/// Raw deflate of the contents' JSON, primed with [`DICTIONARY`].
fn pack(contents: &Contents) -> Option<Box<[u8]>> {
    let json = serde_json::to_vec(contents).ok()?;
    let mut deflate = Compress::new(Compression::default(), false);
    deflate.set_dictionary(&DICTIONARY).ok()?;
    // Deflate can grow incompressible input a little; this bound is generous.
    let mut out = Vec::with_capacity(json.len() + json.len() / 8 + 64);
    match deflate.compress_vec(&json, &mut out, FlushCompress::Finish) {
        Ok(Status::StreamEnd) => Some(out.into_boxed_slice()),
        _ => None,
    }
}

fn unpack(bytes: &[u8]) -> Option<Contents> {
    let mut inflate = Decompress::new(false);
    inflate.set_dictionary(&DICTIONARY).ok()?;
    // Statuses are bounded (mapping::limits::STATUS_BYTES); grow in steps until the end.
    let mut json = Vec::with_capacity(bytes.len() * 16 + 1024);
    loop {
        let consumed = usize::try_from(inflate.total_in()).ok()?;
        match inflate.decompress_vec(bytes.get(consumed..)?, &mut json, FlushDecompress::Finish) {
            Ok(Status::StreamEnd) => break,
            Ok(_) if json.len() == json.capacity() => json.reserve(json.capacity()),
            _ => return None,
        }
        if json.len() > 4 * crate::mapping::limits::STATUS_BYTES {
            return None;
        }
    }
    serde_json::from_slice(&json).ok()
}

/// Typical specs and statuses as the operator writes them (a failed, an ended and a running run),
/// so the packer finds field names, condition texts and log paths it has seen before. Deflate looks
/// back at most 32 KiB and prefers near matches: the most common shape comes last.
static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let ctx = StatusContext {
        generation: Some(1),
        workspace_id: "w-0123456789abcdef",
        job_run_id: "jr-0123456789abcdef",
        region_id: Some("cn-hangzhou"),
    };
    let at = Time(jiff::Timestamp::UNIX_EPOCH);
    let spec = SparkJobRunRefSpec {
        workspace_id: ctx.workspace_id.into(),
        job_run_id: ctx.job_run_id.into(),
        region_id: ctx.region_id.map(str::to_owned),
        endpoint: Some("https://emr-serverless-spark-vpc.cn-hangzhou.aliyuncs.com".into()),
        poll_interval: Some("30s".into()),
        ..SparkJobRunRefSpec::default()
    };
    let mut text = Vec::new();
    for state in ["Failed", "Success", "Running"] {
        let run = typical_run(state);
        let contents = Contents {
            spec: spec.clone(),
            status: Some(next_status(None, PollOutcome::Run(&run), ctx, &at)),
        };
        if let Ok(json) = serde_json::to_vec(&contents) {
            text.extend_from_slice(&json);
        }
    }
    text
});

fn typical_run(state: &str) -> wire::JobRun {
    let base = "https://emr-serverless-spark.console.aliyun.com/workspaces/w-0123456789abcdef/jobRuns/jr-0123456789abcdef";
    let oss = "oss://bucket/spark-logs/w-0123456789abcdef/jr-0123456789abcdef/driver";
    let ended = state != "Running";
    let path = |live: &str, stored: &str| {
        Some(if ended {
            format!("{oss}/{stored}")
        } else {
            format!("{base}/logs/driver/{live}")
        })
    };
    wire::JobRun {
        workspace_id: Some("w-0123456789abcdef".into()),
        job_run_id: Some("jr-0123456789abcdef".into()),
        name: Some("nightly-etl".into()),
        state: Some(state.into()),
        state_change_reason: (state == "Failed").then(|| wire::StateChangeReason {
            code: Some("ERR-100000".into()),
            message: Some("Job failed: driver exited with code 1".into()),
        }),
        submit_time: Some(1_700_000_000_000),
        end_time: ended.then_some(1_700_003_600_000),
        code_type: Some("JAR".into()),
        web_ui: Some(format!("{base}/sparkui")),
        execution_timeout_seconds: Some(3600),
        resource_owner_id: Some("1509789347010000".into()),
        tags: Some(vec![wire::Tag {
            key: Some("workflowId".into()),
            value: Some("wf-0123456789".into()),
        }]),
        log: Some(wire::RunLog {
            driver_std_out: path("stdout", "stdout.log"),
            driver_std_error: path("stderr", "stderr.log"),
            driver_syslog: path("syslog", "syslog.log"),
            driver_startup: path("startup", "startup.log"),
        }),
        release_version: Some("esr-4.0.0 (Spark 3.5.2, Scala 2.12)".into()),
        display_release_version: Some("esr-4.0.0 (Spark 3.5.2, Scala 2.12)".into()),
        resource_queue_id: Some("root_queue".into()),
        job_driver: Some(wire::JobDriver {
            spark_submit: Some(wire::SparkSubmit {
                entry_point: Some("oss://bucket/path/to/job.jar".into()),
                entry_point_arguments: Some(vec!["--date".into()]),
                spark_submit_parameters: Some(
                    "--class com.example.Main --conf spark.executor.instances=2".into(),
                ),
            }),
        }),
        configuration_overrides: Some(wire::ConfigurationOverrides {
            configurations: Some(vec![wire::Configuration {
                config_file_name: Some("spark-defaults.conf".into()),
                config_item_key: Some("spark.sql.shuffle.partitions".into()),
                config_item_value: Some("200".into()),
            }]),
        }),
        fusion: Some(false),
        environment_id: Some("env-0123456789abcdef".into()),
        notebook_access_url: None,
        priority: Some("5".into()),
        usage: None,
        undecodable: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{RunUsage, StateChangeReason};

    fn status_of(state: &str, ws: &str, jr: &str) -> SparkJobRunRefStatus {
        let mut run = typical_run(state);
        run.job_run_id = Some(jr.into());
        next_status(
            None,
            PollOutcome::Run(&run),
            StatusContext {
                generation: Some(3),
                workspace_id: ws,
                job_run_id: jr,
                region_id: Some("cn-shanghai"),
            },
            &Time(jiff::Timestamp::from_second(1_800_000_000).expect("ts")),
        )
    }

    fn object(status: Option<SparkJobRunRefStatus>) -> SparkJobRunRef {
        let mut obj = SparkJobRunRef::new(
            "etl",
            SparkJobRunRefSpec {
                workspace_id: "w-abc".into(),
                job_run_id: "jr-xyz".into(),
                ..SparkJobRunRefSpec::default()
            },
        );
        obj.metadata.namespace = Some("data".into());
        obj.metadata.resource_version = Some("42".into());
        obj.status = status;
        obj
    }

    #[test]
    fn a_status_comes_back_as_it_went_in_and_small() {
        for state in ["Running", "Success", "Failed", "SomethingNew"] {
            let status = status_of(state, "w-abc", "jr-xyz");
            let cached = CachedRef::new(object(Some(status.clone())));
            let back = cached.to_object().expect("unpacks");
            assert_eq!(back.status, Some(status.clone()), "{state}");
            assert_eq!(back.spec, object(None).spec);
            assert_eq!(cached.state_class(), Some(StateClass::of(state)));
            let json = serde_json::to_vec(&object(Some(status.clone())))
                .expect("json")
                .len();
            let packed = cached.packed_len().expect("packed");
            assert!(packed * 5 < json, "{state}: {packed} of {json} bytes");
        }
    }

    #[test]
    fn odd_values_survive() {
        let mut status = status_of("Running", "w-abc", "jr-xyz");
        status.state_change_reason = Some(StateChangeReason {
            code: Some("ERR-\u{1F525}".into()),
            message: Some("x".repeat(20_000)),
        });
        status.usage = Some(RunUsage {
            cu_hours: Some(0.1 + 0.2),
            vcore_seconds: Some(i64::MAX),
            mb_seconds: Some(-1),
        });
        let cached = CachedRef::new(object(Some(status.clone())));
        assert!(cached.packed_len().is_some());
        assert_eq!(cached.to_object().expect("unpacks").status, Some(status));
        let bare = CachedRef::new(object(None));
        assert_eq!(bare.to_object().expect("unpacks"), {
            let mut o = object(None);
            o.metadata.annotations = None;
            o
        });
    }

    #[test]
    fn decoding_trims_and_keeps_what_the_reconciler_reads() {
        let mut obj = object(Some(status_of("Running", "w-abc", "jr-xyz")));
        obj.metadata.labels = Some([("app".to_owned(), "x".to_owned())].into());
        obj.metadata.annotations = Some(
            [
                (
                    "emrspark.io/refresh-requested-at".to_owned(),
                    "1".to_owned(),
                ),
                (
                    "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
                    "{}".to_owned(),
                ),
            ]
            .into(),
        );
        obj.metadata.finalizers = Some(vec!["emrspark.io/cancel-on-delete".into()]);
        let json = serde_json::to_vec(&obj).expect("json");
        let cached: CachedRef = serde_json::from_slice(&json).expect("decodes");
        let back = cached.to_object().expect("unpacks");
        assert_eq!(back.spec, obj.spec);
        assert_eq!(back.status, obj.status);
        assert_eq!(back.metadata.labels, None);
        assert_eq!(back.metadata.finalizers, obj.metadata.finalizers);
        assert_eq!(back.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(
            back.metadata
                .annotations
                .map(|a| a.into_keys().collect::<Vec<_>>()),
            Some(vec!["emrspark.io/refresh-requested-at".to_owned()])
        );
        assert_eq!(CachedRef::plural(&()), "sparkjobruns");
        assert_eq!(CachedRef::api_version(&()), "emrspark.io/v1alpha1");
    }

    #[test]
    fn debug_shows_sizes_not_bytes() {
        let cached = CachedRef::new(object(Some(status_of("Running", "w-abc", "jr-xyz"))));
        let text = format!("{cached:?}");
        assert!(text.contains("Packed"), "{text}");
        assert!(!text.contains("conditions"), "{text}");
    }
}
