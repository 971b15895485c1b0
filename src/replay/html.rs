//! The HTML view: one self-contained page (no network fetch) with a swimlane timeline per
//! Operation: records, condition transitions, commands and children in four rows, ordered by
//! seq. Clicking an item shows it, with its object's field-level diff or the command.

use serde_json::Value;

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>vworkspace replay</title>
<style>
body{font:13px system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:16px}h2{font-size:14px;margin:18px 0 4px}
.lane{border:1px solid #ccc;border-radius:4px;padding:4px;overflow-x:auto}
.row{display:flex;align-items:center;min-height:22px}
.row .label{width:90px;flex:none;color:#666}
.cells{position:relative;height:18px;flex:none}
.item{position:absolute;top:2px;width:10px;height:14px;border-radius:2px;cursor:pointer;border:0;padding:0}
.record{background:#8aa}.outcome{background:#a8c}.transition{background:#e93}.command{background:#48c}.child{background:#5a5}
.item.sel{outline:2px solid #000}
#detail{position:sticky;bottom:0;background:#fafafa;border-top:2px solid #999;padding:8px;max-height:40vh;overflow:auto;white-space:pre-wrap;font-family:monospace}
table{border-collapse:collapse}td{border:1px solid #ddd;padding:2px 6px;vertical-align:top}
.meta{color:#666}
</style></head><body>
<h1>Replay of <span id="journal"></span></h1>
<div class="meta" id="summary"></div>
<div id="lanes"></div>
<div id="detail">Click an item to see it.</div>
<script type="application/json" id="view">__VIEW__</script>
<script>
"use strict";
const view = JSON.parse(document.getElementById("view").textContent);
document.getElementById("journal").textContent = view.journal;
document.getElementById("summary").textContent =
  view.records + " records, seq " + view.firstSeq + ".." + view.lastSeq + ", " + view.operations.length + " Operation(s)" +
  (view.check ? (view.check.ok ? " - check ok" : " - DIVERGENCE at seq " + view.check.divergence.seq) : "");
const CHILD = /^observed \w+ (Backup|Restore|Workflow|Job|VolumeSnapshot|ReplicationSource|ReplicationDestination) /;
const rowOf = (i) => i.kind === "record" && CHILD.test(i.text) ? "child" : i.kind;
const ROWS = [["record", "records"], ["outcome", "outcomes"], ["transition", "transitions"], ["command", "commands"], ["child", "children"]];
const detail = document.getElementById("detail");
let selected = null;
function show(item, el) {
  if (selected) selected.classList.remove("sel");
  selected = el; el.classList.add("sel");
  detail.textContent = "";
  const head = document.createElement("div");
  head.textContent = "seq " + item.seq + "  " + item.at + "  " + item.kind + "\n" + item.text;
  detail.appendChild(head);
  if (item.detail && item.detail.diff) {
    const t = document.createElement("table");
    for (const c of item.detail.diff) {
      const tr = t.insertRow();
      for (const v of [c.path, JSON.stringify(c.a), JSON.stringify(c.b)]) tr.insertCell().textContent = v;
    }
    detail.appendChild(t);
  } else if (item.detail) {
    const pre = document.createElement("div");
    pre.textContent = JSON.stringify(item.detail, null, 2);
    detail.appendChild(pre);
  }
}
const lanes = document.getElementById("lanes");
for (const op of view.operations) {
  const h = document.createElement("h2");
  h.textContent = op.operation + "  " + op.phase;
  h.dataset.operation = op.operation;
  lanes.appendChild(h);
  const lane = document.createElement("div");
  lane.className = "lane";
  const seqs = [...new Set(op.timeline.map((i) => i.seq))].sort((a, b) => a - b);
  const x = new Map(seqs.map((s, n) => [s, n * 14]));
  for (const [row, label] of ROWS) {
    const r = document.createElement("div"); r.className = "row";
    const l = document.createElement("div"); l.className = "label"; l.textContent = label; r.appendChild(l);
    const cells = document.createElement("div"); cells.className = "cells"; cells.style.width = (seqs.length * 14 + 10) + "px";
    const stacked = new Map();
    for (const item of op.timeline.filter((i) => rowOf(i) === row)) {
      const b = document.createElement("button");
      b.className = "item " + row;
      const k = stacked.get(item.seq) || 0; stacked.set(item.seq, k + 1);
      b.style.left = (x.get(item.seq) + Math.min(k, 3)) + "px";
      b.title = "seq " + item.seq + ": " + item.text;
      b.addEventListener("click", () => show(item, b));
      cells.appendChild(b);
    }
    r.appendChild(cells); lane.appendChild(r);
  }
  lanes.appendChild(lane);
}
</script></body></html>
"#;

/// The page for a view; the JSON is embedded so that `</script>` in data cannot end the script.
pub fn page(view: &Value) -> String {
    let json = serde_json::to_string(view).unwrap_or_else(|_| "{}".into()).replace('<', "\\u003c");
    PAGE.replace("__VIEW__", &json)
}
