//! The `SparkJobRunRef` API (`emrspark.io/v1alpha1`). Field doc comments become the schema's
//! descriptions, and the validation here is enforced by the API server itself, so a bad spec is
//! refused at `kubectl apply` time with a message naming the field.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// A reference to an existing EMR Serverless Spark job run. The operator polls the run with
/// GetJobRun and mirrors what it learns into `status`; it never changes the remote run.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "emrspark.io",
    version = "v1alpha1",
    kind = "SparkJobRunRef",
    plural = "sparkjobruns",
    singular = "sparkjobrun",
    shortname = "sjr",
    category = "spark",
    namespaced,
    status = "SparkJobRunRefStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "SparkJobRunRef mirrors an Alibaba Cloud EMR Serverless Spark job run into Kubernetes.",
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.state",
        description = "Job run state as reported by the service"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.stateChangeReason.code",
        description = "Code of the last state change reason"
    ),
    printcolumn(name = "JobRun", type_ = "string", json_path = ".spec.jobRunId"),
    printcolumn(name = "Submitted", type_ = "date", json_path = ".status.submitTime"),
    printcolumn(name = "Ended", type_ = "date", json_path = ".status.endTime"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Workspace",
        type_ = "string",
        json_path = ".spec.workspaceId",
        priority = 1
    ),
    printcolumn(
        name = "Region",
        type_ = "string",
        json_path = ".status.regionId",
        priority = 1,
        description = "Region the run is read from (spec.regionId or the operator default)"
    ),
    printcolumn(
        name = "CUHours",
        type_ = "number",
        json_path = ".status.usage.cuHours",
        priority = 1,
        description = "Compute unit hours the run used, once it ended"
    ),
    printcolumn(
        name = "WebUI",
        type_ = "string",
        json_path = ".status.webUI",
        priority = 1
    ),
    selectable = ".spec.workspaceId",
    selectable = ".spec.jobRunId"
)]
#[x_kube(validation = Rule::new("has(self.regionId) == has(oldSelf.regionId) && (!has(self.regionId) || self.regionId == oldSelf.regionId)").message("regionId is immutable").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("!has(self.endpoint) || !has(self.regionId) || self.endpoint.startsWith('https://emr-serverless-spark.' + self.regionId + '.aliyuncs.com') || self.endpoint.startsWith('https://emr-serverless-spark-vpc.' + self.regionId + '.aliyuncs.com')").message("endpoint must be a service host of regionId (emr-serverless-spark[-vpc].<regionId>.aliyuncs.com)").field_path(".endpoint"))]
#[serde(rename_all = "camelCase")]
pub struct SparkJobRunRefSpec {
    /// ID of the EMR Serverless Spark workspace that owns the job run (w-...). Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("workspaceId is immutable"))]
    #[schemars(regex(pattern = r"^w-[A-Za-z0-9]+$"), length(min = 3, max = 64))]
    pub workspace_id: String,

    /// ID of the job run to follow (jr-...). Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("jobRunId is immutable"))]
    #[schemars(regex(pattern = r"^jr-[A-Za-z0-9]+$"), length(min = 4, max = 64))]
    pub job_run_id: String,

    /// Region of the workspace, e.g. cn-hangzhou. Required unless the operator runs with a
    /// default region. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z]{2,4}(-[a-z0-9]+){1,3}$"),
        length(min = 4, max = 32)
    )]
    pub region_id: Option<String>,

    /// Overrides the service endpoint for this run, e.g. the VPC endpoint
    /// https://emr-serverless-spark-vpc.cn-hangzhou.aliyuncs.com. Only the service's own https
    /// hosts (emr-serverless-spark[-vpc].REGION.aliyuncs.com, REGION = regionId when set) are
    /// accepted, so the operator's signed requests cannot be sent to another product or a bucket;
    /// a port is 1-65535 without leading zeros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(
            pattern = r"^https://emr-serverless-spark(-vpc)?\.[a-z]{2,4}(-[a-z0-9]+){1,3}\.aliyuncs\.com(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?/?$"
        ),
        length(max = 253)
    )]
    pub endpoint: Option<String>,

    /// Credentials for this run. When absent the operator's own credential chain is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsSource>,

    /// Delete this ref this many seconds after its run ended (Success, Failed or Cancelled), for
    /// refs created by pipelines. Honoured only when the operator runs with
    /// --ttl-after-finished. Do not set it on refs kept in Git: Argo CD or Flux would recreate
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 31536000))]
    pub ttl_seconds_after_finished: Option<i64>,
    /// Cancel the run (CancelJobRun) when this ref is deleted while the run is still active.
    /// Honoured only when the operator runs with `--allow-cancel`; otherwise a Warning event
    /// says it is refused. The ref then carries the finalizer `emrspark.io/cancel-on-delete`
    /// until the run ended or is cancelling; the annotation `emrspark.io/abandon: "true"`
    /// releases it without cancelling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_on_delete: Option<bool>,

    /// How often to poll while the run is not finished, e.g. 30s or 2m. The operator clamps it to
    /// its configured bounds. When absent the interval depends on the run's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('24h')").message("pollInterval must be between 1s and 24h"))]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    pub poll_interval: Option<String>,
}

/// Where the AccessKey for this run comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.secretRef) || has(self.roleArn)").message("credentials needs secretRef or roleArn; leave it out to use the operator's own"))]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSource {
    /// A Secret in the same namespace with keys accessKeyId, accessKeySecret and optionally
    /// securityToken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,

    /// A RAM role (possibly in another account) to assume with STS AssumeRole, on top of the
    /// Secret's identity or, without secretRef, the operator's own. The operator only assumes
    /// roles its --assume-role-allow entries allow for this namespace; the role's trust policy must trust the
    /// base identity. Session name: sparkjobrun.<namespace>. Role names have at most 64
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^acs:ram::[0-9]+:role/[A-Za-z0-9._@-]{1,64}$"),
        length(min = 16, max = 128)
    )]
    pub role_arn: Option<String>,
}

/// A Secret in the object's own namespace. It is used only when its owner labelled (or
/// annotated) it emrspark.io/credentials: "true".
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
        length(min = 1, max = 253)
    )]
    pub name: String,
}

/// What the service last reported about the job run, plus conditions for tools that wait on it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SparkJobRunRefStatus {
    /// The metadata.generation this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Job run state, verbatim from the service (Submitted, Pending, Running, Success, Failed,
    /// Cancelling, Cancelled, CancelFailed, or a state this operator does not know).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// True once the run reached Success, Failed or Cancelled; the operator then stops polling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<bool>,
    /// Region the run is read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_id: Option<String>,
    /// Workspace of the run this status describes. A status naming another workspace or run
    /// than the spec is ignored by the operator and replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    /// The job run this status describes (spec.jobRunId when it was written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_run_id: Option<String>,
    /// The last value of the annotation emrspark.io/refresh-requested-at that the operator acted
    /// on (it observes the run once whenever the annotation holds another value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_refresh_at: Option<String>,
    /// Fields whose value from the service was longer than the operator keeps and was cut
    /// (strings end in "…"), or dropped to keep the status within its size limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<String>,
    /// Why the run last changed state (the cause of a failure, for example).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_change_reason: Option<StateChangeReason>,
    /// Paths of the driver logs: live links while running, OSS paths once ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<DriverLogs>,
    /// Name of the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Code type of the job: SQL, JAR, PYTHON, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_type: Option<String>,
    /// Spark web UI of the run.
    #[serde(rename = "webUI", default, skip_serializing_if = "Option::is_none")]
    pub web_ui: Option<String>,
    /// When the run was submitted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_time: Option<String>,
    /// When the run ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// Engine release version, e.g. esr-3.3.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_version: Option<String>,
    /// Human-readable engine release, e.g. "esr-4.0.0 (Spark 3.5.2, Scala 2.12)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_release_version: Option<String>,
    /// Resource queue the run uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_queue_id: Option<String>,
    /// Tags of the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<RunTag>,
    /// Execution timeout of the run, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_timeout_seconds: Option<i64>,
    /// Priority of the run (the service reports it as a string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Whether Fusion acceleration is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<bool>,
    /// Runtime environment of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    /// Notebook output link, for notebook runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notebook_access_url: Option<String>,
    /// UID of the account that created the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_owner_id: Option<String>,
    /// The job's entry point and arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_driver: Option<JobDriver>,
    /// Spark configuration overrides of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_overrides: Option<ConfigurationOverrides>,
    /// What the run used, recorded once when it ended (from ListJobRuns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<RunUsage>,
    /// Ready, Reconciling, Stalled, Succeeded, Failed, Finished and Synced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// Resources a run used, as the service accounts them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunUsage {
    /// Compute unit hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cu_hours: Option<f64>,
    /// vCPU cores times seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcore_seconds: Option<i64>,
    /// Memory in MB times seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mb_seconds: Option<i64>,
}

/// Code and message of the service's state change reason.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StateChangeReason {
    /// Error code, e.g. ERR-100000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Driver log locations.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DriverLogs {
    /// Driver standard output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_std_out: Option<String>,
    /// Driver standard error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_std_error: Option<String>,
    /// Driver syslog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_syslog: Option<String>,
    /// Driver startup log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_startup: Option<String>,
}

/// A key/value tag of the run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunTag {
    /// Tag key.
    #[serde(default)]
    pub key: String,
    /// Tag value.
    #[serde(default)]
    pub value: String,
}

/// How the job was started.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct JobDriver {
    /// spark-submit parameters of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spark_submit: Option<SparkSubmit>,
}

/// spark-submit parameters.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SparkSubmit {
    /// Main file (JAR, Python file, SQL) of the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<String>,
    /// Arguments passed to the entry point.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry_point_arguments: Vec<String>,
    /// Extra spark-submit parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spark_submit_parameters: Option<String>,
}

/// Spark configuration overrides.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationOverrides {
    /// The overridden configuration items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configurations: Vec<ConfigurationItem>,
}

/// One configuration item.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationItem {
    /// File the item belongs to, e.g. spark-defaults.conf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file_name: Option<String>,
    /// Configuration key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_item_key: Option<String>,
    /// Configuration value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_item_value: Option<String>,
}

/// The CRD object generated from the types above.
pub fn crd() -> CustomResourceDefinition {
    SparkJobRunRef::crd()
}

/// The CRD as the YAML committed under `crds/` and in the chart.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&crd()).map(|y| format!("---\n{y}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crd_matches_the_types() {
        let generated = crd_yaml().expect("CRD serialises");
        let committed = include_str!("../crds/sparkjobruns.emrspark.io.yaml");
        assert!(
            generated == committed,
            "crds/sparkjobruns.emrspark.io.yaml is stale: run `cargo run -- crd > crds/sparkjobruns.emrspark.io.yaml`"
        );
    }

    #[test]
    fn names_and_columns() {
        let crd = crd();
        assert_eq!(crd.spec.group, "emrspark.io");
        assert_eq!(crd.spec.names.plural, "sparkjobruns");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["sjr".to_string()][..])
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["spark".to_string()][..])
        );
        let version = &crd.spec.versions[0];
        let columns: Vec<(String, i32)> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.clone(), c.priority.unwrap_or(0)))
            .collect();
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "State",
                "Reason",
                "JobRun",
                "Submitted",
                "Ended",
                "Age",
                "Workspace",
                "Region",
                "CUHours",
                "WebUI"
            ]
        );
        assert!(
            columns[6..].iter().all(|(_, p)| *p == 1),
            "wide-only columns: {columns:?}"
        );
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
    }

    #[test]
    fn schema_carries_validation() {
        let json = serde_json::to_string(&crd()).expect("serialises");
        for needle in [
            r#""pattern":"^w-[A-Za-z0-9]+$""#,
            r#""pattern":"^jr-[A-Za-z0-9]+$""#,
            "workspaceId is immutable",
            "jobRunId is immutable",
            "regionId is immutable",
            r#""x-kubernetes-list-type":"map""#,
            "pollInterval must be between 1s and 24h",
            r#""pattern":"^acs:ram::[0-9]+:role/[A-Za-z0-9._@-]{1,64}$""#,
            "credentials needs secretRef or roleArn",
        ] {
            assert!(json.contains(needle), "CRD lacks {needle}");
        }
    }
}
