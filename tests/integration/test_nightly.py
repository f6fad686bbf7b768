"""The nightly job: three nights against a real FHIR server (own server, fixtures PUT), the lock,
the report's trends, config errors; the Bulk `_since` path against a fake exporter."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from ips_screen.cli.main import main
from ips_screen.codes import PROPOSAL_ID_SYSTEM
from ips_screen.devtools.load import load_bundles
from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.engine import evaluate
from ips_screen.fhir.client import FhirClient
from ips_screen.nightly.run import run_nightly
from ips_screen.nightly.sync import BulkApi
from ips_screen.pipeline import screen_server
from ips_screen.presentation.trace import step_line
from ips_screen.ruleset.loader import DEFAULT_RULESET, load_ruleset
from ips_screen.sources.fhir_rest import SEARCH_ORDER
from ips_screen.sources.population import collect_resources
from ips_screen.store import StateStore
from ips_screen.store.ledger import decision_digest
from ips_screen.writeback.writer import PracticeLock
from tests.fhir_support import running_test_server
from tests.support.fake_bulk import FakeBulkServer, FakeRequest, FakeUnsupported, fake_config
from tests.support.paths import FIXTURES, FROZEN_NOW

AS_OF = FROZEN_NOW.date()
PAIN = {"coding": [{"system": "http://snomed.info/sct", "code": "82423001"}]}
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
HAS_BULK = importlib.util.find_spec("ips_screen.fhir.bulk") is not None


def chronic_pain_for(patient: str, rid: str) -> dict:
    """The change that matters: chronic pain recorded for an otherwise eligible patient."""
    return {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "code": PAIN,
        "subject": {"reference": f"Patient/{patient}"},
        "onsetDateTime": "2025-02-01",
        "recordedDate": "2025-02-01",
    }


def expected_proposals(client: FhirClient) -> int:
    """What a one-off screen of the server proposes (a server sets meta.lastUpdated, which the
    rules read for ServiceRequests, so this can differ from a screen of the fixture files)."""
    ruleset = load_ruleset(None)
    result = screen_server(client, ruleset, as_of=AS_OF, out_dir=None, now=FROZEN_NOW)
    return sum(d.outcome == "propose" for d in result.decisions)


# -- against a real server -----------------------------------------------------------------------


@pytest.fixture
def own_server() -> Iterator[FhirTestServer]:
    """A server of this test's own: the nightly reads every patient on it."""
    with running_test_server() as server:
        yield server


def write_config(folder: Path, body: str) -> Path:
    path = folder / "practice.toml"
    path.write_text(body)
    return path


def server_config(folder: Path, base_url: str, mode: str) -> Path:
    return write_config(
        folder,
        f"""
[source]
kind = "server"

[fhir]
base_url = "{base_url}"

[export]
mode = "{mode}"
max_parallel_downloads = 2
poll_max_wait_seconds = 120

[output]
state_dir = "state"
keep_runs = 5
""",
    )


def nightly(config: Path, environ: dict[str, str], *extra: str) -> int:
    return main(["-q", "nightly", "--config", str(config), "--as-of", AS_OF.isoformat(), *extra],
                environ)  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize(
    "mode",
    [
        "rest",
        pytest.param(
            "bulk", marks=pytest.mark.skipif(not HAS_BULK, reason="ips_screen.fhir.bulk absent")
        ),
    ],
)
def test_three_nights_against_a_real_server(
    own_server: FhirTestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str
):
    with FhirClient(own_server.base_url) as client:
        assert load_bundles(client, [FIXTURES]) > 42
        proposals = expected_proposals(client)
    config = server_config(tmp_path, own_server.base_url, mode)
    environ = {"IPS_SCREEN_STATE_DIR": str(tmp_path / "writer-state")}
    state = tmp_path / "state"

    # Night 1: everything is new; every proposal is written.
    assert nightly(config, environ) == 0
    out = capsys.readouterr().out
    assert f"{proposals} new proposals written, {proposals} open" in out
    assert "45 changes since the last run" in out
    assert f"Report: {state / 'runs' / '1' / 'report.html'}" in out
    with FhirClient(own_server.base_url) as client:
        written = list(client.search("ServiceRequest", {"identifier": f"{PROPOSAL_ID_SYSTEM}|"}))
        assert len([r for r in written if r.get("intent") == "proposal"]) >= proposals

    # Night 2: nothing changed on the server: nothing new, no changes.
    assert nightly(config, environ) == 0
    out = capsys.readouterr().out
    assert f"0 new proposals written, {proposals} open; 0 changes since the last run" in out

    # A change that matters: chronic pain recorded for a patient who is otherwise eligible.
    with FhirClient(own_server.base_url) as client:
        client.update(chronic_pain_for("fx-29", "fx-29-new-pain"))
    assert nightly(config, environ) == 0
    out = capsys.readouterr().out
    assert f"1 new proposal written, {proposals + 1} open; 1 change since the last run" in out

    with StateStore(state / "store.sqlite") as store:
        runs = store.ledger.recent_runs(14)
    assert [r["status"] for r in runs] == ["ok", "ok", "ok"]
    assert [r["new_proposals"] for r in runs] == [proposals, 0, 1]
    assert [r["counts"]["changes"] for r in runs] == [45, 0, 1]
    assert [r["counts"]["method"] for r in runs] == [mode] * 3
    if mode == "rest":  # no _since over REST: the store is reloaded every night
        assert [r["mode"] for r in runs] == ["full", "full", "full"]
    else:  # only what changed since the last export is read
        assert [r["mode"] for r in runs] == ["full", "incremental", "incremental"]
        assert runs[2]["counts"]["resources_read"] < 42

    # The report of the last night has the trends chart over the three nights.
    latest = state / "runs" / "latest"
    assert latest.is_symlink() and latest.resolve() == (state / "runs" / "3").resolve()
    html = (latest / "report.html").read_text()
    assert 'id="h-trends"' in html and "<polyline" in html and "3 runs from" in html
    # It leads with the work outstanding, counted as `review list` counts the open reviews.
    assert html.index('id="h-work"') < html.index('id="h-headline"')
    assert main(["review", "list", "--server", own_server.base_url]) == 0
    open_reviews = int(capsys.readouterr().out.strip().splitlines()[-1].split()[0])
    assert open_reviews >= proposals
    assert f"<strong>{open_reviews}</strong> proposals are waiting for a clinician" in html
    assert "<strong>1</strong> new proposal tonight." in html
    assert "Already referred, or referred recently: " in html
    assert "a proposal for them is waiting for a clinician&#39;s review" in html
    assert "Changes read tonight" in html and "Resources read" not in html
    assert "ips-referral-open" not in html and "employment-status-unconfirmed" not in html
    for name in ("worklist.csv", "decisions.ndjson", "summary.json"):
        assert (latest / name).is_file()
    worklist = (state / "runs" / "3" / "worklist.csv").read_text()
    assert "Patient/fx-29" in worklist

    # A second run while one holds the lock is refused, with one line.
    with PracticeLock(state / "locks" / "nightly.lock"):
        assert nightly(config, environ) == 7
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ips-screen: error: another ips-screen run")
    assert f"pid {os.getpid()}" in err[0]


# -- config errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[source]\nkind = "files"\npath = "x"\n[output]\nstate_dir = "s"\nkeep_run = 3\n',
            "6: [output] keep_run: unknown key",
        ),
        (
            '[source]\nkind = "server"\nbase_url = "https://f.test/r4"\n'
            '[auth]\nmethod = "bearer"\ntoken = "abc123"\n[output]\nstate_dir = "s"\n',
            "6: [auth] token: secrets must not be written in the config file",
        ),
        (
            '[source]\nkind = "server"\nbase_url = "https://f.test/r4"\n[auth]\nmethod = "bearer"'
            '\ntoken_env = "eyJhbGciOiJSUzM4NCJ9.eyJzdWIiOiJ4In0.c2ln"\n'
            '[output]\nstate_dir = "s"\n',
            "6: [auth] token_env: this looks like a secret (a JSON Web Token)",
        ),
        (
            '[source]\nkind = "server"\nbase_url = "https://f.test/r4"\n[auth]\nmethod = "smart"'
            '\nclient_id = "c"\n[output]\nstate_dir = "s"\n',
            "4: [auth]: method = 'smart' needs private_key_file, kid",
        ),
        ('[source]\nkind = "files"\n[output]\nstate_dir = "s"\n', "1: [source]: path is required"),
        ('[source]\nkind = "files"\npath = "x"\n', " [output]: required setting missing"),
        ("[source\n", " invalid TOML"),
    ],
)
def test_config_errors_are_one_line_exit_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, message: str
):
    config = write_config(tmp_path, body)
    assert nightly(config, {}) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"ips-screen: error: {config}:{message}")  # the line, if any
    assert not (tmp_path / "s").exists()


def test_the_example_config_is_valid_and_documents_every_setting():
    from ips_screen.nightly.config import describe_settings, load_config

    example = DEFAULT_RULESET.parents[1] / "docs" / "practice.example.toml"
    config = load_config(example)
    assert config.source.kind == "server" and config.server.auth.method == "smart"
    text = example.read_text()
    for setting, description in describe_settings():
        section, key = setting[1:].split("] ")
        assert description, setting
        assert f"[{section}]" in text and f"{key} = " in text, setting


# -- the Bulk `_since` path, with a fake exporter -------------------------------------------------


def digests_of(resources: list[dict], when: date = AS_OF) -> dict[str, str]:
    ruleset = load_ruleset(None)
    population = collect_resources(resources, ruleset)
    return {f.id: decision_digest(evaluate(ruleset, f, when)) for f in population}


def decisions_in(out_dir: Path) -> list[dict]:
    lines = (out_dir / "decisions.ndjson").read_bytes().splitlines()
    return [orjson.loads(line) for line in lines]


def full_screen(resources: list[dict]) -> list[dict]:
    ruleset = load_ruleset(None)
    population = collect_resources(resources, ruleset)
    decisions = sorted((evaluate(ruleset, f, AS_OF) for f in population), key=lambda d: d.patient)
    return [
        orjson.loads(orjson.dumps(d.to_dict(step_line), option=orjson.OPT_SORT_KEYS))
        for d in decisions
    ]


def test_bulk_since_nights_apply_only_changes_and_match_a_full_screen(tmp_path: Path):
    server = FakeBulkServer()
    api = server.api()
    config = fake_config(tmp_path)

    def night():
        return run_nightly(config, now=FROZEN_NOW, as_of=AS_OF, environ={}, bulk_api=api)

    first = night()
    assert (first.mode, first.method, first.exit_code) == ("full", "bulk", 0)
    assert server.requests[0].since is None and server.requests[0].types == SEARCH_ORDER
    assert decisions_in(first.out_dir) == full_screen(server.current())
    assert not (tmp_path / "state" / "exports" / "current").exists()  # downloads removed

    before = digests_of(server.current())
    server.put(chronic_pain_for("fx-29", "fx-29-new-pain"))
    server.remove("Observation/fx-30-obs-2")  # the "Employed" status
    server.remove("Patient/fx-02")
    after = digests_of(server.current())
    second = night()
    assert server.requests[1].since == "tick-1"
    assert (second.mode, second.exit_code) == ("incremental", 0)
    assert decisions_in(second.out_dir) == full_screen(server.current())
    expected = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    assert second.changes == len(expected) and {"fx-29", "fx-02"} <= expected

    # Export errors: the run completes with exit 9 and `since` stays, so the next run asks again.
    server.errors = ["OperationOutcome: exporting Observation failed"]
    server.put(chronic_pain_for("fx-31", "fx-31-new-pain"))
    third = night()
    assert third.exit_code == 9 and third.errors == [
        "Bulk export: OperationOutcome: exporting Observation failed"
    ]
    server.errors = []
    fourth = night()
    assert server.requests[2].since == server.requests[3].since == "tick-4"
    assert (fourth.exit_code, fourth.changes) == (0, 0)

    # A new ruleset version: the store is reloaded in full.
    rules = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULESET.parent, rules)
    yaml_path = rules / DEFAULT_RULESET.name
    yaml_path.write_text(yaml_path.read_text().replace("version: ", "version: 9", 1))
    config = fake_config(tmp_path, yaml_path)
    fifth = night()
    assert server.requests[4].since is None and fifth.mode == "full"

    with StateStore(tmp_path / "state" / "store.sqlite") as store:
        runs = store.ledger.recent_runs(10)
    assert [r["status"] for r in runs] == ["ok", "ok", "errors", "ok", "ok"]
    assert [r["mode"] for r in runs] == [
        "full",
        "incremental",
        "incremental",
        "incremental",
        "full",
    ]
    kept = sorted(p.name for p in (tmp_path / "state" / "runs").iterdir())
    assert kept == ["3", "4", "5", "latest"]  # keep_runs = 3


class FakeRestClient:
    """Answers the nightly's REST searches from the fake server's resources, one page each."""

    base_url = "http://127.0.0.1:9/fhir"

    def __init__(self, resources: list[dict]) -> None:
        self.resources = resources
        self.searched: list[str] = []

    def search_pages(self, rtype: str, params: dict) -> Iterator[dict]:
        self.searched.append(rtype)
        found = [r for r in self.resources if r["resourceType"] == rtype]
        yield {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in found],
        }

    def search(self, rtype: str, params: object = None) -> Iterator[dict]:
        """The review Tasks the report's work outstanding asks for: none here."""
        return iter(())

    def __enter__(self) -> FakeRestClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


def test_auto_mode_falls_back_to_rest_when_the_export_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    server = FakeBulkServer()
    client = FakeRestClient(server.current())
    monkeypatch.setattr("ips_screen.nightly.run.open_client", lambda connection, environ: client)

    def refuse(*args, **kwargs):
        raise FakeUnsupported("404 on $export")

    api = BulkApi(lambda c, level: True, refuse, FakeRequest, FakeUnsupported)
    config = fake_config(tmp_path).model_copy(
        update={"export": fake_config(tmp_path).export.model_copy(update={"mode": "auto"})}
    )
    result = run_nightly(config, now=FROZEN_NOW, as_of=AS_OF, environ={}, bulk_api=api)
    assert (result.method, result.mode, result.exit_code) == ("rest", "full", 0)
    assert client.searched == list(SEARCH_ORDER)
    assert decisions_in(result.out_dir) == full_screen(server.current())


def test_bulk_mode_without_a_bulk_client_is_a_server_error(tmp_path: Path):
    from ips_screen.errors import ServerError

    with pytest.raises(ServerError, match="Bulk export is not available"):
        run_nightly(fake_config(tmp_path), now=FROZEN_NOW, as_of=AS_OF, environ={}, bulk_api=None)
    with StateStore(tmp_path / "state" / "store.sqlite") as store:
        assert [r["status"] for r in store.ledger.recent_runs(5)] == ["failed"]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_log_progress_every_n_items(monkeypatch: pytest.MonkeyPatch):
    from ips_screen.nightly.progress import LogProgress, make_progress

    collect_ = _Collect()
    package = logging.getLogger("ips_screen")
    monkeypatch.setattr(package, "handlers", [collect_])  # not a CLI test's closed stderr
    level = package.level
    package.setLevel(logging.INFO)  # (setLevel also clears the loggers' level caches)
    try:
        with LogProgress(every=2).stage("applied", unit="resources") as bar:
            for _ in range(5):
                bar.update()
    finally:
        package.setLevel(level)
    assert collect_.messages == [
        "applied: 2 resources so far",
        "applied: 4 resources so far",
        "applied: 5 resources",
    ]
    assert isinstance(make_progress(SimpleNamespace(isatty=lambda: False)), LogProgress)
