// levee status page: polls /admin/status every second and renders routes, pools and
// schedules; the switch buttons call PUT /admin/routes/{name}/switch with the token typed
// above (kept for this tab only). No external assets: this file is served by levee itself.
"use strict";
const $ = (s) => document.querySelector(s);
const prev = new Map();
const tokenBox = $("#token");
tokenBox.value = sessionStorage.getItem("levee-token") || "";
tokenBox.addEventListener("change", () => sessionStorage.setItem("levee-token", tokenBox.value));

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function rate(key, value, now) {
  const p = prev.get(key);
  prev.set(key, { value, now });
  if (!p || now <= p.now) return "–";
  return ((value - p.value) / ((now - p.now) / 1000)).toFixed(1);
}

async function setSwitch(route, state) {
  const body = { state, reason: $("#reason").value || undefined };
  const ttl = $("#ttl").value.trim();
  if (ttl && state !== "on") body.ttl = ttl;
  const headers = { "content-type": "application/json" };
  if (tokenBox.value) headers["authorization"] = "Bearer " + tokenBox.value;
  const r = await fetch(`/admin/routes/${encodeURIComponent(route)}/switch`, {
    method: "PUT", headers, body: JSON.stringify(body),
  });
  const j = await r.json().catch(() => ({}));
  $("#result").textContent = r.ok
    ? `${route}: ${j.state}${j.until ? " until " + j.until : ""} (by ${j.by})`
    : `${route}: ${r.status} ${j.error || ""}`;
  refresh();
}

function render(s) {
  const now = Date.now();
  const pools = new Map(s.pools.map((p) => [p.name, p]));
  const rb = $("#routes tbody");
  rb.replaceChildren(...s.routes.map((r) => {
    const tr = el("tr");
    tr.dataset.route = r.name;
    const sw = r.switch || { state: "on" };
    const rejected = Object.values(r.rejections_total || {}).reduce((a, b) => a + b, 0);
    const swText = sw.state + (sw.source === "schedule" ? ` (schedule ${sw.schedule})` : sw.source === "manual" ? ` (${sw.by}${sw.until ? ", until " + sw.until.slice(11, 16) : ""})` : "");
    tr.append(
      el("td", r.name), el("td", r.pool), el("td", r.priority),
      el("td", swText, "switch " + sw.state),
      el("td", r.breaker || "–", r.breaker || ""),
      el("td", rate("req:" + r.name, r.requests_total, now), "num"),
      el("td", rate("rej:" + r.name, rejected, now), "num"),
      el("td", pools.has(r.pool) ? String(pools.get(r.pool).limit) : "–"),
    );
    const td = el("td");
    for (const st of ["on", "degrade", "off"]) {
      const b = el("button", st);
      b.dataset.state = st;
      b.addEventListener("click", () => setSwitch(r.name, st));
      td.append(b);
    }
    tr.append(td);
    return tr;
  }));
  const pb = $("#pools tbody");
  pb.replaceChildren(...s.pools.map((p) => {
    const tr = el("tr");
    const eps = el("td");
    for (const e of p.endpoints) eps.append(el("span", e.endpoint + " ", e.up ? "up" : "down"));
    tr.append(
      el("td", p.name),
      // Units (cost-weighted); an adaptive pool also limits requests whatever their cost.
      el("td", p.request_limit == null ? String(p.limit) : `${p.limit} · ${p.request_limit} req`, "num"),
      el("td", p.request_limit == null ? String(p.inflight) : `${p.inflight} · ${p.requests_inflight} req`, "num"),
      el("td", `${p.queue.depth}/${p.queue.max}`, "num"),
      el("td", p.cutoff === "sheddable" ? "nothing shed" : p.cutoff),
      el("td", Number(p.pressure).toFixed(2), "num"), eps,
    );
    return tr;
  }));
  const sl = $("#schedules");
  const sch = s.schedules || [];
  sl.replaceChildren(...(sch.length ? sch.map((x) => el("li",
    `${x.name}: ${x.status}, ${x.from} → ${x.until}: ` +
    Object.entries(x.switches).map(([k, v]) => `${k} ${v}`).join(", "), x.status === "active" ? "degrade" : "")) : [el("li", "none")]));
  $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
}

async function refresh() {
  try {
    const r = await fetch("/admin/status", { cache: "no-store" });
    render(await r.json());
    $("#conn").textContent = "live";
    $("#conn").className = "pill on";
  } catch (e) {
    $("#conn").textContent = "no connection";
    $("#conn").className = "pill off";
  }
}

refresh();
setInterval(refresh, 1000);
