// hilos-runner example page: calls the API across origins with a bearer token, starts runs and bulk runs,
// and follows each one until it has finished. No framework, no build step.
"use strict";

const POLL_MS = 2000;
// A run's statuses after which nothing changes any more (docs/api.md, "Run records").
const FINISHED = new Set(["COMPLETED", "CANCELED", "FAILED", "REJECTED"]);

const $ = (id) => document.getElementById(id);

class ApiError extends Error {}

async function callApi(method, path, { body, contentType } = {}) {
  const base = $("api-url").value.replace(/\/+$/, "");
  const headers = { Authorization: `Bearer ${$("token").value.trim()}` };
  if (body !== undefined) {
    headers["Content-Type"] = contentType;
    // The same key on a retry of this request would start Hilos at most once.
    headers["Idempotency-Key"] = crypto.randomUUID();
  }
  let answer;
  try {
    answer = await fetch(base + path, { method, headers, body });
  } catch (error) {
    // fetch gives no detail on purpose: a network failure and a CORS refusal look the same to the page.
    throw new ApiError(
      `could not reach ${base} (the network, or this page's origin ${location.origin} is not one of the ` +
        `API's CorsAllowedOrigins; the browser console says which)`,
    );
  }
  const text = await answer.text();
  const data = text ? JSON.parse(text) : null;
  if (!answer.ok) {
    const details = (data && data.details ? data.details : []).map((d) => `  ${d.field}: ${d.reason}`);
    const code = data && data.code ? `${data.code}: ${data.message}` : text;
    const retry = answer.headers.get("Retry-After");
    throw new ApiError([`${answer.status} ${code}${retry ? ` (retry after ${retry} s)` : ""}`, ...details].join("\n"));
  }
  return data;
}

function showError(error) {
  $("error").textContent = error instanceof ApiError ? error.message : String(error);
  $("error").hidden = false;
}

function addRow(kind, id, numContacts) {
  const row = document.createElement("tr");
  row.dataset.kind = kind;
  row.dataset.id = id;
  for (const [name, text] of [["kind", kind], ["id", id], ["status", "…"], ["contacts", numContacts], ["counters", ""]]) {
    const cell = document.createElement("td");
    cell.className = name;
    cell.textContent = text;
    row.append(cell);
  }
  $("runs").prepend(row);
  return row;
}

function showProgress(row, status, counters, finished) {
  row.querySelector(".status").textContent = status;
  row.querySelector(".counters").textContent = counters
    ? Object.entries(counters).map(([name, count]) => `${name} ${count}`).join(", ")
    : "";
  row.dataset.status = status;
  row.querySelector(".status").classList.toggle("finished", finished);
}

// Reads `read()` every POLL_MS until `update` says it has finished; a failed read is shown and tried again.
async function follow(read, update) {
  for (;;) {
    try {
      if (update(await read())) return;
    } catch (error) {
      showError(error);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function followRun(row, runId) {
  return follow(
    () => callApi("GET", `/runs/${runId}`),
    (run) => {
      const finished = FINISHED.has(run.status);
      showProgress(row, run.status, run.counters, finished);
      return finished;
    },
  );
}

function followBulkRun(row, bulkId) {
  return follow(
    () => callApi("GET", `/bulk-runs/${bulkId}`),
    (bulk) => {
      // Finished once every chunk is: handed to Hilos and finished there, or refused.
      const finished = bulk.chunks.length > 0 && bulk.chunks.every((chunk) => FINISHED.has(chunk.status));
      const status = `${bulk.status}, chunks finished ${bulk.chunks_finished}/${bulk.num_chunks}`;
      showProgress(row, finished ? `${status} (done)` : status, bulk.counters, finished);
      return finished;
    },
  );
}

function contactsFromText(text) {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const [phone, firstName] = line.split(",").map((part) => part.trim());
      return firstName ? { phone, first_name: firstName } : { phone };
    });
}

async function startRun(event) {
  event.preventDefault();
  $("error").hidden = true;
  const flowId = $("flow-id").value.trim();
  const body = JSON.stringify({ contact_list: contactsFromText($("contacts").value) });
  try {
    const answer = await callApi("POST", `/flows/${flowId}/runs`, { body, contentType: "application/json" });
    const run = answer.run;
    const row = addRow("run", run.run_id, run.num_contacts);
    showProgress(row, run.status, run.counters, FINISHED.has(run.status));
    followRun(row, run.run_id);
  } catch (error) {
    showError(error);
  }
}

async function startBulkRun(event) {
  event.preventDefault();
  $("error").hidden = true;
  const flowId = $("flow-id").value.trim();
  const [file] = $("csv-file").files;
  try {
    const body = await file.text();
    const accepted = await callApi("POST", `/flows/${flowId}/bulk-runs`, { body, contentType: "text/csv" });
    const row = addRow("bulk", accepted.id, accepted.num_contacts);
    followBulkRun(row, accepted.id);
  } catch (error) {
    showError(error);
  }
}

async function configure() {
  // `make dev` serves config.json ({"api_url": ...}: never a token); ?api=URL overrides it.
  const fromQuery = new URLSearchParams(location.search).get("api");
  if (fromQuery) {
    $("api-url").value = fromQuery;
    return;
  }
  try {
    const answer = await fetch("config.json", { cache: "no-store" });
    if (answer.ok) $("api-url").value = (await answer.json()).api_url || "";
  } catch {
    // No config.json next to the page: type the URL.
  }
}

$("run-form").addEventListener("submit", startRun);
$("bulk-form").addEventListener("submit", startBulkRun);
document.body.dataset.ready = "false";
configure().finally(() => {
  document.body.dataset.ready = "true";
});
