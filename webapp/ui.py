"""The Gradio UI builder: a "Teleop" tab hosting the JS console (static/teleop/ over /ws/teleop), a "Label" tab
hosting the labeling and curation app (static/label/ over the REST API), an "Episodes" tab listing recorded
episodes newest first with a thumbnail and playable videos, the engineers' "Train" tab (launch and follow training
jobs, static/train/) and "Models" page (the registry, static/models/), and the admins' "Users" and "Audit" tabs
(static/admin/). The header names the signed-in user (static/common/header.js)."""

from __future__ import annotations

import html

import gradio as gr

from storage.episode_query import EpisodeQuery, SortKey
from webapp.assets import ASSETS_URL
from webapp.schemas import to_public

EPISODES_SHOWN = 50
STYLES = ("teleop/teleop.css", "label/label.css", "train/train.css", "models/models.css", "metrics/metrics.css",
          "admin/admin.css", "episodes.css")  # fmt: skip
# Each console's entry module; common/header.js: who is signed in, Sign out, and the tabs the role may not use hidden.
MODULES = ("teleop/main.js", "label/main.js", "train/main.js", "models/main.js", "metrics/main.js", "admin/users.js",
           "admin/audit.js", "common/header.js")  # fmt: skip


def theme() -> gr.themes.Base:
    """The default theme with system fonts: the stock one fetches Google Fonts, and the dashboard runs offline."""
    sans = ["ui-sans-serif", "system-ui", "sans-serif"]
    return gr.themes.Default(font=sans, font_mono=["ui-monospace", "monospace"])


def head_html() -> str:
    """<head> additions: the stylesheets, and each console's entry module (static/<console>/main.js), which imports
    the rest of its modules and static/common/ itself. No version query: webapp.assets has the browser revalidate
    every file, so a reload picks up edits. (The Label tab loads plotly.js from /vendor when it is first shown.)"""
    styles = "".join(f'<link rel="stylesheet" href="{ASSETS_URL}/{path}">' for path in STYLES)
    return styles + "".join(f'<script type="module" src="{ASSETS_URL}/{path}"></script>' for path in MODULES)


def _success(value: bool | None) -> str:
    return {
        True: '<span style="color:#2e7d32">✓ yes</span>',
        False: '<span style="color:#c62828">✗ no</span>',
        None: "—",
    }[value]


def episodes_html(store, limit: int = EPISODES_SHOWN) -> str:
    infos, total = store.query_episodes(EpisodeQuery(limit=limit))  # newest first, paged in SQL
    if not infos:
        return '<p class="vla-empty">No episodes yet: record one in the Teleop tab.</p>'
    rows = []
    for ep in map(to_public, infos[:limit]):
        e = {k: html.escape(str(v)) for k, v in ep.model_dump().items() if not isinstance(v, dict | list)}
        cams = " ".join(f'<a href="{u}" target="_blank">{html.escape(c)}</a>' for c, u in ep.video_urls.items())
        first = next(iter(ep.video_urls.values()), "")
        rows.append(
            f'<tr data-episode-id="{ep.id}"><td><img class="vla-thumb" src="{ep.thumbnail_url}" alt="episode {ep.id}"'
            f' loading="lazy"></td><td>{ep.id}</td><td>{ep.created_at:%Y-%m-%d %H:%M:%S}</td><td>{e["dataset"]}</td>'
            f"<td>{e['task']}</td><td>{e['instruction']}</td><td>{e['source']}</td><td>{e['operator']}</td>"
            f"<td>{ep.duration_s:.1f} s</td><td>{_success(ep.human_success)}</td><td>{_success(ep.auto_success)}</td>"
            f'<td><video class="vla-video" controls preload="none" poster="{ep.thumbnail_url}" src="{first}"></video>'
            f"<div>{cams}</div></td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "",
            "id",
            "recorded",
            "dataset",
            "task",
            "instruction",
            "source",
            "operator",
            "length",
            "success (operator)",
            "success (sim)",
            "video",
        )
    )
    more = ""
    if total > limit:
        more = f"<p>{total} episodes; the newest {limit} are shown (the Label tab browses them all).</p>"
    return f'<table class="vla-episodes"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>{more}'


def _signature(store) -> tuple[int, int]:
    """(live episodes, newest id): changes when one is added or removed. Two small SQL queries, not a listing."""
    newest, total = store.query_episodes(EpisodeQuery(sort=SortKey.ID, limit=1))
    return (total, newest[0].id if newest else 0)


def build_ui(*, store) -> gr.Blocks:
    with gr.Blocks(title="VLA Dashboard") as demo:
        with gr.Row():
            gr.Markdown("## VLA Dashboard")
            # static/common/header.js: "Signed in as NAME (role)" and Sign out.
            gr.HTML('<div id="vla-header"></div>', js_on_load=None, padding=False)
        with gr.Tabs():
            with gr.Tab("Teleop", id="teleop"):
                # static/teleop/main.js finds this element and builds the console inside it (keymap, cameras, HUD).
                gr.HTML('<div id="vla-teleop">Loading the teleop console…</div>', js_on_load=None, padding=False)
            with gr.Tab("Label", id="label"):
                # static/label/main.js finds this element and builds the browser, player, annotation, curation.
                gr.HTML('<div id="vla-label">Loading the labeling app…</div>', js_on_load=None, padding=False)
            with gr.Tab("Episodes", id="episodes") as episodes_tab:
                refresh = gr.Button("Refresh", size="sm")
                table = gr.HTML(lambda: episodes_html(store), js_on_load=None)
                seen = gr.State(None)
                timer = gr.Timer(3.0)
            # Training (static/train/, static/models/): static/common/header.js hides both tabs from operators.
            with gr.Tab("Train", id="train"):
                gr.HTML('<div id="vla-train">Loading the Train tab…</div>', js_on_load=None, padding=False)
            with gr.Tab("Models", id="models"):
                gr.HTML('<div id="vla-models">Loading the Models page…</div>', js_on_load=None, padding=False)
            # Managers' charts (static/metrics/): header.js hides the tab from operators (metrics.read).
            with gr.Tab("Metrics", id="metrics"):
                gr.HTML('<div id="vla-metrics">Loading the Metrics tab…</div>', js_on_load=None, padding=False)
            # Admins only: static/common/header.js hides both tabs from other roles (the API refuses them anyway).
            with gr.Tab("Users", id="users"):
                gr.HTML('<div id="vla-users">Loading the users page…</div>', js_on_load=None, padding=False)
            with gr.Tab("Audit", id="audit"):
                gr.HTML('<div id="vla-audit">Loading the audit log…</div>', js_on_load=None, padding=False)

        def refresh_table():
            return episodes_html(store), _signature(store)

        def refresh_if_changed(last):
            # Re-rendering the table would stop a playing video: only do it when an episode was added or removed.
            sig = _signature(store)
            return (gr.skip(), gr.skip()) if sig == last else (episodes_html(store), sig)

        refresh.click(refresh_table, outputs=[table, seen])
        episodes_tab.select(refresh_table, outputs=[table, seen])
        timer.tick(refresh_if_changed, inputs=[seen], outputs=[table, seen])
    return demo
