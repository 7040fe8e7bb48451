"""`python -m bot check`: probes the configuration without joining the gateway, one ok/FAIL line each."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import aiohttp
import discord

from bot import errors
from bot.cost.pricing import PricesError, PriceTable
from bot.openai_api.calls import CallContext
from bot.openai_api.gateway import OpenAIGateway
from bot.openai_api.retry import RetryPolicy
from bot.settings import Settings
from bot.storage.store import StoreError, is_postgres_url, open_store

MESSAGE_CONTENT_FLAGS = (1 << 18) | (1 << 19)  # GATEWAY_MESSAGE_CONTENT(_LIMITED)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    warning: bool = False

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        if self.ok and self.warning:
            status = "warn"
        return f"{status} {self.name}: {self.detail}"


Probe = Callable[[], Awaitable[list[CheckResult]]]
UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def network_cause(exc: BaseException, host: str) -> str | None:
    """What really went wrong on the way to `host`, read from the exception's chain, or None when the
    failure is not a network one. A DNS failure is not "OpenAI is having trouble"."""
    chain = list(_chain(exc))
    proxy = next(
        (os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY") if os.environ.get(v)), None
    )
    for cause in chain:
        if isinstance(cause, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
            return f"the proxy refused or failed the connection to {host} ({cause}); check HTTPS_PROXY"
    for cause in chain:
        if isinstance(cause, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
            return (
                f"TLS: the certificate of {host} could not be verified ({cause}); a proxy or firewall "
                "intercepting HTTPS, or a missing CA bundle (SSL_CERT_FILE)"
            )
        if isinstance(cause, aiohttp.ClientSSLError | ssl.SSLError):
            return f"TLS: the secure connection to {host} failed ({cause})"
    for cause in chain:
        if isinstance(cause, aiohttp.ClientConnectorDNSError | socket.gaierror):
            return f"DNS: the name {host} could not be resolved; check the host name, the DNS server or the network"
    for cause in chain:
        os_error = cause.os_error if isinstance(cause, aiohttp.ClientConnectorError) else cause
        if isinstance(os_error, ConnectionRefusedError):
            return f"connection refused by {host}: nothing listens there; check the URL and port"
        if isinstance(os_error, OSError) and os_error.errno in UNREACHABLE:
            return f"network unreachable: no route to {host}; check the network or firewall"
    for cause in chain:
        if isinstance(cause, TimeoutError | aiohttp.ServerTimeoutError):
            via = f" (through the proxy {proxy})" if proxy else ""
            return f"timed out connecting to {host}{via}; a firewall may drop the traffic"
    return None


def _host(url: str | None, default: str) -> str:
    return urlsplit(url).netloc if url else default


async def check_discord(settings: Settings) -> list[CheckResult]:
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        try:
            user = await http.static_login(settings.discord_token)
        except discord.LoginFailure:
            return [
                CheckResult(
                    "discord token",
                    False,
                    "Discord rejected DISCORD_TOKEN; reset it in the developer "
                    "portal (Bot -> Reset Token) and update .env",
                )
            ]
        except (discord.HTTPException, OSError, aiohttp.ClientError) as exc:
            cause = network_cause(exc, "discord.com") or str(exc)
            return [CheckResult("discord token", False, f"could not reach Discord: {cause}")]
        results = [CheckResult("discord token", True, f"logged in as {user['username']} ({user['id']})")]
        try:
            app = await http.application_info()
        except (discord.HTTPException, OSError) as exc:
            results.append(
                CheckResult("message content intent", False, f"could not read the application's flags: {exc}")
            )
            return results
        if int(app.get("flags") or 0) & MESSAGE_CONTENT_FLAGS:
            results.append(CheckResult("message content intent", True, "enabled"))
        else:
            results.append(
                CheckResult(
                    "message content intent",
                    False,
                    "disabled: developer portal -> Bot -> "
                    "Privileged Gateway Intents -> enable MESSAGE CONTENT INTENT",
                )
            )
        results.append(await _check_shards(http, settings))
        return results
    finally:
        await http.close()


async def _check_shards(http: discord.http.HTTPClient, settings: Settings) -> CheckResult:
    """SHARD_COUNT against the count Discord recommends for the bot's servers (about 1,000 a shard)."""
    try:
        recommended, _url, _limits = await http.get_bot_gateway()
    except (discord.GatewayNotFound, discord.HTTPException, OSError) as exc:
        return CheckResult("shards", False, f"could not ask Discord for its recommended shard count: {exc}")
    advice = f"Discord recommends {recommended} shard{'s' if recommended != 1 else ''}"
    if settings.shard_count is None:
        if recommended > 1:
            return CheckResult("shards", False, f"{advice}; set SHARD_COUNT (docs/sharding.md)")
        return CheckResult("shards", True, f"unsharded; {advice}")
    runs = ", ".join(map(str, settings.held_shards))
    held = f"this process runs {runs} of SHARD_COUNT={settings.shard_count}"
    if settings.shard_count < recommended:
        return CheckResult(
            "shards", False, f"{advice}, more than SHARD_COUNT={settings.shard_count} (docs/sharding.md)"
        )
    return CheckResult("shards", True, f"{held}; {advice}")


def _model_settings(settings: Settings) -> dict[str, str]:
    return settings.models()


async def check_openai(settings: Settings) -> list[CheckResult]:
    gateway = OpenAIGateway.from_settings(settings, retry=RetryPolicy(max_retries=0))
    try:
        try:
            available = await gateway.list_models()
        except errors.InvalidApiKey:
            return [
                CheckResult(
                    "openai key",
                    False,
                    "OpenAI rejected OPENAI_API_KEY (invalid_api_key); create a new "
                    "key at platform.openai.com/api-keys and update .env",
                )
            ]
        except errors.QuotaExhausted:
            return [
                CheckResult(
                    "openai key",
                    False,
                    "the OpenAI account has no credit (insufficient_quota); "
                    "add credit in the OpenAI billing settings",
                )
            ]
        except errors.BotError as exc:
            host = _host(settings.openai_base_url, "api.openai.com")
            cause = network_cause(exc, host) or exc.user_message()
            return [CheckResult("openai key", False, f"could not list models: {cause}")]
        results = [CheckResult("openai key", True, f"accepted ({len(available)} models visible)")]
        for env, model in _model_settings(settings).items():
            if model in available:
                results.append(CheckResult(f"model {env}", True, model))
            else:
                results.append(
                    CheckResult(
                        f"model {env}",
                        False,
                        f"{model!r} does not exist for this key; "
                        f"set {env} to one of the models your account can use",
                    )
                )
        results.append(await _check_credit(gateway, settings))
        return results
    finally:
        await gateway.close()


async def _check_credit(gateway: OpenAIGateway, settings: Settings) -> CheckResult:
    """One tiny chat request: listing models works even on an account without credit."""
    try:
        await gateway.complete_chat(
            [{"role": "user", "content": "ping"}], context=CallContext(command="check"), max_tokens=16
        )
    except errors.QuotaExhausted:
        return CheckResult(
            "openai credit",
            False,
            "the account has no credit (insufficient_quota); an admin must "
            "add credit in the OpenAI billing settings",
        )
    except errors.UnknownModel as exc:
        return CheckResult("openai credit", False, f"cannot test: {exc.user_message()}")
    except errors.BotError as exc:
        return CheckResult("openai credit", False, f"a test request failed: {exc.user_message()}")
    return CheckResult("openai credit", True, f"a test request to {settings.chat_model} succeeded")


async def check_database(settings: Settings) -> list[CheckResult]:
    postgres = is_postgres_url(settings.database_url)
    where = "the PostgreSQL database" if postgres else str(settings.database_path)
    fix = "the server, the user's password and rights" if postgres else "the folder's permissions"
    try:
        store = await open_store(settings.database_url, pool_size=settings.database_pool_size)
    except StoreError as exc:
        return [CheckResult("database", False, f"{exc}; fix DATABASE_URL or {fix}")]
    try:
        ok = await store.integrity_ok()
        return [
            CheckResult(
                "database",
                ok,
                f"{where} opened and migrated" if ok else f"{where} failed its integrity check",
            )
        ]
    finally:
        await store.close()


async def check_prices(settings: Settings) -> list[CheckResult]:
    """Every configured model should have a price, or its usage is recorded without a cost."""
    try:
        table = PriceTable.load(settings.prices_file)
    except PricesError as exc:
        return [CheckResult("prices", False, f"{exc}; fix the file or unset PRICES_FILE")]
    unknown = table.unknown(_model_settings(settings).values())
    if unknown:
        return [
            CheckResult(
                "prices",
                True,
                f"no price for {', '.join(unknown)}: its usage is recorded with no cost and budgets cannot "
                "count it; add it to a copy of bot/cost/prices.json and set PRICES_FILE",
                warning=True,
            )
        ]
    source = settings.prices_file or "the shipped table"
    return [CheckResult("prices", True, f"every configured model has a price ({source})")]


async def collect(settings: Settings, extra: list[Probe] | None = None) -> list[CheckResult]:
    results = [CheckResult("settings", True, "parsed")]
    results += await check_discord(settings)
    results += await check_openai(settings)
    results += await check_database(settings)
    results += await check_prices(settings)
    for probe in extra or []:
        results += await probe()
    return results


async def run_checks(settings: Settings, *, as_json: bool = False) -> int:
    results = await collect(settings)
    failed = [r for r in results if not r.ok]
    if as_json:
        print(json.dumps({"ok": not failed, "checks": [asdict(r) for r in results]}, indent=2))
        return 1 if failed else 0
    for result in results:
        print(result.line())
    print(f"{len(results) - len(failed)} ok, {len(failed)} failed")
    return 1 if failed else 0
