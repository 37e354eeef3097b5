"""The `qgov` command as a user runs it: real console script, real databases, one-line errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from governance.budget import db
from governance.budget.ledger import Ledger
from governance.budget.types import BudgetSpec, ReserveRequest

QGOV = str(Path(sys.executable).parent / "qgov")


def qgov(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [QGOV, *args] + (["--database-url", url] if url else [])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0], lines[0]


@pytest.fixture
def populated(database_url: str) -> str:
    """A ledger with one budget and three jobs (settled, held, refused), built through the API."""
    ledger = Ledger(database_url)
    ledger.upsert_budget(BudgetSpec("team-a", "team-a", 10_000_000, period="monthly", warn_at=(50, 80)))
    for key, amount, backend in (("j1", 3_200_000, "ibm_torino"), ("j2", 2_500_000, "fake_manila"),
                                 ("j3", 5_000_000, "ibm_torino")):
        ledger.reserve(ReserveRequest(key, "team-a", "team-a", amount, job=key, backend=backend))
    ledger.settle("j1", 2_999_999)
    ledger.close()
    return database_url


def test_upgrade_budget_reserve_settle_through_the_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert f"is at {db.head_revision()}" in qgov("db", "upgrade", url=url).stdout
    out = qgov("ledger", "budget", "-n", "t", "--name", "t", "--limit", "5", "--warn-at", "50,80", url=url)
    assert out.returncode == 0 and "limit 5.00 USD" in out.stdout
    assert qgov("ledger", "reserve", "-n", "t", "--budget", "t", "--key", "k", "--amount", "4", url=url).returncode == 0
    assert "settled 1.50, released 2.50" in qgov("ledger", "settle", "--key", "k", "--actual", "1.5", url=url).stdout
    assert "spent 1.50 USD" in qgov("ledger", "adjust", "-n", "t", "--budget", "t", "--amount", "0", "--key", "a",
                                    url=url).stdout


def test_version_is_the_installed_distributions() -> None:
    """`qgov --version` says the version pip installed (pyproject reads governance.__version__)."""
    from importlib.metadata import version

    out = qgov("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"qgov {version('qgov')}", out
    assert version("qgov") == __import__("governance").__version__


def test_a_budget_set_from_the_command_is_monthly_like_a_qiskitbudgets_default(tmp_path: Path) -> None:
    """Without --period the CLI makes the budget the CRD would (spec.period defaults to monthly)."""
    import yaml

    crd = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds" / "qiskitbudgets.yaml").read_text())
    [version] = crd["spec"]["versions"]
    default = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["period"]["default"]
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    qgov("db", "upgrade", url=url)
    assert qgov("ledger", "budget", "-n", "t", "--name", "t", "--limit", "5", url=url).returncode == 0
    ledger = Ledger(url)
    try:
        balance = ledger.balance("t", "t")
    finally:
        ledger.close()
    assert default == "monthly"
    assert balance.period_end is not None and (balance.period_start.day, balance.period_start.hour) == (1, 0)
    assert (balance.period_end.year * 12 + balance.period_end.month) - (
        balance.period_start.year * 12 + balance.period_start.month) == 1


def test_report_table_json_and_csv_agree_with_the_ledger(populated: str) -> None:
    table = qgov("ledger", "report", "-n", "team-a", url=populated)
    assert table.returncode == 0, table.stderr
    assert "team-a  USD   monthly  hard" in table.stdout
    assert "2.999999" in table.stdout and "ibm_torino" in table.stdout
    data = json.loads(qgov("ledger", "report", "-n", "team-a", "-o", "json", url=populated).stdout)
    [period] = data["budgets"][0]["periods"]
    assert (period["limit"], period["spent"], period["held"], period["remaining"]) == (
        "10.00", "2.999999", "2.50", "4.500001")
    assert data["counts"] == {"settled": 1, "held": 1, "refused": 1}
    assert data["by_backend"][0] == {"name": "ibm_torino", "unit": "USD", "jobs": 1, "spent": "2.999999",
                                     "held": "0.00"}
    assert data["accuracy"]["settled"] == 1 and data["accuracy"]["mean_ratio"] == "0.937"
    rows = list(csv.DictReader(io.StringIO(qgov("ledger", "report", "-n", "team-a", "-o", "csv",
                                                url=populated).stdout)))
    assert {r["section"] for r in rows} == {"budget", "backend", "session", "job"}
    assert next(r for r in rows if r["section"] == "budget")["remaining"] == "4.500001"


def test_reserve_exit_code_and_refusal_message(populated: str) -> None:
    out = qgov("ledger", "reserve", "-n", "team-a", "--budget", "team-a", "--key", "j9", "--amount", "9",
               url=populated)
    assert out.returncode == 1
    assert "refused: exceeded budget team-a/team-a: requested 9.00 USD, spent 2.999999 USD" in out.stdout
    again = qgov("ledger", "reserve", "-n", "team-a", "--budget", "team-a", "--key", "j2", "--amount", "2.50",
                 url=populated)
    assert again.returncode == 0 and "replayed" in again.stdout


def test_verify_reports_a_tampered_balance(populated: str) -> None:
    assert qgov("ledger", "verify", url=populated).returncode == 0
    engine = db.make_engine(populated)
    with engine.begin() as conn:
        conn.execute(text("UPDATE budget_periods SET spent_micro = spent_micro + 1"))
    engine.dispose()
    out = qgov("ledger", "verify", url=populated)
    assert out.returncode == 1 and "stored spent 3000000 != entries 2999999" in out.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["ledger", "report", "-n", "nobody"], "no budgets in namespace 'nobody' (namespaces with budgets: team-a)"),
        (["ledger", "report", "-n", "team-a", "--period", "2026-13"], "bad period '2026-13'"),
        (["ledger", "report", "-n", "team-a", "--period", "last month"], "bad period"),
        (["ledger", "reserve", "-n", "team-a", "--budget", "team-a", "--key", "x", "--amount", "-1"], "negative"),
        (["ledger", "reserve", "-n", "team-a", "--budget", "team-a", "--key", "x", "--amount", "ten"],
         "is not a number"),
        (["ledger", "reserve", "-n", "team-a", "--budget", "team-a", "--key", "x", "--amount", "0.0000001"],
         "more than 6 decimal places"),
        (["ledger", "budget", "-n", "team-a", "--name", "b", "--limit", "NaN"], "not a finite number"),
        (["ledger", "budget", "-n", "team-a", "--name", "b", "--limit", "1", "--warn-at", "150"], "within 1..100"),
        (["ledger", "settle", "--key", "nope", "--actual", "1"], "no reservation with key 'nope'"),
        (["ledger", "settle", "--key", "j1", "--actual", "-5"], "negative"),
        (["ledger", "reserve", "-n", "team-a", "--budget", "other", "--key", "x", "--amount", "1"],
         "no budget 'other' in namespace 'team-a'"),
    ],
)
def test_bad_input_gets_one_clear_line(populated: str, args: list[str], expected: str) -> None:
    assert_one_line_error(qgov(*args, url=populated), expected)


def test_nothing_is_charged_by_rejected_input(populated: str) -> None:
    before = qgov("ledger", "report", "-n", "team-a", "-o", "json", url=populated).stdout
    qgov("ledger", "reserve", "-n", "team-a", "--budget", "team-a", "--key", "x", "--amount", "-1", url=populated)
    qgov("ledger", "settle", "--key", "j2", "--actual", "abc", url=populated)
    assert qgov("ledger", "report", "-n", "team-a", "-o", "json", url=populated).stdout == before


def test_database_problems_get_one_clear_line(tmp_path: Path) -> None:
    assert_one_line_error(qgov("ledger", "report", "-n", "a", url="not a url"), "malformed database URL")
    assert_one_line_error(qgov("db", "upgrade", url="mysql://u@h/db"), "unsupported database 'mysql'")
    assert_one_line_error(qgov("ledger", "report", "-n", "a", url="postgresql://qgov:s3cret@127.0.0.1:1/x"),
                          "cannot reach database")
    unreachable = qgov("db", "upgrade", url="postgresql://qgov:s3cret@127.0.0.1:1/x")
    assert_one_line_error(unreachable, "cannot reach database")
    assert "s3cret" not in unreachable.stderr  # the password never shows
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert_one_line_error(qgov("ledger", "report", "-n", "a", url=empty), "no qgov schema: run `qgov db upgrade`")


@pytest.mark.parametrize("url", [
    "postgresql//qgov:s3cret@db.example/qgov",        # a missing ":" (make_url cannot parse it)
    "postgresql://qgov:s3cret@db.example:54x32/qgov",  # a port that is not a number
    "postgres ql://qgov:s3cret@db.example/qgov",       # a space in the scheme
])
def test_a_malformed_database_url_is_never_echoed_with_its_password(url: str, tmp_path: Path) -> None:
    for args in (("db", "upgrade"), ("ledger", "report", "-n", "a")):
        result = qgov(*args, url=url)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert "s3cret" not in result.stderr, result.stderr
        assert "db.example" in result.stderr, result.stderr  # the host still says which database it was


def test_redact_hides_the_password_of_any_url() -> None:
    assert db.redact("postgresql+psycopg://qgov:s3cret@db/qgov") == "postgresql+psycopg://qgov:***@db/qgov"
    assert db.redact("postgresql//qgov:s3cret@db/qgov") == "postgresql//***@db/qgov"
    assert db.redact("sqlite:////var/lib/qgov/ledger.db") == "sqlite:////var/lib/qgov/ledger.db"


def test_a_schema_behind_the_code_tells_the_user_to_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    assert qgov("db", "upgrade", url=url).returncode == 0
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    engine.dispose()
    assert_one_line_error(qgov("ledger", "verify", url=url),
                          f"is at schema 0000, qgov needs {db.head_revision()}: run `qgov db upgrade`")
    current = qgov("db", "current", url=url)
    assert current.returncode == 1 and "run `qgov db upgrade`" in current.stdout


def test_demo_prices_runs_settles_and_reports(tmp_path: Path) -> None:
    out = qgov("demo", url=f"sqlite:///{tmp_path / 'demo.db'}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("admitted, ran") == 3 and out.stdout.count("REFUSED: exceeded budget") == 2
    assert "ledger check: every balance equals its recomputation" in out.stdout


def test_audit_that_cannot_read_the_cluster_or_the_database_exits_2_with_one_line(tmp_path: Path,
                                                                                   populated: str) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({  # a cluster nobody listens on
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}]}))
    no_cluster = qgov("ledger", "audit", "--kubeconfig", str(kubeconfig), url=populated)
    assert_one_line_error(no_cluster, "qgov: error: cluster: cannot reach the API server")
    assert no_cluster.returncode == 2 and no_cluster.stdout == ""
    no_config = qgov("ledger", "audit", "--kubeconfig", str(tmp_path / "missing"), url=populated)
    assert_one_line_error(no_config, "cluster: no usable kube config")
    assert no_config.returncode == 2
    no_database = qgov("ledger", "audit", "--kubeconfig", str(kubeconfig),
                       url="postgresql://qgov:s3cret@127.0.0.1:1/x")
    assert_one_line_error(no_database, "cannot reach database postgresql+psycopg://qgov:***@127.0.0.1:1/x")
    assert no_database.returncode == 2 and "s3cret" not in no_database.stderr + no_database.stdout


def test_report_as_markdown(populated: str) -> None:
    out = qgov("ledger", "report", "-n", "team-a", "--format", "markdown", url=populated)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "# Cost report: team-a"
    assert "| Budget | Unit | Period | Enforcement | From | Limit | Spent | Held | Remaining | Queued |" in lines
    assert any(line.startswith("| team-a | USD | monthly | hard |") and "| 10.00 | 2.999999 | 2.50 | 4.500001 | 0 |"
               in line for line in lines), out.stdout
    assert "| ibm_torino | USD | 1 | 2.999999 | 0.00 |" in lines
    assert "## By session" in lines and "Settled 1: actual / estimate mean 0.937" in out.stdout


def test_chargeback_csv_for_every_namespace(database_url: str) -> None:
    ledger = Ledger(database_url)
    ledger.upsert_budget(BudgetSpec("team-b", "qpu", 100_000_000, unit="QPU-seconds", period="monthly"))
    ledger.upsert_budget(BudgetSpec("team-a", "team-a", 10_000_000, period="monthly"))
    ledger.reserve(ReserveRequest("a1", "team-a", "team-a", 3_000_000, job="team-a/a1", backend="fake_manila"))
    ledger.settle("a1", 1_255_664)
    ledger.reserve(ReserveRequest("a2", "team-a", "team-a", 2_000_000, job="team-a/a2", backend="ibm_torino"))
    ledger.reserve(ReserveRequest("b1", "team-b", "qpu", 7_000_000, job="team-b/b1", backend="ibm_torino"))
    ledger.settle("b1", 6_500_000)
    period = ledger.balance("team-a", "team-a").period_start.strftime("%Y-%m")
    ledger.close()
    out = qgov("ledger", "chargeback", "--period", period, url=database_url)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert rows == [
        {"period": period, "namespace": "team-a", "budget": "team-a", "unit": "USD", "jobs": "2",
         "spent": "1.255664", "held": "2.00", "total": "3.255664", "late_jobs": "0", "late_amount": "0.00"},
        {"period": period, "namespace": "team-b", "budget": "qpu", "unit": "QPU-seconds", "jobs": "1",
         "spent": "6.50", "held": "0.00", "total": "6.50", "late_jobs": "0", "late_amount": "0.00"},
    ]
    # another month: the budgets are listed, nothing was charged in it
    later = qgov("ledger", "chargeback", "--period", "2099-01", url=database_url)
    assert [r["total"] for r in csv.DictReader(io.StringIO(later.stdout))] == ["0.00", "0.00"]
    md = qgov("ledger", "chargeback", "--period", period, "-o", "markdown", url=database_url).stdout.splitlines()
    assert md[0] == f"# Chargeback {period}"
    assert f"| {period} | team-a | team-a | USD | 2 | 1.255664 | 2.00 | 3.255664 | 0 | 0.00 |" in md
    assert_one_line_error(qgov("ledger", "chargeback", "--period", "2026-13", url=database_url), "bad period")


def test_dev_without_the_dev_tools_says_how_to_install_them() -> None:
    """An install without qgov_dev (as in the operator and executor images, which do not copy it):
    `qgov dev` ends in one line that names the extra, not a traceback."""
    code = ("import sys; sys.modules['qgov_dev'] = None  # what Python finds when the package is absent\n"
            "from governance.cli import main; sys.exit(main(['dev', '--demo']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert_one_line_error(result, "qgov dev needs the dev tools: pip install 'qgov[dev]'")
    assert result.returncode == 2


def test_the_operator_start_up_never_logs_the_database_password(tmp_path: Path) -> None:
    """`qgov operator` with a malformed QGOV_DATABASE_URL says so in its log (it retries its
    start-up until fixed), with the URL's user-info hidden."""
    import os
    import time

    log = tmp_path / "operator.log"
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none"), "QGOV_METRICS_PORT": "0",
           "QGOV_DATABASE_URL": "postgresql//qgov:s3cret@db.example/qgov"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([QGOV, "operator"], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while "malformed database URL" not in log.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(30)
    text = log.read_text()
    assert "malformed database URL 'postgresql//***@db.example/qgov'" in text, text[-2000:]
    assert "s3cret" not in text
