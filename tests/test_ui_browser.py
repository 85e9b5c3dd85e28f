"""End to end in a real browser: the l2s server on pico models, the Gradio UI, Debian's headless Chromium.

The server and the UI run in this process on free 127.0.0.1 ports; playwright-python drives
/usr/bin/chromium (installed by .ci/install-browser.sh; `playwright install` is never run). The test
clicks an example, sets the parameters, presses Compare, waits for the three columns to finish and
checks what the page shows against the server's own API answering the same request.

The models: "short" is a pico Llama fine-tuned for a few seconds on the arith task's short traces, so
it answers and stops; "long" is a random pico Llama whose chat template opens `<think>`, so it reasons
until max tokens. That makes "short's count is below long's" hold for a reason the models carry, and
the test reads both counts from the page, then checks they equal the server's usage for the request.
"""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing; install it with `sudo .ci/install-browser.sh`"
    ),
]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
MAX_TOKENS = 48
SCREENSHOT_COPY = Path(__file__).resolve().parents[1] / "runs" / "ui-screenshot.png"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sft_short(path: Path, tokenizer, problems, steps: int = 40) -> Path:
    """Fine-tune a random pico Llama on short traces (prompt masked), full batch, in a few seconds."""
    import torch
    from transformers import AutoModelForCausalLM

    from l2s.embedded.model import save_random_model
    from l2s.tasks.arith import short_trace

    torch.manual_seed(0)
    torch.set_num_threads(1)  # pico is too small to gain from threads; it only fights other processes
    model = AutoModelForCausalLM.from_pretrained(save_random_model(path, tokenizer, seed=0))
    rows = []
    for p in problems:
        chat = [{"role": "user", "content": p.prompt}]
        prompt = list(
            tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)[
                "input_ids"
            ]
        )
        answer = tokenizer.encode(short_trace(p), add_special_tokens=False) + [tokenizer.eos_token_id]
        rows.append((prompt + answer, [-100] * len(prompt) + answer))
    width = max(len(ids) for ids, _ in rows)
    ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r, _ in rows])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    from l2s.embedded.model import save_random_model
    from l2s.embedded.tokenizer import build_tokenizer
    from l2s.tasks import get_task
    from l2s.tasks.arith import short_trace

    problems = get_task("arith").problems("train", 4)
    tokenizer = build_tokenizer([p.prompt for p in problems] + [short_trace(p) for p in problems])
    root = tmp_path_factory.mktemp("ui-family")
    short = _sft_short(root / "short", tokenizer, problems)
    long = save_random_model(root / "long", tokenizer, seed=1)
    template = long / "chat_template.jinja"  # R1-distill style: the assistant turn opens <think>
    template.write_text(
        template.read_text().replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>\\n'")
    )
    assert "<think>" in template.read_text()
    return {"long": long, "short": short}


@pytest.fixture(scope="module")
def server(family):
    from l2s.server.runner import serve_in_thread
    from l2s.server.settings import ServeSettings

    settings = ServeSettings(
        long=str(family["long"]), short=str(family["short"]), auto_threshold=0.5, port=0, log_level="warning"
    )
    with serve_in_thread(settings) as running:
        yield running


@pytest.fixture(scope="module")
def ui_url(server, tmp_path_factory):
    from l2s.ui.app import build_ui, launch

    demo = build_ui(server.url, run_dir=str(tmp_path_factory.mktemp("no-runs-yet")))
    _, url, _ = launch(demo, "127.0.0.1", _free_port(), block=False)
    yield url
    demo.close()


@pytest.fixture
def page(ui_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(ui_url)
        yield page
        browser.close()


def _tokens(stats: str) -> tuple[int, int]:
    """(completion, reasoning) tokens from a column's stats line as the page shows it."""
    m = re.search(r"(\d+) completion tokens · (\d+) reasoning", stats)
    assert m, f"no token counts in {stats!r}"
    return int(m.group(1)), int(m.group(2))


def _server_usage(server, mode: str, prompt: str) -> tuple[int, int]:
    """The same request straight to the API (greedy, so the same completion): the reference counts."""
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=120)
    r = client.chat.completions.create(
        model=f"l2s-{mode}",
        messages=[{"role": "user", "content": prompt}],
        temperature=0.0,
        max_tokens=MAX_TOKENS,
        extra_body={"mode": mode},
    )
    return r.usage.completion_tokens, r.usage.completion_tokens_details.reasoning_tokens


def test_compare_columns_fill_and_short_uses_fewer_tokens(page, server, tmp_path):
    from l2s.tasks import get_task

    example = get_task("arith").problems("test", 1)[0]
    from playwright.sync_api import expect

    page.get_by_text(example.prompt, exact=True).first.click()  # the first example row
    expect(page.locator("#prompt textarea")).to_have_value(example.prompt)
    expect(page.locator("#reference textarea, #reference input").first).to_have_value(example.answer)

    page.get_by_text("Parameters").click()
    max_tokens = page.locator("#max-tokens input[type=number]")
    slider = page.locator("#max-tokens input[type=range]")
    # Compare must not be clicked before the slider holds the value: the slider commits its number box on
    # blur, and an edit made while the page is still settling can be dropped (CI runs have kept the
    # default 512), so the edit is made again until the slider shows it.
    for _ in range(3):
        max_tokens.fill(str(MAX_TOKENS))
        max_tokens.press("Enter")
        max_tokens.press("Tab")
        try:
            expect(slider).to_have_value(str(MAX_TOKENS), timeout=3000)
            break
        except AssertionError:
            continue
    expect(slider).to_have_value(str(MAX_TOKENS))

    page.click("#compare")
    page.wait_for_function(
        "document.querySelector('#status')?.innerText.startsWith('Done')", polling=250, timeout=180_000
    )
    shown = {m: page.inner_text(f"#stats-{m}") for m in ("short", "long", "auto")}
    short, long = _tokens(shown["short"]), _tokens(shown["long"])
    assert short[0] < long[0], shown
    assert short == _server_usage(server, "short", example.prompt)
    assert long == _server_usage(server, "long", example.prompt)
    assert long == (MAX_TOKENS, MAX_TOKENS)  # the random long model reasons until max tokens
    assert "stopped at max tokens" in shown["long"] and "answered by l2s-short" in shown["short"]
    _tokens(shown["auto"])
    assert re.search(r"escalated to long: (yes|no)", shown["auto"]), shown["auto"]

    for mode in ("short", "long", "auto"):
        assert re.search(r"[✓✗] (correct|incorrect) \(reference: \d+\)", page.inner_text(f"#answer-{mode}"))
    assert f"Thinking · {MAX_TOKENS} tokens" in page.inner_text("#thinking-long")
    page.locator("#thinking-long").get_by_text(
        f"Thinking · {MAX_TOKENS} tokens"
    ).click()  # the collapsible block opens
    assert page.locator("#reasoning-long textarea").input_value().strip()

    tally = page.inner_text("#tally")
    saved = long[0] - short[0]
    assert re.search(rf"short\s+1\s+{short[0]}\s+{saved} of {long[0]}", tally), tally

    shot = tmp_path / "ui.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    SCREENSHOT_COPY.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT_COPY)


def test_report_tab_shows_table_and_pareto_plot(page, tmp_path):
    import json

    from PIL import Image

    run = tmp_path / "run"
    run.mkdir()
    fields = ("accuracy", "accuracy_ci95", "mean_tokens", "p50_tokens", "p90_tokens", "tokens_per_correct")
    fields += ("token_ratio_vs_long", "path", "method")
    rows = {"long": (0.9, [0.85, 0.95], 100.0, 100, 150, 111.1, 1.0, "/ckpt/long", "rl")}
    rows["merge-0.5"] = (0.8, [0.75, 0.85], 50.0, 50, 75, 62.5, 0.5, "/ckpt/merge", "merge")
    report = {
        "task": "arith",
        "n": 50,
        "models": {k: dict(zip(fields, v, strict=True)) for k, v in rows.items()},
    }
    (run / "report.json").write_text(json.dumps(report))
    Image.new("RGB", (320, 240), "white").save(run / "pareto.png")

    page.get_by_role("tab", name="Report").click()
    # The tab first shows the default run folder's report (none here); wait for that before loading ours.
    page.wait_for_function(
        "document.querySelector('#report')?.innerText.includes('No report in')", polling=250
    )
    box = page.get_by_label("Run folder")
    box.fill(str(run))
    page.click("#load-report")
    page.wait_for_function(
        "document.querySelector('#report')?.innerText.includes('merge-0.5')", polling=250, timeout=60_000
    )
    text = page.inner_text("#report")
    cells = re.split(r"\s+", text)
    row = cells.index("merge-0.5")
    assert cells[row : row + 5] == ["merge-0.5", "merge", "0.800", "[0.750,", "0.850]"], text
    plot = page.locator("#pareto img").first
    plot.wait_for(state="visible")
    assert plot.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [320, 240]
