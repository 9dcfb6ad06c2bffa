"""Listing tickets over a million rows: `list_tickets` and `count_by_state` latency through real RPC.

What it measures
    1. Fill (skipped with `--reuse NAME` when that database is already filled): a PostgreSQL
       database is migrated and filled with `--rows` (1,000,000) tickets by COPY, secondary
       indexes dropped first and rebuilt after, then ANALYZE. The data is shaped like a real
       helpdesk over 2 years: ids grow with created_at; states by age (old ones mostly closed,
       the last weeks open); priorities, channels; a category tree of ~40 nodes; 300
       organisations of Zipf-like size with ~30,000 requesters; 60 solvers; subjects and
       descriptions from Czech helpdesk words with Zipf-like frequencies (5 % of them also
       quote an error code ERR-nnnn), so a text search for a frequent word (25-40 % of
       tickets), a rarer word (~2 %) and an error code (~5 tickets) behave differently.
    2. One tickets service (`helpdesk run tickets`, separate OS process, private vhost) and
       `--clients` RPC clients (green threads, own ClusterRpcProxy each; default 1, i.e.
       plain sequential latency) call `list_tickets` `--calls` times per query type, types
       interleaved at random, parameters drawn at random per call:
         no_filter, state, state+category (subtree), solver, solver+open, org+state,
         text_common / text_mid / text_rare, created_range (7 or 30 days), page2 (second
         page via the first page's cursor; only page 2 is timed), requester (a portal
         customer's own tickets, the actor's scope does the filtering),
       then `count_by_state` with no filter, org, solver, category.
    3. p50 / p99 / max per type and overall (list_tickets), median over `--runs` passes.
       `--explain` prints EXPLAIN (ANALYZE, BUFFERS) of the exact SQL the handler issues
       (captured from handlers.list_tickets) for one sample query of each type.

Target
    list_tickets p99 < 50 ms per query type (and overall) with 1,000,000 tickets;
    count_by_state is reported beside it against the same 50 ms.

Usage
    .venv/bin/python bench/ticket_list.py --reuse bench_list [--rows 1000000] [--calls 300] [--runs 3]
        [--clients 1] [--explain] [--refill]
    Without --reuse a throwaway database is filled and dropped at the end (minutes).
"""
from __future__ import annotations

import argparse
import bisect
import datetime as dt
import io
import itertools
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
import czech_words as W  # noqa: E402

TARGET_P99 = 0.050
SPAN_DAYS = 730
N_ORGS = 300
REQ_PER_ORG_MAX = 400
N_SOLVERS = 60
OPEN = ["received", "in_progress", "waiting_on_customer"]
# which vocabulary ranks the text searches use (0 = most frequent); text_rare looks for one error code
TEXT_RANKS = {"text_common": [10, 11, 17, 20], "text_mid": [296, 300, 304, 309]}
N_ERROR_CODES = 10_000
ERROR_CODE_SHARE = 0.05  # of descriptions quote an error code, ~5 tickets per code
META_VERSION = 3


def error_code(i: int) -> str:
    return f"ERR-{i:04d}"


# ---------------------------------------------------------------- data model of the fill

def zipf_cum(n: int, s: float) -> list[float]:
    w = [1.0 / (i + 1) ** s for i in range(n)]
    return list(itertools.accumulate(w))


def org_id(i: int) -> str:
    return f"org-{i + 1:03d}"


def solver(i: int) -> tuple[str, str, str]:
    return f"solver-{i + 1:02d}", f"Řešitel {i + 1}", f"solver-{i + 1:02d}@dodavatel.cz"


def requester_of(org: int, k: int) -> tuple[str, str, str]:
    ident = f"req-{org + 1:03d}-{k:03d}"
    return ident, f"Zákazník {org + 1}/{k}", f"{ident}@firma{org + 1}.cz"


def org_requesters(org: int) -> int:
    """Requesters per organisation: big organisations have more people."""
    return max(3, int(REQ_PER_ORG_MAX / (org + 1) ** 0.7))


class Shape:
    """Deterministic parameters of the fill, shared by the generator workers and the query planner."""

    def __init__(self, rows: int, end: dt.datetime, category_ids: list[int]):
        self.rows = rows
        self.end = end
        self.start = end - dt.timedelta(days=SPAN_DAYS)
        self.step = (self.end - self.start).total_seconds() / rows
        self.category_ids = category_ids

    def created(self, ticket_id: int, jitter: float) -> dt.datetime:
        return self.start + dt.timedelta(seconds=(ticket_id - 1 + jitter) * self.step)

    def first_id_of_year(self, year: int) -> int:
        t = dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc)
        if t <= self.start:
            return 1
        # numbers are (year, id - first_id + 1): unique whichever side of New Year a boundary ticket's jitter puts it
        return int((t - self.start).total_seconds() // self.step) + 1


def _state_for(age_days: float, rnd: random.Random) -> str:
    x = rnd.random()
    if age_days <= 14:
        table = (("received", .20), ("in_progress", .35), ("waiting_on_customer", .15), ("resolved", .20),
                 ("closed", .10))
    elif age_days <= 60:
        table = (("received", .02), ("in_progress", .12), ("waiting_on_customer", .06), ("resolved", .20),
                 ("closed", .60))
    else:
        table = (("received", .005), ("in_progress", .03), ("waiting_on_customer", .015), ("resolved", .02),
                 ("closed", .93))
    acc = 0.0
    for state, p in table:
        acc += p
        if x < acc:
            return state
    return "closed"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")


def _ts(t: dt.datetime | None) -> str:
    return "\\N" if t is None else t.isoformat()


def generate_chunk(job: tuple) -> str:
    """COPY text rows for ids [lo, hi)."""
    lo, hi, rows, end_iso, category_ids, seed = job
    shape = Shape(rows, dt.datetime.fromisoformat(end_iso), category_ids)
    rnd = random.Random(seed * 1_000_003 + lo)
    vocab_cum = zipf_cum(len(W.VOCABULARY), 1.0)
    org_cum = zipf_cum(N_ORGS, 1.1)
    solver_cum = zipf_cum(N_SOLVERS, 0.6)
    cat_cum = zipf_cum(len(category_ids), 0.8)
    prio = (("low", .15), ("normal", .60), ("high", .20), ("urgent", .05))
    chan = (("portal", .50), ("email", .30), ("phone", .15), ("api", .05))
    year_first: dict[int, int] = {}
    out = io.StringIO()
    vocab = W.VOCABULARY
    for tid in range(lo, hi):
        created = shape.created(tid, rnd.random())
        year = created.year
        if year not in year_first:
            year_first[year] = shape.first_id_of_year(year)
        number = f"HD-{year}-{tid - year_first[year] + 1:06d}"
        age = (shape.end - created).total_seconds() / 86400
        state = _state_for(age, rnd)
        org = bisect.bisect(org_cum, rnd.random() * org_cum[-1])
        req = requester_of(org, rnd.randrange(org_requesters(org)))
        subject = f"{_cap(rnd.choice(W.OBJECTS))} {rnd.choice(W.PROBLEMS)}"
        if rnd.random() < 0.3:
            subject += " – " + " ".join(rnd.choices(vocab, cum_weights=vocab_cum, k=rnd.randint(1, 3)))
        words = rnd.choices(vocab, cum_weights=vocab_cum, k=rnd.randint(12, 60))
        description = _cap(" ".join(words)) + "."
        if rnd.random() < ERROR_CODE_SHARE:
            description += f" Kód chyby {error_code(rnd.randrange(N_ERROR_CODES))}."
        category = None if rnd.random() < 0.08 else category_ids[bisect.bisect(cat_cum, rnd.random() * cat_cum[-1])]
        priority = _pick(prio, rnd)
        channel = _pick(chan, rnd)
        sol = None
        if state != "received" or rnd.random() < 0.1:
            sol = solver(bisect.bisect(solver_cum, rnd.random() * solver_cum[-1]))
        first_response = (min(created + dt.timedelta(minutes=rnd.randint(5, 600)), shape.end)
                          if state != "received" else None)
        resolved = closed = None
        close_reason = None
        if state == "resolved":
            # the service closes resolved tickets after HELPDESK_AUTO_CLOSE_DAYS (7): resolved ones are recent
            resolved = shape.end - dt.timedelta(days=rnd.uniform(0, min(age, 6.5)))
        elif state == "closed":
            resolved = min(created + dt.timedelta(hours=rnd.uniform(0.5, min(age * 24, 240))), shape.end)
        if state == "closed":
            close_reason = "resolved" if rnd.random() < 0.93 else rnd.choice(("duplicate", "spam", "withdrawn"))
            closed = min(resolved + dt.timedelta(days=rnd.uniform(0, 7)), shape.end)
        updated = max(x for x in (created, first_response, resolved, closed) if x is not None)
        contract = f"SML-{org + 1:03d}-{rnd.randint(1, 3)}" if rnd.random() < 0.5 else None
        version = 1 + (state != "received") + (state in ("resolved", "closed")) + (state == "closed") \
            + rnd.randint(0, 2)
        out.write("\t".join((
            str(tid), number, _esc(subject), _esc(description), req[0], req[1], req[2], org_id(org),
            contract or "\\N", "\\N" if category is None else str(category), priority, channel, state,
            sol[0] if sol else "\\N", sol[1] if sol else "\\N", sol[2] if sol else "\\N", close_reason or "\\N",
            _ts(created), _ts(updated), _ts(first_response), _ts(resolved), _ts(closed), str(version),
        )))
        out.write("\n")
    return out.getvalue()


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _pick(table, rnd: random.Random) -> str:
    x = rnd.random()
    acc = 0.0
    for value, p in table:
        acc += p
        if x < acc:
            return value
    return table[-1][0]


COLUMNS = ("id, number, subject, description, requester_id, requester_name, requester_email, organisation_id, "
           "contract, category_id, priority, channel, state, solver_id, solver_name, solver_email, close_reason, "
           "created_at, updated_at, first_response_at, resolved_at, closed_at, version")


def _raw_conn(db_url: str):
    import psycopg2

    return psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=db_url.rsplit("/", 1)[1])


def _categories(conn) -> list[int]:
    now = dt.datetime.now(dt.timezone.utc)
    ids = []
    with conn.cursor() as cur:
        def add(name, parent):
            cur.execute("INSERT INTO categories (name, parent_id, active, created_at) VALUES (%s, %s, true, %s) "
                        "RETURNING id", (name, parent, now))
            ids.append(cur.fetchone()[0])
            return ids[-1]

        for root, children in W.CATEGORY_TREE.items():
            r = add(root, None)
            for child, leaves in children.items():
                c = add(child, r)
                for leaf in leaves:
                    add(leaf, c)
    conn.commit()
    return ids


def fill(name: str, rows: int, seed: int) -> dict:
    """Create, migrate and fill database `name`; returns the metadata stored on it."""
    t0 = time.time()
    url = C.create_migrated_db(name)
    conn = _raw_conn(url)
    category_ids = _categories(conn)
    end = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    with conn.cursor() as cur:
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tickets' "
                    "AND indexname NOT IN ('pk_tickets', 'uq_tickets_number')")
        indexes = cur.fetchall()
        for idx, _ in indexes:
            cur.execute(f"DROP INDEX {idx}")
        cur.execute("ALTER TABLE tickets DROP CONSTRAINT fk_tickets_category_id_categories")
    conn.commit()
    print(f"  fill: dropped {len(indexes)} secondary indexes; generating {rows:,} rows", flush=True)
    chunk = 20_000
    jobs = [(lo, min(lo + chunk, rows + 1), rows, end.isoformat(), category_ids, seed)
            for lo in range(1, rows + 1, chunk)]
    done = 0
    with multiprocessing.get_context("fork").Pool(max(1, (os.cpu_count() or 2))) as pool:
        with conn.cursor() as cur:
            for text in pool.imap(generate_chunk, jobs):
                cur.copy_expert(f"COPY tickets ({COLUMNS}) FROM STDIN", io.StringIO(text))
                done += text.count("\n")
                if done % 200_000 < chunk:
                    print(f"    {done:>9,} rows  {time.time() - t0:6.0f}s", flush=True)
        conn.commit()
    t_copy = time.time() - t0
    with conn.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '1GB'")
        cur.execute("SET max_parallel_maintenance_workers = 2")
        cur.execute("SELECT setval(pg_get_serial_sequence('tickets', 'id'), %s)", (rows,))
        for idx, ddl in indexes:
            t = time.time()
            cur.execute(ddl)
            conn.commit()
            print(f"    {idx:<32} {time.time() - t:6.1f}s", flush=True)
        cur.execute("ALTER TABLE tickets ADD CONSTRAINT fk_tickets_category_id_categories "
                    "FOREIGN KEY (category_id) REFERENCES categories (id)")
        # numbers allocated next must follow the generated ones
        cur.execute("SELECT split_part(number, '-', 2)::int AS y, max(split_part(number, '-', 3)::int) "
                    "FROM tickets GROUP BY 1")
        for year, top in cur.fetchall():
            cur.execute("INSERT INTO counters (name, value) VALUES (%s, %s) "
                        "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (f"ticket-{year}", top))
        conn.commit()
    conn.autocommit = True
    with conn.cursor() as cur:
        t = time.time()
        cur.execute("VACUUM (ANALYZE) tickets")
        cur.execute("ANALYZE")
        print(f"    vacuum analyze {time.time() - t:6.1f}s", flush=True)
        terms = {}
        samples = [(kind, W.VOCABULARY[r]) for kind, ranks in TEXT_RANKS.items() for r in ranks]
        samples += [("text_rare", error_code(i)) for i in (17, 4242, 7777)]
        for kind, word in samples:
            cur.execute("SELECT count(*) FROM tickets WHERE subject ILIKE %s OR description ILIKE %s",
                        (f"%{word}%", f"%{word}%"))
            terms[word] = {"kind": kind, "matches": cur.fetchone()[0]}
        meta = {"version": META_VERSION, "rows": rows, "seed": seed, "end": end.isoformat(),
                "category_ids": category_ids, "terms": terms, "fill_seconds": round(time.time() - t0, 1),
                "copy_seconds": round(t_copy, 1)}
        cur.execute(f"COMMENT ON DATABASE {name} IS %s", (json.dumps(meta, ensure_ascii=False),))
    conn.close()
    print(f"  fill: {rows:,} rows in {meta['fill_seconds']:.0f}s (COPY {t_copy:.0f}s)", flush=True)
    return meta


def read_meta(name: str) -> dict | None:
    if not C.pg_exists(name):
        return None
    conn = _raw_conn(C.pg_url(name))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,))
            row = cur.fetchone()
        return json.loads(row[0]) if row and row[0] else None
    except Exception:
        return None
    finally:
        conn.close()


# ---------------------------------------------------------------- the queries

def staff() -> dict:
    return {"id": "dispatcher-1", "name": "Dispečer", "roles": ["dispatcher"], "organisation_id": None,
            "email": "dispatcher@dodavatel.cz"}


def category_subtrees(meta: dict) -> list[int]:
    """Roots and middle nodes of the tree (leaves are few tickets each; roots and middles are what people pick)."""
    ids = meta["category_ids"]
    out, i = [], 0
    for root, children in W.CATEGORY_TREE.items():
        out.append(ids[i])
        i += 1
        for _, leaves in children.items():
            out.append(ids[i])
            i += 1 + len(leaves)
    return out


def make_query(kind: str, meta: dict, rnd: random.Random) -> tuple[dict, dict]:
    """(actor, query) for one list_tickets call of type `kind`."""
    end = dt.datetime.fromisoformat(meta["end"])
    org_cum = zipf_cum(N_ORGS, 1.1)
    states = [["received"], ["in_progress"], OPEN, ["waiting_on_customer"], ["resolved"], ["closed"]]
    if kind == "no_filter":
        return staff(), {}
    if kind == "state":
        return staff(), {"state": rnd.choice(states)}
    if kind == "state+category":
        return staff(), {"state": rnd.choice(states), "category_id": rnd.choice(category_subtrees(meta))}
    if kind == "solver":
        return staff(), {"solver_id": solver(rnd.randrange(N_SOLVERS))[0]}
    if kind == "solver+open":
        return staff(), {"solver_id": solver(rnd.randrange(N_SOLVERS))[0], "state": OPEN}
    if kind == "org+state":
        org = bisect.bisect(org_cum, rnd.random() * org_cum[-1])
        return staff(), {"organisation_id": org_id(org), "state": rnd.choice(states)}
    if kind == "text_rare":
        return staff(), {"text": error_code(rnd.randrange(N_ERROR_CODES))}
    if kind.startswith("text_"):
        return staff(), {"text": W.VOCABULARY[rnd.choice(TEXT_RANKS[kind])]}
    if kind == "created_range":
        days = rnd.choice((7, 30))
        frm = end - dt.timedelta(days=rnd.uniform(days, SPAN_DAYS))
        return staff(), {"created_from": frm.isoformat(), "created_to": (frm + dt.timedelta(days=days)).isoformat()}
    if kind == "page2":
        base = rnd.choice(("no_filter", "state", "org+state", "state+category"))
        return make_query(base, meta, rnd)
    if kind == "requester":
        org = bisect.bisect(org_cum, rnd.random() * org_cum[-1])
        ident, name, email = requester_of(org, rnd.randrange(org_requesters(org)))
        return {"id": ident, "name": name, "roles": ["requester"], "organisation_id": org_id(org),
                "email": email}, {}
    raise ValueError(kind)


LIST_KINDS = ("no_filter", "state", "state+category", "solver", "solver+open", "org+state", "text_common",
              "text_mid", "text_rare", "created_range", "page2", "requester")
COUNT_KINDS = ("count:no_filter", "count:org", "count:solver", "count:category")


def make_count(kind: str, meta: dict, rnd: random.Random) -> tuple[dict, dict]:
    org_cum = zipf_cum(N_ORGS, 1.1)
    if kind == "count:no_filter":
        return staff(), {}
    if kind == "count:org":
        return staff(), {"organisation_id": org_id(bisect.bisect(org_cum, rnd.random() * org_cum[-1]))}
    if kind == "count:solver":
        return staff(), {"solver_id": solver(rnd.randrange(N_SOLVERS))[0]}
    if kind == "count:category":
        return staff(), {"category_id": rnd.choice(category_subtrees(meta))}
    raise ValueError(kind)


def plan(meta: dict, calls: int, count_calls: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    items = []
    for kind in LIST_KINDS:
        for _ in range(calls):
            actor, q = make_query(kind, meta, rnd)
            items.append({"kind": kind, "method": "list_tickets", "actor": actor, "query": q,
                          "page2": kind == "page2"})
    for kind in COUNT_KINDS:
        for _ in range(count_calls):
            actor, q = make_count(kind, meta, rnd)
            items.append({"kind": kind, "method": "count_by_state", "actor": actor, "query": q, "page2": False})
    rnd.shuffle(items)
    return items


# ---------------------------------------------------------------- child: RPC clients

def client_main(args) -> int:
    import eventlet

    eventlet.monkey_patch()
    from nameko.standalone.rpc import ClusterRpcProxy

    from helpdesk.common import config as config_module

    cfg = config_module.load({"HELPDESK_AMQP_URI": args.amqp_uri})
    items = json.loads(Path(args.plan).read_text())
    proxies = [ClusterRpcProxy(cfg.nameko(), timeout=120) for _ in range(args.threads)]
    started = [p.start() for p in proxies]
    # warm up: the first calls of a process pay for connections, caches, compiled statements
    for it in items[: args.warmup_calls]:
        call(started[0], it)
    queue = list(reversed(list(enumerate(items))))
    results = []

    def run(proxy):
        while queue:
            i, it = queue.pop()
            latency, n = call(proxy, it)
            results.append((it["kind"], latency, n, i, time.time()))

    pool = eventlet.GreenPool(args.threads)
    t0 = time.time()
    for proxy in started:
        pool.spawn(run, proxy)
    pool.waitall()
    wall = time.time() - t0
    for p in proxies:
        p.stop()
    print("RESULT " + json.dumps({"results": results, "wall": wall}), flush=True)
    return 0


def call(proxy, it: dict) -> tuple[float, int]:
    method = getattr(proxy.tickets, it["method"])
    if it["page2"]:
        first = method(actor=it["actor"], query=it["query"])
        if not first["next_cursor"]:
            return float("nan"), 0
        query = {**it["query"], "cursor": first["next_cursor"]}
    else:
        query = it["query"]
    t0 = time.perf_counter()
    out = method(actor=it["actor"], query=query)
    latency = time.perf_counter() - t0
    n = len(out["items"]) if it["method"] == "list_tickets" else sum(out.values())
    return latency, n


# ---------------------------------------------------------------- EXPLAIN ANALYZE of the handler's own SQL

def explain_samples(meta: dict, seed: int) -> list[tuple[str, dict, dict]]:
    rnd = random.Random(seed)
    return [(kind, *(make_count(kind, meta, rnd) if kind.startswith("count:") else make_query(kind, meta, rnd)))
            for kind in LIST_KINDS + COUNT_KINDS]


def explain(db_url: str, samples: list[tuple[str, dict, dict]], title: str = "") -> None:
    import sqlalchemy as sa
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from helpdesk.common.schemas import load
    from helpdesk.tickets import handlers, schemas
    from helpdesk.tickets.service import actor_from

    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    captured: list[tuple[str, object]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _capture(conn, cursor, statement, parameters, context, executemany):
        if "FROM tickets" in statement:
            captured.append((statement, parameters))

    for kind, actor, q in samples:
        with Session(engine) as session:
            who = actor_from(actor)
            if kind == "page2":
                first = handlers.list_tickets(session, who, load(schemas.ListQuery(), q, "query"))
                q = {**q, "cursor": first["next_cursor"]}
            captured.clear()
            loaded = load(schemas.ListQuery(), q, "query")
            if kind.startswith("count:"):
                handlers.count_by_state(session, who, loaded)
            else:
                handlers.list_tickets(session, who, loaded)
            statement, params = captured[-1]
            raw = session.connection().connection.dbapi_connection
            with raw.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                plan_text = "\n".join(r[0] for r in cur.fetchall())
        print(f"\n=== {title}{kind}: {json.dumps(q, ensure_ascii=False)}"
              f"{'' if actor['roles'] != ['requester'] else ' as requester ' + actor['id']}")
        print(plan_text)
    engine.dispose()


# ---------------------------------------------------------------- parent

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reuse", metavar="NAME", help="use (and keep) database NAME, filling it only if it isn't yet")
    p.add_argument("--refill", action="store_true", help="with --reuse: drop and fill again")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--calls", type=int, default=300, help="list_tickets calls per query type per run")
    p.add_argument("--count-calls", type=int, default=100, help="count_by_state calls per kind per run")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--clients", type=int, default=1, help="concurrent RPC clients (green threads)")
    p.add_argument("--warmup-calls", type=int, default=30)
    p.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of one query of each type")
    p.add_argument("--fill-only", action="store_true")
    p.add_argument("--profile", metavar="DIR", help="py-spy the service during each run (collapsed stacks in DIR)")
    p.add_argument("--json", metavar="FILE", help="write raw per-call results to FILE")
    p.add_argument("--_client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--amqp-uri", help=argparse.SUPPRESS)
    p.add_argument("--plan", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._client:
        return client_main(args)

    C.print_machine()
    name = args.reuse or f"bench_list_{os.getpid()}"
    meta = read_meta(name) if args.reuse and not args.refill else None
    if meta and (meta.get("rows") != args.rows or meta.get("version") != META_VERSION):
        print(f"database {name} holds {meta.get('rows')} rows (version {meta.get('version')}); "
              f"use --refill or --rows {meta.get('rows')}")
        return 2
    if meta is None:
        print(f"filling database {name} with {args.rows:,} tickets", flush=True)
        meta = fill(name, args.rows, args.seed)
    else:
        print(f"reusing database {name}: {meta['rows']:,} tickets, filled {meta['end']} "
              f"(fill took {meta['fill_seconds']:.0f}s)")
        # a kept database may predate newer migrations (e.g. added indexes): bring it to head first
        from helpdesk.cli import SERVICES, _migrations_path
        from helpdesk.common import db

        t = time.time()
        db.migrate(C.pg_url(name), _migrations_path(SERVICES["tickets"][1]))
        engine = db._engines.pop(db.normalise_url(C.pg_url(name)), None)
        if engine is not None:
            engine.dispose()
        print(f"  migrated to head in {time.time() - t:.1f}s")
    print("text search terms (tickets matching):",
          ", ".join(f"{w} [{v['kind'][5:]}] {v['matches']:,}" for w, v in meta["terms"].items()))
    if args.fill_only:
        return 0
    db_url = C.pg_url(name)
    if args.explain:
        explain(db_url, explain_samples(meta, args.seed), "sample ")

    vhost, amqp_uri = C.new_vhost("bench-list")
    data_dir = tempfile.mkdtemp(prefix="bench-list-")
    all_runs = []
    plans: list[list[dict]] = []
    try:
        # the filled data ages between runs: keep the auto-close timer from closing (and so changing)
        # tickets that turn 7 days resolved while the database is kept
        env = C.service_env(amqp_uri, db_url, data_dir, HELPDESK_AUTO_CLOSE_DAYS=36500)
        services = C.start_services(1, env, Path(data_dir) / "logs", amqp_uri)  # exits, logs kept, if it fails
        try:
            for run in range(args.runs):
                items = plan(meta, args.calls, args.count_calls, args.seed * 100 + run)
                plans.append(items)
                plan_file = Path(data_dir) / f"plan-{run}.json"
                plan_file.write_text(json.dumps(items, ensure_ascii=False))
                meter = C.CpuMeter({"service": [s.pid for s in services]})
                meter.start()
                spy = None
                if args.profile:
                    Path(args.profile).mkdir(parents=True, exist_ok=True)
                    spy = subprocess.Popen([str(C.VENV_BIN / "py-spy"), "record", "-p", str(services[0].pid),
                                            "-r", "200", "-f", "raw", "-o",
                                            str(Path(args.profile) / f"list-run{run}.txt")],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--_client", "--amqp-uri", amqp_uri,
                                      "--plan", str(plan_file), "--threads", str(args.clients),
                                      "--warmup-calls", str(args.warmup_calls)],
                                     capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
                cpu = meter.stop()
                if spy is not None:
                    spy.send_signal(__import__("signal").SIGINT)  # py-spy writes its file on SIGINT
                    spy.wait(60)
                line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if line is None:
                    raise SystemExit(f"client failed:\n{out.stderr[-3000:]}")
                res = json.loads(line[7:])
                res["cpu"] = cpu
                all_runs.append(res)
                lat = [r[1] for r in res["results"] if r[0] in LIST_KINDS and r[1] == r[1]]
                print(f"  run {run + 1}: {len(res['results'])} calls in {res['wall']:.0f}s; list_tickets p50 "
                      f"{C.ms(C.percentile(lat, 50))} ms p99 {C.ms(C.percentile(lat, 99))} ms; cpu% service "
                      f"{cpu['service']:.0f} postgres {cpu['postgres']:.0f} all {cpu['machine']:.0f}", flush=True)
        finally:
            C.stop_processes(services)
    except BaseException:
        if not args.reuse:
            C.drop_db(name)
        raise
    finally:
        C.delete_vhost(vhost)
    shutil.rmtree(data_dir, ignore_errors=True)

    print()
    print(f"median over {args.runs} runs of p50/p99/max per type; {args.calls} list calls per type per run, "
          f"{args.count_calls} count calls; {args.clients} client(s); {meta['rows']:,} tickets")
    head = f"{'query type':<18}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'rows/page':>10}  target p99 < 50 ms"
    print(head)
    print("-" * len(head))
    verdicts = {}
    for kind in LIST_KINDS + ("ALL list_tickets",) + COUNT_KINDS:
        per_run = []
        for res in all_runs:
            if kind == "ALL list_tickets":
                rs = [r for r in res["results"] if r[0] in LIST_KINDS]
            else:
                rs = [r for r in res["results"] if r[0] == kind]
            lat = [r[1] for r in rs if r[1] == r[1]]
            per_run.append((C.percentile(lat, 50), C.percentile(lat, 99), max(lat) if lat else float("nan"),
                            sum(r[2] for r in rs) / len(rs) if rs else 0))
        p50 = C.median([x[0] for x in per_run])
        p99 = C.median([x[1] for x in per_run])
        mx = C.median([x[2] for x in per_run])
        n = C.median([x[3] for x in per_run])
        ok = p99 < TARGET_P99
        verdicts[kind] = ok
        if kind == "ALL list_tickets" or kind == COUNT_KINDS[0]:
            print("-" * len(head))
        rows_col = f"{n:>10.1f}" if not kind.startswith("count:") else f"{'':>10}"
        print(f"{kind:<18}{C.ms(p50):>9}{C.ms(p99):>9}{C.ms(mx):>9}{rows_col}  {'PASS' if ok else 'FAIL'}")
    failed = [k for k, ok in verdicts.items() if not ok]
    print()
    print("target list_tickets p99 < 50 ms: " + ("PASS for every type" if not [
        k for k in failed if not k.startswith("count:")] else "FAIL for " + ", ".join(
        k for k in failed if not k.startswith("count:"))))
    if any(k.startswith("count:") for k in failed):
        print("count_by_state over 50 ms p99 for: " + ", ".join(k for k in failed if k.startswith("count:")))
    # the slowest calls of each type over target: which parameters, and (with --explain) their plans
    slow = []
    for kind in [k for k in LIST_KINDS + COUNT_KINDS if not verdicts[k]]:
        calls = sorted(((r[1], run_i, r[3]) for run_i, res in enumerate(all_runs) for r in res["results"]
                        if r[0] == kind and r[1] == r[1]), reverse=True)[:3]
        print(f"slowest {kind}:")
        for latency, run_i, idx in calls:
            it = plans[run_i][idx]
            print(f"  {latency * 1000:7.1f} ms  {json.dumps(it['query'], ensure_ascii=False)}")
        if calls:
            it = plans[calls[0][1]][calls[0][2]]
            slow.append((kind, it["actor"], it["query"]))
    if args.explain and slow:
        explain(db_url, slow, "slowest ")
    if args.json:
        Path(args.json).write_text(json.dumps(all_runs))
    if not args.reuse:
        C.drop_db(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
