//! `cancelOnDelete`: the one opt-in way the operator changes a remote run. A ref that asks for
//! it (and an operator started with `--allow-cancel`) carries a finalizer while its run is
//! active; deleting the ref then cancels the run, and the finalizer goes once the run is
//! cancelling or ended. Every way out is bounded: the run ending, the run not existing, the
//! operator not allowed to cancel, or `emrspark.io/abandon: "true"` release the finalizer, so a
//! broken credential never wedges a namespace deletion.
//!
//! [`plan`] and [`settle`] are pure; [`handle`] does the IO.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tokio::time::Instant;
use tracing::{info, warn};

use super::events::PlannedEvent;
use super::schedule::Schedule;
use super::{Context, apply, decide, object_key, observe};
use crate::client::{ApiErrorKind, JobRunService};
use crate::conditions::Reason;
use crate::crd::SparkJobRunRef;
use crate::error::Error;
use crate::policy;
use crate::state::StateClass;

pub const FINALIZER: &str = "emrspark.io/cancel-on-delete";
pub const ABANDON_ANNOTATION: &str = "emrspark.io/abandon";
/// After an accepted cancel, how long the run may keep showing its old state before the
/// operator asks again (the service may take a moment to show `Cancelling`).
pub const CANCEL_SETTLE: Duration = Duration::from_secs(30);
/// How soon a deleted ref whose cancel was accepted is looked at again.
const RECHECK: Duration = Duration::from_secs(1);

/// What is known about one ref, for the finalizer decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts<'a> {
    pub deleting: bool,
    pub has_finalizer: bool,
    /// `spec.cancelOnDelete: true`.
    pub wants_cancel: bool,
    /// The operator runs with `--allow-cancel`.
    pub allowed: bool,
    pub abandon: bool,
    /// The last state the status recorded for this run.
    pub last_state: Option<&'a str>,
}

/// Why the finalizer goes without a (further) cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    Abandoned,
    RunEnded,
    /// The run is `Cancelling`: the cancel has been taken.
    Cancelling,
    RunNotFound,
    /// `cancelOnDelete` is no longer set.
    NotRequested,
    /// The operator runs without `--allow-cancel` (now).
    NotAllowed,
}

impl Release {
    fn as_str(self) -> &'static str {
        match self {
            Self::Abandoned => "abandoned",
            Self::RunEnded => "run ended",
            Self::Cancelling => "run cancelling",
            Self::RunNotFound => "run not found",
            Self::NotRequested => "cancelOnDelete not set",
            Self::NotAllowed => "cancelling not allowed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do about finalizers: the normal pipeline runs.
    Proceed,
    AddFinalizer,
    /// The finalizer is no longer needed (the ref stays).
    RemoveFinalizer(Release),
    /// The ref is being deleted: let it go without a call.
    Release(Release),
    /// The ref is being deleted and its run may be active: look, and cancel if it is.
    Settle,
    /// `cancelOnDelete` without `--allow-cancel`: say so once, then the normal pipeline runs.
    Refuse,
}

pub fn plan(f: &Facts<'_>) -> Plan {
    let ended = f
        .last_state
        .is_some_and(|s| StateClass::of(s).is_terminal());
    let unneeded = if f.abandon {
        Some(Release::Abandoned)
    } else if !f.wants_cancel {
        Some(Release::NotRequested)
    } else if !f.allowed {
        Some(Release::NotAllowed)
    } else if ended {
        Some(Release::RunEnded)
    } else {
        None
    };
    match (f.deleting, f.has_finalizer, unneeded) {
        (true, false, _) => Plan::Proceed,
        (true, true, Some(why)) => Plan::Release(why),
        (true, true, None) => Plan::Settle,
        (false, true, Some(why)) => Plan::RemoveFinalizer(why),
        (false, true, None) => Plan::Proceed,
        (false, false, _) if f.wants_cancel && !ended && !f.abandon => {
            if f.allowed {
                Plan::AddFinalizer
            } else {
                Plan::Refuse
            }
        }
        (false, false, _) => Plan::Proceed,
    }
}

/// What a deleted ref's fresh state calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Release(Release),
    Cancel,
}

/// `CancelFailed` asks again: the run may still be alive.
pub fn settle(state: &str) -> Settle {
    match StateClass::of(state) {
        c if c.is_terminal() => Settle::Release(Release::RunEnded),
        _ if state == "Cancelling" => Settle::Release(Release::Cancelling),
        _ => Settle::Cancel,
    }
}

fn facts<'a, S: JobRunService>(obj: &'a SparkJobRunRef, ctx: &Context<S>) -> Facts<'a> {
    let status = decide::status_of_run(
        obj.status.as_ref(),
        &obj.spec.workspace_id,
        &obj.spec.job_run_id,
    );
    Facts {
        deleting: obj.meta().deletion_timestamp.is_some(),
        has_finalizer: obj.finalizers().iter().any(|f| f == FINALIZER),
        wants_cancel: obj.spec.cancel_on_delete == Some(true),
        allowed: ctx.settings.allow_cancel,
        abandon: obj
            .annotations()
            .get(ABANDON_ANNOTATION)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        last_state: status.and_then(|s| s.state.as_deref()),
    }
}

/// Handles the finalizer; `Some` ends this reconcile with that action, `None` lets the normal
/// pipeline run.
pub async fn handle<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
) -> Result<Option<Action>, Error> {
    match plan(&facts(obj, ctx)) {
        Plan::Proceed => Ok(None),
        Plan::Refuse => {
            refuse_once(obj, ctx).await;
            Ok(None)
        }
        Plan::AddFinalizer => {
            add_finalizer(obj, ctx).await?;
            // The patch's watch event brings the ref back with its new resourceVersion.
            Ok(Some(Action::await_change()))
        }
        Plan::RemoveFinalizer(why) => {
            remove_finalizer(obj, ctx, why).await?;
            Ok(Some(Action::await_change()))
        }
        Plan::Release(why) => release(obj, ctx, why).await.map(Some),
        Plan::Settle => settle_deleted(obj, ctx).await.map(Some),
    }
}

/// One Warning event per ref (by uid) and process: the status stays what it is.
async fn refuse_once<S: JobRunService>(obj: &SparkJobRunRef, ctx: &Context<S>) {
    let uid = obj.uid().unwrap_or_default();
    if !ctx.note_refusal(&object_key(obj), &uid) {
        return;
    }
    warn!("spec.cancelOnDelete is set, but this operator runs without --allow-cancel");
    let note = "spec.cancelOnDelete is not honoured: the operator runs without --allow-cancel, so deleting this ref will not cancel its run".to_owned();
    apply::publish(obj, ctx, vec![event(true, Reason::CancelNotAllowed, note)]).await;
}

fn event(warning: bool, reason: Reason, note: String) -> PlannedEvent {
    let mut note = note;
    crate::text::truncate(&mut note, super::events::NOTE_MAX);
    PlannedEvent {
        warning,
        reason,
        note,
    }
}

async fn release<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    why: Release,
) -> Result<Action, Error> {
    let note = match why {
        Release::Abandoned => Some((
            false,
            Reason::Abandoned,
            format!(
                "released without cancelling job run {} ({ABANDON_ANNOTATION})",
                obj.spec.job_run_id
            ),
        )),
        Release::NotAllowed => Some((
            true,
            Reason::CancelNotAllowed,
            format!(
                "released without cancelling job run {}: the operator runs without --allow-cancel",
                obj.spec.job_run_id
            ),
        )),
        _ => None,
    };
    if let Some((warning, reason, note)) = note {
        apply::publish(obj, ctx, vec![event(warning, reason, note)]).await;
    }
    remove_finalizer(obj, ctx, why).await?;
    ctx.forget_cancel(&object_key(obj));
    Ok(Action::await_change())
}

/// A deleted ref with the finalizer: a fresh GetJobRun decides, then at most one CancelJobRun
/// per [`CANCEL_SETTLE`]; failures keep the finalizer and back off by their class.
async fn settle_deleted<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
) -> Result<Action, Error> {
    let key = object_key(obj);
    let observation = observe::observe(obj, ctx, observe::Fresh::Own).await?;
    let state = match observation.result {
        Ok(run) => run.state.unwrap_or_default(),
        Err(Error::GetJobRun { source, .. }) if source.kind == ApiErrorKind::NotFound => {
            return release(obj, ctx, Release::RunNotFound).await;
        }
        Err(e) => return failed(obj, ctx, e, "reading the run before cancelling it").await,
    };
    match settle(&state) {
        Settle::Release(why) => release(obj, ctx, why).await,
        Settle::Cancel if ctx.cancel_pending(&key) => Ok(Action::requeue(RECHECK)),
        Settle::Cancel => match observe::cancel_run(obj, ctx).await {
            Ok(()) => {
                ctx.note_cancel(&key);
                info!(state = %state, "CancelJobRun accepted");
                let note = format!(
                    "the ref was deleted while job run {} was {state}; CancelJobRun was accepted",
                    obj.spec.job_run_id
                );
                apply::publish(obj, ctx, vec![event(false, Reason::CancelRequested, note)]).await;
                Ok(Action::requeue(RECHECK))
            }
            Err(e @ (Error::RateLimited { .. } | Error::Fenced { .. })) => Err(e),
            Err(e) => failed(obj, ctx, e, "cancelling the run").await,
        },
    }
}

/// An event naming the failure, and the next attempt after the class's backoff.
async fn failed<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    error: Error,
    what: &str,
) -> Result<Action, Error> {
    if let Error::RateLimited { .. } | Error::Fenced { .. } = error {
        return Err(error);
    }
    let key = object_key(obj);
    let failures = ctx
        .schedules
        .get(&key)
        .map_or(0, |s| s.failures)
        .saturating_add(1);
    let retry_after = match &error {
        Error::GetJobRun { source, .. } | Error::CancelJobRun { source, .. } => source.retry_after,
        _ => None,
    };
    let delay = policy::jittered_up(
        ctx.settings
            .backoff
            .delay(error.retry_class(), failures, retry_after),
        ctx.settings.backoff.jitter,
        rand::random::<f64>(),
    );
    warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "{what} failed; keeping the finalizer");
    let note = format!(
        "{what} failed, retrying in {}s (annotate {ABANDON_ANNOTATION}=true to delete without cancelling): {}",
        delay.as_secs(),
        error.condition_message()
    );
    apply::publish(
        obj,
        ctx,
        vec![event(true, Reason::CancelRequestFailed, note)],
    )
    .await;
    ctx.schedules.set(
        &key,
        Some(Schedule {
            generation: None,
            due: Instant::now() + delay,
            failures,
            secret_version: None,
        }),
    );
    Ok(Action::requeue(delay))
}

/// Sets `metadata.finalizers` with a merge patch that carries the resourceVersion it was
/// computed from: the API server refuses it (409) if the object changed since, so a concurrent
/// change of the list is never overwritten; the reconcile then runs again on the fresh version.
async fn patch_finalizers<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let (object, api) = apply::fenced_api(obj, ctx)?;
    let body = serde_json::json!({
        "metadata": {"resourceVersion": obj.resource_version(), "finalizers": finalizers},
    });
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Gone already: nothing holds it any more.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Err(Error::Conflict { object }),
        Err(source) => Err(Error::Finalizer { object, source }),
    }
}

async fn add_finalizer<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
) -> Result<(), Error> {
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    patch_finalizers(obj, ctx, finalizers).await?;
    info!("finalizer added: deleting this ref will cancel its run");
    Ok(())
}

async fn remove_finalizer<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    why: Release,
) -> Result<(), Error> {
    let finalizers: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(obj, ctx, finalizers).await?;
    info!(why = why.as_str(), "finalizer removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts<'static> {
        Facts {
            deleting: false,
            has_finalizer: false,
            wants_cancel: true,
            allowed: true,
            abandon: false,
            last_state: Some("Running"),
        }
    }

    #[test]
    fn the_finalizer_is_there_exactly_while_a_cancel_could_be_needed() {
        let f = facts();
        let cases: Vec<(Facts<'static>, Plan)> = vec![
            (f, Plan::AddFinalizer),
            (
                Facts {
                    last_state: None,
                    ..f
                },
                Plan::AddFinalizer,
            ),
            (
                Facts {
                    last_state: Some("Success"),
                    ..f
                },
                Plan::Proceed,
            ),
            (
                Facts {
                    wants_cancel: false,
                    ..f
                },
                Plan::Proceed,
            ),
            (
                Facts {
                    allowed: false,
                    ..f
                },
                Plan::Refuse,
            ),
            (
                Facts {
                    allowed: false,
                    last_state: Some("Failed"),
                    ..f
                },
                Plan::Proceed,
            ),
            (Facts { abandon: true, ..f }, Plan::Proceed),
            (
                Facts {
                    has_finalizer: true,
                    ..f
                },
                Plan::Proceed,
            ),
            (
                Facts {
                    has_finalizer: true,
                    last_state: Some("Cancelled"),
                    ..f
                },
                Plan::RemoveFinalizer(Release::RunEnded),
            ),
            (
                Facts {
                    has_finalizer: true,
                    wants_cancel: false,
                    ..f
                },
                Plan::RemoveFinalizer(Release::NotRequested),
            ),
            (
                Facts {
                    has_finalizer: true,
                    allowed: false,
                    ..f
                },
                Plan::RemoveFinalizer(Release::NotAllowed),
            ),
            (
                Facts {
                    has_finalizer: true,
                    abandon: true,
                    ..f
                },
                Plan::RemoveFinalizer(Release::Abandoned),
            ),
        ];
        for (facts, want) in cases {
            assert_eq!(plan(&facts), want, "{facts:?}");
        }
    }

    #[test]
    fn a_deleted_ref_is_settled_or_released() {
        let d = Facts {
            deleting: true,
            has_finalizer: true,
            ..facts()
        };
        let cases: Vec<(Facts<'static>, Plan)> = vec![
            (d, Plan::Settle),
            (
                Facts {
                    last_state: Some("CancelFailed"),
                    ..d
                },
                Plan::Settle,
            ),
            (
                Facts {
                    last_state: None,
                    ..d
                },
                Plan::Settle,
            ),
            (
                Facts {
                    last_state: Some("Success"),
                    ..d
                },
                Plan::Release(Release::RunEnded),
            ),
            (
                Facts { abandon: true, ..d },
                Plan::Release(Release::Abandoned),
            ),
            (
                Facts {
                    allowed: false,
                    ..d
                },
                Plan::Release(Release::NotAllowed),
            ),
            (
                Facts {
                    wants_cancel: false,
                    ..d
                },
                Plan::Release(Release::NotRequested),
            ),
            (
                Facts {
                    has_finalizer: false,
                    ..d
                },
                Plan::Proceed,
            ),
        ];
        for (facts, want) in cases {
            assert_eq!(plan(&facts), want, "{facts:?}");
        }
        assert_eq!(settle("Running"), Settle::Cancel);
        assert_eq!(settle("Submitted"), Settle::Cancel);
        assert_eq!(settle("CancelFailed"), Settle::Cancel);
        assert_eq!(settle("Exploding"), Settle::Cancel);
        assert_eq!(settle("Cancelling"), Settle::Release(Release::Cancelling));
        assert_eq!(settle("Cancelled"), Settle::Release(Release::RunEnded));
        assert_eq!(settle("Failed"), Settle::Release(Release::RunEnded));
    }
}
