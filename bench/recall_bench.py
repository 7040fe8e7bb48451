"""/recall figures: indexing throughput and batching, search p50/p99 at 10k and 100k vectors, database size.

`python -m bench.recall_bench [--smoke]` alone, or `python -m bench --only recall`;
`python -m bench.recall_bench --backends 50000` compares search on SQLite, PostgreSQL's blobs and pgvector. Indexing runs the real
gateway against the fake OpenAI; search runs on synthetic unit vectors of EMBEDDING_DIMENSIONS floats.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import Figure, median, percentile
from bot.moderation.batcher import ModerationBatcher
from bot.moderation.channel import ChannelModerator
from bot.moderation.gate import ModerationGate
from bot.moderation.policy import PolicyRepo
from bot.moderation.queue import OutageQueue
from bot.moderation.records import ActionLog
from bot.moderation.strikes import Strikes
from bot.moderation.watermarks import Watermarks
from bot.openai_api.calls import CallContext
from bot.openai_api.gateway import OpenAIGateway
from bot.recall.index import DISCORD_EPOCH, Document, RecallIndex
from bot.recall.service import Recall
from bot.settings import Settings
from bot.storage.store import Store, open_store
from testkit.openai import FakeOpenAI

GUILD, CHANNELS = 1, 20


def channel_moderator(settings: Settings, gateway: OpenAIGateway, store: Store) -> ChannelModerator:
    """The moderator as bot/services.py builds it, without the rest of the bot."""
    policies = PolicyRepo(store)
    gate = ModerationGate(
        gateway, batcher=ModerationBatcher.from_settings(gateway, settings), policies=policies
    )
    return ChannelModerator(
        gate, policies, OutageQueue(store), ActionLog(store), Strikes(store), Watermarks(store)
    )


WORDS = (
    "pizza dough ridge hike launch code wifi studio raid ban list meeting friday snacks game night".split()
)


def _snowflake(rng: random.Random) -> int:
    when_ms = int((time.time() - rng.uniform(0, 30 * 86400) - DISCORD_EPOCH) * 1000)
    return (when_ms << 22) | rng.getrandbits(22)


def _documents(rng: random.Random, count: int) -> list[Document]:
    return [
        Document(
            _snowflake(rng),
            GUILD,
            100 + rng.randrange(CHANNELS),
            1000 + rng.randrange(50),
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))),
            "someone",
        )
        for _ in range(count)
    ]


async def _index_rate(
    settings: Settings, fake: FakeOpenAI, directory: Path, count: int
) -> tuple[float, float]:
    """(messages per second, embeddings per request) through the real indexer and gateway."""
    store = await open_store(directory / f"index-{settings.recall_batch_size}.db")
    gateway = OpenAIGateway.from_settings(settings)
    try:
        moderator = channel_moderator(settings, gateway, store)
        index = RecallIndex(store, settings.embedding_model)
        recall = Recall(index, gateway, moderator, settings)
        await recall.enable(GUILD, 1)
        documents = _documents(random.Random(1), count)
        started = time.perf_counter()
        recall.submit(documents)
        await recall.idle()
        elapsed = time.perf_counter() - started
        return recall.stats.embedded / elapsed, recall.stats.embedded / max(1, recall.stats.requests)
    finally:
        await gateway.close()
        await store.close()


async def _fill(index: RecallIndex, rng: random.Random, dims: int, upto: int, have: int) -> None:
    import numpy as np

    generator = np.random.default_rng(rng.randrange(2**32))
    while have < upto:
        n = min(5000, upto - have)
        vectors = generator.standard_normal((n, dims), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        await index.add(_documents(rng, n), vectors)
        have += n


async def _search_times(index: RecallIndex, dims: int, queries: int) -> list[float]:
    import numpy as np

    generator = np.random.default_rng(7)
    channels = list(range(100, 100 + CHANNELS - 2))  # a member who cannot read two channels
    times = []
    for _ in range(queries):
        q = generator.standard_normal(dims, dtype=np.float32)
        q /= np.linalg.norm(q)
        started = time.perf_counter()
        await index.search(GUILD, q, channels, limit=5)
        times.append(time.perf_counter() - started)
    return times


async def run(smoke: bool = False) -> list[Figure]:
    index_count, sizes, queries = (300, [2_000, 5_000], 10) if smoke else (5_000, [10_000, 100_000], 100)
    figures: list[Figure] = []
    section = "Recall"
    async with FakeOpenAI() as fake:
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            base = Settings(
                discord_token="x",
                openai_api_key=fake.api_key,
                openai_base_url=fake.base_url,
                openai_timeout=30.0,
            )
            dims = base.embedding_dimensions
            batched = await _index_rate(base, fake, directory, index_count)
            single = await _index_rate(
                base.model_copy(update={"recall_batch_size": 1}), fake, directory, max(50, index_count // 10)
            )
            figures += [
                Figure(section, "index messages per second (fake OpenAI, local)", batched[0], "msg/s",
                       single[0], "one request per message"),
                Figure(section, "embeddings per request", batched[1], "inputs/req", single[1],
                       "one request per message", f">= {min(base.recall_batch_size, index_count) // 2}",
                       batched[1] >= min(base.recall_batch_size, index_count) // 2),
            ]  # fmt: skip

            path = directory / "search.db"
            store = await open_store(path)
            try:
                index = RecallIndex(store, base.embedding_model)
                rng = random.Random(3)
                have = 0
                for size in sizes:
                    await _fill(index, rng, dims, size, have)
                    have = size
                    started = time.perf_counter()
                    await _search_times(index, dims, 1)  # loads the server's matrix into the cache
                    first = time.perf_counter() - started
                    cached = await _search_times(index, dims, queries)
                    cache_mib = index.memory_bytes() / 2**20
                    index.cached_vectors, saved = 0, index.cached_vectors  # the baseline reads the database
                    index._cache.clear()
                    scanned = await _search_times(index, dims, max(3, queries // 10))
                    index.cached_vectors = saved
                    label = f"{size:,} vectors of {dims}"
                    figures += [
                        Figure(section, f"search p50, {label}", median(cached) * 1000, "ms",
                               median(scanned) * 1000, "numpy over blobs read from SQLite each query"),
                        Figure(section, f"search p99, {label}", percentile(cached, 99) * 1000, "ms",
                               percentile(scanned, 99) * 1000, "numpy over blobs read from SQLite each query",
                               "< 100 ms", percentile(cached, 99) < 0.1),
                        Figure(section, f"first search (loads the cache), {label}", first * 1000, "ms"),
                        Figure(section, f"search cache in memory, {label}", cache_mib, "MiB"),
                    ]  # fmt: skip
                await store.checkpoint()
                size_bytes = sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if os.path.exists(p))  # noqa: ASYNC240
                per_100k = size_bytes / have * 100_000 / 2**20
                figures.append(
                    Figure(section, f"database size per 100,000 vectors of {dims}", per_100k, "MiB",
                           dims * 4 * 100_000 / 2**20, "the raw float32 vectors alone")
                )  # fmt: skip

                # /ask's lookup before the first token: embed the prompt (fake, local) and search.
                gateway = OpenAIGateway.from_settings(base)
                try:
                    moderator = channel_moderator(base, gateway, store)
                    recall = Recall(index, gateway, moderator, base)
                    await recall.enable(GUILD, 1)
                    times = []
                    for n in range(max(5, queries // 5)):
                        started = time.perf_counter()
                        await recall.recollect(CallContext(GUILD, 100, 1, "ask"), f"what about the pizza {n}")
                        times.append(time.perf_counter() - started)
                    figures.append(
                        Figure(section, f"/ask recall lookup p50 at {have:,} vectors (+ upstream latency)",
                               median(times) * 1000, "ms", note=f"capped by RECALL_ASK_WAIT={base.recall_ask_wait}s")
                    )  # fmt: skip
                finally:
                    await gateway.close()
            finally:
                await store.close()
    return figures


async def _search_on(
    url: str, label: str, dims: int, size: int, queries: int, pgvector: bool
) -> list[Figure]:
    """Fill one database with `size` vectors and time searches as /recall runs them there."""
    section = f"Recall search on {label}, {size:,} vectors of {dims}"
    store = await open_store(url)
    try:
        index = RecallIndex(store, "text-embedding-3-small", dimensions=dims, pgvector=pgvector)
        built = await index.pg.ready()
        if built:
            # Bulk-built after the fill, as its insert-time upkeep would make the fill take many minutes.
            await store.execute("DROP INDEX recall_embedding_hnsw")
        started = time.perf_counter()
        await _fill(index, random.Random(3), dims, size, 0)
        fill = time.perf_counter() - started
        figures = [Figure(section, "writing the vectors (5,000 per transaction)", size / fill, "vectors/s")]
        if built:
            import asyncpg

            started = time.perf_counter()
            # Its own connection: the build outlasts the pool's 60 s statement timeout on a busy machine.
            admin = await asyncpg.connect(url)
            try:
                await admin.execute("SET maintenance_work_mem = '256MB'")
                await admin.execute(
                    "CREATE INDEX recall_embedding_hnsw ON recall_vectors USING hnsw (embedding vector_cosine_ops)",
                    timeout=None,
                )
                await admin.execute("ANALYZE recall_vectors")
            finally:
                await admin.close()
            times = await _search_times(index, dims, queries)
            return [
                *figures,
                Figure(section, "building the HNSW index", time.perf_counter() - started, "s"),
                Figure(section, "pgvector search p50", median(times) * 1000, "ms"),
                Figure(section, "pgvector search p99", percentile(times, 99) * 1000, "ms"),
            ]
        started = time.perf_counter()
        await _search_times(index, dims, 1)  # loads the server's matrix into the cache
        first = time.perf_counter() - started
        cached = await _search_times(index, dims, queries)
        index.cached_vectors = 0  # a server too big for the cache: read from the database each query
        index._cache.clear()
        scanned = await _search_times(index, dims, max(3, queries // 10))
        return [
            *figures,
            Figure(section, "blob search p50 (cached matrix)", median(cached) * 1000, "ms"),
            Figure(section, "blob search p99 (cached matrix)", percentile(cached, 99) * 1000, "ms"),
            Figure(section, "first search (loads the matrix)", first * 1000, "ms"),
            Figure(section, "blob search p50, read from the database each query", median(scanned) * 1000, "ms"),
            Figure(section, "blob search p99, read from the database each query",
                   percentile(scanned, 99) * 1000, "ms"),
        ]  # fmt: skip
    finally:
        await store.close()


async def run_backends(size: int, queries: int) -> list[Figure]:
    """The blob search on SQLite and on PostgreSQL, and pgvector where the PostgreSQL server has it."""
    from testkit.postgres import Cluster

    dims = Settings(discord_token="x", openai_api_key="sk-x").embedding_dimensions
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        figures += await _search_on(str(Path(tmp) / "search.db"), "SQLite", dims, size, queries, False)
    cluster = Cluster()
    try:
        await asyncio.to_thread(cluster.start)
        url = await asyncio.to_thread(cluster.create_database)
        figures += await _search_on(url, "PostgreSQL (blobs)", dims, size, queries, False)
        url = await asyncio.to_thread(cluster.create_database)
        pg = await _search_on(url, "PostgreSQL (pgvector)", dims, size, queries, True)
        if len(pg) == 1:
            pg.append(Figure(pg[0].section, "pgvector search", 0, "-", note="the server has no pgvector"))
        figures += pg
    finally:
        await asyncio.to_thread(cluster.stop)
    return figures


def main(argv: list[str] | None = None) -> int:
    from bench.__main__ import render

    parser = argparse.ArgumentParser(prog="python -m bench.recall_bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument(
        "--backends",
        type=int,
        metavar="VECTORS",
        help="instead: search times on SQLite, PostgreSQL's blobs and pgvector at this many vectors",
    )
    parser.add_argument("--queries", type=int, default=100, help="searches timed per figure (--backends)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.backends:
        figures = asyncio.run(run_backends(args.backends, args.queries))
        command = f"--backends {args.backends} --queries {args.queries}"
    else:
        figures = asyncio.run(run(args.smoke))
        command = " --smoke" if args.smoke else ""
    print(f"\n`python -m bench.recall_bench{command and ' ' + command.strip()}`, {os.cpu_count()} CPUs, "
          f"{time.monotonic() - started:.0f} s:\n")  # fmt: skip
    print(render(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
