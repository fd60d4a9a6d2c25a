//! Wiring the reconciler to the API server: one watch per configured namespace (or one for all),
//! each decoded into the lean [`CachedRef`], sharing the context and so the rate limit; readiness
//! from the watches' first complete lists; a pruner for schedules of objects that are gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use kube::api::Api;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::cache::CachedRef;
use super::{Context, error_policy, reconcile_cached};
use crate::client::JobRunService;

/// Runs until `shutdown` is cancelled, then lets in-flight reconciles finish.
pub async fn run<S: JobRunService>(ctx: Arc<Context<S>>, shutdown: CancellationToken) {
    let mut wc = watcher::Config::default();
    if let Some(sel) = &ctx.settings.scope.label_selector {
        wc = wc.labels(sel);
    }
    // One watch per namespace of the scope, or one for all (`None`).
    let apis: Vec<(Api<CachedRef>, Option<String>)> = if ctx.settings.scope.namespaces.is_empty() {
        vec![(Api::all(ctx.client.clone()), None)]
    } else {
        ctx.settings
            .scope
            .namespaces
            .iter()
            .map(|ns| (Api::namespaced(ctx.client.clone(), ns), Some(ns.clone())))
            .collect()
    };
    let pending = Arc::new(AtomicUsize::new(apis.len()));
    let mut stores: Vec<Store<CachedRef>> = Vec::new();
    let mut controllers = Vec::new();
    let mut wakers = Wakers::default();
    for (api, namespace) in apis {
        let (reader, writer) = reflector::store();
        stores.push(reader.clone());
        let stream = watched(&ctx, api, wc.clone(), writer, pending.clone());
        let token = shutdown.clone();
        let (wake, woken) = futures::channel::mpsc::unbounded();
        wakers.0.push((namespace, wake));
        let controller = Controller::for_stream(stream, reader)
            .with_config(Config::default().concurrency(ctx.settings.concurrency))
            .reconcile_on(woken)
            .graceful_shutdown_on(async move { token.cancelled().await })
            .run(reconcile_cached, error_policy, ctx.clone())
            .for_each(|res| async move {
                match res {
                    Ok((obj, _)) => debug!(object = %obj.name, "reconciled"),
                    Err(e) => debug!(error = %e, "reconcile ended with an error"),
                }
            });
        controllers.push(controller);
    }
    ctx.set_stores(stores);
    let pruner = tokio::spawn(prune_every(ctx.clone(), Duration::from_secs(60)));
    let wakers = Arc::new(wakers);
    let shared = wakers.clone();
    ctx.set_waker(Box::new(move |key| shared.wake(key)));
    let admission = ctx.admission.clone();
    let dispatcher = tokio::spawn(async move { admission.dispatch(|key| wakers.wake(key)).await });
    let timer = tokio::spawn(wake_when_due(ctx.clone()));
    futures::future::join_all(controllers).await;
    timer.abort();
    dispatcher.abort();
    pruner.abort();
    ctx.readiness.synced.store(false, Ordering::Relaxed);
}

/// Where the dispatcher sends an object whose turn for a call has come: the controller that
/// watches its namespace.
#[derive(Default)]
struct Wakers(Vec<(Option<String>, UnboundedSender<ObjectRef<CachedRef>>)>);

impl Wakers {
    fn wake(&self, key: &str) {
        let Some((namespace, name)) = key.split_once('/') else {
            return;
        };
        let target = self
            .0
            .iter()
            .find(|(ns, _)| ns.as_deref().is_none_or(|ns| ns == namespace));
        if let Some((_, wake)) = target {
            let _ = wake.unbounded_send(ObjectRef::new(name).within(namespace));
        }
    }
}

/// The watch of one `api`: trimmed, cached in `writer`, reporting its errors and its first
/// complete list (readiness once every watch had one).
fn watched<S: JobRunService>(
    ctx: &Arc<Context<S>>,
    api: Api<CachedRef>,
    wc: watcher::Config,
    writer: reflector::store::Writer<CachedRef>,
    pending: Arc<AtomicUsize>,
) -> impl futures::Stream<Item = Result<CachedRef, watcher::Error>> + Send + 'static {
    let readiness = ctx.readiness.clone();
    let metrics = ctx.metrics.clone();
    let index = readiness.add_watch();
    let mut listed = false;
    // Decoding into `CachedRef` trims and packs each object as it arrives.
    watcher(api, wc)
        .default_backoff()
        .reflect(writer)
        .inspect(move |event| match event {
            Ok(event) => {
                readiness.watch_ok(index);
                if matches!(event, watcher::Event::InitDone) && !listed {
                    listed = true;
                    if pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                        readiness.synced.store(true, Ordering::Relaxed);
                        info!("initial list of SparkJobRunRef objects synced");
                    }
                }
            }
            Err(e) => {
                metrics.watch_errors.inc();
                let message = e.to_string();
                readiness.watch_error(index, tokio::time::Instant::now(), &message);
                warn!(error = %message, "watching SparkJobRunRef objects failed; retrying with backoff");
            }
        })
        .applied_objects()
}

/// Polls come from the schedules' timeline, not from kube-runtime's requeue queue.
async fn wake_when_due<S: JobRunService>(ctx: Arc<Context<S>>) {
    loop {
        for key in ctx.schedules.wait_due().await {
            ctx.wake(&key);
        }
    }
}

async fn prune_every<S: JobRunService>(ctx: Arc<Context<S>>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let pruned = ctx.prune_schedules();
        if pruned > 0 {
            debug!(pruned, "forgot schedules of objects that are gone");
        }
    }
}
