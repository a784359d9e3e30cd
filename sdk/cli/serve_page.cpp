// The live page: the dashboard's template with data for an empty run, and the script that adds each
// snapshot to every chart and table as the server announces it, keeping the user's selection.
#include "cli/serve_page.hpp"

#include <rapidjson/document.h>

#include "detail/json_writer.hpp"
#include "report/charts.hpp"
#include "report/dashboard.hpp"

namespace neuronmap::cli {

std::string live_page(const std::string& echarts, const std::string& run_json, const std::string& title) {
  rapidjson::Document run;
  const bool ready = !run_json.empty() && !run.Parse(run_json.c_str()).HasParseError() && run.IsObject();
  const auto text = [&](const char* key) -> std::string {
    return ready && run.HasMember(key) && run[key].IsString() ? run[key].GetString() : std::string();
  };
  report::TimelineData timeline;
  if (ready && run.HasMember("layers") && run["layers"].IsArray())
    for (const auto& l : run["layers"].GetArray())
      if (l.IsObject() && l.HasMember("name") && l["name"].IsString()) timeline.layers.push_back(l["name"].GetString());
  const auto n = timeline.layers.size();
  timeline.groups.assign(n, {});
  timeline.cohesion.assign(n, {});
  timeline.dead_rate.assign(n, {});
  timeline.cka.assign(n, {});

  detail::JsonWriter w(detail::JsonLayout::compact, detail::JsonEscape::html);
  w.begin_object();
  w.key("live").begin_object();
  w.field("ready", ready);
  w.field("generation", ready && run.HasMember("generation") && run["generation"].IsUint64()
                            ? run["generation"].GetUint64()
                            : std::uint64_t{0});
  w.end_object();
  w.key("run").begin_object();
  w.field("file", text("file")).field("device", text("device")).field("torch_version", text("torch_version"));
  w.field("library_version", text("library_version")).field("created", text("created"));
  w.field("snapshots", 0);
  w.key("layers").array(timeline.layers);
  w.end_object();
  report::write_dashboard_colors(w);
  report::write_dashboard_timeline(w, timeline);
  report::write_dashboard_events(w, {});
  w.key("details").begin_array().end_array();
  w.end_object();
  std::string html = report::dashboard_html(echarts, title, w.take());
  const auto body_end = html.rfind("</body>");
  html.insert(body_end == std::string::npos ? html.size() : body_end, "<script src=\"/assets/live.js\"></script>\n");
  return html;
}

const char* const kLiveScript = R"NMJS(// neuronmap serve: follows the run through /api and /events.
(function () {
  'use strict';
  var dash = window.neuronmapDashboard;
  if (!dash) return;  // the dashboard failed to start: its own status line says why
  var D = dash.data, state = dash.state, T = D.timeline;
  var live = window.neuronmapLive = { log: [], duplicates: 0, gaps: 0, status: null, follow: true, received: 0 };
  var generation = D.live.generation, statusAt = Date.now();
  function $(id) { return document.getElementById(id); }

  // Controls: follow the latest snapshot (on until the user picks another), and a banner for faults.
  var follow = document.createElement('label');
  follow.innerHTML = '<input type="checkbox" id="nm-follow" checked> follow latest';
  $('nm-snapshot').parentNode.parentNode.insertBefore(follow, $('nm-status'));
  var banner = document.createElement('div');
  banner.id = 'nm-banner';
  banner.hidden = true;
  banner.style.cssText = 'padding:8px 22px;background:#fde8ec;color:#b40426;font-weight:bold;border-bottom:1px solid #e8a9b5';
  $('nm-note').parentNode.insertBefore(banner, $('nm-note'));

  function num(v) { return v === null || v === undefined ? null : Number(v); }
  function add(s) {
    if (s.index < D.details.length) { live.duplicates++; return false; }
    if (s.index > D.details.length) { live.gaps++; return false; }
    D.details.push({ index: s.index, epoch: s.epoch, loss: s.loss, phase: s.phase, pending: true, layers: [] });
    var o = document.createElement('option');
    o.value = String(s.index);
    o.textContent = 'epoch ' + s.epoch + ' (#' + s.index + (s.loss === null ? '' : ', loss ' + Number(s.loss).toPrecision(4)) + ')';
    $('nm-snapshot').appendChild(o);
    T.epochs.push(s.epoch);
    T.loss.push(num(s.loss));
    T.layers.forEach(function (name, l) {
      var L = null, X = null;
      s.layers.forEach(function (x) { if (x.name === name) L = x; });
      (s.live_layers || []).forEach(function (x) { if (x.name === name) X = x; });
      T.groups[l].push(L ? L.groups : null);
      T.cohesion[l].push(L && L.groups > 0 ? num(L.mean_cohesion) : null);
      T.dead_rate[l].push(L && L.n_neurons > 0 ? L.dead / L.n_neurons : null);
      T.cka[l].push(X ? num(X.cka_previous) : null);
    });
    T.phases.push(s.phase || '');
    T.event_counts.push(s.n_events);
    (s.loss_epochs || []).forEach(function (e, k) { T.loss_epochs.push(e); T.losses.push(num(s.losses[k])); });
    s.events.forEach(function (e) {
      D.events.push({ epoch: e.epoch, layer: e.layer, kind: e.kind, lineages: e.lineages, strength: e.strength,
                      skill: e.skill_category, loss_change: e.loss_change });
    });
    D.events_total += s.events.length;
    D.run.snapshots = D.details.length;
    live.log.push({ index: s.index, epoch: s.epoch, timestamp: s.timestamp, shown: Date.now() / 1000 });
    return true;
  }

  var loading = {};
  function ensureDetail(k) {
    var d = D.details[k];
    if (!d || !d.pending || loading[k]) return;
    loading[k] = true;
    fetch('/api/detail?index=' + k + '&generation=' + generation).then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    }).then(function (detail) {
      D.details[k] = detail;
      if (state.detail === k && !drawQueued) { drawQueued = true; setTimeout(draw, 0); }
    }).catch(function () { /* the status line shows what is wrong with the file */ }).then(function () {
      delete loading[k];
    });
  }

  // Drawing waits for the browser's next turn, so that snapshots arriving together are drawn once; the
  // matrix and scatter are drawn again only when what they show changed (a new selection, a detail that
  // arrived), the timelines and events for every snapshot.
  var drawn = null, drawQueued = false;
  function draw() {
    drawQueued = false;
    var d = D.details[state.detail];
    var key = state.layer + '|' + state.detail + '|' + (d && d.pending ? 'pending' : 'ready');
    if (key !== drawn) dash.render();
    else { dash.renderTimelines(); dash.renderEvents(); }
    drawn = key;
  }
  function show() {
    if (live.follow && D.details.length) {
      state.detail = D.details.length - 1;
      $('nm-snapshot').value = String(state.detail);
    }
    if (!drawQueued) { drawQueued = true; setTimeout(draw, 0); }
    if (D.details.length) ensureDetail(state.detail);
    var meta = $('nm-meta');
    meta.textContent = meta.textContent.replace(/\d+ snapshots?/, D.details.length + ' snapshots');
    statusLine();
  }

  function ago(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    return seconds < 120 ? seconds + ' s' : Math.round(seconds / 60) + ' min';
  }
  function statusLine() {
    var s = live.status, el = $('nm-status');
    if (!s) return;
    var elapsed = (Date.now() - statusAt) / 1000;
    var parts = ['live', D.details.length + ' snapshot' + (D.details.length === 1 ? '' : 's')];
    if (s.last_commit_age !== null) parts.push('last ' + ago(s.last_commit_age + elapsed) + ' ago');
    var writer = s.writer.active ? (s.idle + elapsed >= 10 ? 'writer idle for ' + ago(s.idle + elapsed) : 'writer active')
                                 : 'writer stopped';
    parts.push(writer);
    el.textContent = parts.join(' \u00b7 ');
    el.dataset.state = s.state === 'ok' ? 'ok' : 'error';
    banner.hidden = s.state === 'ok';
    banner.textContent = s.state === 'ok' ? '' : (s.state === 'deleted' ? 'file deleted: ' : s.state === 'waiting' ?
      'waiting: ' : 'error: ') + s.message;
    document.documentElement.setAttribute('data-neuronmap-live',
      D.details.length + '|' + s.state + '|' + (s.writer.active ? 'active' : 'stopped'));
  }
  setInterval(statusLine, 1000);

  // A page served before the run file existed learns the run's layers when it appears (no reload, so
  // that the first snapshots are not late); a file replaced by a new run reloads the page instead.
  var early = [], runFetch = null;
  function initRun(run) {
    D.live.ready = true;
    ['file', 'device', 'torch_version', 'library_version', 'created'].forEach(function (k) { D.run[k] = run[k]; });
    var names = run.layers.map(function (l) { return l.name; });
    D.run.layers = names;
    T.layers = names;
    ['groups', 'cohesion', 'dead_rate', 'cka'].forEach(function (k) { T[k] = names.map(function () { return []; }); });
    var select = $('nm-layer');
    select.innerHTML = '';
    names.forEach(function (name) {
      var o = document.createElement('option'); o.value = name; o.textContent = name; select.appendChild(o);
    });
    state.layer = names.length ? names[0] : null;
    if (state.layer !== null) select.value = state.layer;
    $('nm-meta').textContent = [run.file, 'device ' + (run.device || '-'), 'torch ' + (run.torch_version || '-'),
      'NeuronMap ' + run.library_version, '0 snapshots', names.length + ' layers',
      'created ' + (run.created || '-')].join(' \u00b7 ');
  }
  function ensureRun() {
    if (runFetch) return;
    runFetch = fetch('/api/run').then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    }).then(function (run) {
      if (run.generation !== generation) { location.reload(); return; }
      initRun(run);
      var queued = early;
      early = [];
      queued.forEach(add);
      show();
    }).catch(function () { runFetch = null; });
  }
  function onSnapshot(s) {
    if (!D.live.ready) { early.push(s); ensureRun(); return; }
    if (add(s)) show();
  }

  function onStatus(s) {
    live.status = s;
    statusAt = Date.now();
    if (s.generation !== generation) { location.reload(); return; }
    if (!D.live.ready && s.state === 'ok') ensureRun();
    statusLine();
  }

  $('nm-snapshot').addEventListener('change', function () {
    live.follow = state.detail === D.details.length - 1;
    $('nm-follow').checked = live.follow;
    ensureDetail(state.detail);
  });
  $('nm-follow').addEventListener('change', function () { live.follow = this.checked; show(); });

  function connect(after) {
    var source = new EventSource('/events?after=' + after + '&generation=' + generation);
    source.addEventListener('snapshot', function (e) {
      live.received++;
      onSnapshot(JSON.parse(e.data));
    });
    source.addEventListener('status', function (e) { onStatus(JSON.parse(e.data)); });
    source.addEventListener('reload', function () { source.close(); location.reload(); });
    live.source = source;
  }
  // For measurements: stop and resume following without reloading the page.
  live.pause = function () { if (live.source) live.source.close(); live.source = null; };
  live.resume = function () { if (!live.source) connect(D.details.length - 1); };

  fetch('/api/status').then(function (r) { return r.json(); }).then(onStatus).then(function () {
    return D.live.ready ? fetch('/api/snapshots?generation=' + generation).then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    }) : [];
  }).then(function (list) {
    list.forEach(add);
    show();
    connect(D.details.length - 1);
  }).catch(function (e) {
    banner.hidden = false;
    banner.textContent = 'cannot reach the server: ' + e;
    setTimeout(function () { location.reload(); }, 2000);
  });
})();
)NMJS";

}  // namespace neuronmap::cli
