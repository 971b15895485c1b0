//! What the operator has observed of the cluster, folded from watch records. Relists are
//! buffered from Init to InitDone (as compact text) and then swapped in, as kube's reflector
//! store does, so a relist that coalesced missed updates (or missed deletes) converges.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::child::Child;
use super::listed::Listed;
use super::template::Template;

use crate::api::{ApplicationInstance, OperationTemplate};
use crate::key::ObjKey;
use crate::record::{ChildKind, Discovery, ResourceKind};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct World {
    /// Cluster-scoped, by name.
    pub templates: BTreeMap<String, Arc<Template>>,
    /// Templates that do not parse, with the error, so Operations can say why.
    pub bad_templates: BTreeMap<String, String>,
    #[serde(with = "super::pairs")]
    pub apps: BTreeMap<ObjKey, App>,
    /// Secret names only (values never reach the fold).
    pub secrets: BTreeSet<ObjKey>,
    #[serde(with = "super::pairs")]
    pub children: BTreeMap<(ChildKind, ObjKey), Child>,
    /// Child kinds whose CRDs are installed. Until the first Discovery record, all are.
    pub installed: BTreeSet<ChildKind>,
    /// Kinds the runtime watches, which stay unsynced until their first InitDone.
    pub watched: BTreeSet<ResourceKind>,
    pub synced: BTreeSet<ResourceKind>,
    /// Relists in progress: the objects seen since Init.
    #[serde(with = "super::pairs::nested")]
    pub relists: BTreeMap<ResourceKind, BTreeMap<ObjKey, Listed>>,
    /// Set by a replay, which trades memory for time. Ended Operations keep their last status
    /// whole instead of as a digest (`LastStatus`: digests were an eighth of its folding thread;
    /// whole statuses hold 130 MB more at 1M records), and their children as plain text instead
    /// of lz4-compressed (`Child::settle`). Either form decides the same.
    #[serde(skip)]
    pub replay: bool,
    /// Objects replaced by newer versions, when the caller asked to free them itself.
    #[serde(skip)]
    pub spent: Spent,
}

/// Objects a newer version replaced, held for the caller (`Spent::take`) when `on`: a replay
/// builds objects on its reading thread, and freeing them there is cheaper than on the folding
/// one. Not part of the state: any two compare equal.
#[derive(Clone, Debug, Default)]
pub struct Spent {
    pub on: bool,
    pub children: Vec<Child>,
    pub apps: Vec<App>,
}

impl Spent {
    pub fn take(&mut self) -> Spent {
        Spent { on: self.on, children: std::mem::take(&mut self.children), apps: std::mem::take(&mut self.apps) }
    }

    fn child(&mut self, c: Option<Child>) {
        if let (true, Some(c)) = (self.on, c) {
            self.children.push(c);
        }
    }

    fn app(&mut self, a: Option<App>) {
        if let (true, Some(a)) = (self.on, a) {
            self.apps.push(a);
        }
    }
}

impl PartialEq for Spent {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Default for World {
    fn default() -> Self {
        Self {
            templates: BTreeMap::new(),
            bad_templates: BTreeMap::new(),
            apps: BTreeMap::new(),
            secrets: BTreeSet::new(),
            children: BTreeMap::new(),
            installed: ChildKind::ALL.into_iter().collect(),
            watched: BTreeSet::new(),
            synced: BTreeSet::new(),
            relists: BTreeMap::new(),
            replay: false,
            spent: Spent::default(),
        }
    }
}

/// An ApplicationInstance as observed, parsed once when it arrives: engines and preconditions
/// read it on every reconcile. Serialized (and compared) as the object alone.
#[derive(Clone, Debug)]
pub struct App {
    pub raw: Value,
    /// None when the object does not parse as an ApplicationInstance.
    pub parsed: Option<ApplicationInstance>,
}

impl App {
    pub fn new(raw: Value) -> Self {
        let parsed = <ApplicationInstance as Deserialize>::deserialize(&raw).ok();
        Self { raw, parsed }
    }
}

impl PartialEq for App {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Serialize for App {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for App {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(App::new)
    }
}

/// A change to one object, after relist diffing.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Applied(ResourceKind, ObjKey, Value),
    Deleted(ResourceKind, ObjKey, Option<Value>),
}

impl World {
    pub fn is_synced(&self, kind: ResourceKind) -> bool {
        !self.watched.contains(&kind) || self.synced.contains(&kind)
    }

    pub fn discovery(&mut self, d: &Discovery) {
        self.installed = d.installed.iter().copied().chain([ChildKind::Job]).collect();
    }

    /// A new process: every kind must be listed again before absence means anything. Child
    /// kinds wait for the process's Discovery record (which precedes its watches), so an engine
    /// uninstalled meanwhile does not keep the fold waiting for a list that never comes.
    pub fn restart_sync(&mut self) {
        self.watched = ResourceKind::BASE.into();
        self.synced.clear();
        self.relists.clear();
    }

    pub fn watch(&mut self, kinds: &BTreeSet<ResourceKind>) {
        self.watched.extend(kinds.iter().copied());
    }

    pub fn app(&self, key: &ObjKey) -> Option<(&Value, &ApplicationInstance)> {
        let a = self.apps.get(key)?;
        Some((&a.raw, a.parsed.as_ref()?))
    }

    pub fn child(&self, kind: ChildKind, namespace: &str, name: &str) -> Option<Cow<'_, Value>> {
        self.children.get(&(kind, ObjKey::new(namespace, name))).map(Child::value)
    }

    /// Keeps a child as text (its Operation ended) or as a tree (its Operation runs).
    pub fn keep_child(&mut self, kind: ChildKind, namespace: &str, name: &str, settled: bool) {
        if let Some(c) = self.children.get_mut(&(kind, ObjKey::new(namespace, name))) {
            if settled {
                let tree = c.settle(!self.replay);
                self.spent.child(tree.map(Child::Live));
            } else {
                c.wake()
            }
        }
    }

    fn store_get(&self, kind: ResourceKind, key: &ObjKey) -> Option<Value> {
        match kind {
            ResourceKind::OperationTemplate => self.templates.get(&key.name).and_then(|t| serde_json::to_value(t).ok()),
            ResourceKind::ApplicationInstance => self.apps.get(key).map(|a| a.raw.clone()),
            ResourceKind::Secret => self.secrets.contains(key).then_some(Value::Null),
            ResourceKind::Child(c) => self.children.get(&(c, key.clone())).map(|c| c.value().into_owned()),
            ResourceKind::Operation => None,
        }
    }

    fn store_keys(&self, kind: ResourceKind) -> Vec<ObjKey> {
        match kind {
            ResourceKind::OperationTemplate => {
                self.templates.keys().chain(self.bad_templates.keys()).map(|n| ObjKey::new("", n.clone())).collect()
            }
            ResourceKind::ApplicationInstance => self.apps.keys().cloned().collect(),
            ResourceKind::Secret => self.secrets.iter().cloned().collect(),
            ResourceKind::Child(c) => self.children.keys().filter(|(k, _)| *k == c).map(|(_, k)| k.clone()).collect(),
            ResourceKind::Operation => Vec::new(),
        }
    }

    /// Applies one object to the store (not Operations: the fold keeps those as state).
    pub fn apply(&mut self, kind: ResourceKind, key: ObjKey, obj: Value) {
        match kind {
            ResourceKind::OperationTemplate => match serde_json::from_value::<OperationTemplate>(obj) {
                Ok(t) => {
                    self.bad_templates.remove(&key.name);
                    self.templates.insert(key.name, Arc::new(Template::new(t)));
                }
                Err(e) => {
                    self.templates.remove(&key.name);
                    self.bad_templates.insert(key.name, e.to_string());
                }
            },
            ResourceKind::ApplicationInstance => {
                let old = self.apps.insert(key, App::new(obj));
                self.spent.app(old);
            }
            ResourceKind::Secret => {
                self.secrets.insert(key);
            }
            ResourceKind::Child(c) => {
                // A settled child stays settled: its Operation has ended.
                let key = (c, key);
                let mut child = Child::Live(obj);
                if self.children.get(&key).is_some_and(Child::is_settled) {
                    let tree = child.settle(!self.replay);
                    self.spent.child(tree.map(Child::Live));
                }
                let old = self.children.insert(key, child);
                self.spent.child(old);
            }
            ResourceKind::Operation => {}
        }
    }

    pub fn delete(&mut self, kind: ResourceKind, key: &ObjKey) -> Option<Value> {
        match kind {
            ResourceKind::OperationTemplate => {
                self.bad_templates.remove(&key.name);
                self.templates.remove(&key.name).and_then(|t| serde_json::to_value(t).ok())
            }
            ResourceKind::ApplicationInstance => self.apps.remove(key).map(|a| a.raw),
            ResourceKind::Secret => self.secrets.remove(key).then_some(Value::Null),
            ResourceKind::Child(c) => self.children.remove(&(c, key.clone())).map(Child::into_value),
            ResourceKind::Operation => None,
        }
    }

    pub fn relist_begin(&mut self, kind: ResourceKind) {
        self.relists.insert(kind, BTreeMap::new());
    }

    pub fn relist_item(&mut self, kind: ResourceKind, key: ObjKey, obj: &Value) {
        self.relists.entry(kind).or_default().insert(key, Listed::new(obj));
    }

    /// Swaps a finished relist in and returns what changed (Operations are diffed by the caller).
    pub fn relist_end(&mut self, kind: ResourceKind) -> (Vec<Change>, BTreeMap<ObjKey, Listed>) {
        let fresh = self.relists.remove(&kind).unwrap_or_default();
        self.synced.insert(kind);
        if kind == ResourceKind::Operation {
            return (Vec::new(), fresh);
        }
        let mut changes = Vec::new();
        for key in self.store_keys(kind) {
            if !fresh.contains_key(&key) {
                let old = self.delete(kind, &key);
                changes.push(Change::Deleted(kind, key, old));
            }
        }
        for (key, listed) in fresh {
            let obj = listed.value();
            let same = match kind {
                ResourceKind::Secret => self.secrets.contains(&key),
                _ => self.store_get(kind, &key).as_ref() == Some(&obj),
            };
            if !same {
                self.apply(kind, key.clone(), obj.clone());
                changes.push(Change::Applied(kind, key, obj));
            }
        }
        (changes, BTreeMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(phase: &str) -> Value {
        json!({ "metadata": { "name": "j", "namespace": "ns" }, "status": { "phase": phase } })
    }

    #[test]
    fn replaced_objects_are_held_for_the_caller_only_when_asked() {
        let kind = ResourceKind::Child(ChildKind::Job);
        let key = ObjKey::new("ns", "j");
        let mut w = World::default();
        w.apply(kind, key.clone(), job("a"));
        w.apply(kind, key.clone(), job("b"));
        assert!(w.spent.children.is_empty(), "freed at once by default");
        w.spent.on = true;
        w.apply(kind, key.clone(), job("c"));
        w.apply(ResourceKind::ApplicationInstance, key.clone(), json!({ "metadata": { "name": "j" } }));
        w.apply(ResourceKind::ApplicationInstance, key.clone(), json!({ "metadata": { "name": "j" }, "spec": {} }));
        let spent = w.spent.take();
        assert_eq!(spent.children, vec![Child::Live(job("b"))]);
        assert_eq!(spent.apps.len(), 1);
        assert_eq!(spent.apps[0].raw, json!({ "metadata": { "name": "j" } }));
        assert!(w.spent.children.is_empty() && w.spent.apps.is_empty() && w.spent.on);
        assert_eq!(*w.child(ChildKind::Job, "ns", "j").unwrap(), job("c"));
    }

    #[test]
    fn an_ended_operations_child_is_compacted_and_its_tree_handed_back_when_asked() {
        let kind = ResourceKind::Child(ChildKind::Job);
        for on in [false, true] {
            let mut w = World::default();
            w.spent.on = on;
            w.apply(kind, ObjKey::new("ns", "j"), job("a"));
            w.keep_child(ChildKind::Job, "ns", "j", true);
            w.apply(kind, ObjKey::new("ns", "j"), job("b"));
            let c = &w.children[&(ChildKind::Job, ObjKey::new("ns", "j"))];
            assert!(c.is_settled(), "a newer version of an ended Operation's child stays compacted");
            assert_eq!(*c.value(), job("b"));
            let spent = w.spent.take();
            // The tree of "a" as it was compacted, the tree of "b" as it was, then the packed
            // "a" that "b" replaced.
            let trees: Vec<Value> = spent.children.iter().map(|c| c.value().into_owned()).collect();
            let want = if on { vec![job("a"), job("b"), job("a")] } else { vec![] };
            assert_eq!(trees, want);
        }
    }
}
