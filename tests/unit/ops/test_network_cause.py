"""`check` reads the real cause of a network failure from the exception chain the SDKs raise."""

from __future__ import annotations

import errno
import socket
import ssl
from types import SimpleNamespace

import aiohttp
import pytest

from bot import errors
from bot.ops.doctor import network_cause

KEY = SimpleNamespace(host="api.openai.com", port=443, ssl=True, is_ssl=True)


def raised_through_the_sdk(cause: BaseException) -> errors.BotError:
    """The shape the gateway raises: a domain error from an SDK error from the transport's error."""
    try:
        try:
            raise cause
        except BaseException as transport:
            raise RuntimeError("Connection error.") from transport
    except RuntimeError as sdk:
        error = errors.UpstreamUnavailable()
        error.__cause__ = sdk
        return error


@pytest.mark.parametrize(
    ("cause", "phrase"),
    [
        (aiohttp.ClientConnectorDNSError(KEY, socket.gaierror(-2, "Name or service not known")), "DNS"),
        (socket.gaierror(-3, "Temporary failure in name resolution"), "DNS"),
        (aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(errno.ECONNREFUSED, "refused")), "refused"),
        (aiohttp.ClientConnectorError(KEY, OSError(errno.ENETUNREACH, "unreachable")), "network unreachable"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "network unreachable"),
        (aiohttp.ClientProxyConnectionError(KEY, OSError(errno.ECONNREFUSED, "proxy down")), "proxy"),
        (
            aiohttp.ClientConnectorCertificateError(KEY, ssl.SSLCertVerificationError("self-signed")),
            "certificate",
        ),
        (ssl.SSLError("wrong version number"), "TLS"),
    ],
)
def test_each_network_failure_is_named(cause: BaseException, phrase: str) -> None:
    described = network_cause(raised_through_the_sdk(cause), "api.openai.com")
    assert described is not None and phrase in described and "api.openai.com" in described


def test_a_failure_that_is_not_the_network_is_left_to_the_caller() -> None:
    assert network_cause(raised_through_the_sdk(ValueError("bad json")), "api.openai.com") is None
