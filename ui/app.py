"""`l2s ui`: the Gradio demo that puts short, long and auto side by side on one prompt.

The UI is a client of the l2s server (OpenAI-compatible, over HTTP with the openai client; see
ui/client.py), so it shows exactly what any API user gets: the streamed think block and answer, the
server's token counts, latency, and which model answered. The Report tab shows the latest
report.md/pareto.png of a run folder. `--serve` starts the l2s server in-process first (uvicorn in a
background thread), for a one-command demo. ui/launch.py serves the Blocks built here.

Layout (Gradio Blocks): Compare tab = prompt, correct answer, model checkboxes, effort-level checkboxes
(each labelled with what the server's effort map measured for it), Parameters accordion, examples from
the served run's task (`example_task`), one column per chosen mode and effort level, a running tally;
Report tab.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from l2s.config import Config, load_config
from l2s.ui.client import (
    EFFORTS,
    MODES,
    ColumnResult,
    RequestParams,
    effort_lane,
    fetch_effort_map,
    run_modes,
)
from l2s.ui.launch import check_port_free, launch
from l2s.ui.report_view import DEFAULT_RUN_DIR, load_report
from l2s.ui.view import (
    add_round,
    answer_markdown,
    effort_choice_label,
    lane_header,
    stats_markdown,
    tally_markdown,
    thinking_label,
)

EXAMPLES_N = 8
BUDGET_CHOICES = ["none", "0", "16", "64", "256"]
LANES = (*MODES, *map(effort_lane, EFFORTS))  # every column the Compare tab can show


class UISettings(Config):
    server: str = Field("http://127.0.0.1:8000", description="URL of the l2s server (with or without /v1)")
    api_key: str | None = Field(None, description="the server's API key (default: env L2S_API_KEY)")
    serve: bool = Field(False, description="start the embedded l2s server in-process and use it")
    host: str = Field("127.0.0.1", description="interface the UI binds; 0.0.0.0 exposes it")
    port: int = Field(7860, ge=0, le=65535, description="TCP port of the UI")
    run_dir: str = Field(DEFAULT_RUN_DIR, description="run folder whose report the Report tab shows first")


def api_base(server_url: str) -> str:
    """The openai client's base_url for an l2s server address.

    >>> api_base("http://127.0.0.1:8000"), api_base("http://h:1/v1/"), api_base("h:8000")
    ('http://127.0.0.1:8000/v1', 'http://h:1/v1', 'http://h:8000/v1')
    """
    url = server_url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url if url.endswith("/v1") else f"{url}/v1"


def parse_budget(value: object) -> int | None:
    """The thinking budget box: "none" (or empty) = no budget, else a whole number of tokens >= 0.

    >>> parse_budget("none"), parse_budget(""), parse_budget("64"), parse_budget(0)
    (None, None, 64, 0)
    >>> parse_budget("lots")
    Traceback (most recent call last):
    ValueError: thinking budget must be 'none' or a whole number of tokens (0 or more), got 'lots'
    """
    text = str(value if value is not None else "").strip().lower()
    if text in ("", "none"):
        return None
    if not text.isdigit():
        raise ValueError(
            f"thinking budget must be 'none' or a whole number of tokens (0 or more), got {value!r}"
        )
    return int(text)


def make_client(server_url: str, api_key: str | None, timeout_s: float = 300.0):
    """An openai client for the l2s server. No retries: the UI shows a failure at once, readably."""
    import openai

    return openai.OpenAI(
        base_url=api_base(server_url), api_key=api_key or "none", max_retries=0, timeout=timeout_s
    )


def example_task(family: str | None = None) -> dict[str, Any]:
    """The task (TaskOptions fields) of the run `l2s serve` serves by default, the last `l2s quickstart`
    on `family` (default: the embedded family's folder); the embedded `arith` task when there is none."""
    from l2s.embedded import DEFAULT_CACHE
    from l2s.server.settings import read_last_run

    run = read_last_run(family or DEFAULT_CACHE)
    return run.task if run is not None else {"task": "arith"}


def example_rows(n: int = EXAMPLES_N, task: dict[str, Any] | None = None) -> list[list[str]]:
    """[prompt, correct answer] rows from the held-out split of `task` (default: `example_task()`)."""
    from l2s.tasks import TaskOptions, load_task

    opts = TaskOptions(**(task or example_task()))
    return [[p.prompt, p.answer] for p in load_task(opts).problems("test", n)]


def build_ui(server_url: str, api_key: str | None = None, *, run_dir: str = DEFAULT_RUN_DIR):
    """The demo as a `gr.Blocks`; launch it with `launch(demo, host, port)` (which adds the CSS/theme)."""
    import gradio as gr

    client = make_client(server_url, api_key)
    efforts_now = fetch_effort_map(make_client(server_url, api_key, timeout_s=3.0))

    def effort_selector(efforts: dict) -> dict[str, Any]:
        """The effort checkboxes' choices, labelled with what each level measured; off without a map."""
        info = (
            "the l2s model at OpenAI's reasoning_effort, routed by the server's effort map: measured "
            "accuracy, mean tokens, model @ thinking budget"
            if efforts
            else "the server has no effort map (`l2s calibrate RUN`, then `l2s serve --calibration RUN`)"
        )
        choices = [(effort_choice_label(lv, efforts.get(lv)), lv) for lv in EFFORTS]
        return {"choices": choices, "interactive": bool(efforts), "info": info}

    with gr.Blocks(title="l2s: long vs short", analytics_enabled=False) as demo:
        gr.Markdown(
            "# l2s · long2short\nThe same prompt to the **short**, **long** and **auto** models and the "
            f"reasoning-effort levels of the l2s server at `{server_url}`: tokens, latency and correctness "
            "side by side."
        )
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column(scale=4):
                    prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prompt")
                    reference = gr.Textbox(
                        label="Correct answer (optional)",
                        info="marks each column ✓ correct or ✗ incorrect",
                        elem_id="reference",
                    )
                with gr.Column(scale=1, min_width=220):
                    modes = gr.CheckboxGroup(list(MODES), value=list(MODES), label="Models", elem_id="modes")
                    efforts = gr.CheckboxGroup(
                        value=[], label="Reasoning effort", elem_id="efforts", **effort_selector(efforts_now)
                    )
                    compare_btn = gr.Button("Compare", variant="primary", elem_id="compare")
                    stop_btn = gr.Button("Stop", elem_id="stop")
            with gr.Accordion("Parameters", open=False, elem_id="parameters"):
                with gr.Row():
                    temperature = gr.Slider(
                        0.0,
                        1.5,
                        value=0.0,
                        step=0.05,
                        label="Temperature (0 = greedy)",
                        elem_id="temperature",
                    )
                    max_tokens = gr.Slider(
                        16, 2048, value=512, step=16, label="Max tokens", elem_id="max-tokens"
                    )
                    budget = gr.Dropdown(
                        BUDGET_CHOICES,
                        value="none",
                        allow_custom_value=True,
                        label="Thinking budget (tokens)",
                        info="none, or force </think> after this many reasoning tokens",
                        elem_id="budget",
                    )
                sequential = gr.Checkbox(
                    False, label="One model at a time (latency without contention)", elem_id="sequential"
                )
            task = example_task()
            gr.Examples(
                example_rows(task=task),
                inputs=[prompt, reference],
                label=f"Examples: held-out {Path(task['task']).name} problems with their answers",
                examples_per_page=EXAMPLES_N,
            )
            status = gr.Markdown(elem_id="status")
            columns, outputs, headers = {}, {}, {}
            with gr.Row(equal_height=False):
                for mode in LANES:
                    level = mode.removeprefix("effort-")
                    visible = mode in MODES
                    with gr.Column(elem_id=f"col-{mode}", elem_classes="l2s-col", visible=visible) as col:
                        headers[mode] = gr.Markdown(lane_header(mode, efforts_now.get(level)))
                        with gr.Accordion("Thinking", open=False, elem_id=f"thinking-{mode}") as acc:
                            reasoning = gr.Textbox(
                                show_label=False,
                                lines=6,
                                max_lines=20,
                                interactive=False,
                                elem_id=f"reasoning-{mode}",
                            )
                        answer = gr.Markdown(elem_id=f"answer-{mode}", elem_classes="l2s-answer")
                        stats = gr.Markdown(elem_id=f"stats-{mode}", elem_classes="l2s-stats")
                    columns[mode] = col
                    outputs[mode] = (acc, reasoning, answer, stats)
            gr.Markdown("### Running tally (this browser session)")
            tally_md = gr.Markdown(tally_markdown({}), elem_id="tally")
            tally_state = gr.State({})

        with gr.Tab("Report"):
            with gr.Row():
                run_dir_box = gr.Textbox(run_dir, label="Run folder", scale=4)
                load_btn = gr.Button("Load", scale=1, elem_id="load-report")
            report_md = gr.Markdown(elem_id="report")
            pareto = gr.Image(
                label="Pareto: accuracy vs mean tokens", type="pil", interactive=False, elem_id="pareto"
            )

        def column_updates(results: dict[str, ColumnResult], reference_text: str) -> dict:
            out: dict[Any, Any] = {}
            for mode, (acc, reasoning_box, answer_md, stats_md) in outputs.items():
                r = results.get(mode)
                if r is None:
                    continue
                out[acc] = gr.Accordion(label=thinking_label(r))
                out[reasoning_box] = r.reasoning
                out[answer_md] = answer_markdown(r, reference_text)
                out[stats_md] = stats_markdown(r)
            return out

        def chosen_lanes(selected: list[str] | None, levels: list[str] | None) -> list[str]:
            picked = [*(selected or []), *map(effort_lane, levels or [])]
            return [m for m in LANES if m in picked]

        def visibility(selected: list[str], levels: list[str] | None = None) -> dict:
            shown = chosen_lanes(selected, levels)
            return {columns[m]: gr.Column(visible=m in shown) for m in LANES}

        def refresh_efforts() -> dict:
            """The effort map as the server has it now (it may have started after the UI)."""
            found = fetch_effort_map(client)
            update = {efforts: gr.CheckboxGroup(**effort_selector(found))}
            return update | {
                headers[effort_lane(lv)]: lane_header(effort_lane(lv), found.get(lv)) for lv in EFFORTS
            }

        def compare(
            prompt_text,
            reference_text,
            selected,
            temp,
            max_tok,
            think_budget,
            one_at_a_time,
            tally,
            levels=None,
        ):
            selected = chosen_lanes(selected, levels)
            if not (prompt_text or "").strip():
                yield {status: "⚠ Type a prompt, or pick an example, first."}
                return
            if not selected:
                yield {status: "⚠ Tick at least one model (short, long or auto) or effort level."}
                return
            try:
                thinking = parse_budget(think_budget)
            except ValueError as e:
                yield {status: f"⚠ {e}"}
                return
            params = RequestParams(
                temperature=float(temp), max_tokens=int(max_tok), max_thinking_tokens=thinking
            )
            blank = {m: ColumnResult(mode=m) for m in selected}
            yield {status: "Streaming…", **visibility(selected), **column_updates(blank, reference_text)}
            cancel, start = threading.Event(), time.perf_counter()
            results = blank
            try:
                for results in run_modes(
                    client, selected, prompt_text, params, server_url, one_at_a_time, cancel
                ):
                    yield column_updates(results, reference_text)
            finally:
                cancel.set()
            tally = add_round(tally or {}, results, reference_text)
            failed = [m for m, r in results.items() if r.error]
            note = f" ({', '.join(failed)} failed: see the column)" if failed else ""
            yield {
                status: f"Done in {time.perf_counter() - start:.1f} s{note}.",
                tally_state: tally,
                tally_md: tally_markdown(tally),
                **column_updates(results, reference_text),
            }

        def show_report(folder: str):
            view = load_report((folder or "").strip() or DEFAULT_RUN_DIR)
            image = None
            if view.pareto is not None:
                from PIL import Image

                with Image.open(view.pareto) as im:
                    image = im.copy()
            return view.markdown, image

        compare_io = dict(
            inputs=[
                prompt,
                reference,
                modes,
                temperature,
                max_tokens,
                budget,
                sequential,
                tally_state,
                efforts,
            ],
            outputs=[
                status,
                tally_state,
                tally_md,
                *columns.values(),
                *(c for g in outputs.values() for c in g),
            ],
            concurrency_limit=4,
            show_progress="hidden",
        )
        clicked = compare_btn.click(compare, api_name="compare", **compare_io)
        submitted = prompt.submit(compare, api_visibility="private", **compare_io)
        stop_btn.click(None, cancels=[clicked, submitted])
        for selector in (modes, efforts):
            selector.change(visibility, inputs=[modes, efforts], outputs=list(columns.values()), queue=False)
        load_btn.click(show_report, inputs=run_dir_box, outputs=[report_md, pareto])
        demo.load(show_report, inputs=run_dir_box, outputs=[report_md, pareto])
        effort_headers = [headers[effort_lane(lv)] for lv in EFFORTS]
        demo.load(refresh_efforts, outputs=[efforts, *effort_headers], queue=False)
    return demo


def embedded_server_settings(api_key: str | None):
    """`--serve`: on a free local port, what plain `l2s serve` would serve (the last quickstart's long and
    best short model with their calibration, else the embedded family)."""
    from l2s.server.settings import ServeSettings

    return load_config(ServeSettings, overrides={"api_key": api_key, "host": "127.0.0.1", "port": 0})


def run(settings: UISettings) -> int:
    """`l2s ui`: build the demo against --server (or an in-process server with --serve) and serve it."""
    api_key = settings.api_key or os.environ.get("L2S_API_KEY")
    check_port_free(settings.host, settings.port)
    with contextlib.ExitStack() as stack:
        server_url = settings.server
        if settings.serve:
            from l2s.server.runner import serve_in_thread

            serve = embedded_server_settings(api_key)
            serve.served_models()  # a missing family is one line here, before anything loads
            print("l2s ui: starting the embedded l2s server (loading models)…", flush=True)
            server_url = stack.enter_context(serve_in_thread(serve)).url
            print(f"l2s ui: embedded server on {server_url}", flush=True)
        demo = build_ui(server_url, api_key, run_dir=settings.run_dir)
        print(f"l2s ui: http://{settings.host}:{settings.port} (talking to {server_url})", flush=True)
        launch(demo, settings.host, settings.port, block=True)
    return 0
