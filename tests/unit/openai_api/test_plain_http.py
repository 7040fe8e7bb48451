"""The hot endpoints' plain HTTP client: the SDK stays unloaded, and the SDK's environment settings still apply."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot import errors
from bot.openai_api.http import ApiStatusError, OpenAIHTTP, proxy_for
from bot.openai_api.retry import translate_error
from testkit.openai import FakeOpenAI


def test_the_bot_starts_without_loading_the_sdk() -> None:
    """Moderation and chat need no SDK: its 24 MiB are spent only when a typed endpoint is first called."""
    code = (
        "import sys, pkgutil, importlib, cogs, bot.services, bot.discord_io.client, bot.ops.runner\n"
        "for m in pkgutil.walk_packages(cogs.__path__, 'cogs.'): importlib.import_module(m.name)\n"
        "print(sorted(n for n in ('openai', 'httpx2') if n in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


async def test_organization_and_project_from_the_sdks_environment_are_sent(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-123")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-456")
    http = OpenAIHTTP(fake_openai.api_key, fake_openai.base_url, 5.0)
    try:
        answer = await http.post_json("/moderations", {"model": "omni-moderation-latest", "input": ["hi"]})
    finally:
        await http.close()
    assert len(answer["results"]) == 1
    [request] = fake_openai.calls("/moderations")
    assert request.headers["openai-organization"] == "org-123"
    assert request.headers["openai-project"] == "proj-456"


async def test_error_answers_keep_the_apis_code_and_retry_after(fake_openai: FakeOpenAI) -> None:
    fake_openai.inject_rate_limit("/moderations", retry_after=0.25)
    fake_openai.inject_insufficient_quota("/chat/completions", times=1)
    http = OpenAIHTTP(fake_openai.api_key, fake_openai.base_url, 5.0)
    try:
        with pytest.raises(ApiStatusError) as limited:
            await http.post_json("/moderations", {"model": "omni-moderation-latest", "input": ["hi"]})
        with pytest.raises(ApiStatusError) as quota:
            await http.open_stream(
                "/chat/completions", {"model": "gpt-5-mini", "messages": [], "stream": True}
            )
    finally:
        await http.close()
    rate = translate_error(limited.value, "m", str)
    assert isinstance(rate, errors.RateLimited) and rate.retry_after == pytest.approx(0.25)
    assert isinstance(translate_error(quota.value, "m", str), errors.QuotaExhausted)


def test_the_environments_proxy_is_honoured_and_no_proxy_bypasses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_for("https://api.openai.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert proxy_for("https://api.openai.com/v1") == "http://proxy.internal:3128"
    assert proxy_for("http://127.0.0.1:8080/v1") is None
