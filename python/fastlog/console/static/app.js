// fastlog console: one page, routed by the URL's hash; every view is built from the JSON
// endpoints under /api. Text from the cluster is only ever set as textContent (never HTML).

import { formatNumber, lineChart } from "/static/chart.js";

const main = document.getElementById("main");
const errorBox = document.getElementById("error");
let info = {};
let refreshTimer = null;

// -- helpers ---------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// A read answered after the user went to another page: its page must not be drawn over the new one.
class Stale extends Error {}
let generation = 0;

async function api(path, body) {
  const options = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const asked = generation;
  const response = await fetch(path, options);
  if (body === undefined && asked !== generation) throw new Stale();
  const document = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) {
    if (response.status === 401 && info.login_required && path !== "/api/login") { info.logged_in = false; showLogin(); }
    throw new ApiError(response.status, document.error || `HTTP ${response.status}`);
  }
  return document;
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

function bytes(size) {
  if (size === null || size === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (size >= 1024 && i < units.length - 1) { size /= 1024; i++; }
  return (i ? size.toFixed(1) : size) + " " + units[i];
}

function when(ms) {
  return ms === null || ms === undefined || ms < 0 ? "–" : new Date(ms).toISOString().replace("T", " ").replace("Z", "");
}

function table(headers, rows, { sortable = false, id = null } = {}) {
  // headers: [{label, num}]; rows: arrays of cells (text or nodes); sortable by clicking a header
  const tbody = h("tbody");
  const fill = (list) => tbody.replaceChildren(...list.map((r) => h("tr", r.rowClass ? { class: r.rowClass } : {}, ...r.cells.map((c, i) => h("td", headers[i].num ? { class: "num" } : {}, c)))));
  const data = rows.map((r) => (Array.isArray(r) ? { cells: r } : r));
  let order = { column: -1, descending: false };
  const head = h("tr", {}, ...headers.map((col, i) => h("th", { class: [col.num ? "num" : "", sortable ? "sortable" : ""].join(" ").trim() || null, onclick: sortable ? () => sort(i) : null }, col.label)));
  function sort(column) {
    order = { column, descending: order.column === column ? !order.descending : false };
    const key = (r) => (r.sort ? r.sort[column] : r.cells[column]);
    data.sort((a, b) => {
      const x = key(a), y = key(b);
      const result = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return order.descending ? -result : result;
    });
    fill(data);
  }
  fill(data);
  return h("div", { class: "scroll" }, h("table", id ? { id } : {}, h("thead", {}, head), tbody));
}

function setPage(title, ...content) {
  document.title = `${title} · fastlog console`;
  main.replaceChildren(h("h1", {}, title), ...content.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

function formMessage(node, text, ok = false) {
  node.textContent = text;
  node.className = ok ? "form-ok" : "form-error";
}

// -- login -----------------------------------------------------------------------------

function showLogin() {
  clearInterval(refreshTimer);
  const message = h("p", { class: "form-error", id: "login-error" });
  const user = h("input", { name: "username", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password" });
  const form = h("form", { class: "inline", id: "login", onsubmit: async (event) => {
    event.preventDefault();
    try {
      await api("/api/login", { username: user.value, password: password.value });
      info = await api("/api/info");
      showWho();
      route();
    } catch (e) { formMessage(message, e.message); }
  } }, h("label", {}, "SASL username", user), h("label", {}, "Password", password), h("button", { class: "primary", type: "submit" }, "Log in"));
  setPage("Log in", h("p", { class: "muted" }, "This cluster wants SASL: log in as one of its users. Everything you do is checked against its ACLs."), form, message);
}

function showWho() {
  const who = document.getElementById("who");
  who.replaceChildren();
  if (info.read_only) who.append(h("span", { class: "badge warn", id: "read-only" }, "read-only"), " ");
  if (info.user) {
    who.append(info.user, h("button", { onclick: async () => { await api("/api/logout", {}); info = await api("/api/info"); showWho(); showLogin(); } }, "Log out"));
  }
}

// -- overview --------------------------------------------------------------------------

async function overview() {
  const data = await api("/api/overview");
  const card = (label, value, id) => h("div", { class: "card", id }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
  const history = data.history;
  const series = (key) => history.filter((p) => p[key] !== undefined).map((p) => ({ time: p.time, value: p[key] }));
  const charts = [lineChart("messages produced / s", series("produced_per_s")), lineChart("messages consumed / s (committed)", series("consumed_per_s"))];
  if (history.some((p) => p.bytes_in_per_s !== undefined)) {
    charts.push(lineChart("bytes in / s", series("bytes_in_per_s")), lineChart("bytes out / s", series("bytes_out_per_s")));
  }
  charts.push(lineChart("size on disk (bytes)", series("size_bytes")));
  setPage(
    "Overview",
    h("div", { class: "cards" },
      card("Brokers", data.brokers.length, "brokers"), card("Controller", data.controller < 0 ? "–" : data.controller),
      card("Topics", data.topics, "topic-count"), card("Partitions", data.partitions), card("Size", bytes(data.size_bytes)),
      card("Under-replicated", data.under_replicated.length, "under-replicated"), card("Offline", data.offline.length)),
    h("div", { class: "charts", id: "overview-charts" }, charts),
    h("p", { class: "muted" }, `Charts cover the last 15 minutes, one sample every ${data.sample_seconds} s.`),
    h("h2", {}, "Brokers"),
    table([{ label: "ID" }, { label: "Host" }, { label: "Port" }, { label: "Role" }],
      data.brokers.map((b) => [b.id, b.host, b.port, b.id === data.controller ? "controller" : ""])),
    data.under_replicated.length ? [h("h2", {}, "Under-replicated partitions"), h("p", {}, data.under_replicated.join(", "))] : [],
  );
  refreshTimer = setInterval(() => { if (location.hash === "" || location.hash === "#/") route(true); }, 5000);
}

// -- topics ----------------------------------------------------------------------------

async function topics() {
  const data = await api("/api/topics");
  const filter = h("input", { id: "topic-filter", placeholder: "filter by name", type: "search" });
  const holder = h("div");
  const render = () => {
    const wanted = filter.value.toLowerCase();
    const listed = data.topics.filter((t) => t.name.toLowerCase().includes(wanted));
    holder.replaceChildren(table(
      [{ label: "Topic" }, { label: "Partitions", num: true }, { label: "Messages", num: true }, { label: "Size", num: true }, { label: "Retention" }, { label: "Messages / s", num: true }],
      listed.map((t) => ({
        cells: [h("a", { href: `#/topics/${encodeURIComponent(t.name)}` }, t.name, t.internal ? " (internal)" : ""), t.partitions, t.messages, bytes(t.size_bytes),
          t.retention_ms === null ? "–" : Number(t.retention_ms) < 0 ? "forever" : `${formatNumber(Number(t.retention_ms) / 3600000)} h`, formatNumber(t.messages_per_s)],
        sort: [t.name, t.partitions, t.messages, t.size_bytes, Number(t.retention_ms), t.messages_per_s || 0],
      })),
      { sortable: true, id: "topics-table" }));
  };
  filter.addEventListener("input", render);
  render();
  setPage("Topics", h("div", { class: "toolbar" }, filter), holder);
}

async function topicPage(name, tab) {
  const data = await api(`/api/topics/${encodeURIComponent(name)}`);
  const body = h("div");
  const tabs = ["partitions", "configs", "messages", "produce"];
  const buttons = tabs.map((t) => h("button", { class: t === tab ? "active" : null, id: `tab-${t}`, onclick: () => { location.hash = `#/topics/${encodeURIComponent(name)}/${t}`; } }, t[0].toUpperCase() + t.slice(1)));
  setPage(`Topic ${name}`, h("p", { class: "muted" }, `id ${data.id} · replication factor ${data.replication_factor}${data.internal ? " · internal" : ""}`), h("div", { class: "tabs" }, buttons), body);
  if (tab === "configs") body.append(configsTab(name, data));
  else if (tab === "messages") body.append(messagesTab(name, data));
  else if (tab === "produce") body.append(produceTab(name, data));
  else body.append(table(
    [{ label: "Partition", num: true }, { label: "Start offset", num: true }, { label: "End offset", num: true }, { label: "Size", num: true }, { label: "Leader", num: true }, { label: "Replicas" }, { label: "ISR" }],
    data.partitions.map((p) => ({ rowClass: p.isr.length < p.replicas.length || p.leader < 0 ? "bad" : null,
      cells: [p.partition, p.start_offset ?? "–", p.end_offset ?? "–", bytes(p.size_bytes), p.leader, p.replicas.join(", "), p.isr.join(", ")] })),
    { id: "partitions-table" }));
}

function configsTab(name, data) {
  const message = h("p", { id: "config-message" });
  const confirmBox = h("div");
  const rows = data.configs.map((c) => {
    const input = h("input", { value: c.value ?? "", "data-config": c.name, disabled: c.read_only || info.read_only || null });
    const reset = c.source === "topic" && !info.read_only ? h("button", { onclick: () => propose({}, [c.name]) }, "reset to default") : null;
    return { cells: [c.name, c.read_only || info.read_only ? (c.sensitive ? "(hidden)" : c.value ?? "") : input, c.source, reset ? reset : ""], input, config: c };
  });
  async function propose(set, remove) {
    confirmBox.replaceChildren();
    try {
      await api(`/api/topics/${encodeURIComponent(name)}/configs`, { set, delete: remove, validate_only: true });
    } catch (e) { formMessage(message, e.message); return; }
    formMessage(message, "");
    const changes = [...Object.entries(set).map(([k, v]) => `${k} = ${v}`), ...remove.map((k) => `${k} back to its default`)];
    confirmBox.replaceChildren(h("div", { class: "confirm", id: "config-confirm" },
      h("p", {}, "Apply these changes to topic ", h("b", {}, name), "?"), h("ul", {}, changes.map((c) => h("li", {}, c))),
      h("button", { class: "primary", id: "config-apply", onclick: async () => {
        try {
          await api(`/api/topics/${encodeURIComponent(name)}/configs`, { set, delete: remove });
          route(true);
        } catch (e) { confirmBox.replaceChildren(); formMessage(message, e.message); }
      } }, "Apply"), " ", h("button", { onclick: () => confirmBox.replaceChildren() }, "Cancel")));
  }
  const save = h("button", { class: "primary", id: "config-save", disabled: info.read_only || null, onclick: () => {
    const set = {};
    for (const row of rows) if (row.input && !row.config.read_only && row.input.value !== (row.config.value ?? "")) set[row.config.name] = row.input.value;
    if (!Object.keys(set).length) { formMessage(message, "nothing changed"); return; }
    propose(set, []);
  } }, "Review changes");
  return h("div", {}, info.read_only ? h("p", { class: "muted" }, "Read-only console: configs cannot be changed here.") : h("div", { class: "toolbar" }, save),
    message, confirmBox, table([{ label: "Config" }, { label: "Value" }, { label: "Source" }, { label: "" }], rows, { id: "configs-table" }));
}

function rendered(item) {
  if (item === null || item === undefined) return h("span", { class: "muted" }, "null");
  const tag = item.schema_id !== undefined ? `${item.format} · schema ${item.schema_id}` : item.format;
  return h("div", {}, h("span", { class: "badge" }, tag), item.truncated ? h("span", { class: "muted" }, " (cut short)") : null, h("pre", { "data-base64": item.base64 }, item.text));
}

function messagesTab(name, data) {
  const partition = h("select", { id: "browse-partition" }, data.partitions.map((p) => h("option", { value: p.partition }, `partition ${p.partition}`)));
  const mode = h("select", { id: "browse-mode" }, h("option", { value: "newest" }, "newest"), h("option", { value: "offset" }, "from offset"), h("option", { value: "timestamp" }, "from time (ms or ISO)"));
  const from = h("input", { id: "browse-from", placeholder: "offset or time" });
  const limit = h("input", { id: "browse-limit", type: "number", value: 50, min: 1, max: 500 });
  const search = h("input", { id: "browse-search", type: "search", placeholder: "search the loaded messages" });
  const message = h("p", { id: "browse-message" });
  const results = h("div", { id: "browse-results" });
  let loaded = [];
  const show = () => {
    const wanted = search.value.toLowerCase();
    const text = (item) => (item ? item.text.toLowerCase() : "");
    const listed = loaded.filter((m) => !wanted || text(m.key).includes(wanted) || text(m.value).includes(wanted) || m.headers.some((x) => x.key.toLowerCase().includes(wanted) || text(x.value).includes(wanted)));
    results.replaceChildren(table([{ label: "Offset", num: true }, { label: "Timestamp" }, { label: "Key" }, { label: "Value" }, { label: "Headers" }],
      listed.map((m) => [m.offset, when(m.timestamp), rendered(m.key), rendered(m.value), h("div", {}, m.headers.map((x) => h("div", {}, h("b", {}, x.key), ": ", rendered(x.value))))]),
      { id: "messages-table" }));
  };
  search.addEventListener("input", show);
  const load = async (event) => {
    event.preventDefault();
    const query = new URLSearchParams({ partition: partition.value, limit: limit.value });
    if (mode.value === "offset") query.set("offset", from.value.trim());
    if (mode.value === "timestamp") {
      const raw = from.value.trim();
      const ms = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
      if (Number.isNaN(ms)) { formMessage(message, `${raw || "(empty)"} is not a time`); return; }
      query.set("timestamp", String(ms));
    }
    try {
      const page = await api(`/api/topics/${encodeURIComponent(name)}/messages?${query}`);
      loaded = page.messages;
      formMessage(message, `${loaded.length} messages, offsets ${page.first_offset}–${page.next_offset - 1} of ${page.start_offset}–${page.end_offset - 1}`, true);
      show();
    } catch (e) { formMessage(message, e.message); }
  };
  return h("div", {}, h("form", { class: "inline", id: "browse", onsubmit: load },
    h("label", {}, "Partition", partition), h("label", {}, "Start", mode), h("label", {}, "Offset / time", from), h("label", {}, "Count", limit),
    h("button", { class: "primary", type: "submit", id: "browse-load" }, "Load")), h("div", { class: "toolbar" }, search), message, results);
}

function produceTab(name, data) {
  if (info.read_only) return h("p", { class: "muted" }, "Read-only console: no test messages.");
  const partition = h("select", { id: "produce-partition" }, data.partitions.map((p) => h("option", { value: p.partition }, `partition ${p.partition}`)));
  const key = h("input", { id: "produce-key", placeholder: "(no key)" });
  const value = h("textarea", { id: "produce-value" });
  const headers = h("textarea", { id: "produce-headers", placeholder: "one header per line: name=value" });
  const message = h("p", { id: "produce-message" });
  const send = async (event) => {
    event.preventDefault();
    const parsed = [];
    for (const line of headers.value.split("\n").filter((l) => l.trim())) {
      const at = line.indexOf("=");
      if (at <= 0) { formMessage(message, `header line "${line}" is not name=value`); return; }
      parsed.push({ key: line.slice(0, at).trim(), value: line.slice(at + 1) });
    }
    try {
      const result = await api(`/api/topics/${encodeURIComponent(name)}/messages`, { partition: Number(partition.value), key: key.value === "" ? null : key.value, value: value.value, headers: parsed });
      formMessage(message, `written to partition ${result.partition} at offset ${result.offset}`, true);
    } catch (e) { formMessage(message, e.message); }
  };
  return h("form", { id: "produce", onsubmit: send }, h("div", { class: "toolbar" }, h("label", {}, "Partition", partition), h("label", {}, "Key", key)),
    h("div", { class: "toolbar" }, h("label", {}, "Value", value), h("label", {}, "Headers", headers)), h("button", { class: "primary", type: "submit", id: "produce-send" }, "Send test message"), message);
}

// -- consumer groups -------------------------------------------------------------------

async function groups() {
  const data = await api("/api/groups");
  setPage("Consumer groups", data.groups.length ? table(
    [{ label: "Group" }, { label: "State" }, { label: "Protocol" }, { label: "Lag", num: true }],
    data.groups.map((g) => ({ cells: [h("a", { href: `#/groups/${encodeURIComponent(g.group)}` }, g.group), g.state, g.protocol_type, g.lag ?? "–"], sort: [g.group, g.state, g.protocol_type, g.lag ?? -1] })),
    { sortable: true, id: "groups-table" }) : h("p", { class: "muted" }, "No consumer groups."));
}

async function groupPage(groupId) {
  const data = await api(`/api/groups/${encodeURIComponent(groupId)}`);
  const lagPoints = data.lag_history.map((p) => ({ time: p.time, value: p.lag }));
  const members = data.members.length ? table([{ label: "Member" }, { label: "Client id" }, { label: "Host" }, { label: "Partitions" }],
    data.members.map((m) => [m.member_id, m.client_id, m.host, data.partitions.filter((p) => p.consumer_id === m.member_id).map((p) => `${p.topic}-${p.partition}`).join(", ")]), { id: "members-table" })
    : h("p", { class: "muted" }, "No members.");
  setPage(`Group ${groupId}`,
    h("div", { class: "cards" }, h("div", { class: "card" }, h("div", { class: "label" }, "State"), h("div", { class: "value", id: "group-state" }, data.state)),
      h("div", { class: "card" }, h("div", { class: "label" }, "Members"), h("div", { class: "value" }, data.members.length)),
      h("div", { class: "card" }, h("div", { class: "label" }, "Total lag"), h("div", { class: "value", id: "total-lag" }, data.total_lag))),
    h("div", { class: "charts", id: "lag-chart" }, lineChart("total lag (messages)", lagPoints)),
    h("h2", {}, "Members"), members,
    h("h2", {}, "Offsets and lag"),
    table([{ label: "Topic" }, { label: "Partition", num: true }, { label: "Committed", num: true }, { label: "End", num: true }, { label: "Lag", num: true }, { label: "Member" }],
      data.partitions.map((p) => [p.topic, p.partition, p.current_offset ?? "–", p.log_end_offset ?? "–", p.lag ?? "–", p.consumer_id || ""]), { id: "lag-table" }),
    info.read_only ? [] : resetForm(groupId, data));
  refreshTimer = setInterval(() => { if (location.hash.startsWith("#/groups/") && !resetInUse()) route(true); }, 5000);
}

// A refresh would throw away a reset being planned.
function resetInUse() {
  const form = document.getElementById("reset");
  return Boolean(form && (form.contains(document.activeElement) || document.getElementById("reset-value").value || document.getElementById("reset-plan").children.length));
}

function resetForm(groupId, data) {
  const topicsOfGroup = [...new Set(data.partitions.map((p) => p.topic))];
  const topic = h("select", { id: "reset-topic" }, h("option", { value: "" }, "every topic with offsets"), topicsOfGroup.map((t) => h("option", { value: t }, t)));
  const to = h("select", { id: "reset-to" }, ["earliest", "latest", "offset", "timestamp"].map((t) => h("option", { value: t }, t)));
  const value = h("input", { id: "reset-value", placeholder: "offset or time (ms / ISO)" });
  const message = h("p", { id: "reset-message" });
  const plan = h("div", { id: "reset-plan" });
  const body = (execute) => {
    let amount = 0;
    if (to.value === "offset" || to.value === "timestamp") {
      const raw = value.value.trim();
      amount = to.value === "timestamp" && !/^-?\d+$/.test(raw) ? Date.parse(raw) : /^-?\d+$/.test(raw) ? Number(raw) : NaN;
      if (Number.isNaN(amount)) throw new Error(`${raw || "(empty)"} is not ${to.value === "offset" ? "an offset" : "a time"}`);
    }
    return { topic: topic.value || null, to: to.value, value: amount, execute };
  };
  const submit = async (event) => {
    event.preventDefault();
    plan.replaceChildren();
    try {
      const result = await api(`/api/groups/${encodeURIComponent(groupId)}/reset`, body(false));
      formMessage(message, "Dry run: nothing changed yet.", true);
      plan.replaceChildren(table([{ label: "Topic" }, { label: "Partition", num: true }, { label: "Committed", num: true }, { label: "New offset", num: true }],
        result.offsets.map((o) => [o.topic, o.partition, o.current_offset < 0 ? "–" : o.current_offset, o.new_offset]), { id: "reset-plan-table" }),
      h("button", { class: "danger", id: "reset-execute", onclick: async () => {
        try {
          await api(`/api/groups/${encodeURIComponent(groupId)}/reset`, body(true));
          plan.replaceChildren();
          await route(true);
          // the page was built anew: say so in its form, not in the one just replaced
          const fresh = document.getElementById("reset-message");
          if (fresh) formMessage(fresh, "Offsets reset.", true);
        } catch (e) { formMessage(message, e.message); }
      } }, "Execute"));
    } catch (e) { formMessage(message, e.message); }
  };
  return [h("h2", {}, "Reset offsets"), h("p", { class: "muted" }, "Only while the group has no members. Plan first, then execute."),
    h("form", { class: "inline", id: "reset", onsubmit: submit }, h("label", {}, "Topic", topic), h("label", {}, "To", to), h("label", {}, "Value", value),
      h("button", { class: "primary", type: "submit", id: "reset-plan-button" }, "Plan")), message, plan];
}

// -- schemas ---------------------------------------------------------------------------

async function schemas() {
  if (!info.schema_registry) { setPage("Schemas", h("p", { class: "muted", id: "no-registry" }, "This console knows no schema registry.")); return; }
  const data = await api("/api/schemas");
  setPage("Schemas", h("p", { class: "muted" }, `Global compatibility: ${data.compatibility}`),
    data.subjects.length ? table([{ label: "Subject" }], data.subjects.map((s) => [h("a", { href: `#/schemas/${encodeURIComponent(s)}` }, s)]), { id: "subjects-table" }) : h("p", { class: "muted" }, "No subjects."));
}

async function subjectPage(subject) {
  const data = await api(`/api/schemas/${encodeURIComponent(subject)}`);
  const versions = data.versions.map((v) => v.version);
  const pick = (id, chosen) => h("select", { id }, versions.map((v) => h("option", { value: v, selected: v === chosen || null }, `version ${v}`)));
  const from = pick("diff-from", versions[Math.max(0, versions.length - 2)]);
  const to = pick("diff-to", versions[versions.length - 1]);
  const diff = h("pre", { class: "diff", id: "diff" });
  const showDiff = async () => {
    try {
      const result = await api(`/api/schemas/${encodeURIComponent(subject)}/diff?from=${from.value}&to=${to.value}`);
      diff.replaceChildren(...(result.diff.length ? result.diff : ["(no difference)"]).map((line) => h("div", { class: /^(\+\+\+|---) /.test(line) ? null : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : null }, line)));
    } catch (e) { diff.textContent = e.message; }
  };
  from.addEventListener("change", showDiff);
  to.addEventListener("change", showDiff);
  setPage(`Subject ${subject}`, h("p", { class: "muted" }, `Compatibility: ${data.compatibility}`),
    table([{ label: "Version", num: true }, { label: "Id", num: true }, { label: "Type" }, { label: "Schema" }],
      data.versions.map((v) => [v.version, v.id, v.schemaType || "AVRO", h("pre", {}, prettySchema(v.schema))]), { id: "versions-table" }),
    h("h2", {}, "Differences"), h("div", { class: "toolbar" }, h("label", {}, "From", from), h("label", {}, "To", to)), diff);
  showDiff();
}

function prettySchema(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

// -- routing ---------------------------------------------------------------------------

async function route(refresh = false) {
  generation++;
  clearInterval(refreshTimer);
  if (info.login_required && !info.logged_in) { showLogin(); return; }
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const page = parts[0] || "overview";
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.page === page);
  if (!refresh) showError("");
  try {
    if (page === "topics" && parts[1]) await topicPage(parts[1], parts[2] || "partitions");
    else if (page === "topics") await topics();
    else if (page === "groups" && parts[1]) await groupPage(parts[1]);
    else if (page === "groups") await groups();
    else if (page === "schemas" && parts[1]) await subjectPage(parts[1]);
    else if (page === "schemas") await schemas();
    else await overview();
    if (refresh) showError("");
  } catch (e) {
    if (e instanceof Stale || (e instanceof ApiError && e.status === 401)) return;
    showError(e.message);
    if (!refresh) setPage("Not available", h("p", { class: "muted" }, e.message));
  }
}

window.addEventListener("hashchange", () => route());
info = await api("/api/info").catch((e) => { showError(e.message); return {}; });
showWho();
document.getElementById("metrics-link").hidden = !info.metrics;
route();
