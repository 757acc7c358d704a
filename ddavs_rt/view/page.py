"""The viewer page: a grid of tiles, one per stream, refreshed by polling /api/streams.

Polling a small JSON and fetching each tile's newest image (rather than one MJPEG connection per
stream) keeps working with many streams: a browser opens at most ~6 connections to one host, and
an MJPEG stream holds one for ever. A tile fetches its next image only when the previous one has
loaded, so a slow browser skips frames instead of queueing them. Stream ids are inserted as text,
never as HTML.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ddavs-rt viewer</title>
<style>
  body { margin: 0; font: 14px system-ui, sans-serif; background: #111; color: #ddd; }
  header { padding: 8px 14px; background: #1c1c1c; display: flex; gap: 16px; align-items: baseline; }
  header h1 { font-size: 16px; margin: 0; }
  #grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 10px; padding: 10px; }
  .tile { background: #1c1c1c; border-radius: 6px; overflow: hidden; }
  .tile img { display: block; width: 100%; aspect-ratio: 1 / 1; object-fit: contain; background: #000; }
  .tile .name { font-weight: 600; padding: 6px 8px 0; }
  .tile .stats { padding: 2px 8px 8px; color: #aaa; font-variant-numeric: tabular-nums; }
  .tile.stale .stats { color: #e77; }
  #empty { padding: 20px; color: #888; }
</style>
</head>
<body>
<header><h1>ddavs-rt</h1><span id="status">connecting...</span></header>
<div id="grid"></div>
<div id="empty">waiting for the first frame...</div>
<script>
"use strict";
const grid = document.getElementById("grid");
const tiles = new Map();

function tileFor(id) {
  let tile = tiles.get(id);
  if (tile) return tile;
  const el = document.createElement("div");
  el.className = "tile";
  el.dataset.stream = id;
  el.dataset.loads = "0";
  const img = document.createElement("img");
  img.alt = id;
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = id;
  const stats = document.createElement("div");
  stats.className = "stats";
  el.append(img, name, stats);
  grid.append(el);
  tile = { el, img, stats, busy: false, wanted: null };
  img.onload = () => {
    el.dataset.shownSeq = img.dataset.seq;
    el.dataset.loads = String(Number(el.dataset.loads) + 1);
    tile.busy = false;
    if (tile.wanted && tile.wanted.seq !== Number(img.dataset.seq)) show(tile, tile.wanted);
  };
  img.onerror = () => { tile.busy = false; };
  tiles.set(id, tile);
  return tile;
}

function show(tile, s) {
  tile.wanted = s;
  if (tile.busy || String(s.seq) === tile.img.dataset.seq) return;
  tile.busy = true;
  tile.img.dataset.seq = String(s.seq);
  tile.img.src = s.image;
}

function fmt(v, digits) { return (v === null || v === undefined) ? "-" : Number(v).toFixed(digits); }

async function poll() {
  try {
    const reply = await fetch("/api/streams", { cache: "no-store" });
    const data = await reply.json();
    document.getElementById("status").textContent =
      `${data.streams.length} stream(s) from ${data.endpoint}, ${data.received} frames received`;
    document.getElementById("empty").style.display = data.streams.length ? "none" : "block";
    for (const s of data.streams) {
      const tile = tileFor(s.id);
      tile.el.classList.toggle("stale", s.age_s > 3);
      tile.stats.textContent =
        `${fmt(s.fps, 1)} fps | latency ${fmt(s.latency_ms, 0)} ms | dropped ${s.frames_dropped}` +
        (s.publisher_dropped ? ` (+${s.publisher_dropped} send)` : "") +
        (s.audio_gaps ? ` | audio gaps ${s.audio_gaps}` : "") +
        (s.classes.length ? ` | ${s.classes.join(", ")}` : "");
      show(tile, s);
    }
  } catch (error) {
    document.getElementById("status").textContent = "viewer unreachable: " + error;
  }
  setTimeout(poll, 400);
}
poll();
</script>
</body>
</html>
"""
