//! The invariants every scenario checks once its load has settled, and a watch that catches a
//! terminal outcome changing while it runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::watcher;
use vworkspace_operator::api::{LABEL_OPERATION_UID, LABEL_STEP, Operation};
use vworkspace_operator::record::ChildKind;
use vworkspace_operator::sim::controller::api_resource;

use crate::load::Planned;
use crate::support::receiver::Receiver;

const TERMINAL: [&str; 3] = ["Succeeded", "Failed", "Cancelled"];

/// Every terminal phase seen per Operation, in order; more than one distinct is a violation.
pub struct TerminalWatch {
    seen: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TerminalWatch {
    pub fn start(client: &kube::Client, ns: &str) -> TerminalWatch {
        let api: Api<Operation> = Api::namespaced(client.clone(), ns);
        let seen: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
        let s = seen.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                let objs = match ev {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => vec![o],
                    Ok(_) => continue,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                for o in objs {
                    let phase =
                        o.status.as_ref().and_then(|s| s.phase).map(|p| p.as_str().to_string()).unwrap_or_default();
                    let name = o.metadata.name.clone().unwrap_or_default();
                    let mut seen = s.lock().unwrap();
                    let list = seen.entry(name).or_default();
                    // Once terminal, any later phase is recorded: it must equal the first.
                    if (TERMINAL.contains(&phase.as_str()) || !list.is_empty()) && list.last() != Some(&phase) {
                        list.push(phase);
                    }
                }
            }
        });
        TerminalWatch { seen, task }
    }

    /// Operations whose terminal outcome changed, with the phases seen.
    pub fn changed(&self) -> Vec<String> {
        self.seen.lock().unwrap().iter().filter(|(_, v)| v.len() > 1).map(|(k, v)| format!("{k}: {v:?}")).collect()
    }
}

impl Drop for TerminalWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub ops: usize,
    /// Not terminal by the deadline.
    pub lost: Vec<String>,
    /// Terminal, but not the outcome the simulator scenario dictates.
    pub wrong: Vec<String>,
    /// Steps with more than one child.
    pub duplicates: Vec<String>,
    pub changed: Vec<String>,
    pub events_missing: Vec<String>,
    pub messages_missing: Vec<String>,
}

impl Report {
    pub fn violations(&self) -> usize {
        self.lost.len()
            + self.wrong.len()
            + self.duplicates.len()
            + self.changed.len()
            + self.events_missing.len()
            + self.messages_missing.len()
    }

    pub fn assert_clean(&self, context: &str) {
        assert_eq!(self.violations(), 0, "invariants broken: {self:#?}\n{context}");
    }
}

/// Waits up to `within` for every planned Operation to end, then checks every invariant.
pub async fn settle(
    client: &kube::Client,
    ns: &str,
    planned: &[Planned],
    watch: &TerminalWatch,
    receiver: &Receiver,
    within: Duration,
) -> Report {
    let api: Api<Operation> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + within;
    let mut ops = BTreeMap::new();
    loop {
        ops.clear();
        if let Ok(list) = api.list(&ListParams::default()).await {
            for o in list.items {
                ops.insert(o.metadata.name.clone().unwrap_or_default(), o);
            }
        }
        let done = planned.iter().all(|p| ops.get(&p.name).is_some_and(|o| TERMINAL.contains(&phase(o).as_str())));
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Terminal messages are pushed in batches: give the last one its window.
    let names: BTreeSet<&str> = planned.iter().map(|p| p.name.as_str()).collect();
    let message_deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < message_deadline && !names.iter().all(|n| receiver.terminal().contains_key(*n)) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let children = children_per_step(client).await;
    let events = terminal_events(client, ns).await;
    let messages = receiver.terminal();
    let mut r = Report { ops: planned.len(), changed: watch.changed(), ..Default::default() };
    for p in planned {
        let Some(o) = ops.get(&p.name) else {
            r.lost.push(format!("{}: gone", p.name));
            continue;
        };
        let (ph, uid) = (phase(o), o.metadata.uid.clone().unwrap_or_default());
        if !TERMINAL.contains(&ph.as_str()) {
            r.lost.push(format!("{}: {ph:?}", p.name));
            continue;
        }
        if ph != p.expect {
            r.wrong.push(format!("{}: {ph}, expected {}", p.name, p.expect));
        }
        for ((u, step), n) in children.range((uid.clone(), String::new())..) {
            if *u != uid {
                break;
            }
            if *n > 1 {
                r.duplicates.push(format!("{} step {step}: {n} children", p.name));
            }
        }
        let reason = succeeded_reason(o);
        if !events.get(&uid).is_some_and(|rs| rs.contains(&reason)) {
            r.events_missing.push(format!("{}: no Event with reason {reason:?}; have {:?}", p.name, events.get(&uid)));
        }
        if !messages.contains_key(&p.name) {
            r.messages_missing.push(p.name.clone());
        }
    }
    r
}

fn phase(o: &Operation) -> String {
    o.status.as_ref().and_then(|s| s.phase).map(|p| p.as_str().to_string()).unwrap_or_default()
}

fn succeeded_reason(o: &Operation) -> String {
    o.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Succeeded"))
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

/// Children of every kind in every namespace, counted per (Operation UID, step) label.
async fn children_per_step(client: &kube::Client) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for kind in ChildKind::ALL {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource(kind));
        let Ok(list) = api.list(&ListParams::default().labels(LABEL_OPERATION_UID)).await else { continue };
        for o in list.items {
            let labels = o.metadata.labels.unwrap_or_default();
            let key = (
                labels.get(LABEL_OPERATION_UID).cloned().unwrap_or_default(),
                labels.get(LABEL_STEP).cloned().unwrap_or_default(),
            );
            *out.entry(key).or_default() += 1;
        }
    }
    out
}

/// The reasons of the Events about each Operation, by its UID.
async fn terminal_events(client: &kube::Client, ns: &str) -> BTreeMap<String, BTreeSet<String>> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in api.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
        if let (Some(uid), Some(reason)) = (e.regarding.and_then(|r| r.uid), e.reason) {
            out.entry(uid).or_default().insert(reason);
        }
    }
    out
}
