"""``python -m tests.chaos``: the whole local system under Batch faults, peer restarts, resends and junk.

1. Start the identity endpoint and a Batch emulator that logs every request (in this process), the
   Service Bus peer as a separate process on a SQLite file, and the local host (function_app driven
   by a queue driver) pointed at all three.
2. Seed one Batch task per valid command, make ``--fault-rate`` of all Batch requests fail (every
   retryable kind the emulator can inject), send the valid commands, a few resends under new
   message_ids, and the malformed messages from ``tests/chaos/fuzz.py`` with the real SDK.
3. While they are processed, stop the peer with SIGTERM and later with SIGKILL, restarting it on the
   same file and port each time.
4. Collect every outcome from the topic and every dead-lettered message, wait until each command has
   ended (or the time limit), check (tests/chaos/checks.py), print a summary; exit 1 on any failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

from azure.servicebus import ServiceBusClient

from emulators.identity import IdentityEndpoint
from local.host import LocalHost, Ports
from tests.chaos import fuzz, selfcheck
from tests.chaos.batch import RecordingBatchEmulator
from tests.chaos.checks import INVALID_REASON, POISON_REASON, CheckResult, Tally, evaluate, terminals_by_command
from tests.chaos.collect import DeadLetterCollector, OutcomeCollector
from tests.chaos.model import MalformedMessage, Observed, Sent
from tests.chaos.peer import ROOT, PeerProcess, free_port, listening
from tests.chaos.send import Sender, malformed_message, valid_message
from tests.chaos.workload import fault_kinds, inject_faults, make_plan, seed_batch

DEFAULT_SEED: Final = 20261124
QUEUE: Final = "batch-commands"
TOPIC: Final = "batch-outcomes"
READ_TIMEOUT: Final = 1.0
# Short retries so a run of thousands of commands with 20 % failures ends in minutes; a retention
# timer that never fires during a run (it would add listing calls nobody sent a command for).
SETTINGS: Final = {
    "RETRY_BASE_DELAY_SECONDS": "0.2",
    "RETRY_MAX_DELAY_SECONDS": "1",
    "BATCH_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT),
    "BATCH_CONNECT_TIMEOUT_SECONDS": "2",
    "RETENTION_SCHEDULE": "0 0 0 1 1 *",
}
CHUNK: Final = 100
GRACEFUL_AT, LATE_RESENDS_AT, KILL_AT = 0.25, 0.45, 0.60
SHOWN: Final = 5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=10000, help="valid commands (default 10000)")
    parser.add_argument("--malformed", type=int, default=1000, help="malformed messages (default 1000)")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"seed of everything random (default {DEFAULT_SEED})"
    )
    parser.add_argument("--fault-rate", type=float, default=0.2, help="share of Batch requests that fail (default 0.2)")
    parser.add_argument("--resend-share", type=float, default=0.02, help="share of commands sent twice (default 0.02)")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds to wait for every outcome")
    parser.add_argument("--stall-limit", type=float, default=120, help="give up after this long without progress")
    parser.add_argument("--settle", type=float, default=5, help="quiet seconds to wait after the last outcome")
    parser.add_argument("--workdir", type=Path, help="keep the peer database and logs here (default: a temp dir)")
    parser.add_argument("--report", type=Path, help="also write the figures and findings as JSON here")
    parser.add_argument("--self-check", action="store_true", help="only prove that every check can fail, then exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.self_check:
        return selfcheck.main()
    try:
        return ChaosRun(args).execute()
    except KeyboardInterrupt:
        print("interrupted")
        return 2
    except Exception as exc:  # a stand-in that would not start, ...: not a finding about the product
        logging.getLogger("tests.chaos").exception("the chaos run could not complete")
        print(f"the chaos run could not complete: {type(exc).__name__}: {exc}")
        return 2


@dataclass
class Timeline:
    """What happened when, printed as it happens and again in the summary."""

    say: Callable[[str], None] = print
    events: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:7.1f}s  {what}")
        self.say(f"  {self.events[-1]}")


class ChaosRun:
    def __init__(self, args: argparse.Namespace, out: TextIO | None = None) -> None:
        self.args = args
        self.out = out
        self.timeline = Timeline(self.say)
        self.sent = Sent()
        self.log_counts: Counter[str] = Counter()

    def say(self, line: str = "") -> None:
        print(line, file=self.out, flush=True)

    # --- the run -------------------------------------------------------------------------------

    def execute(self) -> int:
        args = self.args
        self.commit = commit()  # the code under test is what was there when the run started
        self.say(
            f"chaos run: {args.commands} commands, {args.malformed} malformed, seed {args.seed}, "
            f"fault rate {args.fault_rate:.0%}, commit {self.commit}"
        )
        # First thing: Hypothesis also draws from constants in the modules imported so far.
        # Spares stand in for messages the SDK or the peer refuses to take, so at least --malformed arrive.
        malformed = fuzz.generate(args.malformed + max(10, args.malformed // 20), args.seed)
        self.preflight(malformed[: args.malformed])
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="chaos-"))
        workdir.mkdir(parents=True, exist_ok=True)
        dump_malformed(malformed, workdir / "malformed.txt")
        with self.logging_to(workdir / "run.log"), contextlib.ExitStack() as stack:
            tally, elapsed = self.run(stack, workdir, malformed)
        self.summary(tally, elapsed, workdir)
        if args.report:
            args.report.write_text(json.dumps(report(tally, elapsed, args, self.commit), indent=2))
        if args.workdir is None and not tally.failed:
            shutil.rmtree(workdir, ignore_errors=True)
        return 1 if tally.failed else 0

    def run(self, stack: contextlib.ExitStack, workdir: Path, malformed: list[MalformedMessage]) -> tuple[Tally, float]:
        args = self.args
        identity = stack.enter_context(IdentityEndpoint(port=0))
        batch = RecordingBatchEmulator(port=0, jwks_url=identity.jwks_url, fault_seed=args.seed)
        stack.enter_context(batch)
        peer = PeerProcess(free_port(), workdir / "peer.db", workdir / "peer.log")
        peer.start()
        stack.callback(peer.stop)
        host = LocalHost(
            ports=Ports(batch=batch.port, identity=identity.port, servicebus=peer.port, http=0),
            seed=False,
            print_outcomes=False,
            overrides={**SETTINGS, "IDENTITY_HEADER": identity.header_secret},
        )
        stack.enter_context(host)
        plan = make_plan(args.commands, args.seed, resend_share=args.resend_share)
        tasks = seed_batch(batch, plan)
        injected = inject_faults(batch, args.fault_rate, fault_kinds(READ_TIMEOUT))
        self.say(
            f"seeded {tasks} tasks in {len(plan.jobs)} jobs; {len(injected)} Batch fault kinds: "
            + ", ".join(name for name, _ in injected)
        )
        outcomes = OutcomeCollector(peer.connection_string, TOPIC).start()
        stack.callback(outcomes.stop)
        dead_letters = DeadLetterCollector(peer.connection_string, QUEUE).start()
        stack.callback(dead_letters.stop)
        sender = Sender(peer.connection_string, QUEUE, lambda: listening(peer.port))
        stack.callback(sender.close)

        self.timeline = Timeline(self.say)
        started = time.monotonic()
        by_id = {command.command_id: command for command in plan.commands}
        self.sent.valid = list(plan.commands)
        early = set(plan.resend_early)
        chunks = [plan.commands[i : i + CHUNK] for i in range(0, len(plan.commands), CHUNK)]
        per_chunk = math.ceil(args.malformed / max(1, len(chunks)))
        pending = iter(malformed)
        self.timeline.note("sending")
        for index, chunk in enumerate(chunks, start=1):
            messages = [valid_message(command) for command in chunk]
            messages += [valid_message(command, resend=True) for command in chunk if command.command_id in early]
            sender.send(messages)
            self.sent.resent.update(c.command_id for c in chunk if c.command_id in early)
            self.send_malformed(sender, pending, min(args.malformed, index * per_chunk))
        self.send_malformed(sender, pending, args.malformed)
        self.timeline.note(
            f"sent {len(plan.commands)} valid, {len(early)} resends, "
            f"{len(self.sent.malformed)} malformed ({len(self.sent.unsendable)} unsendable)"
        )

        limit = args.time_limit or max(300.0, args.commands * 0.1)
        graceful = late = kill = False
        last_change, last_seen = time.monotonic(), (-1, -1)
        last_report = time.monotonic()
        while True:
            time.sleep(0.25)
            observed = Observed(outcomes.snapshot(), dead_letters.snapshot())
            progress, remaining = self.progress(observed)
            if time.monotonic() - last_report >= 15:
                last_report = time.monotonic()
                self.say(
                    f"           {progress:.0%} ended, {remaining} to go; {len(observed.outcomes)} outcomes, "
                    f"{len(observed.dead_letters)} dead-letters so far"
                )
            seen = (len(observed.outcomes), len(observed.dead_letters))
            if seen != last_seen:
                last_change, last_seen = time.monotonic(), seen
            if not graceful and (progress >= GRACEFUL_AT or remaining == 0):
                self.timeline.note(f"peer: SIGTERM at {progress:.0%} of commands ended")
                took = peer.restart(hard=False)
                self.timeline.note(f"peer: back after {took:.1f} s")
                graceful = True
            elif not late and graceful and (progress >= LATE_RESENDS_AT or remaining == 0):
                sender.send([valid_message(by_id[cid], resend=True) for cid in plan.resend_late])
                self.sent.resent.update(plan.resend_late)
                self.timeline.note(f"sent {len(plan.resend_late)} late resends at {progress:.0%}")
                late = True
            elif not kill and late and (progress >= KILL_AT or remaining == 0):
                self.timeline.note(f"peer: SIGKILL at {progress:.0%} of commands ended")
                took = peer.restart(hard=True)
                self.timeline.note(f"peer: back after {took:.1f} s")
                kill = True
            quiet = time.monotonic() - last_change
            if kill and remaining == 0 and quiet >= args.settle and queue_idle(peer.connection_string):
                self.timeline.note("every command ended; queue idle")
                break
            if time.monotonic() - started > limit:
                self.timeline.note(f"time limit {limit:.0f} s reached with {remaining} commands not ended")
                break
            if quiet > args.stall_limit:
                self.timeline.note(f"no progress for {args.stall_limit:.0f} s; {remaining} commands not ended")
                break
        elapsed = time.monotonic() - started
        outcomes.stop()
        dead_letters.stop()
        observed = Observed(outcomes.snapshot(), dead_letters.snapshot(), list(batch.calls))
        self.redeliveries = outcomes.deliveries - len(observed.outcomes)
        self.unreadable_outcomes = outcomes.unreadable
        self.faults_fired = batch.faults.fired
        self.request_count = batch.request_count
        self.peer = peer
        self.peer_errors = peer.log_errors()
        self.sender_retries = sender.resends_after_error
        return evaluate(self.sent, observed, plan.seeded_jobs), elapsed

    def send_malformed(self, sender: Sender, pending: Iterator[MalformedMessage], until: int) -> None:
        """Send malformed messages until ``until`` of them were taken (refused ones do not count)."""
        while len(self.sent.malformed) < until:
            message = next(pending, None)
            if message is None:
                return
            if sender.send([malformed_message(message)], may_refuse=True):
                self.sent.malformed.append(message)
            else:
                self.sent.unsendable.append(message)

    def progress(self, observed: Observed) -> tuple[float, int]:
        """Share of commands (valid and malformed) that have ended, and how many have not."""
        terminals = terminals_by_command(observed.outcomes)
        dead = {r.chaos_key for r in observed.dead_letters} | {r.command_id for r in observed.dead_letters}
        valid_open = sum(1 for c in self.sent.valid if c.command_id not in terminals and c.command_id not in dead)
        malformed_open = sum(1 for m in self.sent.malformed if m.key not in dead)
        total = len(self.sent.valid) + len(self.sent.malformed)
        remaining = valid_open + malformed_open
        return (1 - remaining / total if total else 1.0), remaining

    def preflight(self, malformed: list[MalformedMessage]) -> None:
        predictions = Counter((m.category, fuzz.predict(m)) for m in malformed)
        odd = {key: count for key, count in predictions.items() if key[1] != "invalid"}
        categories = Counter(m.category for m in malformed)
        self.say(
            f"generated {len(malformed)} malformed messages: "
            + ", ".join(f"{name} {count}" for name, count in sorted(categories.items()))
        )
        for (category, prediction), count in sorted(odd.items()):
            self.say(f"  warning: the product's parser says {prediction} for {count} {category} message(s)")

    @contextlib.contextmanager
    def logging_to(self, path: Path) -> Iterator[None]:
        """Send every log record to a file, counting warnings and errors per logger for the summary."""
        counts = self.log_counts

        class Counting(logging.FileHandler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.levelno >= logging.WARNING:
                    counts[f"{record.levelname} {record.name}"] += 1
                super().emit(record)

        handler = Counting(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s"))
        root = logging.getLogger()
        saved = (root.level, list(root.handlers))
        for existing in saved[1]:
            root.removeHandler(existing)
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
        try:
            yield
        finally:
            root.removeHandler(handler)
            handler.close()
            root.setLevel(saved[0])
            for existing in saved[1]:
                root.addHandler(existing)

    # --- output --------------------------------------------------------------------------------

    def summary(self, tally: Tally, elapsed: float, workdir: Path) -> None:
        def row(label: str, text: str) -> None:
            self.say(f"{label:<21}{text}")

        self.say()
        refused = f" (+{tally.unsendable} refused by the SDK or the peer, not counted)" if tally.unsendable else ""
        row(
            "sent",
            f"valid {tally.valid_sent}, resent {tally.resent} (same commandId, new message_id), "
            f"malformed {tally.malformed_sent}{refused}",
        )
        share = self.faults_fired / max(1, self.request_count)
        row(
            "Batch",
            f"{self.request_count} requests, {self.faults_fired} failed on purpose ({share:.1%}); "
            f"{tally.batch_calls_valid} for valid commands, {tally.batch_calls_invalid_input} for invalid "
            f"input, {tally.batch_calls_unattributed} unattributed",
        )
        unreadable = f"; {len(self.unreadable_outcomes)} unreadable" if self.unreadable_outcomes else ""
        row(
            "outcomes",
            f"{tally.outcome_messages} distinct topic messages: {tally.terminal_outcomes} terminal, "
            f"{tally.retry_outcomes} retry; {self.redeliveries} subscriber redeliveries ignored{unreadable}",
        )
        row("valid decisions", ", ".join(f"{k} {v}" for k, v in tally.valid_decisions.most_common()))
        row("dead-lettered", ", ".join(f"{k} {v}" for k, v in tally.dead_letters_by_reason.most_common()))
        row("lost", str(len(tally.check("lost").problems)))
        row("doubled", str(len(tally.check("doubled").problems)))
        row("poison loops", f"{tally.dead_letters_by_reason.get(POISON_REASON, 0)} (dead-lettered {POISON_REASON})")
        wrong = len(tally.check("malformed -> DLQ InvalidCommand").problems)
        row(
            "malformed",
            f"{tally.malformed_sent - wrong} of {tally.malformed_sent} dead-lettered {INVALID_REASON}, readably",
        )
        row(
            "elapsed",
            f"{elapsed:.1f} s (peer down {self.peer.downtime:.1f} s over {self.peer.starts - 1} restarts; "
            f"sender re-sent {self.sender_retries} times after an error)",
        )
        if self.log_counts:
            row("log warnings/errors", ", ".join(f"{k}: {v}" for k, v in self.log_counts.most_common(6)))
        if self.peer_errors:
            row(
                "peer errors",
                f"{len(self.peer_errors)} lines in {self.peer.log_path}, e.g. {self.peer_errors[0][:150]}",
            )
        self.say()
        self.say("checks")
        for check in tally.checks:
            self.report_check("PASS" if check.passed else "FAIL", check)
        self.say("notes (reported, not failing)")
        for note in tally.notes:
            self.report_check("ok  " if note.passed else "NOTE", note)
        self.say()
        failed = tally.failed
        kept = f"; logs and peer database kept in {workdir}" if failed or self.args.workdir else ""
        passed = len(tally.checks) - len(failed)
        self.say(f"result: {'FAIL' if failed else 'PASS'} ({passed} of {len(tally.checks)} checks pass){kept}")

    def report_check(self, status: str, check: CheckResult) -> None:
        self.say(f"  {status}  {check.name:<40} {len(check.problems):>6}   {check.meaning}")
        for problem in check.problems[:SHOWN]:
            self.say(f"          {problem[:220]}")


def dump_malformed(messages: list[MalformedMessage], path: Path) -> None:
    """One line per generated message, to look up what a finding's key stands for."""
    with path.open("w") as out:
        for m in messages:
            body = m.body[:300] if isinstance(m.body, bytes) else m.body
            out.write(
                f"{m.key} [{m.category}] {m.note} | message_id={m.message_id!r} | properties={m.properties!r}"
                f" | candidates={m.candidates} | kept={m.kept} | {m.body_kind} body={body!r:.400}\n"
            )


def queue_idle(connection_string: str) -> bool:
    """True when the command queue holds nothing: no message waiting, scheduled or locked."""
    try:
        with (
            ServiceBusClient.from_connection_string(connection_string) as client,
            client.get_queue_receiver(QUEUE) as receiver,
        ):
            return not receiver.peek_messages(max_message_count=1, timeout=5)
    except Exception:  # the peer is restarting: not idle as far as we know
        return False


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes" if dirty.strip() else "")


def report(tally: Tally, elapsed: float, args: argparse.Namespace, at_commit: str) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": at_commit,
        "options": {k: str(v) for k, v in vars(args).items()},
        "elapsedSeconds": round(elapsed, 1),
        "sent": {
            "valid": tally.valid_sent,
            "resent": tally.resent,
            "malformed": tally.malformed_sent,
            "unsendable": tally.unsendable,
        },
        "malformedByCategory": dict(tally.malformed_by_category),
        "outcomes": {
            "messages": tally.outcome_messages,
            "terminal": tally.terminal_outcomes,
            "retry": tally.retry_outcomes,
        },
        "validDecisions": dict(tally.valid_decisions),
        "deadLettersByReason": dict(tally.dead_letters_by_reason),
        "batchCalls": {
            "total": tally.batch_calls,
            "valid": tally.batch_calls_valid,
            "invalidInput": tally.batch_calls_invalid_input,
            "unattributed": tally.batch_calls_unattributed,
        },
        "checks": [
            {"name": c.name, "passed": c.passed, "count": len(c.problems), "examples": c.problems[:20]}
            for c in tally.checks + tally.notes
        ],
    }
