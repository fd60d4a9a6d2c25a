//! Applying a decision: the status write (server-side apply, guarded by the resourceVersion the
//! decision was computed from) and then, only once the status that records them is stored, the
//! planned events. The write checks the leadership fence immediately before it is sent; the
//! events of a write that landed go out even if the fence closed meanwhile (see [`publish`]).

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::events::PlannedEvent;
use super::{Context, object_key};
use crate::client::JobRunService;
use crate::config::FIELD_MANAGER;
use crate::crd::{SparkJobRunRef, SparkJobRunRefStatus};
use crate::error::Error;
use crate::mapping;

/// Writes `status` onto exactly the object version `obj` is. A stale version (the object was
/// written, or deleted and recreated, since) is refused by the API server with 409, reported as
/// [`Error::Conflict`] so the object is reconciled again from fresh state.
pub async fn write_status<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    status: &SparkJobRunRefStatus,
) -> Result<(), Error> {
    match patch(obj, ctx, status).await {
        Err(Error::StatusPatch { source, .. }) if too_large(&source) => {
            warn!("the API server refused the status as too large; writing a minimal one");
            let mut minimal = mapping::minimal_status(status);
            super::too_large_condition(&mut minimal);
            patch(obj, ctx, &minimal).await
        }
        other => other,
    }
}

/// The object's key and its namespaced API, once the leadership fence allows a write: the check
/// every write to the object (status or delete) makes immediately before it is sent.
pub(super) fn fenced_api<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
) -> Result<(String, Api<SparkJobRunRef>), Error> {
    let object = object_key(obj);
    ctx.fence.check(&object)?;
    let namespace = obj.namespace().ok_or_else(|| Error::MissingMetadata {
        object: object.clone(),
        what: "namespace",
    })?;
    Ok((object, Api::namespaced(ctx.client.clone(), &namespace)))
}

async fn patch<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    status: &SparkJobRunRefStatus,
) -> Result<(), Error> {
    let (object, api) = fenced_api(obj, ctx)?;
    let body = status_patch(obj, status);
    match api
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        Ok(_) => {
            ctx.metrics.status_writes.inc();
            info!(
                state = status.state.as_deref().unwrap_or(""),
                "status written"
            );
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Err(Error::Conflict { object }),
        Err(source) => Err(Error::StatusPatch { object, source }),
    }
}

/// The apply body: the status plus the resourceVersion it was computed against, which the API
/// server checks (a `uid` in an apply patch would not be checked).
pub fn status_patch(obj: &SparkJobRunRef, status: &SparkJobRunRefStatus) -> serde_json::Value {
    let mut body = serde_json::json!({
        "apiVersion": "emrspark.io/v1alpha1",
        "kind": "SparkJobRunRef",
        "metadata": {"name": obj.name_any()},
        "status": status,
    });
    if let Some(rv) = obj.resource_version() {
        body["metadata"]["resourceVersion"] = serde_json::Value::String(rv);
    }
    body
}

fn too_large(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 413 || (s.code >= 400 && s.message.to_ascii_lowercase().contains("too large"))
        }
        _ => false,
    }
}

/// Publishes events that a stored status now records. A failure is logged, not retried: the
/// stored status already shows the transition, so retrying would need memory the process lacks,
/// and a second copy would be worse than none.
///
/// The fence is not checked here. The write these events describe was checked before it was
/// sent and landed on the exact resourceVersion it was computed from, so no other replica can
/// have recorded (and announced) the same transition; one that reads the stored status later
/// sees it done. Dropping the events because the lease lapsed while the write was held up (an
/// API-server stall) would leave the transition announced by nobody.
pub async fn publish<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    events: Vec<PlannedEvent>,
) {
    let reference = obj.object_ref(&());
    let namespace = reference.namespace.as_deref().unwrap_or("default");
    let api: Api<KubeEvent> = Api::namespaced(ctx.client.clone(), namespace);
    for planned in events {
        // Counted with the transition the stored status records, whether or not its event
        // then reaches the API server.
        ctx.metrics.observe_transition(planned.reason.as_str());
        let event = kube_event(
            &planned,
            &reference,
            ctx.settings.instance.as_deref(),
            jiff::Timestamp::now(),
        );
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => ctx.metrics.observe_event(planned.warning),
            Err(e) => warn!(error = %e, reason = %planned.reason, "publishing an event failed"),
        }
    }
}

/// The `events.k8s.io/v1` Event announcing `planned` about `regarding` (pure).
///
/// Every event is created on its own, never merged into a series. Events are planned from
/// status transitions, so a repeat is a new transition worth its own entry; and finding series
/// needs a memory of recent events: kube-runtime's `Recorder` keeps each one it published for
/// six minutes, which was the largest single heap consumer (23.6 MB) in the heap profile of the
/// 10 000-ref benchmark, right after the first sync announced every run.
pub fn kube_event(
    planned: &PlannedEvent,
    regarding: &ObjectReference,
    instance: Option<&str>,
    now: jiff::Timestamp,
) -> KubeEvent {
    let object = regarding.name.as_deref().unwrap_or(FIELD_MANAGER);
    KubeEvent {
        metadata: ObjectMeta {
            // Unique per object and moment, as the API server's own events are named.
            name: Some(format!("{object}.{:x}", now.as_nanosecond())),
            namespace: regarding.namespace.clone(),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(if planned.warning { "Warning" } else { "Normal" }.to_owned()),
        reason: Some(planned.reason.as_str().to_owned()),
        action: Some(action_of(planned.reason).to_owned()),
        note: Some(planned.note.clone()),
        regarding: Some(regarding.clone()),
        reporting_controller: Some(FIELD_MANAGER.to_owned()),
        reporting_instance: Some(instance.unwrap_or(FIELD_MANAGER).to_owned()),
        ..KubeEvent::default()
    }
}

/// The API call an event is about (`events.k8s.io` requires one).
fn action_of(reason: crate::conditions::Reason) -> &'static str {
    use crate::conditions::Reason;
    match reason {
        Reason::CancelRequested | Reason::CancelRequestFailed => "CancelJobRun",
        Reason::CancelNotAllowed | Reason::Abandoned => "Finalize",
        Reason::TtlExpired | Reason::DeleteFailed => "Delete",
        _ => "GetJobRun",
    }
}

/// Deletes a ref whose TTL after its run's end passed: an event first (it stays visible for a
/// while after the object is gone), then the delete, bound to this incarnation by its uid so a
/// ref recreated under the same name is never deleted in its place.
pub async fn delete_expired<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
) -> Result<(), Error> {
    let (object, api) = fenced_api(obj, ctx)?;
    let ttl = obj
        .spec
        .ttl_seconds_after_finished
        .map(|s| format!("{s}s"))
        .unwrap_or_else(|| "the operator's default TTL".into());
    let note = format!(
        "deleting this ref {ttl} after job run {} ended",
        obj.spec.job_run_id
    );
    publish(
        obj,
        ctx,
        vec![PlannedEvent {
            warning: false,
            reason: crate::conditions::Reason::TtlExpired,
            note,
        }],
    )
    .await;
    let params = DeleteParams {
        // The version the TTL was computed from: a ref changed since (a longer TTL, another
        // run) is not deleted; its watch event brings it back with the new spec.
        preconditions: Some(Preconditions {
            uid: obj.uid(),
            resource_version: obj.resource_version(),
        }),
        ..DeleteParams::default()
    };
    match api.delete(&obj.name_any(), &params).await {
        Ok(_) => {
            info!("deleted after its TTL");
            Ok(())
        }
        // Already gone, or a newer incarnation under the same name: nothing of ours to delete.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(source) => Err(Error::Delete { object, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::Reason;

    #[test]
    fn an_event_names_its_object_reason_action_and_reporter() {
        let regarding = ObjectReference {
            api_version: Some("emrspark.io/v1alpha1".into()),
            kind: Some("SparkJobRunRef".into()),
            name: Some("nightly".into()),
            namespace: Some("data".into()),
            uid: Some("u-1".into()),
            ..ObjectReference::default()
        };
        let planned = PlannedEvent {
            warning: true,
            reason: Reason::Throttled,
            note: "the service throttled GetJobRun".into(),
        };
        let now: jiff::Timestamp = "2026-12-04T03:00:00Z".parse().expect("time");
        let e = kube_event(&planned, &regarding, Some("pod-a"), now);
        assert_eq!(e.metadata.namespace.as_deref(), Some("data"));
        assert_eq!(
            e.metadata.name,
            Some(format!("nightly.{:x}", now.as_nanosecond()))
        );
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reason.as_deref(), Some("Throttled"));
        assert_eq!(e.action.as_deref(), Some("GetJobRun"));
        assert_eq!(e.note.as_deref(), Some("the service throttled GetJobRun"));
        assert_eq!(e.regarding.as_ref(), Some(&regarding));
        assert_eq!(e.reporting_controller.as_deref(), Some(FIELD_MANAGER));
        assert_eq!(e.reporting_instance.as_deref(), Some("pod-a"));
        assert!(e.series.is_none(), "never merged into a series");
        let normal = PlannedEvent {
            warning: false,
            ..planned
        };
        let e = kube_event(&normal, &regarding, None, now);
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.reporting_instance.as_deref(), Some(FIELD_MANAGER));
    }
}
